//! The layer's state of its bridged spans, by tracing span id.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};

use tracing_core::span::Id;

use crate::util::id_hash::IdMap;
use crate::util::spin_lock::{SpinGuard, SpinLock};

/// Values by tracing span id, in shards locked one span at a time: a span's callbacks hold
/// its shard for a few instructions. No lock is shared by all spans, nothing is boxed per
/// span, and a shard's memory is reused.
#[derive(Debug)]
pub(super) struct Table<V> {
    shards: Box<[Shard<V>]>,
}

const SHARDS: usize = 64;

impl<V> Table<V> {
    pub(super) fn new() -> Self {
        Table {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }

    #[inline]
    fn shard(&self, id: &Id) -> &Shard<V> {
        // The registry reuses a closed span's slot under a new generation (high bits): by
        // the low bits, the slot's next span finds the shard, and its lines, still in cache.
        let i = (u64::from(id.into_u64() as u32).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
            as usize
            % SHARDS;
        &self.shards[i]
    }

    /// Whether `id` surely has no value: its shard holds none (no lock taken).
    #[inline]
    pub(super) fn surely_absent(&self, id: &Id) -> bool {
        self.shard(id).live.load(Ordering::Relaxed) == 0
    }

    /// Stores the value of `id`; returns the one it replaces.
    #[inline]
    pub(super) fn insert(&self, id: &Id, value: V) -> Option<V> {
        self.shard(id).lock().insert(id.into_u64(), value)
    }

    #[inline]
    pub(super) fn remove(&self, id: &Id) -> Option<V> {
        if self.surely_absent(id) {
            return None;
        }
        self.shard(id).lock().remove(&id.into_u64())
    }

    /// Runs `f` on the value of `id`, its shard locked.
    #[inline]
    pub(super) fn with<R>(&self, id: &Id, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        if self.surely_absent(id) {
            return None;
        }
        self.shard(id).lock().get_mut(&id.into_u64()).map(f)
    }
}

/// A part of the table, behind a spin lock (`util/spin_lock.rs`): a span's callbacks hold it
/// for a few instructions, and its release is a plain store (a mutex releases with an atomic
/// exchange: one more locked instruction in each of a span's three callbacks, on the
/// application's thread).
struct Shard<V> {
    values: SpinLock<IdMap<u64, V>>,
    /// How many values it holds, written under the lock and read without it: while it holds
    /// none, the callbacks of its ids look nothing up (and no count shared by all shards is
    /// changed by every span).
    live: AtomicUsize,
}

impl<V> Default for Shard<V> {
    fn default() -> Self {
        Shard {
            values: SpinLock::new(IdMap::default()),
            live: AtomicUsize::new(0),
        }
    }
}

impl<V> std::fmt::Debug for Shard<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<V> Shard<V> {
    #[inline]
    fn lock(&self) -> Locked<'_, V> {
        Locked {
            values: self.values.lock(),
            live: &self.live,
        }
    }
}

/// A locked shard; released on drop, its count of values kept first.
struct Locked<'a, V> {
    values: SpinGuard<'a, IdMap<u64, V>>,
    live: &'a AtomicUsize,
}

impl<V> Deref for Locked<'_, V> {
    type Target = IdMap<u64, V>;
    #[inline]
    fn deref(&self) -> &Self::Target {
        &self.values
    }
}

impl<V> DerefMut for Locked<'_, V> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.values
    }
}

impl<V> Drop for Locked<'_, V> {
    #[inline]
    fn drop(&mut self) {
        // Before the guard's own drop releases the lock.
        self.live.store(self.values.len(), Ordering::Relaxed);
    }
}
