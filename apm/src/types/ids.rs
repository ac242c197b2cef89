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

/// Lower-case hex of the low `N * 4` bits of `v`, most significant digit first (`N` a multiple
/// of 8): eight digits at a time, all the nibbles of a word at once (three ids a span, 80
/// digits: a table lookup per digit was a visible part of writing a span).
#[inline]
pub(crate) fn hex<const N: usize>(v: u128) -> [u8; N] {
    const { assert!(N.is_multiple_of(8) && N <= 32) };
    let mut out = [0u8; N];
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        let shift = (N - 8 * (i + 1)) * 4;
        chunk.copy_from_slice(&hex8((v >> shift) as u32));
    }
    out
}

/// The 8 hex digits of `v`, computed in one 64-bit word.
#[inline]
fn hex8(v: u32) -> [u8; 8] {
    // One nibble per byte, the least significant nibble in the lowest byte.
    let mut x = u64::from(v);
    x = ((x & 0xffff_0000) << 16) | (x & 0xffff);
    x = ((x & 0x0000_ff00_0000_ff00) << 8) | (x & 0x0000_00ff_0000_00ff);
    x = ((x & 0x00f0_00f0_00f0_00f0) << 4) | (x & 0x000f_000f_000f_000f);
    // 1 in the bytes whose nibble is 10 or more; those become letters.
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    let ascii = x + 0x3030_3030_3030_3030 + letters * u64::from(b'a' - b'0' - 10);
    // Most significant digit first.
    ascii.swap_bytes().to_le_bytes()
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
