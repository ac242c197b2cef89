//! HTTPS to the APM Server: the certificate is verified against the built-in roots or
//! `server_ca_cert_file`, or not at all with `verify_server_cert = false`. The server is the
//! mock APM Server behind TLS, with a self-signed certificate for `localhost` (`tests/tls/`).

mod common;

use std::time::Duration;

use apm_tests::MockServer;
use common::agent::{self, record};

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tls/localhost.pem");
const KEY: &[u8] = include_bytes!("../tls/localhost.key");

fn tls_server() -> MockServer {
    let cert = std::fs::read(CERT).expect("tests/tls/localhost.pem");
    MockServer::start_tls(&cert, KEY)
}

#[test]
fn events_go_over_https_verified_against_server_ca_cert_file() {
    let h = agent::start_with(tls_server(), |c| c.server_ca_cert_file(CERT));
    record(3);
    assert!(h.agent().flush(Duration::from_secs(10)));
    assert_eq!(h.server.transactions().len(), 3);
    assert_eq!(h.server.spans().len(), 3);
    assert_eq!(h.server.with_recorded(|r| r.tls_handshake_failures()), 0);
    h.finish();
}

#[test]
fn a_certificate_no_root_vouches_for_is_refused_and_the_application_does_not_notice() {
    let h = agent::start_with(tls_server(), |c| c);
    record(3);
    assert!(!h.agent().flush(Duration::from_secs(10)));
    assert!(h.server.with_recorded(|r| r.tls_handshake_failures()) >= 1);
    assert!(h.server.transactions().is_empty());
    let stats = h.agent().stats();
    assert!(stats.requests_failed >= 1, "{stats:?}");
    assert_eq!(stats.events_sent, 0, "{stats:?}");
    h.finish();
}

#[test]
fn verify_server_cert_false_accepts_any_certificate() {
    let h = agent::start_with(tls_server(), |c| c.verify_server_cert(false));
    record(2);
    assert!(h.agent().flush(Duration::from_secs(10)));
    assert_eq!(h.server.transactions().len(), 2);
    h.finish();
}

#[test]
fn an_unreadable_server_ca_cert_file_fails_requests_not_the_application() {
    let h = agent::start_with(tls_server(), |c| {
        c.server_ca_cert_file("/nonexistent/apm-ca.pem")
    });
    record(1);
    assert!(!h.agent().flush(Duration::from_secs(10)));
    assert!(h.agent().stats().requests_failed >= 1);
    // Nothing was even attempted: the client could not be set up.
    assert_eq!(h.server.with_recorded(|r| r.tls_handshake_failures()), 0);
    assert!(h.server.requests().is_empty());
    h.finish();
}

#[test]
fn an_ip_address_url_is_verified_against_the_certificates_ip_names() {
    let server = tls_server();
    // The certificate names `localhost` and `IP:127.0.0.1`.
    let url = format!("https://127.0.0.1:{}", server.addr().port());
    let h = agent::start_with(server, |c| c.server_url(url).server_ca_cert_file(CERT));
    record(1);
    assert!(h.agent().flush(Duration::from_secs(10)));
    assert_eq!(h.server.transactions().len(), 1);
    h.finish();
}

#[test]
fn a_pinned_server_cert_is_trusted_without_any_ca() {
    // No root vouches for the self-signed certificate: the pin alone lets it through.
    let h = agent::start_with(tls_server(), |c| c.server_cert(CERT));
    record(2);
    assert!(h.agent().flush(Duration::from_secs(10)));
    assert_eq!(h.server.transactions().len(), 2);
    assert_eq!(h.server.with_recorded(|r| r.tls_handshake_failures()), 0);
    h.finish();
}

#[test]
fn a_server_presenting_another_certificate_than_the_pinned_one_is_refused() {
    // Another self-signed certificate for the same name: the right name is not enough.
    let other = concat!(env!("CARGO_MANIFEST_DIR"), "/tls/other-localhost.pem");
    let h = agent::start_with(tls_server(), |c| c.server_cert(other));
    record(2);
    assert!(!h.agent().flush(Duration::from_secs(10)));
    assert!(h.server.with_recorded(|r| r.tls_handshake_failures()) >= 1);
    assert!(h.server.transactions().is_empty());
    assert!(h.agent().stats().requests_failed >= 1);
    h.finish();
}
