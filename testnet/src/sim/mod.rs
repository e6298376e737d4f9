//! The deterministic simulator (`run --runtime sim`, `explore`): every node of a scenario is
//! the node's own [`Engine`] (the same protocol code the `byzgossip` binary runs), driven in
//! virtual time on a simulated network ([`net`]), with an in-memory store per node
//! ([`store`]) that survives simulated crashes.
//!
//! One event queue ordered by (virtual time in µs, sequence number) holds everything that
//! happens: message arrivals, verification and commit completions, engine timers, sync
//! requests and answers, dials, the workload, the sampler, attack drivers and the fault
//! timeline (the same [`crate::timeline`] actions as the other runtimes, applied through
//! [`FaultTarget`]). Randomness comes only from ChaCha streams seeded from the scenario seed,
//! iteration that orders events is over ordered collections, and no wall clock is read: the
//! same scenario and seed give the same run, checked by the final state hash.
//!
//! The driver mirrors `byzgossip_node`'s runtime: adversaries' [`AgentInterceptor`] sees
//! every own publish and every received message and sync response; verification runs on one
//! worker per node (Bracha line first) costing [`VERIFY_US`] per signature of virtual time;
//! batches commit in order, [`COMMIT_US`] each; a pause keeps connections and drops what
//! goes in and out (the interceptor's pause, as in process); partitions block peers through
//! the engine's block by hand, and the transport closes and refuses blocked connections.
//!
//! Signature checks are real, but each distinct check (a [`Job::cache_key`]) runs once per
//! run and its outcome is shared by every simulated node (reported in [`SimStats`]).
//!
//! Virtual time starts at [`EPOCH_MS`], so timestamps in envelopes look realistic.

pub mod explore;
pub mod net;
pub mod store;

use crate::adversary::{Agent, AgentInterceptor, Attack, DRIVER_TICK, LOAD_TOPIC};
use crate::harness::{SAMPLE_INTERVAL, SYNC_INTERVAL, TICK_INTERVAL};
use crate::record::{BroadcastRecord, DeliveryRecord, NodeRecord, PeerSample, PublishRecord, RunLog, TrafficRecord};
use crate::recorder::{Shared, lock};
use crate::scenario::{Degradation, Role, Scenario};
use crate::timeline::{self, Action, FaultTarget};
use byzgossip_crypto::codec;
use byzgossip_crypto::{Digest, Genesis, Keypair, PublicKey};
use byzgossip_engine::hooks::{Inbound, Interceptor, MAX_PARKED, MAX_PARKED_BYTES};
use byzgossip_engine::{Engine, EngineConfig, Job, Metric, Output, Outcome, Peer, PeerAction, SyncRequest, SyncResponse};
use byzgossip_node::{NodeConfig, RawTopic};
use byzgossip_reputation::Acceptance;
use net::{DUPLICATE_CACHE_MS, Mesh, Net, SYNC_TIMEOUT_US};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use store::SimStore;

/// Virtual time of the start of every simulation (ms since the Unix epoch, 2023-11-14).
pub const EPOCH_MS: u64 = 1_700_000_000_000;
/// Virtual cost of one signature check (`verify_strict` measures 42-47 µs here).
pub const VERIFY_US: u64 = 45;
/// Virtual cost of committing one batch.
pub const COMMIT_US: u64 = 200;
/// Workload tick (the in-process runtime's).
const WORKLOAD_TICK_US: u64 = 10_000;
/// Most accepted gossip envelopes whose hops a node remembers until they reach its
/// application ([`Node::accepted_hops`]).
const MAX_HOPS_TRACKED: usize = 65_536;
/// First request id of adversaries' raw sync requests: far above any id an engine issues.
const ATTACK_REQUEST_BASE: u64 = 1 << 62;
/// Longest wait for the initial connections, as the in-process runtime's `CONNECT_DEADLINE`.
const CONNECT_DEADLINE_US: u64 = 15_000_000;
/// A run stops (and fails) after this many events: a livelock guard.
pub const MAX_EVENTS: u64 = 2_000_000_000;

/// Options of a simulated run.
#[derive(Clone, Debug, Default)]
pub struct SimOptions {
    /// Print timeline events as they happen.
    pub verbose: bool,
}

/// What the simulator did, for its report.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SimStats {
    /// Events processed.
    pub events: u64,
    /// Gossipsub messages put on links.
    pub messages: u64,
    /// Verification jobs handed to the engines.
    pub jobs: u64,
    /// Distinct signature checks actually run (the rest reused a shared outcome).
    pub verified: u64,
    /// Virtual seconds simulated.
    pub virtual_s: f64,
    /// Messages correct nodes ignored because the seen-set, or the origin's share of it,
    /// was full (an attack on the seen-set reached it).
    pub seen_set_full: u64,
    /// Sync requests correct nodes refused (over budget, graylisted requester, busy).
    pub sync_refused: u64,
}

/// A finished simulated run.
pub struct SimRun {
    /// What the run recorded (the checker's input).
    pub log: RunLog,
    /// SHA-256 over every node's delivery log and final state (hex).
    pub state_hash: String,
    /// Counters.
    pub stats: SimStats,
}

fn us_of(d: std::time::Duration) -> u64 {
    d.as_micros() as u64
}

#[derive(Debug)]
enum Event {
    /// The engine's timer of `node` (incarnation, deadline in ms).
    Timer(usize, u32, u64),
    /// A gossipsub message arrives at `to` over the connection of `epoch`.
    /// `hops`: links the copy crossed to reach `to` (1 straight from its publisher).
    Gossip { to: usize, from: usize, epoch: u64, topic: Rc<str>, bytes: Rc<Vec<u8>>, hops: u8 },
    /// A message the interceptor delayed is admitted.
    Admit { to: usize, inc: u32, from: usize, topic: Rc<str>, bytes: Rc<Vec<u8>>, hops: u8 },
    /// The verification worker of `node` finished its job.
    Verified(usize, u32),
    /// The store of `node` committed its oldest pending batch.
    Committed(usize, u32),
    /// A sync request arrives at `to`.
    SyncRequest { to: usize, from: usize, from_inc: u32, epoch: u64, request_id: u64, request: SyncRequest },
    /// A sync answer (or its failure, `None`) arrives at `to`.
    SyncResponse { to: usize, inc: u32, from: usize, epoch: Option<u64>, request_id: u64, response: Option<SyncResponse> },
    /// A sync answer the interceptor delayed is handed over.
    SyncAdmit { to: usize, inc: u32, from: usize, request_id: u64, response: SyncResponse },
    /// A dial of `from` (incarnation) to `to` completes.
    Connect { from: usize, inc: u32, to: usize },
    /// The workload's tick.
    Workload,
    /// The sampler's tick.
    Sample,
    /// An attack driver's tick (node, generation).
    Driver(usize, u64),
    /// The timeline's action number k.
    Timeline(usize),
    /// The drain check.
    Drain,
    /// The end of the run.
    End,
}

struct Queued {
    at_us: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_us, self.seq).cmp(&(other.at_us, other.seq))
    }
}

/// A message waiting for the engine's validation.
struct PendingValidation {
    id: [u8; 32],
    topic: Rc<str>,
    bytes: Rc<Vec<u8>>,
    /// The peer it came from and peers that sent it again meanwhile (not forwarded to).
    senders: Vec<usize>,
    /// Links the admitted copy crossed.
    hops: u8,
}

/// One simulated node, across restarts.
struct Node {
    role: Role,
    keypair: Keypair,
    /// Wire topics its engine subscribed to (gossipsub's subscription exchange): messages on
    /// a topic go only to peers subscribed to it, as in gossipsub (members never receive the
    /// certified topic, observers never the Bracha topic).
    subscribed: BTreeSet<String>,
    agent: Arc<Agent>,
    engine: Option<Engine>,
    interceptor: AgentInterceptor,
    incarnation: u32,
    store: SimStore,
    commits: VecDeque<byzgossip_engine::Batch>,
    bracha_jobs: VecDeque<Job>,
    gossip_jobs: VecDeque<Job>,
    working: Option<Job>,
    validations: BTreeMap<u64, PendingValidation>,
    pending_ids: HashMap<[u8; 32], u64>,
    /// Hops of accepted gossip envelopes (by envelope id) until the engine hands them to the
    /// application; cleared past [`MAX_HOPS_TRACKED`] (gossip of topics not subscribed).
    accepted_hops: HashMap<[u8; 32], u8>,
    next_token: u64,
    serving: BTreeMap<u64, (usize, u32, u64, u64)>,
    blocked: BTreeSet<usize>,
    seen: HashSet<[u8; 32]>,
    seen_order: VecDeque<(u64, [u8; 32])>,
    parked: (usize, usize),
    timer_at: Option<u64>,
    armed_at: Option<u64>,
    attack: Option<(Attack, u64)>,
    driver_generation: u64,
}

/// The simulated world (everything but the shared records).
struct World {
    scenario: Scenario,
    genesis: Genesis,
    nodes: Vec<Node>,
    by_key: BTreeMap<PublicKey, usize>,
    honest_keys: Vec<PublicKey>,
    net: Net,
    meshes: BTreeMap<String, Mesh>,
    connected: BTreeMap<(usize, usize), u64>,
    /// Each node's connected peers (the index of `connected`, so finding a node's peers costs
    /// its degree, not the number of connections: 1,000-node runs have tens of thousands).
    adjacent: Vec<BTreeSet<usize>>,
    /// Each node's neighbours after the start dials ([`Scenario::start_peers`]): its
    /// bootstrap peers, and whom it dials again after a restart.
    start_peers: Vec<Vec<usize>>,
    next_epoch: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    now_us: u64,
    clock: Arc<AtomicU64>,
    shared: Arc<Shared>,
    cache: HashMap<[u8; 32], Outcome>,
    dirty: BTreeSet<usize>,
    stats: SimStats,
    workload_rng: ChaCha20Rng,
    sent: (u64, u64),
    t0_us: u64,
    load_end_us: u64,
    hard_end_us: u64,
    end_us: Option<u64>,
    plan: Vec<(f64, Action)>,
    /// Sync requests adversaries sent (ids from [`ATTACK_REQUEST_BASE`]).
    attack_request_id: u64,
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl World {
    fn now_ms(&self) -> u64 {
        self.now_us / 1000
    }

    fn at(&mut self, at_us: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Queued { at_us: at_us.max(self.now_us), seq: self.seq, event }));
    }

    fn after(&mut self, delay_us: u64, event: Event) {
        self.at(self.now_us + delay_us, event);
    }

    fn epoch(&self, a: usize, b: usize) -> Option<u64> {
        self.connected.get(&pair(a, b)).copied()
    }

    fn up(&self, i: usize) -> bool {
        self.nodes[i].engine.is_some()
    }

    fn config(&self, i: usize) -> EngineConfig {
        let node = &self.nodes[i];
        let mut config = NodeConfig::new(self.genesis.clone(), node.keypair.clone());
        let seed = self.scenario.seed ^ ((i as u64) << 20) ^ ((node.incarnation as u64) << 40);
        config.admission.replay.hash_seed = seed ^ 0x5eed_0000_0000_0000;
        self.scenario.apply_node_settings(&mut config);
        let bootstrap = self.start_peers[i].iter().map(|&j| Peer::Key(self.nodes[j].keypair.public())).collect();
        EngineConfig {
            genesis: self.genesis.clone(),
            keypair: node.keypair.clone(),
            admission: config.admission,
            bracha: config.bracha,
            topics: vec![LOAD_TOPIC.to_owned()],
            tick_interval_ms: TICK_INTERVAL.as_millis() as u64,
            sync_interval_ms: SYNC_INTERVAL.as_millis() as u64,
            validation_queue: config.validation_queue,
            redial_backoff_ms: config.redial_backoff.as_millis() as u64,
            bootstrap,
            seed,
            retention_ms: config.retention.as_millis() as u64,
            // The simulator never loses a store (a restart keeps it), and its nodes start as
            // a brand-new network: nothing to recover, so no wait.
            seq_recovery_timeout_ms: 0,
        }
    }

    /// Starts node `i` from its store and dials `dial`.
    fn start(&mut self, i: usize, dial: Vec<usize>) -> anyhow::Result<()> {
        let config = self.config(i);
        let recovered = self.nodes[i].store.recover();
        let engine = Engine::new(config, recovered, self.now_ms()).map_err(|e| anyhow::anyhow!("engine: {e}"))?;
        let node = &mut self.nodes[i];
        let seed = self.scenario.seed ^ ((i as u64) << 20) ^ ((node.incarnation as u64) << 40);
        node.interceptor = AgentInterceptor::new(node.agent.clone(), seed);
        node.engine = Some(engine);
        node.timer_at = None;
        self.dirty.insert(i);
        for j in dial {
            self.dial(i, j);
        }
        Ok(())
    }

    /// Whom node `i` dials when it starts again: its start peers that are up and not cut
    /// from it.
    fn restart_dials(&self, i: usize, cut: &[usize]) -> Vec<usize> {
        self.start_peers[i].iter().copied().filter(|j| !cut.contains(j) && self.up(*j)).collect()
    }

    /// A crash: the engine and everything in flight in it is gone; the store stays.
    fn kill(&mut self, i: usize) {
        if self.nodes[i].engine.take().is_none() {
            return;
        }
        let peers = self.connected_peers(i);
        for j in peers {
            self.disconnect(i, j);
        }
        let node = &mut self.nodes[i];
        node.incarnation += 1;
        node.subscribed.clear();
        node.commits.clear();
        node.bracha_jobs.clear();
        node.gossip_jobs.clear();
        node.working = None;
        node.validations.clear();
        node.pending_ids.clear();
        node.accepted_hops.clear();
        node.serving.clear();
        node.blocked.clear();
        node.seen.clear();
        node.seen_order.clear();
        node.parked = (0, 0);
        node.timer_at = None;
    }

    fn dial(&mut self, from: usize, to: usize) {
        if from == to || self.epoch(from, to).is_some() {
            return;
        }
        let rtt = self.net.latency_us(from, to) + self.net.latency_us(to, from);
        let inc = self.nodes[from].incarnation;
        self.after(rtt.max(1), Event::Connect { from, inc, to });
    }

    fn on_connect(&mut self, from: usize, inc: u32, to: usize) {
        if !self.up(from) || self.nodes[from].incarnation != inc || self.epoch(from, to).is_some() {
            return;
        }
        let refused = !self.up(to) || self.nodes[from].blocked.contains(&to) || self.nodes[to].blocked.contains(&from);
        let now = self.now_ms();
        if refused {
            let peer = Peer::Key(self.nodes[to].keypair.public());
            if let Some(engine) = self.nodes[from].engine.as_mut() {
                engine.handle_dial_failed(now, peer);
            }
            self.dirty.insert(from);
            return;
        }
        self.next_epoch += 1;
        self.connected.insert(pair(from, to), self.next_epoch);
        self.adjacent[from].insert(to);
        self.adjacent[to].insert(from);
        for (a, b) in [(from, to), (to, from)] {
            let peer = Peer::Key(self.nodes[b].keypair.public());
            if let Some(engine) = self.nodes[a].engine.as_mut() {
                engine.handle_connected(now, peer);
            }
            self.dirty.insert(a);
        }
    }

    fn disconnect(&mut self, a: usize, b: usize) {
        if self.connected.remove(&pair(a, b)).is_none() {
            return;
        }
        self.adjacent[a].remove(&b);
        self.adjacent[b].remove(&a);
        let now = self.now_ms();
        for (x, y) in [(a, b), (b, a)] {
            let peer = Peer::Key(self.nodes[y].keypair.public());
            if let Some(engine) = self.nodes[x].engine.as_mut() {
                engine.handle_disconnected(now, peer);
            }
            self.dirty.insert(x);
        }
    }

    /// Node `i`'s connected peers, in index order.
    fn connected_peers(&self, i: usize) -> Vec<usize> {
        self.adjacent[i].iter().copied().collect()
    }

    // ---- gossipsub ----

    /// Records `id` in node `i`'s duplicate cache; false if it was there.
    fn first_sight(&mut self, i: usize, id: [u8; 32]) -> bool {
        let now = self.now_ms();
        let node = &mut self.nodes[i];
        while let Some(&(at, old)) = node.seen_order.front() {
            if now.saturating_sub(at) < DUPLICATE_CACHE_MS {
                break;
            }
            node.seen_order.pop_front();
            node.seen.remove(&old);
        }
        if !node.seen.insert(id) {
            return false;
        }
        node.seen_order.push_back((now, id));
        true
    }

    fn send_gossip(&mut self, from: usize, to: usize, topic: &Rc<str>, bytes: &Rc<Vec<u8>>, hops: u8) {
        let Some(epoch) = self.epoch(from, to) else { return };
        self.stats.messages += 1;
        if let Some(at) = self.net.send(self.now_us, from, to, bytes.len(), true) {
            self.at(at, Event::Gossip { to, from, epoch, topic: topic.clone(), bytes: bytes.clone(), hops });
        }
    }

    /// Publishes `bytes` from node `i` to every connected peer (flood publish); false if
    /// gossipsub would refuse it (a duplicate, or no peers).
    fn publish(&mut self, i: usize, topic: &str, bytes: Vec<u8>) -> bool {
        let id = Digest::of(&bytes).0;
        if !self.first_sight(i, id) {
            return false;
        }
        let peers: Vec<usize> = self.connected_peers(i).into_iter().filter(|&j| self.nodes[j].subscribed.contains(topic)).collect();
        if peers.is_empty() {
            return false;
        }
        let (topic, bytes): (Rc<str>, Rc<Vec<u8>>) = (Rc::from(topic), Rc::new(bytes));
        for j in peers {
            self.send_gossip(i, j, &topic, &bytes, 1);
        }
        true
    }

    fn on_gossip(&mut self, to: usize, from: usize, epoch: u64, topic: Rc<str>, bytes: Rc<Vec<u8>>, hops: u8) {
        if self.epoch(from, to) != Some(epoch) || !self.up(to) {
            return;
        }
        let id = Digest::of(&bytes).0;
        if !self.first_sight(to, id) {
            if let Some(token) = self.nodes[to].pending_ids.get(&id).copied()
                && let Some(pending) = self.nodes[to].validations.get_mut(&token)
            {
                pending.senders.push(from);
            }
            return;
        }
        let from_peer = Peer::Key(self.nodes[from].keypair.public());
        let node = &mut self.nodes[to];
        match node.interceptor.inbound(&from_peer, &bytes) {
            Inbound::Drop => {}
            Inbound::Delay(d) if !d.is_zero() => {
                let (items, held) = node.parked;
                if items >= MAX_PARKED || held + bytes.len() > MAX_PARKED_BYTES {
                    return;
                }
                node.parked = (items + 1, held + bytes.len());
                let inc = node.incarnation;
                self.after(us_of(d), Event::Admit { to, inc, from, topic, bytes, hops });
            }
            _ => self.admit(to, from, id, topic, bytes, hops),
        }
    }

    fn admit(&mut self, to: usize, from: usize, id: [u8; 32], topic: Rc<str>, bytes: Rc<Vec<u8>>, hops: u8) {
        let now = self.now_ms();
        let from_peer = Peer::Key(self.nodes[from].keypair.public());
        let node = &mut self.nodes[to];
        let Some(engine) = node.engine.as_mut() else { return };
        let token = node.next_token;
        node.next_token += 1;
        node.validations.insert(token, PendingValidation { id, topic: topic.clone(), bytes: bytes.clone(), senders: vec![from], hops });
        node.pending_ids.insert(id, token);
        engine.handle_message(now, from_peer, token, &topic, &bytes);
        self.dirty.insert(to);
    }

    /// Remembers how many hops an accepted gossip envelope took to reach node `i`, for the
    /// report ([`crate::record::GossipRecord::hops`]); Bracha messages are not counted (a
    /// delivery needs many of them).
    fn note_hops(&mut self, i: usize, pending: &PendingValidation) {
        let Ok(envelope) = byzgossip_crypto::codec::decode_envelope(&pending.bytes, byzgossip_crypto::codec::MAX_ENVELOPE_LEN) else { return };
        if envelope.header().kind != byzgossip_crypto::Kind::Gossip {
            return;
        }
        let hops = &mut self.nodes[i].accepted_hops;
        if hops.len() >= MAX_HOPS_TRACKED {
            hops.clear();
        }
        hops.insert(*envelope.id().as_bytes(), pending.hops);
    }

    fn mesh_targets(&mut self, i: usize, topic: &str, exclude: &[usize]) -> Vec<usize> {
        if !self.meshes.contains_key(topic) {
            let digest = Digest::of(topic.as_bytes()).0;
            let seed = self.scenario.seed ^ u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]));
            self.meshes.insert(topic.to_owned(), Mesh::new(self.nodes.len(), seed));
        }
        let mesh = &self.meshes[topic];
        let (connected, nodes) = (&self.adjacent[i], &self.nodes);
        let mut targets = mesh.targets(i, None, |j| connected.contains(&j) && nodes[j].subscribed.contains(topic));
        targets.retain(|j| !exclude.contains(j));
        targets
    }

    // ---- verification and commits ----

    fn start_job(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.working.is_some() {
            return;
        }
        let Some(job) = node.bracha_jobs.pop_front().or_else(|| node.gossip_jobs.pop_front()) else { return };
        let f = self.scenario.f() as u64;
        // The first byte of the key names the work: envelope, certificate (2f+1 READYs),
        // evidence (two signatures).
        let signatures = match job.cache_key().first() {
            Some(1) => 2 * f + 1,
            Some(2) => 2,
            _ => 1,
        };
        node.working = Some(job);
        let inc = node.incarnation;
        self.after(signatures * VERIFY_US, Event::Verified(i, inc));
    }

    fn on_verified(&mut self, i: usize, inc: u32) {
        if self.nodes[i].incarnation != inc {
            return;
        }
        let Some(job) = self.nodes[i].working.take() else { return };
        let key = Digest::of(&job.cache_key()).0;
        let done = match self.cache.get(&key) {
            Some(outcome) => job.finish(outcome.clone()),
            None => {
                self.stats.verified += 1;
                let done = job.run();
                self.cache.insert(key, done.outcome().clone());
                done
            }
        };
        let now = self.now_ms();
        if let Some(engine) = self.nodes[i].engine.as_mut() {
            engine.handle_verified(now, done);
        }
        self.dirty.insert(i);
        self.start_job(i);
    }

    fn on_committed(&mut self, i: usize, inc: u32) {
        if self.nodes[i].incarnation != inc {
            return;
        }
        let Some(batch) = self.nodes[i].commits.pop_front() else { return };
        let committed = self.nodes[i].store.commit(&batch);
        let now = self.now_ms();
        if let Some(engine) = self.nodes[i].engine.as_mut() {
            engine.handle_committed(now, batch.id, Ok(committed));
        }
        self.dirty.insert(i);
        if !self.nodes[i].commits.is_empty() {
            self.after(COMMIT_US, Event::Committed(i, inc));
        }
    }

    // ---- sync ----

    /// Puts sync request `request_id` of node `i` on the link to `j` (a failure comes back
    /// to `i` as a failed response).
    fn send_sync_request(&mut self, i: usize, j: usize, request_id: u64, request: SyncRequest) {
        let Some(epoch) = self.epoch(i, j) else {
            let back = self.net.latency_us(i, j);
            self.sync_failed(i, j, request_id, back);
            return;
        };
        let len = codec::encode(&request).len();
        match self.net.send(self.now_us, i, j, len, true) {
            Some(at) => {
                let from_inc = self.nodes[i].incarnation;
                self.at(at, Event::SyncRequest { to: j, from: i, from_inc, epoch, request_id, request });
            }
            None => self.sync_failed(i, j, request_id, SYNC_TIMEOUT_US),
        }
    }

    fn sync_failed(&mut self, to: usize, from: usize, request_id: u64, delay_us: u64) {
        let inc = self.nodes[to].incarnation;
        self.after(delay_us, Event::SyncResponse { to, inc, from, epoch: None, request_id, response: None });
    }

    fn on_sync_request(&mut self, to: usize, from: usize, from_inc: u32, epoch: u64, request_id: u64, request: SyncRequest) {
        if self.epoch(from, to) != Some(epoch) || !self.up(to) {
            let back = self.net.latency_us(to, from);
            self.sync_failed(from, to, request_id, back);
            return;
        }
        let now = self.now_ms();
        let peer = Peer::Key(self.nodes[from].keypair.public());
        let node = &mut self.nodes[to];
        let token = node.next_token;
        node.next_token += 1;
        node.serving.insert(token, (from, from_inc, epoch, request_id));
        if let Some(engine) = node.engine.as_mut() {
            engine.handle_sync_request(now, peer, token, request);
        }
        self.dirty.insert(to);
    }

    fn on_sync_response(&mut self, to: usize, inc: u32, from: usize, epoch: Option<u64>, request_id: u64, response: Option<SyncResponse>) {
        if !self.up(to) || self.nodes[to].incarnation != inc {
            return;
        }
        let now = self.now_ms();
        let peer = Peer::Key(self.nodes[from].keypair.public());
        let response = response.filter(|_| epoch.is_some() && self.epoch(from, to) == epoch);
        let node = &mut self.nodes[to];
        let decision = if response.is_some() { node.interceptor.sync_response(&peer) } else { Inbound::Process };
        let response = match decision {
            Inbound::Drop => None,
            Inbound::Delay(d) if !d.is_zero() => {
                if let Some(response) = response {
                    let len = response.payload_len();
                    let (items, held) = node.parked;
                    if items < MAX_PARKED && held + len <= MAX_PARKED_BYTES {
                        node.parked = (items + 1, held + len);
                        self.after(us_of(d), Event::SyncAdmit { to, inc, from, request_id, response });
                        return;
                    }
                }
                None
            }
            _ => response,
        };
        if let Some(engine) = self.nodes[to].engine.as_mut() {
            engine.handle_sync_response(now, peer, request_id, response);
        }
        self.dirty.insert(to);
    }

    // ---- outputs ----

    fn drain_dirty(&mut self) {
        while let Some(i) = self.dirty.pop_first() {
            self.drain(i);
        }
    }

    fn drain(&mut self, i: usize) {
        while let Some(output) = self.nodes[i].engine.as_mut().and_then(Engine::poll) {
            self.act(i, output);
        }
        let due = self.nodes[i].engine.as_ref().and_then(Engine::poll_timeout);
        if due != self.nodes[i].timer_at {
            self.nodes[i].timer_at = due;
            if let Some(ms) = due {
                let inc = self.nodes[i].incarnation;
                self.at(ms * 1000, Event::Timer(i, inc, ms));
            }
        }
    }

    fn act(&mut self, i: usize, output: Output) {
        match output {
            Output::Metric(Metric::Message { outcome: "seen_set_full", .. }) if self.nodes[i].role.correct() => {
                self.stats.seen_set_full += 1;
            }
            Output::Metric(Metric::Sync { kind }) if kind.starts_with("refused") && self.nodes[i].role.correct() => {
                self.stats.sync_refused += 1;
            }
            Output::Subscribe { topic } => {
                self.nodes[i].subscribed.insert(topic);
            }
            Output::AppScore { .. } | Output::Metric(_) | Output::Broadcast { .. } => {}
            Output::Validation { token, acceptance } => {
                let Some(pending) = self.nodes[i].validations.remove(&token) else { return };
                self.nodes[i].pending_ids.remove(&pending.id);
                if acceptance == Acceptance::Accept {
                    self.note_hops(i, &pending);
                    for j in self.mesh_targets(i, &pending.topic, &pending.senders) {
                        self.send_gossip(i, j, &pending.topic, &pending.bytes, pending.hops.saturating_add(1));
                    }
                }
            }
            Output::Publish { topic, envelope } => {
                let messages = self.nodes[i].interceptor.outgoing(&envelope);
                for bytes in messages {
                    self.publish(i, &topic, bytes);
                }
            }
            Output::Verify(job) => {
                self.stats.jobs += 1;
                let node = &mut self.nodes[i];
                match job.line() {
                    byzgossip_engine::Line::Bracha => node.bracha_jobs.push_back(job),
                    byzgossip_engine::Line::Gossip => node.gossip_jobs.push_back(job),
                }
                self.start_job(i);
            }
            Output::Persist(batch) => {
                let node = &mut self.nodes[i];
                node.commits.push_back(batch);
                if node.commits.len() == 1 {
                    let inc = node.incarnation;
                    self.after(COMMIT_US, Event::Committed(i, inc));
                }
            }
            Output::Deliver(d) => {
                if !self.nodes[i].role.correct() || !lock(&self.shared.cursors).insert((i, d.cursor)) {
                    return;
                }
                let origin = d.instance.origin.to_hex();
                lock(&self.shared.delivered).entry(i).or_default().insert((origin.clone(), d.instance.seq));
                lock(&self.shared.deliveries).push(DeliveryRecord {
                    node: i,
                    origin,
                    seq: d.instance.seq,
                    digest: d.digest.to_hex(),
                    delivered_at_ms: d.delivered_at_ms,
                    cursor: d.cursor,
                });
            }
            Output::Gossip(m) => {
                let hops = self.nodes[i].accepted_hops.remove(m.id.as_bytes());
                if self.nodes[i].role.correct() {
                    self.shared.record_gossip(i, self.nodes[i].incarnation, &m.origin, &m.id, hops);
                }
            }
            Output::Peer(action) => {
                let (PeerAction::Block(peer) | PeerAction::Unblock(peer) | PeerAction::Dial(peer) | PeerAction::Disconnect(peer)) = &action;
                let Some(j) = peer.key().and_then(|k| self.by_key.get(&k).copied()) else { return };
                match action {
                    PeerAction::Block(_) => {
                        self.nodes[i].blocked.insert(j);
                        self.disconnect(i, j);
                    }
                    PeerAction::Unblock(_) => {
                        self.nodes[i].blocked.remove(&j);
                    }
                    PeerAction::Dial(_) => self.dial(i, j),
                    // The simulated links have no send queue to fill, so no engine asks for
                    // this here; if one did, the link drops and the redial logic returns.
                    PeerAction::Disconnect(_) => self.disconnect(i, j),
                }
            }
            Output::SyncRequest { peer, request_id, request } => {
                let Some(j) = peer.key().and_then(|k| self.by_key.get(&k).copied()) else {
                    self.sync_failed(i, i, request_id, 1);
                    return;
                };
                self.send_sync_request(i, j, request_id, request);
            }
            Output::SyncServe { token, plan } => {
                let Some((to, inc, epoch, request_id)) = self.nodes[i].serving.remove(&token) else { return };
                let response = plan.execute(&self.nodes[i].store);
                let now_ms = self.now_ms();
                if let Some(engine) = self.nodes[i].engine.as_mut() {
                    engine.handle_sync_served(now_ms, token);
                }
                if self.epoch(i, to) != Some(epoch) {
                    return;
                }
                let len = codec::encode(&response).len();
                match self.net.send(self.now_us, i, to, len, true) {
                    Some(at) => self.at(at, Event::SyncResponse { to, inc, from: i, epoch: Some(epoch), request_id, response: Some(response) }),
                    None => {
                        let delay = SYNC_TIMEOUT_US;
                        self.after(delay, Event::SyncResponse { to, inc, from: i, epoch: None, request_id, response: None });
                    }
                }
            }
            Output::SyncRefuse { token } => {
                let Some((to, inc, _, request_id)) = self.nodes[i].serving.remove(&token) else { return };
                let back = self.net.latency_us(i, to);
                self.after(back, Event::SyncResponse { to, inc, from: i, epoch: None, request_id, response: None });
            }
        }
    }

    // ---- workload, sampler, drivers ----

    fn on_workload(&mut self) {
        if self.now_us >= self.load_end_us {
            return;
        }
        let w = self.scenario.workload.clone();
        let t = (self.now_us - self.t0_us) as f64 / 1e6;
        let origins: Vec<usize> = (0..self.nodes.len()).filter(|i| self.nodes[*i].role == Role::Honest).collect();
        let now = self.now_ms();
        while (self.sent.0 as f64) < t * w.broadcasts_per_s {
            let i = origins[self.sent.0 as usize % origins.len()];
            self.sent.0 += 1;
            let paused = self.nodes[i].agent.paused.load(Ordering::Relaxed);
            let mut value = vec![0u8; w.value_size];
            match self.nodes[i].engine.as_mut().filter(|_| !paused) {
                None => {
                    self.shared.failures.fetch_add(1, Ordering::Relaxed);
                }
                Some(engine) => {
                    self.workload_rng.fill_bytes(&mut value);
                    let digest = Digest::of(&value).to_hex();
                    match engine.broadcast(now, value) {
                        Ok(instance) => lock(&self.shared.broadcasts).push(BroadcastRecord { origin: i, seq: instance.seq, digest, sent_at_ms: now }),
                        Err(_) => {
                            self.shared.failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    self.dirty.insert(i);
                }
            }
        }
        while (self.sent.1 as f64) < t * w.gossip_per_s {
            let i = origins[self.sent.1 as usize % origins.len()];
            self.sent.1 += 1;
            let paused = self.nodes[i].agent.paused.load(Ordering::Relaxed);
            let Some(engine) = self.nodes[i].engine.as_mut().filter(|_| !paused) else { continue };
            let mut payload = vec![0u8; w.gossip_size];
            self.workload_rng.fill_bytes(&mut payload);
            if let Ok(id) = engine.publish(now, LOAD_TOPIC, payload) {
                lock(&self.shared.publishes).push(PublishRecord { origin: i, id: id.to_hex(), sent_at_ms: now });
            }
            self.dirty.insert(i);
        }
        self.after(WORKLOAD_TICK_US, Event::Workload);
    }

    fn on_sample(&mut self) {
        let now = self.now_ms();
        let mut samples = Vec::new();
        for (index, node) in self.nodes.iter().enumerate().filter(|(_, n)| n.role.correct()) {
            let Some(engine) = node.engine.as_ref() else { continue };
            for p in engine.peers(now) {
                if let Some(&peer) = self.by_key.get(&p.reputation.peer) {
                    samples.push(PeerSample::of(now, index, peer, &p.reputation));
                }
            }
        }
        lock(&self.shared.samples).extend(samples);
        self.after(us_of(SAMPLE_INTERVAL), Event::Sample);
    }

    fn on_driver(&mut self, i: usize, generation: u64) {
        if self.nodes[i].driver_generation != generation {
            return;
        }
        let Some((mut attack, started_us)) = self.nodes[i].attack.take() else { return };
        if self.up(i) {
            let elapsed = (self.now_us - started_us) as f64 / 1e6;
            let readmitted = attack.wants_readmission(elapsed)
                && attack.honest().iter().all(|key| self.by_key.get(key).is_some_and(|j| self.adjacent[i].contains(j)));
            let Some(batch) = attack.step(elapsed, self.now_ms(), readmitted) else { return };
            for (topic, bytes) in batch {
                let Some(engine) = self.nodes[i].engine.as_ref() else { break };
                let wire = match topic {
                    RawTopic::Bracha => engine.topics().bracha(),
                    RawTopic::Gossip(name) => engine.topics().gossip(&name),
                    RawTopic::Sync => {
                        // To every connected peer, under ids the engine never issued (its
                        // own start at 0), so the answers are dropped as unknown.
                        let Ok(request) = codec::decode::<SyncRequest>(&bytes, codec::MAX_ENVELOPE_LEN) else { continue };
                        for j in self.connected_peers(i) {
                            self.attack_request_id += 1;
                            self.send_sync_request(i, j, ATTACK_REQUEST_BASE + self.attack_request_id, request.clone());
                        }
                        attack.count_sent(bytes.len());
                        continue;
                    }
                };
                let len = bytes.len();
                if self.publish(i, &wire, bytes) {
                    attack.count_sent(len);
                }
            }
        }
        self.nodes[i].attack = Some((attack, started_us));
        self.after(us_of(DRIVER_TICK), Event::Driver(i, generation));
    }

    fn drained(&self) -> bool {
        let keys: Vec<String> = self.nodes.iter().map(|n| n.keypair.public().to_hex()).collect();
        self.shared.drained(&keys, (0..self.nodes.len()).filter(|i| self.nodes[*i].role.correct() && self.up(*i)))
    }

    fn state_hash(&self) -> String {
        use std::fmt::Write;
        let mut text = String::new();
        let now = self.now_ms();
        for (i, node) in self.nodes.iter().enumerate() {
            let _ = writeln!(text, "node {i} {} up {} incarnation {}", node.role.name(), node.engine.is_some(), node.incarnation);
            for (cursor, d) in node.store.log() {
                let _ = writeln!(text, " d {cursor} {} {} {} {}", d.origin.to_hex(), d.seq, d.digest.to_hex(), d.delivered_at_ms);
            }
            let _ = writeln!(text, " seqs {:?}", node.store.next_seqs());
            if let Some(engine) = node.engine.as_ref() {
                let _ = writeln!(text, " status {:?}", engine.status());
                for peer in engine.blocked() {
                    let _ = writeln!(text, " blocked {peer:?}");
                }
                let mut peers: Vec<(String, &'static str, u64)> = engine
                    .peers(now)
                    .iter()
                    .map(|p| (p.reputation.peer.to_hex(), p.reputation.status.label(), p.reputation.score.to_bits()))
                    .collect();
                peers.sort();
                for (key, status, score) in peers {
                    let _ = writeln!(text, " peer {key} {status} {score}");
                }
            }
        }
        Digest::of(text.as_bytes()).to_hex()
    }
}

/// The simulator as the fault timeline sees it.
struct Sim {
    world: RefCell<World>,
    shared: Arc<Shared>,
}

impl FaultTarget for Sim {
    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn len(&self) -> usize {
        self.world.borrow().nodes.len()
    }

    fn correct(&self, i: usize) -> bool {
        self.world.borrow().nodes[i].role.correct()
    }

    fn is_up(&self, i: usize) -> bool {
        self.world.borrow().up(i)
    }

    async fn arm(&self, i: usize) {
        let mut w = self.world.borrow_mut();
        let now_ms = w.now_ms();
        let now_us = w.now_us;
        let (honest, attack) = (w.honest_keys.clone(), w.scenario.attack.clone());
        let max_message_len = byzgossip_reputation::AdmissionConfig::default().max_message_len;
        let seed = w.scenario.seed ^ 0xd1e5 ^ ((i as u64) << 24);
        let node = &mut w.nodes[i];
        node.agent.armed.store(true, Ordering::Relaxed);
        node.armed_at = Some(now_ms);
        node.driver_generation += 1;
        let generation = node.driver_generation;
        node.attack = Attack::new(node.agent.clone(), honest, &attack, max_message_len, seed).map(|a| (a, now_us));
        if node.attack.is_some() {
            w.after(us_of(DRIVER_TICK), Event::Driver(i, generation));
        }
    }

    async fn disarm(&self, i: usize) {
        let mut w = self.world.borrow_mut();
        let node = &mut w.nodes[i];
        node.attack = None;
        node.driver_generation += 1;
        node.agent.armed.store(false, Ordering::Relaxed);
    }

    async fn refresh(&self, i: usize, cut: &[usize]) {
        let mut w = self.world.borrow_mut();
        w.kill(i);
        let dial = w.restart_dials(i, cut);
        if let Err(e) = w.start(i, dial) {
            self.shared.event(format!("refresh of node {i} failed: {e:#}"));
        }
        w.drain_dirty();
    }

    async fn kill(&self, i: usize) {
        let mut w = self.world.borrow_mut();
        w.kill(i);
        w.drain_dirty();
    }

    async fn start(&self, i: usize, cut: &[usize]) -> anyhow::Result<()> {
        let mut w = self.world.borrow_mut();
        let dial = w.restart_dials(i, cut);
        let result = w.start(i, dial);
        w.drain_dirty();
        result
    }

    async fn pause(&self, i: usize, paused: bool) {
        self.world.borrow().nodes[i].agent.paused.store(paused, Ordering::Relaxed);
    }

    async fn block(&self, i: usize, peer: usize, block: bool) {
        let mut w = self.world.borrow_mut();
        let now = w.now_ms();
        let key = Peer::Key(w.nodes[peer].keypair.public());
        if let Some(engine) = w.nodes[i].engine.as_mut() {
            if block {
                let _ = engine.block(now, key);
            } else {
                engine.unblock(now, key);
            }
            w.dirty.insert(i);
        }
        w.drain_dirty();
    }

    async fn reconnect(&self, i: usize, peer: usize) {
        let mut w = self.world.borrow_mut();
        if w.up(i) {
            w.dial(i, peer);
        }
    }

    async fn degrade(&self, i: usize, degradation: Option<Degradation>) {
        self.world.borrow().nodes[i].agent.set_degradation(degradation);
    }
}

/// Polls a future that never waits (the simulator's [`FaultTarget`] methods do not).
fn now_or_never<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => unreachable!("simulator fault actions complete at once"),
    }
}

/// Runs `scenario` in the simulator.
pub fn run(scenario: &Scenario, options: &SimOptions) -> anyhow::Result<SimRun> {
    scenario.validate()?;
    let roles = scenario.roles();
    let (keys, genesis) = scenario.keys_and_genesis();
    let n = scenario.nodes;
    let network = genesis.network_id();
    let victim = keys[scenario.attack.victim].public();
    let clock = Arc::new(AtomicU64::new(EPOCH_MS));
    let shared = Arc::new(Shared { verbose: options.verbose, clock: Some(clock.clone()), ..Default::default() });
    let nodes: Vec<Node> = roles
        .iter()
        .zip(&keys)
        .map(|(role, keypair)| {
            let censored = if *role == Role::Censor { vec![victim] } else { vec![] };
            let agent = Agent::with_clock(*role, keypair.clone(), network, censored, Some(clock.clone()));
            Node {
                role: *role,
                keypair: keypair.clone(),
                subscribed: BTreeSet::new(),
                interceptor: AgentInterceptor::new(agent.clone(), 0),
                agent,
                engine: None,
                incarnation: 0,
                store: SimStore::default(),
                commits: VecDeque::new(),
                bracha_jobs: VecDeque::new(),
                gossip_jobs: VecDeque::new(),
                working: None,
                validations: BTreeMap::new(),
                pending_ids: HashMap::new(),
                accepted_hops: HashMap::new(),
                next_token: 0,
                serving: BTreeMap::new(),
                blocked: BTreeSet::new(),
                seen: HashSet::new(),
                seen_order: VecDeque::new(),
                parked: (0, 0),
                timer_at: None,
                armed_at: None,
                attack: None,
                driver_generation: 0,
            }
        })
        .collect();
    let t = &scenario.timeline;
    let world = World {
        scenario: scenario.clone(),
        genesis,
        by_key: keys.iter().enumerate().map(|(i, k)| (k.public(), i)).collect(),
        honest_keys: roles.iter().zip(&keys).filter(|(r, _)| **r == Role::Honest).map(|(_, k)| k.public()).collect(),
        nodes,
        net: Net::new(roles.len(), &scenario.links, scenario.seed ^ 0x11e7),
        meshes: BTreeMap::new(),
        connected: BTreeMap::new(),
        adjacent: vec![BTreeSet::new(); roles.len()],
        start_peers: scenario.start_peers(&roles),
        attack_request_id: 0,
        next_epoch: 0,
        queue: BinaryHeap::new(),
        seq: 0,
        now_us: EPOCH_MS * 1000,
        clock,
        shared: shared.clone(),
        cache: HashMap::new(),
        dirty: BTreeSet::new(),
        stats: SimStats::default(),
        workload_rng: ChaCha20Rng::seed_from_u64(scenario.seed ^ 0x10ad),
        sent: (0, 0),
        t0_us: 0,
        load_end_us: 0,
        hard_end_us: 0,
        end_us: None,
        plan: timeline::plan(scenario),
    };
    let sim = Sim { world: RefCell::new(world), shared: shared.clone() };
    {
        let mut w = sim.world.borrow_mut();
        for i in 0..roles.len() {
            let dial = scenario.start_dials(&roles, i);
            w.start(i, dial)?;
        }
        w.drain_dirty();
    }
    // Connect: run until every start dial is connected (or the deadline), like the other
    // runtimes' wait before the run starts.
    let pairs = scenario.start_pairs(&roles);
    let connect_deadline = EPOCH_MS * 1000 + CONNECT_DEADLINE_US;
    loop {
        let mut w = sim.world.borrow_mut();
        if w.connected.len() >= pairs || w.now_us >= connect_deadline {
            if w.connected.len() < pairs {
                shared.event("not every node connected to all its start peers by the deadline; starting anyway".into());
            }
            break;
        }
        if !step(&mut w) {
            break;
        }
    }
    let (t0_us, load_end_us) = {
        let mut w = sim.world.borrow_mut();
        w.t0_us = w.now_us;
        w.load_end_us = w.t0_us + ((t.warmup_s + t.attack_s + t.cooldown_s) * 1e6) as u64;
        w.hard_end_us = w.load_end_us + (t.drain_s * 1e6) as u64;
        for k in 0..w.plan.len() {
            let at = w.t0_us + (w.plan[k].0 * 1e6) as u64;
            w.at(at, Event::Timeline(k));
        }
        w.after(0, Event::Workload);
        w.after(0, Event::Sample);
        let (load_end, now) = (w.load_end_us, w.now_us);
        w.at(load_end.max(now), Event::Drain);
        (w.t0_us, w.load_end_us)
    };
    shared.t0.store(t0_us / 1000, Ordering::Relaxed);
    shared.event(format!("start: {} simulated nodes, scenario {}", roles.len(), scenario.name));
    let mut state = timeline::State::default();
    let mut load_logged = false;
    loop {
        let mut w = sim.world.borrow_mut();
        if w.stats.events >= MAX_EVENTS {
            anyhow::bail!("the simulation exceeded {MAX_EVENTS} events (livelock?)");
        }
        let Some(Reverse(next)) = w.queue.pop() else { break };
        w.now_us = next.at_us;
        w.clock.store(w.now_us / 1000, Ordering::Relaxed);
        w.stats.events += 1;
        if !load_logged && w.now_us >= load_end_us {
            load_logged = true;
            drop(w);
            shared.event("workload ends; draining".into());
            w = sim.world.borrow_mut();
        }
        match next.event {
            Event::Timeline(k) => {
                let action = w.plan[k].1.clone();
                drop(w);
                now_or_never(timeline::apply(&sim, &mut state, action));
            }
            Event::End => {
                w.end_us = Some(w.now_us);
                break;
            }
            Event::Drain => {
                let (now, hard_end) = (w.now_us, w.hard_end_us);
                if now >= hard_end || w.drained() {
                    let settle = 300_000u64.min(hard_end.saturating_sub(now));
                    let drained = w.drained();
                    drop(w);
                    shared.event(if drained { "drained".into() } else { "drain deadline reached".into() });
                    sim.world.borrow_mut().after(settle, Event::End);
                } else {
                    w.after(100_000, Event::Drain);
                }
            }
            event => {
                handle(&mut w, event);
                w.drain_dirty();
            }
        }
    }
    let w = sim.world.into_inner();
    let end_ms = w.end_us.unwrap_or(w.now_us) / 1000;
    let nodes = w
        .nodes
        .iter()
        .enumerate()
        .map(|(index, node)| NodeRecord {
            index,
            role: node.role,
            key: node.keypair.public().to_hex(),
            peer_id: byzgossip_node::identity::peer_id(&node.keypair.public()).map(|p| p.to_string()).unwrap_or_default(),
            member: (index < n).then_some(index),
            armed_at_ms: node.armed_at,
            down_at_end: node.engine.is_none(),
        })
        .collect();
    let traffic = w
        .nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let c = &node.agent.traffic;
            TrafficRecord {
                node: index,
                msgs_in: c[0].load(Ordering::Relaxed),
                bytes_in: c[1].load(Ordering::Relaxed),
                msgs_out: c[2].load(Ordering::Relaxed),
                bytes_out: c[3].load(Ordering::Relaxed),
            }
        })
        .collect();
    let log = shared.log(scenario, nodes, traffic, (t0_us / 1000, load_end_us / 1000, end_ms));
    let mut stats = w.stats.clone();
    stats.virtual_s = (w.now_us - EPOCH_MS * 1000) as f64 / 1e6;
    Ok(SimRun { log, state_hash: w.state_hash(), stats })
}

/// Runs the next event before the run starts (connection setup); false when none is left.
fn step(w: &mut World) -> bool {
    let Some(Reverse(next)) = w.queue.pop() else { return false };
    w.now_us = next.at_us;
    w.clock.store(w.now_us / 1000, Ordering::Relaxed);
    w.stats.events += 1;
    handle(w, next.event);
    w.drain_dirty();
    true
}

fn handle(w: &mut World, event: Event) {
    match event {
        Event::Timer(i, inc, ms) => {
            if w.nodes[i].incarnation != inc || w.nodes[i].timer_at != Some(ms) {
                return;
            }
            w.nodes[i].timer_at = None;
            let now = w.now_ms();
            if let Some(engine) = w.nodes[i].engine.as_mut() {
                engine.handle_timeout(now);
            }
            w.dirty.insert(i);
        }
        Event::Gossip { to, from, epoch, topic, bytes, hops } => w.on_gossip(to, from, epoch, topic, bytes, hops),
        Event::Admit { to, inc, from, topic, bytes, hops } => {
            let node = &mut w.nodes[to];
            node.parked = (node.parked.0.saturating_sub(1), node.parked.1.saturating_sub(bytes.len()));
            if node.incarnation == inc {
                let id = Digest::of(&bytes).0;
                w.admit(to, from, id, topic, bytes, hops);
            }
        }
        Event::Verified(i, inc) => w.on_verified(i, inc),
        Event::Committed(i, inc) => w.on_committed(i, inc),
        Event::SyncRequest { to, from, from_inc, epoch, request_id, request } => {
            w.on_sync_request(to, from, from_inc, epoch, request_id, request)
        }
        Event::SyncResponse { to, inc, from, epoch, request_id, response } => w.on_sync_response(to, inc, from, epoch, request_id, response),
        Event::SyncAdmit { to, inc, from, request_id, response } => {
            let node = &mut w.nodes[to];
            node.parked = (node.parked.0.saturating_sub(1), node.parked.1.saturating_sub(response.payload_len()));
            if node.incarnation == inc && w.up(to) {
                let now = w.now_ms();
                let peer = Peer::Key(w.nodes[from].keypair.public());
                if let Some(engine) = w.nodes[to].engine.as_mut() {
                    engine.handle_sync_response(now, peer, request_id, Some(response));
                }
                w.dirty.insert(to);
            }
        }
        Event::Connect { from, inc, to } => w.on_connect(from, inc, to),
        Event::Workload => w.on_workload(),
        Event::Sample => w.on_sample(),
        Event::Driver(i, generation) => w.on_driver(i, generation),
        Event::Timeline(_) | Event::Drain | Event::End => {}
    }
}
