//! A lock for data that two threads hold for a few instructions at a time (a thread's shared
//! staging buffer: the thread itself, and the transport thread's sweep). Taking it is one
//! locked instruction and releasing it a plain store; a mutex releases with another locked
//! instruction, which a thread paid twice per transaction.
//!
//! The lock word says in which fork generation (`util/after_fork.rs`) its holder took it. In
//! the child of a fork, a lock held in an earlier generation was held by a thread of the
//! parent that did not come along and will never release it: the child takes it over, and the
//! value it guarded (perhaps half changed) is left behind, never read or dropped, for a
//! default one. Without that, the child would wait for it forever (a tracing span whose shard
//! another thread of the parent held at the fork).

use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) struct SpinLock<T> {
    /// 0 when free; else the holder's [`holder_mark`].
    locked: AtomicU32,
    value: UnsafeCell<T>,
}

/// What a thread writes into a lock word it takes: odd (never 0), with the fork generation.
#[inline]
fn holder_mark() -> u32 {
    #[cfg(all(feature = "enable", unix))]
    let generation = super::after_fork::generation();
    // No fork handler (the agent compiled out, the `tracing` layer alone): one generation.
    #[cfg(not(all(feature = "enable", unix)))]
    let generation = 0;
    (generation << 1) | 1
}

// SAFETY: the value is only reached through a `SpinGuard`, of which the lock allows one at a
// time.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicU32::new(0),
            value: UnsafeCell::new(value),
        }
    }
}

impl<T: Default> SpinLock<T> {
    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        let mark = holder_mark();
        if self
            .locked
            .compare_exchange_weak(0, mark, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended(mark);
        }
        SpinGuard(self)
    }

    /// The other thread holds it (for a few instructions, unless it was descheduled
    /// meanwhile): spin a little, then give the core away between tries. Held since before a
    /// fork (this is the child): taken over, its value left behind.
    #[cold]
    #[inline(never)]
    fn lock_contended(&self, mark: u32) {
        let mut spins = 0u32;
        loop {
            let held = self.locked.load(Ordering::Relaxed);
            if held == 0 {
                if self
                    .locked
                    .compare_exchange_weak(0, mark, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
            } else if held != mark
                && self
                    .locked
                    .compare_exchange(held, mark, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                // SAFETY: this thread holds the lock now, and its holder before, a thread of
                // the parent, is gone with the fork: nothing else reaches the value. What it
                // held is overwritten without being read or dropped.
                unsafe { std::ptr::write(self.value.get(), T::default()) };
                return;
            }
            if spins < 64 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

impl<T: Default> Default for SpinLock<T> {
    fn default() -> Self {
        SpinLock::new(T::default())
    }
}

impl<T> fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpinLock")
            .field("locked", &self.locked.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The locked value; released on drop.
pub(crate) struct SpinGuard<'a, T>(&'a SpinLock<T>);

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the lock is held by this guard.
        unsafe { &*self.0.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the lock is held by this guard, which is borrowed mutably.
        unsafe { &mut *self.0.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.0.locked.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn two_threads_adding_under_the_lock_lose_nothing() {
        let lock = Arc::new(SpinLock::new(0u64));
        let other = Arc::clone(&lock);
        let t = std::thread::spawn(move || {
            for _ in 0..100_000 {
                *other.lock() += 1;
            }
        });
        for _ in 0..100_000 {
            *lock.lock() += 1;
        }
        assert!(t.join().is_ok());
        assert_eq!(*lock.lock(), 200_000);
    }
}
