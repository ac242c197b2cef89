//! One instrumented call, side by side in one run: the bare function, `#[apm::span]` with the
//! agent off at run time, inside an unsampled transaction, and inside a sampled transaction
//! whose events the transport really serialises and ships to a local APM Server.
//!
//! `cargo bench -p apm-benches` (all variants) and
//! `cargo bench -p apm-benches --no-default-features` (the same code compiled out).
//! `./benches/run.sh` runs both and prints the table of `BENCHMARKS.md`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use apm_benches::{thread_cpu_time, Sink};
use apm_tests::MockServer;
use criterion::{criterion_group, criterion_main, Criterion};

/// Spans per transaction (a new root every this many calls).
const SPANS_PER_TRANSACTION: u64 = 100;

#[inline(never)]
fn bare(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[apm::span]
#[inline(never)]
fn instrumented(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

/// Returns `Pending` the first `n` times it is polled (waking itself), then `Ready`: an await
/// that yields, as one on I/O does.
struct Yields(u8);

impl std::future::Future for Yields {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 == 0 {
            return std::task::Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// Polled three times before it completes.
#[apm::span]
#[inline(never)]
async fn instrumented_async(x: u64) -> u64 {
    Yields(2).await;
    black_box(x).wrapping_mul(3)
}

/// The same `async fn` without a span: what polling it three times costs the application
/// without any instrumentation (subtracted to get what the span itself costs).
#[inline(never)]
async fn bare_async(x: u64) -> u64 {
    Yields(2).await;
    black_box(x).wrapping_mul(3)
}

/// Polls `fut` until it completes, with a waker that does nothing.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// `iters` async spans polled three times each, inside transactions of
/// `SPANS_PER_TRANSACTION` spans.
fn async_in_transactions(iters: u64) -> Duration {
    let start = Instant::now();
    apm_benches::in_transactions(iters, SPANS_PER_TRANSACTION, |x| {
        block_on(instrumented_async(x))
    });
    start.elapsed()
}

/// `iters` uninstrumented async calls polled three times each, inside the same transactions
/// as [`async_in_transactions`]: its floor.
fn bare_async_in_transactions(iters: u64) -> Duration {
    let start = Instant::now();
    apm_benches::in_transactions(iters, SPANS_PER_TRANSACTION, |x| block_on(bare_async(x)));
    start.elapsed()
}

/// `iters` calls of the uninstrumented function inside the same transactions as
/// [`in_transactions`]: its floor.
fn bare_in_transactions(iters: u64) -> Duration {
    let start = Instant::now();
    apm_benches::in_transactions(iters, SPANS_PER_TRANSACTION, bare);
    start.elapsed()
}

/// The application thread's CPU time for `iters` calls of `call`, in transactions of
/// `SPANS_PER_TRANSACTION` calls, each transaction's start and end left out of the count. Not
/// wall time: on two cores shared with the transport and the server, a thread descheduled for
/// a while made a wall-time figure move by a third between runs (BENCHMARKS.md §10d), and the
/// ratio of two such figures more.
fn spans_thread_cpu(iters: u64, call: impl Fn(u64) -> u64) -> Duration {
    let mut cpu = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(SPANS_PER_TRANSACTION);
        let _t = apm::start_transaction("bench", "custom");
        let cpu0 = thread_cpu_time();
        for i in 0..n {
            black_box(call(i));
        }
        cpu += thread_cpu_time() - cpu0;
        left -= n;
    }
    cpu
}

/// The same work in a span of the manual API, its guard current until dropped (what the
/// integrations' spans and a hand-made span pay).
#[inline(never)]
fn guarded(x: u64) -> u64 {
    let _span = apm::start_span("guarded", "app");
    black_box(x).wrapping_mul(3)
}

/// `iters` manual spans, inside transactions of `SPANS_PER_TRANSACTION` spans.
fn guarded_in_transactions(iters: u64) -> Duration {
    let start = Instant::now();
    apm_benches::in_transactions(iters, SPANS_PER_TRANSACTION, guarded);
    start.elapsed()
}

/// Calls `instrumented` `iters` times, inside transactions of `SPANS_PER_TRANSACTION` spans.
fn in_transactions(iters: u64) -> Duration {
    let start = Instant::now();
    apm_benches::in_transactions(iters, SPANS_PER_TRANSACTION, instrumented);
    start.elapsed()
}

/// Calls `instrumented` `iters` times inside one transaction (the spans' own cost).
fn in_one_transaction(iters: u64) -> Duration {
    let start = Instant::now();
    let _t = apm::start_transaction("bench", "custom");
    for i in 0..iters {
        black_box(instrumented(i));
    }
    start.elapsed()
}

/// Transactions per measured burst. Between bursts the thread sleeps, unmeasured, while the
/// transport ships them: started without pause, transactions would outrun the transport and
/// fill the queue, and the thread would measure the queue's overflow rather than a
/// transaction.
const BURST: u64 = 64;

/// The application thread's CPU time (not wall time: the transport and the server share the
/// two cores) for `iters` sampled transactions started and ended, no span, in bursts.
fn transactions_thread_cpu(iters: u64) -> Duration {
    thread_cpu_in_bursts(iters, || {
        drop(black_box(apm::start_transaction("bench", "custom")));
    })
}

/// The floor of a transaction measured as [`transactions_thread_cpu`] is: its two clock reads.
fn two_tsc_reads_thread_cpu(iters: u64) -> Duration {
    thread_cpu_in_bursts(iters, || {
        black_box(fastant::Instant::now());
        black_box(fastant::Instant::now());
    })
}

/// This thread's CPU time for `iters` calls of `call`, made in bursts of [`BURST`] with a
/// pause after each.
fn thread_cpu_in_bursts(iters: u64, mut call: impl FnMut()) -> Duration {
    let mut cpu = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(BURST);
        let cpu0 = thread_cpu_time();
        for _ in 0..n {
            call();
        }
        cpu += thread_cpu_time() - cpu0;
        left -= n;
        std::thread::sleep(Duration::from_micros(100));
    }
    cpu
}

fn agent(server: &MockServer, sample_rate: f64) -> apm::Agent {
    agent_to(&server.url(), sample_rate)
}

fn agent_to(url: &str, sample_rate: f64) -> apm::Agent {
    apm::init_with(
        apm::Config::builder()
            .service_name("bench")
            .server_url(url)
            .transaction_sample_rate(sample_rate)
            .max_queue_size(64 * 1024)
            .build(),
    )
}

fn span(c: &mut Criterion) {
    let server = MockServer::start();
    server.set_keep_payloads(false);
    let mut g = c.benchmark_group("span");
    g.bench_function("bare", |b| b.iter(|| bare(black_box(7))));
    if cfg!(feature = "enable") {
        // No agent running: the instrumentation costs one relaxed load.
        g.bench_function("runtime_disabled", |b| {
            b.iter(|| instrumented(black_box(7)))
        });
        {
            let _agent = agent(&server, 0.0);
            g.bench_function("unsampled", |b| b.iter_custom(in_one_transaction));
            g.bench_function("unsampled_new_transaction_every_100", |b| {
                b.iter_custom(in_transactions)
            });
        }
        {
            let agent = agent(&server, 1.0);
            g.bench_function("sampled_shipped", |b| b.iter_custom(in_transactions));
            // The same span on an `async fn` polled three times (the future is made current
            // for each poll).
            g.bench_function("async_sampled_shipped_three_polls", |b| {
                b.iter_custom(async_in_transactions)
            });
            // The floors of the two above: the same calls and transactions without a span.
            // A span's own cost is its figure less its floor (issue 17 compares those of the
            // sync and the async span).
            g.bench_function("bare_in_transactions", |b| {
                b.iter_custom(bare_in_transactions)
            });
            g.bench_function("bare_async_three_polls_in_transactions", |b| {
                b.iter_custom(bare_async_in_transactions)
            });
            // The four above as the thread's CPU time rather than wall time: the ratio of
            // the async span to the sync one, each less its floor, without the time the
            // thread was descheduled.
            g.bench_function("sampled_shipped_thread_cpu", |b| {
                b.iter_custom(|iters| spans_thread_cpu(iters, instrumented))
            });
            g.bench_function("async_sampled_shipped_three_polls_thread_cpu", |b| {
                b.iter_custom(|iters| spans_thread_cpu(iters, |x| block_on(instrumented_async(x))))
            });
            g.bench_function("bare_in_transactions_thread_cpu", |b| {
                b.iter_custom(|iters| spans_thread_cpu(iters, bare))
            });
            g.bench_function("bare_async_three_polls_in_transactions_thread_cpu", |b| {
                b.iter_custom(|iters| spans_thread_cpu(iters, |x| block_on(bare_async(x))))
            });
            // A span of the manual API (`apm::start_span`), its guard dropped at the end.
            g.bench_function("guard_sampled_shipped", |b| {
                b.iter_custom(guarded_in_transactions)
            });
            // A sampled transaction with no span, started and ended: what the application
            // thread pays per request beyond its spans.
            g.bench_function("transaction_sampled_shipped", |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        drop(black_box(apm::start_transaction("bench", "custom")));
                    }
                    start.elapsed()
                })
            });
            agent.flush(Duration::from_secs(30));
            let s = agent.stats();
            eprintln!(
                "sampled_shipped: {} events sent, {} dropped (queue full), {} dropped (send failed)",
                s.events_sent, s.events_dropped_queue_full, s.events_dropped_send_failed
            );
        }
        {
            // Issue 17's measure of a transaction: the application thread's CPU time per
            // start and end, shipped to a sink that reads and discards (no parsing on the
            // same cores), beside the floor of its two clock reads.
            // The pauses make these slow in wall time: a shorter measurement.
            let sink = Sink::start_local();
            let agent = agent_to(&sink.url(), 1.0);
            g.measurement_time(Duration::from_millis(500));
            g.bench_function("transaction_thread_cpu", |b| {
                b.iter_custom(transactions_thread_cpu)
            });
            g.bench_function("two_tsc_reads_thread_cpu", |b| {
                b.iter_custom(two_tsc_reads_thread_cpu)
            });
            agent.flush(Duration::from_secs(30));
            let s = agent.stats();
            eprintln!(
                "transaction_thread_cpu: {} events sent, {} dropped (queue full), {} dropped (send failed)",
                s.events_sent, s.events_dropped_queue_full, s.events_dropped_send_failed
            );
        }
    } else {
        g.bench_function("compiled_out", |b| b.iter(|| instrumented(black_box(7))));
        g.bench_function("compiled_out_in_a_transaction", |b| {
            b.iter_custom(in_one_transaction)
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = span
}
criterion_main!(benches);
