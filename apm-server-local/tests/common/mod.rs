//! Shared by the local server's integration tests: a server on an ephemeral port, a raw HTTP
//! client, the skip rule for tools that may be missing, and one known trace recorded by our
//! agent.

#![allow(dead_code)]

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use apm_server_local::{Options, Output, Server};
use serde_json::Value;

pub const T: Duration = Duration::from_secs(20);

pub const META: &str =
    r#"{"metadata":{"service":{"name":"svc","agent":{"name":"rust","version":"1"}}}}"#;

/// A quiet server on `127.0.0.1:0`, `configure`d; settles traces after 100 ms.
pub fn server(configure: impl FnOnce(&mut Options)) -> Server {
    let mut opts = Options {
        addr: "127.0.0.1:0".into(),
        output: Output::Quiet,
        settle: Duration::from_millis(100),
        ..Options::default()
    };
    configure(&mut opts);
    Server::start(opts).expect("start the local APM Server")
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Says why the test is skipped and returns; under `CI=true` fails instead, since CI
/// installs everything the tests need.
pub fn skip(why: &str) {
    assert!(!under_ci(), "{why}, and CI=true: .ci/run installs it");
    eprintln!("{why}; skipping");
}

/// The schemas, or `false` after [`skip`] (the spec files were absent at build time).
pub fn validating(server: &Server) -> bool {
    if server.schema_source().is_some() {
        return true;
    }
    skip("apm-server-local was built without the intake v2 schemas (no spec files)");
    false
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        apm_server_local::http::header(&self.headers, name)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `raw` on a new connection and reads one response.
pub fn send(addr: SocketAddr, raw: &[u8]) -> Reply {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(T)).expect("timeout");
    let mut w = s.try_clone().expect("clone");
    w.write_all(raw).expect("write");
    let r = apm_server_local::http::read_response(&mut BufReader::new(s)).expect("response");
    Reply {
        status: r.status,
        headers: r.headers,
        body: r.body,
    }
}

/// `POST /intake/v2/events` with `extra` header lines (each ending `\r\n`).
pub fn post(addr: SocketAddr, path: &str, extra: &str, body: &[u8]) -> Reply {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    send(addr, &raw)
}

pub fn get(addr: SocketAddr, target: &str) -> Reply {
    send(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
}

pub fn ndjson(lines: &[&str]) -> Vec<u8> {
    let mut s = lines.join("\n");
    s.push('\n');
    s.into_bytes()
}

/// One trace from our agent, sent to `server`: transaction `name` (failure) with a database
/// span, an HTTP exit span with a label, and an error inside the database span. Returns the
/// trace id.
pub fn record_known_trace(server: &Server, name: &'static str) -> String {
    record_known_trace_to(&server.url(), name)
}

/// [`record_known_trace`] to the server at `url`. One at a time: the agent is process-wide.
pub fn record_known_trace_to(url: &str, name: &'static str) -> String {
    static ONE_AGENT_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _exclusive = ONE_AGENT_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let agent = apm::init_with(
        apm::Config::builder()
            .service_name("shop")
            .server_url(url)
            .central_config(false)
            .metrics_interval(Duration::ZERO)
            .build(),
    );
    let trace_id;
    {
        let t = apm::start_transaction(name, "request");
        trace_id = t.trace_id().expect("sampled transaction");
        t.set_outcome(apm::Outcome::Failure);
        {
            let mut db = apm::start_span("SELECT FROM users", "db");
            db.set_subtype("sqlite");
            db.set_action("query");
            db.set_db(
                "sqlite",
                None,
                Some("SELECT name FROM users WHERE id = 7".into()),
            );
            let e = std::io::Error::other("disk on fire");
            apm::capture_error!(e);
        }
        {
            let mut http = apm::start_span("GET pricing", "external");
            http.set_subtype("http");
            http.set_exit();
            http.set_http_request("GET", "http://pricing.local/items/7");
            http.set_http_status(200);
            http.set_label("region", "eu-west");
        }
    }
    assert!(agent.flush(T), "flush: {:?}", agent.stats());
    drop(agent);
    trace_id
}
