//! `apm::redis::Traced` against the real Redis of the machine (127.0.0.1:6379), with the mock
//! APM Server behind the agent: one exit span per command and per pipeline, sync and async
//! (`MultiplexedConnection`, `ConnectionManager`), described per
//! `specs/agents/tracing-instrumentation-db.md` ("Redis"), nested under `#[apm::transaction]`
//! and `#[apm::span]`, outcome `failure` on error replies and broken connections, `unknown`
//! for a dropped future; nothing recorded (or allocated) outside a sampled transaction.
//! Without Redis the tests say so and skip (under `CI=true` they fail).

mod common;

use std::future::Future as _;
use std::task::Poll;

use apm::redis::Traced;
use apm_tests::alloc::count_allocations;
use common::agent::{self, named};
use redis::{AsyncCommands as _, Commands as _};
use serde_json::Value;

const ADDR: &str = "127.0.0.1:6379";

/// A client of the local Redis, or `None` (after saying so) when it is not running.
fn client() -> Option<redis::Client> {
    if !apm_tests::services::require("redis", ADDR) {
        return None;
    }
    Some(redis::Client::open(format!("redis://{ADDR}/")).expect("a valid redis URL"))
}

/// A key of this process and test only (tests run in parallel, in several processes).
fn key(test: &str, name: &str) -> String {
    format!("apm-tests:{}:{test}:{name}", std::process::id())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The recorded spans of subtype `redis`.
fn redis_spans(h: &agent::Harness) -> Vec<Value> {
    h.spans()
        .into_iter()
        .filter(|s| s["subtype"] == "redis")
        .collect()
}

/// Checks one command's or pipeline's span against the spec.
#[track_caller]
fn check(spans: &[Value], name: &str, parent: &Value, outcome: &str) {
    let span = named(spans, name);
    assert_eq!(span["type"], "db", "{span:#}");
    assert_eq!(span["subtype"], "redis");
    assert_eq!(span["action"], "query");
    assert_eq!(span["outcome"], outcome, "{span:#}");
    assert_eq!(span["trace_id"], parent["trace_id"]);
    assert_eq!(span["parent_id"], parent["id"], "{name}: {span:#}");
    // A span's parent is a span (with a transaction_id) or the transaction itself.
    let transaction_id = match &parent["transaction_id"] {
        Value::Null => &parent["id"],
        id => id,
    };
    assert_eq!(&span["transaction_id"], transaction_id);
    let ctx = &span["context"];
    assert_eq!(ctx["db"]["type"], "redis", "{span:#}");
    assert!(ctx["db"]["statement"].is_null(), "{span:#}");
    assert!(ctx["db"]["instance"].is_null(), "{span:#}");
    assert_eq!(ctx["destination"]["address"], "127.0.0.1");
    assert_eq!(ctx["destination"]["port"], 6379);
    assert_eq!(ctx["destination"]["service"]["resource"], "redis");
    assert_eq!(ctx["service"]["target"]["type"], "redis");
    assert!(ctx["service"]["target"]["name"].is_null(), "{span:#}");
}

/// What the sync transaction got from redis.
#[derive(Debug)]
struct SyncResults {
    got: String,
    not_a_number: redis::RedisError,
    pipelined: (i64, String),
    transaction: redis::RedisResult<(String, i64)>,
    after_kill: redis::RedisResult<bool>,
}

#[apm::transaction(name = "redis sync", kind = "request")]
fn sync_work(
    con: &mut Traced<redis::Connection>,
    killer: &mut redis::Connection,
    test: &str,
) -> SyncResults {
    let k = key(test, "fruit");
    let () = con.set(&k, "apples").expect("SET");
    let got: String = redis::cmd("GET").arg(&k).query(con).expect("GET");
    // `-ERR value is not an integer or out of range`.
    let not_a_number = con.incr::<_, _, i64>(&k, 1).expect_err("INCR of a string");
    let pipelined = load(con, &key(test, "hash"));
    // `EXEC` answers `[OK, -ERR …]`: redis reports the error, the span fails.
    let transaction = redis::pipe()
        .atomic()
        .set(key(test, "counter"), "x")
        .incr(key(test, "counter"), 1)
        .query(con);
    // The server closes this connection: the next command fails on it.
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query(con)
        .expect("CLIENT ID");
    let () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query(killer)
        .expect("CLIENT KILL");
    let after_kill = con.exists(&k);
    SyncResults {
        got,
        not_a_number,
        pipelined,
        transaction,
        after_kill,
    }
}

#[apm::span(name = "load", kind = "app")]
fn load(con: &mut Traced<redis::Connection>, hash: &str) -> (i64, String) {
    redis::pipe()
        .hset(hash, "size", 7)
        .hget(hash, "size")
        .query(con)
        .expect("pipeline")
}

#[test]
fn sync_commands_and_pipelines_are_exit_spans() {
    let Some(client) = client() else { return };
    let h = agent::start(|c| c.span_compression_enabled(false));
    let mut con = Traced::new(
        client.get_connection().expect("a connection"),
        client.get_connection_info(),
    );
    let mut killer = client.get_connection().expect("another connection");
    let r = sync_work(&mut con, &mut killer, "sync");
    assert_eq!(r.got, "apples");
    assert_eq!(r.not_a_number.code(), Some("ERR"), "{:?}", r.not_a_number);
    assert_eq!(r.pipelined, (1, "7".to_owned()));
    assert!(r.transaction.is_err(), "{:?}", r.transaction);
    assert!(r.after_kill.is_err(), "{:?}", r.after_kill);

    h.flush();
    let txn = named(&h.transactions(), "redis sync").clone();
    let spans = redis_spans(&h);
    assert_eq!(spans.len(), 7, "{spans:#?}");
    check(&spans, "SET", &txn, "success");
    check(&spans, "GET", &txn, "success");
    // redis sends `INCR k 1` as `INCRBY`.
    check(&spans, "INCRBY", &txn, "failure");
    // Under the `#[apm::span]` function that sent it.
    let all = h.spans();
    let load = named(&all, "load");
    assert_eq!(load["parent_id"], txn["id"]);
    check(&spans, "PIPELINE", load, "success");
    check(&spans, "MULTI", &txn, "failure");
    check(&spans, "CLIENT", &txn, "success");
    check(&spans, "EXISTS", &txn, "failure");
    // The killer's connection is not wrapped: its `CLIENT KILL` is not recorded.
    assert_eq!(all.len(), 8, "{all:#?}");
    h.finish();
}

/// What the async transaction got from redis.
#[derive(Debug)]
struct AsyncResults {
    counted: i64,
    wrong_type: redis::RedisError,
    pipelined: (i64, i64),
    spawned: Option<String>,
}

#[apm::transaction(name = "redis async", kind = "request")]
async fn async_work(
    mut con: Traced<redis::aio::MultiplexedConnection>,
    mut manager: Traced<redis::aio::ConnectionManager>,
    test: &'static str,
) -> AsyncResults {
    let k = key(test, "count");
    let () = con.set(&k, 5).await.expect("SET");
    let counted: i64 = con.incr(&k, 2).await.expect("INCRBY");
    // `-WRONGTYPE …`: a hash command on a string.
    let wrong_type = con
        .hget::<_, _, Option<String>>(&k, "f")
        .await
        .expect_err("HGET of a string");
    let pipelined = fetch(&mut manager, test).await;
    // A clone of the connection in a task of its own, carrying the context.
    let mut other = con.clone();
    let spawned = tokio::spawn(apm::FutureExt::in_current_context(async move {
        other.get::<_, Option<String>>(key(test, "missing")).await
    }))
    .await
    .expect("the task ran")
    .expect("GET");
    AsyncResults {
        counted,
        wrong_type,
        pipelined,
        spawned,
    }
}

#[apm::span(name = "fetch", kind = "app")]
async fn fetch(manager: &mut Traced<redis::aio::ConnectionManager>, test: &str) -> (i64, i64) {
    redis::pipe()
        .atomic()
        .incr(key(test, "a"), 1)
        .incr(key(test, "b"), 2)
        .query_async(manager)
        .await
        .expect("transaction")
}

#[test]
fn async_commands_and_pipelines_are_exit_spans() {
    let Some(client) = client() else { return };
    let h = agent::start(|c| c.span_compression_enabled(false));
    let rt = runtime();
    let info = client.get_connection_info().clone();
    let (con, manager) = rt.block_on(async {
        (
            client
                .get_multiplexed_async_connection()
                .await
                .expect("a multiplexed connection"),
            client
                .get_connection_manager()
                .await
                .expect("a connection manager"),
        )
    });
    let con = Traced::new(con, &info);
    let manager = Traced::new(manager, &info);
    let r = rt
        .block_on(rt.spawn(async_work(con, manager, "async")))
        .expect("the task ran");
    assert_eq!(r.counted, 7);
    assert_eq!(r.wrong_type.code(), Some("WRONGTYPE"), "{:?}", r.wrong_type);
    assert_eq!(r.pipelined, (1, 2));
    assert_eq!(r.spawned, None);

    h.flush();
    let txn = named(&h.transactions(), "redis async").clone();
    let spans = redis_spans(&h);
    assert_eq!(spans.len(), 5, "{spans:#?}");
    check(&spans, "SET", &txn, "success");
    check(&spans, "INCRBY", &txn, "success");
    check(&spans, "HGET", &txn, "failure");
    check(&spans, "GET", &txn, "success");
    let all = h.spans();
    let fetch = named(&all, "fetch");
    check(&spans, "MULTI", fetch, "success");
    h.finish();
}

#[apm::transaction(name = "redis cancelled", kind = "request")]
async fn cancel_work(mut con: Traced<redis::aio::MultiplexedConnection>, list: String) -> bool {
    let pending = {
        // `BLPOP` of an empty list waits (here up to 0.2 s) for an element: the future is
        // still waiting for its reply when it is dropped.
        let mut blpop = std::pin::pin!(con.blpop::<_, Option<(String, String)>>(&list, 0.2));
        std::future::poll_fn(|cx| Poll::Ready(blpop.as_mut().poll(cx).is_pending())).await
    };
    // The connection still serves commands afterwards.
    let _: Option<String> = con.get(&list).await.expect("GET after the cancelled BLPOP");
    pending
}

#[test]
fn a_dropped_command_future_ends_its_span() {
    let Some(client) = client() else { return };
    let h = agent::start(|c| c.span_compression_enabled(false));
    let rt = runtime();
    let con = rt
        .block_on(client.get_multiplexed_async_connection())
        .expect("a multiplexed connection");
    let con = Traced::new(con, client.get_connection_info());
    let pending = rt
        .block_on(rt.spawn(cancel_work(con, key("cancelled", "list"))))
        .expect("the task ran");
    assert!(pending, "BLPOP answered at once");

    h.flush();
    let txn = named(&h.transactions(), "redis cancelled").clone();
    let spans = redis_spans(&h);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    // Dropped before its reply: no outcome decided.
    check(&spans, "BLPOP", &txn, "unknown");
    check(&spans, "GET", &txn, "success");
    h.finish();
}

#[test]
fn outside_a_sampled_transaction_nothing_is_recorded() {
    let Some(client) = client() else { return };
    let h = agent::start(|c| c.transaction_sample_rate(0.0));
    let k = key("outside", "k");
    let mut con = Traced::new(
        client.get_connection().expect("a connection"),
        client.get_connection_info(),
    );
    let () = con.set(&k, 1).expect("SET outside");
    {
        let t = apm::start_transaction("unsampled", "request");
        assert!(!t.is_sampled());
        let v: i64 = con.get(&k).expect("GET unsampled");
        assert_eq!(v, 1);
        let (a,): (i64,) = redis::pipe().get(&k).query(&mut con).expect("pipeline");
        assert_eq!(a, 1);
    }
    let rt = runtime();
    let got: i64 = rt.block_on(async {
        let mut con = Traced::new(
            client
                .get_multiplexed_async_connection()
                .await
                .expect("a multiplexed connection"),
            client.get_connection_info(),
        );
        con.get(&k).await.expect("async GET outside")
    });
    assert_eq!(got, 1);

    h.flush();
    assert!(h.spans().is_empty(), "{:#?}", h.spans());
    h.finish();
}

#[global_allocator]
static GLOBAL: apm_tests::alloc::Counting = apm_tests::alloc::Counting;

#[test]
fn outside_a_transaction_the_wrapper_allocates_nothing_more() {
    let Some(client) = client() else { return };
    let h = agent::start(|c| c);
    let k = key("allocations", "k");
    let mut bare = client.get_connection().expect("a connection");
    let mut traced = Traced::new(
        client.get_connection().expect("a connection"),
        client.get_connection_info(),
    );
    let () = bare.set(&k, "v").expect("SET");
    let get = redis::cmd("GET").arg(&k).clone();
    let pipe = redis::pipe().get(&k).get(&k).clone();
    let run = |con: &mut dyn redis::ConnectionLike| {
        count_allocations(|| {
            let v: String = get.query(con).expect("GET");
            let (a, b): (String, String) = pipe.query(con).expect("pipeline");
            std::hint::black_box((v, a, b));
        })
    };
    // Warm up both connections (their buffers grow once).
    run(&mut bare);
    run(&mut traced);
    let bare_count = run(&mut bare);
    let traced_count = run(&mut traced);
    assert_eq!(traced_count, bare_count, "allocations: traced vs bare");
    h.flush();
    assert!(h.spans().is_empty());
    h.finish();
}

/// Past `transaction_max_spans`, commands are not sent as spans but counted in the
/// transaction's `dropped_spans_stats` (service target `redis`), with their duration.
#[test]
fn commands_past_the_span_limit_are_counted_in_dropped_spans_stats() {
    let Some(client) = client() else { return };
    let h = agent::start(|c| c.transaction_max_spans(1).span_compression_enabled(false));
    let mut conn = Traced::new(
        client.get_connection().expect("a connection"),
        client.get_connection_info(),
    );
    let k = key("over_limit", "n");
    {
        let _t = apm::start_transaction("counting", "custom");
        for _ in 0..4 {
            let _: i64 = conn.incr(&k, 1).expect("INCR");
        }
        let _: () = conn.del(&k).expect("DEL");
    }
    h.flush();
    assert_eq!(redis_spans(&h).len(), 1);
    let txn = named(&h.transactions(), "counting").clone();
    assert_eq!(txn["span_count"]["dropped"], 4, "{txn:#}");
    let count = agent::the_dropped_stat(&txn, ("redis", None), "redis", "success");
    assert_eq!(count, 4);
    h.finish();
}
