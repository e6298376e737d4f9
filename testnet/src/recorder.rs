//! What a run records, shared by the in-process and the process runtime: the records the
//! tasks of a run append to, and their assembly into a [`RunLog`].

use crate::record::{
    BroadcastRecord, DeliveryRecord, EventRecord, GossipRecord, NodeRecord, PeerSample, PublishRecord, RunLog, TrafficRecord,
};
use crate::scenario::Scenario;
use byzgossip_node::now_ms;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Locks, recovering the data of a poisoned lock (a panicked task must not hide the records).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records shared by the tasks of a run.
#[derive(Default)]
pub(crate) struct Shared {
    pub broadcasts: Mutex<Vec<BroadcastRecord>>,
    pub failures: AtomicU64,
    pub publishes: Mutex<Vec<PublishRecord>>,
    pub deliveries: Mutex<Vec<DeliveryRecord>>,
    pub cursors: Mutex<HashSet<(usize, u64)>>,
    pub delivered: Mutex<HashMap<usize, HashSet<(String, u64)>>>,
    pub gossip: Mutex<Vec<GossipRecord>>,
    pub samples: Mutex<Vec<PeerSample>>,
    pub events: Mutex<Vec<EventRecord>>,
    pub disrupted_until: AtomicU64,
    pub verbose: bool,
    pub t0: AtomicU64,
    /// The simulator's virtual clock (ms since the Unix epoch); the wall clock when `None`.
    pub clock: Option<std::sync::Arc<AtomicU64>>,
}

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
            publishes: lock(&self.publishes).clone(),
            deliveries,
            gossip: lock(&self.gossip).clone(),
            peer_samples: lock(&self.samples).clone(),
            traffic,
            events: lock(&self.events).clone(),
        }
    }
}
