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
//! Then the same variants under sustained load: each alone in a process of its own, calling
//! without pause for a few seconds, with nothing drained between calls. A tracer whose
//! background cannot keep up shows it there: in its calls' cost, its memory, or the share of
//! spans that reach its backend.
//!
//! Then the cost curve of `apm`: 1 to 5 000 spans per transaction, on 1 and 2 threads.
//!
//! `cargo bench -p apm-benches --bench peers [-- race|sustained|curve] [part of a variant's
//! name]...`; `./benches/run.sh` regenerates the tables of
//! `BENCHMARKS.md`.

use std::hint::black_box;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apm_benches::{measure_round, median, resident_bytes, PerCall, Sink};

/// Spans per root (transaction).
const SPANS_PER_ROOT: u64 = 100;
/// Calls per measured round.
const CALLS: u64 = 100_000;
/// Measured rounds per variant (one more is run first to warm up and thrown away).
const ROUNDS: usize = 15;
/// Sustained load: seconds each variant calls without pause in its own process, how many
/// such processes each variant gets (round-robin), and the calls per measured window.
const SUSTAINED_SECS: f64 = 5.0;
const SUSTAINED_RUNS: usize = 3;
const WINDOW_CALLS: u64 = 200_000;
/// The argument that makes this program one variant's sustained-load process.
const SUSTAINED_CHILD: &str = "--sustained-child";

/// Span records that reached fastrace's reporter, and spans that reached OpenTelemetry's
/// exporter: what each tracer's background delivered.
static FASTRACE_REPORTED: AtomicU64 = AtomicU64::new(0);
static OTEL_EXPORTED: AtomicU64 = AtomicU64::new(0);

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

/// What a variant's spans become.
enum Delivery {
    /// Nothing is recorded (the clock floors, the bare function).
    Nothing,
    /// The tracer's layer or transport gets every span on the calling thread.
    OnTheCallingThread,
    /// A background thread takes the spans on; the count of those that reached the backend
    /// (for `apm`: events the APM Server was sent).
    Background(Box<dyn Fn() -> u64>),
}

struct Variant {
    name: &'static str,
    run: Box<dyn FnMut(u64)>,
    drain: Box<dyn FnMut()>,
    delivery: Delivery,
    rounds: Vec<PerCall>,
}

impl Variant {
    fn new(name: &'static str, delivery: Delivery, run: impl FnMut(u64) + 'static) -> Variant {
        Variant::with_drain(name, delivery, run, || {})
    }
    fn with_drain(
        name: &'static str,
        delivery: Delivery,
        run: impl FnMut(u64) + 'static,
        drain: impl FnMut() + 'static,
    ) -> Variant {
        Variant {
            name,
            run: Box::new(run),
            drain: Box::new(drain),
            delivery,
            rounds: Vec::new(),
        }
    }
}

struct DropReports;
impl fastrace::collector::Reporter for DropReports {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        FASTRACE_REPORTED.fetch_add(spans.len() as u64, Relaxed);
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
        OTEL_EXPORTED.fetch_add(batch.len() as u64, Relaxed);
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
    v.push(Variant::new(
        "clock floor: 2 × `Instant::now()`",
        Delivery::Nothing,
        |n| {
            for _ in 0..n {
                black_box(Instant::now());
                black_box(Instant::now());
            }
        },
    ));
    v.push(Variant::new(
        "clock floor: 2 × TSC (`fastant`)",
        Delivery::Nothing,
        |n| {
            for _ in 0..n {
                black_box(fastant::Instant::now());
                black_box(fastant::Instant::now());
            }
        },
    ));
    v.push(Variant::new("bare function", Delivery::Nothing, |n| {
        in_roots(n, || (), work)
    }));

    v.push(Variant::with_drain(
        if local {
            "**apm** `#[apm::span]`, shipped uncompressed to an APM Server on 127.0.0.1"
        } else {
            "**apm** `#[apm::span]`, shipped gzip to a local APM Server"
        },
        Delivery::Background(Box::new(move || agent.stats().events_sent)),
        |n| in_roots(n, || apm::start_transaction("root", "bench"), apm_span),
        move || {
            agent.flush(Duration::from_secs(30));
        },
    ));

    fastrace::set_reporter(DropReports, fastrace::collector::Config::default());
    v.push(Variant::with_drain(
        "fastrace `#[trace]`, reporter that drops",
        Delivery::Background(Box::new(|| FASTRACE_REPORTED.load(Relaxed))),
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
        Delivery::OnTheCallingThread,
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
        Delivery::OnTheCallingThread,
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
        Delivery::Background(Box::new(|| OTEL_EXPORTED.load(Relaxed))),
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
        Delivery::OnTheCallingThread,
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
    variants.retain(|v| selected(v.name, filters));
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

/// One variant's sustained-load process: calls without pause for `secs`, and prints, per
/// window of [`WINDOW_CALLS`] calls, the wall and CPU time per call, the time since the start
/// and the resident memory; then the calls made, the seconds and CPU seconds they took, and
/// the spans the tracer's background delivered.
fn sustained_child(agent: &'static apm::Agent, local: bool, index: usize, secs: f64) {
    let mut variants = variants(agent, local);
    let Some(v) = variants.get_mut(index) else {
        eprintln!("peers: no variant {index}");
        std::process::exit(2);
    };
    let delivered = |v: &Variant| match &v.delivery {
        Delivery::Background(count) => Some(count()),
        _ => None,
    };
    let delivered_before = delivered(v);
    let cpu_before = apm_benches::process_cpu_time();
    let start = Instant::now();
    let mut calls = 0;
    while start.elapsed().as_secs_f64() < secs {
        let r = measure_round(WINDOW_CALLS, &mut v.run, &mut || {});
        calls += WINDOW_CALLS;
        println!(
            "window {} {} {} {}",
            r.call_ns,
            r.cpu_ns,
            start.elapsed().as_secs_f64(),
            resident_bytes()
        );
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = (apm_benches::process_cpu_time() - cpu_before).as_secs_f64();
    let delivered = match (delivered_before, delivered(v)) {
        (Some(before), Some(after)) => (after - before).to_string(),
        _ => "-".to_owned(),
    };
    println!("end {calls} {seconds} {cpu} {delivered}");
}

/// What the sustained-load processes of one variant measured.
#[derive(Default)]
struct Sustained {
    /// Per window, after each process's first (warm-up) window.
    call_ns: Vec<f64>,
    cpu_ns: Vec<f64>,
    /// The largest growth of resident memory in a process, in bytes: over the first half of
    /// its run (from the end of its first window) and over the second half. A bounded tracer
    /// stops growing; an unbounded one grows in both.
    growth_first_half: i64,
    growth_second_half: i64,
    calls: u64,
    seconds: f64,
    cpu_seconds: f64,
    /// Spans delivered by the background, where there is one.
    delivered: Option<u64>,
}

impl Sustained {
    fn add(&mut self, output: &str) {
        let mut rss: Vec<(f64, i64)> = Vec::new();
        for line in output.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["window", call, cpu, at, resident] => {
                    if !rss.is_empty() {
                        self.call_ns.push(call.parse().unwrap_or(f64::NAN));
                        self.cpu_ns.push(cpu.parse().unwrap_or(f64::NAN));
                    }
                    rss.push((at.parse().unwrap_or(0.0), resident.parse().unwrap_or(0)));
                }
                ["end", calls, seconds, cpu, delivered] => {
                    self.calls += calls.parse::<u64>().unwrap_or(0);
                    self.seconds += seconds.parse::<f64>().unwrap_or(0.0);
                    self.cpu_seconds += cpu.parse::<f64>().unwrap_or(0.0);
                    if let Ok(n) = delivered.parse::<u64>() {
                        *self.delivered.get_or_insert(0) += n;
                    }
                }
                _ => {}
            }
        }
        if let (Some(&(start, first)), Some(&(end, last))) = (rss.first(), rss.last()) {
            let half = (start + end) / 2.0;
            let mid = rss.iter().find(|(at, _)| *at >= half).map_or(last, |r| r.1);
            self.growth_first_half = self.growth_first_half.max(mid - first);
            self.growth_second_half = self.growth_second_half.max(last - mid);
        }
    }
}

fn median_of(values: &[f64]) -> f64 {
    let rounds: Vec<PerCall> = values
        .iter()
        .map(|&call_ns| PerCall {
            call_ns,
            ..PerCall::default()
        })
        .collect();
    median(&rounds).call_ns
}

/// Each selected variant alone in a process of its own, calling without pause for
/// [`SUSTAINED_SECS`]; [`SUSTAINED_RUNS`] processes per variant, round-robin.
fn sustained(agent: &'static apm::Agent, local: bool, filters: &[String]) {
    let variants = variants(agent, local);
    let chosen: Vec<usize> = (0..variants.len())
        .filter(|&i| selected(variants[i].name, filters))
        .collect();
    let mut results: Vec<Sustained> = variants.iter().map(|_| Sustained::default()).collect();
    for _ in 0..SUSTAINED_RUNS {
        for &i in &chosen {
            let exe = std::env::current_exe().expect("the benchmark's own path");
            let mut cmd = Command::new(exe);
            cmd.args(["--bench", SUSTAINED_CHILD, &i.to_string()])
                .arg(SUSTAINED_SECS.to_string());
            if local {
                cmd.arg("--local");
            }
            let output = cmd.stdin(Stdio::null()).stderr(Stdio::inherit()).output();
            match output {
                Ok(o) if o.status.success() => results[i].add(&String::from_utf8_lossy(&o.stdout)),
                Ok(o) => eprintln!(
                    "peers: {} failed under sustained load: {}",
                    variants[i].name, o.status
                ),
                Err(e) => eprintln!(
                    "peers: could not run {} under sustained load: {e}",
                    variants[i].name
                ),
            }
        }
    }
    let fastrace = chosen
        .iter()
        .find(|&&i| variants[i].name.starts_with("fastrace"))
        .map(|&i| {
            (
                median_of(&results[i].call_ns),
                median_of(&results[i].cpu_ns),
            )
        })
        .unwrap_or((f64::NAN, f64::NAN));
    println!(
        "\n## sustained: each variant alone in its own process, calling without pause for {SUSTAINED_SECS} s, {SUSTAINED_RUNS} processes each; medians of windows of {WINDOW_CALLS} calls, roots of {SPANS_PER_ROOT} spans\n"
    );
    println!("| variant | call ns (app thread) | × fastrace | CPU ns/call, all threads | × fastrace | resident memory growth MiB, 1st half / 2nd half | spans delivered per s | share of spans delivered | CPU ns per span delivered | × fastrace |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // Roots are spans too: SPANS_PER_ROOT + 1 spans per SPANS_PER_ROOT calls.
    let spans_recorded =
        |r: &Sustained| r.calls as f64 * (SPANS_PER_ROOT + 1) as f64 / SPANS_PER_ROOT as f64;
    let per_delivered = |i: usize| {
        let r = &results[i];
        match (&variants[i].delivery, r.delivered) {
            (Delivery::Nothing, _) | (Delivery::Background(_), None) => None,
            (Delivery::OnTheCallingThread, _) => Some(r.cpu_seconds * 1e9 / spans_recorded(r)),
            (Delivery::Background(_), Some(n)) => Some(r.cpu_seconds * 1e9 / n.max(1) as f64),
        }
    };
    let fastrace_per_delivered = chosen
        .iter()
        .find(|&&i| variants[i].name.starts_with("fastrace"))
        .and_then(|&i| per_delivered(i))
        .unwrap_or(f64::NAN);
    for &i in &chosen {
        let r = &results[i];
        let (call, cpu) = (median_of(&r.call_ns), median_of(&r.cpu_ns));
        let (rate, share) = match (&variants[i].delivery, r.delivered) {
            (Delivery::Nothing, _) => ("-".to_owned(), "-".to_owned()),
            (Delivery::OnTheCallingThread, _) => (
                format!("{:.1} M", spans_recorded(r) / r.seconds / 1e6),
                "all, on the calling thread".to_owned(),
            ),
            (Delivery::Background(_), Some(n)) => (
                format!("{:.1} M", n as f64 / r.seconds / 1e6),
                format!("{:.0}%", 100.0 * n as f64 / spans_recorded(r)),
            ),
            (Delivery::Background(_), None) => ("?".to_owned(), "?".to_owned()),
        };
        let (delivered_cpu, delivered_ratio) = match per_delivered(i) {
            Some(ns) => (
                format!("{ns:.1}"),
                format!("{:.2}", ns / fastrace_per_delivered),
            ),
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "| {} | {call:.1} | {:.2} | {cpu:.1} | {:.2} | {:+.1} / {:+.1} | {rate} | {share} | {delivered_cpu} | {delivered_ratio} |",
            variants[i].name,
            call / fastrace.0,
            cpu / fastrace.1,
            r.growth_first_half as f64 / (1024.0 * 1024.0),
            r.growth_second_half as f64 / (1024.0 * 1024.0),
        );
    }
}

/// Whether a variant takes part, given the parts of names asked for (none: all). The
/// references the ratios are taken against always do.
fn selected(name: &str, filters: &[String]) -> bool {
    filters.is_empty()
        || name.starts_with("fastrace")
        || name.starts_with("clock floor: 2 × TSC")
        || filters.iter().any(|f| name.contains(f.as_str()))
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
    let args: Vec<String> = std::env::args().collect();
    let mut config = apm::Config::builder()
        .service_name("bench")
        .server_url(sink.url());
    // The race's rounds are bursts that a queue this size holds whole, so that every span is
    // shipped; under sustained load the agent runs as deployed, with the default queue.
    if !args.iter().any(|a| a == SUSTAINED_CHILD) {
        config = config.max_queue_size(4 * CALLS as usize);
    }
    let agent: &'static apm::Agent = Box::leak(Box::new(apm::init_with(config.build())));
    if let Some(i) = args.iter().position(|a| a == SUSTAINED_CHILD) {
        let index = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX);
        let secs = args
            .get(i + 2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(SUSTAINED_SECS);
        sustained_child(agent, local, index, secs);
        return;
    }
    // `--profile <part of a name> <calls>`: only that variant, for perf/callgrind.
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
    // Arguments other than flags name the parts to run (`race`, `sustained`, `curve`; none:
    // all) and select variants by a part of their name.
    const PARTS: [&str; 3] = ["race", "sustained", "curve"];
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (parts, filters): (Vec<String>, Vec<String>) =
        words.into_iter().partition(|w| PARTS.contains(&w.as_str()));
    let run = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    if run("race") {
        race(agent, local, &filters);
    }
    if run("sustained") {
        sustained(agent, local, &filters);
    }
    if run("curve") {
        curve(agent);
    }
    let (requests, bytes) = sink.received();
    println!("\nThe sink received {requests} requests, {bytes} bytes.");
}
