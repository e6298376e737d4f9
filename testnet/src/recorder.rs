//! What a run records, shared by the in-process and the process runtime: the records the
//! tasks of a run append to, and their assembly into a [`RunLog`].

use crate::record::{
    BroadcastRecord, DeliveryRecord, EventRecord, GossipRecord, NodeRecord, PeerSample, PublishRecord, RunLog, TrafficRecord,
    UnconfirmedRecord,
};
use crate::scenario::Scenario;
use byzgossip_crypto::{Digest, PublicKey};
use byzgossip_node::now_ms;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Locks, recovering the data of a poisoned lock (a panicked task must not hide the records).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Node `node`'s traffic record from its counters in [`TrafficRecord`] order: messages in,
/// bytes in, messages out, bytes out.
pub(crate) fn traffic_record(node: usize, [msgs_in, bytes_in, msgs_out, bytes_out]: [u64; 4]) -> TrafficRecord {
    TrafficRecord { node, msgs_in, bytes_in, msgs_out, bytes_out }
}

/// Records shared by the tasks of a run.
#[derive(Default)]
pub(crate) struct Shared {
    pub broadcasts: Mutex<Vec<BroadcastRecord>>,
    pub failures: AtomicU64,
    /// Broadcasts and publishes whose calls gave no answer ([`UnconfirmedRecord`]).
    pub unconfirmed_broadcasts: Mutex<Vec<UnconfirmedRecord>>,
    pub unconfirmed_publishes: Mutex<Vec<UnconfirmedRecord>>,
    pub publishes: Mutex<Vec<PublishRecord>>,
    pub deliveries: Mutex<Vec<DeliveryRecord>>,
    pub cursors: Mutex<HashSet<(usize, u64)>>,
    pub delivered: Mutex<HashMap<usize, HashSet<(String, u64)>>>,
    pub gossip: Mutex<Vec<GossipRecord>>,
    /// Per node, the ids (hex) of the gossip it received: what the drain check reads.
    pub received: Mutex<HashMap<usize, HashSet<String>>>,
    pub samples: Mutex<Vec<PeerSample>>,
    pub events: Mutex<Vec<EventRecord>>,
    pub disrupted_until: AtomicU64,
    pub verbose: bool,
    pub t0: AtomicU64,
    /// The simulator's virtual clock (ms since the Unix epoch); the wall clock when `None`.
    pub clock: Option<std::sync::Arc<AtomicU64>>,
    /// Answers of a node's API that broke its contract (see [`Shared::protocol_error`]).
    pub protocol_errors: AtomicU64,
}

/// Protocol errors recorded as events, one by one; beyond, they are only counted (a broken
/// field would otherwise add an event per sample, every [`crate::harness::SAMPLE_INTERVAL`]).
pub(crate) const MAX_PROTOCOL_ERROR_EVENTS: u64 = 20;

impl Shared {
    /// Now, by the run's clock.
    pub fn now(&self) -> u64 {
        match &self.clock {
            Some(clock) => clock.load(Ordering::Relaxed),
            None => now_ms(),
        }
    }

    /// Records a timeline event (and prints it when verbose).
    pub fn event(&self, what: String) {
        let t = self.now();
        if self.verbose {
            eprintln!("[{:>7.2} s] {what}", t.saturating_sub(self.t0.load(Ordering::Relaxed)) as f64 / 1000.0);
        }
        lock(&self.events).push(EventRecord { t_ms: t, what });
    }

    /// Records that a node's API answered something it does not promise (a missing or
    /// malformed field): counted, and an event in the run log (the first
    /// [`MAX_PROTOCOL_ERROR_EVENTS`]; [`Shared::log`] adds the total). Never read as a default.
    pub fn protocol_error(&self, what: String) {
        let seen = self.protocol_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%what, "node API protocol error");
        if seen < MAX_PROTOCOL_ERROR_EVENTS {
            self.event(format!("protocol error: {what}"));
        }
    }

    /// Records correct node `node`'s Bracha delivery at `cursor` (once per node and cursor: a
    /// stream resumed from an earlier cursor repeats some). Returns whether it was new.
    pub fn record_bracha(&self, node: usize, cursor: u64, origin: &PublicKey, seq: u64, digest: &Digest, delivered_at_ms: u64) -> bool {
        if !lock(&self.cursors).insert((node, cursor)) {
            return false;
        }
        let origin = origin.to_hex();
        lock(&self.delivered).entry(node).or_default().insert((origin.clone(), seq));
        lock(&self.deliveries).push(DeliveryRecord { node, origin, seq, digest: digest.to_hex(), delivered_at_ms, cursor });
        true
    }

    /// Records a gossip message correct node `node` (in its `incarnation`) received now.
    pub fn record_gossip(&self, node: usize, incarnation: u32, origin: &PublicKey, id: &byzgossip_crypto::MessageId, hops: Option<u8>) {
        let id = id.to_hex();
        lock(&self.received).entry(node).or_default().insert(id.clone());
        let record = GossipRecord { node, incarnation, origin: origin.to_hex(), id, received_at_ms: self.now(), hops };
        lock(&self.gossip).push(record);
    }

    /// Whether every node of `live` (the correct nodes up now) delivered every honest
    /// broadcast and every instance any correct node delivered, and received every honest
    /// gossip message but its own. `keys` are the nodes' keys (hex), by index.
    pub fn drained(&self, keys: &[String], live: impl IntoIterator<Item = usize>) -> bool {
        let mut want: HashSet<(String, u64)> = lock(&self.broadcasts).iter().map(|b| (keys[b.origin].clone(), b.seq)).collect();
        let delivered = lock(&self.delivered);
        for set in delivered.values() {
            want.extend(set.iter().cloned());
        }
        let publishes = lock(&self.publishes);
        let received = lock(&self.received);
        live.into_iter().all(|i| {
            let bracha = delivered.get(&i).is_some_and(|set| want.is_subset(set));
            let gossip = publishes.iter().filter(|p| p.origin != i).all(|p| received.get(&i).is_some_and(|ids| ids.contains(&p.id)));
            bracha && gossip
        })
    }

    /// Marks now as disrupted (timed invariants are measured from the last disruption).
    pub fn disrupted(&self) {
        self.disrupted_until.fetch_max(self.now(), Ordering::Relaxed);
    }

    /// The run log: the records so far, with the runtime's node and traffic records.
    pub fn log(
        &self,
        scenario: &Scenario,
        nodes: Vec<NodeRecord>,
        traffic: Vec<TrafficRecord>,
        (t0_ms, load_end_ms, end_ms): (u64, u64, u64),
    ) -> RunLog {
        let t = &scenario.timeline;
        let ms = |s: f64| t0_ms + (s * 1000.0) as u64;
        let mut events = lock(&self.events).clone();
        let errors = self.protocol_errors.load(Ordering::Relaxed);
        if errors > 0 {
            let listed = errors.min(MAX_PROTOCOL_ERROR_EVENTS);
            let what = format!("protocol errors: {errors} answers of node APIs broke their contract (the first {listed} are listed)");
            events.push(EventRecord { t_ms: end_ms, what });
        }
        let mut deliveries = lock(&self.deliveries).clone();
        deliveries.sort_by_key(|d| (d.node, d.cursor));
        RunLog {
            scenario: scenario.clone(),
            n: scenario.nodes,
            f: scenario.f(),
            nodes,
            t0_ms,
            attack_start_ms: ms(t.warmup_s),
            attack_end_ms: ms(t.warmup_s + t.attack_s),
            load_end_ms,
            end_ms,
            disrupted_until_ms: self.disrupted_until.load(Ordering::Relaxed),
            broadcasts: lock(&self.broadcasts).clone(),
            broadcast_failures: self.failures.load(Ordering::Relaxed),
            unconfirmed_broadcasts: lock(&self.unconfirmed_broadcasts).clone(),
            publishes: lock(&self.publishes).clone(),
            unconfirmed_publishes: lock(&self.unconfirmed_publishes).clone(),
            deliveries,
            gossip: lock(&self.gossip).clone(),
            peer_samples: lock(&self.samples).clone(),
            traffic,
            events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every protocol error is counted; the first ones are events, and the log says how many
    /// there were in all, so a broken field cannot pass unnoticed nor flood the events.
    #[test]
    fn protocol_errors_are_counted_listed_and_summed_in_the_log() {
        let shared = Shared::default();
        let scenario = crate::preset("baseline", 4).expect("preset");
        assert!(shared.log(&scenario, vec![], vec![], (0, 0, 0)).events.is_empty(), "no errors, no event");
        for k in 0..MAX_PROTOCOL_ERROR_EVENTS + 5 {
            shared.protocol_error(format!("node 0 peers: missing field `status` ({k})"));
        }
        let log = shared.log(&scenario, vec![], vec![], (0, 0, 0));
        let listed = log.events.iter().filter(|e| e.what.starts_with("protocol error: ")).count() as u64;
        assert_eq!(listed, MAX_PROTOCOL_ERROR_EVENTS);
        let total = log.events.last().expect("summary");
        assert!(total.what.starts_with(&format!("protocol errors: {} ", MAX_PROTOCOL_ERROR_EVENTS + 5)), "{}", total.what);
    }
}
