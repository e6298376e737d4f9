//! The simulator's in-memory store: applies the engine's [`Batch`]es and answers
//! [`Committed`] with the semantics of the node's stores (`byzgossip_node::storage`,
//! `MemoryStore`): seq counters only rise, the first own message recorded per
//! `(origin, seq, kind)` wins forever, a delivery is appended at most once per
//! `(origin, seq)` under dense cursors from 1, and per-origin watermarks advance over
//! contiguous seqs. It survives a simulated crash (it is the node's disk) and produces the
//! [`Recovered`] a restarted engine starts from. No delivery is pruned (runs are short);
//! bans, exclusions and gossip ids follow [`KeptSanctions`].

use byzgossip_crypto::{Kind, PublicKey};
use byzgossip_engine::store::FIRST_SEQ;
use byzgossip_engine::{Appended, Batch, Committed, DeliveryLog, KeptSanctions, OwnMessage, Recovered, SeqStream, StoredDelivery, Watermark};
use std::collections::BTreeMap;

/// One node's durable state.
#[derive(Default)]
pub struct SimStore {
    next_seq: BTreeMap<SeqStream, u64>,
    own: BTreeMap<(PublicKey, u64, u8), Vec<u8>>,
    deliveries: BTreeMap<u64, StoredDelivery>,
    index: BTreeMap<(PublicKey, u64), u64>,
    watermarks: BTreeMap<PublicKey, Watermark>,
    last_cursor: u64,
    sanctions: KeptSanctions,
}

impl SimStore {
    /// Commits `batch` in one step: seq counters, own messages, deliveries, in that order.
    pub fn commit(&mut self, batch: &Batch) -> Committed {
        for (stream, next) in &batch.next_seq {
            let entry = self.next_seq.entry(*stream).or_insert(FIRST_SEQ);
            *entry = (*entry).max(*next);
        }
        let mut committed = Committed::default();
        for own in &batch.own {
            let key = (own.instance_origin, own.seq, own.kind as u8);
            match self.own.get(&key) {
                Some(first) => committed.own.push(Some(first.clone())),
                None => {
                    self.own.insert(key, own.envelope.clone());
                    committed.own.push(None);
                }
            }
        }
        for delivery in &batch.deliveries {
            committed.deliveries.push(self.insert_delivery(delivery));
        }
        self.sanctions.apply(batch);
        committed
    }

    fn insert_delivery(&mut self, delivery: &StoredDelivery) -> Appended {
        let (origin, seq) = (delivery.origin, delivery.seq);
        if let Some(&cursor) = self.index.get(&(origin, seq)) {
            return Appended::Existing(cursor);
        }
        if self.watermarks.get(&origin).is_some_and(|w| seq < w.low) {
            return Appended::Pruned;
        }
        self.last_cursor += 1;
        let cursor = self.last_cursor;
        self.deliveries.insert(cursor, delivery.clone());
        self.index.insert((origin, seq), cursor);
        let mut mark = self.watermarks.get(&origin).copied().unwrap_or(Watermark { origin, low: FIRST_SEQ, high: seq, count: 0 });
        mark.count += 1;
        mark.high = mark.high.max(seq);
        if seq == mark.low {
            while mark.low < u64::MAX {
                mark.low += 1;
                if !self.index.contains_key(&(origin, mark.low)) {
                    break;
                }
            }
        }
        self.watermarks.insert(origin, mark);
        Appended::New(cursor)
    }

    /// What an engine starting on this store recovers.
    pub fn recover(&self) -> Recovered {
        let own = self
            .own
            .iter()
            .filter_map(|(&(instance_origin, seq, kind), envelope)| {
                Some(OwnMessage { instance_origin, seq, kind: Kind::from_u8(kind)?, envelope: envelope.clone() })
            })
            .collect();
        let mut recovered = Recovered {
            next_broadcast_seq: self.next_seq.get(&SeqStream::Broadcast).copied().unwrap_or(FIRST_SEQ),
            next_gossip_seq: self.next_seq.get(&SeqStream::Gossip).copied().unwrap_or(FIRST_SEQ),
            own,
            watermarks: self.watermarks.values().copied().collect(),
            last_cursor: self.last_cursor,
            ..Recovered::default()
        };
        self.sanctions.recover_into(&mut recovered);
        recovered
    }

    /// The delivery log in cursor order.
    pub fn log(&self) -> impl Iterator<Item = (&u64, &StoredDelivery)> {
        self.deliveries.iter()
    }

    /// Seq counters (broadcast, gossip).
    pub fn next_seqs(&self) -> (u64, u64) {
        let get = |s| self.next_seq.get(&s).copied().unwrap_or(FIRST_SEQ);
        (get(SeqStream::Broadcast), get(SeqStream::Gossip))
    }
}

impl DeliveryLog for SimStore {
    fn delivery(&self, origin: &PublicKey, seq: u64) -> Option<StoredDelivery> {
        let cursor = self.index.get(&(*origin, seq))?;
        self.deliveries.get(cursor).cloned()
    }

    fn watermarks(&self) -> Vec<Watermark> {
        self.watermarks.values().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzgossip_crypto::Digest;

    fn delivery(origin: u8, seq: u64) -> StoredDelivery {
        StoredDelivery {
            origin: PublicKey([origin; 32]),
            seq,
            digest: Digest::of(&[origin]),
            value: vec![origin],
            certificate: vec![],
            delivered_at_ms: 1,
        }
    }

    #[test]
    fn deliveries_once_with_dense_cursors_and_first_own_message_wins() {
        let mut store = SimStore::default();
        let own = |envelope: u8| OwnMessage { instance_origin: PublicKey([1; 32]), seq: 0, kind: Kind::BrachaEcho, envelope: vec![envelope] };
        let batch = Batch {
            id: 1,
            next_seq: vec![(SeqStream::Broadcast, 3)],
            own: vec![own(1), own(2)],
            deliveries: vec![delivery(1, 1), delivery(1, 0), delivery(1, 1)],
            ..Default::default()
        };
        let c = store.commit(&batch);
        assert_eq!(c.own, vec![None, Some(vec![1])]);
        assert_eq!(c.deliveries, vec![Appended::New(1), Appended::New(2), Appended::Existing(1)]);
        let r = store.recover();
        assert_eq!((r.next_broadcast_seq, r.last_cursor, r.own.len()), (3, 2, 1));
        assert_eq!(r.watermarks[0].low, 2, "low advances over contiguous seqs");
        store.commit(&Batch { id: 2, next_seq: vec![(SeqStream::Broadcast, 1)], ..Default::default() });
        assert_eq!(store.recover().next_broadcast_seq, 3, "counters never go down");
    }
}
