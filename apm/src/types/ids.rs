//! Trace, transaction, span and error ids: random, non-zero, from a per-thread generator seeded
//! once from the OS (std's `RandomState` keys), so an id costs a few arithmetic instructions.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

thread_local! {
    static STATE: Cell<u64> = const { Cell::new(0) };
}

#[cfg(test)]
thread_local! {
    static DRAWN: Cell<u64> = const { Cell::new(0) };
}

/// How many 64-bit ids this thread drew (tests of paths that must draw none).
#[cfg(test)]
pub(crate) fn drawn() -> u64 {
    DRAWN.with(Cell::get)
}

/// A fresh seed. The process id and the time go in too: std's per-thread keys are copied
/// into a forked child, so two children of one thread (or a child and its parent) would
/// otherwise draw the same seed.
#[cold]
fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_usize(&h as *const _ as usize);
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish() | 1
}

/// In a forked child (its `pthread_atfork` handler, on the forking thread): this thread's
/// generator is the parent's copy, which would draw the parent's next ids; it is seeded
/// afresh at its next id (other threads did not come along: they start unseeded).
#[cfg(unix)]
pub(crate) fn after_fork_in_child() {
    let _ = STATE.try_with(|c| c.set(0));
}

/// wyrand: small, fast, statistically good; ids need uniqueness, not secrecy.
#[inline]
fn step(state: u64) -> (u64, u64) {
    let s = state.wrapping_add(0xa076_1d64_78bd_642f);
    let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
    (s, ((t >> 64) as u64) ^ (t as u64))
}

/// A random non-zero 64-bit id (span and transaction ids).
#[inline]
pub(crate) fn next_u64() -> u64 {
    #[cfg(test)]
    DRAWN.with(|d| d.set(d.get() + 1));
    let v = STATE
        .try_with(|c| {
            let mut s = c.get();
            if s == 0 {
                s = seed();
            }
            let (s, v) = step(s);
            c.set(s);
            v
        })
        // During thread teardown: still unique enough, just slower.
        .unwrap_or_else(|_| step(seed()).1);
    if v == 0 {
        1
    } else {
        v
    }
}

/// A random non-zero 128-bit id (trace and error ids).
#[inline]
pub(crate) fn next_u128() -> u128 {
    (u128::from(next_u64()) << 64) | u128::from(next_u64())
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of the low `N/2` bytes of `v`, most significant first.
#[inline]
pub(crate) fn hex<const N: usize>(mut v: u128) -> [u8; N] {
    let mut out = [b'0'; N];
    for slot in out.iter_mut().rev() {
        *slot = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
    out
}

/// Hex text of a 64-bit id (16 digits).
pub(crate) fn hex64(v: u64) -> String {
    String::from_utf8_lossy(&hex::<16>(u128::from(v))).into_owned()
}

/// Hex text of a 128-bit id (32 digits).
pub(crate) fn hex128(v: u128) -> String {
    String::from_utf8_lossy(&hex::<32>(v)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_nonzero_and_distinct() {
        let ids: HashSet<u64> = (0..100_000).map(|_| next_u64()).collect();
        assert_eq!(ids.len(), 100_000);
        assert!(!ids.contains(&0));
    }

    #[test]
    fn threads_get_different_sequences() {
        let a = std::thread::spawn(next_u64).join().unwrap_or(0);
        let b = std::thread::spawn(next_u64).join().unwrap_or(0);
        assert_ne!(a, b);
    }

    #[test]
    fn hex_is_lower_case_and_fixed_width() {
        assert_eq!(hex64(0xab), "00000000000000ab");
        assert_eq!(hex128(u128::MAX), "f".repeat(32));
        assert_eq!(
            hex128(0x0123_4567_89ab_cdef),
            "00000000000000000123456789abcdef"
        );
    }
}
