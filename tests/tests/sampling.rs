//! Sampling decisions, `sample_rate` on the wire, unsampled transactions by server version,
//! and `transaction_max_spans`.

mod common;

use apm_tests::MockServer;
use common::agent;

fn server_version(version: &str) -> MockServer {
    let server = MockServer::start();
    server.set_server_version(version);
    server
}

fn record(n: usize, spans_each: usize) {
    for i in 0..n {
        let _t = apm::start_transaction(format!("tx{i}"), "custom");
        for _ in 0..spans_each {
            let _s = apm::start_span("work", "app");
        }
    }
}

#[test]
fn rate_one_samples_everything() {
    let h = agent::start(|c| c.transaction_sample_rate(1.0));
    record(20, 2);
    h.flush();
    let txs = h.transactions();
    assert_eq!(txs.len(), 20);
    assert!(txs
        .iter()
        .all(|t| t["sampled"] == true && t["sample_rate"] == 1.0));
    assert_eq!(h.spans().len(), 40);
    h.finish();
}

#[test]
fn rate_zero_sends_unsampled_transactions_to_servers_before_8() {
    let h = agent::start_with(server_version("7.17.0"), |c| c.transaction_sample_rate(0.0));
    record(10, 3);
    h.flush();
    let txs = h.transactions();
    assert_eq!(txs.len(), 10);
    for t in &txs {
        assert_eq!(t["sampled"], false);
        assert_eq!(t["sample_rate"], 0.0);
        assert_eq!(t["span_count"]["started"], 0);
        assert!(
            t.get("context").is_none(),
            "unsampled transactions carry no context"
        );
    }
    assert!(h.spans().is_empty());
    h.finish();
}

#[test]
fn an_unknown_server_version_is_taken_as_one_that_wants_unsampled_transactions() {
    // The server information cannot be had: sending unsampled transactions to a server that
    // does not need them costs a little; not sending them to one that does loses its
    // transaction counts.
    let server = MockServer::start();
    server.set_server_info_status(503);
    let h = agent::start_with(server, |c| c.transaction_sample_rate(0.0));
    record(4, 1);
    h.flush();
    assert!(h.server.with_recorded(|r| r
        .requests()
        .iter()
        .any(|q| q.path == "/" && q.status == 503)));
    let txs = h.transactions();
    assert_eq!(txs.len(), 4);
    assert!(txs.iter().all(|t| t["sampled"] == false));
    h.finish();
}

#[test]
fn rate_zero_sends_nothing_to_servers_from_8_on() {
    let h = agent::start_with(server_version("8.15.0"), |c| c.transaction_sample_rate(0.0));
    record(10, 3);
    h.flush();
    assert!(h.transactions().is_empty() && h.spans().is_empty());
    // It asked the server's version.
    assert!(h.server.with_recorded(|r| r
        .requests()
        .iter()
        .any(|q| q.method == "GET" && q.path == "/")));
    h.finish();
}

#[test]
fn rate_half_samples_about_half_and_says_so() {
    let h = agent::start_with(server_version("7.17.0"), |c| {
        c.transaction_sample_rate(0.5).max_queue_size(100_000)
    });
    let n = 4000;
    record(n, 1);
    h.flush();
    let txs = h.transactions();
    assert_eq!(txs.len(), n);
    let sampled: Vec<_> = txs.iter().filter(|t| t["sampled"] == true).collect();
    // Binomial(4000, 0.5): 6 standard deviations is ±190.
    assert!(
        (1810..=2190).contains(&sampled.len()),
        "{} sampled of {n}",
        sampled.len()
    );
    assert!(sampled.iter().all(|t| t["sample_rate"] == 0.5));
    assert!(txs
        .iter()
        .filter(|t| t["sampled"] == false)
        .all(|t| t["sample_rate"] == 0.0));
    let spans = h.spans();
    assert_eq!(spans.len(), sampled.len());
    assert!(spans.iter().all(|s| s["sample_rate"] == 0.5));
    h.finish();
}

#[test]
fn rate_is_rounded_to_four_decimals() {
    let h = agent::start_with(server_version("7.17.0"), |c| {
        c.transaction_sample_rate(0.123456)
    });
    record(200, 0);
    h.flush();
    let txs = h.transactions();
    assert_eq!(txs.len(), 200);
    let sampled: Vec<_> = txs.iter().filter(|t| t["sampled"] == true).collect();
    // Binomial(200, 0.1235): none sampled has a probability below 1e-11.
    assert!(!sampled.is_empty());
    assert!(
        sampled.iter().all(|t| t["sample_rate"] == 0.1235),
        "{sampled:#?}"
    );
    h.finish();
}

#[test]
fn spans_beyond_the_limit_are_counted_not_sent() {
    let h = agent::start(|c| c.transaction_max_spans(500).max_queue_size(10_000));
    record(1, 600);
    {
        let _t = apm::start_transaction("nested", "custom");
        let _outer = apm::start_span("outer", "app");
        for _ in 0..3 {
            let _s = apm::start_span("inner", "app");
        }
    }
    h.flush();
    let txs = h.transactions();
    let big = agent::named(&txs, "tx0");
    assert_eq!(big["span_count"]["started"], 500);
    assert_eq!(big["span_count"]["dropped"], 100);
    let spans = h.spans();
    assert_eq!(
        spans
            .iter()
            .filter(|s| s["transaction_id"] == big["id"])
            .count(),
        500
    );
    let nested = agent::named(&txs, "nested");
    assert_eq!(nested["span_count"]["started"], 4);
    h.finish();
}
