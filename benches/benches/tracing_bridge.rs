//! `apm::tracing::ApmLayer` against a layer that does nothing, and against
//! `tracing-opentelemetry` (the OpenTelemetry SDK's batch processor behind it, with an exporter
//! that drops what it is given), on the same registry: what the
//! bridge adds to a tracing span (created, entered, exited, closed: what a
//! `#[tracing::instrument]` function costs), inside `apm` transactions of 100 spans (opened in
//! both variants, so that only the layer differs), and outside any transaction; then spans
//! with two fields (a `Debug` one and a number, as `#[tracing::instrument]` records a
//! function's arguments), through the no-op layer and `ApmLayer`.
//!
//! Criterion's medians first, then the ratios measured in one run: rounds alternate between
//! the subscribers, and the ratios of the medians of the rounds to the no-op layer's are
//! printed.
//!
//! `cargo bench -p apm-benches --bench tracing_bridge`

use std::hint::black_box;
use std::time::{Duration, Instant};

use apm_benches::Sink;
use criterion::{criterion_group, criterion_main, Criterion};
use tracing::{info_span, Dispatch};
use tracing_subscriber::layer::Layer;
use tracing_subscriber::prelude::*;

/// A layer that does nothing: the baseline.
struct Noop;
impl<S: tracing::Subscriber> Layer<S> for Noop {}

/// Spans per transaction.
const PER_TRANSACTION: u64 = 100;

#[inline(never)]
fn one_span(i: u64) -> u64 {
    let span = info_span!("work");
    let _entered = span.enter();
    black_box(i).wrapping_mul(3)
}

/// A span with fields, as `#[tracing::instrument]` records a function's arguments (with
/// `Debug`, unless told otherwise): each becomes a label.
#[inline(never)]
fn one_span_with_fields(i: u64) -> u64 {
    let span = info_span!("work", user = ?"alice", attempt = i);
    let _entered = span.enter();
    black_box(i).wrapping_mul(3)
}

/// `calls` spans made by `span` inside transactions of `PER_TRANSACTION` spans (or outside
/// any).
fn run(calls: u64, in_transaction: bool, span: fn(u64) -> u64) {
    if !in_transaction {
        for i in 0..calls {
            black_box(span(i));
        }
        return;
    }
    apm_benches::in_transactions(calls, PER_TRANSACTION, span);
}

fn noop() -> Dispatch {
    Dispatch::new(tracing_subscriber::registry().with(Noop))
}

/// What OpenTelemetry's exporter would send, dropped (the cost measured is the layer's and
/// the SDK's on the calling thread, not a network's).
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

fn otel() -> Dispatch {
    use opentelemetry::trace::TracerProvider;
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
    // Sized not to drop: the SDK's default queue (2048) overflows within a round.
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(1 << 19)
        .with_max_export_batch_size(2048)
        .with_scheduled_delay(Duration::from_millis(20))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::new(DropSpans, batch))
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
    // The provider lives as long as the benchmark: dropping it would stop its processor.
    std::mem::forget(provider);
    Dispatch::new(tracing_subscriber::registry().with(layer))
}

fn bridged() -> Dispatch {
    Dispatch::new(tracing_subscriber::registry().with(apm::tracing::ApmLayer::new()))
}

fn agent(server: &Sink) -> apm::Agent {
    apm::init_with(
        apm::Config::builder()
            .service_name("bench")
            .server_url(server.url())
            .max_queue_size(64 * 1024)
            .build(),
    )
}

fn bench(c: &mut Criterion) {
    // Reads requests whole and throws them away: no test server's parsing competes with the
    // measured thread.
    let server = Sink::start_local();
    let agent = agent(&server);
    let mut g = c.benchmark_group("tracing_bridge");
    let plain: fn(u64) -> u64 = one_span;
    let with_fields: fn(u64) -> u64 = one_span_with_fields;
    for (name, dispatch, in_transaction, span) in [
        ("noop_layer", noop(), true, plain),
        ("apm_layer", bridged(), true, plain),
        ("apm_layer_outside_transaction", bridged(), false, plain),
        ("tracing_opentelemetry", otel(), true, plain),
        ("noop_layer_fields", noop(), true, with_fields),
        ("apm_layer_fields", bridged(), true, with_fields),
    ] {
        tracing::dispatcher::with_default(&dispatch, || {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    run(iters, in_transaction, span);
                    start.elapsed()
                })
            });
        });
        agent.flush(Duration::from_secs(30));
    }
    g.finish();
    ratio(&agent);
}

/// The subscribers in alternating rounds of one run; prints the medians (wall time and the
/// calling thread's CPU time per span) and their ratios to the no-op layer's; then the same
/// for spans with two fields, through the no-op layer and `ApmLayer`.
fn ratio(agent: &apm::Agent) {
    // Under `cargo test` (no `--bench`), a smoke run: one round of a few spans.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (rounds, calls): (usize, u64) = if quick { (1, 2_000) } else { (21, 200_000) };
    let (noop, bridged, otel) = (noop(), bridged(), otel());
    let plain: fn(u64) -> u64 = one_span;
    let with_fields: fn(u64) -> u64 = one_span_with_fields;
    let variants = [
        (&noop, plain),
        (&bridged, plain),
        (&otel, plain),
        (&noop, with_fields),
        (&bridged, with_fields),
    ];
    let mut wall = variants.map(|_| Vec::new());
    let mut cpu = variants.map(|_| Vec::new());
    for round in 0..=rounds {
        for (k, (d, span)) in variants.iter().enumerate() {
            let (w, c) = tracing::dispatcher::with_default(d, || {
                let (w0, c0) = (Instant::now(), apm_benches::thread_cpu_time());
                run(calls, true, *span);
                (
                    w0.elapsed(),
                    apm_benches::thread_cpu_time().saturating_sub(c0),
                )
            });
            agent.flush(Duration::from_secs(30));
            // The first round warms up.
            if round > 0 {
                wall[k].push(w.as_nanos() as f64 / calls as f64);
                cpu[k].push(c.as_nanos() as f64 / calls as f64);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("ratio (one run, {rounds} alternating rounds of {calls} spans, medians):");
    for (what, v) in [("wall time", &mut wall), ("thread CPU time", &mut cpu)] {
        let (n, a, o) = (median(&mut v[0]), median(&mut v[1]), median(&mut v[2]));
        println!(
            "  {what}: noop layer {n:.1} ns/span, ApmLayer {a:.1} ns/span, \
             ApmLayer / noop = {:.2} (+{:.0}%), tracing-opentelemetry {o:.1} ns/span, \
             tracing-opentelemetry / noop = {:.2}",
            a / n,
            (a / n - 1.0) * 100.0,
            o / n
        );
        let (n, a) = (median(&mut v[3]), median(&mut v[4]));
        println!(
            "  two fields, {what}: noop layer {n:.1} ns/span, ApmLayer {a:.1} ns/span, \
             ApmLayer / noop = {:.2}",
            a / n
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
