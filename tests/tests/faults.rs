//! The APM Server misbehaving in each way the stand-in can: the connection reset mid-body,
//! 413, 429 and 503 with a body and without, a stall before the answer's head, garbage, a close
//! before answering, an expired certificate and one for another host. For each, the
//! application is not held up, every event is delivered or counted as dropped, and once the
//! server behaves again, new events are delivered.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use apm_tests::{Fault, MockServer};
use common::agent::{self, Harness};

/// Transactions of one span each: two events per transaction.
fn record(n: usize) -> u64 {
    for i in 0..n {
        let _t = apm::start_transaction(format!("tx{i}"), "custom");
        let _s = apm::start_span("work", "app");
    }
    2 * n as u64
}

/// Records on another thread, which must be done within a bound however the server behaves:
/// a blocked application fails the test instead of hanging it.
fn record_unhindered(n: usize) -> u64 {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(record(n));
    });
    finished
        .recv_timeout(Duration::from_secs(30))
        .expect("recording was held up by the APM Server")
}

fn delivered(server: &MockServer) -> u64 {
    server.with_recorded(|r| (r.count("transaction") + r.count("span")) as u64)
}

/// recorded = delivered + dropped (by reason), and the server saw exactly what was delivered.
fn assert_accounted(recorded: u64, h: &Harness) {
    assert_eq!(h.agent().stats().events_sent, delivered(&h.server));
    assert_counted(recorded, h);
}

/// recorded = delivered + dropped (by reason), as the agent counts them.
fn assert_counted(recorded: u64, h: &Harness) {
    let stats = h.agent().stats();
    assert_eq!(stats.events_recorded, recorded, "{stats:#?}");
    assert_eq!(
        recorded,
        stats.events_sent
            + stats.events_dropped_queue_full
            + stats.events_dropped_send_failed
            + stats.events_dropped_encode_failed
            + stats.events_dropped_shutdown,
        "{stats:#?}"
    );
}

/// Events recorded while the server misbehaves are not delivered and are counted; events
/// recorded once it behaves again are delivered.
fn survives(h: Harness, misbehave: impl FnOnce(&MockServer)) {
    misbehave(&h.server);
    let recorded = record_unhindered(20);
    assert!(
        !h.agent().flush(Duration::from_secs(10)),
        "a failing server"
    );
    assert_eq!(delivered(&h.server), 0);
    let stats = h.agent().stats();
    assert!(stats.requests_failed >= 1, "{stats:#?}");
    assert_accounted(recorded, &h);
    recovers(h, recorded);
}

/// Once the server behaves again, new events are delivered, and the count still adds up.
fn recovers(h: Harness, mut recorded: u64) {
    h.server.reset_behaviour();
    recorded += record(5);
    // After failures the spec's backoff delays the next request (up to a few seconds here).
    assert!(
        h.server
            .wait_for(|r| r.count("transaction") >= 5, Duration::from_secs(60)),
        "nothing delivered once the server behaved: {:#?}",
        h.agent().stats()
    );
    assert!(h.agent().flush(Duration::from_secs(30)));
    assert_eq!(delivered(&h.server), 10);
    assert_accounted(recorded, &h);
    h.finish();
}

fn start() -> Harness {
    // Metrics off: every event counted is one the test recorded.
    agent::start(|c| {
        c.metrics_interval(Duration::ZERO)
            .api_request_time(Duration::from_millis(100))
    })
}

#[test]
fn a_connection_reset_mid_body() {
    survives(start(), |s| s.set_fault(Fault::ResetMidBody));
}

#[test]
fn a_close_before_the_answer() {
    survives(start(), |s| s.set_fault(Fault::CloseBeforeAnswer));
}

#[test]
fn garbage_instead_of_http() {
    survives(start(), |s| s.set_fault(Fault::Garbage));
}

#[test]
fn payload_too_large_with_and_without_a_body() {
    survives(start(), |s| {
        s.set_intake_response(413, r#"{"error":"request body too large"}"#)
    });
    survives(start(), |s| s.set_intake_response(413, ""));
}

#[test]
fn too_many_requests_and_unavailable_with_and_without_a_body() {
    survives(start(), |s| {
        s.set_intake_response(429, r#"{"error":"rate limit exceeded"}"#)
    });
    survives(start(), |s| {
        s.set_intake_response(503, r#"{"error":"queue is full"}"#)
    });
    survives(start(), |s| s.set_intake_response(503, ""));
}

#[test]
fn a_stall_before_the_answer_head_past_server_timeout() {
    let h = agent::start(|c| {
        c.metrics_interval(Duration::ZERO)
            .api_request_time(Duration::from_millis(100))
            .server_timeout(Duration::from_millis(500))
    });
    h.server.set_intake_delay(Duration::from_secs(600));
    let recorded = record_unhindered(20);
    assert!(
        !h.agent().flush(Duration::from_secs(10)),
        "a stalled server"
    );
    let stats = h.agent().stats();
    assert!(stats.requests_failed >= 1, "{stats:#?}");
    // The server read the events before it stalled: it may well keep them, but the agent
    // cannot know, and counts them as dropped.
    assert_eq!(stats.events_sent, 0, "{stats:#?}");
    assert_counted(recorded, &h);
    h.server.reset();
    recovers(h, recorded);
}

const KEY_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tls");

/// A TLS server presenting `name`'s certificate, which the agent trusts as a CA (so that only
/// what is wrong with the certificate itself can fail the handshake).
fn tls_with(name: &str) -> (MockServer, String) {
    let cert = format!("{KEY_DIR}/{name}.pem");
    let pem = std::fs::read(&cert).expect("a test certificate");
    let key = std::fs::read(format!("{KEY_DIR}/{name}.key")).expect("a test key");
    (MockServer::start_tls(&pem, &key), cert)
}

fn refused_then_nothing_held_up(name: &str) {
    let (server, cert) = tls_with(name);
    let h = agent::start_with(server, |c| {
        c.metrics_interval(Duration::ZERO).server_ca_cert_file(cert)
    });
    let recorded = record_unhindered(20);
    assert!(!h.agent().flush(Duration::from_secs(10)));
    assert!(h.server.with_recorded(|r| r.tls_handshake_failures()) >= 1);
    assert_eq!(delivered(&h.server), 0);
    assert_accounted(recorded, &h);
    h.finish();
}

#[test]
fn an_expired_certificate_is_refused() {
    refused_then_nothing_held_up("expired-localhost");
}

#[test]
fn a_certificate_for_another_host_is_refused() {
    refused_then_nothing_held_up("wrong-host");
}
