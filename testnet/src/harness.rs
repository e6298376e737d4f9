//! The in-process runtime: starts every node of a scenario in this process on 127.0.0.1
//! (OS-chosen ports), connects them, drives the workload, applies the timeline shared with
//! the process runtime (`crate::timeline`: arming, kills, restarts, pauses, partitions,
//! eclipse, inbound loss and delay), records every correct node's deliveries and peer views, and returns the
//! [`RunLog`] the checker reads.
//!
//! # Bounds
//! Every phase has a deadline from the scenario; startup waits at most
//! [`CONNECT_DEADLINE`]; every node call has a timeout ([`CALL_TIMEOUT`]); the drain ends
//! early once every honest broadcast is delivered by every live correct node. A run
//! therefore ends by itself within `warmup + attack + cooldown + drain` seconds plus startup
//! and shutdown.

use crate::adversary::{self, Agent, AgentInterceptor, DriverContext, HandleCell, LOAD_TOPIC, current};
use crate::record::{RunLog, TrafficRecord};
use crate::recorder::{Shared, lock, traffic_record};
use crate::scenario::{Role, Scenario};
use crate::timeline::{self, Failure, FaultTarget, NodeApi};
use anyhow::Context;
use byzgossip_crypto::{Genesis, Keypair, PublicKey};
use byzgossip_node::api::ApiToken;
use byzgossip_reputation::PeerSnapshot;
use byzgossip_node::storage::{MemoryStore, Store};
use byzgossip_node::{DeliveryEvent, NodeBuilder, NodeConfig, NodeHandle, now_ms};
use futures::StreamExt;
use libp2p::{Multiaddr, PeerId};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Longest wait for every node to connect to every other before the run starts anyway.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(15);
/// Timeout of one call to a node (broadcast, publish, peers, dial, ...).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Sync interval of every testnet node (both runtimes): shorter than a production node's
/// 1 s, so short scenarios catch up within their deadlines.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(300);
/// Tick interval of every testnet node (both runtimes).
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);
/// How often peer views are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

/// Options of a run that are not part of the scenario.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Start each node's HTTP API on 127.0.0.1 (port 0), every node with the same bearer
    /// token ([`NodeDescription::api_token`]).
    pub api: bool,
    /// Print timeline events as they happen.
    pub verbose: bool,
}

/// A running node, for `up`.
#[derive(Clone, Debug)]
pub struct NodeDescription {
    /// Index in the testnet.
    pub index: usize,
    /// Role.
    pub role: Role,
    /// libp2p peer id.
    pub peer_id: String,
    /// Listen addresses (with `/p2p/<id>`).
    pub listen: Vec<Multiaddr>,
    /// HTTP API address, if running.
    pub api: Option<std::net::SocketAddr>,
    /// The bearer token of the API's POST endpoints (`Authorization: Bearer <token>`), when
    /// the APIs run: one token for every node of the testnet.
    pub api_token: Option<String>,
}

/// One node of the testnet, across restarts.
struct Slot {
    index: usize,
    role: Role,
    keypair: Keypair,
    peer_id: PeerId,
    store: Arc<dyn Store>,
    agent: Arc<Agent>,
    cell: HandleCell,
    incarnation: AtomicU32,
    tracker: Mutex<Option<JoinHandle<()>>>,
    addrs: Mutex<Vec<Multiaddr>>,
    armed_at: AtomicU64,
    /// The attack driver while armed (see [`Testnet::spawn_driver`]).
    driver: Mutex<Option<JoinHandle<()>>>,
}

impl Slot {
    fn handle(&self) -> Option<NodeHandle> {
        current(&self.cell)
    }
    fn addrs(&self) -> Vec<Multiaddr> {
        self.addrs.lock().map(|a| a.clone()).unwrap_or_default()
    }
}


/// A running testnet.
pub struct Testnet {
    scenario: Scenario,
    genesis: Genesis,
    slots: Vec<Arc<Slot>>,
    shared: Arc<Shared>,
    /// The API token of every node (with [`RunOptions::api`]), the same across restarts.
    api_token: Option<ApiToken>,
    background: Mutex<Vec<JoinHandle<()>>>,
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(CALL_TIMEOUT, f).await.ok()
}

impl Testnet {
    /// Starts every node of `scenario` and waits until they are connected (at most
    /// [`CONNECT_DEADLINE`]).
    pub async fn start(scenario: &Scenario, options: RunOptions) -> anyhow::Result<Testnet> {
        scenario.validate()?;
        let roles = scenario.roles();
        let (keys, genesis) = scenario.keys_and_genesis();
        let network = genesis.network_id();
        let victim = keys[scenario.attack.victim].public();
        let shared = Arc::new(Shared { verbose: options.verbose, ..Default::default() });
        let slots: Vec<Arc<Slot>> = roles
            .iter()
            .zip(&keys)
            .enumerate()
            .map(|(index, (role, keypair))| {
                let censored = if *role == Role::Censor { vec![victim] } else { vec![] };
                Arc::new(Slot {
                    index,
                    role: *role,
                    keypair: keypair.clone(),
                    peer_id: byzgossip_node::identity::peer_id(&keypair.public()).expect("ed25519 key"),
                    store: Arc::new(MemoryStore::new()),
                    agent: Agent::new(*role, keypair.clone(), network, censored),
                    cell: Arc::new(Mutex::new(None)),
                    incarnation: AtomicU32::new(0),
                    tracker: Mutex::new(None),
                    addrs: Mutex::new(vec![]),
                    armed_at: AtomicU64::new(0),
                    driver: Mutex::new(None),
                })
            })
            .collect();
        let testnet = Testnet {
            scenario: scenario.clone(),
            genesis,
            slots,
            shared,
            api_token: options.api.then(ApiToken::generate),
            background: Mutex::new(vec![]),
        };
        let roles: Vec<Role> = testnet.slots.iter().map(|s| s.role).collect();
        for i in 0..testnet.slots.len() {
            let peers: Vec<Multiaddr> =
                testnet.scenario.start_dials(&roles, i).into_iter().flat_map(|j| testnet.slots[j].addrs()).collect();
            testnet.start_node(i, peers).await.with_context(|| format!("starting node {i}"))?;
        }
        testnet.wait_connected().await;
        Ok(testnet)
    }

    fn config(&self, slot: &Slot, bootstrap: Vec<Multiaddr>) -> NodeConfig {
        let mut config = NodeConfig::new(self.genesis.clone(), slot.keypair.clone());
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")];
        config.bootstrap = bootstrap;
        config.use_genesis_bootstrap = false;
        config.sync_interval = SYNC_INTERVAL;
        config.tick_interval = TICK_INTERVAL;
        config.topics = vec![LOAD_TOPIC.to_owned()];
        config.verify_workers = 1;
        self.scenario.apply_node_settings(&mut config);
        if let Some(token) = &self.api_token {
            config.api_listen = Some("127.0.0.1:0".parse().expect("valid address"));
            config.api_token = token.clone();
        }
        config
    }

    async fn start_node(&self, i: usize, bootstrap: Vec<Multiaddr>) -> anyhow::Result<NodeHandle> {
        let slot = self.slots[i].clone();
        let incarnation = slot.incarnation.load(Ordering::Relaxed);
        let seed = self.scenario.seed ^ ((i as u64) << 20) ^ ((incarnation as u64) << 40);
        let interceptor = AgentInterceptor::new(slot.agent.clone(), seed);
        let handle = NodeBuilder::new(self.config(&slot, bootstrap))
            .with_store(slot.store.clone())
            .with_interceptor(Box::new(interceptor))
            .spawn()
            .await?;
        *lock(&slot.addrs) = handle.listen_addrs();
        *lock(&slot.cell) = Some(handle.clone());
        if slot.role.correct() {
            let shared = self.shared.clone();
            let h = handle.clone();
            let task = tokio::spawn(async move {
                let mut stream = Box::pin(h.deliveries(1));
                while let Some(event) = stream.next().await {
                    match event {
                        DeliveryEvent::Bracha(d) => {
                            shared.record_bracha(i, d.cursor, &d.instance.origin, d.instance.seq, &d.digest, d.delivered_at_ms);
                        }
                        DeliveryEvent::Gossip(g) => shared.record_gossip(i, incarnation, &g.origin, &g.id, None),
                    }
                }
            });
            if let Some(old) = lock(&slot.tracker).replace(task) {
                old.abort();
            }
        }
        Ok(handle)
    }

    async fn wait_connected(&self) {
        let roles: Vec<Role> = self.slots.iter().map(|s| s.role).collect();
        let start_peers = self.scenario.start_peers(&roles);
        let end = Instant::now() + CONNECT_DEADLINE;
        loop {
            let mut ok = true;
            for slot in &self.slots {
                let Some(h) = slot.handle() else { continue };
                let want = start_peers[slot.index].len();
                let connected = timed(h.status()).await.and_then(Result::ok).map_or(0, |s| s.connected_peers);
                if connected < want {
                    ok = false;
                    break;
                }
            }
            if ok || Instant::now() >= end {
                if !ok {
                    self.shared.event("not every node connected to all its start peers by the deadline; starting anyway".into());
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Each node's index, role, peer id, listen addresses, HTTP API address and API token.
    pub fn describe(&self) -> Vec<NodeDescription> {
        self.slots
            .iter()
            .map(|s| NodeDescription {
                index: s.index,
                role: s.role,
                peer_id: s.peer_id.to_string(),
                listen: s.addrs(),
                api: s.handle().and_then(|h| h.api_addr()),
                api_token: self.api_token.as_ref().map(|t| t.as_str().to_owned()),
            })
            .collect()
    }

    /// Each node's role and current handle (`None` while killed), in index order. For
    /// benchmarks ([`crate::bench`]) that drive the nodes directly instead of [`Testnet::run`].
    pub fn nodes(&self) -> Vec<(Role, Option<NodeHandle>)> {
        self.slots.iter().map(|s| (s.role, s.handle())).collect()
    }

    /// Arms every malicious node now and starts its attack driver; the caller aborts the
    /// returned tasks (for benchmarks; [`Testnet::run`] follows the scenario's timeline).
    pub fn arm_attackers(&self) -> Vec<JoinHandle<()>> {
        let mut drivers = Vec::new();
        for i in 0..self.slots.len() {
            if !self.slots[i].role.correct() {
                self.set_armed(i, true);
                drivers.push(self.spawn_driver(i));
            }
        }
        drivers
    }

    // ---- faults (applied by crate::timeline through FaultTarget) ----

    /// Aborts node `i`'s task (a crash) and its delivery tracker.
    fn kill_node(&self, i: usize) {
        let slot = &self.slots[i];
        if let Some(h) = lock(&slot.cell).take() {
            h.abort();
        }
        if let Some(t) = lock(&slot.tracker).take() {
            t.abort();
        }
        slot.incarnation.fetch_add(1, Ordering::Relaxed);
    }

    /// Starts node `i` again from its store, dialling every live node it is not cut from.
    async fn restart_node(&self, i: usize, cut: &[usize]) -> anyhow::Result<()> {
        let peers: Vec<Multiaddr> = self
            .slots
            .iter()
            .filter(|s| s.index != i && !cut.contains(&s.index) && s.handle().is_some())
            .flat_map(|s| s.addrs())
            .collect();
        self.start_node(i, peers).await.map(|_| ())
    }

    fn set_armed(&self, i: usize, on: bool) {
        let slot = &self.slots[i];
        slot.agent.armed.store(on, Ordering::Relaxed);
        if on {
            slot.armed_at.store(now_ms(), Ordering::Relaxed);
        }
    }

    fn spawn_driver(&self, i: usize) -> JoinHandle<()> {
        let slot = &self.slots[i];
        let honest: Vec<PublicKey> =
            self.slots.iter().filter(|s| s.role == Role::Honest).map(|s| s.keypair.public()).collect();
        let ctx = DriverContext {
            node: slot.cell.clone(),
            honest,
            knobs: self.scenario.attack.clone(),
            max_message_len: byzgossip_reputation::AdmissionConfig::default().max_message_len,
            seed: self.scenario.seed ^ 0xd1e5 ^ ((i as u64) << 24),
        };
        tokio::spawn(adversary::drive(slot.agent.clone(), ctx))
    }

    /// Runs the scenario's timeline on this testnet and returns the log.
    pub async fn run(self) -> anyhow::Result<RunLog> {
        let tn = Arc::new(self);
        let marks = timeline::run_scenario(&tn, "nodes").await;
        for slot in &tn.slots {
            if let Some(d) = lock(&slot.driver).take() {
                d.abort();
            }
        }
        for h in lock(&tn.background).drain(..) {
            h.abort();
        }
        let log = timeline::collect(tn.as_ref(), &marks);
        tn.stop().await;
        Ok(log)
    }

    /// Stops every node (graceful, then abort after [`CALL_TIMEOUT`]).
    pub async fn stop(&self) {
        let mut stops = Vec::new();
        for slot in &self.slots {
            if let Some(t) = lock(&slot.tracker).take() {
                t.abort();
            }
            if let Some(h) = lock(&slot.cell).take() {
                stops.push(async move {
                    if timed(h.shutdown()).await.is_none() {
                        h.abort();
                    }
                });
            }
        }
        futures::future::join_all(stops).await;
    }
}

/// In process, a node is its handle.
impl NodeApi for NodeHandle {
    async fn broadcast(&self, value: Vec<u8>) -> Result<u64, Failure> {
        NodeHandle::broadcast(self, value).await.map(|instance| instance.seq).map_err(|_| Failure::Failed)
    }
    async fn publish(&self, topic: &'static str, payload: Vec<u8>) -> Result<String, Failure> {
        NodeHandle::publish(self, topic, payload).await.map(|id| id.to_hex()).map_err(|_| Failure::Failed)
    }
    async fn peers(&self) -> Result<Vec<PeerSnapshot>, Failure> {
        let peers = NodeHandle::peers(self).await.map_err(|_| Failure::Failed)?;
        Ok(peers.into_iter().map(|p| p.reputation).collect())
    }
}

impl timeline::Runtime for Testnet {
    type Node = NodeHandle;
    fn scenario(&self) -> &Scenario {
        &self.scenario
    }
    fn role(&self, i: usize) -> Role {
        self.slots[i].role
    }
    fn key(&self, i: usize) -> PublicKey {
        self.slots[i].keypair.public()
    }
    fn peer_id(&self, i: usize) -> PeerId {
        self.slots[i].peer_id
    }
    fn node(&self, i: usize) -> Option<NodeHandle> {
        self.slots[i].handle()
    }
    /// The interceptor drops everything; the node still answers its handle.
    fn paused(&self, i: usize) -> bool {
        self.slots[i].agent.paused.load(Ordering::Relaxed)
    }
    fn armed_at(&self, i: usize) -> u64 {
        self.slots[i].armed_at.load(Ordering::Relaxed)
    }
    /// Counted by the node's interceptor.
    fn traffic(&self, i: usize) -> TrafficRecord {
        traffic_record(i, self.slots[i].agent.traffic.each_ref().map(|c| c.load(Ordering::Relaxed)))
    }
}

impl FaultTarget for Testnet {
    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn correct(&self, i: usize) -> bool {
        self.slots[i].role.correct()
    }

    fn is_up(&self, i: usize) -> bool {
        self.slots[i].handle().is_some()
    }

    async fn arm(&self, i: usize) {
        self.set_armed(i, true);
        let driver = self.spawn_driver(i);
        if let Some(old) = lock(&self.slots[i].driver).replace(driver) {
            old.abort();
        }
    }

    async fn disarm(&self, i: usize) {
        if let Some(d) = lock(&self.slots[i].driver).take() {
            d.abort();
        }
        self.set_armed(i, false);
    }

    /// A crash and a start: a new node task has empty gossip caches.
    async fn refresh(&self, i: usize, cut: &[usize]) {
        self.kill_node(i);
        if let Err(e) = self.restart_node(i, cut).await {
            self.shared.event(format!("refresh of node {i} failed: {e:#}"));
        }
    }

    async fn kill(&self, i: usize) {
        self.kill_node(i);
    }

    async fn start(&self, i: usize, cut: &[usize]) -> anyhow::Result<()> {
        self.restart_node(i, cut).await
    }

    /// The interceptor drops everything in and out; connections stay open.
    async fn pause(&self, i: usize, paused: bool) {
        self.slots[i].agent.paused.store(paused, Ordering::Relaxed);
    }

    async fn block(&self, i: usize, peer: usize, block: bool) {
        if let Some(h) = self.slots[i].handle() {
            let _ = timed(h.disconnect(self.slots[peer].peer_id, block)).await;
        }
    }

    /// Through the node's interceptor ([`crate::adversary::Agent::set_degradation`]); the
    /// setting lives in the slot's agent, so it outlasts restarts.
    async fn degrade(&self, i: usize, degradation: Option<crate::scenario::Degradation>) {
        self.slots[i].agent.set_degradation(degradation);
    }

    /// A restarted node listens on a new port, which its peers' bootstrap lists do not
    /// have, so the node's own redialling may not find it: dial explicitly.
    async fn reconnect(&self, i: usize, peer: usize) {
        if let (Some(h), Some(addr)) = (self.slots[i].handle(), self.slots[peer].addrs().first().cloned()) {
            let _ = timed(h.dial(addr)).await;
        }
    }
}

/// Starts the scenario's nodes, runs its timeline and returns the log.
pub async fn run(scenario: &Scenario, options: RunOptions) -> anyhow::Result<RunLog> {
    let testnet = Testnet::start(scenario, options).await?;
    testnet.run().await
}
