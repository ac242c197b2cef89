//! The process-wide tracer: configuration, the live (dynamic) options, counters, and the
//! state shared by the threads that record one transaction.
//!
//! The tracer is leaked when the agent starts, so the hot path reads it with one atomic load
//! and never takes a lock; an agent that stopped leaves its (small) tracer behind, and a new
//! one can start later in the same process.

use std::borrow::Cow;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering::*};
use std::sync::mpsc::{Sender, SyncSender};

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use crate::clock::Tick;
use crate::config::TraceContinuationStrategy;
use crate::record::{Labels, TransactionName};
use crate::transport::{Command, Message};
use crate::{Config, Outcome};

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
    pub(crate) continuation: std::sync::atomic::AtomicU8,
    pub(crate) api_request_size: AtomicU64,
    api_request_time_ms: AtomicU64,
    server_timeout_ms: AtomicU64,
}

impl LiveConfig {
    fn store(&self, c: &Config) {
        self.sample_rate
            .store(rate_to_fixed(c.transaction_sample_rate), Relaxed);
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
        self.api_request_size.store(c.api_request_size, Relaxed);
        self.api_request_time_ms
            .store(millis(c.api_request_time), Relaxed);
        self.server_timeout_ms
            .store(millis(c.server_timeout), Relaxed);
    }
    pub(crate) fn api_request_size(&self) -> u64 {
        self.api_request_size.load(Relaxed)
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

/// Counters of the agent's own health.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Events taken by the transport thread (`agent.events.total` is this plus the events
    /// dropped because the queue was full).
    pub(crate) events_queued: AtomicU64,
    pub(crate) events_sent: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_send_failed: AtomicU64,
    pub(crate) requests_failed: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Tracer {
    /// The local configuration: defaults, code and environment.
    pub(crate) config: Config,
    /// The local configuration with central configuration applied; read by the background
    /// threads (the application thread reads only `live`).
    effective: RwLock<Config>,
    /// What server integrations check per request, compiled once per configuration change.
    server_policy: RwLock<Arc<crate::web::ServerPolicy>>,
    pub(crate) live: LiveConfig,
    pub(crate) counters: Counters,
    /// The process that started the agent: a child created by `fork` inherits this memory
    /// but none of the agent's threads.
    pub(crate) pid: u32,
    /// Breakdown metrics totals (transport thread adds, metrics thread drains).
    pub(crate) breakdown: crate::breakdown::Breakdown,
    /// Batches of events to the transport thread (bounded).
    pub(crate) queue: SyncSender<Message>,
    /// Flush and shutdown requests to the transport thread.
    pub(crate) commands: Sender<Command>,
    /// Wakes the transport thread, which otherwise polls the queue: producers handing a
    /// batch over never pay for a wake-up (a futex call) unless the queue is half full.
    pub(crate) doorbell: Doorbell,
}

#[derive(Debug, Default)]
pub(crate) struct Doorbell {
    transport: std::sync::OnceLock<std::thread::Thread>,
    /// Batches in the queue.
    queued: std::sync::atomic::AtomicUsize,
    /// Queue slots; the bell rings when a hand-over fills the half of them.
    half: usize,
}

impl Doorbell {
    pub(crate) fn new(slots: usize) -> Doorbell {
        Doorbell {
            half: (slots / 2).max(1),
            ..Doorbell::default()
        }
    }
    /// Called by the transport thread when it starts.
    pub(crate) fn register(&self) {
        let _ = self.transport.set(std::thread::current());
    }
    pub(crate) fn ring(&self) {
        if let Some(t) = self.transport.get() {
            t.unpark();
        }
    }
    /// A batch entered the queue.
    #[inline]
    pub(crate) fn queued(&self) {
        if self.queued.fetch_add(1, Relaxed) + 1 == self.half {
            self.ring();
        }
    }
    /// Batches in the queue.
    pub(crate) fn len(&self) -> usize {
        self.queued.load(Relaxed)
    }
    /// A batch left the queue (transport thread).
    pub(crate) fn taken(&self) {
        let _ = self
            .queued
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }
}

/// A rate as text with at most four decimals and no trailing zeros (`0.5`, `1`, `0.1235`).
pub(crate) fn format_rate(rate: f64) -> String {
    format!("{}", (rate.clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0)
}

/// Sample rate as stored (× 10 000), from a rate already rounded to four decimals.
pub(crate) fn rate_to_fixed(rate: f64) -> u32 {
    (rate.clamp(0.0, 1.0) * 10_000.0).round() as u32
}

impl Tracer {
    pub(crate) fn new(
        config: Config,
        queue: SyncSender<Message>,
        queue_slots: usize,
        commands: Sender<Command>,
    ) -> Tracer {
        let live = LiveConfig::default();
        live.store(&config);
        live.send_unsampled.store(true, Relaxed);
        crate::diag::set_level(config.log_level);
        Tracer {
            live,
            counters: Counters::default(),
            breakdown: Default::default(),
            pid: std::process::id(),
            effective: RwLock::new(config.clone()),
            server_policy: RwLock::new(Arc::new(crate::web::ServerPolicy::from_config(&config))),
            config,
            queue,
            commands,
            doorbell: Doorbell::new(queue_slots),
        }
    }

    /// The sampling decision for a new root transaction, and the rate it was taken at.
    #[inline]
    pub(crate) fn sample(&self) -> (bool, u16) {
        let rate = self.live.sample_rate.load(Relaxed).min(10_000);
        let sampled = match rate {
            0 => false,
            10_000 => true,
            r => (crate::ids::next_u64() % 10_000) < u64::from(r),
        };
        (sampled, rate as u16)
    }

    /// The per-request rules of server integrations (one shared read, no allocation).
    pub(crate) fn server_policy(&self) -> Arc<crate::web::ServerPolicy> {
        Arc::clone(&self.server_policy.read())
    }

    /// The configuration in effect now (local plus central).
    pub(crate) fn effective(&self) -> RwLockReadGuard<'_, Config> {
        self.effective.read()
    }

    /// Puts a new effective configuration in force, live.
    pub(crate) fn update(&self, effective: Config) {
        self.live.store(&effective);
        crate::diag::set_level(effective.log_level);
        if ptr::eq(get().map_or(ptr::null(), |t| t as *const _), self) {
            ACTIVE.store(effective.recording, Release);
        }
        *self.server_policy.write() = Arc::new(crate::web::ServerPolicy::from_config(&effective));
        *self.effective.write() = effective;
    }
}

/// What the threads recording one transaction share.
#[derive(Debug)]
pub(crate) struct TxnShared {
    pub(crate) trace_id: u128,
    pub(crate) id: u64,
    pub(crate) parent_id: Option<u64>,
    pub(crate) sampled: bool,
    pub(crate) sample_rate: u16,
    pub(crate) max_spans: u32,
    /// Spans recorded so far (counts towards `transaction_max_spans`).
    pub(crate) started: AtomicU32,
    /// Spans not recorded because of the limit.
    pub(crate) dropped: AtomicU32,
    /// The `tracestate` to send downstream (`None`: send none).
    pub(crate) tracestate: Option<Arc<str>>,
    /// Span links (a restarted trace points at the one it came from).
    pub(crate) links: Vec<(u128, u64)>,
    pub(crate) start: Tick,
    /// An error was captured where the transaction itself was current (its own entry, or a
    /// context bound to it on another thread or in another future): it fails, unless the
    /// application set an outcome (spec: `outcome.feature`).
    pub(crate) errored: std::sync::atomic::AtomicBool,
    /// Touched only by the manual API and once at the end: never on a span's path.
    pub(crate) state: Mutex<TxnState>,
    /// Children off the stack that ended where their parent was not current (another task or
    /// thread): (parent id, end), until the parent hears of them (breakdown metrics). At most
    /// one per recorded span.
    pub(crate) children_ended_elsewhere: Mutex<Vec<(u64, crate::clock::Tick)>>,
    /// How many there are: a parent with nothing to hear of takes no lock.
    pub(crate) children_ended_elsewhere_count: AtomicU32,
}

#[derive(Debug)]
pub(crate) struct TxnState {
    pub(crate) name: TransactionName,
    pub(crate) result: Option<Cow<'static, str>>,
    /// Set by the application: wins over everything else.
    pub(crate) outcome: Option<Outcome>,
    /// Set by an integration: gives way to the application's and to a captured error.
    pub(crate) integration_outcome: Option<Outcome>,
    pub(crate) labels: Labels,
    pub(crate) request: Option<Box<crate::web::Request>>,
    pub(crate) response: Option<Box<crate::web::Response>>,
    pub(crate) ended: bool,
}

impl TxnShared {
    /// A child of `parent` ended at `end` where `parent` was not current.
    pub(crate) fn child_ended_elsewhere(&self, parent: u64, end: crate::clock::Tick) {
        let mut ended = self.children_ended_elsewhere.lock();
        ended.push((parent, end));
        self.children_ended_elsewhere_count
            .store(ended.len() as u32, Relaxed);
    }

    /// Hands `parent` the ends of its children that ended elsewhere.
    pub(crate) fn take_children_ended_elsewhere(
        &self,
        parent: u64,
        mut end: impl FnMut(crate::clock::Tick),
    ) {
        if self.children_ended_elsewhere_count.load(Relaxed) == 0 {
            return;
        }
        let mut ended = self.children_ended_elsewhere.lock();
        ended.retain(|&(p, at)| {
            if p == parent {
                end(at);
            }
            p != parent
        });
        self.children_ended_elsewhere_count
            .store(ended.len() as u32, Relaxed);
    }

    /// Reserves up to `n` places for spans at once; returns how many were granted (fewer near
    /// `transaction_max_spans`, none beyond it).
    pub(crate) fn reserve_spans(&self, n: u32) -> u32 {
        let before = self.started.fetch_add(n, Relaxed);
        let granted = self.max_spans.saturating_sub(before).min(n);
        if granted < n {
            self.started.fetch_sub(n - granted, Relaxed);
        }
        granted
    }

    /// Reserves a place for one more span; `false` (and counted as dropped) beyond the limit.
    #[inline]
    pub(crate) fn reserve_span(&self) -> bool {
        if self.started.fetch_add(1, Relaxed) < self.max_spans {
            true
        } else {
            self.started.fetch_sub(1, Relaxed);
            self.dropped.fetch_add(1, Relaxed);
            false
        }
    }
}
