//! Hash maps keyed by `u64`s that are already well distributed or dense:
//! series refs (assigned 1, 2, 3, ...) and xxh3 labels hashes. SipHash, the
//! std default, costs more than the rest of a head lookup; a single
//! multiply (FxHash's) is enough for these keys. Not for attacker-chosen keys
//! other than labels hashes, which are xxh3 outputs already.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash's multiplier (an odd constant with well-mixed bits).
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// A multiply-rotate hasher for `u64` keys.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct U64Hasher(u64);

impl Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(SEED);
    }
}

/// A `HashMap` keyed by series refs or labels hashes.
pub(crate) type U64Map<V> = HashMap<u64, V, BuildHasherDefault<U64Hasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_keys_spread_and_map_works() {
        let mut m: U64Map<u64> = U64Map::default();
        for r in 1..=10_000u64 {
            m.insert(r, r * 2);
        }
        assert_eq!((m.len(), m.get(&777), m.get(&0)), (10_000, Some(&1554), None));
        let h = |n: u64| {
            let mut s = U64Hasher::default();
            s.write_u64(n);
            s.finish()
        };
        assert_ne!(h(1) >> 57, h(2) >> 57, "top bits (hashbrown's tag) differ for neighbours");
    }
}
