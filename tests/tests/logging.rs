//! The agent's own diagnostics: through the `log` facade, honouring `log_level`, secrets
//! redacted, and rate-limited while a problem lasts.

mod common;

use std::time::Duration;

use common::agent;
use common::log_capture::{capture, lines_containing, LINES};
use log::Level;

#[test]
fn the_start_line_states_version_and_configuration_with_sources_and_no_secret() {
    let h = agent::start(|c| {
        capture();
        c.secret_token("s3cr3t-token").api_key("k3y-value")
    });
    let started = lines_containing("started");
    assert_eq!(started.len(), 1, "{:?}", LINES.lock());
    let (level, line) = &started[0];
    assert_eq!(*level, Level::Info);
    assert!(line.contains(env!("CARGO_PKG_VERSION")));
    assert!(line.contains("secret_token=[REDACTED] (code)"), "{line}");
    assert!(line.contains("api_key=[REDACTED] (code)"), "{line}");
    assert!(line.contains("service_name=apm-tests (code)"), "{line}");
    assert!(
        line.contains("transaction_max_spans=500 (default)"),
        "{line}"
    );
    assert!(!line.contains("s3cr3t-token") && !line.contains("k3y-value"));
    h.finish();
}

#[test]
fn a_server_that_stays_down_is_reported_once_not_per_request() {
    let url = format!("http://{}", common::refused_addr());
    let h = agent::start(|c| {
        capture();
        c.server_url(url)
    });
    // Two failed requests in a row (the first failure has no grace period before the next).
    for _ in 0..2 {
        drop(apm::start_transaction("lost", "custom"));
        assert!(!h.agent().flush(Duration::from_secs(5)));
    }
    let failed = h.agent().stats().requests_failed;
    assert!(failed >= 2, "{failed} failed requests");
    let reported = lines_containing("could not send");
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(reported[0].0, Level::Warn);
    h.finish();
}

#[test]
fn log_level_off_silences_the_agent() {
    let h = agent::start(|c| {
        capture();
        c.log_level(apm::config::LogLevel::Off)
            .transaction_sample_rate(7.0)
    });
    assert!(LINES.lock().is_empty(), "{:?}", LINES.lock());
    h.finish();
}

#[test]
fn an_invalid_value_is_reported_once() {
    let h = agent::start(|c| {
        capture();
        c.transaction_sample_rate(7.0)
    });
    let warned = lines_containing("transaction_sample_rate");
    let warnings: Vec<_> = warned.iter().filter(|(l, _)| *l == Level::Warn).collect();
    assert_eq!(warnings.len(), 1, "{:?}", LINES.lock());
    h.finish();
}
