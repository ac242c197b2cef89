//! Central configuration (`apm-config` thread) against the mock APM Server: the request, ETag
//! and `Cache-Control` handling, settings applied live and reverted, bad settings ignored,
//! and the off switch.
//!
//! Synchronisation: the server records a request before answering it, so seeing poll N does
//! not mean its answer is applied yet. The agent sends an ETag back only after applying the
//! answer that carried it, so a request with `If-None-Match: "vN"` proves that configuration
//! `vN` is in force. Polls are `max-age=5` apart (the agent's floor), which sets the pace.

mod common;

use std::time::Duration;

use apm_tests::{MockServer, Recorded, RecordedRequest, CONFIG_PATH};
use common::agent::{self, agent_threads, Harness};
use serde_json::json;

/// The `max-age` served in these tests, and the agent's minimum interval.
const MAX_AGE: u32 = 5;
/// Long enough for two polls `MAX_AGE` apart on a slow machine.
const POLL_TIMEOUT: Duration = Duration::from_secs(30);

fn config_requests(r: &Recorded) -> Vec<&RecordedRequest> {
    r.requests()
        .iter()
        .filter(|q| q.path == CONFIG_PATH)
        .collect()
}

/// Waits for the `n`th configuration request (from 1); returns all of them so far.
fn wait_for_polls(h: &Harness, n: usize) -> Vec<RecordedRequest> {
    assert!(
        h.server
            .wait_for(|r| config_requests(r).len() >= n, POLL_TIMEOUT),
        "no configuration request #{n} within {POLL_TIMEOUT:?}: {:#?}",
        h.server.requests()
    );
    h.server
        .with_recorded(|r| config_requests(r).into_iter().cloned().collect())
}

/// Waits for a poll that sends back `etag`: the configuration it names is in force.
fn wait_until_applied(h: &Harness, etag: &str) {
    let quoted = format!("\"{etag}\"");
    assert!(
        h.server.wait_for(
            |r| config_requests(r)
                .iter()
                .any(|q| q.header("If-None-Match") == Some(quoted.as_str())),
            POLL_TIMEOUT
        ),
        "no poll with If-None-Match: {quoted} within {POLL_TIMEOUT:?}: {:#?}",
        h.server.with_recorded(|r| config_requests(r)
            .iter()
            .map(|q| (q.status, q.header("If-None-Match").map(str::to_owned)))
            .collect::<Vec<_>>())
    );
}

fn server_with(body: serde_json::Value, etag: &str, max_age: Option<u32>) -> MockServer {
    let server = MockServer::start();
    server.set_central_config(body, etag, max_age);
    server
}

/// Starts, checks and ends a transaction named `name`; returns whether it was sampled.
fn transaction(name: &'static str) -> bool {
    let t = apm::start_transaction(name, "custom");
    t.is_sampled()
}

#[test]
fn polls_with_the_service_credentials_and_the_last_etag_honouring_max_age() {
    let server = server_with(
        json!({ "transaction_sample_rate": "0" }),
        "v1",
        Some(MAX_AGE),
    );
    let h = agent::start_with(server, |c| {
        c.environment("staging eu").secret_token("s3cr3t")
    });
    if std::path::Path::new("/proc/self/task").is_dir() {
        assert!(
            agent_threads().contains(&"apm-config".to_owned()),
            "{:?}",
            agent_threads()
        );
    }
    let polls = wait_for_polls(&h, 3);
    let (first, second, third) = (&polls[0], &polls[1], &polls[2]);

    assert_eq!(first.method, "GET");
    assert_eq!(
        first.query_param("service.name").as_deref(),
        Some("apm-tests")
    );
    assert_eq!(
        first.query_param("service.environment").as_deref(),
        Some("staging eu")
    );
    assert_eq!(first.header("Authorization"), Some("Bearer s3cr3t"));
    assert!(first
        .header("User-Agent")
        .is_some_and(|ua| ua.starts_with("apm-agent-rust/")));
    assert_eq!(first.header("If-None-Match"), None, "no ETag known yet");
    assert_eq!(first.status, 200);

    // The ETag of the applied answer comes back; the server answers 304 Not Modified.
    for poll in [second, third] {
        assert_eq!(poll.header("If-None-Match"), Some("\"v1\""));
        assert_eq!(poll.header("Authorization"), Some("Bearer s3cr3t"));
        assert_eq!(poll.status, 304);
    }
    let max_age = Duration::from_secs(MAX_AGE.into());
    for (earlier, later) in [(first, second), (second, third)] {
        let gap = later.arrived.duration_since(earlier.arrived);
        assert!(
            gap >= max_age,
            "polled again after {gap:?} < max-age {max_age:?}"
        );
    }

    // The third poll follows the 304 the second one got: the central value is still in force.
    assert!(
        !transaction("after 304"),
        "a 304 must keep the central value"
    );
    h.flush();
    assert!(h.transactions().is_empty(), "unsampled: not sent to 8.x");
    h.finish();
}

#[test]
fn a_central_sample_rate_applies_within_one_poll_and_reverts_when_removed() {
    let server = server_with(json!({}), "v0", Some(MAX_AGE));
    let h = agent::start_with(server, |c| c.transaction_sample_rate(1.0));
    wait_for_polls(&h, 1);
    assert!(transaction("before"));

    h.server.set_central_config(
        json!({ "transaction_sample_rate": "0" }),
        "v1",
        Some(MAX_AGE),
    );
    wait_until_applied(&h, "v1");
    assert!(!transaction("central rate 0"));

    // Removed in Kibana: the local rate is back.
    h.server.set_central_config(json!({}), "v2", Some(MAX_AGE));
    wait_until_applied(&h, "v2");
    assert!(transaction("after"));

    h.flush();
    let names: Vec<_> = h.transactions().iter().map(|t| t["name"].clone()).collect();
    assert_eq!(names, [json!("before"), json!("after")]);
    h.finish();
}

#[test]
fn a_central_use_elastic_traceparent_header_applies_to_the_next_call() {
    fn legacy_header_injected() -> bool {
        let _t = apm::start_transaction("outgoing call", "custom");
        let mut out: Vec<(String, String)> = Vec::new();
        apm::inject_headers(&mut out);
        assert!(out.iter().any(|(k, _)| k == "traceparent"), "{out:?}");
        out.iter().any(|(k, _)| k == "elastic-apm-traceparent")
    }
    let h = agent::start_with(server_with(json!({}), "v0", Some(MAX_AGE)), |c| c);
    wait_for_polls(&h, 1);
    assert!(legacy_header_injected());
    h.server.set_central_config(
        json!({ "use_elastic_traceparent_header": "false" }),
        "v1",
        Some(MAX_AGE),
    );
    wait_until_applied(&h, "v1");
    assert!(!legacy_header_injected());
    h.finish();
}

/// Twice the minimum interval: a poll that waited only the minimum would come within it.
/// (That the wait is then five minutes is pinned by the unit tests of
/// `apm/src/agent/central_config.rs`; a test cannot wait that long.)
const LONGER_THAN_THE_MINIMUM: Duration = Duration::from_secs(2 * MAX_AGE as u64);

#[test]
fn without_max_age_the_next_poll_waits_longer_than_the_minimum_interval() {
    let h = agent::start_with(server_with(json!({}), "v1", None), |c| c);
    wait_for_polls(&h, 1);
    assert!(
        !h.server
            .wait_for(|r| config_requests(r).len() >= 2, LONGER_THAN_THE_MINIMUM),
        "polled again within {LONGER_THAN_THE_MINIMUM:?} without max-age: {:#?}",
        h.server.requests()
    );
    h.finish();
}

#[test]
fn after_an_error_without_max_age_the_next_poll_waits_longer_than_the_minimum_interval() {
    let server = MockServer::start();
    // The mock's error answers carry no Cache-Control.
    server.set_central_config_status(503);
    let h = agent::start_with(server, |c| c);
    let polls = wait_for_polls(&h, 1);
    assert_eq!(polls[0].status, 503);
    assert!(
        !h.server
            .wait_for(|r| config_requests(r).len() >= 2, LONGER_THAN_THE_MINIMUM),
        "polled again within {LONGER_THAN_THE_MINIMUM:?} after an error: {:#?}",
        h.server.requests()
    );
    assert!(transaction("local config in force"));
    h.finish();
}

#[test]
fn invalid_values_and_unknown_options_are_ignored_while_valid_ones_apply() {
    let server = server_with(
        json!({
            "transaction_sample_rate": "abc",
            "no_such_option": "1",
            "service_name": "not-dynamic",
            "transaction_max_spans": "1",
        }),
        "v1",
        Some(MAX_AGE),
    );
    let h = agent::start_with(server, |c| c.transaction_sample_rate(1.0));
    wait_until_applied(&h, "v1");
    {
        let t = apm::start_transaction("three spans", "custom");
        assert!(t.is_sampled(), "the invalid rate was ignored");
        for _ in 0..3 {
            let _s = apm::start_span("work", "app");
        }
    }
    h.flush();
    let txs = h.transactions();
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0]["span_count"]["started"], 1, "{:#}", txs[0]);
    assert_eq!(txs[0]["span_count"]["dropped"], 2, "{:#}", txs[0]);
    assert_eq!(h.spans().len(), 1);
    assert!(
        h.server
            .metadata()
            .iter()
            .all(|m| m["service"]["name"] == "apm-tests"),
        "service_name is not dynamic"
    );
    h.finish();
}

#[test]
fn central_recording_false_records_nothing_but_polling_goes_on() {
    let server = server_with(json!({ "recording": "false" }), "v1", Some(MAX_AGE));
    let h = agent::start_with(server, |c| c);
    wait_until_applied(&h, "v1");
    {
        let t = apm::start_transaction("not recorded", "custom");
        assert!(t.id().is_none());
        let s = apm::start_span("not recorded", "app");
        assert!(!s.is_recording());
        apm::capture_error!(std::io::Error::other("not recorded either"));
    }
    h.flush();
    assert!(h.transactions().is_empty() && h.spans().is_empty() && h.errors().is_empty());

    h.server
        .set_central_config(json!({ "recording": "true" }), "v2", Some(MAX_AGE));
    wait_until_applied(&h, "v2");
    {
        let t = apm::start_transaction("recorded again", "custom");
        assert!(t.id().is_some());
    }
    h.flush();
    let txs = h.transactions();
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0]["name"], "recorded again");
    h.finish();
}

#[test]
fn central_config_false_starts_no_thread_and_asks_nothing() {
    let h = agent::start(|c| c.central_config(false));
    assert!(
        !agent_threads().contains(&"apm-config".to_owned()),
        "{:?}",
        agent_threads()
    );
    assert!(transaction("local"));
    h.flush();
    assert!(
        !h.server
            .wait_for(|r| !config_requests(r).is_empty(), Duration::from_secs(1)),
        "asked for central configuration: {:#?}",
        h.server.requests()
    );
    assert_eq!(h.transactions().len(), 1);
    h.finish();
}
