//! `apm-server-local`: see your traces without an Elastic stack. `--help` lists the options.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use apm_server_local::{Options, Output, Server};

const USAGE: &str = "\
apm-server-local: a local APM Server for development

Point any Elastic APM agent at it (ELASTIC_APM_SERVER_URL=http://127.0.0.1:8200) to see each
trace as a waterfall here and at http://127.0.0.1:8200/ui. Every event is checked against the
intake v2 schemas; violations are reported on stderr and on the web page.

Options:
  --addr HOST:PORT        listen here (default 127.0.0.1:8200)
  --secret-token TOKEN    require 'Authorization: Bearer TOKEN'
  --api-key KEY           require 'Authorization: ApiKey KEY'
  --config-file PATH      central configuration: {\"*\": {...}, \"<service>\": {...}}, re-read on change
  --spec-dir DIR          load the schemas from DIR/intake-v2 instead of the embedded ones
  --json                  print every accepted event as NDJSON instead of waterfalls
  --ndjson-file PATH      also append every accepted event as NDJSON to PATH
  --max-traces N          keep at most N traces in memory (default 1000)
  --max-mib M             keep at most M MiB of events in memory (default 64)
  --settle-ms MS          a trace is complete MS after its last event (default 1000)
  --no-color              no ANSI colours (also when NO_COLOR is set or stdout is no terminal)
  -h, --help              this text
";

fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o = Options::default();
    let mut json = false;
    let mut colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let number = |v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        };
        match flag.as_str() {
            "--addr" => o.addr = value()?,
            "--secret-token" => o.secret_token = Some(value()?),
            "--api-key" => o.api_key = Some(value()?),
            "--config-file" => o.config_file = Some(PathBuf::from(value()?)),
            "--spec-dir" => o.spec_dir = Some(PathBuf::from(value()?)),
            "--ndjson-file" => o.ndjson_file = Some(PathBuf::from(value()?)),
            "--max-traces" => o.max_traces = number(value()?)?.max(1),
            "--max-mib" => o.max_bytes = number(value()?)?.saturating_mul(1 << 20),
            "--settle-ms" => o.settle = Duration::from_millis(number(value()?)? as u64),
            "--json" => json = true,
            "--no-color" | "--no-colour" => colour = false,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other:?}; see --help")),
        }
    }
    o.output = if json {
        Output::Json
    } else {
        Output::Waterfall { colour }
    };
    Ok(o)
}

fn main() {
    let opts = match parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("apm-server-local: {e}");
            std::process::exit(2);
        }
    };
    let server = match Server::start(opts.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("apm-server-local: cannot listen on {}: {e}", opts.addr);
            std::process::exit(1);
        }
    };
    eprintln!(
        "apm-server-local listening on {url} (web page: {url}/ui); schemas: {}",
        server.schema_source().unwrap_or("none, validation off"),
        url = server.url(),
    );
    // Serves until the process is stopped (Ctrl-C).
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Options, String> {
        parse(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn options() {
        let o = args(&[
            "--addr",
            "0.0.0.0:9",
            "--max-mib=2",
            "--json",
            "--secret-token",
            "t",
        ])
        .expect("valid");
        assert_eq!(o.addr, "0.0.0.0:9");
        assert_eq!(o.max_bytes, 2 << 20);
        assert_eq!(o.output, Output::Json);
        assert_eq!(o.secret_token.as_deref(), Some("t"));
        assert!(args(&["--max-traces", "x"]).is_err());
        assert!(args(&["--addr"]).is_err());
        assert!(args(&["--nope"]).is_err());
        assert_eq!(args(&["--help"]).err().as_deref(), Some(""));
    }
}
