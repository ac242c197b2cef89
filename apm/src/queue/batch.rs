//! The vectors events travel in, and the pool they return to: a thread that hands a full
//! vector over takes an empty one from the pool, and the transport thread gives every vector
//! it emptied back, so that recording allocates nothing in the steady state.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use parking_lot::Mutex;

use crate::types::record::Event;

/// Events per hand-over: big enough to amortise the channel, small enough to bound memory
/// per thread (about 30 KiB).
pub(crate) const BATCH: usize = 256;

/// Empty vectors kept for reuse: one per queue slot and a few (set by [`prefill`]), so that
/// even a queue filled to the brim gives all its vectors back (a fresh vector costs page
/// faults on the application thread).
static POOL_MAX: AtomicUsize = AtomicUsize::new(64);
static POOL: Mutex<Vec<Vec<Event>>> = Mutex::new(Vec::new());

/// An empty vector with room for a batch: from the pool when one is free.
pub(crate) fn fresh() -> Vec<Event> {
    POOL.try_lock()
        .and_then(|mut p| p.pop())
        .unwrap_or_else(|| Vec::with_capacity(BATCH))
}

/// Lets the pool keep `n` vectors and fills it with them (at start), so that hand-overs find
/// a replacement without allocating even while the queue holds many batches the transport
/// thread has not given back yet (the default queue: 264 vectors, 7 MiB of address space, of
/// which only the pages written to become resident).
pub(crate) fn prefill(n: usize) {
    POOL_MAX.store(n.max(64), Relaxed);
    let mut p = POOL.lock();
    while p.len() < n {
        p.push(Vec::with_capacity(BATCH));
    }
}

/// In a forked child (its `pthread_atfork` handler): the pool starts empty, under a lock no
/// thread of the parent holds.
#[cfg(unix)]
pub(crate) fn after_fork_in_child() {
    // SAFETY: called from the child's fork handler only (see `agent/fork.rs`).
    unsafe { crate::util::after_fork::reset_mutex(&POOL, Vec::new()) };
}

/// Holds the pool's lock until `release` says so (tests of a fork while it is held).
#[cfg(test)]
pub(crate) fn hold_pool(held: std::sync::mpsc::Sender<()>, release: std::sync::mpsc::Receiver<()>) {
    let _held = POOL.lock();
    let _ = held.send(());
    let _ = release.recv();
}

/// Gives an emptied vector back for reuse.
pub(crate) fn recycle(mut v: Vec<Event>) {
    v.clear();
    if v.capacity() >= BATCH {
        if let Some(mut p) = POOL.try_lock() {
            if p.len() < POOL_MAX.load(Relaxed) {
                p.push(v);
            }
        }
    }
}
