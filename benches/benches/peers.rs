//! `apm` against the other Rust tracers, in one process and one run: a sampled child span
//! around an instrumented no-op function, inside roots of 100 spans, with each tracer's
//! background work (collector threads, batch processors, our transport) counted.
//!
//! Every variant runs the same number of calls per round, rounds go round-robin over the
//! variants (so that a noisy minute hurts them all alike), and each round ends by draining
//! what the calls left to the background (flush), inside the measured time. The figures are
//! medians of the rounds: wall time per call, and CPU time per call of the whole process
//! (all threads, from `CLOCK_PROCESS_CPUTIME_ID`).
//!
//! Then the cost curve of `apm`: 1 to 5 000 spans per transaction, on 1 and 2 threads.
//!
//! `cargo bench -p apm-benches --bench peers`; `./benches/run.sh` regenerates the tables of
//! `BENCHMARKS.md`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apm_benches::{measure_round, median, PerCall, Sink};

/// Spans per root (transaction).
const SPANS_PER_ROOT: u64 = 100;
/// Calls per measured round.
const CALLS: u64 = 100_000;
/// Measured rounds per variant (one more is run first to warm up and thrown away).
const ROUNDS: usize = 15;

#[inline(never)]
fn work(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[apm::span]
#[inline(never)]
fn apm_span(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[fastrace::trace]
#[inline(never)]
fn fastrace_span(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[tracing::instrument(skip_all)]
#[inline(never)]
fn tracing_span(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

/// Runs `calls` calls of `call` in roots of `SPANS_PER_ROOT` opened by `root`.
fn in_roots<R>(calls: u64, mut root: impl FnMut() -> R, call: impl Fn(u64) -> u64) {
    let mut left = calls;
    while left > 0 {
        let n = left.min(SPANS_PER_ROOT);
        let r = root();
        for i in 0..n {
            black_box(call(i));
        }
        drop(r);
        left -= n;
    }
}

struct Variant {
    name: &'static str,
    run: Box<dyn FnMut(u64)>,
    drain: Box<dyn FnMut()>,
    rounds: Vec<PerCall>,
}

impl Variant {
    fn new(name: &'static str, run: impl FnMut(u64) + 'static) -> Variant {
        Variant::with_drain(name, run, || {})
    }
    fn with_drain(
        name: &'static str,
        run: impl FnMut(u64) + 'static,
        drain: impl FnMut() + 'static,
    ) -> Variant {
        Variant {
            name,
            run: Box::new(run),
            drain: Box::new(drain),
            rounds: Vec::new(),
        }
    }
}

struct DropReports;
impl fastrace::collector::Reporter for DropReports {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        black_box(spans);
    }
}

#[derive(Debug)]
struct DropSpans;
impl opentelemetry_sdk::trace::SpanExporter for DropSpans {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

struct DropEnvelopes;
impl sentry_core::Transport for DropEnvelopes {
    fn send_envelope(&self, envelope: sentry_core::Envelope) {
        black_box(envelope);
    }
}

/// A layer that is interested in everything and does nothing.
struct NoopLayer;
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for NoopLayer {}

fn variants(agent: &'static apm::Agent, local: bool) -> Vec<Variant> {
    use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider};
    use tracing_subscriber::layer::SubscriberExt;

    let mut v = Vec::new();
    v.push(Variant::new("clock floor: 2 × `Instant::now()`", |n| {
        for _ in 0..n {
            black_box(Instant::now());
            black_box(Instant::now());
        }
    }));
    v.push(Variant::new("clock floor: 2 × TSC (`fastant`)", |n| {
        for _ in 0..n {
            black_box(fastant::Instant::now());
            black_box(fastant::Instant::now());
        }
    }));
    v.push(Variant::new("bare function", |n| in_roots(n, || (), work)));

    v.push(Variant::with_drain(
        if local {
            "**apm** `#[apm::span]`, shipped uncompressed to an APM Server on 127.0.0.1"
        } else {
            "**apm** `#[apm::span]`, shipped gzip to a local APM Server"
        },
        |n| in_roots(n, || apm::start_transaction("root", "bench"), apm_span),
        move || {
            agent.flush(Duration::from_secs(30));
        },
    ));

    fastrace::set_reporter(DropReports, fastrace::collector::Config::default());
    v.push(Variant::with_drain(
        "fastrace `#[trace]`, reporter that drops",
        |n| {
            in_roots(
                n,
                || {
                    let root =
                        fastrace::Span::root("root", fastrace::collector::SpanContext::random());
                    let guard = root.set_local_parent();
                    (guard, root)
                },
                fastrace_span,
            )
        },
        fastrace::flush,
    ));

    let noop = tracing::Dispatch::new(tracing_subscriber::registry().with(NoopLayer));
    v.push(Variant::new(
        "tracing `#[instrument]`, registry + no-op layer",
        move |n| {
            let _d = tracing::dispatcher::set_default(&noop);
            in_roots(n, || tracing::info_span!("root").entered(), tracing_span)
        },
    ));
    let fmt = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink)),
    );
    v.push(Variant::new(
        "tracing `#[instrument]`, registry + fmt layer to `io::sink`",
        move |n| {
            let _d = tracing::dispatcher::set_default(&fmt);
            in_roots(n, || tracing::info_span!("root").entered(), tracing_span)
        },
    ));

    // Queue big enough for a round: every span reaches the exporter, as with `apm`.
    let processor = opentelemetry_sdk::trace::BatchSpanProcessor::builder(DropSpans)
        .with_batch_config(
            opentelemetry_sdk::trace::BatchConfigBuilder::default()
                .with_max_queue_size(2 * CALLS as usize)
                .build(),
        )
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build();
    let tracer = Arc::new(provider.tracer("bench"));
    let root_tracer = Arc::clone(&tracer);
    v.push(Variant::with_drain(
        "OpenTelemetry SDK `in_span`, batch processor, exporter that drops",
        move |n| {
            in_roots(
                n,
                || {
                    let root = root_tracer.start("root");
                    opentelemetry::Context::current_with_span(root).attach()
                },
                |i| tracer.in_span("apm_span", |_| work(i)),
            )
        },
        move || {
            let _ = provider.force_flush();
        },
    ));

    let client = sentry_core::Client::from(
        sentry_core::ClientOptions::new()
            .dsn("https://public@sentry.invalid/1")
            .traces_sample_rate(1.0)
            .transport(Arc::new(DropEnvelopes)),
    );
    let hub = Arc::new(sentry_core::Hub::new(
        Some(Arc::new(client)),
        Arc::new(sentry_core::Scope::default()),
    ));
    v.push(Variant::new(
        "sentry `start_child`/`finish`, transport that drops",
        move |n| {
            sentry_core::Hub::run(Arc::clone(&hub), || {
                let mut left = n;
                while left > 0 {
                    let k = left.min(SPANS_PER_ROOT);
                    let t = sentry_core::start_transaction(sentry_core::TransactionContext::new(
                        "root", "bench",
                    ));
                    for i in 0..k {
                        let s = t.start_child("function", "apm_span");
                        black_box(work(i));
                        s.finish();
                    }
                    t.finish();
                    left -= k;
                }
            })
        },
    ));
    v
}

fn race(agent: &'static apm::Agent, local: bool, filters: &[String]) {
    let mut variants = variants(agent, local);
    // Always keep the references the ratios are taken against.
    variants.retain(|v| {
        filters.is_empty()
            || v.name.starts_with("fastrace")
            || v.name.starts_with("clock floor: 2 × TSC")
            || filters.iter().any(|f| v.name.contains(f.as_str()))
    });
    let before = agent.stats();
    for round in 0..=ROUNDS {
        for v in &mut variants {
            let r = measure_round(CALLS, &mut v.run, &mut v.drain);
            if round > 0 {
                v.rounds.push(r);
            }
        }
    }
    let after = agent.stats();
    let results: Vec<(&str, PerCall)> = variants
        .iter()
        .map(|v| (v.name, median(&v.rounds)))
        .collect();
    let find = |prefix: &str| {
        results
            .iter()
            .find(|(n, _)| n.starts_with(prefix))
            .map(|(_, r)| *r)
            .unwrap_or_default()
    };
    let fastrace = find("fastrace");
    let tsc = find("clock floor: 2 × TSC");
    println!(
        "\n## race: {CALLS} calls per round, {ROUNDS} rounds, roots of {SPANS_PER_ROOT} spans\n"
    );
    println!("| variant | call ns (app thread) | × fastrace | × TSC floor | wall ns incl. drain | × fastrace | CPU ns, all threads | × fastrace |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, r) in &results {
        println!(
            "| {name} | {:.1} | {:.2} | {:.1} | {:.1} | {:.2} | {:.1} | {:.2} |",
            r.call_ns,
            r.call_ns / fastrace.call_ns,
            r.call_ns / tsc.call_ns,
            r.wall_ns,
            r.wall_ns / fastrace.wall_ns,
            r.cpu_ns,
            r.cpu_ns / fastrace.cpu_ns,
        );
    }
    let sent = after.events_sent - before.events_sent;
    let dropped = (after.events_dropped_queue_full - before.events_dropped_queue_full)
        + (after.events_dropped_send_failed - before.events_dropped_send_failed);
    println!("\napm shipped {sent} events, dropped {dropped}.");
}

/// `apm`'s cost per span by spans per transaction and threads recording at once.
fn curve(agent: &'static apm::Agent) {
    const SHAPES: [u64; 5] = [1, 10, 100, 500, 5_000];
    const THREADS: [u64; 2] = [1, 2];
    let mut cells: Vec<(u64, u64, Vec<PerCall>)> = Vec::new();
    for threads in THREADS {
        for spans in SHAPES {
            cells.push((threads, spans, Vec::new()));
        }
    }
    let before = agent.stats();
    for round in 0..=ROUNDS / 3 {
        for (threads, spans, rounds) in &mut cells {
            let (threads, spans) = (*threads, *spans);
            let mut run = |calls: u64| {
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| apm_benches::in_transactions(calls / threads, spans, apm_span));
                    }
                });
            };
            let mut drain = || {
                agent.flush(Duration::from_secs(30));
            };
            let mut r = measure_round(CALLS, &mut run, &mut drain);
            // Per span and per recording thread: flat across threads means no contention.
            r.call_ns *= threads as f64;
            r.wall_ns *= threads as f64;
            if round > 0 {
                rounds.push(r);
            }
        }
    }
    let after = agent.stats();
    println!(
        "\n## curve: {CALLS} spans per round in all, {} rounds\n",
        ROUNDS / 3
    );
    println!("| threads | spans per transaction | call ns/span per thread (app) | wall ns/span per thread incl. drain | CPU ns/span, all threads |");
    println!("|---:|---:|---:|---:|---:|");
    for (threads, spans, rounds) in &cells {
        let r = median(rounds);
        println!(
            "| {threads} | {spans} | {:.1} | {:.1} | {:.1} |",
            r.call_ns, r.wall_ns, r.cpu_ns
        );
    }
    let sent = after.events_sent - before.events_sent;
    let dropped_queue = after.events_dropped_queue_full - before.events_dropped_queue_full;
    println!("\napm shipped {sent} events, dropped {dropped_queue} (queue full); spans past `transaction_max_spans` (500) are counted in their transaction, not recorded.");
}

fn main() {
    if !cfg!(feature = "enable") {
        eprintln!("peers: the agent is compiled out (--no-default-features); nothing to race");
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once, quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    // `--local`: the APM Server on 127.0.0.1, to which the spec says not to compress.
    let local = std::env::args().any(|a| a == "--local");
    let sink = if local {
        Sink::start_local()
    } else {
        Sink::start(Duration::ZERO)
    };
    let agent: &'static apm::Agent = Box::leak(Box::new(apm::init_with(
        apm::Config::builder()
            .service_name("bench")
            .server_url(sink.url())
            .max_queue_size(4 * CALLS as usize)
            .build(),
    )));
    // `--profile <part of a name> <calls>`: only that variant, for perf/callgrind.
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--profile") {
        let name = args.get(i + 1).map_or("apm", String::as_str);
        let calls = args
            .get(i + 2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(100_000);
        for v in &mut variants(agent, local) {
            if v.name.contains(name) {
                let r = measure_round(calls, &mut v.run, &mut v.drain);
                println!("{}: {:.1} ns/call", v.name, r.call_ns);
            }
        }
        return;
    }
    if quick {
        let mut v = variants(agent, local);
        for v in &mut v {
            measure_round(1_000, &mut v.run, &mut v.drain);
        }
        return;
    }
    // Arguments other than flags select variants by a part of their name (for profiling one);
    // `curve` selects the cost curve.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if filters.is_empty() || filters.iter().any(|f| f != "curve") {
        race(agent, local, &filters);
    }
    if filters.is_empty() || filters.iter().any(|f| f == "curve") {
        curve(agent);
    }
    let (requests, bytes) = sink.received();
    println!("\nThe sink received {requests} requests, {bytes} bytes.");
}
