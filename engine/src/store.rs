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

/// Writes to commit in one transaction, in this order: seq counters, own messages,
/// deliveries.
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
}

/// Most deliveries one batch prunes: a node back after a long time, or with a retention just
/// shortened, prunes its backlog a page per batch instead of in one long transaction.
pub const MAX_PRUNED_PER_BATCH: usize = 4096;

impl Batch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.next_seq.is_empty() && self.own.is_empty() && self.deliveries.is_empty() && self.prune_before_ms.is_none()
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
}

/// Read access to stored deliveries, for [`crate::ServePlan::execute`].
pub trait DeliveryLog {
    /// The kept delivery of `(origin, seq)` (`None` if never delivered, pruned, or
    /// unreadable).
    fn delivery(&self, origin: &PublicKey, seq: u64) -> Option<StoredDelivery>;
    /// One [`Watermark`] per origin that ever had a delivery.
    fn watermarks(&self) -> Vec<Watermark>;
}
