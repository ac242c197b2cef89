//! The memory and latency soak: 10 M sampled spans (`#[apm::span]` on a no-op function, in
//! transactions of 100 spans, one application thread) with the APM Server healthy, down and
//! slow, each scenario in a fresh child process (this executable run again) so that resident
//! memory is that scenario's alone.
//!
//! Each child records RSS (`/proc/self/statm`) before the agent starts, after the first 1 M
//! spans (warm-up) and after every further 1 M, and the wall time per call of every 1 M-span
//! chunk on the application thread. Peak RSS is the kernel's high-water mark (`VmHWM`), so a
//! spike between two samples counts. At the end the child flushes (bounded), reads the
//! agent's counters and drops the agent, which waits at most ~5 s however slow the server.
//!
//! Scenarios:
//! - `healthy`: a local sink that answers at once;
//! - `down`: a loopback port where nothing listens (connections refused);
//! - `slow`: a sink that holds every answer 30 s, with the default `server_timeout`;
//! - `slow-30s`: the same with `server_timeout` 30 s (the Elastic spec's default; this
//!   agent's default is shorter), so that each request waits out the whole answer;
//! - `tracing`: healthy, with the spans made by `tracing` (`info_span!`, entered and closed)
//!   and recorded through `apm::tracing::ApmLayer`, the bridge's own flood.
//!
//! `cargo bench -p apm-benches --bench soak` runs them all; after `--`, scenario names select
//! some, `--chunks=99` makes a longer soak and `--no-breakdown` turns breakdown metrics off.
//! `cargo test --benches` runs 200 k spans per scenario, the children side by side.

use std::hint::black_box;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apm_benches::{resident_bytes, Sink};

/// Spans per transaction.
const SPANS_PER_TRANSACTION: u64 = 100;
/// What a sink that is slow takes to answer anything.
const SLOW_ANSWER: Duration = Duration::from_secs(30);
/// Marks the child's run (followed by the scenario's name).
const CHILD: &str = "--soak-child";
/// Marks the child's result line on its standard output.
const RESULT: &str = "soak-result";

const MIB: f64 = 1024.0 * 1024.0;

#[apm::span]
#[inline(never)]
fn noop(x: u64) -> u64 {
    black_box(x)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Healthy,
    Down,
    Slow,
    Slow30,
    Tracing,
}

const SCENARIOS: [Scenario; 5] = [
    Scenario::Healthy,
    Scenario::Down,
    Scenario::Slow,
    Scenario::Slow30,
    Scenario::Tracing,
];

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Healthy => "healthy",
            Scenario::Down => "down",
            Scenario::Slow => "slow",
            Scenario::Slow30 => "slow-30s",
            Scenario::Tracing => "tracing",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Scenario::Healthy => "healthy (sink answers at once)",
            Scenario::Down => "APM Server down (connection refused)",
            Scenario::Slow => "APM Server slow (30 s answers), default `server_timeout`",
            Scenario::Slow30 => "APM Server slow (30 s answers), `server_timeout` 30 s",
            Scenario::Tracing => "healthy, `tracing` spans through `ApmLayer`",
        }
    }

    fn from_name(name: &str) -> Option<Scenario> {
        SCENARIOS.into_iter().find(|s| s.name() == name)
    }
}

/// How many spans a child records.
#[derive(Debug, Clone, Copy)]
struct Plan {
    warm_up: u64,
    chunk: u64,
    chunks: usize,
    /// How long the child waits for its last flush before reading the counters.
    flush_wait: Duration,
    /// `breakdown_metrics` (on by default, as in the agent).
    breakdown: bool,
}

impl Plan {
    fn new(full: bool) -> Plan {
        if full {
            Plan {
                warm_up: 1_000_000,
                chunk: 1_000_000,
                chunks: 9,
                flush_wait: Duration::from_secs(2),
                breakdown: true,
            }
        } else {
            Plan {
                warm_up: 50_000,
                chunk: 50_000,
                chunks: 3,
                flush_wait: Duration::from_millis(500),
                breakdown: true,
            }
        }
    }

    fn total(self) -> u64 {
        self.warm_up + self.chunk * self.chunks as u64
    }
}

/// What a `#[tracing::instrument]` function does: a span created, entered, exited and closed.
#[inline(never)]
fn tracing_noop(x: u64) -> u64 {
    let span = tracing::info_span!("noop");
    let _entered = span.enter();
    black_box(x)
}

/// Records `spans` spans in transactions of [`SPANS_PER_TRANSACTION`].
fn record(scenario: Scenario, spans: u64) {
    if scenario == Scenario::Tracing {
        apm_benches::in_transactions(spans, SPANS_PER_TRANSACTION, tracing_noop);
    } else {
        apm_benches::in_transactions(spans, SPANS_PER_TRANSACTION, noop);
    }
}

/// `http://127.0.0.1:PORT` on a port nothing listens on (bound, then released).
fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    drop(listener);
    format!("http://{addr}")
}

/// The kernel's high-water mark of this process's resident memory (`VmHWM`), in bytes.
fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What one child measured; travels to the parent as one line of numbers.
#[derive(Debug, Clone, Default)]
struct Measured {
    rss_before: u64,
    rss_warm: u64,
    rss_peak: u64,
    rss_end: u64,
    warm_up_ns: f64,
    sent: u64,
    dropped_queue_full: u64,
    dropped_send_failed: u64,
    requests_failed: u64,
    flushed: bool,
    flush_ms: u64,
    shutdown_ms: u64,
    sink_requests: u64,
    /// RSS after each chunk past the warm-up.
    rss: Vec<u64>,
    /// Wall time per call of each chunk past the warm-up.
    ns: Vec<f64>,
}

impl Measured {
    fn to_line(&self) -> String {
        let head = [
            self.rss_before,
            self.rss_warm,
            self.rss_peak,
            self.rss_end,
            self.warm_up_ns.to_bits(),
            self.sent,
            self.dropped_queue_full,
            self.dropped_send_failed,
            self.requests_failed,
            u64::from(self.flushed),
            self.flush_ms,
            self.shutdown_ms,
            self.sink_requests,
            self.rss.len() as u64,
        ];
        let tail = self
            .rss
            .iter()
            .copied()
            .chain(self.ns.iter().map(|n| n.to_bits()));
        let words: Vec<String> = head
            .into_iter()
            .chain(tail)
            .map(|w| w.to_string())
            .collect();
        format!("{RESULT} {}", words.join(" "))
    }

    fn from_line(line: &str) -> Option<Measured> {
        let words: Vec<u64> = line
            .strip_prefix(RESULT)?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let (head, tail) = words.split_at_checked(14)?;
        let n = head[13] as usize;
        if tail.len() != 2 * n {
            return None;
        }
        Some(Measured {
            rss_before: head[0],
            rss_warm: head[1],
            rss_peak: head[2],
            rss_end: head[3],
            warm_up_ns: f64::from_bits(head[4]),
            sent: head[5],
            dropped_queue_full: head[6],
            dropped_send_failed: head[7],
            requests_failed: head[8],
            flushed: head[9] != 0,
            flush_ms: head[10],
            shutdown_ms: head[11],
            sink_requests: head[12],
            rss: tail[..n].to_vec(),
            ns: tail[n..].iter().map(|&b| f64::from_bits(b)).collect(),
        })
    }
}

/// One scenario, in this (child) process; prints its [`Measured`] line.
fn child(scenario: Scenario, plan: Plan) {
    let sink = match scenario {
        Scenario::Healthy | Scenario::Tracing => Some(Sink::start(Duration::ZERO)),
        Scenario::Down => None,
        Scenario::Slow | Scenario::Slow30 => Some(Sink::start(SLOW_ANSWER)),
    };
    let url = sink.as_ref().map_or_else(refused_url, Sink::url);
    let mut config = apm::Config::builder().service_name("soak").server_url(url);
    if scenario == Scenario::Slow30 {
        config = config.server_timeout(Duration::from_secs(30));
    }
    if !plan.breakdown {
        config = config.breakdown_metrics(false);
    }
    let mut out = Measured {
        rss_before: resident_bytes(),
        ..Measured::default()
    };
    let agent = apm::init_with(config.build());
    if scenario == Scenario::Tracing {
        use tracing_subscriber::layer::SubscriberExt as _;
        let subscriber = tracing_subscriber::registry().with(apm::tracing::ApmLayer::new());
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    }

    let start = Instant::now();
    record(scenario, plan.warm_up);
    out.warm_up_ns = start.elapsed().as_nanos() as f64 / plan.warm_up as f64;
    out.rss_warm = resident_bytes();
    for _ in 0..plan.chunks {
        let start = Instant::now();
        record(scenario, plan.chunk);
        out.ns
            .push(start.elapsed().as_nanos() as f64 / plan.chunk as f64);
        out.rss.push(resident_bytes());
    }
    out.rss_end = out.rss.last().copied().unwrap_or(out.rss_warm);

    let start = Instant::now();
    out.flushed = agent.flush(plan.flush_wait);
    out.flush_ms = start.elapsed().as_millis() as u64;
    let stats = agent.stats();
    out.sent = stats.events_sent;
    out.dropped_queue_full = stats.events_dropped_queue_full;
    out.dropped_send_failed = stats.events_dropped_send_failed;
    out.requests_failed = stats.requests_failed;
    let start = Instant::now();
    drop(agent);
    out.shutdown_ms = start.elapsed().as_millis() as u64;
    out.sink_requests = sink.as_ref().map_or(0, |s| s.received().0);
    let sampled_peak = out.rss.iter().copied().max().unwrap_or(0).max(out.rss_warm);
    out.rss_peak = peak_resident_bytes()
        .unwrap_or(sampled_peak)
        .max(sampled_peak);
    println!("{}", out.to_line());
}

/// Runs one scenario in a fresh process of this executable.
fn spawn(scenario: Scenario, full: bool, plan: Plan) -> std::io::Result<std::process::Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg(CHILD)
        .arg(scenario.name())
        .arg(format!("--chunks={}", plan.chunks));
    if full {
        cmd.arg("--bench");
    }
    if !plan.breakdown {
        cmd.arg("--no-breakdown");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
}

fn collect(scenario: Scenario, child: std::io::Result<std::process::Child>) -> Option<Measured> {
    let output = match child.and_then(|c| c.wait_with_output()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("soak: could not run the {} scenario: {e}", scenario.name());
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let outcome = stdout.lines().find_map(Measured::from_line);
    if !output.status.success() || outcome.is_none() {
        eprintln!(
            "soak: the {} scenario failed ({}); its output:\n{stdout}",
            scenario.name(),
            output.status
        );
        return None;
    }
    outcome
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

fn print_tables(plan: Plan, results: &[(Scenario, Measured)]) {
    let chunk = plan.chunk as f64 / 1e6;
    println!(
        "\n## soak: {:.2} M sampled spans per scenario ({:.2} M warm-up, then {} chunks of {chunk:.2} M), transactions of {SPANS_PER_TRANSACTION} spans, one application thread, one process per scenario{}\n",
        plan.total() as f64 / 1e6,
        plan.warm_up as f64 / 1e6,
        plan.chunks,
        if plan.breakdown { "" } else { ", breakdown metrics off" },
    );
    println!("| scenario | RSS after warm-up MiB | peak RSS MiB | RSS at end MiB | growth after warm-up MiB | median ns/call of the chunks | slowest chunk ns/call | events sent | dropped (queue full) | dropped (send failed) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (scenario, o) in results {
        let growth = mib(o.rss_end) - mib(o.rss_warm);
        let slowest = o.ns.iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {growth:+.1} | {:.1} | {slowest:.1} | {} | {} | {} |",
            scenario.describe(),
            mib(o.rss_warm),
            mib(o.rss_peak),
            mib(o.rss_end),
            median(&o.ns),
            o.sent,
            o.dropped_queue_full,
            o.dropped_send_failed,
        );
    }
    let default_timeout = apm::Config::builder()
        .build()
        .describe()
        .into_iter()
        .find(|(name, _, _)| *name == "server_timeout")
        .map_or_else(|| "?".to_owned(), |(_, value, _)| value);
    println!("\nPeak RSS is the process's `VmHWM`; growth is RSS at end minus RSS after warm-up; the chunk times exclude the warm-up. The default `server_timeout` is {default_timeout}.\n");
    println!("| scenario | RSS before the agent MiB | RSS after each chunk MiB | warm-up ns/call | ns/call of each chunk | requests failed | final flush | shutdown | requests the sink saw |");
    println!("|---|---:|---|---:|---|---:|---|---:|---:|");
    for (scenario, o) in results {
        let rss: Vec<String> = o.rss.iter().map(|&b| format!("{:.1}", mib(b))).collect();
        let ns: Vec<String> = o.ns.iter().map(|n| format!("{n:.0}")).collect();
        println!(
            "| {} | {:.1} | {} | {:.1} | {} | {} | {} in {} ms | {} ms | {} |",
            scenario.name(),
            mib(o.rss_before),
            rss.join(" "),
            o.warm_up_ns,
            ns.join(" "),
            o.requests_failed,
            if o.flushed { "ok" } else { "not done" },
            o.flush_ms,
            o.shutdown_ms,
            if *scenario == Scenario::Down {
                "-".to_owned()
            } else {
                o.sink_requests.to_string()
            },
        );
    }
}

fn main() {
    if !cfg!(feature = "enable") {
        println!("soak: the agent is compiled out (--no-default-features); nothing to soak");
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` runs a short version.
    let full = args.iter().any(|a| a == "--bench");
    let mut plan = Plan::new(full);
    // `--chunks=N`: N chunks after the warm-up instead of 9 (a longer soak).
    let chunks = args.iter().find_map(|a| a.strip_prefix("--chunks="));
    if let Some(n) = chunks.and_then(|n| n.parse().ok()) {
        plan.chunks = n;
    }
    // `--no-breakdown`: breakdown metrics off (what they cost in memory).
    plan.breakdown = !args.iter().any(|a| a == "--no-breakdown");
    if let Some(i) = args.iter().position(|a| a == CHILD) {
        let name = args.get(i + 1).map_or("", String::as_str);
        let Some(scenario) = Scenario::from_name(name) else {
            eprintln!("soak: unknown scenario {name:?}");
            std::process::exit(2);
        };
        child(scenario, plan);
        return;
    }
    // Other arguments select scenarios by name.
    let filters: Vec<&String> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let scenarios: Vec<Scenario> = SCENARIOS
        .into_iter()
        .filter(|s| filters.is_empty() || filters.iter().any(|f| *f == s.name()))
        .collect();
    let mut results = Vec::new();
    let mut failed = Vec::new();
    if full {
        // One at a time: each child has the machine to itself.
        for s in scenarios {
            eprintln!("soak: {} …", s.describe());
            match collect(s, spawn(s, full, plan)) {
                Some(o) => results.push((s, o)),
                None => failed.push(s.name()),
            }
        }
    } else {
        // Quick: side by side (the slow scenarios spend most of their time in the bounded
        // shutdown).
        let children: Vec<_> = scenarios
            .iter()
            .map(|&s| (s, spawn(s, full, plan)))
            .collect();
        for (s, c) in children {
            match collect(s, c) {
                Some(o) => results.push((s, o)),
                None => failed.push(s.name()),
            }
        }
    }
    print_tables(plan, &results);
    assert!(failed.is_empty(), "soak scenarios failed: {failed:?}");
}
