//! [`MemoryStore`]: the [`Store`] for tests. Same semantics as [`super::RedbStore`], nothing on disk.

use super::{
    Batch, KeptSanctions, Recovered, check_sanctions,
    Appended, FIRST_SEQ, MAX_APP_CURSOR_NAME_LEN, MAX_DELIVERIES_PAGE, MAX_OWN_MESSAGE_LEN, OwnMessage, SeqStream,
    Store, StoreError, StoredDelivery, Watermark, check_binding, check_delivery, check_len, next_of,
};
use byzgossip_crypto::{Kind, NetworkId, PublicKey};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
pub(super) struct State {
    pub(super) next_seq: BTreeMap<SeqStream, u64>,
    own: BTreeMap<(PublicKey, u64, u8), Vec<u8>>,
    deliveries: BTreeMap<u64, StoredDelivery>,
    /// `(origin, seq) -> cursor`, kept after pruning while `seq >= low` of the origin.
    index: BTreeMap<(PublicKey, u64), u64>,
    watermarks: BTreeMap<PublicKey, Watermark>,
    last_cursor: u64,
    app: BTreeMap<String, u64>,
    identity: Option<(NetworkId, PublicKey)>,
    sanctions: KeptSanctions,
}

/// A [`Store`] in memory, for tests: lost when dropped.
#[derive(Default)]
pub struct MemoryStore {
    pub(super) state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        self.state.lock().map_err(|_| StoreError::Poisoned)
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl Store for MemoryStore {
    fn commit_sanctions(&self, batch: &Batch) -> Result<(), StoreError> {
        check_sanctions(batch)?;
        self.lock()?.sanctions.apply(batch);
        Ok(())
    }

    fn recover_sanctions(&self, recovered: &mut Recovered) -> Result<(), StoreError> {
        self.lock()?.sanctions.recover_into(recovered);
        Ok(())
    }

    fn bind(&self, network: NetworkId, key: PublicKey) -> Result<(), StoreError> {
        let mut state = self.lock()?;
        match state.identity {
            Some(stored) => check_binding(stored, network, key),
            None => {
                state.identity = Some((network, key));
                Ok(())
            }
        }
    }

    fn reserve_seq(&self, stream: SeqStream) -> Result<u64, StoreError> {
        let mut state = self.lock()?;
        let seq = state.next_seq.get(&stream).copied().unwrap_or(FIRST_SEQ);
        let next = next_of(seq, "sequence")?;
        state.next_seq.insert(stream, next);
        Ok(seq)
    }

    fn peek_seq(&self, stream: SeqStream) -> Result<u64, StoreError> {
        Ok(self.lock()?.next_seq.get(&stream).copied().unwrap_or(FIRST_SEQ))
    }

    fn record_own_message(
        &self,
        instance_origin: PublicKey,
        seq: u64,
        kind: Kind,
        envelope: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        check_len("own message", envelope.len(), MAX_OWN_MESSAGE_LEN)?;
        let mut state = self.lock()?;
        let key = (instance_origin, seq, kind as u8);
        if let Some(first) = state.own.get(&key) {
            return Ok(Some(first.clone()));
        }
        state.own.insert(key, envelope.to_vec());
        Ok(None)
    }

    fn own_message(&self, instance_origin: PublicKey, seq: u64, kind: Kind) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock()?.own.get(&(instance_origin, seq, kind as u8)).cloned())
    }

    fn own_messages(&self) -> Result<Vec<OwnMessage>, StoreError> {
        let state = self.lock()?;
        state
            .own
            .iter()
            .map(|(&(instance_origin, seq, kind), envelope)| {
                let kind = Kind::from_u8(kind).ok_or_else(|| StoreError::Corrupt(format!("own message kind {kind}")))?;
                Ok(OwnMessage { instance_origin, seq, kind, envelope: envelope.clone() })
            })
            .collect()
    }

    fn prune_own_messages(&self, instance_origin: PublicKey, below_seq: u64) -> Result<usize, StoreError> {
        let mut state = self.lock()?;
        let before = state.own.len();
        state.own.retain(|&(origin, seq, _), _| origin != instance_origin || seq >= below_seq);
        Ok(before - state.own.len())
    }

    fn insert_delivery(&self, delivery: &StoredDelivery) -> Result<Appended, StoreError> {
        check_delivery(delivery)?;
        let mut state = self.lock()?;
        let (origin, seq) = (delivery.origin, delivery.seq);
        if let Some(&cursor) = state.index.get(&(origin, seq)) {
            return Ok(Appended::Existing(cursor));
        }
        if state.watermarks.get(&origin).is_some_and(|w| seq < w.low) {
            return Ok(Appended::Pruned);
        }
        let cursor = next_of(state.last_cursor, "delivery cursor")?;
        state.last_cursor = cursor;
        state.deliveries.insert(cursor, delivery.clone());
        state.index.insert((origin, seq), cursor);
        let mut mark =
            state.watermarks.get(&origin).copied().unwrap_or(Watermark { origin, low: FIRST_SEQ, high: seq, count: 0 });
        mark.count += 1;
        mark.high = mark.high.max(seq);
        if seq == mark.low {
            // Advance over seqs delivered earlier, dropping pruned ones' index entries.
            while mark.low < u64::MAX {
                mark.low += 1;
                let Some(&next) = state.index.get(&(origin, mark.low)) else { break };
                if !state.deliveries.contains_key(&next) {
                    state.index.remove(&(origin, mark.low));
                }
            }
        }
        state.watermarks.insert(origin, mark);
        Ok(Appended::New(cursor))
    }

    fn deliveries_from(&self, cursor: u64, limit: usize) -> Result<Vec<(u64, StoredDelivery)>, StoreError> {
        let state = self.lock()?;
        let limit = limit.min(MAX_DELIVERIES_PAGE);
        Ok(state.deliveries.range(cursor..).take(limit).map(|(&c, d)| (c, d.clone())).collect())
    }

    fn delivery(&self, origin: PublicKey, seq: u64) -> Result<Option<(u64, StoredDelivery)>, StoreError> {
        let state = self.lock()?;
        let Some(&cursor) = state.index.get(&(origin, seq)) else { return Ok(None) };
        Ok(state.deliveries.get(&cursor).map(|d| (cursor, d.clone())))
    }

    fn last_cursor(&self) -> Result<u64, StoreError> {
        Ok(self.lock()?.last_cursor)
    }

    fn high_watermarks(&self) -> Result<Vec<Watermark>, StoreError> {
        Ok(self.lock()?.watermarks.values().copied().collect())
    }

    fn prune_deliveries(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let mut guard = self.lock()?;
        let state = &mut *guard;
        // Oldest first, as the redb store (delivery times rise with cursors but for clocks).
        let mut old: Vec<(u64, u64, PublicKey, u64)> = state
            .deliveries
            .iter()
            .filter(|(_, d)| d.delivered_at_ms < before_ms)
            .map(|(&c, d)| (d.delivered_at_ms, c, d.origin, d.seq))
            .collect();
        old.sort_unstable();
        old.truncate(limit);
        let old: Vec<(u64, PublicKey, u64)> = old.into_iter().map(|(_, c, o, s)| (c, o, s)).collect();
        for &(cursor, origin, seq) in &old {
            state.deliveries.remove(&cursor);
            state.own.retain(|&(o, s, _), _| o != origin || s != seq);
            if state.watermarks.get(&origin).is_some_and(|w| seq < w.low) {
                state.index.remove(&(origin, seq));
            }
        }
        Ok(old.len())
    }

    fn set_app_cursor(&self, name: &str, cursor: u64) -> Result<(), StoreError> {
        check_len("application cursor name", name.len(), MAX_APP_CURSOR_NAME_LEN)?;
        let mut state = self.lock()?;
        if cursor > state.last_cursor {
            return Err(StoreError::CursorAhead { cursor, last: state.last_cursor });
        }
        state.app.insert(name.to_owned(), cursor);
        Ok(())
    }

    fn app_cursor(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self.lock()?.app.get(name).copied().unwrap_or(0))
    }
}
