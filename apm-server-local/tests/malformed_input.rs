//! Malformed input gets the APM Server's answers: the status codes and bodies of
//! `internal/beater/api/intake` (its approved test answers), `Connection: close` after errors.

mod common;

use std::io::Write;

use common::{get, ndjson, post, META};
use serde_json::json;

const INTAKE: &str = "/intake/v2/events";
const NDJSON: &str = "Content-Type: application/x-ndjson\r\n";

#[test]
fn intake_errors_match_the_apm_server() {
    let server = common::server(|_| {});
    let addr = server.addr();

    let r = post(
        addr,
        INTAKE,
        "Content-Type: application/json\r\n",
        &ndjson(&[META]),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"accepted": 0, "errors": [{"message": "invalid content type: 'application/json'"}]})
    );
    assert_eq!(r.header("connection"), Some("close"));

    let r = get(addr, INTAKE);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"accepted": 0, "errors": [{"message": "only POST requests are supported"}]})
    );

    let r = post(
        addr,
        INTAKE,
        &format!("{NDJSON}Content-Encoding: gzip\r\n"),
        b"not gzip",
    );
    assert_eq!(r.status, 400);
    let msg = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(msg.starts_with("data decoding error: "), "{msg}");

    let r = post(addr, INTAKE, NDJSON, &ndjson(&[r#"{"not": "metadata"}"#]));
    assert_eq!(
        r.json(),
        json!({"accepted": 0, "errors": [{"message": "\"metadata\" or \"m\" required", "document": "{\"not\": \"metadata\"}"}]})
    );

    let unknown = r#"{"tennis-court": {"name": "Centre Court, Wimbledon"}}"#;
    let r = post(addr, INTAKE, NDJSON, &ndjson(&[META, unknown]));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"accepted": 0, "errors": [{"message": "tennis-court: did not recognize object type", "document": unknown}]})
    );

    let big = format!(r#"{{"metadata":{{"x":"{}"}}}}"#, "a".repeat(400 * 1024));
    let r = post(addr, INTAKE, NDJSON, &ndjson(&[&big]));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["errors"][0]["message"],
        "event exceeded the permitted size."
    );

    let r = post(
        addr,
        INTAKE,
        NDJSON,
        &ndjson(&[META, "{ \"invalid-json\" }"]),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["accepted"], 0);

    // An empty body is accepted (202, no body); `?verbose` asks for the count.
    assert_eq!(post(addr, INTAKE, NDJSON, b"").status, 202);
    let r = post(addr, &format!("{INTAKE}?verbose"), NDJSON, b"");
    assert_eq!((r.status, r.json()), (202, json!({"accepted": 0})));

    assert_eq!(get(addr, "/nope").status, 404);
    assert!(!server.violations().is_empty(), "rejections are reported");

    // Not HTTP at all.
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(b"NONSENSE\r\n\r\n").expect("write");
    let r = common::send(addr, b"GARBAGE LINE\r\n\r\n");
    assert_eq!(r.status, 400);
}

#[test]
fn schema_violations_are_rejected_and_reported() {
    let server = common::server(|_| {});
    if !common::validating(&server) {
        return;
    }
    // A span without its required fields (id, trace_id, name, type, duration, …).
    let r = post(
        server.addr(),
        INTAKE,
        NDJSON,
        &ndjson(&[META, r#"{"span":{"name":"x"}}"#]),
    );
    assert_eq!(r.status, 400);
    let body = r.json();
    assert_eq!(body["accepted"], 0);
    let msg = body["errors"][0]["message"].as_str().unwrap_or("");
    assert!(msg.starts_with("validation error: span: "), "{msg}");
    let violations = server.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0]["kind"], "span");
    assert_eq!(violations[0]["service"], "svc");
    let via_ui = get(server.addr(), "/ui/api/violations").json();
    assert_eq!(via_ui.as_array().map(Vec::len), Some(1));
}

#[test]
fn authorization_is_checked_like_a_secured_apm_server() {
    let server = common::server(|o| {
        o.secret_token = Some("s3cr3t".into());
        o.api_key = Some("a2V5".into());
    });
    let addr = server.addr();
    let body = ndjson(&[META]);
    let r = post(addr, INTAKE, NDJSON, &body);
    assert_eq!(r.status, 401);
    assert!(r.json()["error"].as_str().unwrap_or("").starts_with(
        "authentication failed: missing or improperly formatted Authorization header"
    ));
    let r = post(
        addr,
        INTAKE,
        &format!("{NDJSON}Authorization: Bearer wrong\r\n"),
        &body,
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": "authentication failed: invalid token"})
    );
    for auth in ["Bearer s3cr3t", "ApiKey a2V5"] {
        let r = post(
            addr,
            INTAKE,
            &format!("{NDJSON}Authorization: {auth}\r\n"),
            &body,
        );
        assert_eq!(r.status, 202, "{auth}");
    }
    let r = get(addr, "/config/v1/agents?service.name=x");
    assert_eq!(r.status, 401);
    // Server information stays open, as agents ask for it before anything else.
    let info = get(addr, "/").json();
    assert_eq!(info["version"], apm_server_local::SERVER_VERSION);
    assert_eq!(info["publish_ready"], true);
}
