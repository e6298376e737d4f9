//! Gossip bodies and the bounded buffer of recent gossip envelopes served to sync.

use byzgossip_crypto::codec;
use byzgossip_crypto::PublicKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

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
/// How far below an origin's highest gossip seq a gap is still repaired, and how many of one
/// origin's envelopes are kept for sync: a flooding origin keeps its own newest
/// `GOSSIP_REPAIR_WINDOW`, never the other origins' (with one global FIFO, a flood within
/// budget pushed every honest message out of the buffer in seconds).
pub const GOSSIP_REPAIR_WINDOW: u64 = 128;
/// Most gaps a digest names per origin (the newest first).
pub const MAX_GAPS_PER_ORIGIN: usize = 32;
/// Most origins whose held seqs are tracked ([`HeldSeqs`]); beyond, the origin heard from
/// least recently is forgotten (its gaps are no longer asked for).
pub const MAX_TRACKED_ORIGINS: usize = 4096;

/// One kept envelope.
struct Kept {
    origin: PublicKey,
    seq: u64,
    timestamp_ms: u64,
    bytes: Vec<u8>,
}

/// Recently admitted gossip envelopes, served to sync: bounded in entries and bytes (oldest
/// evicted first) and per origin ([`GOSSIP_REPAIR_WINDOW`], its lowest seq evicted first).
/// At the global bound, the origin holding the most envelopes loses its oldest: many keys
/// flooding within their budgets (the `seen-flood` preset's 64 Sybil keys and budget
/// flooders, about 2,300 envelopes/s) turned a global FIFO over in under 2 s, so an honest
/// message a node missed was gone from every buffer before sync asked for it.
#[derive(Default)]
pub struct RecentGossip {
    /// Arrival order -> envelope.
    entries: BTreeMap<u64, Kept>,
    /// Per origin: seq -> arrival order.
    by_origin: HashMap<PublicKey, BTreeMap<u64, u64>>,
    /// (envelopes held, origin), for finding the origin holding the most.
    by_count: std::collections::BTreeSet<(usize, PublicKey)>,
    bytes: usize,
    arrivals: u64,
}

impl RecentGossip {
    /// Keeps an admitted envelope (signed at `timestamp_ms`). Returns whether it was kept
    /// (not already held) and the `(origin, seq)` of the envelopes evicted to make room (the
    /// engine mirrors both into its store).
    pub fn push(&mut self, origin: PublicKey, seq: u64, timestamp_ms: u64, bytes: Vec<u8>) -> (bool, Vec<(PublicKey, u64)>) {
        if self.by_origin.get(&origin).is_some_and(|seqs| seqs.contains_key(&seq)) {
            return (false, Vec::new());
        }
        let mut evicted = Vec::new();
        // The origin's own share first, then the global bounds.
        if let Some(lowest) = self.by_origin.get(&origin).filter(|s| s.len() as u64 >= GOSSIP_REPAIR_WINDOW).and_then(|s| s.values().next().copied()) {
            evicted.extend(self.remove(lowest));
        }
        while !self.entries.is_empty() && (self.entries.len() >= RECENT_GOSSIP_ENTRIES || self.bytes + bytes.len() > RECENT_GOSSIP_BYTES) {
            // The oldest envelope of the origin holding the most (ties: the largest key).
            let Some(&(_, largest)) = self.by_count.iter().next_back() else { break };
            let Some(oldest) = self.by_origin.get(&largest).and_then(|seqs| seqs.values().min().copied()) else { break };
            evicted.extend(self.remove(oldest));
        }
        let arrival = self.arrivals;
        self.arrivals += 1;
        self.bytes += bytes.len();
        let seqs = self.by_origin.entry(origin).or_default();
        self.by_count.remove(&(seqs.len(), origin));
        seqs.insert(seq, arrival);
        self.by_count.insert((seqs.len(), origin));
        self.entries.insert(arrival, Kept { origin, seq, timestamp_ms, bytes });
        (true, evicted)
    }

    fn remove(&mut self, arrival: u64) -> Option<(PublicKey, u64)> {
        let kept = self.entries.remove(&arrival)?;
        self.bytes -= kept.bytes.len();
        if let Some(seqs) = self.by_origin.get_mut(&kept.origin) {
            self.by_count.remove(&(seqs.len(), kept.origin));
            seqs.remove(&kept.seq);
            if seqs.is_empty() {
                self.by_origin.remove(&kept.origin);
            } else {
                self.by_count.insert((seqs.len(), kept.origin));
            }
        }
        Some((kept.origin, kept.seq))
    }

    /// Envelopes a peer whose digest says `wants` lacks, signed at `oldest_ms` or later (an
    /// older one could outlive the requester's memory of its id and be delivered twice), in
    /// arrival order. Origins the peer did not name are sent in full.
    pub fn missing<'a>(&'a self, wants: &'a HashMap<PublicKey, Wants>, oldest_ms: u64) -> impl Iterator<Item = &'a Vec<u8>> + 'a {
        self.entries
            .values()
            .filter(move |k| k.timestamp_ms >= oldest_ms && wants.get(&k.origin).is_none_or(|w| w.wants(k.seq)))
            .map(|k| &k.bytes)
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

/// What a requester lacks of one origin: everything from `next` on, and the listed gaps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wants {
    /// One past the highest seq held.
    pub next: u64,
    /// Seqs below `next` not held.
    pub gaps: Vec<u64>,
}

impl Wants {
    /// Whether `seq` is wanted.
    pub fn wants(&self, seq: u64) -> bool {
        seq >= self.next || self.gaps.contains(&seq)
    }
}

/// Per origin, which gossip seqs this node holds: the highest, and a bit per seq of the
/// [`GOSSIP_REPAIR_WINDOW`] below it. Gaps in that window are named in sync digests until a
/// peer fills them or they fall out of the window. An origin's seqs are consecutive (a node
/// numbers its gossip from its stored counter), so a hole is a message this node missed.
#[derive(Default)]
pub struct HeldSeqs {
    origins: HashMap<PublicKey, Held>,
    /// Last update -> origin, to forget the origin heard from least recently.
    order: BTreeMap<u64, PublicKey>,
    updates: u64,
}

struct Held {
    high: u64,
    /// Bit `i`: seq `high - i` is held.
    mask: u128,
    /// When `high` last rose (ms): gaps older than the gossip window are not asked for.
    high_at_ms: u64,
    /// Key in `order`.
    update: u64,
}

impl HeldSeqs {
    /// Records that `origin`'s gossip `seq` is held (admitted, published, or a duplicate).
    pub fn insert(&mut self, origin: PublicKey, seq: u64, now_ms: u64) {
        let update = self.updates;
        self.updates += 1;
        match self.origins.get_mut(&origin) {
            Some(held) => {
                self.order.remove(&held.update);
                held.update = update;
                if seq > held.high {
                    let shift = seq - held.high;
                    held.mask = if shift >= 128 { 0 } else { held.mask << shift };
                    held.mask |= 1;
                    held.high = seq;
                    held.high_at_ms = now_ms;
                } else if held.high - seq < GOSSIP_REPAIR_WINDOW {
                    held.mask |= 1 << (held.high - seq);
                }
            }
            None => {
                if self.origins.len() >= MAX_TRACKED_ORIGINS
                    && let Some((_, stale)) = self.order.pop_first()
                {
                    self.origins.remove(&stale);
                }
                self.origins.insert(origin, Held { high: seq, mask: 1, high_at_ms: now_ms, update });
            }
        }
        self.order.insert(update, origin);
    }

    /// Per origin, what this node lacks: gaps only for origins whose highest seq arrived at
    /// `oldest_ms` or later (older gaps are older than any peer serves), newest first and at
    /// most [`MAX_GAPS_PER_ORIGIN`] each.
    pub fn wants(&self, oldest_ms: u64) -> impl Iterator<Item = (PublicKey, Wants)> + '_ {
        self.origins.iter().map(move |(origin, held)| {
            let gaps = if held.high_at_ms >= oldest_ms {
                (1..GOSSIP_REPAIR_WINDOW.min(held.high + 1))
                    .filter(|i| held.mask & (1 << i) == 0)
                    .map(|i| held.high - i)
                    .take(MAX_GAPS_PER_ORIGIN)
                    .collect()
            } else {
                Vec::new()
            };
            (*origin, Wants { next: held.high + 1, gaps })
        })
    }

    /// Origins tracked.
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    /// True when no origin is tracked.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wants(next: u64, gaps: Vec<u64>) -> Wants {
        Wants { next, gaps }
    }

    #[test]
    fn recent_gossip_is_bounded_and_answers_what_is_missing() {
        let mut recent = RecentGossip::default();
        let origins: Vec<PublicKey> = (0..64u8).map(|i| PublicKey([i; 32])).collect();
        for seq in 0..100u64 {
            for o in &origins {
                recent.push(*o, seq, 1_000 + seq, vec![0; 8]);
            }
        }
        assert_eq!(recent.len(), RECENT_GOSSIP_ENTRIES, "the global bound holds");
        let a = origins[63];
        // a is known up to 90 with a gap at 80: 80 and 90..100 are sent; of the others,
        // everything they still hold.
        let marks: HashMap<_, _> = [(a, wants(90, vec![80, 10]))].into();
        let of_a = recent.missing(&marks, 0).count() - (RECENT_GOSSIP_ENTRIES - recent.by_origin[&a].len());
        assert_eq!(of_a, 11, "the gap and the tail of a (seq 10 was evicted)");
        // Nothing older than the window is served.
        assert_eq!(recent.missing(&HashMap::new(), 1_099).count(), 64);
        let mut big = RecentGossip::default();
        for seq in 0..10 {
            big.push(a, seq, 0, vec![0; RECENT_GOSSIP_BYTES / 4]);
        }
        assert!(big.len() <= 4);
    }

    /// A flooding origin keeps its own newest window and never evicts another origin's.
    #[test]
    fn one_origin_cannot_push_the_others_out() {
        let mut recent = RecentGossip::default();
        let (honest, flooder) = (PublicKey([1; 32]), PublicKey([2; 32]));
        recent.push(honest, 0, 0, vec![1; 8]);
        // What push reports kept and evicted is exactly what stays (the store mirrors it).
        let mut mirror: std::collections::BTreeSet<(PublicKey, u64)> = [(honest, 0)].into();
        for seq in 0..10 * RECENT_GOSSIP_ENTRIES as u64 {
            let (kept, evicted) = recent.push(flooder, seq, 0, vec![2; 8]);
            assert!(kept);
            mirror.insert((flooder, seq));
            for e in evicted {
                assert!(mirror.remove(&e), "evicted {e:?} twice or never kept");
            }
        }
        assert_eq!(recent.push(honest, 0, 0, vec![1; 8]), (false, vec![]), "held already: neither kept nor evicting");
        assert_eq!(recent.len(), GOSSIP_REPAIR_WINDOW as usize + 1);
        assert_eq!(mirror.len(), recent.len());
        let only_honest: HashMap<_, _> = [(flooder, wants(u64::MAX, vec![]))].into();
        assert_eq!(recent.missing(&only_honest, 0).count(), 1);
        let kept: Vec<u64> = recent.by_origin[&flooder].keys().copied().collect();
        assert_eq!(kept.first(), Some(&(10 * RECENT_GOSSIP_ENTRIES as u64 - GOSSIP_REPAIR_WINDOW)), "the newest are kept");
    }

    /// Many origins flooding within their budgets fill the buffer; an origin with few
    /// messages keeps them: the origin holding the most loses its oldest first.
    #[test]
    fn a_many_origin_flood_cannot_push_a_quiet_origin_out() {
        let mut recent = RecentGossip::default();
        let honest = PublicKey([0; 32]);
        for seq in 0..5 {
            recent.push(honest, seq, 0, vec![1; 8]);
        }
        let flooders: Vec<PublicKey> = (1..=64u8).map(|i| PublicKey([i; 32])).collect();
        for seq in 0..GOSSIP_REPAIR_WINDOW {
            for f in &flooders {
                recent.push(*f, seq, 0, vec![2; 8]);
            }
        }
        assert_eq!(recent.len(), RECENT_GOSSIP_ENTRIES);
        assert_eq!(recent.by_origin[&honest].len(), 5, "the quiet origin kept everything");
        let counts: Vec<usize> = flooders.iter().map(|f| recent.by_origin[f].len()).collect();
        let (min, max) = (counts.iter().min().copied(), counts.iter().max().copied());
        assert!(max.zip(min).is_some_and(|(max, min)| max - min <= 1), "the flooders share the rest evenly: {min:?}..{max:?}");
        assert_eq!(recent.by_count.len(), recent.by_origin.len(), "one count per origin");
    }

    #[test]
    fn held_seqs_name_the_gaps_below_the_highest_seq_within_the_window() {
        let mut held = HeldSeqs::default();
        let a = PublicKey([1; 32]);
        for seq in [0, 1, 2, 4, 7] {
            held.insert(a, seq, 100);
        }
        let all: Vec<(PublicKey, Wants)> = held.wants(0).collect();
        assert_eq!(all, vec![(a, wants(8, vec![6, 5, 3]))]);
        held.insert(a, 5, 100);
        held.insert(a, 3, 100);
        held.insert(a, 6, 100);
        assert_eq!(held.wants(0).next().map(|(_, w)| w), Some(wants(8, vec![])));
        // A jump beyond the window forgets everything below it: only the newest gaps, at
        // most MAX_GAPS_PER_ORIGIN, are asked for.
        held.insert(a, 1_000, 200);
        let w = held.wants(0).next().map(|(_, w)| w).unwrap_or_default();
        assert_eq!(w.next, 1_001);
        assert_eq!(w.gaps.len(), MAX_GAPS_PER_ORIGIN);
        assert_eq!(w.gaps[0], 999);
        // An origin silent for longer than the window asks for nothing below its mark.
        assert_eq!(held.wants(201).next().map(|(_, w)| w), Some(wants(1_001, vec![])));
    }

    #[test]
    fn held_seqs_track_a_bounded_number_of_origins() {
        let mut held = HeldSeqs::default();
        for i in 0..(MAX_TRACKED_ORIGINS as u32 + 10) {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            held.insert(PublicKey(key), 0, 0);
        }
        assert_eq!(held.len(), MAX_TRACKED_ORIGINS);
        assert!(!held.wants(0).any(|(o, _)| o == PublicKey([0; 32])), "the origin heard from least recently is forgotten first");
    }

    #[test]
    fn gossip_body_round_trip_and_limit() {
        let body = GossipBody { topic: "t".into(), payload: vec![1, 2, 3] };
        let bytes = body.encode();
        assert_eq!(GossipBody::decode(&bytes, 1024), Some(body));
        assert_eq!(GossipBody::decode(&bytes, 4), None);
    }
}
