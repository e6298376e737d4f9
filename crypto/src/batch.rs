//! Decoded key cache and batch verification that agrees exactly with `verify_strict`.
//!
//! # One acceptance rule
//! ed25519-dalek's `verify_batch` checks `sum z_i (R_i + h_i A_i - s_i B) = 0` with random
//! 128-bit `z_i`. That differs from `verify_strict` in three corners an attacker who holds a
//! key can reach: a non-canonical encoding of `R`, a small-order `R`, and an `R` (or key) with
//! a torsion component, whose residual `z_i T` can vanish for a ground `z_i`. Two honest nodes,
//! one batching and one not, would then disagree on a vote.
//!
//! So an envelope enters a batch only when its origin key and its `R` are canonical,
//! torsion-free and not of small order, and its `s` is canonical. Then every residual lies in
//! the prime-order subgroup, and the batch equation holds with a non-zero residual with
//! probability at most 2^-128: batch and single verification accept the same set. Anything
//! else goes to `verify_strict` alone, as does every member of a batch that fails (to name
//! the bad ones). The key's torsion check is cached with the key; the `R` check is paid per
//! signature.
//!
//! # Cost, and why the node does not batch by default
//! Measured on the 2-core development machine (`cargo bench -p byzgossip-crypto`): raw
//! `verify_strict` about 36-42 us, the torsion check of one `R` about 30 us, decompressing
//! `R` about 4 us, and dalek's batch about 17-21 us per signature. Exactness therefore makes a
//! batch cost about 55 us per signature, more than single verification. No single linear
//! check can replace the per-`R` test: torsion lives in a group of order 8, so one combined
//! equation can always be cancelled by two crafted signatures. Batching only pays under a
//! cofactored acceptance rule (as in ZIP 215), which would be a wire-level change of the
//! acceptance rule that DESIGN.md fixes to `verify_strict`; see docs/ARCHITECTURE.md.

use crate::digest::NetworkId;
use crate::envelope::{Envelope, VerifiedEnvelope};
use crate::error::{KeyError, VerifyError};
use crate::keys::PublicKey;
use curve25519_dalek::Scalar;
use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::VerifyingKey;
use std::collections::{HashMap, VecDeque};

/// A decompressed public key with the checks batch verification needs.
#[derive(Clone, Copy, Debug)]
pub struct ParsedKey {
    /// The decompressed key (not of small order).
    pub verifying: VerifyingKey,
    /// Whether the key has no torsion component (true for every honestly made key).
    pub torsion_free: bool,
}

impl ParsedKey {
    /// Decompresses and checks a key (about 5 us plus the torsion check).
    pub fn parse(key: &PublicKey) -> Result<ParsedKey, KeyError> {
        let verifying = key.to_verifying_key()?;
        let torsion_free = is_canonical_point_encoding(key.as_bytes())
            && CompressedEdwardsY(*key.as_bytes()).decompress().is_some_and(|p| p.is_torsion_free());
        Ok(ParsedKey { verifying, torsion_free })
    }
}

/// A bounded cache of decompressed keys. Pinned keys (the committee) are never evicted; other
/// keys (open gossip) are kept up to `capacity`, oldest out first. Bad keys are cached too, so
/// a peer repeating one costs a lookup, not a decompression.
#[derive(Debug)]
pub struct KeyCache {
    pinned: HashMap<PublicKey, ParsedKey>,
    recent: HashMap<PublicKey, Result<ParsedKey, KeyError>>,
    order: VecDeque<PublicKey>,
    capacity: usize,
}

impl KeyCache {
    /// An empty cache holding at most `capacity` unpinned keys.
    pub fn new(capacity: usize) -> Self {
        Self { pinned: HashMap::new(), recent: HashMap::new(), order: VecDeque::new(), capacity }
    }

    /// Keeps `key` for good (committee members).
    pub fn pin(&mut self, key: PublicKey, parsed: ParsedKey) {
        self.pinned.insert(key, parsed);
    }

    /// The parsed key, from the cache or freshly parsed.
    pub fn get(&mut self, key: &PublicKey) -> Result<ParsedKey, KeyError> {
        if let Some(parsed) = self.pinned.get(key) {
            return Ok(*parsed);
        }
        if let Some(result) = self.recent.get(key) {
            return *result;
        }
        let result = ParsedKey::parse(key);
        if self.capacity > 0 {
            if self.order.len() >= self.capacity
                && let Some(oldest) = self.order.pop_front()
            {
                self.recent.remove(&oldest);
            }
            self.recent.insert(*key, result);
            self.order.push_back(*key);
        }
        result
    }

    /// Number of unpinned keys held (never above the capacity).
    pub fn len(&self) -> usize {
        self.recent.len()
    }

    /// True when no unpinned key is held.
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }
}

/// Verifies many envelopes for `network`, returning one result per input, in order. Accepts
/// exactly what [`Envelope::verify`] accepts (module docs).
pub fn verify_batch(
    envelopes: Vec<Envelope>,
    network: &NetworkId,
    keys: &mut KeyCache,
) -> Vec<Result<VerifiedEnvelope, VerifyError>> {
    let mut results: Vec<Option<Result<VerifiedEnvelope, VerifyError>>> = Vec::with_capacity(envelopes.len());
    let mut batch: Vec<(usize, Envelope, VerifyingKey)> = Vec::new();
    for (i, envelope) in envelopes.into_iter().enumerate() {
        if let Err(e) = envelope.check_network(network) {
            results.push(Some(Err(e)));
            continue;
        }
        let parsed = match keys.get(&envelope.origin()) {
            Ok(parsed) => parsed,
            Err(e) => {
                results.push(Some(Err(VerifyError::BadOrigin(e))));
                continue;
            }
        };
        if parsed.torsion_free && signature_is_batchable(envelope.signature().as_bytes()) {
            results.push(None);
            batch.push((i, envelope, parsed.verifying));
        } else {
            results.push(Some(envelope.verify_with_key(network, &parsed.verifying)));
        }
    }

    if !batch.is_empty() {
        let messages: Vec<[u8; crate::envelope::SIGNING_LEN]> =
            batch.iter().map(|(_, e, _)| e.header().signing_bytes()).collect();
        let message_refs: Vec<&[u8]> = messages.iter().map(|m| m.as_slice()).collect();
        let signatures: Vec<ed25519_dalek::Signature> =
            batch.iter().map(|(_, e, _)| ed25519_dalek::Signature::from_bytes(e.signature().as_bytes())).collect();
        let verifying: Vec<VerifyingKey> = batch.iter().map(|(_, _, k)| *k).collect();
        let all_valid = ed25519_dalek::verify_batch(&message_refs, &signatures, &verifying).is_ok();
        for (i, envelope, key) in batch {
            results[i] = Some(if all_valid {
                Ok(VerifiedEnvelope::assume_valid(envelope))
            } else {
                envelope.verify_with_key(network, &key)
            });
        }
    }
    results.into_iter().map(|r| r.unwrap_or(Err(VerifyError::BadSignature))).collect()
}

/// `R` canonical, a point, not small order, torsion-free; `s` canonical.
fn signature_is_batchable(signature: &[u8; 64]) -> bool {
    let r: [u8; 32] = signature[..32].try_into().expect("32 of 64");
    let s: [u8; 32] = signature[32..].try_into().expect("32 of 64");
    if !is_canonical_point_encoding(&r) || Option::<Scalar>::from(Scalar::from_canonical_bytes(s)).is_none() {
        return false;
    }
    match CompressedEdwardsY(r).decompress() {
        Some(point) => !point.is_small_order() && point.is_torsion_free(),
        None => false,
    }
}

/// Whether the encoded y coordinate (sign bit masked) is below p = 2^255 - 19. Larger values
/// decompress, but `verify_strict` compares re-encoded points and refuses them. (The other
/// non-canonical form, a set sign bit with x = 0, only exists for small-order points, which
/// are refused separately.)
fn is_canonical_point_encoding(bytes: &[u8; 32]) -> bool {
    // y >= p exactly when the low 255 bits are 2^255 - 19 ..= 2^255 - 1: the top byte (sign
    // masked) is 0x7f, bytes 1..=30 are 0xff and byte 0 is at least 0xed.
    let top_all_ones = bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|b| *b == 0xff);
    !(top_all_ones && bytes[0] >= 0xed)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_cache_is_bounded_and_keeps_pinned_keys() {
        let mut cache = KeyCache::new(3);
        let pinned = crate::Keypair::from_secret_bytes(&[200; 32]).public();
        cache.pin(pinned, ParsedKey::parse(&pinned).expect("valid"));
        for seed in 0..10u8 {
            let key = crate::Keypair::from_secret_bytes(&[seed; 32]).public();
            assert!(cache.get(&key).is_ok());
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&pinned).is_ok());
        assert_eq!(cache.len(), 3, "pinned keys do not use the bounded part");
    }
}
