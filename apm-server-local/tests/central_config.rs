//! Central configuration from a local file: per service over `*`, ETag and 304, re-read when
//! the file changes, GET and POST.

mod common;

use common::{get, post};
use serde_json::json;

#[test]
fn served_from_the_file_with_etags_and_reloaded_on_change() {
    let dir = std::env::temp_dir().join(format!("apm-server-local-cc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("agents.json");
    std::fs::write(&file, r#"{"*": {"transaction_sample_rate": "0.5"}}"#).expect("write");
    let server = common::server(|o| o.config_file = Some(file.clone()));
    let addr = server.addr();

    let r = get(
        addr,
        "/config/v1/agents?service.name=shop&service.environment=dev",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"transaction_sample_rate": "0.5"}));
    assert_eq!(
        r.header("cache-control"),
        Some("max-age=30, must-revalidate")
    );
    let etag = r.header("etag").expect("etag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    let r = common::send(
        addr,
        format!(
            "GET /config/v1/agents?service.name=shop HTTP/1.1\r\nIf-None-Match: {etag}\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());

    std::fs::write(
        &file,
        r#"{"*": {"transaction_sample_rate": "0.5"}, "shop": {"transaction_sample_rate": "0.1", "log_level": "debug"}}"#,
    )
    .expect("rewrite");
    let r = post(
        addr,
        "/config/v1/agents",
        &format!("Content-Type: application/json\r\nIf-None-Match: {etag}\r\n"),
        br#"{"service": {"name": "shop"}}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"transaction_sample_rate": "0.1", "log_level": "debug"})
    );
    assert_ne!(r.header("etag"), Some(etag.as_str()));

    let r = get(addr, "/config/v1/agents");
    assert_eq!(
        (r.status, r.json()),
        (400, json!({"error": "service.name is required"}))
    );
    let _ = std::fs::remove_dir_all(&dir);
}
