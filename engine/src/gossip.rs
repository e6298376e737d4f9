//! Gossip bodies and the bounded buffer of recent gossip envelopes served to sync.

use byzgossip_crypto::codec;
use byzgossip_crypto::PublicKey;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// The body of a [`byzgossip_crypto::Kind::Gossip`] envelope. The topic is inside the signed
/// body, so a forwarder cannot move a message to another topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipBody {
    /// Application topic.
    pub topic: String,
    /// Application bytes.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl GossipBody {
    /// Encoded body.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a body of at most `max_len` bytes.
    pub fn decode(bytes: &[u8], max_len: usize) -> Option<GossipBody> {
        codec::decode(bytes, max_len).ok()
    }
}

/// Most gossip envelopes kept for sync.
pub const RECENT_GOSSIP_ENTRIES: usize = 4096;
/// Most bytes of gossip envelopes kept for sync.
pub const RECENT_GOSSIP_BYTES: usize = 32 << 20;

/// Recently admitted gossip envelopes, oldest evicted first, bounded in entries and bytes.
#[derive(Default)]
pub struct RecentGossip {
    entries: VecDeque<(PublicKey, u64, Vec<u8>)>,
    bytes: usize,
    /// Per origin: entries held and the highest seq held.
    origins: HashMap<PublicKey, (usize, u64)>,
}

impl RecentGossip {
    /// Keeps an admitted envelope.
    pub fn push(&mut self, origin: PublicKey, seq: u64, bytes: Vec<u8>) {
        while !self.entries.is_empty()
            && (self.entries.len() >= RECENT_GOSSIP_ENTRIES || self.bytes + bytes.len() > RECENT_GOSSIP_BYTES)
        {
            if let Some((old, _, b)) = self.entries.pop_front() {
                self.bytes -= b.len();
                if let Some(entry) = self.origins.get_mut(&old) {
                    entry.0 -= 1;
                    if entry.0 == 0 {
                        self.origins.remove(&old);
                    }
                }
            }
        }
        self.bytes += bytes.len();
        let entry = self.origins.entry(origin).or_insert((0, seq));
        entry.0 += 1;
        entry.1 = entry.1.max(seq);
        self.entries.push_back((origin, seq, bytes));
    }

    /// Per origin, one past the highest seq held.
    pub fn marks(&self) -> impl Iterator<Item = (PublicKey, u64)> + '_ {
        self.origins.iter().map(|(origin, (_, high))| (*origin, high + 1))
    }

    /// Envelopes a peer with `marks` (origin -> next seq it lacks) does not have, newest
    /// last. Origins it did not name are sent in full.
    pub fn missing<'a>(&'a self, marks: &'a HashMap<PublicKey, u64>) -> impl Iterator<Item = &'a Vec<u8>> + 'a {
        self.entries
            .iter()
            .filter(move |(origin, seq, _)| marks.get(origin).is_none_or(|next| seq >= next))
            .map(|(_, _, bytes)| bytes)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_gossip_is_bounded_and_answers_what_is_missing() {
        let mut recent = RecentGossip::default();
        let a = PublicKey([1; 32]);
        let b = PublicKey([2; 32]);
        for seq in 0..(RECENT_GOSSIP_ENTRIES as u64 + 10) {
            recent.push(if seq % 2 == 0 { a } else { b }, seq, vec![0; 8]);
        }
        assert_eq!(recent.len(), RECENT_GOSSIP_ENTRIES);
        let marks: HashMap<_, _> = [(a, RECENT_GOSSIP_ENTRIES as u64)].into();
        // All of b's entries, and a's from the mark on.
        let missing = recent.missing(&marks).count();
        assert_eq!(missing, RECENT_GOSSIP_ENTRIES / 2 + 5);
        let mut big = RecentGossip::default();
        for seq in 0..10 {
            big.push(a, seq, vec![0; RECENT_GOSSIP_BYTES / 4]);
        }
        assert!(big.len() <= 4);
    }

    #[test]
    fn gossip_body_round_trip_and_limit() {
        let body = GossipBody { topic: "t".into(), payload: vec![1, 2, 3] };
        let bytes = body.encode();
        assert_eq!(GossipBody::decode(&bytes, 1024), Some(body));
        assert_eq!(GossipBody::decode(&bytes, 4), None);
    }
}
