//! The end-to-end race: what a paced load costs in CPU, on every thread of the process, per
//! event delivered to a loopback collector that reads and decodes every byte, for `apm` and for
//! what its users would run instead:
//! - the OpenTelemetry SDK, its `BatchSpanProcessor` sized not to drop, with the OTLP exporter
//!   (HTTP/protobuf, gzip);
//! - `tracing` + `tracing-opentelemetry` + the same SDK and exporter;
//! - `fastrace`, its reporter writing each batch as intake NDJSON by hand and posting it on a
//!   kept-alive connection (the least a fastrace user pays to ship: no exporter, no
//!   compression), so that the application thread's cost per span, where fastrace is at its
//!   best, is compared in the same paced regime.
//!
//! And a floor, `none`: the same paced calls without a tracer, which every variant pays too
//! (its CPU per event is per event made, there being nothing to deliver); what each variant
//! costs above it is printed after the table.
//!
//! Each variant runs in a process of its own (this program again, with `--race-child`), so
//! that its CPU time is its own; the collector runs in this process and counts what arrives:
//! for `apm` the transactions and spans of the intake NDJSON, for OTLP the spans of each
//! `ExportTraceServiceRequest`. Rounds alternate the variants, and the table shows medians.
//!
//! `cargo bench -p apm-benches --bench race` (`-- --bench --seconds=N --rounds=N --only=VARIANT,… [spans|tx]`).

use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use apm_benches::collector::{otlp_provider, Collector};
use apm_benches::{arg, median_f64, process_cpu_time, stack_traces_off, thread_cpu_time};

const CHILD: &str = "--race-child";
const VARIANTS: [&str; 5] = ["apm", "otel-otlp", "tracing-otel-otlp", FASTRACE, FLOOR];
const FASTRACE: &str = "fastrace";
/// The same paced loop and the same calls without any tracer: what every variant pays for the
/// pacing itself (a sleep and a wake-up per millisecond, caches gone cold in between).
const FLOOR: &str = "none";

/// A paced load: every millisecond, `roots` transactions (root spans) of `children` spans.
#[derive(Debug, Clone, Copy)]
struct Load {
    name: &'static str,
    roots: u32,
    children: u32,
}

const LOADS: [Load; 3] = [
    // 500 000 spans/s in transactions of 100 spans.
    Load {
        name: "spans",
        roots: 5,
        children: 100,
    },
    // 20 000 transactions/s with 3 spans each.
    Load {
        name: "tx",
        roots: 20,
        children: 3,
    },
    // 20 000 transactions/s with one span each: issue 17's measure of a shipped transaction.
    Load {
        name: "tx1",
        roots: 20,
        children: 1,
    },
];

#[inline(never)]
fn work(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_mul(3)
}

#[apm::span]
#[inline(never)]
fn apm_child(x: u64) -> u64 {
    work(x)
}

#[tracing::instrument(skip_all)]
#[inline(never)]
fn tracing_child(x: u64) -> u64 {
    work(x)
}

#[fastrace::trace]
#[inline(never)]
fn fastrace_child(x: u64) -> u64 {
    work(x)
}

/// fastrace's reporter (on fastrace's own collecting thread): each batch of spans written as
/// intake NDJSON and posted to the collector on one kept-alive connection.
struct ShipReports {
    addr: String,
    conn: Option<std::net::TcpStream>,
    body: Vec<u8>,
    head: Vec<u8>,
}

impl ShipReports {
    fn new(url: &str) -> ShipReports {
        ShipReports {
            addr: url.trim_start_matches("http://").to_owned(),
            conn: None,
            body: Vec::new(),
            head: Vec::new(),
        }
    }

    /// Posts `self.body`; a broken connection is made again once.
    fn post(&mut self) {
        use std::io::Write;
        for _ in 0..2 {
            if self.conn.is_none() {
                self.conn = std::net::TcpStream::connect(&self.addr).ok();
            }
            let Some(conn) = &mut self.conn else { return };
            self.head.clear();
            let _ = write!(
                self.head,
                "POST /intake/v2/events HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
                self.addr,
                self.body.len()
            );
            let sent = conn.write_all(&self.head).is_ok() && conn.write_all(&self.body).is_ok();
            if sent && read_answer(conn) {
                return;
            }
            self.conn = None;
        }
    }
}

/// Reads an answer's head and its (empty or short) body; `false` when the connection broke.
fn read_answer(conn: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    let mut got = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    loop {
        let Ok(n) = conn.read(&mut buf) else {
            return false;
        };
        if n == 0 {
            return false;
        }
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while got.len() < end + 4 + length {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        return true;
    }
}

impl fastrace::collector::Reporter for ShipReports {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        use std::io::Write;
        if spans.is_empty() {
            return;
        }
        self.body.clear();
        for s in &spans {
            // Roots as transactions, the others as spans: what the collector counts.
            let kind = if s.name == "race" {
                "transaction"
            } else {
                "span"
            };
            let _ = writeln!(
                self.body,
                r#"{{"{kind}":{{"id":"{:016x}","trace_id":"{:032x}","parent_id":"{:016x}","name":"{}","type":"app","timestamp":{},"duration":{}}}}}"#,
                s.span_id.0,
                s.trace_id.0,
                s.parent_id.0,
                s.name,
                s.begin_time_unix_ns / 1000,
                s.duration_ns as f64 / 1e6
            );
        }
        self.post();
    }
}

// ---------------------------------------------------------------------------------------
// One variant in its own process.

/// Runs `tick` every millisecond for `seconds`, sleeping between ticks as a service waits for
/// its next requests.
fn paced(seconds: f64, mut tick: impl FnMut()) -> u64 {
    let start = Instant::now();
    let mut ticks = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        tick();
        ticks += 1;
        let next = start + Duration::from_millis(ticks);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    ticks
}

struct Outcome {
    recorded: u64,
    cpu: Duration,
    app_cpu: Duration,
    dropped: u64,
}

fn child(variant: &str, load: Load, url: &str, seconds: f64) -> Outcome {
    let per_tick = u64::from(load.roots) * u64::from(load.children + 1);
    match variant {
        "apm" => {
            let mut config = apm::Config::builder().service_name("race").server_url(url);
            if stack_traces_off() {
                config = config.span_stack_trace_min_duration(None);
            }
            let agent = apm::init_with(config.build());
            let cpu0 = process_cpu_time();
            let app0 = thread_cpu_time();
            let ticks = paced(seconds, || {
                for _ in 0..load.roots {
                    let _t = apm::start_transaction("race", "request");
                    for i in 0..load.children {
                        apm_child(u64::from(i));
                    }
                }
            });
            let app_cpu = thread_cpu_time() - app0;
            agent.flush(Duration::from_secs(30));
            let cpu = process_cpu_time() - cpu0;
            let s = agent.stats();
            Outcome {
                recorded: ticks * per_tick,
                cpu,
                app_cpu,
                dropped: s.events_dropped_queue_full
                    + s.events_dropped_send_failed
                    + s.events_dropped_shutdown,
            }
        }
        "otel-otlp" => {
            use opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider};
            let provider = otlp_provider(url);
            let tracer = provider.tracer("race");
            let cpu0 = process_cpu_time();
            let app0 = thread_cpu_time();
            let ticks = paced(seconds, || {
                for _ in 0..load.roots {
                    let root = tracer.start("race");
                    let cx = opentelemetry::Context::current_with_span(root);
                    for i in 0..load.children {
                        let mut span = tracer.start_with_context("otel_child", &cx);
                        work(u64::from(i));
                        span.end();
                    }
                    cx.span().end();
                }
            });
            let app_cpu = thread_cpu_time() - app0;
            let _ = provider.force_flush();
            let _ = provider.shutdown();
            Outcome {
                recorded: ticks * per_tick,
                cpu: process_cpu_time() - cpu0,
                app_cpu,
                dropped: 0,
            }
        }
        "tracing-otel-otlp" => {
            use opentelemetry::trace::TracerProvider;
            use tracing_subscriber::layer::SubscriberExt;
            let provider = otlp_provider(url);
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("race"));
            let subscriber = tracing_subscriber::registry().with(layer);
            let _default = tracing::subscriber::set_default(subscriber);
            let cpu0 = process_cpu_time();
            let app0 = thread_cpu_time();
            let ticks = paced(seconds, || {
                for _ in 0..load.roots {
                    let root = tracing::info_span!("race");
                    let _in = root.enter();
                    for i in 0..load.children {
                        tracing_child(u64::from(i));
                    }
                }
            });
            let app_cpu = thread_cpu_time() - app0;
            let _ = provider.force_flush();
            let _ = provider.shutdown();
            Outcome {
                recorded: ticks * per_tick,
                cpu: process_cpu_time() - cpu0,
                app_cpu,
                dropped: 0,
            }
        }
        FASTRACE => {
            fastrace::set_reporter(
                ShipReports::new(url),
                fastrace::collector::Config::default(),
            );
            let cpu0 = process_cpu_time();
            let app0 = thread_cpu_time();
            let ticks = paced(seconds, || {
                for _ in 0..load.roots {
                    let root =
                        fastrace::Span::root("race", fastrace::collector::SpanContext::random());
                    let _parent = root.set_local_parent();
                    for i in 0..load.children {
                        fastrace_child(u64::from(i));
                    }
                }
            });
            let app_cpu = thread_cpu_time() - app0;
            fastrace::flush();
            Outcome {
                recorded: ticks * per_tick,
                cpu: process_cpu_time() - cpu0,
                app_cpu,
                dropped: 0,
            }
        }
        FLOOR => {
            let cpu0 = process_cpu_time();
            let app0 = thread_cpu_time();
            let ticks = paced(seconds, || {
                for r in 0..load.roots {
                    std::hint::black_box(work(u64::from(r)));
                    for i in 0..load.children {
                        std::hint::black_box(work(u64::from(i)));
                    }
                }
            });
            Outcome {
                recorded: ticks * per_tick,
                cpu: process_cpu_time() - cpu0,
                app_cpu: thread_cpu_time() - app0,
                dropped: 0,
            }
        }
        other => {
            eprintln!("race: no variant {other}");
            std::process::exit(2);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The race.

#[derive(Debug, Clone, Copy)]
struct Round {
    recorded: u64,
    delivered: u64,
    dropped: u64,
    cpu_ns_per_delivered: f64,
    /// For the floor, which delivers nothing.
    cpu_ns_per_recorded: f64,
    app_ns_per_recorded: f64,
}

fn run_child(variant: &str, load: Load, seconds: f64) -> Round {
    let collector = Collector::start();
    let url = format!("http://{}", collector.addr);
    let out = Command::new(std::env::current_exe().expect("this program"))
        .args([CHILD, variant, load.name, &url, &seconds.to_string()])
        .output()
        .expect("run a variant");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("outcome ")) else {
        panic!(
            "race: {variant} printed no outcome: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let n: Vec<f64> = line.split(' ').filter_map(|v| v.parse().ok()).collect();
    let (recorded, cpu_ns, app_ns, dropped) = (n[0], n[1], n[2], n[3]);
    // The variant flushed before it exited: what it sent has been answered, so counted.
    let delivered = collector.counts.events.load(Relaxed);
    Round {
        recorded: recorded as u64,
        delivered,
        dropped: dropped as u64,
        cpu_ns_per_delivered: cpu_ns / delivered.max(1) as f64,
        cpu_ns_per_recorded: cpu_ns / recorded.max(1.0),
        app_ns_per_recorded: app_ns / recorded.max(1.0),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == CHILD) {
        let load = LOADS
            .into_iter()
            .find(|l| l.name == args[i + 2])
            .expect("a load");
        let seconds: f64 = args[i + 4].parse().expect("seconds");
        let o = child(&args[i + 1], load, &args[i + 3], seconds);
        println!(
            "outcome {} {} {} {}",
            o.recorded,
            o.cpu.as_nanos(),
            o.app_cpu.as_nanos(),
            o.dropped
        );
        return;
    }
    if !cfg!(feature = "enable") {
        eprintln!("race: the agent is compiled out (--no-default-features); nothing to race");
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs each variant briefly.
    let quick = !args.iter().any(|a| a == "--bench");
    let seconds = if quick { 0.05 } else { arg("--seconds=", 10.0) };
    let rounds = if quick { 1 } else { arg("--rounds=", 3) };
    // `--only=apm,otel-otlp`: those variants alone (for A/B runs and profiles).
    let only: String = arg("--only=", String::new());
    let words: Vec<&String> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for load in LOADS {
        if !words.is_empty() && !words.iter().any(|w| *w == load.name) {
            continue;
        }
        let mut results: Vec<Vec<Round>> = vec![Vec::new(); VARIANTS.len()];
        for _ in 0..rounds {
            for (v, variant) in VARIANTS.iter().enumerate() {
                if !only.is_empty() && !only.split(',').any(|o| o == *variant) {
                    continue;
                }
                results[v].push(run_child(variant, load, seconds));
            }
        }
        if quick {
            for (v, rounds) in results.iter().enumerate() {
                let Some(&r) = rounds.first() else { continue };
                assert!(
                    r.recorded > 0 && (r.delivered > 0 || VARIANTS[v] == FLOOR),
                    "{}: nothing delivered ({r:?})",
                    VARIANTS[v]
                );
            }
            continue;
        }
        println!(
            "\nload `{}`: every 1 ms, {} transactions of {} spans ({} events/s), {seconds} s, {rounds} rounds (medians)",
            load.name,
            load.roots,
            load.children,
            u64::from(load.roots) * u64::from(load.children + 1) * 1000
        );
        println!("| variant | recorded | delivered | delivered % | dropped (counted) | CPU ns per event delivered, all threads | vs OTel OTLP | app thread CPU ns per event | CPU ns per transaction delivered, all threads |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let otlp_cpu = median_f64(results[1].iter().map(|r| r.cpu_ns_per_delivered).collect());
        for (v, rounds) in results.iter().enumerate() {
            if rounds.is_empty() || VARIANTS[v] == FLOOR {
                continue;
            }
            let cpu = median_f64(rounds.iter().map(|r| r.cpu_ns_per_delivered).collect());
            let recorded = median_f64(rounds.iter().map(|r| r.recorded as f64).collect());
            let delivered = median_f64(rounds.iter().map(|r| r.delivered as f64).collect());
            let share = median_f64(
                rounds
                    .iter()
                    .map(|r| 100.0 * r.delivered as f64 / r.recorded.max(1) as f64)
                    .collect(),
            );
            let dropped = median_f64(rounds.iter().map(|r| r.dropped as f64).collect());
            let app = median_f64(rounds.iter().map(|r| r.app_ns_per_recorded).collect());
            // A transaction and its spans are `children + 1` events.
            let per_transaction = cpu * f64::from(load.children + 1);
            println!(
                "| {} | {recorded:.0} | {delivered:.0} | {share:.2} | {dropped:.0} | {cpu:.0} | {:.2}× | {app:.0} | {per_transaction:.0} |",
                VARIANTS[v],
                cpu / otlp_cpu
            );
        }
        let fastrace = VARIANTS
            .iter()
            .position(|v| *v == FASTRACE)
            .expect("a variant");
        if !results[0].is_empty() && !results[fastrace].is_empty() {
            let app =
                |v: usize| median_f64(results[v].iter().map(|r| r.app_ns_per_recorded).collect());
            println!(
                "\napplication thread, CPU ns per event: apm {:.0}, fastrace {:.0}: {:.2}×",
                app(0),
                app(fastrace),
                app(0) / app(fastrace)
            );
        }
        let floor = &results[VARIANTS.len() - 1];
        if !floor.is_empty() {
            let median =
                |v: usize, per: fn(&Round) -> f64| median_f64(results[v].iter().map(per).collect());
            let floor_cpu = median(VARIANTS.len() - 1, |r| r.cpu_ns_per_recorded);
            let floor_app = median(VARIANTS.len() - 1, |r| r.app_ns_per_recorded);
            println!(
                "\nthe floor (`{FLOOR}`: the same paced calls, no tracer): {floor_cpu:.0} ns of CPU per event, {floor_app:.0} ns on the application thread"
            );
            if !results[0].is_empty() && !results[1].is_empty() {
                let apm = median(0, |r| r.cpu_ns_per_delivered) - floor_cpu;
                let otlp = otlp_cpu - floor_cpu;
                println!(
                    "above the floor, CPU ns per event delivered: apm {apm:.0}, otel-otlp {otlp:.0}: {:.2}×",
                    apm / otlp
                );
            }
        }
    }
}
