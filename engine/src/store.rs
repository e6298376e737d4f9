//! What the engine needs to survive a crash, as plain data: the batches it asks the driver to
//! commit, what a commit reports back, and what the driver reads back at start.
//!
//! Persistence is raft-style: while handling an input the engine collects every write into
//! one [`Batch`] and holds back the outputs that must not happen before those writes are
//! durable (publishing an own SEND, ECHO or READY; announcing a delivery). The driver commits
//! the batch in one transaction and reports [`Committed`]; only then are the held outputs
//! released. No per-envelope fsync on the event loop, and a crash never loses anything that
//! was published or announced.

use byzgossip_crypto::{Digest, Kind, PublicKey};
use serde::{Deserialize, Serialize};

/// The first seq handed out in each stream; watermarks also count from it.
pub const FIRST_SEQ: u64 = 0;

/// A sequence-number stream of this node's own messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SeqStream {
    /// Seqs of the Bracha instances this node originates.
    Broadcast,
    /// Seqs of this node's gossip messages.
    Gossip,
}

impl SeqStream {
    /// Both streams.
    pub const ALL: [SeqStream; 2] = [SeqStream::Broadcast, SeqStream::Gossip];

    /// A short fixed name, used as the database key.
    pub fn label(self) -> &'static str {
        match self {
            SeqStream::Broadcast => "broadcast",
            SeqStream::Gossip => "gossip",
        }
    }
}

/// One of this node's own signed Bracha messages, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnMessage {
    /// Origin of the instance the message belongs to (not necessarily this node).
    pub instance_origin: PublicKey,
    /// Seq of the instance.
    pub seq: u64,
    /// SEND, ECHO or READY (any kind is accepted).
    pub kind: Kind,
    /// The encoded signed envelope.
    pub envelope: Vec<u8>,
}

/// A delivered value with its certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDelivery {
    /// Origin of the Bracha instance.
    pub origin: PublicKey,
    /// Seq of the instance.
    pub seq: u64,
    /// Digest of `value`.
    pub digest: Digest,
    /// The delivered value.
    pub value: Vec<u8>,
    /// The delivery certificate (2f+1 signed READYs), opaque bytes encoded by the caller.
    pub certificate: Vec<u8>,
    /// When this node delivered it, in milliseconds since the Unix epoch (drives retention).
    pub delivered_at_ms: u64,
}

/// What appending a delivery did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Appended {
    /// Stored now, under this new cursor: hand it to the application.
    New(u64),
    /// Already delivered under this cursor (its record may have been pruned since); nothing
    /// was stored.
    Existing(u64),
    /// Already delivered and pruned below the origin's low watermark, so its cursor is
    /// forgotten; nothing was stored.
    Pruned,
}

impl Appended {
    /// The cursor, unless it was pruned and forgotten.
    pub fn cursor(self) -> Option<u64> {
        match self {
            Appended::New(cursor) | Appended::Existing(cursor) => Some(cursor),
            Appended::Pruned => None,
        }
    }

    /// Whether this call stored the delivery.
    pub fn is_new(self) -> bool {
        matches!(self, Appended::New(_))
    }
}

/// Per-origin summary of what was delivered (pruned deliveries included), for anti-entropy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Watermark {
    /// The origin.
    pub origin: PublicKey,
    /// Lowest seq (counting from [`FIRST_SEQ`]) not delivered: every seq below it was.
    pub low: u64,
    /// Highest seq delivered.
    pub high: u64,
    /// How many distinct seqs were delivered. Two nodes with equal `low`, `high` and `count`
    /// delivered the same seqs of this origin.
    pub count: u64,
}

/// A ban this node imposed, as kept across restarts: the key's ban count and the end of its
/// last ban. Rows are replaced per peer and kept after the ban ends (a repeat offence after
/// a restart must still double the ban); a store keeps at most [`MAX_STORED_BANS`] of them,
/// forgetting the one whose ban ended first when full (the reputation table itself forgets
/// ended bans of quiet keys under pressure, with the same cap by default).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBan {
    /// The banned key.
    pub peer: PublicKey,
    /// Bans so far (the next one lasts twice as long, up to the cap).
    pub bans: u32,
    /// End of the last ban (ms since the Unix epoch).
    pub until_ms: u64,
}

/// Most [`StoredBan`] rows a store keeps: the reputation table's default cap on tracked keys
/// (`byzgossip_reputation::DEFAULT_MAX_PEERS`).
pub const MAX_STORED_BANS: usize = 4096;

/// A member excluded for the epoch on verified equivocation evidence, with that evidence (a
/// `byzgossip_bracha::Evidence` body), kept across restarts and offered to peers through
/// sync. One row per member, the first evidence kept; at most [`MAX_STORED_EXCLUSIONS`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredExclusion {
    /// The excluded member.
    pub member: PublicKey,
    /// The encoded evidence.
    pub evidence: Vec<u8>,
}

/// Most [`StoredExclusion`] rows: only committee members can be proven to equivocate, and a
/// committee has at most `byzgossip_bracha::MAX_COMMITTEE` members; the reputation layer's
/// default `max_excluded` is the same.
pub const MAX_STORED_EXCLUSIONS: usize = 1024;

/// The id of a gossip message this node admitted, kept until it would leave the seen-set
/// (`expires_at_ms`: its timestamp plus the replay window, or for gossip fetched by sync the
/// admission time plus the window), so that a replay after a restart is still a duplicate.
/// Rows expire with the window ([`Batch::forget_gossip_before_ms`]), so a store holds at most
/// what the seen-set admitted within one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredGossipId {
    /// The message id.
    pub id: [u8; 32],
    /// Its signer.
    pub origin: PublicKey,
    /// When it leaves the seen-set (ms since the Unix epoch).
    pub expires_at_ms: u64,
}

/// A gossip envelope kept to serve sync after a restart. The store mirrors the engine's
/// buffer of recent gossip ([`crate::gossip::RecentGossip`]) row for row: each admitted or
/// published envelope is written, each the buffer evicts is forgotten
/// ([`Batch::forget_kept_gossip`]), so the store holds what the buffer holds, within its
/// bounds (128 per origin, 4096 and 32 MiB in all), and a restarted node serves gap requests
/// for gossip it admitted before its restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptGossip {
    /// The signer.
    pub origin: PublicKey,
    /// Its gossip seq.
    pub seq: u64,
    /// When it was signed (ms since the Unix epoch): only gossip within the live window is
    /// served.
    pub timestamp_ms: u64,
    /// The envelope as received (`codec::encode_envelope`).
    pub envelope: Vec<u8>,
}

/// Writes to commit in one transaction, in this order: seq counters, own messages,
/// deliveries, bans, exclusions, gossip ids, kept gossip (writes, then forgets), then the
/// pruning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// The batch's number, to report back in [`crate::Engine::handle_committed`]. Batches are
    /// numbered from 1 and must be committed in order.
    pub id: u64,
    /// Seq counters to raise: after the commit, the stream's next seq is at least this.
    pub next_seq: Vec<(SeqStream, u64)>,
    /// Own messages to record; the first one recorded per `(origin, seq, kind)` wins forever.
    pub own: Vec<OwnMessage>,
    /// Deliveries to append, at most once per `(origin, seq)`.
    pub deliveries: Vec<StoredDelivery>,
    /// Retention: after the writes, forget deliveries made before this time (ms), with the
    /// own messages of their instances, at most [`MAX_PRUNED_PER_BATCH`] of them (the engine
    /// asks again while a commit reports a full page).
    pub prune_before_ms: Option<u64>,
    /// Ban records to write (replacing the peer's row).
    pub bans: Vec<StoredBan>,
    /// Exclusions to write (a member's first one is kept).
    pub exclusions: Vec<StoredExclusion>,
    /// Ids of gossip admitted (and handed to the application) in this batch.
    pub gossip: Vec<StoredGossipId>,
    /// Forget stored gossip ids that expire before this time (ms): they are out of the replay
    /// window, so the window itself rejects a replay.
    pub forget_gossip_before_ms: Option<u64>,
    /// Gossip envelopes to keep for sync ([`KeptGossip`]), keyed by `(origin, seq)`.
    pub kept_gossip: Vec<KeptGossip>,
    /// Kept gossip to forget, by `(origin, seq)`, after the writes above: what the recent
    /// gossip buffer evicted.
    pub forget_kept_gossip: Vec<(PublicKey, u64)>,
}

/// Most deliveries one batch prunes: a node back after a long time, or with a retention just
/// shortened, prunes its backlog a page per batch instead of in one long transaction.
pub const MAX_PRUNED_PER_BATCH: usize = 4096;

impl Batch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.next_seq.is_empty()
            && self.own.is_empty()
            && self.deliveries.is_empty()
            && self.prune_before_ms.is_none()
            && self.bans.is_empty()
            && self.exclusions.is_empty()
            && self.gossip.is_empty()
            && self.forget_gossip_before_ms.is_none()
            && self.kept_gossip.is_empty()
            && self.forget_kept_gossip.is_empty()
    }
}

/// What a commit did, item by item in the order of the [`Batch`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// Per own message: `None` if recorded now, `Some(first)` if one was already recorded for
    /// its slot (a restart): the engine then publishes the first, never a different one.
    pub own: Vec<Option<Vec<u8>>>,
    /// Per delivery: what appending it did.
    pub deliveries: Vec<Appended>,
    /// Deliveries pruned ([`Batch::prune_before_ms`]); [`MAX_PRUNED_PER_BATCH`] means more may
    /// be due.
    pub pruned: usize,
}

/// What the driver reads from its store at start, for [`crate::Engine::new`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The next seq of each stream (every seq below was reserved at some point).
    pub next_broadcast_seq: u64,
    /// The next gossip seq.
    pub next_gossip_seq: u64,
    /// Own messages still kept, to restore votes (a restarted node never votes differently).
    pub own: Vec<OwnMessage>,
    /// Per-origin delivery watermarks.
    pub watermarks: Vec<Watermark>,
    /// The last delivery cursor handed out (0 before the first delivery).
    pub last_cursor: u64,
    /// Ban records ([`StoredBan`]).
    pub bans: Vec<StoredBan>,
    /// Exclusions with their evidence ([`StoredExclusion`]).
    pub exclusions: Vec<StoredExclusion>,
    /// Ids of gossip admitted before the restart that may still be replayed.
    pub gossip: Vec<StoredGossipId>,
    /// Gossip envelopes kept for sync ([`KeptGossip`]), in any order.
    pub kept_gossip: Vec<KeptGossip>,
}

/// Read access to stored deliveries, for [`crate::ServePlan::execute`].
pub trait DeliveryLog {
    /// The kept delivery of `(origin, seq)` (`None` if never delivered, pruned, or
    /// unreadable).
    fn delivery(&self, origin: &PublicKey, seq: u64) -> Option<StoredDelivery>;
    /// One [`Watermark`] per origin that ever had a delivery.
    fn watermarks(&self) -> Vec<Watermark>;
}

/// The bans, exclusions and gossip ids of a store kept in memory, with the semantics every
/// store follows (the node's `RedbStore` implements the same in its tables): a ban row is
/// replaced per peer and, at [`MAX_STORED_BANS`], the row whose ban ended first is dropped
/// for a new peer; a member's first exclusion is kept and beyond [`MAX_STORED_EXCLUSIONS`]
/// members new ones are refused; gossip ids are kept until
/// [`Batch::forget_gossip_before_ms`] passes their expiry; kept gossip is written and
/// forgotten as the batch says ([`KeptGossip`]). The in-memory stores (the node's
/// `MemoryStore`, the simulator's, the engine tests') embed it.
#[derive(Clone, Debug, Default)]
pub struct KeptSanctions {
    bans: std::collections::BTreeMap<PublicKey, StoredBan>,
    exclusions: std::collections::BTreeMap<PublicKey, Vec<u8>>,
    /// (expires_at_ms, id) -> origin.
    gossip: std::collections::BTreeMap<(u64, [u8; 32]), PublicKey>,
    /// (origin, seq) -> kept gossip.
    kept_gossip: std::collections::BTreeMap<(PublicKey, u64), KeptGossip>,
}

impl KeptSanctions {
    /// Applies the ban, exclusion and gossip-id parts of `batch`.
    pub fn apply(&mut self, batch: &Batch) {
        for ban in &batch.bans {
            if !self.bans.contains_key(&ban.peer) && self.bans.len() >= MAX_STORED_BANS {
                let oldest = self.bans.values().min_by_key(|b| (b.until_ms, b.peer)).map(|b| b.peer);
                if let Some(peer) = oldest {
                    self.bans.remove(&peer);
                }
            }
            self.bans.insert(ban.peer, ban.clone());
        }
        for exclusion in &batch.exclusions {
            if self.exclusions.len() < MAX_STORED_EXCLUSIONS || self.exclusions.contains_key(&exclusion.member) {
                self.exclusions.entry(exclusion.member).or_insert_with(|| exclusion.evidence.clone());
            }
        }
        for g in &batch.gossip {
            self.gossip.insert((g.expires_at_ms, g.id), g.origin);
        }
        if let Some(before) = batch.forget_gossip_before_ms {
            self.gossip = self.gossip.split_off(&(before, [0; 32]));
        }
        for kept in &batch.kept_gossip {
            self.kept_gossip.insert((kept.origin, kept.seq), kept.clone());
        }
        for key in &batch.forget_kept_gossip {
            self.kept_gossip.remove(key);
        }
    }

    /// Fills the ban, exclusion and gossip-id parts of `recovered`.
    pub fn recover_into(&self, recovered: &mut Recovered) {
        recovered.bans = self.bans.values().cloned().collect();
        recovered.exclusions =
            self.exclusions.iter().map(|(member, evidence)| StoredExclusion { member: *member, evidence: evidence.clone() }).collect();
        recovered.gossip = self
            .gossip
            .iter()
            .map(|(&(expires_at_ms, id), origin)| StoredGossipId { id, origin: *origin, expires_at_ms })
            .collect();
        recovered.kept_gossip = self.kept_gossip.values().cloned().collect();
    }

    /// Kept gossip envelopes.
    pub fn kept_gossip_len(&self) -> usize {
        self.kept_gossip.len()
    }

    /// Rows kept: (bans, exclusions, gossip ids).
    pub fn len(&self) -> (usize, usize, usize) {
        (self.bans.len(), self.exclusions.len(), self.gossip.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        PublicKey(bytes)
    }

    #[test]
    fn kept_bans_are_bounded_and_forget_the_earliest_ended_first() {
        let mut kept = KeptSanctions::default();
        let bans: Vec<StoredBan> =
            (0..MAX_STORED_BANS as u32 + 10).map(|i| StoredBan { peer: key(i), bans: 1, until_ms: 1_000 + u64::from(i) }).collect();
        kept.apply(&Batch { bans, ..Default::default() });
        assert_eq!(kept.len().0, MAX_STORED_BANS);
        let mut r = Recovered::default();
        kept.recover_into(&mut r);
        assert!(r.bans.iter().all(|b| b.until_ms >= 1_010), "the ten earliest-ended were forgotten");
        // A row of a known peer is replaced, not added.
        kept.apply(&Batch { bans: vec![StoredBan { peer: key(20), bans: 2, until_ms: 9_999 }], ..Default::default() });
        kept.recover_into(&mut r);
        assert_eq!(kept.len().0, MAX_STORED_BANS);
        assert!(r.bans.contains(&StoredBan { peer: key(20), bans: 2, until_ms: 9_999 }));
    }

    #[test]
    fn kept_exclusions_keep_the_first_evidence_and_are_bounded() {
        let mut kept = KeptSanctions::default();
        let exclusions: Vec<StoredExclusion> =
            (0..MAX_STORED_EXCLUSIONS as u32 + 5).map(|i| StoredExclusion { member: key(i), evidence: vec![1] }).collect();
        kept.apply(&Batch { exclusions, ..Default::default() });
        kept.apply(&Batch { exclusions: vec![StoredExclusion { member: key(0), evidence: vec![2] }], ..Default::default() });
        assert_eq!(kept.len().1, MAX_STORED_EXCLUSIONS);
        let mut r = Recovered::default();
        kept.recover_into(&mut r);
        assert_eq!(r.exclusions.iter().find(|e| e.member == key(0)).map(|e| e.evidence.clone()), Some(vec![1]));
    }

    #[test]
    fn kept_gossip_is_written_then_forgotten_as_the_batch_says() {
        let mut kept = KeptSanctions::default();
        let row = |seq: u64| KeptGossip { origin: key(1), seq, timestamp_ms: 1_000 + seq, envelope: vec![seq as u8; 4] };
        kept.apply(&Batch { kept_gossip: (0..5).map(row).collect(), ..Default::default() });
        // Written and evicted in one batch: gone after it.
        kept.apply(&Batch { kept_gossip: vec![row(5)], forget_kept_gossip: vec![(key(1), 0), (key(1), 5)], ..Default::default() });
        assert_eq!(kept.kept_gossip_len(), 4);
        let mut r = Recovered::default();
        kept.recover_into(&mut r);
        assert_eq!(r.kept_gossip.iter().map(|k| k.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(r.kept_gossip[0], row(1));
    }

    #[test]
    fn kept_gossip_ids_expire_with_the_window() {
        let mut kept = KeptSanctions::default();
        let gossip: Vec<StoredGossipId> =
            (0..100u64).map(|i| StoredGossipId { id: [i as u8; 32], origin: key(1), expires_at_ms: 1_000 + i * 10 }).collect();
        kept.apply(&Batch { gossip, ..Default::default() });
        assert_eq!(kept.len().2, 100);
        kept.apply(&Batch { forget_gossip_before_ms: Some(1_500), ..Default::default() });
        assert_eq!(kept.len().2, 50, "ids expiring before 1500 are forgotten");
        let mut r = Recovered::default();
        kept.recover_into(&mut r);
        assert!(r.gossip.iter().all(|g| g.expires_at_ms >= 1_500));
    }
}
