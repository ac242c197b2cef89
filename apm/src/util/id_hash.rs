//! Hash maps keyed by ids the agent draws at random (span, transaction and trace ids) or by
//! addresses: the key is unique and well spread already, so one multiplication hashes it.
//! SipHash, the standard maps' default, cost a tenth of the transport thread's time on such
//! keys. Not for keys an outsider chooses.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes one integer with one multiplication (Fibonacci hashing), spreading any key's bits
/// to the high bits the table's control bytes use and keeping the low bits distinct.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not reached by integer keys; kept correct for any other.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn sequential_ids_spread_over_the_high_bits() {
        let top7 = |n: u64| {
            let mut h = IdHasher::default();
            h.write_u64(n);
            h.finish() >> 57
        };
        let distinct: HashSet<u64> = (0..128).map(top7).collect();
        assert!(distinct.len() > 64, "{}", distinct.len());
    }
}
