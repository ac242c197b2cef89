//! Per-thread event buffers between the application and the transport thread.
//!
//! Each thread appends finished events to its own buffer, behind a mutex that only that thread
//! and (every few tens of milliseconds) the transport thread ever take, so it is uncontended.
//! A full buffer is handed over whole through a bounded channel with `try_send`; when the
//! channel is full the events are dropped and counted, and the vector is reused: the
//! application never blocks and memory never grows. The transport thread sweeps the buffers
//! of idle threads, and gives emptied vectors back to a small pool so that steady-state
//! recording allocates nothing.

use std::cell::RefCell;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::TrySendError;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::record::Event;
use crate::tracer;
use crate::transport::Message;

/// Events per hand-over: big enough to amortise the channel, small enough to bound memory
/// per thread (about 30 KiB).
pub(crate) const BATCH: usize = 256;
const POOL_MAX: usize = 64;

type Buffer = Arc<Mutex<Vec<Event>>>;

static REGISTRY: Mutex<Vec<Buffer>> = Mutex::new(Vec::new());
static POOL: Mutex<Vec<Vec<Event>>> = Mutex::new(Vec::new());

thread_local! {
    static LOCAL: RefCell<Option<Buffer>> = const { RefCell::new(None) };
}

#[cold]
fn register() -> Buffer {
    let b: Buffer = Arc::new(Mutex::new(Vec::with_capacity(BATCH)));
    REGISTRY.lock().push(Arc::clone(&b));
    b
}

fn fresh_vec() -> Vec<Event> {
    POOL.try_lock()
        .and_then(|mut p| p.pop())
        .unwrap_or_else(|| Vec::with_capacity(BATCH))
}

/// Hands one event to the transport thread (eventually). Never blocks, never panics.
#[inline]
pub(crate) fn push(event: Event) {
    let mut event = Some(event);
    let _ = LOCAL.try_with(|local| {
        let Ok(mut local) = local.try_borrow_mut() else {
            return;
        };
        let buf = local.get_or_insert_with(register);
        let mut events = buf.lock();
        if let Some(e) = event.take() {
            events.push(e);
        }
        if events.len() >= BATCH {
            let full = std::mem::replace(&mut *events, fresh_vec());
            drop(events);
            hand_over(full);
        }
    });
    // Thread-local storage already torn down: send this one event on its own.
    if let Some(e) = event {
        hand_over(vec![e]);
    }
}

/// Hands a batch to the transport thread at once (background threads: metrics).
pub(crate) fn send(batch: Vec<Event>) {
    hand_over(batch);
}

fn hand_over(batch: Vec<Event>) {
    let Some(t) = tracer::get() else {
        return;
    };
    let n = batch.len() as u64;
    match t.queue.try_send(Message::Events(batch)) {
        Ok(()) => {}
        Err(TrySendError::Full(Message::Events(mut batch))) => {
            t.counters.dropped_queue_full.fetch_add(n, Relaxed);
            batch.clear();
            recycle(batch);
        }
        Err(_) => {
            t.counters.dropped_queue_full.fetch_add(n, Relaxed);
        }
    }
}

/// Fills the pool with `n` empty vectors (at start), so that hand-overs find a replacement
/// without allocating as long as the transport keeps up.
pub(crate) fn prefill(n: usize) {
    let mut p = POOL.lock();
    while p.len() < n.min(POOL_MAX) {
        p.push(Vec::with_capacity(BATCH));
    }
}

/// Gives an emptied vector back for reuse.
pub(crate) fn recycle(mut v: Vec<Event>) {
    v.clear();
    if v.capacity() >= BATCH {
        if let Some(mut p) = POOL.try_lock() {
            if p.len() < POOL_MAX {
                p.push(v);
            }
        }
    }
}

/// Takes whatever the threads' buffers hold (transport thread only). Buffers of threads that
/// have exited are emptied and forgotten.
pub(crate) fn sweep(mut sink: impl FnMut(Vec<Event>)) {
    let buffers: Vec<Buffer> = {
        let mut reg = REGISTRY.lock();
        reg.retain(|b| Arc::strong_count(b) > 1 || !b.lock().is_empty());
        reg.clone()
    };
    for b in buffers {
        let taken = {
            let mut events = b.lock();
            if events.is_empty() {
                continue;
            }
            std::mem::replace(&mut *events, fresh_vec())
        };
        sink(taken);
    }
}
