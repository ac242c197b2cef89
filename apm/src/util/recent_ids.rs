//! A bounded memory of ids seen lately, each with a small value: which transactions were sent,
//! and in which breakdown group. Set-associative: an id can only be in one set, one cache line,
//! so a look-up or an insertion touches one line. A hash map with an eviction queue touched
//! four (its control bytes and its bucket, for the new id and for the oldest one evicted), and
//! on the transport thread, whose caches the request bodies keep sweeping, each was a miss.
//!
//! When its set is full, an insertion forgets the set's oldest id: an id is forgotten after
//! about as many insertions as the memory holds (fewer when its set happens to fill faster). Id 0 is
//! never remembered (the agent's random ids are never 0).

/// Ids of one set: as many as fit in a cache line beside their values.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Set<V: Copy, const WAYS: usize> {
    ids: [u64; WAYS],
    values: [V; WAYS],
}

pub(crate) struct RecentIds<V: Copy + Default, const WAYS: usize> {
    /// Allocated at the first insertion: a memory never used costs nothing.
    sets: Box<[Set<V, WAYS>]>,
    sets_wanted: usize,
}

impl<V: Copy + Default, const WAYS: usize> RecentIds<V, WAYS> {
    /// Room for `ids` ids (rounded up to a power of two sets).
    pub(crate) fn new(ids: usize) -> Self {
        RecentIds {
            sets: Box::new([]),
            sets_wanted: ids.div_ceil(WAYS).next_power_of_two(),
        }
    }

    #[inline]
    fn set_of(&self, id: u64) -> usize {
        // Fibonacci hashing: the high bits of the product depend on all of the id's bits.
        let bits = self.sets.len().trailing_zeros();
        if bits == 0 {
            return 0;
        }
        (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
    }

    pub(crate) fn get(&self, id: u64) -> Option<V> {
        if id == 0 || self.sets.is_empty() {
            return None;
        }
        let set = &self.sets[self.set_of(id)];
        let way = set.ids.iter().position(|&x| x == id)?;
        Some(set.values[way])
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.get(id).is_some()
    }

    /// Asks the processor for `id`'s line ahead of a look-up or an insertion a little later:
    /// the transport thread's caches are swept by the request bodies, and a line fetched only
    /// when it is needed keeps the thread waiting for memory.
    #[inline]
    pub(crate) fn prefetch(&self, id: u64) {
        if id == 0 || self.sets.is_empty() {
            return;
        }
        super::prefetch::line(&self.sets[self.set_of(id)]);
    }

    /// Remembers `id` with `value` (replacing its value if it is known). In a full set, the
    /// id inserted longest ago is forgotten.
    pub(crate) fn insert(&mut self, id: u64, value: V) {
        if id == 0 {
            return;
        }
        if self.sets.is_empty() {
            let empty = Set {
                ids: [0; WAYS],
                values: [V::default(); WAYS],
            };
            self.sets = vec![empty; self.sets_wanted].into_boxed_slice();
        }
        let i = self.set_of(id);
        let set = &mut self.sets[i];
        if let Some(way) = set.ids.iter().position(|&x| x == id) {
            set.values[way] = value;
            return;
        }
        // Newest first: the last way holds the oldest id.
        set.ids.copy_within(..WAYS - 1, 1);
        set.values.copy_within(..WAYS - 1, 1);
        set.ids[0] = id;
        set.values[0] = value;
    }
}

impl<V: Copy + Default, const WAYS: usize> std::fmt::Debug for RecentIds<V, WAYS> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentIds")
            .field("sets", &self.sets.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Set<(), 8>>(), 64);
        assert_eq!(std::mem::size_of::<Set<u64, 4>>(), 64);
    }

    #[test]
    fn ids_are_remembered_with_their_value_and_the_memory_is_bounded() {
        let mut recent = RecentIds::<u64, 4>::new(4096);
        recent.prefetch(7);
        assert!(recent.sets.is_empty(), "a prefetch allocates nothing");
        assert_eq!(recent.get(7), None, "nothing allocated yet");
        recent.insert(7, 70);
        recent.insert(7, 71);
        assert_eq!(recent.get(7), Some(71));
        assert!(!recent.contains(8));
        recent.insert(0, 1);
        assert!(!recent.contains(0), "id 0 is never remembered");
        // The last 500 of 100 000 random ids are all remembered; the memory holds 4 096.
        let ids: Vec<u64> = (1..=100_000u64)
            .map(|i| i.wrapping_mul(0xD6E8_FEB8_6659_FD93) | 1)
            .collect();
        for &id in &ids {
            recent.prefetch(id);
            recent.insert(id, id);
        }
        assert!(ids[ids.len() - 500..]
            .iter()
            .all(|&id| recent.get(id) == Some(id)));
        let kept = ids.iter().filter(|&&id| recent.contains(id)).count();
        assert_eq!(kept, 4096);
        assert_eq!(recent.sets.len(), 1024);
    }
}
