//! Transactions and spans as the server receives them: nesting, ids, timing, threads, async
//! futures, context carried across threads, outcomes.

mod common;

use std::future::Future;
use std::task::{Context, Poll};

use common::agent::{self, block_on, named, Yield};
use serde_json::Value;

fn is_hex(v: &Value, len: usize) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[apm::span(kind = "db", subtype = "postgresql", action = "query")]
fn query() -> u32 {
    inner_work();
    7
}

#[apm::span]
fn inner_work() {
    std::hint::black_box(0);
}

#[apm::transaction(name = "checkout", kind = "request")]
fn checkout() -> u32 {
    query() + query()
}

#[test]
fn nested_spans_carry_ids_parents_and_times() {
    let h = agent::start(|c| c);
    assert_eq!(checkout(), 14);
    h.flush();
    let txs = h.transactions();
    let spans = h.spans();
    assert_eq!(txs.len(), 1);
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let tx = &txs[0];
    assert_eq!(tx["name"], "checkout");
    assert_eq!(tx["type"], "request");
    assert_eq!(tx["outcome"], "success");
    assert_eq!(tx["sampled"], true);
    assert_eq!(tx["span_count"]["started"], 4);
    assert_eq!(tx["span_count"]["dropped"], 0);
    assert!(is_hex(&tx["trace_id"], 32) && is_hex(&tx["id"], 16));
    assert!(tx.get("parent_id").is_none());

    let queries: Vec<&Value> = spans.iter().filter(|s| s["name"] == "query").collect();
    let inners: Vec<&Value> = spans.iter().filter(|s| s["name"] == "inner_work").collect();
    assert_eq!((queries.len(), inners.len()), (2, 2));
    for q in &queries {
        assert_eq!(q["parent_id"], tx["id"]);
        assert_eq!(
            (&q["type"], &q["subtype"], &q["action"]),
            (&"db".into(), &"postgresql".into(), &"query".into())
        );
        let child = inners
            .iter()
            .find(|i| i["parent_id"] == q["id"])
            .expect("each query has its inner span");
        // A child starts after and ends before its parent (µs timestamps, ms durations).
        let (qs, qd) = (
            q["timestamp"].as_u64().unwrap(),
            q["duration"].as_f64().unwrap(),
        );
        let (cs, cd) = (
            child["timestamp"].as_u64().unwrap(),
            child["duration"].as_f64().unwrap(),
        );
        assert!(cs >= qs && (cs as f64) + cd * 1000.0 <= (qs as f64) + qd * 1000.0 + 1.0);
    }
    for s in &spans {
        assert_eq!(s["trace_id"], tx["trace_id"]);
        assert_eq!(s["transaction_id"], tx["id"]);
        assert!(is_hex(&s["id"], 16));
        assert_eq!(s["sample_rate"], 1.0);
        assert_eq!(s["outcome"], "success");
    }
    let tx_start = tx["timestamp"].as_u64().unwrap();
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    assert!(
        tx_start <= now_us && now_us - tx_start < 60_000_000,
        "timestamp is µs since the epoch"
    );
    h.finish();
}

#[test]
fn spans_outside_a_transaction_record_nothing() {
    let h = agent::start(|c| c);
    assert_eq!(query(), 7);
    let s = apm::start_span("lonely", "app");
    assert!(!s.is_recording());
    drop(s);
    h.flush();
    assert!(h.spans().is_empty() && h.transactions().is_empty());
    h.finish();
}

#[apm::span]
fn may_fail(fail: bool) -> Result<u8, std::io::Error> {
    if fail {
        return Err(std::io::Error::other("no"));
    }
    Ok(1)
}

#[apm::span]
fn uses_question_mark(text: &str) -> Result<u32, std::num::ParseIntError> {
    let n: u32 = text.parse()?;
    Ok(n)
}

#[apm::span]
fn panics() {
    panic!("boom");
}

#[apm::transaction]
fn failing_transaction() -> Result<(), String> {
    Err("bad".into())
}

#[test]
fn outcomes_follow_results_and_panics() {
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("outcomes", "custom");
        assert!(may_fail(false).is_ok());
        assert!(may_fail(true).is_err());
        assert_eq!(uses_question_mark("12"), Ok(12));
        assert!(uses_question_mark("x").is_err());
        assert!(std::panic::catch_unwind(panics).is_err());
    }
    assert_eq!(failing_transaction(), Err("bad".to_string()));
    let panicking = std::thread::spawn(|| {
        let _t = apm::start_transaction("panicking", "custom");
        panic!("unwinds through the transaction");
    });
    assert!(panicking.join().is_err());
    h.flush();
    let spans = h.spans();
    let outcomes: Vec<(&str, &str)> = spans
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
        .collect();
    for expected in [
        ("may_fail", "success"),
        ("may_fail", "failure"),
        ("uses_question_mark", "success"),
        ("uses_question_mark", "failure"),
        ("panics", "failure"),
    ] {
        assert!(
            outcomes.contains(&expected),
            "{expected:?} not in {outcomes:?}"
        );
    }
    let txs = h.transactions();
    assert_eq!(named(&txs, "outcomes")["outcome"], "success");
    assert_eq!(named(&txs, "failing_transaction")["outcome"], "failure");
    assert_eq!(named(&txs, "failing_transaction")["type"], "custom");
    assert_eq!(named(&txs, "panicking")["outcome"], "failure");
    h.finish();
}

#[test]
fn manual_api_sets_names_results_labels_and_outcomes() {
    let h = agent::start(|c| c);
    {
        let t = apm::start_transaction("initial", "job");
        t.set_name("renamed");
        t.set_result("done");
        t.set_label("tenant", "acme");
        apm::set_label("attempt", 3);
        apm::set_label("with.dots*and\"quotes", true);
        let mut s = apm::start_span("manual span", "db");
        s.set_subtype("redis");
        s.set_action("get");
        s.set_label("key_count", 2);
        s.set_outcome(apm::Outcome::Failure);
        assert!(s.is_recording());
        drop(s);
        apm::set_transaction_outcome(apm::Outcome::Failure);
    }
    h.flush();
    let tx = named(&h.transactions(), "renamed").clone();
    assert_eq!(tx["type"], "job");
    assert_eq!(tx["result"], "done");
    assert_eq!(tx["outcome"], "failure");
    assert_eq!(tx["context"]["tags"]["tenant"], "acme");
    assert_eq!(tx["context"]["tags"]["attempt"], 3.0);
    assert_eq!(tx["context"]["tags"]["with_dots_and_quotes"], true);
    let span = named(&h.spans(), "manual span").clone();
    assert_eq!(
        (&span["type"], &span["subtype"], &span["action"]),
        (&"db".into(), &"redis".into(), &"get".into())
    );
    assert_eq!(span["outcome"], "failure");
    assert_eq!(span["context"]["tags"]["key_count"], 2.0);
    h.finish();
}

/// A thread's next transaction takes up the state of its last one when nothing refers to it any
/// more, and writes its record into a box an earlier record used: nothing of the earlier ones
/// carries over, whether their record took it (sampled) or left it in the state (unsampled).
#[test]
fn a_transaction_in_a_reused_state_carries_nothing_of_the_earlier_ones() {
    let h = agent::start(|c| c);
    {
        let t = apm::start_transaction("first", "job");
        t.set_result("done");
        t.set_label("tenant", "acme");
        t.set_outcome(apm::Outcome::Failure);
        apm::set_user(apm::User::id("42"));
        apm::set_custom_context("cart", 3);
        drop(apm::start_span("one", "app"));
    }
    {
        // Unsampled: its record takes none of its context.
        let headers = vec![(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        )];
        let t = apm::start_transaction_with("unsampled", "job", &headers);
        t.set_label("left", "behind");
        t.set_result("unsampled result");
        apm::set_user(apm::User::id("7"));
        apm::set_custom_context("left", true);
    }
    drop(apm::start_transaction("third", "request"));
    h.flush();
    let txs = h.transactions();
    let first = named(&txs, "first");
    assert_eq!(first["context"]["tags"]["tenant"], "acme");
    let third = named(&txs, "third");
    assert_eq!(third["type"], "request");
    assert_eq!(third["outcome"], "success");
    assert!(third.get("result").is_none(), "{third}");
    assert!(third.get("parent_id").is_none(), "{third}");
    assert_ne!(third["trace_id"], first["trace_id"]);
    assert_ne!(third["id"], first["id"]);
    assert_eq!(third["span_count"]["started"], 0);
    assert_eq!(third["span_count"]["dropped"], 0);
    let context = third.get("context");
    for key in ["tags", "user", "custom"] {
        assert!(
            context.and_then(|c| c.get(key)).is_none(),
            "{key} carried over: {third}"
        );
    }
    h.finish();
}

#[apm::span(name = "say \"hi\"\n\u{7}", kind = "custom", action = "a\\b")]
fn quoted() {}

#[apm::transaction(name = "quote \" and \u{1}", kind = "job")]
fn quoted_transaction() {
    quoted();
}

#[test]
fn static_names_that_need_escaping_arrive_as_written() {
    // Call sites' names are copied as they are unless they need escaping: these do.
    let h = agent::start(|c| c);
    quoted_transaction();
    h.flush();
    let (txs, spans) = (h.transactions(), h.spans());
    assert_eq!((txs.len(), spans.len()), (1, 1), "{txs:#?} {spans:#?}");
    assert_eq!(txs[0]["name"], "quote \" and \u{1}");
    assert_eq!(spans[0]["name"], "say \"hi\"\n\u{7}");
    assert_eq!(spans[0]["action"], "a\\b");
    assert_eq!(spans[0]["type"], "custom");
    h.finish();
}

#[test]
fn long_names_are_truncated_to_the_keyword_limit() {
    let h = agent::start(|c| c);
    let long = "x".repeat(3000);
    {
        let _t = apm::start_transaction(long.clone(), "custom");
        let _s = apm::start_span(long.clone(), "app");
    }
    h.flush();
    let (txs, spans) = (h.transactions(), h.spans());
    assert_eq!((txs.len(), spans.len()), (1, 1), "{txs:#?} {spans:#?}");
    for e in txs.iter().chain(spans.iter()) {
        let name = e["name"].as_str().unwrap();
        assert_eq!(name.chars().count(), 1024);
        assert!(name.ends_with('…'));
    }
    h.finish();
}

#[test]
fn many_threads_record_at_once_without_cross_talk() {
    let h = agent::start(|c| c.max_queue_size(100_000));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..40 {
                    let tx = apm::start_transaction(format!("t{t}-{i}"), "custom");
                    for _ in 0..5 {
                        let _s = apm::start_span(format!("t{t}-{i}-span"), "app");
                        let _c = apm::start_span(format!("t{t}-{i}-child"), "app");
                    }
                    drop(tx);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    h.flush();
    let txs = h.transactions();
    let spans = h.spans();
    assert_eq!(txs.len(), 8 * 40);
    assert_eq!(spans.len(), 8 * 40 * 10);
    let by_id: std::collections::HashMap<&str, &Value> =
        txs.iter().map(|t| (t["id"].as_str().unwrap(), t)).collect();
    let span_ids: std::collections::HashMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s))
        .collect();
    for s in &spans {
        let tx = by_id[s["transaction_id"].as_str().unwrap()];
        let name = s["name"].as_str().unwrap();
        assert!(
            name.starts_with(&format!("{}-", tx["name"].as_str().unwrap())),
            "span {name} in {}",
            tx["name"]
        );
        assert_eq!(s["trace_id"], tx["trace_id"]);
        if name.ends_with("-child") {
            assert_eq!(
                span_ids[s["parent_id"].as_str().unwrap()]["name"]
                    .as_str()
                    .unwrap(),
                name.replace("-child", "-span")
            );
        } else {
            assert_eq!(s["parent_id"], tx["id"]);
        }
    }
    h.finish();
}

#[apm::span]
async fn async_leaf(tag: &'static str) -> &'static str {
    Yield(true).await;
    tag
}

#[apm::span(name = "async_parent")]
async fn async_parent(tag: &'static str) -> &'static str {
    let a = async_leaf(tag).await;
    Yield(true).await;
    let _sync_child = apm::start_span(format!("{tag}-sync"), "app");
    Yield(true).await;
    a
}

#[apm::transaction(kind = "job")]
async fn async_job(tag: &'static str) -> &'static str {
    async_parent(tag).await
}

#[test]
fn interleaved_futures_each_keep_their_own_parents() {
    let h = agent::start(|c| c);
    let mut a = Box::pin(async_job("a"));
    let mut b = Box::pin(async_job("b"));
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let (mut ra, mut rb) = (None, None);
    // Alternate polls on one thread: a, b, a, b, …
    while ra.is_none() || rb.is_none() {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(&mut cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(&mut cx) {
                rb = Some(v);
            }
        }
    }
    assert_eq!((ra, rb), (Some("a"), Some("b")));
    h.flush();
    let txs = h.transactions();
    let spans = h.spans();
    assert_eq!(txs.len(), 2);
    assert_eq!(spans.len(), 6, "{spans:#?}");
    for tx in &txs {
        assert_eq!(tx["name"], "async_job");
        assert_eq!(tx["type"], "job");
        let mine: Vec<&Value> = spans
            .iter()
            .filter(|s| s["transaction_id"] == tx["id"])
            .collect();
        assert_eq!(mine.len(), 3);
        let parent = mine.iter().find(|s| s["name"] == "async_parent").unwrap();
        assert_eq!(parent["parent_id"], tx["id"]);
        let leaf = mine.iter().find(|s| s["name"] == "async_leaf").unwrap();
        assert_eq!(leaf["parent_id"], parent["id"]);
        let sync = mine
            .iter()
            .find(|s| s["name"].as_str().unwrap().ends_with("-sync"))
            .unwrap();
        // A guard held across `.await` stays the child of the future's span.
        assert_eq!(sync["parent_id"], parent["id"]);
    }
    h.finish();
}

#[test]
fn spans_of_a_thread_that_exits_inside_a_transaction_are_sent() {
    let h = agent::start(|c| c);
    let tx = apm::start_transaction("outlived", "custom");
    let ctx = apm::Context::current();
    std::thread::spawn(move || {
        // The thread ends with the context still attached: its staged span is handed over
        // when its thread-local storage goes, not lost.
        std::mem::forget(ctx.attach());
        let _s = apm::start_span("on an exiting thread", "app");
    })
    .join()
    .unwrap();
    drop(tx);
    h.flush();
    let spans = h.spans();
    let span = named(&spans, "on an exiting thread");
    assert_eq!(
        named(&h.transactions(), "outlived")["id"],
        span["parent_id"]
    );
    h.finish();
}

#[test]
fn context_follows_work_to_other_threads_and_futures() {
    let h = agent::start(|c| c);
    let tx = apm::start_transaction("fan-out", "custom");
    let parent = apm::start_span("parent", "app");
    let ctx = apm::Context::current();
    assert!(!ctx.is_empty());
    let wrapped = std::thread::spawn(ctx.clone().wrap(|| {
        let _s = apm::start_span("on wrapped thread", "app");
    }));
    let attached = std::thread::spawn({
        let ctx = ctx.clone();
        move || {
            let _g = ctx.attach();
            let _s = apm::start_span("on attached thread", "app");
        }
    });
    let fut = std::thread::spawn({
        let bound = ctx.clone().bind(async {
            let _s = apm::start_span("in bound future", "app");
        });
        move || block_on(bound)
    });
    wrapped.join().unwrap();
    attached.join().unwrap();
    fut.join().unwrap();
    // Outside the attached scope the other thread has no context.
    std::thread::spawn(|| assert!(apm::Context::current().is_empty()))
        .join()
        .unwrap();
    drop(parent);
    drop(tx);
    h.flush();
    let spans = h.spans();
    let parent = named(&spans, "parent");
    for name in ["on wrapped thread", "on attached thread", "in bound future"] {
        assert_eq!(named(&spans, name)["parent_id"], parent["id"], "{name}");
        assert_eq!(
            named(&spans, name)["transaction_id"],
            parent["transaction_id"],
            "{name}"
        );
    }
    h.finish();
}

#[test]
fn guards_closed_out_of_order_leave_no_stale_parent() {
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("out of order", "custom");
        let a = apm::start_span("a", "app");
        let b = apm::start_span("b", "app");
        drop(a);
        drop(b);
        let _c = apm::start_span("c", "app");
    }
    // Nested transactions closed outer-first, with a span still open.
    {
        let t0 = apm::start_transaction("outer", "custom");
        let t1 = apm::start_transaction("inner", "custom");
        let s = apm::start_span("under inner", "app");
        drop(t1);
        drop(t0);
        drop(s);
    }
    // Nothing is left behind: a new transaction is a new root.
    drop(apm::start_transaction("after", "custom"));
    h.flush();
    let txs = h.transactions();
    let spans = h.spans();
    let t = named(&txs, "out of order");
    assert_eq!(named(&spans, "c")["parent_id"], t["id"]);
    let after = named(&txs, "after");
    assert!(after.get("parent_id").is_none());
    assert_ne!(after["trace_id"], t["trace_id"]);
    assert_ne!(after["trace_id"], named(&txs, "outer")["trace_id"]);
    h.finish();
}

#[test]
fn a_guard_dropped_inside_a_future_or_held_across_polls_at_other_depths_stays_consistent() {
    let h = agent::start(|c| c);
    {
        let t = apm::start_transaction("moved in", "custom");
        let span = apm::start_span("outer", "app");
        block_on(apm::FutureExt::in_current_context(
            async move { drop(span) },
        ));
        drop(t);
    }
    {
        let _t = apm::start_transaction("depths", "custom");
        let mut fut = Box::pin(apm::FutureExt::in_current_context(async {
            let _held = apm::start_span("held", "app");
            Yield(true).await;
        }));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        // Polled again one level deeper.
        let inner = apm::start_span("inner", "app");
        assert!(fut.as_mut().poll(&mut cx).is_ready());
        drop(inner);
        let _after = apm::start_span("after", "app");
    }
    drop(apm::start_transaction("fresh", "custom"));
    h.flush();
    let txs = h.transactions();
    let spans = h.spans();
    assert!(named(&txs, "fresh").get("parent_id").is_none());
    let depths = named(&txs, "depths");
    assert_eq!(named(&spans, "after")["parent_id"], depths["id"]);
    assert_eq!(named(&spans, "inner")["parent_id"], depths["id"]);
    h.finish();
}

#[apm::span]
async fn moves_between_threads(first: std::sync::mpsc::Sender<()>) {
    {
        let _before = apm::start_span("before the move", "app");
    }
    let _ = first.send(());
    Yield(true).await;
    let _after = apm::start_span("after the move", "app");
}

#[test]
fn a_future_polled_on_two_threads_keeps_its_span_and_leaves_each_thread_as_it_was() {
    let h = agent::start(|c| c);
    let (first, polled) = std::sync::mpsc::channel();
    let tx = apm::start_transaction("moved", "custom");
    let mut fut = Box::pin(moves_between_threads(first));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    polled.recv().unwrap();
    // Polled to completion on a thread with no transaction of its own, which has none after.
    std::thread::spawn(move || {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_ready());
        assert!(apm::Context::current().is_empty());
        let _outside = apm::start_span("outside", "app");
    })
    .join()
    .unwrap();
    // This thread's transaction is current again.
    let _here = apm::start_span("here", "app");
    drop(_here);
    drop(tx);
    h.flush();
    let txs = h.transactions();
    let spans = h.spans();
    let tx = named(&txs, "moved");
    let own = named(&spans, "moves_between_threads");
    assert_eq!(own["parent_id"], tx["id"]);
    assert_eq!(own["outcome"], "success");
    for child in ["before the move", "after the move"] {
        assert_eq!(named(&spans, child)["parent_id"], own["id"], "{child}");
        assert_eq!(named(&spans, child)["transaction_id"], tx["id"], "{child}");
    }
    assert_eq!(named(&spans, "here")["parent_id"], tx["id"]);
    assert!(spans.iter().all(|s| s["name"] != "outside"), "{spans:#?}");
    h.finish();
}

#[apm::span]
async fn panics_inside() {
    Yield(true).await;
    panic!("inside a future");
}

#[test]
fn a_panic_caught_around_a_future_still_fails_its_span() {
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("caught", "custom");
        let mut fut = Box::pin(panics_inside());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        let caught =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
        assert!(caught.is_err());
        drop(fut);
    }
    h.flush();
    assert_eq!(named(&h.spans(), "panics_inside")["outcome"], "failure");
    h.finish();
}
