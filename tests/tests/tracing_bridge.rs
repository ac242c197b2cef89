//! `apm::tracing`: tracing spans become spans (transactions at configured roots), nest with
//! `#[apm::span]` in both directions, on threads and across tokio tasks; OpenTelemetry fields
//! map to span context; `ERROR` events become error events; the ids are current for other
//! layers. Every event the server receives is validated against the intake schemas. A file of
//! its own: a process has one global subscriber (installed once, with a counting allocator).

mod common;

use std::sync::Once;
use std::time::{Duration, Instant};

use apm_tests::alloc::count_allocations;
use common::agent::{self, named};
use parking_lot::Mutex;
use serde_json::Value;
use tracing::field::Empty;
use tracing::{debug_span, info_span, Instrument as _, Level};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

#[global_allocator]
static GLOBAL: apm_tests::alloc::Counting = apm_tests::alloc::Counting;

/// What another layer sees in `on_event`: the message and `apm::current_ids()` then.
static SEEN: Mutex<Vec<(String, Option<apm::CurrentIds>)>> = Mutex::new(Vec::new());

/// A layer after the agent's, as a log formatter would be.
struct Correlate;

impl<S: tracing::Subscriber> Layer<S> for Correlate {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        SEEN.lock().push((m.0, apm::current_ids()));
    }
}

fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tracing_subscriber::registry()
            .with(
                apm::tracing::ApmLayer::new()
                    .server_and_consumer_roots()
                    .root_transactions("jobs", Level::INFO),
            )
            .with(Correlate)
            .init();
    });
}

/// A label's value as a number (labels keep numbers as numbers; `#[instrument]` may record
/// an argument as its `Debug` text).
fn number(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str()?.parse().ok())
}

fn by_id<'a>(events: &'a [Value], id: &Value) -> &'a Value {
    events
        .iter()
        .find(|e| &e["id"] == id)
        .unwrap_or_else(|| panic!("no event with id {id} in {events:#?}"))
}

#[test]
fn spans_emitted_like_tonic_hyper_and_sqlx_map_to_transactions_and_exit_spans() {
    install();
    let h = agent::start(|c| c);
    {
        // A server's request span (tower-http/tonic style): a root, so a transaction.
        let request = info_span!(
            "HTTP request",
            otel.kind = "server",
            http.request.method = "GET",
            http.route = "/users/{id}",
            http.response.status_code = Empty,
            user_agent = "curl/8",
        );
        let _entered = request.enter();
        // sqlx-style query span.
        debug_span!(
            "sqlx.query",
            db.system = "postgresql",
            db.statement = "SELECT name FROM users WHERE id = $1",
            db.name = "test",
            server.address = "127.0.0.1",
            server.port = 5432_u16,
            rows = 1_u64,
        )
        .in_scope(|| {
            // Under an exit span: not recorded.
            let _inner = info_span!("inside the driver").entered();
        });
        // An HTTP client call (reqwest-tracing / hyper client style).
        let call = info_span!(
            "GET",
            otel.kind = "client",
            http.request.method = "GET",
            url.full = "http://inventory.internal:8080/items/7",
            http.response.status_code = Empty,
            otel.status_code = Empty,
        );
        call.record("http.response.status_code", 404_u16);
        call.record("otel.status_code", "ERROR");
        drop(call);
        // A broker publish.
        info_span!(
            "orders publish",
            otel.kind = "producer",
            messaging.system = "rabbitmq",
            messaging.destination.name = "orders",
        )
        .in_scope(|| {});
        request.record("http.response.status_code", 503_u16);
    }
    h.flush();

    let tx = named(&h.transactions(), "GET /users/{id}").clone();
    assert_eq!(tx["type"], "request");
    assert_eq!(tx["outcome"], "failure");
    assert_eq!(tx["result"], "HTTP 5xx");
    assert_eq!(tx["context"]["tags"]["user_agent"], "curl/8");
    let spans = h.spans();
    assert_eq!(spans.len(), 3, "{spans:#?}");

    let db = named(&spans, "SELECT FROM users");
    assert_eq!(db["parent_id"], tx["id"]);
    assert_eq!(db["trace_id"], tx["trace_id"]);
    assert_eq!(
        (&db["type"], &db["subtype"], &db["action"]),
        (&"db".into(), &"postgresql".into(), &"query".into())
    );
    assert_eq!(db["context"]["db"]["type"], "sql");
    assert_eq!(db["context"]["db"]["instance"], "test");
    assert_eq!(
        db["context"]["db"]["statement"],
        "SELECT name FROM users WHERE id = $1"
    );
    assert_eq!(db["context"]["destination"]["address"], "127.0.0.1");
    assert_eq!(db["context"]["destination"]["port"], 5432);
    assert_eq!(db["context"]["service"]["target"]["type"], "postgresql");
    assert_eq!(db["context"]["service"]["target"]["name"], "test");
    assert_eq!(number(&db["context"]["tags"]["rows"]), Some(1.0));
    // Not inferred (bridge spec): no status set.
    assert_eq!(db["outcome"], "unknown");

    let http = named(&spans, "GET");
    assert_eq!(
        (&http["type"], &http["subtype"]),
        (&"external".into(), &"http".into())
    );
    assert_eq!(
        http["context"]["http"]["url"],
        "http://inventory.internal:8080/items/7"
    );
    assert_eq!(http["context"]["http"]["method"], "GET");
    assert_eq!(http["context"]["http"]["status_code"], 404);
    assert_eq!(
        http["context"]["service"]["target"]["name"],
        "inventory.internal:8080"
    );
    assert_eq!(http["outcome"], "failure");

    let publish = named(&spans, "orders publish");
    assert_eq!(
        (&publish["type"], &publish["subtype"], &publish["action"]),
        (&"messaging".into(), &"rabbitmq".into(), &"send".into())
    );
    assert_eq!(publish["context"]["message"]["queue"]["name"], "orders");
    h.finish();
}

#[apm::span]
fn apm_outer() {
    traced_middle(3);
}

#[tracing::instrument]
fn traced_middle(n: u32) {
    apm_inner();
}

#[apm::span(kind = "app", subtype = "internal")]
fn apm_inner() {
    let _leaf = info_span!("tracing leaf", otel.name = "renamed leaf").entered();
    let mut s = apm::start_span("manual", "app");
    s.set_label("depth", 4);
}

#[test]
fn apm_spans_and_tracing_spans_nest_in_both_directions() {
    install();
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("mixed", "job");
        apm_outer();
        // Outside any transaction (after it): ignored, no root rule for this target.
    }
    info_span!("no transaction here").in_scope(|| {});
    h.flush();
    let tx = named(&h.transactions(), "mixed").clone();
    let spans = h.spans();
    assert_eq!(spans.len(), 5, "{spans:#?}");
    let outer = named(&spans, "apm_outer");
    let middle = named(&spans, "traced_middle");
    let inner = named(&spans, "apm_inner");
    let leaf = named(&spans, "renamed leaf");
    let manual = named(&spans, "manual");
    assert_eq!(outer["parent_id"], tx["id"]);
    assert_eq!(middle["parent_id"], outer["id"]);
    assert_eq!(inner["parent_id"], middle["id"]);
    assert_eq!(leaf["parent_id"], inner["id"]);
    // Started while the tracing span is entered: its child.
    assert_eq!(manual["parent_id"], leaf["id"]);
    assert_eq!(
        (&middle["type"], &middle["subtype"]),
        (&"app".into(), &"internal".into())
    );
    assert_eq!(number(&middle["context"]["tags"]["n"]), Some(3.0));
    // Breakdown: the tracing span's self time excludes its apm child.
    assert!(middle["duration"].as_f64() >= inner["duration"].as_f64());
    h.finish();
}

/// Burns CPU for `ms` (work of a known length, not synchronisation).
fn spin(ms: u64) {
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

#[apm::span(kind = "db", subtype = "postgresql")]
fn child_in_first_entry() {
    spin(20);
}

#[test]
fn a_span_entered_again_keeps_the_time_its_children_ran() {
    install();
    let h = agent::start(|c| {
        c.metrics_interval(Duration::from_millis(100))
            .api_request_time(Duration::from_millis(50))
    });
    {
        let _t = apm::start_transaction("entered again", "job");
        // Type `unknown`: alone in its breakdown group.
        let polled = info_span!("polled", otel.kind = "client");
        // A child in the first entry only: the later entries, which hand nothing back on
        // exit, must not lose its time.
        polled.in_scope(child_in_first_entry);
        polled.in_scope(|| spin(2));
        polled.in_scope(|| spin(2));
    }
    h.flush();
    let spans = h.spans();
    let polled = named(&spans, "polled");
    let child = named(&spans, "child_in_first_entry");
    assert_eq!(child["parent_id"], polled["id"]);
    let ms = |e: &Value| e["duration"].as_f64().unwrap();
    assert!(ms(child) >= 20.0, "{child:#?}");
    let is_polled =
        |m: &Value| m["transaction"]["name"] == "entered again" && m["span"]["type"] == "unknown";
    let found = h.server.wait_for(
        |r| r.events_of("metricset").any(is_polled),
        Duration::from_secs(10),
    );
    assert!(found, "no breakdown metricset for the tracing span");
    let self_us: f64 = h.server.with_recorded(|r| {
        r.events_of("metricset")
            .filter(|m| is_polled(m))
            .filter_map(|m| m["samples"]["span.self_time.sum.us"]["value"].as_f64())
            .sum()
    });
    let expected_us = (ms(polled) - ms(child)) * 1000.0;
    assert!(
        (self_us - expected_us).abs() < 500.0,
        "self time {self_us} us, expected the duration less the child's: {expected_us} us"
    );
    h.finish();
}

#[tracing::instrument]
async fn traced_task_body() {
    tokio::time::sleep(Duration::from_millis(20)).await;
    apm_async().await;
}

#[apm::span]
async fn apm_async() {
    tokio::task::yield_now().await;
    let _deep = info_span!("deep").entered();
}

#[test]
fn parents_hold_across_tokio_tasks_and_polls_and_spans_time_creation_to_close() {
    install();
    let h = agent::start(|c| c);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let t = apm::Transaction::start("async job", "job");
        t.bind(async {
            // Created here, in the transaction; polled on the workers.
            let task = tokio::spawn(traced_task_body().instrument(info_span!("task")));
            task.await.expect("task");
            // Cancelled: dropped before completion, still ended.
            let slow =
                tokio::time::sleep(Duration::from_secs(10)).instrument(info_span!("cancelled"));
            let _ = tokio::time::timeout(Duration::from_millis(5), slow).await;
        })
        .await;
    });
    drop(rt);
    h.flush();
    let tx = named(&h.transactions(), "async job").clone();
    let spans = h.spans();
    assert_eq!(spans.len(), 5, "{spans:#?}");
    let task = named(&spans, "task");
    let body = named(&spans, "traced_task_body");
    let apm_span = named(&spans, "apm_async");
    let deep = named(&spans, "deep");
    let cancelled = named(&spans, "cancelled");
    assert_eq!(task["parent_id"], tx["id"]);
    assert_eq!(body["parent_id"], task["id"]);
    assert_eq!(apm_span["parent_id"], body["id"]);
    assert_eq!(deep["parent_id"], apm_span["id"]);
    assert_eq!(cancelled["parent_id"], tx["id"]);
    // From creation to close, across every poll: at least the 20 ms sleep.
    for s in [task, body] {
        assert!(s["duration"].as_f64().unwrap() >= 20.0, "{s:#}");
    }
    assert!(cancelled["duration"].as_f64().unwrap() >= 5.0);
    h.finish();
}

#[test]
fn roots_start_transactions_only_where_configured() {
    install();
    let h = agent::start(|c| c);
    info_span!(target: "jobs::nightly", "reindex", shard = 2).in_scope(|| {
        debug_span!("batch").in_scope(|| {});
    });
    // Below the rule's level, another target, or no rule: nothing.
    debug_span!(target: "jobs::nightly", "too verbose").in_scope(|| {});
    info_span!(target: "other", "not a job").in_scope(|| {});
    // A consumer span: a messaging transaction; an explicit parent that records.
    let consumer = info_span!(
        "orders process",
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        otel.status_code = "OK"
    );
    let child = info_span!(parent: &consumer, "explicit child");
    drop(child);
    drop(consumer);
    h.flush();
    let txs = h.transactions();
    assert_eq!(txs.len(), 2, "{txs:#?}");
    let job = named(&txs, "reindex");
    assert_eq!(job["type"], "unknown");
    assert_eq!(number(&job["context"]["tags"]["shard"]), Some(2.0));
    let consumer = named(&txs, "orders process");
    assert_eq!(consumer["type"], "messaging");
    assert_eq!(consumer["outcome"], "success");
    let spans = h.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    assert_eq!(named(&spans, "batch")["parent_id"], job["id"]);
    assert_eq!(named(&spans, "explicit child")["parent_id"], consumer["id"]);
    h.finish();
}

#[test]
fn error_events_become_errors_and_every_event_sees_the_ids() {
    install();
    let h = agent::start(|c| c);
    let span_id;
    let tx_id;
    {
        let t = apm::start_transaction("settle", "job");
        tx_id = t.id();
        let span = info_span!("charge");
        let _e = span.enter();
        span_id = apm::current_ids().and_then(|ids| ids.span_id());
        tracing::info!("charging card");
        tracing::error!(order = 7, "card declined");
        tracing::warn!("not an error: a line only");
    }
    tracing::error!(target: "payments", "outside any transaction");
    h.flush();

    let spans = h.spans();
    let charge = named(&spans, "charge");
    assert_eq!(charge["id"].as_str(), span_id.as_deref());
    let seen = SEEN.lock().clone();
    let ids_of = |message: &str| {
        seen.iter()
            .find(|(m, _)| m == message)
            .unwrap_or_else(|| panic!("{message:?} not seen"))
            .1
    };
    let charging = ids_of("charging card").expect("ids inside the span");
    assert_eq!(charging.span_id(), span_id);
    assert_eq!(Some(charging.transaction_id()), tx_id);
    assert_eq!(ids_of("outside any transaction"), None);

    let errors = h.errors();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let declined = errors
        .iter()
        .find(|e| e["log"]["message"] == "card declined order=7")
        .expect("the error event");
    assert_eq!(declined["log"]["level"], "error");
    assert_eq!(declined["log"]["logger_name"], "tracing_bridge");
    assert_eq!(declined["parent_id"], charge["id"]);
    assert_eq!(declined["transaction_id"], charge["transaction_id"]);
    // The test itself (the closure `tracing::error!` expands to, inlined calls named bare
    // where debug info has line tables only), under the dispatch.
    let top = &declined["log"]["stacktrace"][0];
    assert!(
        top["abs_path"]
            .as_str()
            .is_some_and(|p| p.ends_with("tracing_bridge.rs")),
        "{:#}",
        declined["log"]["stacktrace"]
    );
    let outside = errors
        .iter()
        .find(|e| e["log"]["message"] == "outside any transaction")
        .expect("the error outside");
    assert_eq!(outside["log"]["logger_name"], "payments");
    assert!(outside.get("trace_id").is_none());
    h.finish();
}

#[test]
fn tracing_spans_with_static_names_allocate_nothing() {
    install();
    const SPANS: u64 = 20_000;
    let h = agent::start(|c| c.transaction_max_spans(1_000_000));
    let spin = || {
        for i in 0..SPANS {
            let span = info_span!("static");
            let _e = span.enter();
            std::hint::black_box(i);
        }
    };
    // Warm up: the registry's slab, this thread's buffer, the call site's description.
    {
        let _t = apm::start_transaction("warm-up", "custom");
        spin();
    }
    h.agent().flush(Duration::from_secs(10));
    let outside = count_allocations(spin);
    let t = apm::start_transaction("measured", "custom");
    let inside = count_allocations(spin);
    drop(t);
    // A full buffer (256 events) is handed over whole and replaced from the recycled pool,
    // or, when the transport has not recycled one yet (a loaded machine), by a new one: at
    // most one allocation per hand-over, none per span.
    assert_eq!(outside, 0, "outside any transaction");
    let hand_overs = SPANS / 256 + 1;
    assert!(
        inside <= hand_overs,
        "{inside} allocations for {SPANS} spans ({hand_overs} buffer hand-overs)"
    );
    drop(h);
}

/// A span whose fields become labels (as `#[instrument]` records a function's arguments)
/// reuses, once warm, what an earlier span's shipped record held: its optional parts, their
/// labels' vector, and the string its `Debug` field was written into. New ones would each be
/// allocated here and freed on the transport thread.
#[test]
fn tracing_spans_with_fields_allocate_nothing_once_warm() {
    install();
    // Fewer than the spare parts kept (1 024), so that none has to come back meanwhile.
    const SPANS: u64 = 1_000;
    let h = agent::start(|c| c.transaction_max_spans(1_000_000).max_queue_size(16_384));
    let spin = |n: u64| {
        for i in 0..n {
            let span = info_span!("work", user = ?"alice", attempt = i);
            let _e = span.enter();
            std::hint::black_box(i);
        }
    };
    {
        let _t = apm::start_transaction("warm-up", "custom");
        // This thread's first enters.
        spin(100);
        // Open all at once, so that there are as many spare parts as the measured spans will
        // take: spans made one after the other would reuse a few (as many as the transport
        // has not given back yet), and the measured ones would find too few.
        let open: Vec<_> = (0..SPANS + 100)
            .map(|i| info_span!("work", user = ?"alice", attempt = i))
            .collect();
        drop(open);
    }
    // Written, and their parts given back.
    assert!(h.agent().flush(Duration::from_secs(10)));
    // A few more, with spare parts now: this thread's spare strings and label vector, which
    // the spans opened at once used up, are back.
    {
        let _t = apm::start_transaction("warm-up", "custom");
        spin(20);
    }
    assert!(h.agent().flush(Duration::from_secs(10)));
    let t = apm::start_transaction("measured", "custom");
    let inside = count_allocations(|| spin(SPANS));
    drop(t);
    // At most one allocation per buffer hand-over (256 events), and two for a stash locked
    // by the transport at that very instant (a new part, then the label vector it keeps).
    let allowed = SPANS / 256 + 1 + 2;
    assert!(
        inside <= allowed,
        "{inside} allocations for {SPANS} spans with two fields (allowed {allowed})"
    );
    h.flush();
    // Each span carries its own labels and nothing of the span whose parts it reused.
    let tx = named(&h.transactions(), "measured").clone();
    let spans = h.spans();
    let mut attempts: Vec<u64> = spans
        .iter()
        .filter(|s| s["transaction_id"] == tx["id"])
        .map(|s| {
            let tags = s["context"]["tags"].as_object().expect("labels");
            assert_eq!(tags.len(), 2, "{s:#}");
            assert_eq!(tags["user"], "\"alice\"", "{s:#}");
            assert!(s["context"].get("db").is_none(), "{s:#}");
            tags["attempt"].as_f64().expect("a number") as u64
        })
        .collect();
    attempts.sort_unstable();
    assert_eq!(attempts, (0..SPANS).collect::<Vec<_>>());
    drop(h);
}

/// A field's `Debug` runs while its span is being opened, and may make spans of its own: it
/// is recorded before the layer's table is locked, so that no span waits for its own shard.
/// Here each `Debug` keeps 128 spans open at once, more than the table's 64 shards, so some
/// share the outer span's. The spans are made on a thread of their own, so that a deadlock
/// fails the test instead of hanging it.
#[test]
fn a_field_whose_debug_makes_spans_does_not_deadlock() {
    const OUTER: usize = 4;
    const INNER: usize = 128;
    struct Chatty;
    impl std::fmt::Debug for Chatty {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let open: Vec<_> = (0..INNER).map(|_| info_span!("inside_debug")).collect();
            drop(open);
            f.write_str("chatty")
        }
    }
    install();
    let h = agent::start(|c| c.transaction_max_spans(1_000).max_queue_size(16_384));
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _t = apm::start_transaction("debug-spans", "job");
        for _ in 0..OUTER {
            info_span!("outer", value = ?Chatty).in_scope(|| {});
        }
        let _ = done.send(());
    });
    assert!(
        finished.recv_timeout(Duration::from_secs(30)).is_ok(),
        "the spans' thread is stuck"
    );
    h.flush();
    let spans = h.spans();
    let outer: Vec<_> = spans.iter().filter(|s| s["name"] == "outer").collect();
    assert_eq!(outer.len(), OUTER);
    assert!(outer
        .iter()
        .all(|s| s["context"]["tags"]["value"] == "chatty"));
    let inner = spans.iter().filter(|s| s["name"] == "inside_debug").count();
    assert_eq!(inner, OUTER * INNER);
    drop(h);
}

#[test]
fn each_span_s_id_appears_once_and_parents_resolve() {
    // The ids the bridged spans take are the agent's own (16 hex digits), unique per span.
    install();
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("ids", "job");
        for _ in 0..3 {
            info_span!("repeat").in_scope(|| {});
        }
    }
    h.flush();
    let tx = named(&h.transactions(), "ids").clone();
    let spans = h.spans();
    let mut ids: Vec<&str> = spans.iter().filter_map(|s| s["id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    for s in &spans {
        assert_eq!(by_id(&spans, &s["id"])["parent_id"], tx["id"]);
        assert_eq!(s["id"].as_str().map(str::len), Some(16));
    }
    h.finish();
}

#[test]
fn a_layer_of_its_own_captures_warnings_and_maps_rpc_and_error_fields() {
    install();
    let h = agent::start(|c| c);
    // A subscriber of this thread only, with its own options.
    let subscriber = tracing_subscriber::registry()
        .with(apm::tracing::ApmLayer::new().error_level(Some(Level::WARN)));
    tracing::subscriber::with_default(subscriber, || {
        let _t = apm::start_transaction("rpc", "job");
        info_span!(
            "inventory.Stock/Get",
            otel.kind = "client",
            rpc.system = "grpc",
            server.address = "inventory",
            server.port = 50051_u16,
        )
        .in_scope(|| {});
        let failing = info_span!("charge", error = Empty);
        failing.record("error", "card declined");
        drop(failing);
        tracing::warn!(attempt = 2, "retrying");
        tracing::info!("not captured");
    });
    h.flush();
    let spans = h.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let rpc = named(&spans, "inventory.Stock/Get");
    assert_eq!(
        (&rpc["type"], &rpc["subtype"]),
        (&"external".into(), &"grpc".into())
    );
    assert_eq!(rpc["context"]["destination"]["address"], "inventory");
    assert_eq!(rpc["context"]["destination"]["port"], 50051);
    let charge = named(&spans, "charge");
    assert_eq!(charge["outcome"], "failure");
    assert_eq!(charge["context"]["tags"]["error"], "card declined");
    let errors = h.errors();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["log"]["message"], "retrying attempt=2");
    assert_eq!(errors[0]["log"]["level"], "warning");
    h.finish();
}

#[test]
fn unsampled_transactions_record_no_span_but_keep_their_ids_current() {
    install();
    let h = agent::start(|c| c.transaction_sample_rate(0.0));
    let ids;
    {
        let t = apm::start_transaction("unsampled", "job");
        let span = info_span!("not recorded");
        let _e = span.enter();
        ids = apm::current_ids();
        assert_eq!(ids.map(|i| i.transaction_id()), t.id());
    }
    // A root rule applies: an unsampled transaction starts, whose ids are current inside it
    // and whose child spans are not recorded.
    info_span!(target: "jobs::nightly", "unsampled job").in_scope(|| {
        assert!(apm::current_ids().is_some());
        info_span!("child of an unsampled job").in_scope(|| {});
    });
    h.flush();
    assert!(ids.is_some_and(|i| i.span_id().is_none()));
    assert!(h.spans().is_empty(), "{:#?}", h.spans());
    // Sent only to servers that want unsampled transactions, and then as unsampled.
    let txs = h.transactions();
    assert!(txs.iter().all(|t| t["sampled"] == false), "{txs:#?}");
    h.finish();
}
