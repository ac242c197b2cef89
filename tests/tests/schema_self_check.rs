//! Proves the schema validators (and the stand-in's checks on arrival) can both pass and fail,
//! on the APM Server's own sample payloads (`intake-v2/testdata/*.ndjson`).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use apm_tests::MockServer;
use serde_json::Value;

/// `(kind, inner object)` of each NDJSON line of a sample file.
fn events(path: &Path) -> Vec<(String, Value)> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            // The first JSON value of the line: one upstream sample (metricsets.ndjson) has a
            // stray character after its object.
            let v: Value = serde_json::Deserializer::from_str(l)
                .into_iter()
                .next()
                .and_then(Result::ok)
                .unwrap_or_else(|| panic!("{}: bad JSON line: {l}", path.display()));
            let (k, inner) = v
                .as_object()
                .and_then(|o| o.iter().next())
                .unwrap_or_else(|| panic!("{}: not an object: {l}", path.display()));
            (k.clone(), inner.clone())
        })
        .collect()
}

fn testdata(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("intake-v2/testdata"))
        .expect("testdata directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    files.sort();
    files
}

fn file_name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or_default()
}

#[test]
fn valid_samples_pass() {
    let dir = common::require_spec!();
    let v = common::validators().expect("validators");
    let mut validated: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for path in testdata(&dir) {
        let name = file_name(&path);
        // RUM payloads use browser-only fields a backend agent never sends.
        if name.starts_with("invalid-") || name.contains("_rum") {
            continue;
        }
        for (i, (kind, event)) in events(&path).into_iter().enumerate() {
            // Kinds without a schema here (e.g. `log` in logs.ndjson) are not ours to check.
            let Some(errors) = v.errors(&kind, &event) else {
                continue;
            };
            *validated.entry(kind.clone()).or_default() += 1;
            if !errors.is_empty() {
                failures.push(format!(
                    "{name} line {i} ({kind}):\n  {}",
                    errors.join("\n  ")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "valid samples rejected:\n{}",
        failures.join("\n")
    );
    for kind in common::SCHEMA_KINDS {
        assert!(
            validated.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} sample validated: {validated:?}"
        );
    }
    eprintln!("validated sample events: {validated:?}");
}

#[test]
fn invalid_samples_fail() {
    let dir = common::require_spec!();
    let v = common::validators().expect("validators");
    let td = dir.join("intake-v2/testdata");

    // invalid-event.ndjson: a valid metadata line, then a transaction with a numeric id and no
    // trace context the schema accepts.
    let lines = events(&td.join("invalid-event.ndjson"));
    let verdicts: Vec<(String, bool)> = lines
        .iter()
        .map(|(k, e)| (k.clone(), v.errors(k, e).expect("known kind").is_empty()))
        .collect();
    assert_eq!(verdicts[0], ("metadata".into(), true), "{verdicts:?}");
    assert!(
        verdicts[1..].iter().any(|(_, ok)| !ok),
        "no event of invalid-event.ndjson was rejected: {verdicts:?}"
    );
    let tx_errors = v.errors("transaction", &lines[1].1).expect("known kind");
    assert!(
        tx_errors.iter().any(|e| e.starts_with("/id")),
        "{tx_errors:?}"
    );

    // invalid-metadata.ndjson: metadata without the required service.
    let (kind, meta) = &events(&td.join("invalid-metadata.ndjson"))[0];
    assert_eq!(kind, "metadata");
    assert!(!v.errors(kind, meta).expect("known kind").is_empty());

    // All six, posted to the stand-in, are rejected with a 400 as the APM Server rejects
    // them: two by a schema, four by the stream rules.
    for (file, why) in [
        (
            "invalid-event.ndjson",
            "violates intake-v2/transaction.json",
        ),
        (
            "invalid-metadata.ndjson",
            "violates intake-v2/metadata.json",
        ),
        ("invalid-metadata-2.ndjson", "not metadata"),
        ("invalid-event-type.ndjson", "unknown event kind"),
        ("invalid-json-event.ndjson", "invalid JSON"),
        ("invalid-json-metadata.ndjson", "invalid JSON"),
    ] {
        let body = std::fs::read(td.join(file)).expect("read");
        let server = MockServer::start();
        server.expect_violations();
        assert_eq!(post_intake(&server, &body), 400, "{file}");
        let violations = server.violations();
        assert!(
            violations.iter().any(|m| m.contains(why)),
            "{file}: {violations:?}"
        );
    }
}

#[test]
fn assert_valid_reports_every_error_with_paths() {
    let _dir = common::require_spec!();
    let bad = serde_json::json!({
        "id": 42,
        "trace_id": "0123456789abcdef0123456789abcdef",
        "type": "request",
        "duration": -1,
        "span_count": { "started": "many" }
    });
    let panic = std::panic::catch_unwind(|| common::assert_valid("transaction", &bad))
        .expect_err("an invalid transaction must fail");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    for needle in ["/id", "/span_count/started", "\"span_count\": {"] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
    // Kinds without a schema are not checked.
    common::assert_valid("log", &bad);
}

#[test]
fn validate_all_accepts_a_valid_stream() {
    let dir = common::require_spec!();
    let server = MockServer::start();
    let body = std::fs::read(dir.join("intake-v2/testdata/events.ndjson")).expect("read");
    assert_eq!(post_intake(&server, &body), 202);
    assert!(server.wait_for_requests(1, Duration::from_secs(10)));
    assert!(server.transactions().len() + server.spans().len() + server.errors().len() > 0);
    common::validate_all(&server);
}

/// Minimal blocking HTTP/1.1 POST to the intake endpoint; returns the status.
fn post_intake(server: &MockServer, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(server.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-ndjson\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        apm_tests::INTAKE_PATH,
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .expect("send");
    let mut reader = BufReader::new(s);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"))
}
