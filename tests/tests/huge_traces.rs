//! Handling huge traces (the spec's `handling-huge-traces/`): span compression, fast exit spans
//! dropped, `dropped_spans_stats`, and the transaction's `span_count` after both. Every event
//! validates against the intake schemas (`finish`).

mod common;

use std::time::Duration;

use common::agent;
use serde_json::Value;

/// A database exit span as a database integration records it.
fn query(name: &str, statement: &str) {
    let mut s = apm::start_span(name.to_owned(), "db");
    s.set_subtype("postgresql");
    s.set_action("query");
    s.set_exit();
    s.set_db("sql", Some("shop".into()), Some(statement.into()));
    s.set_outcome(apm::Outcome::Success);
}

fn names(spans: &[Value]) -> Vec<&str> {
    spans.iter().filter_map(|s| s["name"].as_str()).collect()
}

#[test]
fn an_n_plus_one_loop_becomes_one_composite_span() {
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("orders", "request");
        for _ in 0..200 {
            query("SELECT FROM items", "SELECT * FROM items WHERE id = $1");
        }
    }
    h.flush();
    let spans = h.spans();
    assert_eq!(names(&spans), ["SELECT FROM items"]);
    let composite = &spans[0]["composite"];
    assert_eq!(composite["compression_strategy"], "exact_match");
    assert_eq!(composite["count"], 200);
    let sum = composite["sum"].as_f64().unwrap_or(-1.0);
    let duration = spans[0]["duration"].as_f64().unwrap_or(-1.0);
    assert!(
        sum >= 0.0 && sum <= duration,
        "sum {sum} ms, duration {duration} ms"
    );
    assert_eq!(
        spans[0]["context"]["db"]["statement"],
        "SELECT * FROM items WHERE id = $1"
    );
    let txn = &h.transactions()[0];
    assert_eq!(txn["span_count"]["started"], 1);
    assert_eq!(txn["span_count"]["dropped"], 0);
    let stats = h.agent().stats();
    assert_eq!(stats.spans_compressed, 199);
    assert_eq!(
        stats.events_recorded,
        stats.events_sent + stats.spans_compressed,
        "{stats:?}"
    );
    h.finish();
}

#[test]
fn a_different_sibling_or_a_failure_ends_a_run() {
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("mixed", "request");
        query("SELECT FROM a", "SELECT * FROM a");
        query("SELECT FROM a", "SELECT * FROM a");
        // Not an exit span: the run ends here.
        drop(apm::start_span("render", "app"));
        query("SELECT FROM a", "SELECT * FROM a");
        let mut failed = apm::start_span("SELECT FROM a", "db");
        failed.set_subtype("postgresql");
        failed.set_exit();
        failed.set_db("sql", Some("shop".into()), None);
        failed.set_outcome(apm::Outcome::Failure);
        drop(failed);
        // Its context went out with a call: it stands alone.
        let mut propagated = apm::start_span("SELECT FROM a", "db");
        propagated.set_subtype("postgresql");
        propagated.set_exit();
        propagated.set_db("sql", Some("shop".into()), None);
        propagated.set_outcome(apm::Outcome::Success);
        propagated.inject(&mut Vec::<(String, String)>::new());
        drop(propagated);
        query("SELECT FROM a", "SELECT * FROM a");
    }
    h.flush();
    let spans = h.spans();
    let counts: Vec<(&str, i64)> = spans
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default(),
                s["composite"]["count"].as_i64().unwrap_or(1),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("SELECT FROM a", 2),
            ("render", 1),
            ("SELECT FROM a", 1),
            ("SELECT FROM a", 1),
            ("SELECT FROM a", 1),
            ("SELECT FROM a", 1),
        ],
        "{counts:?}"
    );
    assert_eq!(h.transactions()[0]["span_count"]["started"], 6);
    h.finish();
}

#[test]
fn same_kind_compression_names_the_destination() {
    let h = agent::start(|c| c.span_compression_same_kind_max_duration(Duration::from_secs(1)));
    {
        let _t = apm::start_transaction("report", "request");
        query("SELECT FROM a", "SELECT * FROM a");
        query("SELECT FROM b", "SELECT * FROM b");
        query("UPDATE c", "UPDATE c SET x = 1");
    }
    h.flush();
    let spans = h.spans();
    assert_eq!(names(&spans), ["Calls to postgresql/shop"]);
    assert_eq!(spans[0]["composite"]["compression_strategy"], "same_kind");
    assert_eq!(spans[0]["composite"]["count"], 3);
    h.finish();
}

#[test]
fn compression_can_be_turned_off() {
    let h = agent::start(|c| c.span_compression_enabled(false));
    {
        let _t = apm::start_transaction("orders", "request");
        for _ in 0..5 {
            query("SELECT FROM items", "SELECT * FROM items");
        }
    }
    h.flush();
    let spans = h.spans();
    assert_eq!(spans.len(), 5);
    assert!(spans.iter().all(|s| s.get("composite").is_none()));
    assert_eq!(h.transactions()[0]["span_count"]["started"], 5);
    h.finish();
}

#[test]
fn fast_exit_spans_are_dropped_and_counted_by_destination() {
    let h = agent::start(|c| {
        c.span_compression_enabled(false)
            .exit_span_min_duration(Duration::from_secs(60))
    });
    {
        let _t = apm::start_transaction("fast", "request");
        for _ in 0..3 {
            query("SELECT FROM items", "SELECT * FROM items");
        }
        let mut cache = apm::start_span("GET", "db");
        cache.set_subtype("redis");
        cache.set_exit();
        cache.set_db("redis", None, None);
        cache.set_outcome(apm::Outcome::Success);
        drop(cache);
        // Not an exit span: kept however fast.
        drop(apm::start_span("render", "app"));
    }
    h.flush();
    assert_eq!(names(&h.spans()), ["render"]);
    let txn = h.transactions()[0].clone();
    assert_eq!(txn["span_count"]["started"], 1);
    assert_eq!(txn["span_count"]["dropped"], 4);
    let stats = txn["dropped_spans_stats"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut by_resource: Vec<(String, i64)> = stats
        .iter()
        .map(|s| {
            assert_eq!(s["outcome"], "success");
            assert!(s["duration"]["sum"]["us"].as_i64().is_some(), "{s}");
            (
                s["destination_service_resource"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                s["duration"]["count"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    by_resource.sort();
    assert_eq!(
        by_resource,
        [("postgresql/shop".to_owned(), 3), ("redis".to_owned(), 1)]
    );
    h.finish();
}

#[test]
fn a_composite_is_dropped_whole_when_fast() {
    let h = agent::start(|c| c.exit_span_min_duration(Duration::from_secs(60)));
    {
        let _t = apm::start_transaction("fast", "request");
        for _ in 0..10 {
            query("SELECT FROM items", "SELECT * FROM items");
        }
    }
    h.flush();
    assert!(h.spans().is_empty());
    let txn = &h.transactions()[0];
    assert_eq!(txn["span_count"]["started"], 0);
    assert_eq!(txn["span_count"]["dropped"], 10);
    assert_eq!(txn["dropped_spans_stats"][0]["duration"]["count"], 10);
    let stats = h.agent().stats();
    assert_eq!((stats.spans_compressed, stats.spans_dropped_fast), (9, 1));
    assert_eq!(
        stats.events_recorded,
        stats.events_sent + stats.spans_compressed + stats.spans_dropped_fast,
        "{stats:?}"
    );
    h.finish();
}
