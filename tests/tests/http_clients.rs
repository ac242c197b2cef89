//! HTTP client integrations (`apm::reqwest`, `apm::minreq`) against a real local HTTP server
//! that records the trace-context headers it receives, with the mock APM Server behind the
//! agent: exit spans named and described per `specs/agents/tracing-instrumentation-http.md`,
//! outcomes per `outcome.feature`, propagation to the callee, nothing outside a transaction,
//! and one trace across an instrumented callee.

mod common;

use std::net::TcpListener as StdListener;
use std::sync::{Arc, Mutex};

use apm::reqwest::blocking::RequestBuilderExt as _;
use apm::reqwest::RequestBuilderExt as _;
use axum::http::{HeaderMap, StatusCode, Uri};
use common::agent::{self, named};
use serde_json::Value;

/// How long the callee takes to answer `/slow`.
const SLOW: std::time::Duration = std::time::Duration::from_millis(50);

/// What the callee saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path_and_query: String,
    traceparent: Option<String>,
    /// `elastic-apm-traceparent` (`use_elastic_traceparent_header`, on by default).
    legacy_traceparent: Option<String>,
    tracestate: Option<String>,
}

/// An axum server on 127.0.0.1:0, on its own runtime: `/missing` answers 404, `/boom` 500,
/// `/traced` runs a transaction continuing the caller's trace, `/slow` 200 after [`SLOW`],
/// anything else 200.
struct Callee {
    rt: tokio::runtime::Runtime,
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Callee {
    fn start() -> Callee {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let record = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let record = Arc::clone(&record);
            async move {
                if uri.path() == "/slow" {
                    tokio::time::sleep(SLOW).await;
                }
                handle(&record, &uri, &headers)
            }
        });
        rt.spawn(async move { axum::serve(listener, app).await });
        Callee { rt, port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The one request the callee received for `path_and_query`.
    fn seen(&self, path_and_query: &str) -> Seen {
        let seen = self.seen.lock().expect("not poisoned");
        let found: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.path_and_query == path_and_query)
            .collect();
        assert_eq!(found.len(), 1, "{path_and_query}: {seen:#?}");
        found[0].clone()
    }
}

fn handle(record: &Mutex<Vec<Seen>>, uri: &Uri, headers: &HeaderMap) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    record.lock().expect("not poisoned").push(Seen {
        path_and_query: uri
            .path_and_query()
            .map(ToString::to_string)
            .unwrap_or_default(),
        traceparent: header("traceparent"),
        legacy_traceparent: header("elastic-apm-traceparent"),
        tracestate: header("tracestate"),
    });
    match uri.path() {
        "/missing" => StatusCode::NOT_FOUND,
        "/boom" => StatusCode::INTERNAL_SERVER_ERROR,
        "/traced" => {
            // An instrumented callee: its transaction continues the caller's trace.
            let t = apm::start_transaction_with("GET /traced", "request", headers);
            t.set_result("HTTP 2xx");
            StatusCode::OK
        }
        _ => StatusCode::OK,
    }
}

/// A port on which nothing listens (connection refused).
fn dead_port() -> u16 {
    common::refused_addr().port()
}

/// The one span whose `context.http.url` is `url`.
fn by_url<'a>(spans: &'a [Value], url: &str) -> &'a Value {
    let found: Vec<&Value> = spans
        .iter()
        .filter(|s| s["context"]["http"]["url"] == url)
        .collect();
    assert_eq!(found.len(), 1, "one span for {url} in {spans:#?}");
    found[0]
}

/// `traceparent` fields: (trace id, parent id, flags); the legacy header carries the same.
fn traceparent(seen: &Seen) -> (String, String, String) {
    let tp = seen
        .traceparent
        .as_deref()
        .unwrap_or_else(|| panic!("no traceparent in {seen:?}"));
    assert_eq!(seen.legacy_traceparent.as_deref(), Some(tp), "{seen:?}");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00", "{tp}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

/// Checks one exit span against the spec, and the headers its callee received.
#[track_caller]
fn check_exit_span(
    callee: &Callee,
    span: &Value,
    parent: &Value,
    path: &str,
    status: Option<u16>,
    outcome: &str,
) {
    let host = callee.host();
    assert_eq!(span["name"], format!("GET {host}"), "{span:#}");
    assert_eq!(span["type"], "external");
    assert_eq!(span["subtype"], "http");
    assert!(span["action"].is_null(), "{span:#}");
    assert_eq!(span["outcome"], outcome, "{span:#}");
    assert_eq!(span["trace_id"], parent["trace_id"]);
    assert_eq!(span["parent_id"], parent["id"], "{span:#}");
    let ctx = &span["context"];
    assert_eq!(ctx["http"]["url"], callee.url(path));
    assert_eq!(ctx["http"]["method"], "GET");
    match status {
        Some(code) => assert_eq!(ctx["http"]["status_code"], code, "{span:#}"),
        None => assert!(ctx["http"]["status_code"].is_null(), "{span:#}"),
    }
    assert_eq!(ctx["service"]["target"]["type"], "http");
    assert_eq!(ctx["service"]["target"]["name"], host);
    assert_eq!(ctx["destination"]["service"]["resource"], host);
    assert_eq!(ctx["destination"]["address"], "127.0.0.1");
    assert_eq!(ctx["destination"]["port"], callee.port);
    if status.is_some() {
        let (trace_id, parent_id, flags) = traceparent(&callee.seen(path));
        assert_eq!(trace_id, span["trace_id"].as_str().unwrap_or_default());
        assert_eq!(parent_id, span["id"].as_str().unwrap_or_default());
        assert_eq!(flags, "01");
    }
}

#[test]
fn reqwest_async_requests_are_exit_spans_of_the_transaction() {
    let h = agent::start(|c| c);
    let callee = Callee::start();
    let dead = format!("http://127.0.0.1:{}/refused", dead_port());
    let client = reqwest::Client::new();
    let t = apm::Transaction::start("async client", "request");
    let work = {
        let (client, ok, missing, boom, by_hand, dead) = (
            client.clone(),
            callee.url("/ok"),
            callee.url("/missing"),
            callee.url("/boom"),
            format!("http://user:pw@{}/ok?via=execute", callee.host()),
            dead.clone(),
        );
        t.bind(async move {
            let ok = client.get(ok).send_traced().await.expect("200").status();
            let missing = client.get(missing).send_traced().await.expect("404");
            let boom = client.get(boom).send_traced().await.expect("500");
            let request =
                reqwest::Request::new(reqwest::Method::GET, by_hand.parse().expect("a valid URL"));
            let by_hand = apm::reqwest::execute(&client, request).await.expect("200");
            let refused = client.get(dead).send_traced().await;
            (
                ok,
                missing.status(),
                boom.status(),
                by_hand.status(),
                refused,
            )
        })
    };
    // Spawned: the traced futures are `Send`.
    let (ok, missing, boom, by_hand, refused) = callee
        .rt
        .block_on(callee.rt.spawn(work))
        .expect("the task ran");
    assert_eq!(
        (ok, missing, boom, by_hand),
        (
            StatusCode::OK,
            StatusCode::NOT_FOUND,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::OK
        )
    );
    let refused = refused.expect_err("connection refused");
    assert!(refused.is_connect(), "{refused:?}");
    // The application's error is reqwest's own, about the URL it asked for.
    assert_eq!(refused.url().map(|u| u.as_str()), Some(dead.as_str()));

    h.flush();
    let txn = named(&h.transactions(), "async client").clone();
    let spans = h.spans();
    assert_eq!(spans.len(), 5, "{spans:#?}");
    let url = |p: &str| callee.url(p);
    check_exit_span(
        &callee,
        by_url(&spans, &url("/ok")),
        &txn,
        "/ok",
        Some(200),
        "success",
    );
    check_exit_span(
        &callee,
        by_url(&spans, &url("/missing")),
        &txn,
        "/missing",
        Some(404),
        "failure",
    );
    check_exit_span(
        &callee,
        by_url(&spans, &url("/boom")),
        &txn,
        "/boom",
        Some(500),
        "failure",
    );
    // Built by hand with user information: sent without it.
    check_exit_span(
        &callee,
        by_url(&spans, &url("/ok?via=execute")),
        &txn,
        "/ok?via=execute",
        Some(200),
        "success",
    );
    let refused = by_url(&spans, &dead);
    assert_eq!(refused["outcome"], "failure");
    assert!(refused["context"]["http"]["status_code"].is_null());
    assert_eq!(refused["parent_id"], txn["id"]);
    h.finish();
}

#[test]
fn reqwest_blocking_requests_are_exit_spans_of_the_current_span() {
    let h = agent::start(|c| c);
    let callee = Callee::start();
    let dead = format!("http://127.0.0.1:{}/refused", dead_port());
    let client = reqwest::blocking::Client::new();
    let (statuses, refused) = {
        let _t = apm::start_transaction("blocking client", "request");
        let ok = client.get(callee.url("/ok")).send_traced().expect("200");
        let missing = client
            .get(callee.url("/missing"))
            .send_traced()
            .expect("404");
        let boom = {
            let _s = apm::start_span("load", "app");
            client.get(callee.url("/boom")).send_traced().expect("500")
        };
        let refused = client.get(&dead).send_traced();
        ([ok.status(), missing.status(), boom.status()], refused)
    };
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::NOT_FOUND,
            StatusCode::INTERNAL_SERVER_ERROR
        ]
    );
    let refused = refused.expect_err("connection refused");
    assert!(refused.is_connect(), "{refused:?}");

    h.flush();
    let txn = named(&h.transactions(), "blocking client").clone();
    let spans = h.spans();
    assert_eq!(spans.len(), 5, "{spans:#?}");
    let load = named(&spans, "load");
    let url = |p: &str| callee.url(p);
    check_exit_span(
        &callee,
        by_url(&spans, &url("/ok")),
        &txn,
        "/ok",
        Some(200),
        "success",
    );
    check_exit_span(
        &callee,
        by_url(&spans, &url("/missing")),
        &txn,
        "/missing",
        Some(404),
        "failure",
    );
    // A child of the span current on this thread.
    check_exit_span(
        &callee,
        by_url(&spans, &url("/boom")),
        load,
        "/boom",
        Some(500),
        "failure",
    );
    assert_eq!(by_url(&spans, &dead)["outcome"], "failure");
    h.finish();
}

/// A reqwest error that carries a status gives it as `exception.code`, captured itself or as
/// the cause of the application's error; one without (connection refused) gives its I/O
/// cause's.
#[test]
fn reqwest_status_errors_give_the_status_as_exception_code() {
    #[derive(Debug)]
    struct InventoryDown(reqwest::Error);
    impl std::fmt::Display for InventoryDown {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("inventory unavailable")
        }
    }
    impl std::error::Error for InventoryDown {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let h = agent::start(|c| c);
    let callee = Callee::start();
    let client = reqwest::blocking::Client::new();
    let status_error = |path: &str| {
        client
            .get(callee.url(path))
            .send()
            .expect("an answer")
            .error_for_status()
            .expect_err("an error status")
    };
    apm::capture_error!(status_error("/missing"));
    apm::capture_error!(InventoryDown(status_error("/boom")));
    let refused = client
        .get(format!("http://127.0.0.1:{}/", dead_port()))
        .send()
        .expect_err("connection refused");
    apm::capture_error!(refused);
    h.flush();
    let errors = h.errors();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_eq!(errors[0]["exception"]["code"], "404");
    assert_eq!(errors[1]["exception"]["code"], "500");
    assert_eq!(errors[1]["exception"]["cause"][0]["code"], "500");
    // Refused: no status; the code of its outermost cause that has one, the I/O error's
    // OS error number.
    let refused = &errors[2]["exception"];
    let io_code = refused["cause"]
        .as_array()
        .and_then(|causes| causes.iter().find_map(|c| c.get("code")))
        .unwrap_or_else(|| panic!("an I/O cause with a code: {refused:#}"));
    assert!(io_code.is_number(), "{refused:#}");
    assert_eq!(&refused["code"], io_code);
    h.finish();
}

#[test]
fn minreq_requests_are_exit_spans_of_the_current_span() {
    let h = agent::start(|c| c);
    let callee = Callee::start();
    let dead = format!("http://127.0.0.1:{}/refused", dead_port());
    let (codes, refused) = {
        let _t = apm::start_transaction("minreq client", "request");
        let ok = apm::minreq::get(callee.url("/ok")).expect("200");
        let missing = apm::minreq::send(minreq::Method::Get, callee.url("/missing"), |r| {
            r.with_header("x-test", "1").with_timeout(10)
        })
        .expect("404");
        let boom = {
            let _s = apm::start_span("load", "app");
            apm::minreq::send_lazy(minreq::Method::Get, callee.url("/boom"), |r| r).expect("500")
        };
        let refused = apm::minreq::get(&dead);
        (
            [ok.status_code, missing.status_code, boom.status_code],
            refused,
        )
    };
    assert_eq!(codes, [200, 404, 500]);
    assert!(
        matches!(refused, Err(minreq::Error::IoError(_))),
        "{refused:?}"
    );

    h.flush();
    let txn = named(&h.transactions(), "minreq client").clone();
    let spans = h.spans();
    assert_eq!(spans.len(), 5, "{spans:#?}");
    let load = named(&spans, "load");
    let url = |p: &str| callee.url(p);
    check_exit_span(
        &callee,
        by_url(&spans, &url("/ok")),
        &txn,
        "/ok",
        Some(200),
        "success",
    );
    check_exit_span(
        &callee,
        by_url(&spans, &url("/missing")),
        &txn,
        "/missing",
        Some(404),
        "failure",
    );
    check_exit_span(
        &callee,
        by_url(&spans, &url("/boom")),
        load,
        "/boom",
        Some(500),
        "failure",
    );
    assert_eq!(by_url(&spans, &dead)["outcome"], "failure");
    h.finish();
}

/// Past `transaction_max_spans`, requests are not sent as spans but counted in the
/// transaction's `dropped_spans_stats` (service target `http`, `host:port`), per outcome, with
/// their duration, whichever client made them; their trace context still goes out.
#[test]
fn requests_past_the_span_limit_are_counted_in_dropped_spans_stats() {
    let h = agent::start(|c| c.transaction_max_spans(1).span_compression_enabled(false));
    let callee = Callee::start();
    let t = apm::start_transaction("over the limit", "request");
    let client = reqwest::Client::new();
    let (first, ok, missing) = (
        callee.url("/ok?n=1"),
        callee.url("/ok?n=2"),
        callee.url("/missing?n=3"),
    );
    callee.rt.block_on(apm::Context::current().bind(async move {
        // The one span the limit allows.
        client.get(first).send_traced().await.expect("200");
        client.get(ok).send_traced().await.expect("200");
        client.get(missing).send_traced().await.expect("404");
    }));
    let client = reqwest::blocking::Client::new();
    let slow = client
        .get(callee.url("/slow?n=4"))
        .send_traced()
        .expect("200");
    assert_eq!(slow.status(), 200);
    apm::minreq::get(callee.url("/ok?n=5")).expect("200");
    apm::minreq::get(callee.url("/boom?n=6")).expect("500");
    drop(t);
    h.flush();
    let txn = named(&h.transactions(), "over the limit").clone();
    assert_eq!(h.spans().len(), 1, "{:#?}", h.spans());
    assert_eq!(txn["span_count"]["dropped"], 5, "{txn:#}");
    let stats = txn["dropped_spans_stats"]
        .as_array()
        .expect("dropped_spans_stats");
    assert_eq!(stats.len(), 2, "{stats:#?}");
    let host = callee.host();
    let by_outcome = |outcome: &str| {
        stats
            .iter()
            .find(|s| s["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {outcome} entry in {stats:#?}"))
    };
    for (outcome, count) in [("success", 3), ("failure", 2)] {
        let s = by_outcome(outcome);
        assert_eq!(s["destination_service_resource"], host.as_str(), "{s}");
        assert_eq!(s["service_target_type"], "http", "{s}");
        assert_eq!(s["service_target_name"], host.as_str(), "{s}");
        assert_eq!(s["duration"]["count"], count, "{s}");
    }
    // `/slow` alone took SLOW.
    let slow_us = u64::try_from(SLOW.as_micros()).expect("micros");
    let success_us = by_outcome("success")["duration"]["sum"]["us"]
        .as_u64()
        .expect("a sum");
    assert!(success_us >= slow_us, "{success_us} µs");
    // Every request carried the transaction's trace context.
    for n in 1..=6 {
        let path = ["/ok", "/ok", "/missing", "/slow", "/ok", "/boom"][n - 1];
        let (trace_id, _, _) = traceparent(&callee.seen(&format!("{path}?n={n}")));
        assert_eq!(trace_id, txn["trace_id"].as_str().expect("a trace id"));
    }
    h.finish();
}

#[test]
fn outside_a_transaction_nothing_is_recorded_or_sent() {
    let h = agent::start(|c| c);
    let callee = Callee::start();
    let async_client = reqwest::Client::new();
    let url = callee.url("/ok?client=reqwest");
    let status = callee
        .rt
        .block_on(callee.rt.spawn(async move {
            async_client
                .get(url)
                .send_traced()
                .await
                .map(|r| r.status())
        }))
        .expect("the task ran")
        .expect("200");
    assert_eq!(status, StatusCode::OK);
    let blocking = reqwest::blocking::Client::new()
        .get(callee.url("/ok?client=blocking"))
        .send_traced()
        .expect("200");
    assert_eq!(blocking.status(), StatusCode::OK);
    let minreq = apm::minreq::get(callee.url("/ok?client=minreq")).expect("200");
    assert_eq!(minreq.status_code, 200);
    for client in ["reqwest", "blocking", "minreq"] {
        let seen = callee.seen(&format!("/ok?client={client}"));
        assert_eq!(seen.traceparent, None, "{client}");
        assert_eq!(seen.legacy_traceparent, None, "{client}");
        assert_eq!(seen.tracestate, None, "{client}");
    }
    h.flush();
    assert_eq!(h.spans(), Vec::<Value>::new());
    assert_eq!(h.transactions(), Vec::<Value>::new());
    h.finish();
}

#[test]
fn an_instrumented_callee_continues_the_trace_of_the_exit_span() {
    let h = agent::start(|c| c);
    let callee = Callee::start();
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let incoming = vec![
        ("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01")),
        ("tracestate", "congo=t61rcWkgMzE".to_owned()),
    ];
    {
        let _t = apm::start_transaction_with("caller", "request", &incoming);
        apm::minreq::get(callee.url("/traced")).expect("200");
        reqwest::blocking::Client::new()
            .get(callee.url("/traced?again"))
            .send_traced()
            .expect("200");
    }
    h.flush();
    let transactions = h.transactions();
    let caller = named(&transactions, "caller");
    assert_eq!(caller["trace_id"], trace_id);
    let served: Vec<&Value> = transactions
        .iter()
        .filter(|t| t["name"] == "GET /traced")
        .collect();
    assert_eq!(served.len(), 2, "{transactions:#?}");
    let spans = h.spans();
    for path in ["/traced", "/traced?again"] {
        let span = by_url(&spans, &callee.url(path));
        assert_eq!(span["parent_id"], caller["id"]);
        assert_eq!(span["trace_id"], trace_id);
        let seen = callee.seen(path);
        let (seen_trace, seen_parent, _) = traceparent(&seen);
        assert_eq!(seen_trace, trace_id);
        assert_eq!(seen_parent, span["id"].as_str().unwrap_or_default());
        // The caller's vendor entry travels on (next to the agent's own `es` entry).
        let state = seen.tracestate.unwrap_or_default();
        assert!(state.contains("congo=t61rcWkgMzE"), "{state}");
        // The callee's transaction: same trace, child of the client span.
        let server = served
            .iter()
            .find(|t| t["parent_id"] == span["id"])
            .unwrap_or_else(|| panic!("no callee transaction under {span:#}"));
        assert_eq!(server["trace_id"], trace_id);
        assert_eq!(server["result"], "HTTP 2xx");
    }
    h.finish();
}

#[test]
fn an_unsampled_transaction_propagates_without_recording_spans() {
    let h = agent::start(|c| c.transaction_sample_rate(0.0));
    let callee = Callee::start();
    let trace_id = {
        let t = apm::start_transaction("unsampled caller", "request");
        apm::minreq::get(callee.url("/ok?unsampled")).expect("200");
        t.trace_id().expect("a transaction")
    };
    let (seen_trace, _, flags) = traceparent(&callee.seen("/ok?unsampled"));
    assert_eq!(seen_trace, trace_id);
    assert_eq!(flags, "00");
    h.flush();
    assert_eq!(h.spans(), Vec::<Value>::new());
    h.finish();
}

#[test]
fn a_cancelled_request_ends_with_outcome_unknown() {
    let h = agent::start(|c| c);
    // A server that accepts connections (the kernel's backlog) and never answers.
    let silent = StdListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/never", silent.local_addr().expect("address"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let t = apm::Transaction::start("gives up", "request");
    let outcome = rt.block_on(t.bind(async move {
        let call = reqwest::Client::new().get(url).send_traced();
        // Dropped by the timeout before any answer: the request is cancelled.
        tokio::time::timeout(std::time::Duration::from_millis(200), call)
            .await
            .is_err()
    }));
    assert!(outcome, "the request timed out");
    h.flush();
    let spans = h.spans();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let span = &spans[0];
    assert!(span["name"]
        .as_str()
        .is_some_and(|n| n.starts_with("GET 127.0.0.1:")));
    assert_eq!(span["outcome"], "unknown", "{span:#}");
    assert!(span["context"]["http"].get("status_code").is_none());
    drop(silent);
    h.finish();
}

/// Breakdown: a request the transaction awaits is its child time, so the transaction's own
/// (`app`) self time is its duration minus the request's.
#[test]
fn an_awaited_request_is_child_time_in_breakdown_metrics() {
    use std::time::Duration;
    let h = agent::start(|c| {
        c.metrics_interval(Duration::from_millis(100))
            .api_request_time(Duration::from_millis(50))
    });
    let callee = Callee::start();
    let client = reqwest::Client::new();
    let t = apm::Transaction::start("awaits a slow call", "request");
    let url = callee.url("/slow");
    let work = t.bind(async move { client.get(url).send_traced().await.expect("200").status() });
    let status = callee
        .rt
        .block_on(callee.rt.spawn(work))
        .expect("the task ran");
    assert_eq!(status, StatusCode::OK);
    h.flush();
    let txn = named(&h.transactions(), "awaits a slow call").clone();
    let spans = h.spans();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let ms = |e: &Value| e["duration"].as_f64().expect("a duration");
    let call_us = ms(&spans[0]) * 1000.0;
    assert!(call_us >= SLOW.as_micros() as f64, "{call_us} µs");
    let own_us = (ms(&txn) * 1000.0) - call_us;

    let app = |r: &apm_tests::Recorded| {
        r.events_of("metricset")
            .find(|m| {
                m["transaction"]["name"] == "awaits a slow call" && m["span"]["type"] == "app"
            })
            .cloned()
    };
    assert!(
        h.server
            .wait_for(|r| app(r).is_some(), Duration::from_secs(10)),
        "no breakdown metricset"
    );
    let app = h.server.with_recorded(app).expect("the app metricset");
    let sum_us = app["samples"]["span.self_time.sum.us"]["value"]
        .as_f64()
        .expect("a sum");
    // µs timestamps and truncation: a few µs.
    assert!(
        (sum_us - own_us).abs() < 30.0,
        "app self time {sum_us} µs, expected {own_us} µs (the request took {call_us} µs)"
    );
    h.finish();
}

/// Whether `span_types.json` registers the type and subtype, by its own rules: an unlisted
/// type never; no subtype where `allow_null_subtype` or no subtypes are listed; a subtype that
/// is listed, or any where `allow_unlisted_subtype`.
fn registered(registry: &Value, kind: &str, subtype: Option<&str>) -> bool {
    let Some(entry) = registry.get(kind).filter(|_| !kind.starts_with("__")) else {
        return false;
    };
    let flag = |name: &str| entry[name].as_bool().unwrap_or(false);
    let listed = entry["subtypes"].as_object();
    match subtype {
        None => flag("allow_null_subtype") || listed.is_none_or(|l| l.is_empty()),
        Some(sub) => flag("allow_unlisted_subtype") || listed.is_some_and(|l| l.contains_key(sub)),
    }
}

#[apm::span]
fn with_the_default_kind() {}

/// The types and subtypes the agent gives its own spans (the integrations' exit spans, the
/// attribute's default) are the ones the spec registers in `span_types.json`. Types chosen by
/// the application are its own business.
#[test]
fn the_agents_own_span_types_are_registered_in_the_spec() {
    let dir = common::require_spec!();
    let text = std::fs::read_to_string(dir.join("agent-json-specs/span_types.json"))
        .expect("span_types.json");
    let registry: Value = serde_json::from_str(&text).expect("span_types.json is JSON");
    // The rules themselves, on known answers.
    assert!(registered(&registry, "external", Some("http")));
    assert!(registered(&registry, "app", None));
    assert!(!registered(&registry, "db", None));
    assert!(!registered(&registry, "external", Some("carrier-pigeon")));
    assert!(!registered(&registry, "__description", None));

    let h = agent::start(|c| c);
    let callee = Callee::start();
    {
        let _t = apm::start_transaction("span types", "request");
        with_the_default_kind();
        apm::minreq::get(callee.url("/ok")).expect("200");
    }
    let t = apm::Transaction::start("span types, async", "request");
    let client = reqwest::Client::new();
    let url = callee.url("/ok");
    let call = t.bind(async move { client.get(url).send_traced().await.map(|r| r.status()) });
    let status = callee
        .rt
        .block_on(callee.rt.spawn(call))
        .expect("the task ran");
    assert_eq!(status.expect("200"), StatusCode::OK);
    h.flush();
    let spans = h.spans();
    assert_eq!(spans.len(), 3, "{spans:#?}");
    for span in &spans {
        let kind = span["type"].as_str().expect("a type");
        let subtype = span["subtype"].as_str();
        assert!(
            registered(&registry, kind, subtype),
            "{kind}/{subtype:?} of {} is not in span_types.json",
            span["name"]
        );
    }
    h.finish();
}
