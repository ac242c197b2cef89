//! The `apm-server-local` binary: it says where it listens, prints a
//! waterfall once a trace has settled, or NDJSON with `--json`, and appends NDJSON to
//! `--ndjson-file`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;

use common::T;

struct Running {
    child: Child,
    url: String,
    lines: Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on an ephemeral port; its startup line (stderr) names the URL.
fn start(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_apm-server-local"))
        .args(["--addr", "127.0.0.1:0", "--settle-ms", "200"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start apm-server-local");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    // Without schemas a line saying so comes first; the banner names the URL.
    let mut banner = String::new();
    while !banner.contains("listening on") {
        banner.clear();
        let n = stderr.read_line(&mut banner).expect("startup line");
        assert!(n > 0, "apm-server-local exited before listening");
    }
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {banner:?}"))
        .to_owned();
    // Keep draining stderr so the child never blocks on it.
    thread::spawn(move || for _ in stderr.lines() {});
    let lines = read_lines(child.stdout.take().expect("stdout"));
    Running { child, url, lines }
}

fn read_lines(out: ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Lines until one satisfies `done` (included), or panics after the timeout.
fn until(lines: &Receiver<String>, mut done: impl FnMut(&str) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(T) {
            Ok(l) => {
                let stop = done(&l);
                seen.push(l);
                if stop {
                    return seen;
                }
            }
            Err(e) => panic!("{e}; output so far:\n{}", seen.join("\n")),
        }
    }
}

#[test]
fn prints_a_waterfall_when_a_trace_settles() {
    let server = start(&["--no-color"]);
    let trace_id = common::record_known_trace_to(&server.url, "GET /binary/{id}");
    let out = until(&server.lines, |l| l.contains("GET pricing"));
    let text = out.join("\n");
    assert!(text.contains(&format!("trace {trace_id}  shop")), "{text}");
    assert!(text.contains("GET /binary/{id} [request]"), "{text}");
    assert!(text.contains("! error"), "{text}");
    assert!(!text.contains('\x1b'), "no colour asked: {text}");
}

#[test]
fn json_mode_and_the_ndjson_file() {
    let dir = std::env::temp_dir().join(format!("apm-server-local-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("events.ndjson");
    let server = start(&[
        "--json",
        "--ndjson-file",
        file.to_str().expect("utf-8 path"),
    ]);
    common::record_known_trace_to(&server.url, "GET /json");
    let mut kinds = Vec::new();
    until(&server.lines, |l| {
        let v: serde_json::Value = serde_json::from_str(l).expect("an NDJSON line");
        let kind = v.as_object().and_then(|o| o.keys().next().cloned());
        kinds.push(kind.unwrap_or_default());
        kinds.iter().filter(|k| *k == "span").count() == 2
            && kinds.iter().any(|k| k == "transaction")
    });
    assert!(kinds.contains(&"error".to_owned()), "{kinds:?}");
    let written = std::fs::read_to_string(&file).expect("ndjson file");
    assert!(written.lines().count() >= 4, "{written}");
    assert!(written.contains("GET /json"), "{written}");
    let _ = std::fs::remove_dir_all(&dir);
}
