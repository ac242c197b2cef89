//! Breakdown metrics: per transaction group, the self time of each span type (its duration
//! minus the time covered by its children, overlapping children counted once) and the
//! transaction's own self time as type `app`; checked against the trace the server received.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::task::Context;
use std::time::{Duration, Instant};

use common::agent::{self, named, Yield};
use serde_json::Value;

/// Burns CPU for `ms` (work of a known length, not synchronisation).
fn spin(ms: u64) {
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

#[apm::span(kind = "external", subtype = "http")]
async fn call(ms: u64) {
    spin(ms);
    Yield(true).await;
    spin(ms);
}

/// A transaction whose `db` span has two overlapping `external` children.
#[apm::transaction(name = "breakdown", kind = "request")]
fn constructed_trace() {
    spin(3);
    let _db = apm::start_span("query", "db");
    spin(2);
    let mut a = Box::pin(call(4));
    let mut b = Box::pin(call(4));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    // a starts, b starts, a ends, b ends: the children overlap.
    assert!(a.as_mut().poll(&mut cx).is_pending());
    assert!(b.as_mut().poll(&mut cx).is_pending());
    assert!(a.as_mut().poll(&mut cx).is_ready());
    assert!(b.as_mut().poll(&mut cx).is_ready());
    spin(2);
}

/// The transaction's own self time (`app`) in the breakdown metricsets of transactions named
/// `name`, once they have arrived.
fn app_self_time_us(h: &agent::Harness, name: &str) -> f64 {
    let is_app = |m: &Value| m["transaction"]["name"] == name && m["span"]["type"] == "app";
    let found = h.server.wait_for(
        |r| r.events_of("metricset").any(is_app),
        Duration::from_secs(10),
    );
    assert!(found, "breakdown metricsets of {name:?} did not arrive");
    h.server.with_recorded(|r| {
        r.events_of("metricset")
            .filter(|m| is_app(m))
            .filter_map(|m| m["samples"]["span.self_time.sum.us"]["value"].as_f64())
            .sum()
    })
}

fn start_us(e: &Value) -> f64 {
    e["timestamp"].as_u64().expect("a timestamp") as f64
}
fn end_us(e: &Value) -> f64 {
    start_us(e) + e["duration"].as_f64().expect("a duration") * 1000.0
}

#[test]
fn self_times_are_durations_minus_the_union_of_children() {
    let h = agent::start(|c| {
        c.metrics_interval(Duration::from_millis(100))
            .api_request_time(Duration::from_millis(50))
    });
    constructed_trace();
    h.flush();
    let txs = h.transactions();
    let spans = h.spans();
    let tx = named(&txs, "breakdown");
    let db = named(&spans, "query");
    let calls: Vec<&Value> = spans.iter().filter(|s| s["name"] == "call").collect();
    assert_eq!(calls.len(), 2);
    for c in &calls {
        assert_eq!(c["parent_id"], db["id"]);
    }
    // Expected from the received trace: overlapping children count once.
    let union = calls.iter().map(|c| end_us(c)).fold(0.0, f64::max)
        - calls.iter().map(|c| start_us(c)).fold(f64::MAX, f64::min);
    let db_duration = end_us(db) - start_us(db);
    let expected: HashMap<&str, (u64, f64)> = HashMap::from([
        ("app", (1, end_us(tx) - start_us(tx) - db_duration)),
        ("db", (1, db_duration - union)),
        (
            "external",
            (2, calls.iter().map(|c| end_us(c) - start_us(c)).sum()),
        ),
    ]);
    assert!(
        expected["db"].1 > 3_000.0,
        "the db span has self time of its own"
    );
    assert!(
        union < calls.iter().map(|c| end_us(c) - start_us(c)).sum::<f64>(),
        "children overlap"
    );

    let found = h.server.wait_for(
        |r| {
            r.events_of("metricset")
                .filter(|m| m["transaction"]["name"] == "breakdown")
                .count()
                >= 3
        },
        Duration::from_secs(10),
    );
    assert!(found, "breakdown metricsets did not arrive");
    let sets: Vec<Value> = h.server.with_recorded(|r| {
        r.events_of("metricset")
            .filter(|m| m["transaction"]["name"] == "breakdown")
            .cloned()
            .collect()
    });
    for (span_type, (count, sum_us)) in &expected {
        let mut got_count = 0.0;
        let mut got_sum = 0.0;
        for m in sets.iter().filter(|m| m["span"]["type"] == *span_type) {
            assert_eq!(m["transaction"]["type"], "request");
            got_count += m["samples"]["span.self_time.count"]["value"]
                .as_f64()
                .unwrap();
            got_sum += m["samples"]["span.self_time.sum.us"]["value"]
                .as_f64()
                .unwrap();
        }
        assert_eq!(got_count, *count as f64, "{span_type} count");
        // µs timestamps and truncation: a few µs per span.
        assert!(
            (got_sum - sum_us).abs() < 30.0,
            "{span_type}: reported {got_sum} µs, expected {sum_us} µs"
        );
    }
    let external = sets
        .iter()
        .find(|m| m["span"]["type"] == "external")
        .unwrap();
    assert_eq!(external["span"]["subtype"], "http");
    h.finish();
}

#[test]
fn breakdown_metrics_off_sends_none() {
    let h = agent::start(|c| {
        c.metrics_interval(Duration::from_millis(100))
            .api_request_time(Duration::from_millis(50))
            .breakdown_metrics(false)
    });
    constructed_trace();
    h.flush();
    // Wait for two metrics cycles (system metricsets), then check none is a breakdown one.
    assert!(h.server.wait_for_metricsets(2, Duration::from_secs(10)));
    assert!(h
        .events("metricset")
        .iter()
        .all(|m| m.get("transaction").is_none()));
    h.finish();
}

/// A span started under a transaction and ended at once on another thread, where the
/// transaction is not current: the transaction hears of the end through itself and keeps the
/// rest of its time as its own (before, such a span left the transaction's children "running"
/// until it ended: no self time at all).
#[test]
fn a_span_ending_on_another_thread_leaves_its_parent_self_time() {
    let h = agent::start(|c| {
        c.metrics_interval(Duration::from_millis(100))
            .api_request_time(Duration::from_millis(50))
    });
    {
        let _t = apm::start_transaction("handed over", "request");
        let background = apm::Span::start("background", "app");
        std::thread::spawn(move || drop(background))
            .join()
            .expect("the other thread");
        spin(20);
        // A child on the stack after it: the background span's end is heard of first, so the
        // 20 ms between them stay the transaction's own.
        let _after = apm::start_span("after", "db");
        spin(5);
    }
    h.flush();
    let txs = h.transactions();
    let tx = named(&txs, "handed over");
    let spans = h.spans();
    let children: f64 = ["background", "after"]
        .iter()
        .map(|name| {
            let s = named(&spans, name);
            end_us(s) - start_us(s)
        })
        .sum();
    let expected = end_us(tx) - start_us(tx) - children;
    // The transaction's own self time; the background span's few µs are `app` self time too.
    let background = named(&spans, "background");
    let background_us = end_us(background) - start_us(background);
    let self_us = app_self_time_us(&h, "handed over") - background_us;
    assert!(
        (self_us - expected).abs() < 30.0,
        "the transaction's self time is {self_us} µs, its duration minus its children's {expected} µs"
    );
    h.finish();
}

/// Two async children of the transaction, the second started later and ended first: their
/// union is the first one's whole run, counted once.
#[apm::transaction(name = "out of order", kind = "request")]
fn children_ending_out_of_order() {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut long = Box::pin(call(6));
    assert!(long.as_mut().poll(&mut cx).is_pending());
    let mut short = Box::pin(call(1));
    assert!(short.as_mut().poll(&mut cx).is_pending());
    assert!(short.as_mut().poll(&mut cx).is_ready());
    assert!(long.as_mut().poll(&mut cx).is_ready());
    spin(5);
}

#[test]
fn children_ending_out_of_order_count_once() {
    let h = agent::start(|c| {
        c.metrics_interval(Duration::from_millis(100))
            .api_request_time(Duration::from_millis(50))
    });
    children_ending_out_of_order();
    h.flush();
    let txs = h.transactions();
    let tx = named(&txs, "out of order");
    let spans = h.spans();
    let calls: Vec<&Value> = spans.iter().filter(|s| s["name"] == "call").collect();
    assert_eq!(calls.len(), 2);
    let union = calls.iter().map(|c| end_us(c)).fold(0.0, f64::max)
        - calls.iter().map(|c| start_us(c)).fold(f64::MAX, f64::min);
    let expected = end_us(tx) - start_us(tx) - union;
    let self_us = app_self_time_us(&h, "out of order");
    assert!(
        (self_us - expected).abs() < 30.0,
        "the transaction's self time is {self_us} µs, its duration minus its children's union {expected} µs"
    );
    h.finish();
}

/// An async child started under the transaction and finished by another thread's task,
/// which carries the transaction's context: the transaction hears of its end there and then,
/// and keeps the rest of its time as its own.
#[apm::transaction(name = "finished elsewhere", kind = "request")]
fn child_finished_on_another_thread() {
    use apm::FutureExt as _;
    let mut child = Box::pin(call(2));
    assert!(child
        .as_mut()
        .poll(&mut Context::from_waker(std::task::Waker::noop()))
        .is_pending());
    let mut carried = Box::pin(child.in_current_context());
    std::thread::spawn(move || {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while carried.as_mut().poll(&mut cx).is_pending() {}
    })
    .join()
    .expect("the other thread");
    spin(20);
}

#[test]
fn a_child_finished_on_another_thread_is_child_time_only_while_it_ran() {
    let h = agent::start(|c| {
        c.metrics_interval(Duration::from_millis(100))
            .api_request_time(Duration::from_millis(50))
    });
    child_finished_on_another_thread();
    h.flush();
    let txs = h.transactions();
    let tx = named(&txs, "finished elsewhere");
    let spans = h.spans();
    let child = named(&spans, "call");
    let expected = end_us(tx) - start_us(tx) - (end_us(child) - start_us(child));
    let self_us = app_self_time_us(&h, "finished elsewhere");
    assert!(
        (self_us - expected).abs() < 30.0,
        "the transaction's self time is {self_us} µs, its duration minus its child's {expected} µs"
    );
    h.finish();
}

/// A transaction started inside another is not its child: its end leaves the outer one's
/// count of running children alone (here, a detached span still running).
#[test]
fn a_nested_transaction_leaves_its_parents_children_alone() {
    let h = agent::start(|c| {
        c.metrics_interval(Duration::from_millis(100))
            .api_request_time(Duration::from_millis(50))
    });
    {
        let _outer = apm::start_transaction("outer", "request");
        let request = apm::Span::start("request", "external");
        drop(apm::start_transaction("inner", "request"));
        spin(10);
        drop(request);
        spin(5);
    }
    h.flush();
    let txs = h.transactions();
    let outer = named(&txs, "outer");
    let spans = h.spans();
    let request = named(&spans, "request");
    let expected = end_us(outer) - start_us(outer) - (end_us(request) - start_us(request));
    let self_us = app_self_time_us(&h, "outer");
    assert!(
        (self_us - expected).abs() < 30.0,
        "the outer transaction's self time is {self_us} µs, its duration minus its child's {expected} µs"
    );
    h.finish();
}
