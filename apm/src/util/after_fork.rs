//! In the child of a `fork`: only the forking thread came along, so a lock that another
//! thread of the parent held at that moment will never be released. The state it guarded is
//! left behind (leaked, never read: it may have been half changed) and the lock is made anew.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use parking_lot::lock_api::RawMutex as _;
use parking_lot::{Mutex, RawMutex};

/// How many forks led to this process (0 in one that was not forked by a process running the
/// agent): the spin locks (`util/spin_lock.rs`) tell by it a holder that did not come along.
static GENERATION: AtomicU32 = AtomicU32::new(0);

/// This process's fork generation (see [`GENERATION`]).
#[inline]
pub(crate) fn generation() -> u32 {
    GENERATION.load(Relaxed)
}

/// In the child of a fork (its handler, first): a new generation.
pub(crate) fn next_generation() {
    GENERATION.fetch_add(1, Relaxed);
}

/// Puts `fresh` in `m`, unlocked, without reading or dropping what it held and without
/// waking anyone (its holder and waiters were threads of the parent).
///
/// # Safety
/// Only in the child of a fork, from its `pthread_atfork` handler: one thread, and no guard of
/// `m` alive on it.
// The lock word is an `AtomicU8`: written through a shared reference like any atomic, and
// `force_unlock` would wake the parent's waiters through parking_lot's table, whose bucket
// locks a thread of the parent may hold too.
#[allow(invalid_reference_casting)]
pub(crate) unsafe fn reset_mutex<T>(m: &Mutex<T>, fresh: T) {
    // SAFETY: the child has no other thread, and the caller holds no guard: nothing else can
    // reach the value or the lock word; both live inside `UnsafeCell`s.
    unsafe {
        std::ptr::write(m.data_ptr(), fresh);
        std::ptr::write((m.raw() as *const RawMutex).cast_mut(), RawMutex::INIT);
    }
}

/// Held by the agent's threads around what takes a lock outside the agent's reach (the
/// loader's, while listing the loaded modules; `backtrace`'s, while resolving symbols), and by
/// the forking thread around the fork (`agent/fork.rs`): so no thread of the agent holds one of
/// those at the fork, and the child can take them. A fork waits at most for one such section.
static GATE: Mutex<()> = Mutex::new(());

/// Runs `f` with no fork under way.
pub(crate) fn outside_fork<R>(f: impl FnOnce() -> R) -> R {
    let _gate = GATE.lock();
    f()
}

/// Before a fork (the prepare handler): waits for the sections of [`outside_fork`] under way.
pub(crate) fn close_gate() {
    std::mem::forget(GATE.lock());
}

/// After a fork, in the parent: the sections may run again.
pub(crate) fn open_gate() {
    // SAFETY: locked by `close_gate` on this thread, and its guard forgotten.
    unsafe { GATE.force_unlock() };
}

/// After a fork, in the child (its handler): the gate anew.
///
/// # Safety
/// As [`reset_mutex`].
pub(crate) unsafe fn reset_gate() {
    // SAFETY: as the caller's.
    unsafe { reset_mutex(&GATE, ()) };
}
