//! Certified delivery for nodes outside the committee (observers).
//!
//! An observer runs no Bracha machine and never votes. It delivers a value only with a
//! delivery certificate (2f+1 READYs from distinct members for the value's digest) that it
//! verified itself, which proves the delivery on its own: at least f+1 of the signers are
//! honest, so every honest member delivers the same value. Certificates reach an observer two
//! ways:
//!
//! - **push**: a member with a peer outside the committee connected publishes each of its
//!   deliveries as a [`Kind::Certified`] envelope (body [`CertifiedBody`]) on the certified
//!   topic, which only observers subscribe to; an observer forwards one only once its
//!   certificate verified, so a listener can sit several observers away from the committee;
//! - **pull**: the observer's sync digest names its per-origin low watermarks, and any peer
//!   (member or observer) serves the certified deliveries above them from its store, as it
//!   does for a lagging member.
//!
//! Deliveries go through the same persistence batch, delivery log and cursor as a member's.
//! [`CertifiedLog`] is the observer's replacement for the Bracha machine's per-origin
//! windows: which instances are delivered, which certificates are being checked, and how far
//! ahead of its low watermark an origin may be delivered.

use byzgossip_bracha::InstanceId;
use byzgossip_crypto::{PublicKey, codec};
use std::collections::{BTreeMap, BTreeSet};

/// An observer holds instances up to this many times the Bracha window above each origin's
/// low watermark (a member's window bounds how far an honest origin runs ahead of the
/// slowest honest member; an observer that missed an instance may lag further, until sync
/// fills the gap).
pub const OBSERVER_WINDOW_FACTOR: u64 = 4;

/// The body of a [`Kind::Certified`](byzgossip_crypto::Kind::Certified) envelope: an encoded
/// [`byzgossip_bracha::Certificate`] and the value it certifies.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertifiedBody {
    /// [`byzgossip_bracha::Certificate::encode`] output.
    #[serde(with = "serde_bytes")]
    pub certificate: Vec<u8>,
    /// The delivered value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

impl CertifiedBody {
    /// Encoded body.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a body of at most `max_len` bytes.
    pub fn decode(bytes: &[u8], max_len: usize) -> Option<CertifiedBody> {
        codec::decode(bytes, max_len).ok()
    }
}

/// Where an instance stands at an observer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Not delivered, within the window, no certificate being checked: check this one.
    Open,
    /// Delivered here (below the low watermark, or above it out of order).
    Delivered,
    /// A certificate for it is being checked.
    Checking,
    /// Beyond the origin's window: sync brings it once the gap below is filled.
    Beyond,
    /// Its origin is not a committee member.
    Unknown,
}

#[derive(Clone, Debug, Default)]
struct OriginLog {
    /// Lowest seq not delivered here.
    low: u64,
    /// Delivered seqs above `low` (at most `window`).
    delivered: BTreeSet<u64>,
    /// Seqs whose certificate is being checked (at most `window`).
    checking: BTreeSet<u64>,
}

/// Per committee member: what this observer delivered and is checking, in a window above
/// the low watermark. Memory is bounded by committee size x window.
#[derive(Clone, Debug)]
pub struct CertifiedLog {
    window: u64,
    origins: BTreeMap<PublicKey, OriginLog>,
}

impl CertifiedLog {
    /// A log for `members`, each starting at `first_seq`, holding `window` seqs above each
    /// low watermark.
    pub fn new(members: &[PublicKey], first_seq: u64, window: u64) -> Self {
        let origins = members.iter().map(|m| (*m, OriginLog { low: first_seq, ..OriginLog::default() })).collect();
        Self { window: window.max(1), origins }
    }

    /// Restores an origin's low watermark (from the store: every seq below was delivered).
    pub fn restore_low(&mut self, origin: &PublicKey, low: u64) {
        if let Some(log) = self.origins.get_mut(origin)
            && low > log.low
        {
            log.low = low;
            log.delivered = log.delivered.split_off(&low);
            log.checking = log.checking.split_off(&low);
            Self::advance(log);
        }
    }

    /// Where `instance` stands.
    pub fn position(&self, instance: &InstanceId) -> Position {
        let Some(log) = self.origins.get(&instance.origin) else { return Position::Unknown };
        if instance.seq < log.low || log.delivered.contains(&instance.seq) {
            Position::Delivered
        } else if log.checking.contains(&instance.seq) {
            Position::Checking
        } else if instance.seq >= log.low.saturating_add(self.window) {
            Position::Beyond
        } else {
            Position::Open
        }
    }

    /// Marks a certificate for an [`Position::Open`] instance as being checked; false (and
    /// nothing marked) in any other position.
    pub fn begin_check(&mut self, instance: &InstanceId) -> bool {
        if self.position(instance) != Position::Open {
            return false;
        }
        self.origins.get_mut(&instance.origin).is_some_and(|log| log.checking.insert(instance.seq))
    }

    /// The check of `instance` ended without a delivery (invalid, or dropped): a later
    /// certificate may be checked.
    pub fn end_check(&mut self, instance: &InstanceId) {
        if let Some(log) = self.origins.get_mut(&instance.origin) {
            log.checking.remove(&instance.seq);
        }
    }

    /// Records a verified delivery; false if it was already delivered or lies outside the
    /// window (then it is not recorded: sync brings it again once the window moved).
    pub fn deliver(&mut self, instance: &InstanceId) -> bool {
        let window = self.window;
        let Some(log) = self.origins.get_mut(&instance.origin) else { return false };
        log.checking.remove(&instance.seq);
        if instance.seq < log.low || instance.seq >= log.low.saturating_add(window) || !log.delivered.insert(instance.seq) {
            return false;
        }
        Self::advance(log);
        true
    }

    fn advance(log: &mut OriginLog) {
        while log.delivered.remove(&log.low) {
            log.checking.remove(&log.low);
            log.low += 1;
        }
    }

    /// The low watermark of `origin`.
    pub fn low_watermark(&self, origin: &PublicKey) -> Option<u64> {
        self.origins.get(origin).map(|log| log.low)
    }

    /// Per origin, the low watermark (for a sync digest), in key order.
    pub fn marks(&self) -> impl Iterator<Item = (PublicKey, u64)> + '_ {
        self.origins.iter().map(|(origin, log)| (*origin, log.low))
    }

    /// Certificates being checked.
    pub fn checking(&self) -> usize {
        self.origins.values().map(|log| log.checking.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzgossip_crypto::Keypair;

    fn key(i: u8) -> PublicKey {
        Keypair::from_secret_bytes(&[i; 32]).public()
    }

    fn at(origin: PublicKey, seq: u64) -> InstanceId {
        InstanceId { origin, seq }
    }

    #[test]
    fn delivers_each_instance_once_in_its_window_and_advances_over_gaps_filled_later() {
        let (a, stranger) = (key(1), key(9));
        let mut log = CertifiedLog::new(&[a, key(2)], 1, 4);
        assert_eq!(log.position(&at(stranger, 1)), Position::Unknown);
        assert_eq!(log.position(&at(a, 5)), Position::Beyond, "window is [1, 5)");
        assert!(log.begin_check(&at(a, 2)));
        assert!(!log.begin_check(&at(a, 2)), "one check per instance at a time");
        assert_eq!(log.position(&at(a, 2)), Position::Checking);
        assert!(log.deliver(&at(a, 2)));
        assert!(!log.deliver(&at(a, 2)), "delivered once");
        assert_eq!(log.low_watermark(&a), Some(1), "seq 1 is missing");
        assert!(log.deliver(&at(a, 1)));
        assert_eq!(log.low_watermark(&a), Some(3), "advanced over 2, delivered earlier");
        assert_eq!(log.position(&at(a, 1)), Position::Delivered);
        assert_eq!(log.position(&at(a, 6)), Position::Open, "the window moved to [3, 7)");
        assert_eq!(log.checking(), 0);
    }

    #[test]
    fn a_failed_check_reopens_the_instance_and_memory_stays_within_the_window() {
        let a = key(1);
        let mut log = CertifiedLog::new(&[a], 1, 8);
        for seq in 1..100 {
            log.begin_check(&at(a, seq));
        }
        assert_eq!(log.checking(), 8, "only seqs inside the window are checked");
        log.end_check(&at(a, 3));
        assert_eq!(log.position(&at(a, 3)), Position::Open);
        for seq in 2..100 {
            log.deliver(&at(a, seq));
        }
        assert_eq!(log.low_watermark(&a), Some(1));
        assert!(log.origins[&a].delivered.len() <= 8);
        log.restore_low(&a, 50);
        assert_eq!(log.low_watermark(&a), Some(50));
        assert_eq!(log.checking(), 0, "checks below the restored watermark are forgotten");
    }
}
