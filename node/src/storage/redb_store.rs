//! [`RedbStore`]: the [`Store`] in one redb file.
//!
//! # Tables (integers are redb's fixed-width encodings; keys sort numerically)
//!
//! | table          | key                                   | value                                                      |
//! |----------------|---------------------------------------|------------------------------------------------------------|
//! | `meta`         | `&str`: `schema_version`, `next_seq/broadcast`, `next_seq/gossip`, `last_cursor` | `u64`   |
//! | `own_messages` | `(instance_origin [u8;32], seq u64, kind u8)` | envelope `&[u8]`                                   |
//! | `deliveries`   | cursor `u64`                          | `(origin [u8;32], seq u64, digest [u8;32], delivered_at_ms u64, value &[u8], certificate &[u8])` |
//! | `delivered`    | `(origin [u8;32], seq u64)`           | cursor `u64` (kept after pruning while `seq >= low`)        |
//! | `by_time`      | `(delivered_at_ms u64, cursor u64)`   | `()` (retention index)                                     |
//! | `watermarks`   | origin `[u8;32]`                      | `(low u64, high u64, count u64)`                           |
//! | `app_cursors`  | name `&str`                           | cursor `u64`                                               |
//! | `identity`     | `&str`: `network`, `public_key`       | `[u8; 32]` (written by the first [`Store::bind`])          |
//! | `bans`         | peer `[u8;32]`                        | `(bans u32, until_ms u64)` (at most `MAX_STORED_BANS`)      |
//! | `exclusions`   | member `[u8;32]`                      | evidence `&[u8]` (first kept; at most `MAX_STORED_EXCLUSIONS`) |
//! | `gossip_ids`   | `(expires_at_ms u64, id [u8;32])`     | origin `[u8;32]` (forgotten once expired, a page per commit) |
//! | `gossip_kept`  | `(origin [u8;32], seq u64)`           | `(timestamp_ms u64, envelope &[u8])` (mirrors the engine's recent-gossip buffer: at most 4096 rows, 32 MiB) |
//!
//! Records are redb's own tuple encoding, not the codec: no length limit is needed to read
//! them back and the large fields (value, certificate) are stored as they are.
//!
//! Every write is one write transaction committed with redb's default durability
//! (`Immediate`: fsynced before `commit` returns). Two `RedbStore`s cannot hold one file: redb
//! takes an exclusive file lock, released when the store is dropped (or the process dies).

use super::{
    KeptGossip, MAX_STORED_BANS, MAX_STORED_EXCLUSIONS, RECENT_GOSSIP_ENTRIES, Recovered, StoredBan, StoredExclusion, StoredGossipId,
    check_sanctions,
    Appended, Batch, Committed, FIRST_SEQ, MAX_APP_CURSOR_NAME_LEN, MAX_DELIVERIES_PAGE, MAX_OWN_MESSAGE_LEN, MAX_PRUNED_PER_BATCH, OwnMessage,
    SeqStream, Store, StoreError, StoredDelivery, Watermark, check_binding, check_delivery, check_len, next_of,
};
use byzgossip_crypto::{Digest, Kind, NetworkId, PublicKey};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::{Path, PathBuf};

/// The database file inside the data directory.
pub const DB_FILE_NAME: &str = "byzgossip.redb";
/// The table layout version written in `meta`; opening a file with another one fails.
pub const SCHEMA_VERSION: u64 = 1;

type DeliveryRow<'a> = ([u8; 32], u64, [u8; 32], u64, &'a [u8], &'a [u8]);

pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const OWN: TableDefinition<([u8; 32], u64, u8), &[u8]> = TableDefinition::new("own_messages");
const DELIVERIES: TableDefinition<u64, DeliveryRow<'static>> = TableDefinition::new("deliveries");
const DELIVERED: TableDefinition<([u8; 32], u64), u64> = TableDefinition::new("delivered");
const BY_TIME: TableDefinition<(u64, u64), ()> = TableDefinition::new("by_time");
const WATERMARKS: TableDefinition<[u8; 32], (u64, u64, u64)> = TableDefinition::new("watermarks");
const APP_CURSORS: TableDefinition<&str, u64> = TableDefinition::new("app_cursors");
/// A table of its own (not `meta`, whose values are `u64`): a data dir of an older build
/// simply lacks it, and the first [`Store::bind`] fills it.
const IDENTITY: TableDefinition<&str, [u8; 32]> = TableDefinition::new("identity");

/// Tables of their own, created on open: a data dir of an older build simply starts empty.
const BANS: TableDefinition<[u8; 32], (u32, u64)> = TableDefinition::new("bans");
const EXCLUSIONS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("exclusions");
const GOSSIP_IDS: TableDefinition<(u64, [u8; 32]), [u8; 32]> = TableDefinition::new("gossip_ids");
/// `gossip_kept` rows: `(origin, seq)` -> `(timestamp_ms, envelope)`.
type KeptKey = ([u8; 32], u64);
type KeptRow = (u64, &'static [u8]);
const GOSSIP_KEPT: TableDefinition<KeptKey, KeptRow> = TableDefinition::new("gossip_kept");

const KEY_NETWORK: &str = "network";
const KEY_PUBLIC_KEY: &str = "public_key";

const KEY_SCHEMA: &str = "schema_version";
const KEY_LAST_CURSOR: &str = "last_cursor";

fn seq_key(stream: SeqStream) -> &'static str {
    match stream {
        SeqStream::Broadcast => "next_seq/broadcast",
        SeqStream::Gossip => "next_seq/gossip",
    }
}

/// redb's page cache (its default is 1 GiB, which would let a busy node's memory grow far
/// past the tens of MiB a testnet node should use). Reads past the cache go to the OS page
/// cache, which is cheap for this workload.
pub const CACHE_BYTES: usize = 16 << 20;

/// A [`Store`] in `<data_dir>/byzgossip.redb`.
pub struct RedbStore {
    pub(super) db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (creating the directory and file if missing) `data_dir/byzgossip.redb`. After a
    /// crash redb repairs the file here, which takes time proportional to its size.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StoreError::Io { path: data_dir.to_path_buf(), source })?;
        let path = data_dir.join(DB_FILE_NAME);
        let db = redb::Builder::new().set_cache_size(CACHE_BYTES).create(&path).map_err(|error| match error {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen(path.clone()),
            other => other.into(),
        })?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let version = meta.get(KEY_SCHEMA)?.map(|v| v.value());
            match version {
                None => {
                    meta.insert(KEY_SCHEMA, SCHEMA_VERSION)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(other) => {
                    return Err(StoreError::Corrupt(format!(
                        "{} has schema version {other}, this build reads {SCHEMA_VERSION}",
                        path.display()
                    )));
                }
            }
            // Create every table so read transactions can open them.
            txn.open_table(OWN)?;
            txn.open_table(DELIVERIES)?;
            txn.open_table(DELIVERED)?;
            txn.open_table(BY_TIME)?;
            txn.open_table(WATERMARKS)?;
            txn.open_table(APP_CURSORS)?;
            txn.open_table(IDENTITY)?;
            txn.open_table(BANS)?;
            txn.open_table(EXCLUSIONS)?;
            txn.open_table(GOSSIP_IDS)?;
            txn.open_table(GOSSIP_KEPT)?;
        }
        txn.commit()?;
        tracing::debug!(path = %path.display(), "store opened");
        Ok(Self { db, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn kind_of(byte: u8) -> Result<Kind, StoreError> {
    Kind::from_u8(byte).ok_or_else(|| StoreError::Corrupt(format!("own message kind {byte}")))
}

fn delivery_of(row: DeliveryRow<'_>) -> StoredDelivery {
    let (origin, seq, digest, delivered_at_ms, value, certificate) = row;
    StoredDelivery {
        origin: PublicKey(origin),
        seq,
        digest: Digest(digest),
        value: value.to_vec(),
        certificate: certificate.to_vec(),
        delivered_at_ms,
    }
}

fn watermark_of(origin: [u8; 32], (low, high, count): (u64, u64, u64)) -> Watermark {
    Watermark { origin: PublicKey(origin), low, high, count }
}

/// Records an own message in `txn` unless one is recorded for its slot (returned instead).
fn record_own_in(
    txn: &redb::WriteTransaction,
    instance_origin: PublicKey,
    seq: u64,
    kind: Kind,
    envelope: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    let key = (instance_origin.0, seq, kind as u8);
    let mut own = txn.open_table(OWN)?;
    if let Some(first) = own.get(key)? {
        return Ok(Some(first.value().to_vec()));
    }
    own.insert(key, envelope)?;
    Ok(None)
}

/// Appends a delivery in `txn` at most once per `(origin, seq)`.
/// Drops the oldest deliveries made before `before_ms`, at most `limit`, with the own
/// messages of their instances, inside `txn`; returns how many.
fn prune_in(txn: &redb::WriteTransaction, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
    let mut by_time = txn.open_table(BY_TIME)?;
    let old: Vec<(u64, u64)> =
        by_time.range(..(before_ms, 0))?.take(limit).map(|e| e.map(|(k, _)| k.value())).collect::<Result<_, _>>()?;
    let mut deliveries = txn.open_table(DELIVERIES)?;
    let mut delivered = txn.open_table(DELIVERED)?;
    let mut own = txn.open_table(OWN)?;
    let watermarks = txn.open_table(WATERMARKS)?;
    for &(at, cursor) in &old {
        by_time.remove((at, cursor))?;
        let Some(row) = deliveries.remove(cursor)? else { continue };
        let (origin, seq, ..) = row.value();
        drop(row);
        let kinds: Vec<_> = own
            .range((origin, seq, 0u8)..=(origin, seq, u8::MAX))?
            .map(|e| e.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()?;
        for key in &kinds {
            own.remove(key)?;
        }
        let low = watermarks.get(origin)?.map_or(FIRST_SEQ, |v| v.value().0);
        if seq < low {
            delivered.remove((origin, seq))?;
        }
    }
    Ok(old.len())
}

/// Writes the bans, exclusions and gossip ids of `batch` in `txn`, with the bounds of
/// [`KeptSanctions`]: a new peer's ban row past [`MAX_STORED_BANS`] replaces the row whose ban
/// ended first (a scan of the table, only when it is full); a member's first exclusion stays
/// and none is added past [`MAX_STORED_EXCLUSIONS`]; at most [`MAX_PRUNED_PER_BATCH`] expired
/// gossip ids are forgotten per commit (an expired id left over is refused at restore, and the
/// next batch with gossip forgets more).
fn commit_sanctions_in(txn: &redb::WriteTransaction, batch: &Batch) -> Result<(), StoreError> {
    let mut bans = txn.open_table(BANS)?;
    for ban in &batch.bans {
        let known = bans.get(ban.peer.0)?.is_some();
        if !known && bans.len()? as usize >= MAX_STORED_BANS {
            let mut oldest: Option<(u64, [u8; 32])> = None;
            for entry in bans.iter()? {
                let (peer, row) = entry?;
                let (_, until) = row.value();
                if oldest.is_none_or(|(u, p)| (until, peer.value()) < (u, p)) {
                    oldest = Some((until, peer.value()));
                }
            }
            if let Some((_, peer)) = oldest {
                bans.remove(peer)?;
            }
        }
        bans.insert(ban.peer.0, (ban.bans, ban.until_ms))?;
    }
    let mut exclusions = txn.open_table(EXCLUSIONS)?;
    for exclusion in &batch.exclusions {
        if exclusions.get(exclusion.member.0)?.is_none() && (exclusions.len()? as usize) < MAX_STORED_EXCLUSIONS {
            exclusions.insert(exclusion.member.0, exclusion.evidence.as_slice())?;
        }
    }
    let mut gossip = txn.open_table(GOSSIP_IDS)?;
    for g in &batch.gossip {
        gossip.insert((g.expires_at_ms, g.id), g.origin.0)?;
    }
    if let Some(before) = batch.forget_gossip_before_ms {
        let expired: Vec<(u64, [u8; 32])> = gossip
            .range(..(before, [0u8; 32]))?
            .take(MAX_PRUNED_PER_BATCH)
            .map(|e| e.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()?;
        for key in expired {
            gossip.remove(key)?;
        }
    }
    // Kept gossip: the writes, then the forgets (a row evicted within its own batch goes).
    let mut kept = txn.open_table(GOSSIP_KEPT)?;
    for k in &batch.kept_gossip {
        kept.insert((k.origin.0, k.seq), (k.timestamp_ms, k.envelope.as_slice()))?;
    }
    for (origin, seq) in &batch.forget_kept_gossip {
        kept.remove((origin.0, *seq))?;
    }
    Ok(())
}

fn insert_delivery_in(txn: &redb::WriteTransaction, delivery: &StoredDelivery) -> Result<Appended, StoreError> {
    let (origin, seq) = (delivery.origin.0, delivery.seq);
    let cursor = {
        let mut delivered = txn.open_table(DELIVERED)?;
        if let Some(cursor) = delivered.get((origin, seq))? {
            return Ok(Appended::Existing(cursor.value()));
        }
        let mut watermarks = txn.open_table(WATERMARKS)?;
        let mark = watermarks.get(origin)?.map(|v| watermark_of(origin, v.value()));
        if mark.is_some_and(|w| seq < w.low) {
            return Ok(Appended::Pruned);
        }
        let mut meta = txn.open_table(META)?;
        let last = meta.get(KEY_LAST_CURSOR)?.map_or(0, |v| v.value());
        let cursor = next_of(last, "delivery cursor")?;
        meta.insert(KEY_LAST_CURSOR, cursor)?;
        let mut deliveries = txn.open_table(DELIVERIES)?;
        let row: DeliveryRow<'_> = (
            origin,
            seq,
            delivery.digest.0,
            delivery.delivered_at_ms,
            &delivery.value,
            &delivery.certificate,
        );
        deliveries.insert(cursor, row)?;
        delivered.insert((origin, seq), cursor)?;
        txn.open_table(BY_TIME)?.insert((delivery.delivered_at_ms, cursor), ())?;
        let mut mark =
            mark.unwrap_or(Watermark { origin: delivery.origin, low: FIRST_SEQ, high: seq, count: 0 });
        mark.count += 1;
        mark.high = mark.high.max(seq);
        if seq == mark.low {
            // Advance over seqs delivered earlier, dropping pruned ones' index entries.
            while mark.low < u64::MAX {
                mark.low += 1;
                let Some(next) = delivered.get((origin, mark.low))?.map(|v| v.value()) else { break };
                if deliveries.get(next)?.is_none() {
                    delivered.remove((origin, mark.low))?;
                }
            }
        }
        watermarks.insert(origin, (mark.low, mark.high, mark.count))?;
        cursor
    };
    Ok(Appended::New(cursor))
}


impl Store for RedbStore {
    fn bind(&self, network: NetworkId, key: PublicKey) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(IDENTITY)?;
            let stored_network = table.get(KEY_NETWORK)?.map(|v| NetworkId(v.value()));
            let stored_key = table.get(KEY_PUBLIC_KEY)?.map(|v| PublicKey(v.value()));
            match (stored_network, stored_key) {
                (Some(stored_network), Some(stored_key)) => return check_binding((stored_network, stored_key), network, key),
                (None, None) => {
                    table.insert(KEY_NETWORK, *network.as_bytes())?;
                    table.insert(KEY_PUBLIC_KEY, key.0)?;
                }
                _ => return Err(StoreError::Corrupt(format!("{}: half an identity record", self.path.display()))),
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn reserve_seq(&self, stream: SeqStream) -> Result<u64, StoreError> {
        let txn = self.db.begin_write()?;
        let seq = {
            let mut meta = txn.open_table(META)?;
            let seq = meta.get(seq_key(stream))?.map_or(FIRST_SEQ, |v| v.value());
            meta.insert(seq_key(stream), next_of(seq, "sequence")?)?;
            seq
        };
        txn.commit()?;
        Ok(seq)
    }

    fn peek_seq(&self, stream: SeqStream) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(seq_key(stream))?.map_or(FIRST_SEQ, |v| v.value()))
    }

    fn record_own_message(
        &self,
        instance_origin: PublicKey,
        seq: u64,
        kind: Kind,
        envelope: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        check_len("own message", envelope.len(), MAX_OWN_MESSAGE_LEN)?;
        let txn = self.db.begin_write()?;
        let first = record_own_in(&txn, instance_origin, seq, kind, envelope)?;
        if first.is_none() {
            txn.commit()?;
        }
        Ok(first)
    }

    fn own_message(&self, instance_origin: PublicKey, seq: u64, kind: Kind) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let own = txn.open_table(OWN)?;
        Ok(own.get((instance_origin.0, seq, kind as u8))?.map(|v| v.value().to_vec()))
    }

    fn own_messages(&self) -> Result<Vec<OwnMessage>, StoreError> {
        let txn = self.db.begin_read()?;
        let own = txn.open_table(OWN)?;
        let mut out = Vec::new();
        for entry in own.iter()? {
            let (key, value) = entry?;
            let (origin, seq, kind) = key.value();
            out.push(OwnMessage {
                instance_origin: PublicKey(origin),
                seq,
                kind: kind_of(kind)?,
                envelope: value.value().to_vec(),
            });
        }
        Ok(out)
    }

    fn prune_own_messages(&self, instance_origin: PublicKey, below_seq: u64) -> Result<usize, StoreError> {
        let txn = self.db.begin_write()?;
        let pruned = {
            let mut own = txn.open_table(OWN)?;
            let start = (instance_origin.0, 0u64, 0u8);
            let end = (instance_origin.0, below_seq, 0u8);
            let keys: Vec<_> = own.range(start..end)?.map(|e| e.map(|(k, _)| k.value())).collect::<Result<_, _>>()?;
            for key in &keys {
                own.remove(key)?;
            }
            keys.len()
        };
        txn.commit()?;
        Ok(pruned)
    }

    fn insert_delivery(&self, delivery: &StoredDelivery) -> Result<Appended, StoreError> {
        check_delivery(delivery)?;
        let txn = self.db.begin_write()?;
        let appended = insert_delivery_in(&txn, delivery)?;
        if appended.is_new() {
            txn.commit()?;
        }
        Ok(appended)
    }

    fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
        for own in &batch.own {
            check_len("own message", own.envelope.len(), MAX_OWN_MESSAGE_LEN)?;
        }
        for delivery in &batch.deliveries {
            check_delivery(delivery)?;
        }
        check_sanctions(batch)?;
        // One transaction, one fsync, for everything one engine poll wrote.
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            for (stream, next) in &batch.next_seq {
                let current = meta.get(seq_key(*stream))?.map_or(FIRST_SEQ, |v| v.value());
                meta.insert(seq_key(*stream), current.max(*next))?;
            }
        }
        let mut committed = Committed::default();
        for own in &batch.own {
            committed.own.push(record_own_in(&txn, own.instance_origin, own.seq, own.kind, &own.envelope)?);
        }
        for delivery in &batch.deliveries {
            committed.deliveries.push(insert_delivery_in(&txn, delivery)?);
        }
        if let Some(before_ms) = batch.prune_before_ms {
            committed.pruned = prune_in(&txn, before_ms, MAX_PRUNED_PER_BATCH)?;
        }
        commit_sanctions_in(&txn, batch)?;
        txn.commit()?;
        Ok(committed)
    }

    fn commit_sanctions(&self, batch: &Batch) -> Result<(), StoreError> {
        check_sanctions(batch)?;
        let txn = self.db.begin_write()?;
        commit_sanctions_in(&txn, batch)?;
        txn.commit()?;
        Ok(())
    }

    fn recover_sanctions(&self, recovered: &mut Recovered) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        let bans = txn.open_table(BANS)?;
        recovered.bans = bans
            .iter()?
            .map(|e| {
                e.map(|(peer, row)| {
                    let (count, until_ms) = row.value();
                    StoredBan { peer: PublicKey(peer.value()), bans: count, until_ms }
                })
            })
            .collect::<Result<_, _>>()?;
        let exclusions = txn.open_table(EXCLUSIONS)?;
        recovered.exclusions = exclusions
            .iter()?
            .map(|e| e.map(|(member, evidence)| StoredExclusion { member: PublicKey(member.value()), evidence: evidence.value().to_vec() }))
            .collect::<Result<_, _>>()?;
        let gossip = txn.open_table(GOSSIP_IDS)?;
        recovered.gossip = gossip
            .iter()?
            .map(|e| {
                e.map(|(key, origin)| {
                    let (expires_at_ms, id) = key.value();
                    StoredGossipId { id, origin: PublicKey(origin.value()), expires_at_ms }
                })
            })
            .collect::<Result<_, _>>()?;
        // Bounded like the buffer it mirrors, whatever the file holds.
        let kept = txn.open_table(GOSSIP_KEPT)?;
        recovered.kept_gossip = kept
            .iter()?
            .take(RECENT_GOSSIP_ENTRIES)
            .map(|e| {
                e.map(|(key, row)| {
                    let ((origin, seq), (timestamp_ms, envelope)) = (key.value(), row.value());
                    KeptGossip { origin: PublicKey(origin), seq, timestamp_ms, envelope: envelope.to_vec() }
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    fn deliveries_from(&self, cursor: u64, limit: usize) -> Result<Vec<(u64, StoredDelivery)>, StoreError> {
        let limit = limit.min(MAX_DELIVERIES_PAGE);
        let txn = self.db.begin_read()?;
        let deliveries = txn.open_table(DELIVERIES)?;
        let mut out = Vec::with_capacity(limit);
        for entry in deliveries.range(cursor..)?.take(limit) {
            let (key, value) = entry?;
            out.push((key.value(), delivery_of(value.value())));
        }
        Ok(out)
    }

    fn delivery(&self, origin: PublicKey, seq: u64) -> Result<Option<(u64, StoredDelivery)>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(cursor) = txn.open_table(DELIVERED)?.get((origin.0, seq))?.map(|v| v.value()) else {
            return Ok(None);
        };
        let deliveries = txn.open_table(DELIVERIES)?;
        Ok(deliveries.get(cursor)?.map(|v| (cursor, delivery_of(v.value()))))
    }

    fn last_cursor(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(META)?.get(KEY_LAST_CURSOR)?.map_or(0, |v| v.value()))
    }

    fn high_watermarks(&self) -> Result<Vec<Watermark>, StoreError> {
        let txn = self.db.begin_read()?;
        let watermarks = txn.open_table(WATERMARKS)?;
        let mut out = Vec::new();
        for entry in watermarks.iter()? {
            let (key, value) = entry?;
            out.push(watermark_of(key.value(), value.value()));
        }
        Ok(out)
    }

    fn prune_deliveries(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let txn = self.db.begin_write()?;
        let pruned = prune_in(&txn, before_ms, limit)?;
        txn.commit()?;
        Ok(pruned)
    }

    fn set_app_cursor(&self, name: &str, cursor: u64) -> Result<(), StoreError> {
        check_len("application cursor name", name.len(), MAX_APP_CURSOR_NAME_LEN)?;
        let txn = self.db.begin_write()?;
        {
            let last = txn.open_table(META)?.get(KEY_LAST_CURSOR)?.map_or(0, |v| v.value());
            if cursor > last {
                return Err(StoreError::CursorAhead { cursor, last });
            }
            txn.open_table(APP_CURSORS)?.insert(name, cursor)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn app_cursor(&self, name: &str) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(APP_CURSORS)?.get(name)?.map_or(0, |v| v.value()))
    }
}
