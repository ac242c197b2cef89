//! The examples run end to end: their events go through the agents' real transports to the
//! local receiver, which prints each trace. The receiver is the local APM Server
//! (`apm-server-local`): it checks every event against the intake schemas, and an example that
//! sent an invalid one exits with status 1 (`apm_examples::finish`), which fails its test here.

use std::process::Command;

fn run(exe: &str) -> String {
    let out = Command::new(exe)
        // Cloud metadata endpoints that refuse at once: the output is the same on any
        // machine, a cloud's included.
        .env("APM_TEST_CLOUD_METADATA_URL", "http://127.0.0.1:9")
        .output()
        .expect("run the example");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The lines of each printed trace.
fn traces(output: &str) -> Vec<Vec<&str>> {
    let mut traces: Vec<Vec<&str>> = Vec::new();
    for line in output.lines() {
        if line.starts_with("trace ") {
            traces.push(Vec::new());
        } else if let Some(t) = traces.last_mut() {
            if !line.trim().is_empty() {
                t.push(line);
            }
        }
    }
    traces
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

#[test]
fn two_services_make_one_trace_linked_by_the_client_span() {
    let output = run(env!("CARGO_BIN_EXE_services"));
    let traces = traces(&output);
    assert_eq!(traces.len(), 2, "{output}");
    for t in traces {
        let names = [
            "GET /checkout/{id} [request]",
            "GET 127.0.0.1:",
            "GET /stock/{id} [request]",
            "stock_level (db/postgresql/query)",
        ];
        assert_eq!(t.len(), names.len(), "{output}");
        for (i, (line, name)) in t.iter().zip(names).enumerate() {
            assert!(
                line.trim_start().starts_with(name),
                "{line:?} is not {name:?}\n{output}"
            );
            if i > 0 {
                assert!(
                    indent(line) > indent(t[i - 1]),
                    "each is the child of the one above:\n{output}"
                );
            }
        }
    }
}

#[test]
fn the_demo_prints_its_traces() {
    let output = run(env!("CARGO_BIN_EXE_demo"));
    let traces = traces(&output);
    assert_eq!(traces.len(), 4, "{output}");
    assert!(
        output.contains("! error PaymentDeclined: payment declined for order 42"),
        "{output}"
    );
    assert!(output.contains("caused by: card expired"), "{output}");
    // The shop's database is a real (bundled, in-memory) SQLite, traced by `apm::rusqlite`.
    for span in [
        "SELECT FROM cart_item (db/sqlite/query)",
        "BEGIN (db/sqlite/query)",
        "UPDATE product (db/sqlite/query)",
        "INSERT INTO orders (db/sqlite/query)",
        "COMMIT (db/sqlite/query)",
        "SELECT FROM orders (db/sqlite/query)",
    ] {
        assert!(output.contains(span), "no {span:?} in\n{output}");
    }
    // The summary line ends "; 0 dropped." (not "10 dropped.").
    assert!(
        output
            .lines()
            .any(|l| l.trim_end().ends_with("; 0 dropped.")),
        "{output}"
    );
}
