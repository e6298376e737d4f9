//! A seeded, deterministic hasher for 32-byte keys (message ids and public keys).
//!
//! std's `RandomState` seeds itself from the OS, which would make iteration order (and so
//! eviction ties) differ between runs; a pure crate takes its randomness as an argument. Keys
//! here are 32-byte values that cost an attacker a key or a signature each, so a keyed
//! SplitMix64 mix of the bytes is enough: without the seed, an attacker cannot aim keys at one
//! probe sequence. The node should pass a random `hash_seed`.

use std::hash::{BuildHasher, Hasher};

/// Builds [`SeededHasher`]s with one seed.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SeededState {
    seed: u64,
}

impl SeededState {
    pub(crate) fn new(seed: u64) -> Self {
        Self { seed }
    }
}

impl BuildHasher for SeededState {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher { state: mix(self.seed ^ 0x9e37_79b9_7f4a_7c15) }
    }
}

/// Folds 8-byte words through the SplitMix64 finaliser.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeededHasher {
    state: u64,
}

impl Hasher for SeededHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.state = mix(self.state ^ u64::from_le_bytes(word));
        }
    }

    fn write_usize(&mut self, _length_prefix: usize) {
        // Only fixed 32-byte keys are hashed; their length prefix carries no information.
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

/// SplitMix64's output function: a bijection with good avalanche.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A `HashMap` with the seeded hasher.
pub(crate) type SeededMap<K, V> = std::collections::HashMap<K, V, SeededState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_hash_other_seed_other_hash() {
        let a = SeededState::new(1).hash_one([7u8; 32]);
        assert_eq!(a, SeededState::new(1).hash_one([7u8; 32]));
        assert_ne!(a, SeededState::new(2).hash_one([7u8; 32]));
        assert_ne!(a, SeededState::new(1).hash_one([8u8; 32]));
    }
}
