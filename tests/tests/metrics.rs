//! The `apm-metrics` thread against the mock APM Server: system and process metricsets on
//! schedule with plausible values, `disable_metrics`, the agent health counters, the final
//! metricset at shutdown, and the thread's life.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apm_tests::MockServer;
use common::agent::{self, agent_threads, Harness};
use serde_json::Value;

const INTERVAL: Duration = Duration::from_millis(200);
const WAIT: Duration = Duration::from_secs(10);

const CPU: &str = "system.cpu.total.norm.pct";
const PROCESS_CPU: &str = "system.process.cpu.total.norm.pct";
const MEMORY_TOTAL: &str = "system.memory.total";
const MEMORY_FREE: &str = "system.memory.actual.free";
const PROCESS_SIZE: &str = "system.process.memory.size";
const PROCESS_RSS: &str = "system.process.memory.rss.bytes";
const CGROUP_LIMIT: &str = "system.process.cgroup.memory.mem.limit.bytes";
const CGROUP_USAGE: &str = "system.process.cgroup.memory.mem.usage.bytes";
/// Always reported on Linux; the cgroup ones only inside a memory cgroup.
const EXPECTED: [&str; 6] = [
    CPU,
    PROCESS_CPU,
    MEMORY_TOTAL,
    MEMORY_FREE,
    PROCESS_SIZE,
    PROCESS_RSS,
];
const EVENTS_TOTAL: &str = "agent.events.total";
const DROPPED_QUEUE: &str = "agent.events.dropped.queue";
const DROPPED_ERROR: &str = "agent.events.dropped.error";

/// Metrics every 200 ms, shipped within 50 ms.
fn fast(c: apm::ConfigBuilder) -> apm::ConfigBuilder {
    c.metrics_interval(INTERVAL)
        .api_request_time(Duration::from_millis(50))
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn sample(set: &Value, name: &str) -> Option<f64> {
    set["samples"].get(name)?["value"].as_f64()
}

fn names(set: &Value) -> Vec<String> {
    set["samples"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn timestamp(set: &Value) -> u64 {
    set["timestamp"].as_u64().expect("metricset timestamp")
}

/// The system metricset: no transaction or span, and `system.*` samples.
fn is_system(set: &Value) -> bool {
    set.get("transaction").is_none()
        && set.get("span").is_none()
        && names(set).iter().any(|n| n.starts_with("system."))
}

fn count_system(server: &MockServer) -> usize {
    server.with_recorded(|r| r.events_of("metricset").filter(|m| is_system(m)).count())
}

fn wait_system(server: &MockServer, n: usize, timeout: Duration) -> bool {
    server.wait_for(
        |r| r.events_of("metricset").filter(|m| is_system(m)).count() >= n,
        timeout,
    )
}

/// System metricsets in timestamp order.
fn system_sets(server: &MockServer) -> Vec<Value> {
    let mut sets: Vec<Value> = server.metricsets().into_iter().filter(is_system).collect();
    sets.sort_by_key(timestamp);
    sets
}

fn has_metrics_thread() -> bool {
    agent_threads().iter().any(|n| n == "apm-metrics")
}

#[test]
fn system_metricsets_arrive_on_schedule_with_plausible_values() {
    let h = agent::start(fast);
    // Five reports within WAIT: the default interval (30 s) would not get there. How long
    // the wait took says more about the machine's load than about the agent (CI compiles the
    // UI tests alongside), so the schedule is judged by the reports' own timestamps below.
    assert!(
        wait_system(&h.server, 5, WAIT),
        "{:?}",
        h.events("metricset")
    );
    let sets = system_sets(&h.server);
    let stamps: Vec<u64> = sets.iter().map(timestamp).collect();
    let now = now_us();
    assert!(
        stamps.iter().all(|&t| t <= now && now - t < 60_000_000),
        "timestamps are µs since the epoch: {stamps:?} vs {now}"
    );
    let mut gaps: Vec<u64> = stamps.windows(2).map(|p| p[1] - p[0]).collect();
    // Never two reports for one tick.
    assert!(
        gaps.iter().all(|&g| g >= 20_000),
        "reports too close together: {stamps:?}"
    );
    // The typical gap is the interval: never much shorter. A busy machine (CI compiles
    // alongside) may hold reports up, so above it allows five intervals, still far from
    // the default 30 s.
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2];
    assert!(
        (150_000..=1_000_000).contains(&median),
        "median gap of {median} µs for a 200 ms interval: {stamps:?}"
    );

    let known: BTreeSet<&str> = EXPECTED
        .iter()
        .copied()
        .chain([CGROUP_LIMIT, CGROUP_USAGE, DROPPED_QUEUE, DROPPED_ERROR])
        .collect();
    for set in &sets {
        for name in EXPECTED {
            assert!(sample(set, name).is_some(), "{name} missing from {set:#}");
        }
        for name in names(set) {
            assert!(
                known.contains(&*name),
                "unexpected sample {name} in {set:#}"
            );
        }
        for pct in [CPU, PROCESS_CPU] {
            let v = sample(set, pct).unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&v), "{pct} = {v}");
        }
        let total = sample(set, MEMORY_TOTAL).unwrap_or(0.0);
        let free = sample(set, MEMORY_FREE).unwrap_or(0.0);
        assert!(total >= free && free > 0.0, "total {total}, free {free}");
        let rss = sample(set, PROCESS_RSS).unwrap_or(0.0);
        let size = sample(set, PROCESS_SIZE).unwrap_or(0.0);
        assert!(size >= rss && rss > 0.0, "size {size}, rss {rss}");
        if let Some(limit) = sample(set, CGROUP_LIMIT) {
            assert!(limit > 0.0, "cgroup limit {limit}");
        }
        if let Some(usage) = sample(set, CGROUP_USAGE) {
            assert!(usage > 0.0, "cgroup usage {usage}");
        }
        assert!(set.get("tags").is_none(), "{set:#}");
    }
    h.finish();
}

/// Process CPU of the reports whose whole interval (previous report to this one) lies in
/// `[from, to]` (µs since the epoch).
fn process_cpu_within(sets: &[Value], from: u64, to: u64) -> Vec<f64> {
    sets.windows(2)
        .filter(|w| timestamp(&w[0]) >= from && timestamp(&w[1]) <= to)
        .filter_map(|w| sample(&w[1], PROCESS_CPU))
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn process_cpu_is_higher_while_a_thread_is_busy() {
    let h = agent::start(fast);
    assert!(wait_system(&h.server, 1, WAIT));
    // Idle: this thread waits on the server's condition variable for four more reports.
    let idle_from = now_us();
    let n = count_system(&h.server);
    assert!(wait_system(&h.server, n + 4, WAIT));
    let idle_to = now_us();
    // Busy: one thread spins for 1.5 s of measured time.
    let busy_from = now_us();
    let spinner = std::thread::spawn(|| {
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(1500) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        x
    });
    spinner.join().expect("spinner");
    let busy_to = now_us();
    // The report that closes the busy phase.
    let n = count_system(&h.server);
    assert!(wait_system(&h.server, n + 1, WAIT));

    let sets = system_sets(&h.server);
    let idle = process_cpu_within(&sets, idle_from, idle_to);
    let busy = process_cpu_within(&sets, busy_from, busy_to);
    assert!(
        !idle.is_empty() && !busy.is_empty(),
        "idle {idle:?}, busy {busy:?}"
    );
    // One core of at most a few: 1/cores when the thread got the core to itself.
    assert!(
        mean(&busy) > mean(&idle) && mean(&busy) > 0.05,
        "busy {busy:?} vs idle {idle:?}"
    );
    h.finish();
}

#[test]
fn disable_metrics_removes_exactly_the_matching_names() {
    let h = agent::start(|c| fast(c).disable_metrics(["system.process.*", "*.MEMORY.TOTAL"]));
    assert!(wait_system(&h.server, 2, WAIT));
    let sets = system_sets(&h.server);
    let reported: BTreeSet<String> = sets
        .iter()
        .flat_map(names)
        .filter(|n| n.starts_with("system."))
        .collect();
    let want: BTreeSet<String> = [CPU, MEMORY_FREE].map(String::from).into();
    assert_eq!(reported, want);
    for set in &sets {
        assert!(sample(set, CPU).is_some() && sample(set, MEMORY_FREE).is_some());
    }
    h.finish();
}

#[test]
fn a_metricset_left_without_samples_is_not_sent() {
    let mut h = agent::start(|c| fast(c).disable_metrics(["system.*", "agent.*"]));
    assert!(has_metrics_thread());
    // Five intervals without a metricset, then the final report: empty too.
    assert!(!h.server.wait_for_metricsets(1, Duration::from_secs(1)));
    drop(h.agent.take());
    assert!(
        h.events("metricset").is_empty(),
        "{:?}",
        h.events("metricset")
    );
    h.finish();
}

/// Sum of `name` over every metricset recorded.
fn reported_sum(r: &apm_tests::Recorded, name: &str) -> f64 {
    r.events_of("metricset")
        .filter_map(|m| sample(m, name))
        .sum()
}

/// Flushes until `pred` holds (each flush ships the reports made since the previous one).
fn flush_until(
    h: &Harness,
    server: &MockServer,
    mut pred: impl FnMut(&apm_tests::Recorded) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.wait_for(&mut pred, Duration::from_millis(250)) && Instant::now() < deadline {
        h.agent().flush(Duration::from_secs(5));
    }
    assert!(
        server.wait_for(pred, Duration::ZERO),
        "{:#?}",
        server.metricsets()
    );
}

#[test]
fn health_counters_report_drops_as_positive_increases() {
    // A closed port: the first request fails and its events count as dropped after queueing.
    let addr = common::refused_addr();
    let mut h = agent::start(|c| {
        c.server_url(format!("http://{addr}"))
            .metrics_interval(INTERVAL)
            .max_queue_size(1)
    });
    drop(apm::start_transaction("lost", "custom"));
    assert!(!h.agent().flush(Duration::from_secs(5)));
    assert!(h.agent().stats().events_dropped_send_failed > 0);

    // The server comes up: the next report carries the increase.
    let server = MockServer::start_on(&addr.to_string()).expect("rebind the closed port");
    flush_until(&h, &server, |r| reported_sum(r, DROPPED_ERROR) > 0.0);

    // Now slowly: while the transport waits on its answer, the (two-batch) queue fills and
    // whole batches are dropped on submit.
    server.set_intake_delay(Duration::from_secs(2));
    drop(apm::start_transaction("slow", "custom"));
    assert!(!h.agent().flush(Duration::from_millis(200)));
    for _ in 0..6 * 256 {
        drop(apm::start_transaction("burst", "custom"));
    }
    assert!(h.agent().stats().events_dropped_queue_full > 0);
    server.set_intake_delay(Duration::ZERO);
    // A report dropped with the queue counts itself: the first one through carries the rest.
    flush_until(&h, &server, |r| reported_sum(r, DROPPED_QUEUE) > 0.0);
    assert!(server.with_recorded(|r| reported_sum(r, EVENTS_TOTAL)) > 0.0);

    // Then nothing more is dropped: later reports carry no zero increase.
    let k = count_system(&server);
    flush_until(&h, &server, |r| {
        r.events_of("metricset").filter(|m| is_system(m)).count() >= k + 3
    });
    let sets = system_sets(&server);
    let last = &sets[sets.len() - 1];
    assert!(
        sample(last, DROPPED_QUEUE).is_none() && sample(last, DROPPED_ERROR).is_none(),
        "{last:#}"
    );

    for set in server.metricsets() {
        for name in [EVENTS_TOTAL, DROPPED_QUEUE, DROPPED_ERROR] {
            if let Some(v) = sample(&set, name) {
                assert!(v >= 1.0 && v.fract() == 0.0, "{name} = {v}: {set:#}");
            }
        }
        // `agent.events.dropped.*` must have no labels, and share no set with the total.
        if sample(&set, DROPPED_QUEUE).is_some() || sample(&set, DROPPED_ERROR).is_some() {
            assert!(set.get("tags").is_none(), "{set:#}");
            assert!(sample(&set, EVENTS_TOTAL).is_none(), "{set:#}");
        }
        // …while the total carries the `eventType` label.
        if sample(&set, EVENTS_TOTAL).is_some() {
            assert_eq!(set["tags"]["eventType"], "undefined", "{set:#}");
        }
    }
    assert!(
        server
            .metricsets()
            .iter()
            .any(|s| sample(s, EVENTS_TOTAL).is_some()),
        "agent.events.total was reported"
    );
    drop(h.agent.take());
    common::validate_all(&server);
    h.finish();
}

#[test]
fn a_final_metricset_is_sent_at_shutdown() {
    let mut h = agent::start(|c| c.metrics_interval(Duration::from_secs(60)));
    assert!(has_metrics_thread());
    let stopping = Instant::now();
    drop(h.agent.take());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}: the 60 s wait was not interrupted",
        stopping.elapsed()
    );
    let sets = system_sets(&h.server);
    assert_eq!(sets.len(), 1, "{sets:#?}");
    assert!(sample(&sets[0], MEMORY_TOTAL).is_some_and(|v| v > 0.0));
    h.finish();
}

#[test]
fn metrics_interval_zero_starts_no_thread_and_sends_no_metricset() {
    let mut h = agent::start(|c| c.metrics_interval(Duration::ZERO));
    assert!(!has_metrics_thread(), "{:?}", agent_threads());
    drop(apm::start_transaction("no metrics", "custom"));
    h.flush();
    assert_eq!(h.transactions().len(), 1);
    assert!(
        h.events("metricset").is_empty(),
        "{:?}",
        h.events("metricset")
    );
    drop(h.agent.take());
    assert!(h.events("metricset").is_empty());
    h.finish();
}

#[test]
fn the_metrics_thread_runs_with_the_agent_and_stops_with_it() {
    let mut h: Harness = agent::start(fast);
    assert!(has_metrics_thread(), "{:?}", agent_threads());
    assert!(wait_system(&h.server, 1, WAIT));
    drop(h.agent.take());
    let left = agent::agent_threads_once_stopped();
    assert!(left.is_empty(), "{left:?}");
    h.finish();
}

#[test]
fn recording_false_sends_no_metricset() {
    let mut h = agent::start(|c| fast(c).recording(false));
    assert!(!h.server.wait_for_metricsets(1, Duration::from_secs(1)));
    drop(h.agent.take());
    assert!(
        h.events("metricset").is_empty(),
        "{:?}",
        h.events("metricset")
    );
    h.finish();
}

#[test]
fn breakdown_metrics_false_sends_only_system_metricsets() {
    let h = agent::start(|c| fast(c).breakdown_metrics(false));
    drop(apm::start_transaction("checkout", "request"));
    h.flush();
    let n = count_system(&h.server);
    assert!(wait_system(&h.server, n + 2, WAIT));
    h.flush();
    let breakdown: Vec<Value> = h
        .events("metricset")
        .into_iter()
        .filter(|m| m.get("transaction").is_some() || m.get("span").is_some())
        .collect();
    assert!(breakdown.is_empty(), "{breakdown:#?}");
    h.finish();
}

#[test]
fn breakdown_metricsets_ride_with_the_report_and_obey_disable_metrics() {
    let h = agent::start(|c| fast(c).disable_metrics(["span.self_time.sum.us"]));
    drop(apm::start_transaction("checkout", "request"));
    h.flush();
    flush_until(&h, &h.server, |r| {
        r.events_of("metricset")
            .any(|m| m["transaction"]["name"] == "checkout")
    });
    let sets = h.events("metricset");
    let breakdown: Vec<&Value> = sets
        .iter()
        .filter(|m| m["transaction"]["name"] == "checkout")
        .collect();
    assert_eq!(breakdown.len(), 1, "{breakdown:#?}");
    let b = breakdown[0];
    assert_eq!(names(b), ["span.self_time.count"], "{b:#}");
    assert_eq!(sample(b, "span.self_time.count"), Some(1.0));
    // Sent with the system metrics of the same report.
    assert!(
        sets.iter()
            .any(|m| is_system(m) && timestamp(m) == timestamp(b)),
        "{sets:#?}"
    );
    h.finish();
}
