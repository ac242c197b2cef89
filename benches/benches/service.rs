//! A real service: an axum hello-world whose route does a few microseconds of work in a
//! database-like and an HTTP-client-like function, loaded by `wrk` (keep-alive connections) from
//! a process of its own, for three variants:
//! - `bare`: no instrumentation;
//! - `apm`: `apm::tower::ApmLayer` on the router and the route's work in `#[apm::span]`
//!   functions (the route, a `db` span and an `external` span): a transaction and three spans
//!   per request;
//! - `tower-http-otel`: tower-http's `TraceLayer`, `tracing-opentelemetry` and the
//!   OpenTelemetry SDK's OTLP exporter (HTTP/protobuf, gzip), the same work in
//!   `#[tracing::instrument]` functions: four spans per request.
//!
//! Each variant serves from a process of its own (this program again, with `--service-child`),
//! on a tokio runtime of two worker threads; a loopback collector in this process reads and
//! decodes everything it is sent and counts the events. Each round runs every variant in turn
//! (a second of warm-up load, then the measured load; `apm`'s child loads the symbol tables
//! before it serves, see `warm_up_stack_traces`); the table shows medians over rounds of
//! throughput and latency (as `wrk` reports them), their ratios to `bare` measured in the same
//! round, and the server's CPU time per request (every thread, from `/proc`), split into the
//! server's workers and the rest (the agent's or the exporter's threads).
//!
//! `cargo bench -p apm-benches --bench service` (`-- --seconds=N --rounds=N --only=VARIANT,…
//! --threads=N --connections=N`). Needs `wrk` on the `PATH` (skips without it). `cargo test
//! --benches` runs one round of a second per variant.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use apm_benches::collector::{otlp_provider, Collector};
use apm_benches::{arg, median_f64, stack_traces_off};

const CHILD: &str = "--service-child";
const VARIANTS: [&str; 3] = ["bare", "apm", "tower-http-otel"];
/// Events (transactions and spans) each request makes.
const EVENTS_PER_REQUEST: u64 = 4;
/// Iterations of [`spin`] in the database-like and in the HTTP-client-like function.
const DB_WORK: u32 = 3000;
const HTTP_WORK: u32 = 3000;
/// The comm (thread name) of the server's runtime workers.
const WORKER: &str = "server";

/// A few microseconds of CPU that the optimiser cannot remove.
#[inline(never)]
fn spin(iterations: u32) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..iterations {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = std::hint::black_box(x);
    }
    x
}

const BODY: &str = "hello, world";

mod bare {
    pub(crate) async fn route() -> &'static str {
        handle();
        super::BODY
    }

    #[inline(never)]
    fn handle() {
        std::hint::black_box(query());
        std::hint::black_box(fetch());
    }

    #[inline(never)]
    fn query() -> u64 {
        super::spin(super::DB_WORK)
    }

    #[inline(never)]
    fn fetch() -> u64 {
        super::spin(super::HTTP_WORK)
    }
}

mod with_apm {
    pub(crate) async fn route() -> &'static str {
        handle();
        super::BODY
    }

    #[apm::span(name = "handle greeting")]
    #[inline(never)]
    fn handle() {
        std::hint::black_box(query());
        std::hint::black_box(fetch());
    }

    #[apm::span(
        name = "SELECT greetings",
        kind = "db",
        subtype = "postgresql",
        action = "query"
    )]
    #[inline(never)]
    fn query() -> u64 {
        super::spin(super::DB_WORK)
    }

    #[apm::span(name = "GET upstream", kind = "external", subtype = "http")]
    #[inline(never)]
    fn fetch() -> u64 {
        super::spin(super::HTTP_WORK)
    }

    /// A transaction with a span slower than `span_stack_trace_min_duration` (5 ms): the first
    /// such span's stack trace makes the agent load the symbol tables.
    pub(crate) fn warm_up_stack_traces() {
        let _t = apm::start_transaction("warm-up", "request");
        slow();
    }

    #[apm::span]
    #[inline(never)]
    fn slow() {
        std::thread::sleep(std::time::Duration::from_millis(6));
    }
}

mod with_tracing {
    pub(crate) async fn route() -> &'static str {
        handle();
        super::BODY
    }

    #[tracing::instrument(name = "handle greeting", skip_all)]
    #[inline(never)]
    fn handle() {
        std::hint::black_box(query());
        std::hint::black_box(fetch());
    }

    #[tracing::instrument(name = "SELECT greetings", skip_all, fields(db.system = "postgresql"))]
    #[inline(never)]
    fn query() -> u64 {
        super::spin(super::DB_WORK)
    }

    #[tracing::instrument(name = "GET upstream", skip_all, fields(http.request.method = "GET"))]
    #[inline(never)]
    fn fetch() -> u64 {
        super::spin(super::HTTP_WORK)
    }
}

// ---------------------------------------------------------------------------------------
// One variant's server, in its own process.

/// Serves the variant until this process's standard input closes, then flushes what it
/// recorded and prints `outcome <events dropped>`.
fn child(variant: &str, url: &str) {
    use axum::routing::get;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(WORKER)
        .enable_all()
        .build()
        .expect("a runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind the service");
    let addr = listener.local_addr().expect("address");
    let mut agent = None;
    let mut provider = None;
    let app = match variant {
        "bare" => axum::Router::new().route("/", get(bare::route)),
        "apm" => {
            let mut config = apm::Config::builder()
                .service_name("service")
                .server_url(url);
            if stack_traces_off() {
                config = config.span_stack_trace_min_duration(None);
            }
            let a = apm::init_with(config.build());
            // On two cores shared with the load, a span preempted past 5 ms takes a stack
            // trace, and the first one makes the agent load the symbol tables (about 0.4 s of
            // CPU): a long-running service pays that once, a round of a few seconds would
            // count it as about 1.5 µs per request. Paid here, before the load, as the
            // service's steady state is what is measured.
            with_apm::warm_up_stack_traces();
            a.flush(Duration::from_secs(30));
            agent = Some(a);
            axum::Router::new()
                .route("/", get(with_apm::route))
                .layer(apm::tower::ApmLayer::new())
        }
        "tower-http-otel" => {
            use opentelemetry::trace::TracerProvider;
            use tracing_subscriber::layer::SubscriberExt;
            let p = otlp_provider(url);
            let layer = tracing_opentelemetry::layer().with_tracer(p.tracer("service"));
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                .expect("the only subscriber");
            provider = Some(p);
            axum::Router::new()
                .route("/", get(with_tracing::route))
                .layer(tower_http::trace::TraceLayer::new_for_http())
        }
        other => {
            eprintln!("service: no variant {other}");
            std::process::exit(2);
        }
    };
    runtime.spawn(async move { axum::serve(listener, app).await });
    println!("listening {addr}");
    let _ = std::io::stdout().flush();
    // The parent closes our standard input when its load is done.
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    let mut dropped = 0;
    if let Some(agent) = agent {
        agent.flush(Duration::from_secs(30));
        let s = agent.stats();
        dropped =
            s.events_dropped_queue_full + s.events_dropped_send_failed + s.events_dropped_shutdown;
    }
    if let Some(p) = provider {
        let _ = p.force_flush();
        let _ = p.shutdown();
    }
    println!("outcome {dropped}");
    let _ = std::io::stdout().flush();
    runtime.shutdown_timeout(Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------
// The load and the measurement.

/// CPU time of a process's threads so far, in nanoseconds: the runtime's workers, and the rest.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    workers: u64,
    others: u64,
}

fn cpu_of(pid: u32) -> Cpu {
    let mut cpu = Cpu::default();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return cpu;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        // `schedstat`: nanoseconds on a CPU first.
        let ns: u64 = std::fs::read_to_string(path.join("schedstat"))
            .unwrap_or_default()
            .split(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if comm.trim_end() == WORKER {
            cpu.workers += ns;
        } else {
            cpu.others += ns;
        }
    }
    cpu
}

/// What `wrk` reports of one run.
#[derive(Debug, Clone, Copy, Default)]
struct Load {
    requests: u64,
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

fn wrk(url: &str, seconds: f64, threads: u32, connections: u32) -> Load {
    let out = Command::new("wrk")
        .args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{}s", seconds.max(1.0).round()),
            "--latency",
            url,
        ])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut load = Load::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => load.p50_us = micros(v),
            ["99%", v] => load.p99_us = micros(v),
            ["Requests/sec:", v] => load.per_second = v.parse().unwrap_or(0.0),
            [n, "requests", "in", ..] => load.requests = n.parse().unwrap_or(0),
            ["Non-2xx", ..] | ["Socket", "errors:", ..] => load.errors += 1,
            _ => {}
        }
    }
    if load.requests == 0 {
        panic!("service: wrk reported no requests: {text}");
    }
    load
}

/// A `wrk` duration (`12.34us`, `1.20ms`, `1.00s`) in microseconds.
fn micros(v: &str) -> f64 {
    let split = v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        "m" => n * 60e6,
        _ => f64::NAN,
    }
}

#[derive(Debug, Clone, Copy)]
struct Round {
    load: Load,
    worker_ns_per_request: f64,
    other_ns_per_request: f64,
    /// Events the collector received, per event the requests made (warm-up included).
    delivered_share: f64,
    delivered: u64,
    dropped: u64,
}

#[derive(Debug, Clone, Copy)]
struct Options {
    seconds: f64,
    threads: u32,
    connections: u32,
}

fn run_variant(variant: &str, options: Options) -> Round {
    let collector = Collector::start();
    let url = format!("http://{}", collector.addr);
    let mut child = Command::new(std::env::current_exe().expect("this program"))
        .args([CHILD, variant, &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a variant");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let addr = read_prefixed(&mut stdout, "listening ", &mut child);
    let target = format!("http://{addr}/");
    let warm = wrk(&target, 1.0, options.threads, options.connections);
    let before = cpu_of(child.id());
    let load = wrk(
        &target,
        options.seconds,
        options.threads,
        options.connections,
    );
    let after = cpu_of(child.id());
    drop(child.stdin.take());
    let dropped: u64 = read_prefixed(&mut stdout, "outcome ", &mut child)
        .parse()
        .unwrap_or(0);
    let _ = child.wait();
    // The variant flushed before it answered: what it sent has been answered, so counted.
    let delivered = collector.counts.events.load(Relaxed);
    let made = if variant == "bare" {
        0
    } else {
        (warm.requests + load.requests) * EVENTS_PER_REQUEST
    };
    let per_request = |a: u64, b: u64| a.saturating_sub(b) as f64 / load.requests.max(1) as f64;
    Round {
        load,
        worker_ns_per_request: per_request(after.workers, before.workers),
        other_ns_per_request: per_request(after.others, before.others),
        delivered_share: if made == 0 {
            f64::NAN
        } else {
            100.0 * delivered as f64 / made as f64
        },
        delivered,
        dropped,
    }
}

fn read_prefixed(stdout: &mut BufReader<ChildStdout>, prefix: &str, child: &mut Child) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = child.kill();
            panic!("service: the variant exited before printing `{prefix}`");
        }
        if let Some(rest) = line.trim_end().strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == CHILD) {
        child(&args[i + 1], &args[i + 2]);
        return;
    }
    if !cfg!(feature = "enable") {
        eprintln!("service: the agent is compiled out (--no-default-features); nothing to compare");
        return;
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("service: `wrk` is not installed (apt-get install wrk); skipped");
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs one short round.
    let full = args.iter().any(|a| a == "--bench");
    let options = Options {
        seconds: arg("--seconds=", if full { 10.0 } else { 1.0 }),
        threads: arg("--threads=", 2),
        connections: arg("--connections=", 32),
    };
    let rounds: usize = arg("--rounds=", if full { 3 } else { 1 });
    let only: String = arg("--only=", String::new());
    // `bare` always runs: the ratios are to it.
    let variants: Vec<&str> = VARIANTS
        .into_iter()
        .filter(|v| *v == "bare" || only.is_empty() || only.split(',').any(|o| o == *v))
        .collect();
    println!(
        "service: {rounds} rounds of {}s, wrk -t{} -c{}, work {DB_WORK}+{HTTP_WORK} iterations",
        options.seconds, options.threads, options.connections
    );
    let mut results: Vec<Vec<Round>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        // Each round starts with another variant, so that none always follows the same one.
        for k in 0..variants.len() {
            let v = (round + k) % variants.len();
            let r = run_variant(variants[v], options);
            println!(
                "round {round} {:>16}: {:>8.0} req/s p50 {:>7.1}µs p99 {:>7.1}µs cpu {:.2}+{:.2}µs/req delivered {} ({:.2}%) dropped {}{}",
                variants[v],
                r.load.per_second,
                r.load.p50_us,
                r.load.p99_us,
                r.worker_ns_per_request / 1e3,
                r.other_ns_per_request / 1e3,
                r.delivered,
                r.delivered_share,
                r.dropped,
                if r.load.errors > 0 { " (wrk reported errors)" } else { "" },
            );
            results[v].push(r);
        }
    }
    println!();
    println!("| variant | requests/s | × bare | p50 µs | × bare | p99 µs | × bare | server CPU µs/request (workers + other threads) | + vs bare | events delivered | dropped |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let bare = &results[0];
    let ratio = |v: &[Round], f: fn(&Round) -> f64| {
        median_f64(v.iter().zip(bare).map(|(r, b)| f(r) / f(b)).collect())
    };
    let bare_cpu = median_f64(
        bare.iter()
            .map(|r| r.worker_ns_per_request + r.other_ns_per_request)
            .collect(),
    );
    for (v, rounds) in results.iter().enumerate() {
        let m = |f: fn(&Round) -> f64| median_f64(rounds.iter().map(f).collect());
        let workers = m(|r| r.worker_ns_per_request) / 1e3;
        let others = m(|r| r.other_ns_per_request) / 1e3;
        let total = m(|r| r.worker_ns_per_request + r.other_ns_per_request);
        let delivered = if v == 0 {
            "–".to_owned()
        } else {
            format!("{:.2}%", m(|r| r.delivered_share))
        };
        println!(
            "| {} | {:.0} | {:.3} | {:.0} | {:.2} | {:.0} | {:.2} | {:.2} ({workers:.2} + {others:.2}) | {:+.2} | {delivered} | {:.0} |",
            variants[v],
            m(|r| r.load.per_second),
            ratio(rounds, |r| r.load.per_second),
            m(|r| r.load.p50_us),
            ratio(rounds, |r| r.load.p50_us),
            m(|r| r.load.p99_us),
            ratio(rounds, |r| r.load.p99_us),
            total / 1e3,
            (total - bare_cpu) / 1e3,
            m(|r| r.dropped as f64),
        );
    }
}
