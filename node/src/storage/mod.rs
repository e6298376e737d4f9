//! Persistence (DESIGN.md section 6): what a node must not forget across a crash.
//!
//! Everything sits behind the small [`Store`] trait (STYLE.md: raft-rs), with two
//! implementations: [`MemoryStore`] for tests and [`RedbStore`], one redb file
//! (`byzgossip.redb`) in the data directory. Every write is committed durably (redb's
//! `Durability::Immediate`) before the call returns, so a crash loses nothing a call reported.
//!
//! What is kept:
//! 1. **Own sequence numbers**, one counter per [`SeqStream`]. [`Store::reserve_seq`] advances
//!    the counter in the same transaction that hands the seq out, and the caller signs only
//!    afterwards: a seq is never reused for other content, even across a crash.
//! 2. **Own messages** (signed SEND/ECHO/READY envelopes) per `(instance origin, seq, kind)`.
//!    The first one recorded wins forever, so a restarted node replays the same votes and can
//!    refuse to sign a conflicting one.
//! 3. **Deliveries** with their certificates, each under a dense cursor (1, 2, 3, ...), at most
//!    once per `(origin, seq)`, with per-origin [`Watermark`]s for anti-entropy digests.
//! 4. **Application cursors**: how far each named consumer has read the delivery log.
//! 5. **Its identity**: the network id and the node's public key, recorded by the first
//!    [`Store::bind`]. A data directory belongs to one network and one key: its seq counters
//!    and own votes mean nothing for another key, and its deliveries are another network's.
//!    Opening it for another one is [`StoreError::BoundToOther`], never a silent reuse.
//!
//! 6. **Bans, exclusions and delivered gossip ids** (from the engine's [`Batch`]): a ban row
//!    per peer (its ban count and the end of its last ban, kept after it ends so a repeat
//!    doubles; at most [`MAX_STORED_BANS`], the earliest ended forgotten first), an
//!    exclusion per member with its evidence (the first kept; at most
//!    [`MAX_STORED_EXCLUSIONS`]), and the ids of gossip handed to the application until they
//!    leave the replay window ([`Batch::forget_gossip_before_ms`]). A restarted node keeps
//!    its bans, excludes whom it excluded, offers the evidence through sync, and delivers no
//!    replay of what it delivered before.
//! 7. **Kept gossip** ([`KeptGossip`]): the envelopes of the engine's recent-gossip buffer,
//!    row for row (written as kept, forgotten as evicted: at most 4096 rows and 32 MiB), so a
//!    restarted node serves gossip repair for what it admitted before its restart.
//!
//! Retention: [`Store::prune_deliveries`] drops old deliveries (value and certificate) and
//! the own messages of their instances. A pruned delivery still counts as delivered: its
//! cursor is never reused, appending it again stores nothing (it answers
//! [`Appended::Existing`] or [`Appended::Pruned`]), and the watermarks keep it.

mod memory;
mod redb_store;

#[cfg(test)]
mod tests;

pub use memory::MemoryStore;
pub use redb_store::{DB_FILE_NAME, RedbStore, SCHEMA_VERSION};

use byzgossip_crypto::codec::{MAX_BODY_LEN, MAX_ENVELOPE_LEN};
use byzgossip_crypto::{Kind, NetworkId, PublicKey};
// The persisted records are the engine's (it decides what must survive); this module stores them.
pub use byzgossip_engine::store::{
    Appended, Batch, Committed, DeliveryLog, FIRST_SEQ, KeptGossip, KeptSanctions, MAX_PRUNED_PER_BATCH, MAX_STORED_BANS,
    MAX_STORED_EXCLUSIONS, OwnMessage, Recovered, SeqStream, StoredBan, StoredDelivery, StoredExclusion, StoredGossipId, Watermark,
};
pub use byzgossip_engine::gossip::RECENT_GOSSIP_ENTRIES;

/// Most deliveries one [`Store::deliveries_from`] call returns, whatever limit is asked.
pub const MAX_DELIVERIES_PAGE: usize = 256;

/// Largest own-message envelope accepted: the codec's envelope ceiling.
pub const MAX_OWN_MESSAGE_LEN: usize = MAX_ENVELOPE_LEN;

/// Largest delivered value accepted: the largest envelope body.
pub const MAX_VALUE_LEN: usize = MAX_BODY_LEN;

/// Largest delivery certificate accepted (2f+1 READY envelopes fit easily).
pub const MAX_CERTIFICATE_LEN: usize = MAX_ENVELOPE_LEN;

/// Largest stored equivocation evidence (two envelopes, framed): the codec's ceiling.
pub const MAX_EVIDENCE_LEN: usize = MAX_ENVELOPE_LEN;

/// Longest application cursor name, in bytes.
pub const MAX_APP_CURSOR_NAME_LEN: usize = 128;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file is held by another open [`RedbStore`] (this or another process).
    #[error("the database {0} is already open")]
    AlreadyOpen(std::path::PathBuf),
    /// Creating the data directory failed.
    #[error("data directory {path}: {source}")]
    Io {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The embedded database failed.
    #[error("database: {0}")]
    Database(#[from] redb::Error),
    /// The database holds something this code cannot read.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// An argument is over one of this module's size bounds.
    #[error("{what} is {len} bytes, over the limit of {limit}")]
    TooLarge {
        /// Which argument.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The bound.
        limit: usize,
    },
    /// A counter would pass `u64::MAX`.
    #[error("the {0} counter is exhausted")]
    Exhausted(&'static str),
    /// An application cursor past the last delivery cursor.
    #[error("application cursor {cursor} is past the last delivery cursor {last}")]
    CursorAhead {
        /// The cursor asked for.
        cursor: u64,
        /// The last cursor handed out.
        last: u64,
    },
    /// The store was written by another network or another key (a data directory belongs
    /// to one network and one key: see [`Store::bind`]). Boxed: the error stays small.
    #[error(
        "the data belongs to network {} and key {}, not to this node's network {} and key {}; use another data directory",
        stored.network, stored.key, opened.network, opened.key
    )]
    BoundToOther {
        /// The network and key the store was first opened for.
        stored: Box<Owner>,
        /// The network and key it was opened for now.
        opened: Box<Owner>,
    },
    /// A thread panicked while holding the in-memory store's lock.
    #[error("the in-memory store's lock is poisoned")]
    Poisoned,
}

macro_rules! from_redb {
    ($($ty:ident),*) => {$(
        impl From<redb::$ty> for StoreError {
            fn from(error: redb::$ty) -> Self {
                StoreError::Database(error.into())
            }
        }
    )*};
}
from_redb!(DatabaseError, TransactionError, TableError, StorageError, CommitError);

/// The node's persistence. Calls are synchronous (run them on blocking tasks) and every write
/// is durable when it returns.
pub trait Store: Send + Sync {
    /// Binds the store to `network` and `key`: the first call records them durably, later
    /// calls succeed only with the same two values and fail with
    /// [`StoreError::BoundToOther`] (naming both pairs) otherwise. The node calls it before
    /// reading anything else.
    fn bind(&self, network: NetworkId, key: PublicKey) -> Result<(), StoreError>;

    /// Returns the next seq of `stream` (the first is [`FIRST_SEQ`]) after durably advancing
    /// the counter: it is never returned again, even after a crash. Sign only after this.
    fn reserve_seq(&self, stream: SeqStream) -> Result<u64, StoreError>;

    /// The seq the next [`Store::reserve_seq`] of `stream` would return, without reserving
    /// it. Every seq below it was reserved at some point (and may have been lost to a crash
    /// before anything was signed for it).
    fn peek_seq(&self, stream: SeqStream) -> Result<u64, StoreError>;

    /// Records an own message of instance `(instance_origin, seq)`. Returns `None` if it was
    /// stored now, or `Some(first)` if one was already stored for `(instance_origin, seq, kind)`:
    /// the first is kept unchanged, and the caller refuses to send anything that differs.
    fn record_own_message(
        &self,
        instance_origin: PublicKey,
        seq: u64,
        kind: Kind,
        envelope: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// The own message recorded for `(instance_origin, seq, kind)`.
    fn own_message(&self, instance_origin: PublicKey, seq: u64, kind: Kind) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every own message still kept, ordered by `(instance_origin, seq, kind)`, to replay on
    /// restart. Bounded by pruning: [`Store::prune_deliveries`] and [`Store::prune_own_messages`].
    fn own_messages(&self) -> Result<Vec<OwnMessage>, StoreError>;

    /// Drops the own messages of `instance_origin`'s instances with seq below `below_seq`
    /// (instances abandoned or finished); returns how many were dropped.
    fn prune_own_messages(&self, instance_origin: PublicKey, below_seq: u64) -> Result<usize, StoreError>;

    /// Appends a delivery at most once per `(origin, seq)`: see [`Appended`]. Refuses values
    /// over [`MAX_VALUE_LEN`] and certificates over [`MAX_CERTIFICATE_LEN`].
    fn insert_delivery(&self, delivery: &StoredDelivery) -> Result<Appended, StoreError>;

    /// [`Store::insert_delivery`] returning just the cursor: the new one, or the existing one
    /// for a duplicate, or 0 for a duplicate already pruned below the low watermark.
    fn append_delivery(&self, delivery: &StoredDelivery) -> Result<u64, StoreError> {
        Ok(self.insert_delivery(delivery)?.cursor().unwrap_or(0))
    }

    /// Up to `limit` (capped at [`MAX_DELIVERIES_PAGE`]) kept deliveries with cursor `>= cursor`,
    /// in cursor order. Pruned cursors are skipped.
    fn deliveries_from(&self, cursor: u64, limit: usize) -> Result<Vec<(u64, StoredDelivery)>, StoreError>;

    /// The kept delivery of `(origin, seq)` with its cursor (`None` if never delivered or pruned).
    fn delivery(&self, origin: PublicKey, seq: u64) -> Result<Option<(u64, StoredDelivery)>, StoreError>;

    /// The last cursor handed out (0 before the first delivery). Pruning does not lower it.
    fn last_cursor(&self) -> Result<u64, StoreError>;

    /// One [`Watermark`] per origin that ever had a delivery, ordered by origin.
    fn high_watermarks(&self) -> Result<Vec<Watermark>, StoreError>;

    /// Drops the oldest deliveries with `delivered_at_ms < before_ms`, at most `limit` of
    /// them, with the own messages of their instances; returns how many were dropped. They
    /// still count as delivered.
    fn prune_deliveries(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError>;

    /// Commits an engine [`Batch`] (seq counters, own messages, deliveries, in that order) and
    /// reports what each item did. [`RedbStore`] does it in one transaction; this default
    /// applies the items one by one (enough for a store that cannot crash halfway).
    fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
        for (stream, next) in &batch.next_seq {
            while self.peek_seq(*stream)? < *next {
                self.reserve_seq(*stream)?;
            }
        }
        let mut committed = Committed::default();
        for own in &batch.own {
            committed.own.push(self.record_own_message(own.instance_origin, own.seq, own.kind, &own.envelope)?);
        }
        for delivery in &batch.deliveries {
            committed.deliveries.push(self.insert_delivery(delivery)?);
        }
        if let Some(before_ms) = batch.prune_before_ms {
            committed.pruned = self.prune_deliveries(before_ms, MAX_PRUNED_PER_BATCH)?;
        }
        self.commit_sanctions(batch)?;
        Ok(committed)
    }

    /// Writes the bans, exclusions and gossip ids of `batch` (and forgets expired ids), with
    /// the bounds of [`KeptSanctions`]. Refuses evidence over [`MAX_EVIDENCE_LEN`].
    fn commit_sanctions(&self, batch: &Batch) -> Result<(), StoreError>;

    /// Fills the bans, exclusions and gossip ids of `recovered`.
    fn recover_sanctions(&self, recovered: &mut Recovered) -> Result<(), StoreError>;

    /// Durably sets the application cursor `name` (at most [`MAX_APP_CURSOR_NAME_LEN`] bytes)
    /// to `cursor`, which may not be past [`Store::last_cursor`].
    fn set_app_cursor(&self, name: &str, cursor: u64) -> Result<(), StoreError>;

    /// The application cursor `name` (0 when unset).
    fn app_cursor(&self, name: &str) -> Result<u64, StoreError>;
}

/// What an engine needs from the store at start.
pub fn recover(store: &dyn Store) -> Result<Recovered, StoreError> {
    let mut recovered = Recovered {
        next_broadcast_seq: store.peek_seq(SeqStream::Broadcast)?,
        next_gossip_seq: store.peek_seq(SeqStream::Gossip)?,
        own: store.own_messages()?,
        watermarks: store.high_watermarks()?,
        last_cursor: store.last_cursor()?,
        ..Recovered::default()
    };
    store.recover_sanctions(&mut recovered)?;
    Ok(recovered)
}

/// Checks the size bounds of the evidence in a batch.
fn check_sanctions(batch: &Batch) -> Result<(), StoreError> {
    for exclusion in &batch.exclusions {
        check_len("evidence", exclusion.evidence.len(), MAX_EVIDENCE_LEN)?;
    }
    for kept in &batch.kept_gossip {
        check_len("kept gossip envelope", kept.envelope.len(), MAX_ENVELOPE_LEN)?;
    }
    Ok(())
}

/// A store read as the engine's [`DeliveryLog`] (for sync serving plans). A read error reads
/// as "not held": the requester asks someone else.
pub struct StoreLog<'a>(pub &'a dyn Store);

impl DeliveryLog for StoreLog<'_> {
    fn delivery(&self, origin: &PublicKey, seq: u64) -> Option<StoredDelivery> {
        self.0.delivery(*origin, seq).ok().flatten().map(|(_, d)| d)
    }

    fn watermarks(&self) -> Vec<Watermark> {
        self.0.high_watermarks().unwrap_or_default()
    }
}

/// Whom a store belongs to: a network and a node key ([`Store::bind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The network id (the genesis hash).
    pub network: NetworkId,
    /// The node's public key.
    pub key: PublicKey,
}

/// The check [`Store::bind`] makes, shared by both stores.
fn check_binding(stored: (NetworkId, PublicKey), network: NetworkId, key: PublicKey) -> Result<(), StoreError> {
    let (stored_network, stored_key) = stored;
    if stored_network == network && stored_key == key {
        return Ok(());
    }
    Err(StoreError::BoundToOther {
        stored: Box::new(Owner { network: stored_network, key: stored_key }),
        opened: Box::new(Owner { network, key }),
    })
}

/// Checks the size bounds of a delivery.
fn check_delivery(delivery: &StoredDelivery) -> Result<(), StoreError> {
    check_len("value", delivery.value.len(), MAX_VALUE_LEN)?;
    check_len("certificate", delivery.certificate.len(), MAX_CERTIFICATE_LEN)
}

fn check_len(what: &'static str, len: usize, limit: usize) -> Result<(), StoreError> {
    if len > limit {
        return Err(StoreError::TooLarge { what, len, limit });
    }
    Ok(())
}

/// The next value of a counter, or [`StoreError::Exhausted`].
fn next_of(value: u64, what: &'static str) -> Result<u64, StoreError> {
    value.checked_add(1).ok_or(StoreError::Exhausted(what))
}
