//! Stack traces of slow spans (`span_stack_trace_min_duration`): a span that lasts the
//! minimum or longer carries the stack where it ended, innermost frame first, the agent's own
//! frames removed; a faster one carries none.

mod common;

use std::time::Duration;

use common::agent;
use serde_json::Value;

const MIN: Duration = Duration::from_millis(20);
const SLOW: Duration = Duration::from_millis(25);

#[apm::span(kind = "app")]
fn slow_step(time: Duration) {
    std::thread::sleep(time);
}

#[apm::span(kind = "app")]
async fn slow_async_step(time: Duration) {
    std::thread::sleep(time);
}

fn span<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}

fn functions(span: &Value) -> Vec<&str> {
    span["stacktrace"]
        .as_array()
        .unwrap_or_else(|| panic!("no stack trace: {span:#}"))
        .iter()
        .map(|f| f["function"].as_str().unwrap_or_default())
        .collect()
}

#[test]
fn slow_spans_carry_the_stack_where_they_ended_and_fast_ones_none() {
    let h = agent::start(|c| c.span_stack_trace_min_duration(Some(MIN)));
    {
        let _t = apm::start_transaction("checkout", "request");
        slow_step(SLOW);
        {
            let _s = apm::start_span("manual slow", "app");
            std::thread::sleep(SLOW);
        }
        {
            let _s = apm::start_span("manual fast", "app");
        }
        apm_tests::block_on(slow_async_step(SLOW));
    }
    h.flush();
    let spans = h.spans();

    // A `#[apm::span]` function: its guard drops in the function itself.
    let slow = functions(span(&spans, "slow_step"));
    assert!(
        slow[0].ends_with("span_stack_traces::slow_step"),
        "{slow:?}"
    );
    assert!(
        slow[1].ends_with("slow_spans_carry_the_stack_where_they_ended_and_fast_ones_none"),
        "{slow:?}"
    );
    let frame = &span(&spans, "slow_step")["stacktrace"][0];
    assert_eq!(frame["library_frame"], false);
    assert!(frame["filename"]
        .as_str()
        .unwrap()
        .ends_with("span_stack_traces.rs"));
    assert!(frame["lineno"].as_u64().unwrap() > 0);
    assert!(
        slow.iter()
            .all(|f| !f.starts_with("apm::") && !f.contains("<apm::")),
        "agent frames left in {slow:?}"
    );

    // A manual guard ends where it is dropped.
    let manual = functions(span(&spans, "manual slow"));
    assert!(
        manual[0].ends_with("slow_spans_carry_the_stack_where_they_ended_and_fast_ones_none"),
        "{manual:?}"
    );
    assert!(span(&spans, "manual fast").get("stacktrace").is_none());

    // An async span ends when its future completes, inside the poll of whoever awaited it.
    let awaited = functions(span(&spans, "slow_async_step"));
    assert!(
        !awaited[0].starts_with("apm::") && !awaited[0].contains("<apm::"),
        "{awaited:?}"
    );
    assert!(
        awaited
            .iter()
            .any(|f| f.contains("slow_spans_carry_the_stack")),
        "{awaited:?}"
    );
    h.finish();
}

#[test]
fn spans_under_the_minimum_carry_no_stack_trace() {
    let h = agent::start(|c| c.span_stack_trace_min_duration(Some(Duration::from_secs(60))));
    {
        let _t = apm::start_transaction("checkout", "request");
        slow_step(SLOW);
    }
    h.flush();
    let spans = h.spans();
    assert!(span(&spans, "slow_step").get("stacktrace").is_none());
    h.finish();
}

#[test]
fn a_negative_minimum_turns_span_stack_traces_off_and_zero_takes_every_one() {
    let h = agent::start(|c| c.span_stack_trace_min_duration(None));
    {
        let _t = apm::start_transaction("checkout", "request");
        slow_step(SLOW);
    }
    h.flush();
    assert!(span(&h.spans(), "slow_step").get("stacktrace").is_none());
    h.finish();

    let h = agent::start(|c| c.span_stack_trace_min_duration(Some(Duration::ZERO)));
    {
        let _t = apm::start_transaction("checkout", "request");
        slow_step(Duration::ZERO);
    }
    h.flush();
    let spans = h.spans();
    let every = functions(span(&spans, "slow_step"));
    assert!(
        every[0].ends_with("span_stack_traces::slow_step"),
        "{every:?}"
    );
    h.finish();
}
