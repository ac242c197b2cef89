//! The Python agent (`elastic-apm` from PyPI) against the local server: its events pass the
//! intake schemas and make one trace. Skipped when Python or the package is missing (a
//! failure under `CI=true`, where .ci/run installs it).

mod common;

use std::process::Command;

use common::T;

const SCRIPT: &str = r#"
import sys
import elasticapm

client = elasticapm.Client(
    service_name="py-shop",
    server_url=sys.argv[1],
    central_config=False,
    metrics_interval="0ms",
    cloud_provider="none",
)
client.begin_transaction("request")
with elasticapm.capture_span(
    "SELECT FROM orders",
    span_type="db",
    span_subtype="sqlite",
    span_action="query",
    extra={"db": {"type": "sql", "statement": "SELECT * FROM orders"}},
):
    try:
        1 / 0
    except ZeroDivisionError:
        client.capture_exception()
client.end_transaction("GET /py/orders", "HTTP 2xx")
client.close()
"#;

fn python() -> Option<&'static str> {
    ["python3", "python"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import elasticapm"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn the_python_agent_sends_a_valid_trace() {
    let Some(py) = python() else {
        common::skip("the Python agent is not installed (pip install elastic-apm)");
        return;
    };
    let server = common::server(|_| {});
    let out = Command::new(py)
        .args(["-c", SCRIPT, &server.url()])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        server.wait_for_events(3, T),
        "stats {:?}, violations {:?}, agent's output:\n{}",
        server.stats(),
        server.violations(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.violations().is_empty(), "{:#?}", server.violations());
    common::validating(&server);
    let traces = server.traces();
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let t = &traces[0];
    let root = t.root().expect("root");
    assert_eq!(root.name, "GET /py/orders");
    assert_eq!(root.service.as_deref(), Some("py-shop"));
    let span = t.find("SELECT FROM orders").expect("span");
    assert_eq!(span.subtype.as_deref(), Some("sqlite"));
    let errors: Vec<_> = t
        .walk()
        .into_iter()
        .flat_map(|(_, n)| n.errors.iter())
        .chain(&t.errors)
        .collect();
    assert_eq!(errors.len(), 1, "{t:#?}");
    assert_eq!(
        errors[0].exception_type.as_deref(),
        Some("ZeroDivisionError")
    );
}
