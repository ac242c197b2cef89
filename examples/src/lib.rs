//! Shared pieces of the examples.

use std::io::IsTerminal;
use std::time::Duration;

use apm_server_local::{Options, Output, Server};

/// The local APM Server (`apm-server-local`) in this process, on an ephemeral port. It prints
/// the traces when told to ([`Server::complete_all`], once the agents have flushed), so that
/// they come out whole and in order of arrival.
pub fn receiver() -> Server {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let opts = Options {
        addr: "127.0.0.1:0".into(),
        output: Output::Waterfall { colour },
        settle: Duration::from_secs(3600),
        ..Options::default()
    };
    match Server::start(opts) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cannot start the local APM Server on 127.0.0.1: {e}");
            std::process::exit(1);
        }
    }
}

/// Prints the traces still waiting, then fails the example (exit status 1) if any event it
/// sent broke the intake schemas: its test (`tests/examples_run.rs`) sees the failure.
pub fn finish(server: &Server) {
    server.complete_all();
    let violations = server.violations();
    if violations.is_empty() {
        return;
    }
    eprintln!("{} event(s) broke the intake v2 schemas:", violations.len());
    for v in &violations {
        eprintln!("{v:#}");
    }
    std::process::exit(1);
}
