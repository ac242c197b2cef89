//! The `apm-metrics` thread: every `metrics_interval` it reports the system and process metrics
//! ([`system`]), the agent's health counters (elastic/apm
//! `specs/agents/metrics-health.md`) and the breakdown metrics, as metricsets handed to the
//! transport thread in one batch; and once more when the agent stops, before the transport's
//! final flush.
//!
//! Each report reads the effective configuration (`metrics_interval`, `disable_metrics`,
//! `breakdown_metrics`, `recording`), so central configuration applies from the next report.
//! Nothing here panics or blocks the application: a value that cannot be read is left out,
//! and a full queue drops the batch (and counts it).

use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::worker::{Stop, Worker};
use crate::export::encode::breakdown::Breakdown;
use crate::export::symbolize;
use crate::queue::tracer::{Counters, Tracer};
use crate::types::record::{Event, MetricsetRecord};
use crate::util::diag::warn_once;
use crate::util::wildcard::WildcardList;
use system::{Sampler, SystemMetrics};

mod system;

/// `COUNTER` of events submitted to the reporting queue or dropped on the attempt. The spec
/// requires the label `eventType` (`undefined` when unknown), which the others must not have,
/// so it travels in a metricset of its own.
pub(crate) const EVENTS_TOTAL: &str = "agent.events.total";
/// `COUNTER` of events dropped because the queue was full.
pub(crate) const EVENTS_DROPPED_QUEUE: &str = "agent.events.dropped.queue";
/// `COUNTER` of events dropped after they were queued (failed or abandoned requests).
pub(crate) const EVENTS_DROPPED_ERROR: &str = "agent.events.dropped.error";

/// Starts the metrics thread; `None` when metrics are off (`metrics_interval` 0) or the thread
/// cannot be started.
pub(crate) fn start(
    tracer: &'static Tracer,
    breakdown: Arc<Breakdown>,
    stop: Arc<Stop>,
) -> Option<Worker> {
    let interval = tracer.effective().metrics_interval;
    if interval.is_zero() {
        crate::util::diag::once(
            log::Level::Debug,
            format_args!("metrics_interval is 0: metrics are off, no apm-metrics thread"),
        );
        return None;
    }
    let waker = Arc::clone(&stop);
    match Worker::spawn("apm-metrics", move || {
        run(tracer, &breakdown, &stop, interval)
    }) {
        Ok(w) => {
            // This thread loads the symbol tables when the transport thread first needs them.
            symbolize::set_loader(Some(Arc::new(move || waker.wake())));
            Some(w)
        }
        Err(e) => {
            warn_once!("could not start the metrics thread ({e}); no metrics will be reported");
            None
        }
    }
}

/// Reports every `interval` until stopped, then once more.
fn run(tracer: &Tracer, breakdown: &Breakdown, stop: &Stop, mut interval: Duration) {
    // Created here, so that the first report has a CPU delta over one whole interval.
    let mut reporter = Reporter::new();
    // Deadlines, not sleeps: the time a report takes does not shift the next one.
    let mut next = Instant::now() + interval;
    let mut wakes = 0;
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        let stopped = stop.wait_or_woken(wait, &mut wakes);
        symbolize::load_tables_if_wanted();
        if !stopped && Instant::now() < next {
            // Woken for the symbol tables, not yet time to report.
            continue;
        }
        reporter.report(tracer, breakdown);
        if stopped {
            return;
        }
        // Not a dynamic option, but cheap to follow; 0 at run time keeps the last interval.
        let configured = tracer.effective().metrics_interval;
        if !configured.is_zero() {
            interval = configured;
        }
        let now = Instant::now();
        next += interval;
        if next <= now {
            // Fell behind (a suspended process): start again from now rather than catching up.
            next = now + interval;
        }
    }
}

/// What one report reads of the effective configuration.
#[derive(Debug)]
struct Settings {
    recording: bool,
    breakdown_metrics: bool,
}

/// The state kept between reports.
#[derive(Debug)]
struct Reporter {
    sampler: Sampler,
    health: Health,
    disabled: Disabled,
}

impl Reporter {
    fn new() -> Self {
        Reporter {
            sampler: Sampler::new(),
            health: Health::default(),
            disabled: Disabled::default(),
        }
    }

    /// Collects one report and hands it to the transport thread.
    fn report(&mut self, tracer: &Tracer, totals: &Breakdown) {
        let settings = {
            let c = tracer.effective();
            self.disabled.update(&c.disable_metrics);
            Settings {
                recording: c.recording,
                breakdown_metrics: c.breakdown_metrics,
            }
        };
        // Everything is read even when not recording, so that each report covers only its own
        // interval (CPU deltas, counter increases, breakdown) once recording resumes.
        let system = self.sampler.sample();
        let timestamp = now_micros();
        let (health, counted) = self.health.increases(&tracer.counters);
        let breakdown = if settings.breakdown_metrics {
            totals.drain(timestamp)
        } else {
            Vec::new()
        };
        if !settings.recording {
            self.health.reported(counted);
            return;
        }
        let sets = assemble(timestamp, &system, health, breakdown, &self.disabled.list);
        if sets.is_empty() {
            self.health.reported(counted);
            return;
        }
        let report = sets
            .into_iter()
            .map(|m| Event::Metricset(Box::new(m)))
            .collect();
        // A report that could not be handed over is counted as dropped; its counters'
        // increases go with the next one.
        if tracer.hand_over_metrics(report) {
            self.health.reported(counted);
        }
    }
}

/// Microseconds since the Unix epoch (0 for a clock set before it).
fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// One report's metricsets: system and process metrics with the `agent.events.dropped.*`
/// increases (no tags), `agent.events.total` on its own, then the breakdown metricsets; names
/// matching `disabled` removed, and metricsets left without samples omitted.
fn assemble(
    timestamp: u64,
    system: &SystemMetrics,
    health: HealthIncreases,
    breakdown: Vec<MetricsetRecord>,
    disabled: &WildcardList,
) -> Vec<MetricsetRecord> {
    let counter = |name: &'static str, increase: Option<u64>| {
        increase.map(|n| (Cow::Borrowed(name), n as f64))
    };
    let mut untagged = MetricsetRecord {
        timestamp,
        samples: system
            .iter()
            .map(|(name, value)| (Cow::Borrowed(name), value))
            .collect(),
        ..MetricsetRecord::default()
    };
    untagged.samples.extend(
        [
            counter(EVENTS_DROPPED_QUEUE, health.dropped_queue),
            counter(EVENTS_DROPPED_ERROR, health.dropped_error),
        ]
        .into_iter()
        .flatten(),
    );
    // metrics-health.md: `agent.events.total` MUST carry `eventType` (`undefined` allowed:
    // the counters are not kept per event type).
    let total = MetricsetRecord {
        timestamp,
        tags: vec![("eventType", "undefined")],
        samples: counter(EVENTS_TOTAL, health.total).into_iter().collect(),
        ..MetricsetRecord::default()
    };
    let mut sets = Vec::with_capacity(2 + breakdown.len());
    sets.push(untagged);
    sets.push(total);
    sets.extend(breakdown);
    if !disabled.is_empty() {
        for set in &mut sets {
            set.samples.retain(|(name, _)| !disabled.any_match(name));
        }
    }
    sets.retain(|set| !set.samples.is_empty());
    sets
}

/// `disable_metrics`, compiled again only when the patterns change.
#[derive(Debug, Default)]
struct Disabled {
    patterns: Vec<String>,
    list: WildcardList,
}

impl Disabled {
    fn update(&mut self, patterns: &[String]) {
        if self.patterns != patterns {
            self.patterns = patterns.to_vec();
            self.list = WildcardList::parse(patterns);
        }
    }
}

/// A `COUNTER` as the health spec reports it: the increase since the last report that was
/// handed over.
#[derive(Debug, Default)]
struct Counter {
    reported: u64,
}

impl Counter {
    /// The increase since the last report handed over; `None` for none, which is not sent.
    fn increase(&self, now: u64) -> Option<u64> {
        let increase = now.saturating_sub(self.reported);
        (increase > 0).then_some(increase)
    }

    /// The report that carried the increase up to `now` was handed over.
    fn reported(&mut self, now: u64) {
        self.reported = self.reported.max(now);
    }
}

/// The agent health counters' values in the last report handed over.
#[derive(Debug, Default)]
struct Health {
    total: Counter,
    dropped_queue: Counter,
    dropped_error: Counter,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct HealthIncreases {
    total: Option<u64>,
    dropped_queue: Option<u64>,
    dropped_error: Option<u64>,
}

/// The counters' values a report was built from: they become the baselines once it is handed
/// over.
#[derive(Debug, Default, Clone, Copy)]
struct Counted {
    total: u64,
    dropped_queue: u64,
    dropped_error: u64,
}

impl Health {
    fn increases(&self, c: &Counters) -> (HealthIncreases, Counted) {
        let dropped_queue = c.dropped_queue_full.load(Relaxed);
        let counted = Counted {
            total: c.events_queued.load(Relaxed).saturating_add(dropped_queue),
            dropped_queue,
            dropped_error: c.dropped_after_queue(),
        };
        let increases = HealthIncreases {
            total: self.total.increase(counted.total),
            dropped_queue: self.dropped_queue.increase(counted.dropped_queue),
            dropped_error: self.dropped_error.increase(counted.dropped_error),
        };
        (increases, counted)
    }

    fn reported(&mut self, counted: Counted) {
        self.total.reported(counted.total);
        self.dropped_queue.reported(counted.dropped_queue);
        self.dropped_error.reported(counted.dropped_error);
    }
}

#[cfg(test)]
mod tests {
    use super::system as sm;
    use super::*;

    fn names(set: &MetricsetRecord) -> Vec<&str> {
        set.samples.iter().map(|(n, _)| &**n).collect()
    }

    fn value(set: &MetricsetRecord, name: &str) -> Option<f64> {
        set.samples.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    fn some_system() -> SystemMetrics {
        SystemMetrics {
            cpu_total_norm_pct: Some(0.5),
            memory_total: Some(1 << 30),
            memory_actual_free: Some(1 << 29),
            process_cpu_total_norm_pct: Some(0.25),
            process_memory_size: Some(1 << 26),
            process_memory_rss_bytes: Some(1 << 24),
            cgroup_memory_limit_bytes: None,
            cgroup_memory_usage_bytes: Some(1 << 25),
        }
    }

    fn list(patterns: &[&str]) -> WildcardList {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        WildcardList::parse(&patterns)
    }

    fn breakdown(kind: &str) -> MetricsetRecord {
        MetricsetRecord {
            timestamp: 7,
            transaction: Some(("GET /".into(), "request".into())),
            span: Some((kind.into(), None)),
            tags: Vec::new(),
            samples: vec![
                ("span.self_time.count".into(), 1.0),
                ("span.self_time.sum.us".into(), 12.0),
            ],
        }
    }

    #[test]
    fn counters_report_increases_and_skip_zero() {
        // The spec's example: 7, 10, 10, 12 → 7, 3, not sent, 2.
        let mut c = Counter::default();
        let report = |c: &mut Counter, now| {
            let increase = c.increase(now);
            c.reported(now);
            increase
        };
        assert_eq!(report(&mut c, 7), Some(7));
        assert_eq!(report(&mut c, 10), Some(3));
        assert_eq!(report(&mut c, 10), None);
        assert_eq!(report(&mut c, 12), Some(2));
        // Never negative.
        assert_eq!(report(&mut c, 5), None);
        assert_eq!(report(&mut c, 13), Some(1));
    }

    #[test]
    fn health_total_counts_queued_and_dropped_on_submit() {
        let report = |h: &mut Health, c: &Counters| {
            let (increases, counted) = h.increases(c);
            h.reported(counted);
            increases
        };
        let counters = Counters::default();
        let mut h = Health::default();
        assert_eq!(report(&mut h, &counters), HealthIncreases::default());
        counters.events_queued.store(10, Relaxed);
        counters.dropped_queue_full.store(4, Relaxed);
        counters.dropped_send_failed.store(3, Relaxed);
        // Not a health counter.
        counters.events_sent.store(99, Relaxed);
        assert_eq!(
            report(&mut h, &counters),
            HealthIncreases {
                total: Some(14),
                dropped_queue: Some(4),
                dropped_error: Some(3),
            }
        );
        counters.events_queued.store(12, Relaxed);
        assert_eq!(
            report(&mut h, &counters),
            HealthIncreases {
                total: Some(2),
                dropped_queue: None,
                dropped_error: None,
            }
        );
        assert_eq!(report(&mut h, &counters), HealthIncreases::default());
    }

    #[test]
    fn increases_of_a_report_not_handed_over_go_with_the_next() {
        let counters = Counters::default();
        let mut h = Health::default();
        counters.dropped_queue_full.store(4, Relaxed);
        counters.dropped_encode_failed.store(1, Relaxed);
        counters.dropped_shutdown.store(2, Relaxed);
        // Built, then not handed over (its place was still taken): no baseline moves.
        let (lost, _) = h.increases(&counters);
        assert_eq!(lost.dropped_queue, Some(4));
        counters.dropped_queue_full.store(6, Relaxed);
        let (next, counted) = h.increases(&counters);
        assert_eq!(
            next,
            HealthIncreases {
                total: Some(6),
                dropped_queue: Some(6),
                dropped_error: Some(3),
            }
        );
        h.reported(counted);
        assert_eq!(h.increases(&counters).0, HealthIncreases::default());
    }

    #[test]
    fn system_and_dropped_share_an_untagged_set_and_total_has_its_own() {
        let health = HealthIncreases {
            total: Some(5),
            dropped_queue: Some(2),
            dropped_error: None,
        };
        let sets = assemble(
            42,
            &some_system(),
            health,
            Vec::new(),
            &WildcardList::default(),
        );
        assert_eq!(sets.len(), 2);
        let system = &sets[0];
        assert_eq!(system.timestamp, 42);
        assert!(system.transaction.is_none() && system.span.is_none());
        assert_eq!(
            names(system),
            [
                sm::SYSTEM_CPU_TOTAL_NORM_PCT,
                sm::PROCESS_CPU_TOTAL_NORM_PCT,
                sm::SYSTEM_MEMORY_TOTAL,
                sm::SYSTEM_MEMORY_ACTUAL_FREE,
                sm::PROCESS_MEMORY_SIZE,
                sm::PROCESS_MEMORY_RSS_BYTES,
                sm::CGROUP_MEMORY_USAGE_BYTES,
                EVENTS_DROPPED_QUEUE,
            ]
        );
        assert_eq!(value(system, EVENTS_DROPPED_QUEUE), Some(2.0));
        assert_eq!(value(system, EVENTS_DROPPED_ERROR), None, "zero not sent");
        assert_eq!(names(&sets[1]), [EVENTS_TOTAL]);
        assert_eq!(value(&sets[1], EVENTS_TOTAL), Some(5.0));
        assert_eq!(sets[1].timestamp, 42);
    }

    #[test]
    fn no_increase_no_health_set() {
        let sets = assemble(
            1,
            &some_system(),
            HealthIncreases::default(),
            vec![breakdown("db")],
            &WildcardList::default(),
        );
        assert_eq!(sets.len(), 2, "system and breakdown only: {sets:?}");
        assert!(sets[0]
            .samples
            .iter()
            .all(|(n, _)| n.starts_with("system.")));
        assert_eq!(sets[1].span, Some(("db".to_owned(), None)));
    }

    #[test]
    fn disable_metrics_applies_to_every_set_and_empty_sets_are_omitted() {
        let health = HealthIncreases {
            total: Some(5),
            dropped_queue: Some(2),
            dropped_error: Some(1),
        };
        let disabled = list(&["system.process.*", "AGENT.EVENTS.TOTAL", "*.sum.us"]);
        let sets = assemble(1, &some_system(), health, vec![breakdown("db")], &disabled);
        assert_eq!(sets.len(), 2, "{sets:?}");
        assert_eq!(
            names(&sets[0]),
            [
                sm::SYSTEM_CPU_TOTAL_NORM_PCT,
                sm::SYSTEM_MEMORY_TOTAL,
                sm::SYSTEM_MEMORY_ACTUAL_FREE,
                EVENTS_DROPPED_QUEUE,
                EVENTS_DROPPED_ERROR,
            ]
        );
        assert_eq!(names(&sets[1]), ["span.self_time.count"]);

        let everything = list(&["system.*", "agent.*", "span.*"]);
        let sets = assemble(
            1,
            &some_system(),
            health,
            vec![breakdown("db")],
            &everything,
        );
        assert!(sets.is_empty(), "{sets:?}");
    }

    #[test]
    fn nothing_read_nothing_sent() {
        let sets = assemble(
            1,
            &SystemMetrics::default(),
            HealthIncreases::default(),
            Vec::new(),
            &WildcardList::default(),
        );
        assert!(sets.is_empty());
    }

    #[test]
    fn disabled_patterns_are_compiled_again_only_on_change() {
        let mut d = Disabled::default();
        assert!(d.list.is_empty());
        d.update(&["system.*".to_owned()]);
        assert!(d.list.any_match("system.memory.total"));
        d.update(&["system.*".to_owned()]);
        assert!(d.list.any_match("SYSTEM.memory.total"));
        d.update(&[]);
        assert!(d.list.is_empty() && !d.list.any_match("system.memory.total"));
    }

    #[test]
    fn timestamps_are_microseconds() {
        let t = now_micros();
        // After 2020-01-01 and before 2100-01-01, in µs.
        assert!(
            t > 1_577_836_800_000_000 && t < 4_102_444_800_000_000,
            "{t}"
        );
    }
}
