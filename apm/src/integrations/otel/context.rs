//! One active context for both APIs (the spec's "Active Spans and Context"): apm's stack.
//!
//! - An OpenTelemetry context attached (`Context::attach`, `Tracer::in_span`,
//!   `mark_span_as_active`, `FutureExt::with_context` on each poll) whose span is one of this
//!   bridge's pushes that span on apm's stack, and its guard's drop leaves it: `#[apm::span]`,
//!   `apm::start_span` and `capture_error!` inside are its children. OpenTelemetry tells the
//!   bridge through its context observer (`opentelemetry`'s `experimental_context_observer`),
//!   installed once, process-wide, by the first [`super::ApmTracerProvider`].
//! - A span started from the current context is a child of apm's current span or
//!   transaction ([`super::ApmTracer`]), which the above makes the most recent of both.
//!
//! Bridged spans are found by id in [`Table`], sharded so that no lock is shared by all spans.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use opentelemetry::context::{ContextObserver, GlobalContextObserver, ObserverContextView};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;

use super::Shared;

const SHARDS: usize = 64;

type Shard = Mutex<HashMap<u64, Arc<Shared>>>;

/// The bridged spans alive (their OpenTelemetry handle not dropped yet), by span id.
pub(super) struct Table {
    shards: Box<[Shard]>,
    live: AtomicUsize,
}

impl Table {
    fn new() -> Self {
        Table {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            live: AtomicUsize::new(0),
        }
    }

    fn shard(&self, id: u64) -> MutexGuard<'_, HashMap<u64, Arc<Shared>>> {
        // Ids are random: their top bits choose the shard.
        self.shards[(id >> 58) as usize % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn insert(&self, id: u64, shared: Arc<Shared>) {
        if self.shard(id).insert(id, shared).is_none() {
            self.live.fetch_add(1, Relaxed);
        }
    }

    pub(super) fn remove(&self, id: u64) {
        if self.shard(id).remove(&id).is_some() {
            self.live.fetch_sub(1, Relaxed);
        }
    }

    pub(super) fn get(&self, id: u64) -> Option<Arc<Shared>> {
        if self.live.load(Relaxed) == 0 {
            return None;
        }
        self.shard(id).get(&id).cloned()
    }
}

pub(super) fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(Table::new)
}

/// The bridged span of a context's active span, if it is one of this bridge's.
pub(super) fn bridged(cx: &Context) -> Option<Arc<Shared>> {
    if !cx.has_active_span() {
        return None;
    }
    let sc = cx.span().span_context().clone();
    if sc.is_remote() || !sc.is_valid() {
        return None;
    }
    table().get(u64::from_be_bytes(sc.span_id().to_bytes()))
}

/// Whether this bridge's observer is the one OpenTelemetry calls (another may have been set
/// first: there is one per process).
static OBSERVING: AtomicBool = AtomicBool::new(false);

pub(super) fn observing() -> bool {
    OBSERVING.load(Relaxed)
}

/// Installs the observer, once; then checks that OpenTelemetry calls it.
pub(super) fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        GlobalContextObserver::set(Arc::new(Observer));
        drop(Context::new().attach());
    });
}

struct Observer;

/// A context whose active span is bridged: the span, found once when the context is made.
struct View(Arc<Shared>);

impl ObserverContextView for View {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn view(cx: &Context) -> Option<&View> {
    cx.observer_view()
        .as_ref()
        .and_then(|v| v.as_any().downcast_ref::<View>())
}

/// Tells contexts apart while they are attached (0: a context without a bridged span).
fn view_id(cx: &Context) -> usize {
    view(cx).map_or(0, |v| v as *const View as usize)
}

/// A context attached: the id of the one it replaced, and the bridged span's entry on apm's
/// stack (with its token) when it pushed one.
type Attached = (usize, Option<(Arc<Shared>, u64)>);

thread_local! {
    /// One entry per context attached on this thread since the first with a bridged span.
    static ATTACHED: RefCell<Vec<Attached>> = const { RefCell::new(Vec::new()) };
}

// OpenTelemetry calls these while its own thread-local context is borrowed: nothing here
// touches `Context`'s current-context functions.
impl ContextObserver for Observer {
    fn on_context_enter(&self, from: &Context, to: &Context) {
        OBSERVING.store(true, Relaxed);
        let to_view = view(to);
        let _ = ATTACHED.try_with(|a| {
            let Ok(mut a) = a.try_borrow_mut() else {
                return;
            };
            match to_view {
                Some(v) => {
                    // The same span in another context (a value added): already current.
                    let same = view(from).is_some_and(|f| Arc::ptr_eq(&f.0, &v.0));
                    let entry = if same { None } else { v.0.enter() };
                    a.push((view_id(from), entry.map(|t| (Arc::clone(&v.0), t))));
                }
                // Nothing bridged attached below: nothing to leave later.
                None if a.is_empty() => {}
                None => a.push((view_id(from), None)),
            }
        });
    }

    fn on_context_exit(&self, _from: &Context, to: &Context) {
        let to_id = view_id(to);
        let _ = ATTACHED.try_with(|a| {
            let Ok(mut a) = a.try_borrow_mut() else {
                return;
            };
            // Guards dropped out of order were detached silently: leave every context
            // attached since `to` was current.
            while let Some((from_id, entry)) = a.pop() {
                if let Some((shared, token)) = entry {
                    shared.exit(token);
                }
                if from_id == to_id {
                    break;
                }
            }
        });
    }

    fn make_view(&self, cx: &Context) -> Option<Arc<dyn ObserverContextView>> {
        let shared = bridged(cx)?;
        Some(Arc::new(View(shared)))
    }
}
