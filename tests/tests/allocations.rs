//! The hot path allocates nothing for spans with static names: a counting global allocator
//! counts the allocations of the recording thread only.

mod common;

use std::future::Future as _;
use std::time::Duration;

use apm_tests::alloc::{count_allocations, Counter};
use common::agent;

#[global_allocator]
static GLOBAL: apm_tests::alloc::Counting = apm_tests::alloc::Counting;

#[apm::span(kind = "db", subtype = "postgresql", action = "query")]
fn query(i: u64) -> u64 {
    std::hint::black_box(i)
}

/// An agent for thousands of spans in one transaction. A span that a busy machine stalls for
/// `span_stack_trace_min_duration` takes its stack (which allocates, as it should): not the
/// path measured here.
fn agent_for_bursts_of_spans() -> agent::Harness {
    agent::start(|c| {
        c.transaction_max_spans(1_000_000)
            .span_stack_trace_min_duration(None)
    })
}

#[test]
fn spans_with_static_names_allocate_nothing_on_the_application_thread() {
    const SPANS: u64 = 20_000;
    let h = agent_for_bursts_of_spans();
    // Warm up: this thread's buffer is registered, the transport has recycled buffers.
    {
        let _t = apm::start_transaction("warm-up", "custom");
        for i in 0..5_000 {
            query(i);
        }
    }
    // The default queue overflows under this burst: the flush says so, and that is not what
    // this test is about.
    h.agent().flush(Duration::from_secs(10));
    let t = apm::start_transaction("measured", "custom");
    let allocations = count_allocations(|| {
        for i in 0..SPANS {
            query(i);
        }
    });
    drop(t);
    // A full buffer (256 events) is handed over whole and replaced from the recycled pool
    // (or reused when the queue is full). Only a pool lock taken by the transport at that very
    // instant makes a hand-over allocate: allow two such coincidences in 78 hand-overs.
    assert!(
        allocations <= 2,
        "{allocations} allocations for {SPANS} spans"
    );
    eprintln!("{allocations} allocations for {SPANS} spans");
    h.agent().flush(Duration::from_secs(10));
    // Spans dropped at the queue are counted as dropped, not as started.
    let transactions = h.transactions();
    let span_count = &agent::named(&transactions, "measured")["span_count"];
    assert_eq!(
        span_count["started"].as_u64().unwrap_or(0) + span_count["dropped"].as_u64().unwrap_or(0),
        SPANS
    );
    h.finish();
}

/// A span of the manual API with static texts (`apm::start_span`) boxes its name, as any name
/// made at run time; the box is one the transport thread gave back after writing an earlier
/// span: once warm, such a span allocates nothing either.
#[test]
fn manual_spans_with_static_names_allocate_nothing_once_warm() {
    const SPANS: u64 = 2_000;
    let h = agent_for_bursts_of_spans();
    // Warm up: as many boxes made as spans in flight, given back once written.
    for _ in 0..2 {
        let _t = apm::start_transaction("warm-up", "custom");
        for _ in 0..SPANS {
            drop(apm::start_span("guarded", "app"));
        }
        drop(_t);
        assert!(h.agent().flush(Duration::from_secs(10)));
    }
    let t = apm::start_transaction("measured", "custom");
    let allocations = count_allocations(|| {
        for _ in 0..SPANS {
            drop(apm::start_span("guarded", "app"));
        }
    });
    drop(t);
    eprintln!("{allocations} allocations for {SPANS} manual spans");
    // As above: a pool or stash locked by the transport at that very instant makes a
    // hand-over or a name take a new one.
    assert!(
        allocations <= 2,
        "{allocations} allocations for {SPANS} manual spans"
    );
    h.flush();
    let transactions = h.transactions();
    let span_count = &agent::named(&transactions, "measured")["span_count"];
    assert_eq!(span_count["started"].as_u64(), Some(SPANS));
    h.finish();
}

/// A transaction's end record travels in a box the transport thread gave back after an
/// earlier one (freeing each box on the transport thread cost the application thread malloc's
/// slow path and page faults), and its shared state is the previous transaction's, which
/// nothing referred to any more when it ended: once warm, a transaction allocates nothing.
/// Labels too: they travel in the part of the record that few transactions fill, which stays
/// with the record's box, and their vector, emptied on the transport thread, comes back to
/// the thread's next transaction with its room (each labelled transaction allocated one
/// before).
#[test]
fn a_transaction_allocates_nothing_once_warm_with_or_without_labels() {
    const TRANSACTIONS: u64 = 64;
    for labelled in [false, true] {
        let rounds = transactions_once_warm(TRANSACTIONS, 2, labelled);
        // At most two: a stash locked by the transport at that very instant makes a record
        // take a new box.
        assert!(
            rounds.measured <= 2,
            "{} allocations for {TRANSACTIONS} transactions (labelled: {labelled})",
            rounds.measured
        );
    }
}

/// The transport drains the queue every 10 ms and gives the boxes back then: a thread running
/// through thousands of transactions in between gets as many boxes back at once, and they are
/// all kept (with room for 1 024, two thirds of these were freed, then allocated again).
///
/// A burst needs a new box only for each record it has in flight beyond the boxes made
/// before, and how many are in flight depends on when the transport thread runs (a CI run
/// counted 1 015 new boxes, most likely a burst that overtook the transport further than its
/// warm-up had; never reproduced here). So the bound is what the warm-up did not make: with
/// every box kept, the burst allocates at most that; with room for 1 024, a warm-up that made
/// 3 000 keeps 1 024 and the burst makes about 2 000 again.
#[test]
fn a_burst_of_thousands_of_transactions_allocates_nothing_once_warm() {
    const TRANSACTIONS: u64 = 3_000;
    // The first transaction's own allocations (its thread's staging buffer...), and a stash
    // locked by the transport at the instant the thread looks, which makes one box more.
    const SLACK: u64 = 64;
    let rounds = transactions_once_warm(TRANSACTIONS, 2, false);
    let not_made = TRANSACTIONS.saturating_sub(rounds.warm_up);
    assert!(
        rounds.measured <= not_made + SLACK,
        "{} allocations for {TRANSACTIONS} transactions, after a warm-up that allocated {}",
        rounds.measured,
        rounds.warm_up
    );
}

/// Allocations counted on the thread running the transactions.
struct Rounds {
    /// In the warm-up rounds: mostly the boxes of the records they had in flight at most.
    warm_up: u64,
    /// In the measured round.
    measured: u64,
}

/// The allocations of `n` transactions started and ended on this thread, after `warm_ups`
/// rounds of `n` whose boxes were given back after each round (as many boxes made as a round
/// has in flight at most); every transaction is checked to have been sent.
fn transactions_once_warm(n: u64, warm_ups: u64, labelled: bool) -> Rounds {
    let h = agent::start(|c| c);
    let run = |name: &'static str| {
        let t = apm::start_transaction(name, "custom");
        if labelled {
            t.set_label("tier", "gold");
            t.set_label("attempt", 1);
        }
    };
    let mut warm_up = 0;
    for _ in 0..warm_ups {
        warm_up += count_allocations(|| (0..n).for_each(|_| run("warm-up")));
        assert!(h.agent().flush(Duration::from_secs(10)));
    }
    let measured = count_allocations(|| (0..n).for_each(|_| run("measured")));
    eprintln!("{measured} allocations for {n} transactions (warm-up: {warm_up})");
    h.flush();
    let transactions = h.transactions();
    assert_eq!(transactions.len() as u64, (warm_ups + 1) * n);
    if labelled {
        for tx in &transactions {
            let tags = &tx["context"]["tags"];
            assert_eq!(tags["tier"], "gold", "{tx:#}");
            assert_eq!(tags["attempt"].as_f64(), Some(1.0), "{tx:#}");
        }
    }
    h.finish();
    Rounds { warm_up, measured }
}

#[apm::transaction]
async fn handle(i: u64) -> u64 {
    agent::Yield(true).await;
    std::hint::black_box(i)
}

/// Polls `future` to completion with a waker that allocates nothing.
fn run_to_end<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// An `async fn` transaction ends when its future completes, outside its polls: once warm, it
/// too takes up the state of the thread's previous transaction and a spare box, and allocates
/// nothing.
#[test]
fn an_async_transaction_allocates_nothing_once_warm() {
    let h = agent::start(|c| c);
    async_transactions_allocate_nothing_once_warm(&h, "async transactions", |i| {
        run_to_end(handle(i));
    });
    h.flush();
    assert_eq!(h.transactions().len() as u64, 3 * TRANSACTIONS);
    h.finish();
}

/// Transactions in each measured round of [`async_transactions_allocate_nothing_once_warm`].
const TRANSACTIONS: u64 = 64;

/// [`TRANSACTIONS`] runs of `run`, after twice as many to warm up and their events sent,
/// allocate at most twice, as transactions ended by their guard (a stash locked by the
/// transport at that very instant makes a record take a new box).
fn async_transactions_allocate_nothing_once_warm(
    h: &agent::Harness,
    what: &str,
    run: impl Fn(u64),
) {
    for i in 0..2 * TRANSACTIONS {
        run(i);
    }
    assert!(h.agent().flush(Duration::from_secs(10)));
    let allocations = count_allocations(|| {
        for i in 0..TRANSACTIONS {
            run(i);
        }
    });
    eprintln!("{allocations} allocations for {TRANSACTIONS} {what}");
    assert!(
        allocations <= 2,
        "{allocations} allocations for {TRANSACTIONS} {what}"
    );
}

#[apm::span]
async fn async_step(i: u64) -> u64 {
    agent::Yield(true).await;
    std::hint::black_box(i)
}

#[apm::transaction]
async fn handle_with_spans(i: u64) -> u64 {
    async_step(i).await + async_step(i + 1).await
}

/// The same with two `async` spans in each transaction: the second takes the reference to
/// the transaction's state that the first kept on the thread, and the transaction's end lets
/// it go before it looks whether its state can be reused. Were it kept past the end, the
/// state would be shared then, and every transaction would allocate a new one.
#[test]
fn an_async_transaction_with_async_spans_allocates_nothing_once_warm() {
    let h = agent::start(|c| c);
    let what = "async transactions of two async spans";
    async_transactions_allocate_nothing_once_warm(&h, what, |i| {
        run_to_end(handle_with_spans(i));
    });
    h.flush();
    assert_eq!(h.transactions().len() as u64, 3 * TRANSACTIONS);
    assert_eq!(h.spans().len() as u64, 6 * TRANSACTIONS);
    h.finish();
}

/// A transaction whose state a span handle still holds when it ends is recorded all the same,
/// and the next transaction on the thread gets state of its own.
#[test]
fn a_transaction_outlived_by_its_span_is_recorded_and_not_reused() {
    let h = agent::start(|c| c);
    let t = apm::start_transaction("outlived", "custom");
    let span = apm::Span::start("outliving", "custom");
    drop(t);
    let next = apm::start_transaction("next", "custom");
    drop(span);
    drop(next);
    h.flush();
    let transactions = h.transactions();
    let outlived = agent::named(&transactions, "outlived");
    let next = agent::named(&transactions, "next");
    assert_ne!(outlived["id"], next["id"]);
    let spans = h.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0]["transaction_id"], outlived["id"]);
    assert_eq!(spans[0]["parent_id"], outlived["id"]);
    h.finish();
}

/// The allocations one run of `query` makes on this thread.
async fn query_allocations<F: std::future::Future<Output = ()>>(query: F) -> u64 {
    let counter = Counter::start();
    query.await;
    counter.stop()
}

/// Outside a transaction `apm::sqlx` hands the query to sqlx as it is: through the traced
/// pool, a query allocates nothing more on this thread than through the pool itself.
#[test]
fn sqlx_queries_outside_a_transaction_allocate_nothing_more() {
    const QUERIES: usize = 50;
    let h = agent::start(|c| c);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (plain, traced) = rt.block_on(async {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("an in-memory SQLite database");
        let pool = apm::sqlx::Traced::new(pool);
        let select = |traced: bool| {
            let pool = &pool;
            async move {
                let query = sqlx::query_scalar::<_, i32>("SELECT 1");
                let n = if traced {
                    query.fetch_one(pool).await
                } else {
                    query.fetch_one(&**pool).await
                };
                assert_eq!(n.expect("a row"), 1);
            }
        };
        // Warm up: the connection and its statement cache.
        for _ in 0..5 {
            select(false).await;
            select(true).await;
        }
        // A run allocates more now and then, depending on timing: whether sqlx's worker thread
        // has answered before the query is polled (a busy machine delays it for a while). So
        // the two alternate, and the fewest of each are compared once both have had `QUERIES`
        // runs and the traced one is no more than the plain one, or after `20 * QUERIES`: a
        // traced query that allocates more never gets there. A query's connection goes back
        // to the pool in a task that sqlx spawns when the query ends, and which this runtime
        // runs when something next yields: each counted run starts once the connection is
        // back, so that no run counts the return of the one before (or waits for it).
        let returned = || async {
            while pool.num_idle() == 0 {
                tokio::task::yield_now().await;
            }
        };
        let (mut plain, mut traced) = (u64::MAX, u64::MAX);
        for round in 1..=20 * QUERIES {
            returned().await;
            plain = plain.min(query_allocations(select(false)).await);
            returned().await;
            traced = traced.min(query_allocations(select(true)).await);
            if round >= QUERIES && traced <= plain {
                break;
            }
        }
        (plain, traced)
    });
    eprintln!("allocations of a query: {plain} through the pool, {traced} traced");
    assert!(
        traced <= plain,
        "a query through the traced pool allocates {traced} times, through the pool {plain}"
    );
    assert_eq!(h.agent().stats().events_recorded, 0);
    h.finish();
}

/// A served request's context (method, URL, version, each header), its response's and its
/// transaction's name are written over an earlier request's strings, which each thread keeps
/// from the records it reuses: once warm, a request allocates nothing, however many headers.
#[test]
fn a_served_request_allocates_nothing_once_warm() {
    use std::sync::{Arc, Mutex};
    use tower::{Layer as _, Service as _};

    const REQUESTS: usize = 32;
    let h = agent::start(|c| c);
    let responses = Arc::new(Mutex::new(Vec::new()));
    let mut service = apm::tower::ApmLayer::new().layer(tower::service_fn({
        let responses = Arc::clone(&responses);
        move |_req: axum::http::Request<String>| {
            let response = responses
                .lock()
                .ok()
                .and_then(|mut r| r.pop())
                .expect("a response made beforehand");
            std::future::ready(Ok::<_, std::convert::Infallible>(response))
        }
    }));
    // Requests and responses are made before the count starts: only what serving them
    // allocates is counted.
    let mut serve = |headers: usize| {
        let mut requests = Vec::new();
        for _ in 0..REQUESTS {
            let mut request = axum::http::Request::builder()
                .method("GET")
                .uri("/orders?page=2")
                .header("host", "shop.internal:8080");
            let mut response = axum::http::Response::builder().status(200);
            for i in 0..headers {
                request = request.header(format!("x-request-{i}"), format!("value {i}"));
                response = response.header(format!("x-response-{i}"), format!("value {i}"));
            }
            requests.push(request.body(String::new()).expect("request"));
            let response = response.body(String::new()).expect("response");
            responses.lock().expect("responses").push(response);
        }
        let allocations = count_allocations(|| {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            for request in requests.drain(..) {
                // As a server does: the future is dropped once it gives the response, and the
                // transaction ends with the response's body.
                let response = {
                    let mut future = std::pin::pin!(service.call(request));
                    loop {
                        if let std::task::Poll::Ready(response) = future.as_mut().poll(&mut cx) {
                            break response;
                        }
                    }
                };
                drop(response);
            }
        });
        assert!(h.agent().flush(Duration::from_secs(10)));
        allocations
    };
    for _ in 0..4 {
        serve(16);
    }
    let many = serve(16);
    let few = serve(0);
    eprintln!("{many} allocations for {REQUESTS} requests of 17 headers, {few} of one");
    // Written anew, 16 more headers would be 64 more strings per request and response; and
    // the name, the state and the record are reused too: nothing is allocated per request.
    assert!(
        many <= 8 && few <= 8,
        "{many} allocations for {REQUESTS} requests of 17 headers, {few} of one"
    );
    assert_eq!(h.transactions().len(), 6 * REQUESTS);
    h.finish();
}

/// With no agent running (never started, or disabled), the layer calls the service as it is:
/// not even the rules it would apply are allocated per request.
#[test]
fn a_request_served_with_no_agent_allocates_nothing_in_the_layer() {
    use tower::{Layer as _, Service as _};

    const REQUESTS: usize = 32;
    let _no_agent = agent::exclusive();
    let mut service =
        apm::tower::ApmLayer::new().layer(tower::service_fn(|_req: axum::http::Request<()>| {
            std::future::ready(Ok::<_, std::convert::Infallible>(
                axum::http::Response::new(()),
            ))
        }));
    let mut requests: Vec<_> = (0..REQUESTS)
        .map(|_| {
            axum::http::Request::builder()
                .uri("/orders")
                .header("user-agent", "curl/8.5.0")
                .body(())
                .expect("request")
        })
        .collect();
    let mut serve = |requests: &mut Vec<_>| {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        for request in requests.drain(..) {
            let mut future = std::pin::pin!(service.call(request));
            while future.as_mut().poll(&mut cx).is_pending() {}
        }
    };
    // The first request on a thread sets up what the thread keeps.
    serve(&mut requests.split_off(REQUESTS - 1));
    let allocations = count_allocations(|| serve(&mut requests));
    let counted = REQUESTS - 1;
    assert_eq!(
        allocations, 0,
        "{allocations} allocations for {counted} requests"
    );
}
