//! Values written where they stay. `Vec::push` takes a value built aside (before its capacity
//! check, which may reallocate) and copies it to the end of the vector; the compiler builds
//! such a value with stores of mixed sizes and offsets, and the copy's wider loads that need
//! several of them wait for them to reach the cache (a stalled store forwarding) on every push.

/// Pushes the value `make` builds, built in the vector's spare room.
#[inline(always)]
pub(crate) fn push<T>(v: &mut Vec<T>, make: impl FnOnce() -> T) {
    v.reserve(1);
    if let Some(slot) = v.spare_capacity_mut().first_mut() {
        slot.write(make());
        // SAFETY: the slot at `len` is within the capacity and was just initialised.
        unsafe { v.set_len(v.len() + 1) };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pushes_at_the_end_whatever_the_room() {
        let mut v = Vec::new();
        for i in 0..100 {
            super::push(&mut v, || (i, i.to_string()));
        }
        assert_eq!(v.len(), 100);
        assert!(v
            .iter()
            .enumerate()
            .all(|(i, (n, s))| *n == i && *s == i.to_string()));
    }
}
