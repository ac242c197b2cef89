//! The layer's state of its bridged spans, by tracing span id.

use std::collections::hash_map::Entry;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};

use tracing_core::span::Id;

use crate::util::id_hash::IdMap;
use crate::util::spin_lock::{SpinGuard, SpinLock};

/// Values by tracing span id, in shards locked one span at a time: a span's callbacks hold
/// its shard for a few instructions. No lock is shared by all spans, nothing is boxed per
/// span, and a shard's memory is reused.
///
/// A shard keeps its values in slots, and its map holds slot numbers: a new span's state is
/// moved once into the slot freed last (still in cache), never moved within the map, and a
/// closing span is ended where it lies ([`Table::remove_in_place`]). A map of the values
/// themselves moved each state (about 200 bytes) into a bucket at a hashed place, and out of
/// it again at the close.
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

    /// Stores the value `f` writes into an empty slot for `id` (none, when `f` leaves it
    /// empty), the shard locked meanwhile: a value built in place rather than moved in.
    /// The value it replaces, if any, goes to `replaced` (untouched otherwise: a value
    /// returned would be copied even when empty).
    #[inline]
    pub(super) fn insert_in_place(
        &self,
        id: &Id,
        f: impl FnOnce(&mut Option<V>),
        replaced: &mut Option<V>,
    ) {
        self.shard(id)
            .lock()
            .insert_in_place(id.into_u64(), f, replaced);
    }

    /// Removes the value of `id` after `f` has seen its slot, where `f` may end it in place or
    /// take it out; what `f` leaves in the slot is dropped there.
    #[inline]
    pub(super) fn remove_in_place<R>(
        &self,
        id: &Id,
        f: impl FnOnce(&mut Option<V>) -> R,
    ) -> Option<R> {
        if self.surely_absent(id) {
            return None;
        }
        self.shard(id).lock().remove_in_place(id.into_u64(), f)
    }

    /// Runs `f` on the value of `id`, its shard locked.
    #[inline]
    pub(super) fn with<R>(&self, id: &Id, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        if self.surely_absent(id) {
            return None;
        }
        // The values are seen, not added or removed: the count needs no rewrite.
        self.shard(id).values.lock().get_mut(id.into_u64()).map(f)
    }
}

/// A shard's values: slot numbers by id, the slots, and the slots free for reuse.
struct Slots<V> {
    index: IdMap<u64, u32>,
    slots: Vec<Option<V>>,
    /// Freed slots, the last freed on top: the next value goes where the last one was.
    free: Vec<u32>,
}

impl<V> Default for Slots<V> {
    fn default() -> Self {
        Slots {
            index: IdMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<V> Slots<V> {
    #[inline]
    fn insert(&mut self, id: u64, value: V) -> Option<V> {
        if let Some(&i) = self.index.get(&id) {
            return self.slots[i as usize].replace(value);
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(value);
                i
            }
            None => {
                // More than u32::MAX live spans in one shard cannot be: each holds memory.
                let i = self.slots.len() as u32;
                self.slots.push(Some(value));
                i
            }
        };
        self.index.insert(id, i);
        None
    }

    #[inline]
    fn insert_in_place(
        &mut self,
        id: u64,
        f: impl FnOnce(&mut Option<V>),
        replaced: &mut Option<V>,
    ) {
        let Slots { index, slots, free } = self;
        // One probe of the map, whether the id is new (nearly always) or reused.
        match index.entry(id) {
            Entry::Occupied(at) => {
                let i = *at.get();
                let slot = &mut slots[i as usize];
                *replaced = slot.take();
                f(slot);
                if slot.is_none() {
                    at.remove();
                    free.push(i);
                }
            }
            Entry::Vacant(at) => {
                let i = match free.pop() {
                    Some(i) => i,
                    None => {
                        // More than u32::MAX live spans in one shard cannot be: each holds
                        // memory.
                        slots.push(None);
                        (slots.len() - 1) as u32
                    }
                };
                let slot = &mut slots[i as usize];
                f(slot);
                if slot.is_some() {
                    at.insert(i);
                } else {
                    free.push(i);
                }
            }
        }
    }

    #[inline]
    fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        let i = *self.index.get(&id)?;
        self.slots[i as usize].as_mut()
    }

    #[inline]
    fn remove_in_place<R>(&mut self, id: u64, f: impl FnOnce(&mut Option<V>) -> R) -> Option<R> {
        let i = self.index.remove(&id)?;
        let slot = &mut self.slots[i as usize];
        let r = f(slot);
        *slot = None;
        self.free.push(i);
        Some(r)
    }

    fn len(&self) -> usize {
        self.index.len()
    }
}

/// A part of the table, behind a spin lock (`util/spin_lock.rs`): a span's callbacks hold it
/// for a few instructions, and its release is a plain store (a mutex releases with an atomic
/// exchange: one more locked instruction in each of a span's three callbacks, on the
/// application's thread).
struct Shard<V> {
    values: SpinLock<Slots<V>>,
    /// How many values it holds, written under the lock and read without it: while it holds
    /// none, the callbacks of its ids look nothing up (and no count shared by all shards is
    /// changed by every span).
    live: AtomicUsize,
}

impl<V> Default for Shard<V> {
    fn default() -> Self {
        Shard {
            values: SpinLock::new(Slots::default()),
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
    values: SpinGuard<'a, Slots<V>>,
    live: &'a AtomicUsize,
}

impl<V> Deref for Locked<'_, V> {
    type Target = Slots<V>;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn slots_of<V>(t: &Table<V>, id: &Id) -> usize {
        t.shard(id).values.lock().slots.len()
    }

    #[test]
    fn values_are_written_in_place_replaced_and_removed_where_they_lie() {
        let t: Table<Arc<u32>> = Table::new();
        let a = Id::from_u64(1);
        let first = Arc::new(10);
        let mut replaced = None;
        t.insert_in_place(&a, |s| *s = Some(Arc::clone(&first)), &mut replaced);
        assert!(replaced.is_none());
        assert_eq!(t.with(&a, |v| **v), Some(10));
        // The id again without a close: the old value is handed back.
        t.insert_in_place(&a, |s| *s = Some(Arc::new(11)), &mut replaced);
        assert!(replaced.is_some_and(|v| Arc::ptr_eq(&v, &first)));
        // What the removal leaves in the slot is dropped there.
        let second = t.with(&a, |v| Arc::clone(v)).unwrap();
        assert_eq!(Arc::strong_count(&second), 2);
        assert_eq!(t.remove_in_place(&a, |s| s.is_some()), Some(true));
        assert_eq!(Arc::strong_count(&second), 1);
        assert!(t.surely_absent(&a));
        assert!(t.remove_in_place(&a, |_| ()).is_none());
    }

    #[test]
    fn a_freed_slot_is_reused_and_an_empty_write_stores_nothing() {
        let t: Table<u32> = Table::new();
        let a = Id::from_u64(7);
        for i in 0..100 {
            let mut replaced = None;
            t.insert_in_place(&a, |s| *s = Some(i), &mut replaced);
            assert_eq!(replaced, None);
            assert_eq!(t.remove_in_place(&a, |s| s.take()), Some(Some(i)));
        }
        assert_eq!(slots_of(&t, &a), 1);
        t.insert_in_place(&a, |_| {}, &mut None);
        assert!(t.surely_absent(&a));
        assert_eq!(t.with(&a, |v| *v), None);
        assert!(t.insert(&a, 5).is_none());
        assert_eq!(t.insert(&a, 6), Some(5));
        assert_eq!(slots_of(&t, &a), 1);
    }
}
