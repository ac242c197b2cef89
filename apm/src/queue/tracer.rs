//! The process-wide tracer: what the application threads and the background threads share.
//! The configuration (local, and effective with central configuration applied), the live
//! options the hot path reads, the health counters, and the producing end of the queue.
//!
//! The tracer is leaked when the agent starts, so the hot path reads it with one atomic load
//! and never takes a lock; an agent that stopped leaves its (small) tracer behind, and a new
//! one can start later in the same process.

use std::ptr;
use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::*,
};
use std::time::Duration;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use super::batch;
use super::channel::{Command, Producer};
use crate::config::Config;
use crate::config::TraceContinuationStrategy;
use crate::types::record::Event;
use crate::types::sample_rate;
use crate::util::id_hash::IdMap;

/// Forks this process's memory has been through (bumped in each forked child): what started
/// under an earlier count belongs to an ancestor process, whose threads did not come along.
static FORKS: AtomicU32 = AtomicU32::new(0);

/// See [`FORKS`]: read when an agent or a transaction starts and when it is used or ends,
/// never on a span's path.
#[inline]
pub(crate) fn forks() -> u32 {
    FORKS.load(Relaxed)
}

/// In a forked child (its `pthread_atfork` handler): the inherited agent has no threads here,
/// so it stops recording and is forgotten; `init` in the child starts the child's own.
#[cfg(unix)]
pub(crate) fn after_fork_in_child() {
    ACTIVE.store(false, Relaxed);
    TRACER.store(ptr::null_mut(), Release);
    FORKS.fetch_add(1, Release);
}

/// Fast "is an agent running and recording" flag: the one load instrumented code pays when
/// the agent is off.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static TRACER: AtomicPtr<Tracer> = AtomicPtr::new(ptr::null_mut());

#[inline]
pub(crate) fn is_active() -> bool {
    ACTIVE.load(Relaxed)
}

/// The running tracer, if any.
#[inline]
pub(crate) fn get() -> Option<&'static Tracer> {
    // SAFETY: the pointer is either null or a leaked `Box<Tracer>` that is never freed.
    unsafe { TRACER.load(Acquire).as_ref() }
}

/// Installs `tracer` unless one is running; returns it, or `None` when one was already there.
pub(crate) fn install(tracer: Tracer) -> Option<&'static Tracer> {
    let leaked: &'static Tracer = Box::leak(Box::new(tracer));
    match TRACER.compare_exchange(
        ptr::null_mut(),
        leaked as *const Tracer as *mut Tracer,
        AcqRel,
        Acquire,
    ) {
        Ok(_) => {
            ACTIVE.store(leaked.live.recording.load(Relaxed), Release);
            Some(leaked)
        }
        Err(_) => None,
    }
}

/// Stops recording new events (the agent is shutting down).
pub(crate) fn stop_recording() {
    ACTIVE.store(false, Release);
}

/// Stops recording and forgets the tracer (its threads are stopped by the agent handle).
pub(crate) fn uninstall(tracer: &'static Tracer) {
    ACTIVE.store(false, Release);
    let _ = TRACER.compare_exchange(
        tracer as *const Tracer as *mut Tracer,
        ptr::null_mut(),
        AcqRel,
        Acquire,
    );
}

/// Options that can change while the agent runs (central configuration); each read is one
/// relaxed load.
#[derive(Debug, Default)]
pub(crate) struct LiveConfig {
    /// Sample rate × 10 000.
    pub(crate) sample_rate: AtomicU32,
    pub(crate) max_spans: AtomicU32,
    pub(crate) recording: AtomicBool,
    /// Whether the APM Server wants unsampled transactions (servers before 8.0; `true` until
    /// the version is known). When not, they are not even recorded.
    pub(crate) send_unsampled: AtomicBool,
    /// `trace_continuation_strategy`: 0 continue, 1 restart, 2 restart_external.
    pub(crate) continuation: AtomicU8,
    /// `use_elastic_traceparent_header`: outgoing headers also carry `elastic-apm-traceparent`.
    pub(crate) legacy_traceparent: AtomicBool,
    pub(crate) api_request_size: AtomicU64,
    /// `long_field_max_length`: statements are cut to it when captured.
    long_field_max_length: AtomicUsize,
    /// `stack_trace_limit`; `u32::MAX`: all frames.
    stack_trace_limit: AtomicU32,
    /// `span_stack_trace_min_duration` in nanoseconds; `u64::MAX`: never.
    span_stack_trace_min_ns: AtomicU64,
    api_request_time_ms: AtomicU64,
    server_timeout_ms: AtomicU64,
}

impl LiveConfig {
    fn store(&self, c: &Config) {
        self.sample_rate.store(
            u32::from(sample_rate::to_fixed(c.transaction_sample_rate)),
            Relaxed,
        );
        self.max_spans.store(c.transaction_max_spans, Relaxed);
        self.recording.store(c.recording, Relaxed);
        self.continuation.store(
            match c.trace_continuation_strategy {
                TraceContinuationStrategy::Continue => 0,
                TraceContinuationStrategy::Restart => 1,
                TraceContinuationStrategy::RestartExternal => 2,
            },
            Relaxed,
        );
        self.legacy_traceparent
            .store(c.use_elastic_traceparent_header, Relaxed);
        self.api_request_size.store(c.api_request_size, Relaxed);
        self.long_field_max_length
            .store(c.long_field_max_length, Relaxed);
        self.stack_trace_limit.store(
            c.stack_trace_limit
                .map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX - 1)),
            Relaxed,
        );
        self.span_stack_trace_min_ns.store(
            c.span_stack_trace_min_duration.map_or(u64::MAX, |d| {
                u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
            }),
            Relaxed,
        );
        self.api_request_time_ms
            .store(millis(c.api_request_time), Relaxed);
        self.server_timeout_ms
            .store(millis(c.server_timeout), Relaxed);
    }
    /// `long_field_max_length`, in characters.
    #[cfg_attr(not(apm_sql), allow(dead_code))]
    pub(crate) fn long_field_max_length(&self) -> usize {
        self.long_field_max_length.load(Relaxed)
    }
    pub(crate) fn api_request_size(&self) -> u64 {
        self.api_request_size.load(Relaxed)
    }
    /// Frames per stack trace: `Some(0)` none, `None` all.
    pub(crate) fn stack_trace_limit(&self) -> Option<usize> {
        match self.stack_trace_limit.load(Relaxed) {
            u32::MAX => None,
            n => Some(n as usize),
        }
    }
    /// Spans that last this long or longer get a stack trace; `u64::MAX`: none does.
    #[inline]
    pub(crate) fn span_stack_trace_min_ns(&self) -> u64 {
        self.span_stack_trace_min_ns.load(Relaxed)
    }
    pub(crate) fn api_request_time(&self) -> Duration {
        Duration::from_millis(self.api_request_time_ms.load(Relaxed))
    }
    pub(crate) fn server_timeout(&self) -> Duration {
        Duration::from_millis(self.server_timeout_ms.load(Relaxed))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Counters of the agent's own health. Once the queue is empty and no request is open,
/// `events_queued` = `events_sent` + the `dropped_*` counters after the queue +
/// `unsampled_not_sent`: every event is delivered or counted where it was dropped.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Events taken by the transport thread (`agent.events.total` is this plus the events
    /// dropped because the queue was full).
    pub(crate) events_queued: AtomicU64,
    pub(crate) events_sent: AtomicU64,
    /// Dropped on submit: the queue (or the metrics' place beside it) was full.
    pub(crate) dropped_queue_full: AtomicU64,
    /// Dropped after queueing: the request failed, or the body filled up while backing off.
    pub(crate) dropped_send_failed: AtomicU64,
    /// Dropped after queueing: the event could not be serialised or compressed.
    pub(crate) dropped_encode_failed: AtomicU64,
    /// Dropped after queueing: the agent stopped while backing off, with a body unsent.
    pub(crate) dropped_shutdown: AtomicU64,
    /// Unsampled transactions not sent because the APM Server (8.0 on) does not want them.
    pub(crate) unsampled_not_sent: AtomicU64,
    /// Spans merged into a composite span (the composite is sent in their place).
    pub(crate) spans_compressed: AtomicU64,
    /// Exit spans dropped as faster than `exit_span_min_duration` (counted on their
    /// transaction too).
    pub(crate) spans_dropped_fast: AtomicU64,
    pub(crate) requests_failed: AtomicU64,
}

impl Counters {
    /// Events dropped after they were queued, whatever the reason (`agent.events.dropped.error`).
    pub(crate) fn dropped_after_queue(&self) -> u64 {
        self.dropped_send_failed.load(Relaxed)
            + self.dropped_encode_failed.load(Relaxed)
            + self.dropped_shutdown.load(Relaxed)
    }

    /// Events dropped anywhere, whatever the reason.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped_queue_full.load(Relaxed) + self.dropped_after_queue()
    }
}

/// Transactions whose spans were dropped at the queue (so that `span_count.started` counts
/// only the spans sent, and `span_count.dropped` the others), until their transaction is
/// written. Taken by the application thread whose batch was rejected, and by the transport
/// thread for each transaction while the tally is not empty: never on a span's path.
#[derive(Debug, Default)]
pub(crate) struct LostSpans {
    by_transaction: Mutex<IdMap<u64, u32>>,
    any: AtomicBool,
}

/// Transactions the tally follows at most (about 1 MiB); beyond that it starts again, and
/// those transactions' counts stay as recorded.
const LOST_SPANS_MAX: usize = 65_536;

impl LostSpans {
    /// Counts the spans of a batch that is being dropped.
    fn tally(&self, batch: &[Event]) {
        let mut spans = batch.iter().filter_map(|e| match e {
            Event::Span(s) => Some(s.transaction_id),
            _ => None,
        });
        let Some(first) = spans.next() else { return };
        let mut map = self.by_transaction.lock();
        if map.len() >= LOST_SPANS_MAX {
            map.clear();
        }
        for id in std::iter::once(first).chain(spans) {
            *map.entry(id).or_default() += 1;
        }
        self.any.store(true, Relaxed);
    }

    /// The spans of transaction `id` dropped at the queue, forgotten once asked.
    pub(crate) fn take(&self, id: u64) -> u32 {
        if !self.any.load(Relaxed) {
            return 0;
        }
        let mut map = self.by_transaction.lock();
        let lost = map.remove(&id).unwrap_or(0);
        if map.is_empty() {
            self.any.store(false, Relaxed);
        }
        lost
    }
}

#[derive(Debug)]
pub(crate) struct Tracer {
    /// The local configuration: defaults, code and environment.
    pub(crate) config: Config,
    /// The local configuration with central configuration applied; read by the background
    /// threads and by integrations once per change (the application thread reads `live`).
    effective: RwLock<Config>,
    /// Bumped on every change of `effective`: what is compiled from it is compiled again.
    generation: AtomicU64,
    pub(crate) live: LiveConfig,
    pub(crate) counters: Counters,
    /// Spans dropped at the queue, by transaction: their transaction's `span_count` says so.
    pub(crate) lost_spans: LostSpans,
    /// The process that started the agent: a child created by `fork` inherits this memory
    /// but none of the agent's threads.
    pub(crate) pid: u32,
    /// The producing end of the queue to the transport thread.
    queue: Producer,
}

impl Tracer {
    pub(crate) fn new(config: Config, queue: Producer) -> Tracer {
        let live = LiveConfig::default();
        live.store(&config);
        live.send_unsampled.store(true, Relaxed);
        crate::util::diag::set_level(config.log_level);
        Tracer {
            live,
            counters: Counters::default(),
            lost_spans: LostSpans::default(),
            pid: std::process::id(),
            effective: RwLock::new(config.clone()),
            generation: AtomicU64::new(0),
            config,
            queue,
        }
    }

    /// A tracer for unit tests, configured by `config`, whose queue nobody reads.
    #[cfg(test)]
    pub(crate) fn leaked_for_tests(config: Config) -> &'static Tracer {
        let (queue, _) = crate::queue::channel::bounded(1);
        Box::leak(Box::new(Tracer::new(config, queue)))
    }

    /// Hands a batch of events to the transport thread. When the queue is full, spans go
    /// first: the batch's spans are dropped (and counted), its transactions and errors wait
    /// beside the queue while there is room, else they are dropped and counted too. The vector
    /// goes back to the pool.
    pub(crate) fn hand_over(&self, batch: Vec<Event>) {
        let Err(mut rejected) = self.queue.send_events(batch) else {
            return;
        };
        let before = rejected.len();
        self.lost_spans.tally(&rejected);
        rejected.retain(|e| !matches!(e, Event::Span(_)));
        let mut dropped = (before - rejected.len()) as u64;
        if !rejected.is_empty() && !self.queue.send_held(&mut rejected) {
            dropped += rejected.len() as u64;
        }
        if dropped > 0 {
            self.counters.dropped_queue_full.fetch_add(dropped, Relaxed);
        }
        batch::recycle(rejected);
    }

    /// Hands a metrics report to the transport thread through a place of its own, so that a
    /// queue full of events cannot drop it. `false` when earlier reports not taken yet fill
    /// that place (the transport is stuck): this one is dropped and counted, and the caller
    /// reports its counters' increases again next time.
    pub(crate) fn hand_over_metrics(&self, report: Vec<Event>) -> bool {
        let n = report.len() as u64;
        match self.queue.send_metrics(report) {
            Ok(()) => true,
            Err(_) => {
                self.counters.dropped_queue_full.fetch_add(n, Relaxed);
                false
            }
        }
    }

    /// Sends a command to the transport thread and wakes it; `false` when it has stopped.
    pub(crate) fn command(&self, command: Command) -> bool {
        self.queue.send_command(command)
    }

    /// The configuration in effect now (local plus central).
    pub(crate) fn effective(&self) -> RwLockReadGuard<'_, Config> {
        self.effective.read()
    }

    /// Which version of the effective configuration is in force (see [`Tracer::effective`]).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Acquire)
    }

    /// Puts a new effective configuration in force, live.
    pub(crate) fn update(&self, effective: Config) {
        self.live.store(&effective);
        crate::util::diag::set_level(effective.log_level);
        if ptr::eq(get().map_or(ptr::null(), |t| t as *const _), self) {
            ACTIVE.store(effective.recording, Release);
        }
        *self.effective.write() = effective;
        self.generation.fetch_add(1, Release);
    }
}
