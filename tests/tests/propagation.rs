//! Distributed tracing across processes: continuing an incoming trace from its headers
//! (`traceparent`, `tracestate` with the `es` entry, the legacy header), the continuation
//! strategies with span links, and the headers injected into outgoing calls.

mod common;

use apm::config::TraceContinuationStrategy;
use apm_tests::MockServer;
use common::agent::{self, block_on, named};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

fn incoming(flags: &str, tracestate: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![(
        "traceparent".to_owned(),
        format!("00-{TRACE}-{PARENT}-{flags}"),
    )];
    if let Some(ts) = tracestate {
        h.push(("tracestate".to_owned(), ts.to_owned()));
    }
    h
}

fn injected() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    apm::inject_headers(&mut out);
    out
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn an_incoming_trace_is_continued_and_passed_on() {
    let h = agent::start(|c| c.transaction_sample_rate(0.1));
    let out = {
        let _t = apm::start_transaction_with(
            "GET /",
            "request",
            &incoming("01", Some("es=s:0.5,other=x")),
        );
        let span = apm::start_span("call downstream", "external");
        let out = injected();
        assert_eq!(
            header(&out, "traceparent"),
            Some(format!("00-{TRACE}-{}-01", span.id().unwrap()).as_str())
        );
        out
    };
    // Downstream gets the upstream's tracestate as it came, never an `es` entry of ours.
    assert_eq!(header(&out, "tracestate"), Some("es=s:0.5,other=x"));
    h.flush();
    let tx = named(&h.transactions(), "GET /").clone();
    assert_eq!(tx["trace_id"], TRACE);
    assert_eq!(tx["parent_id"], PARENT);
    assert_eq!(tx["sampled"], true);
    assert_eq!(tx["sample_rate"], 0.5);
    assert_eq!(named(&h.spans(), "call downstream")["sample_rate"], 0.5);
    h.finish();
}

#[test]
fn an_incoming_rate_is_recorded_rounded_as_the_spec_rounds_configured_rates() {
    let h = agent::start(|c| c);
    let cases = [
        ("tiny", "0.00001", 0.0001),
        ("half up", "0.00015", 0.0002),
        ("half away", "0.55555", 0.5556),
    ];
    for (name, rate, _) in cases {
        let _t = apm::start_transaction_with(
            name,
            "request",
            &incoming("01", Some(&format!("es=s:{rate}"))),
        );
        let _s = apm::start_span(name, "app");
    }
    h.flush();
    let (txs, spans) = (h.transactions(), h.spans());
    for (name, _, recorded) in cases {
        assert_eq!(named(&txs, name)["sample_rate"], recorded, "{name}");
        assert_eq!(named(&spans, name)["sample_rate"], recorded, "{name}");
    }
    h.finish();
}

#[test]
fn a_root_writes_its_own_rate_and_no_empty_tracestate() {
    let h = agent::start(|c| c.transaction_sample_rate(1.0));
    {
        let t = apm::start_transaction("root", "custom");
        let out = injected();
        assert_eq!(header(&out, "tracestate"), Some("es=s:1"));
        assert_eq!(
            header(&out, "traceparent"),
            Some(format!("00-{}-{}-01", t.trace_id().unwrap(), t.id().unwrap()).as_str())
        );
    }
    {
        // Continued without any tracestate: none is sent on, and no sample_rate is claimed.
        let _t = apm::start_transaction_with("no state", "request", &incoming("01", None));
        let _s = apm::start_span("child", "app");
        assert_eq!(header(&injected(), "tracestate"), None);
    }
    // Nothing current: nothing injected.
    assert!(injected().is_empty());
    h.flush();
    let tx = named(&h.transactions(), "no state").clone();
    assert!(tx.get("sample_rate").is_none(), "{tx}");
    assert!(named(&h.spans(), "child").get("sample_rate").is_none());
    h.finish();
}

#[test]
fn an_unsampled_caller_makes_an_unsampled_transaction() {
    let server = MockServer::start();
    server.set_server_version("7.17.0");
    let h = agent::start_with(server, |c| c.transaction_sample_rate(1.0));
    {
        let _t =
            apm::start_transaction_with("unsampled", "request", &incoming("00", Some("es=s:0.5")));
        let s = apm::start_span("not recorded", "app");
        assert!(!s.is_recording());
        assert!(header(&injected(), "traceparent").is_some_and(|v| v.ends_with("-00")));
    }
    h.flush();
    let tx = named(&h.transactions(), "unsampled").clone();
    assert_eq!(tx["sampled"], false);
    assert_eq!(tx["sample_rate"], 0.0);
    assert!(h.spans().is_empty());
    h.finish();
}

#[test]
fn outgoing_calls_carry_the_legacy_header_unless_it_is_switched_off() {
    for (enabled, legacy_sent) in [(None, true), (Some(true), true), (Some(false), false)] {
        let h = agent::start(|c| match enabled {
            Some(on) => c.use_elastic_traceparent_header(on),
            None => c,
        });
        {
            let _t = apm::start_transaction("root", "custom");
            let _s = apm::start_span("call", "external");
            let out = injected();
            let traceparent = header(&out, "traceparent").expect("traceparent injected");
            let legacy = header(&out, "elastic-apm-traceparent");
            if legacy_sent {
                assert_eq!(legacy, Some(traceparent), "{enabled:?}: {out:?}");
            } else {
                assert_eq!(legacy, None, "{enabled:?}: {out:?}");
            }
        }
        h.finish();
    }
}

#[test]
fn the_legacy_header_is_honoured_and_traceparent_wins() {
    let h = agent::start(|c| c);
    let legacy = vec![("Elastic-Apm-Traceparent", format!("00-{TRACE}-{PARENT}-01"))];
    drop(apm::start_transaction_with("legacy", "request", &legacy));
    let both = vec![
        (
            "elastic-apm-traceparent".to_owned(),
            "00-11111111111111111111111111111111-2222222222222222-01".to_owned(),
        ),
        ("traceparent".to_owned(), format!("00-{TRACE}-{PARENT}-01")),
    ];
    drop(apm::start_transaction_with("both", "request", &both));
    let invalid = vec![("traceparent", "00-xyz")];
    drop(apm::start_transaction_with("invalid", "request", &invalid));
    h.flush();
    let txs = h.transactions();
    assert_eq!(named(&txs, "legacy")["trace_id"], TRACE);
    assert_eq!(named(&txs, "both")["trace_id"], TRACE);
    let fresh = named(&txs, "invalid");
    assert_ne!(fresh["trace_id"], TRACE);
    assert!(fresh.get("parent_id").is_none());
    h.finish();
}

#[test]
fn restart_strategies_start_new_traces_linked_to_the_caller() {
    for (strategy, with_es, restarted) in [
        (TraceContinuationStrategy::Restart, true, true),
        (TraceContinuationStrategy::RestartExternal, false, true),
        (TraceContinuationStrategy::RestartExternal, true, false),
        (TraceContinuationStrategy::Continue, false, false),
    ] {
        let h = agent::start(|c| c.trace_continuation_strategy(strategy));
        let ts = if with_es {
            Some("es=s:1,other=x")
        } else {
            Some("other=x")
        };
        drop(apm::start_transaction_with(
            "incoming",
            "request",
            &incoming("01", ts),
        ));
        h.flush();
        let tx = named(&h.transactions(), "incoming").clone();
        let case = format!("{strategy:?} with es: {with_es}");
        if restarted {
            assert_ne!(tx["trace_id"], TRACE, "{case}");
            assert!(tx.get("parent_id").is_none(), "{case}");
            assert_eq!(tx["links"][0]["trace_id"], TRACE, "{case}");
            assert_eq!(tx["links"][0]["span_id"], PARENT, "{case}");
        } else {
            assert_eq!(tx["trace_id"], TRACE, "{case}");
            assert!(tx.get("links").is_none(), "{case}");
        }
        h.finish();
    }
}

#[apm::transaction(kind = "request", headers = headers)]
fn handle(headers: &[(&str, &str)]) -> usize {
    headers.len()
}

#[apm::transaction(kind = "request", headers = headers)]
async fn handle_async(headers: Vec<(String, String)>) -> usize {
    headers.len()
}

#[test]
fn transaction_attributes_continue_the_trace_of_an_argument() {
    let h = agent::start(|c| c);
    let tp = format!("00-{TRACE}-{PARENT}-01");
    assert_eq!(handle(&[("traceparent", tp.as_str())]), 1);
    assert_eq!(block_on(handle_async(incoming("01", None))), 1);
    h.flush();
    let txs = h.transactions();
    for name in ["handle", "handle_async"] {
        assert_eq!(named(&txs, name)["trace_id"], TRACE, "{name}");
        assert_eq!(named(&txs, name)["parent_id"], PARENT, "{name}");
    }
    h.finish();
}

#[test]
fn a_bound_transaction_runs_its_future_and_two_services_share_one_trace() {
    let h = agent::start(|c| c);
    // Service A calls service B: B continues A's trace from the injected headers.
    let (a, outgoing) = {
        let a = apm::start_transaction("service A", "request");
        let call = apm::start_span("GET service B", "external");
        let mut out = Vec::new();
        apm::inject_headers(&mut out);
        drop(call);
        (a.id(), out)
    };
    let b = apm::Transaction::start_with("service B", "request", &outgoing);
    let handler = b.bind({
        let b = b.clone();
        async move {
            let _s = apm::start_span("B's work", "app");
            b.set_result("HTTP 2xx");
            7
        }
    });
    assert_eq!(block_on(handler), 7);
    h.flush();
    let txs = h.transactions();
    let spans = h.spans();
    let ta = named(&txs, "service A");
    let tb = named(&txs, "service B");
    assert_eq!(ta["id"].as_str(), a.as_deref());
    assert_eq!(tb["trace_id"], ta["trace_id"]);
    assert_eq!(tb["parent_id"], named(&spans, "GET service B")["id"]);
    assert_eq!(tb["result"], "HTTP 2xx");
    assert_eq!(named(&spans, "B's work")["transaction_id"], tb["id"]);
    h.finish();
}
