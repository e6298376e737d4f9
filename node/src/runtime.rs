//! The node task: one tokio task owns the swarm, admission, the Bracha machine and storage
//! handles, and reacts to swarm events, handle commands, verification results and timers.
//!
//! # Data path of a received message
//! gossipsub message -> interceptor -> topic/kind check -> `Admission::precheck` (decode,
//! stateless checks, window, seen-set, reputation gate) -> bounded verification queue ->
//! worker thread (`verify_strict`) -> `Admission::complete` -> validation result to gossipsub
//! -> Bracha / gossip delivery. When the queue is full the message is answered `Ignore` at
//! once: no unbounded backlog, and gossip or sync brings an honest message back.
//!
//! An interceptor may ask to delay a received message or sync response
//! ([`Inbound::Delay`]): it is parked (bounded by [`MAX_PARKED`] and [`MAX_PARKED_BYTES`],
//! beyond which it is dropped as `Ignore`) and taken up again by the event loop when due,
//! which never blocks meanwhile. Without an interceptor nothing is ever parked.
//!
//! # Durability order
//! A broadcast's seq is reserved in storage before its SEND is signed; every own SEND, ECHO
//! and READY is stored before it is published (if one is already stored for that slot, the
//! stored one is published instead, so a restarted node never votes differently); a delivery
//! is stored before it is announced to the application.
//!
//! # Retransmission
//! A vote published before the mesh formed (or lost otherwise) would stall an instance. Until
//! an instance is delivered here, this node re-signs its own messages for it with a fresh
//! timestamp and publishes them again, with a doubling interval. Same digest, so peers count
//! it once; a fresh header, so gossipsub does not drop it as a duplicate of the first copy.

use crate::config::NodeConfig;
use crate::gossip::{GossipBody, RecentGossip};
use crate::handle::{
    Command, Delivered, DeliveryEvent, EVENT_BUFFER, GossipMessage, NodeBuilder, NodeError, NodeHandle, NodeInfo,
    PeerInfo, RawTopic, Status,
};
use crate::hooks::{Inbound, Interceptor, MAX_PARKED, MAX_PARKED_BYTES};
use crate::identity;
use crate::metrics::Metrics;
use crate::network::{self, Behaviour, BehaviourEvent, Topics};
use crate::storage::{Appended, MemoryStore, RedbStore, SeqStream, Store, StoredDelivery};
use crate::sync::{OriginMark, ResponseBuilder, SyncRequest, SyncResponse};
use byzgossip_bracha::{Bracha, Certificate, Evidence, InstanceId, Message, Step};
use byzgossip_crypto::codec::{self, MAX_ENVELOPE_LEN};
use byzgossip_crypto::{Committee, Digest, Envelope, GossipPolicy, Keypair, Kind, NetworkId, PublicKey, VerifiedEnvelope, VerifyError};
use byzgossip_reputation::{Acceptance, Admission, Event, Pending, PeerStatus, StatusChange, Verdict};
use futures::{Stream, StreamExt};
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub};
use rand::seq::IndexedRandom;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::cmp::Reverse;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Shortest first retransmission delay of an own message; doubles up to [`RETRANSMIT_MAX`].
/// The first delay is [`RETRANSMIT_LATENCY_FACTOR`] times the recent delivery latency when
/// that is longer: under load every instance is slow, nothing was lost, and a retransmission
/// would only be one more signature for every peer to check.
const RETRANSMIT_FIRST: Duration = Duration::from_millis(2000);
/// The first retransmission waits at least this many times the smoothed delivery latency.
const RETRANSMIT_LATENCY_FACTOR: u32 = 3;
/// Longest retransmission interval: an instance stalled by a burst of loss resumes within
/// this long after the loss ends.
const RETRANSMIT_MAX: Duration = Duration::from_secs(8);
/// Most own messages retransmitted per tick (4 ticks a second by default).
const MAX_RETRANSMIT_PER_TICK: usize = 8;
/// No retransmission while this many Bracha messages wait for verification here: a long
/// line means the committee is overloaded, not that messages were lost, and retransmitting
/// then only adds signatures for everyone to check (congestion collapse).
const RETRANSMIT_BACKOFF_QUEUE: usize = 64;
/// The Bracha line of the verification queue holds this many times `validation_queue` jobs:
/// dropping a vote costs a retransmission round, dropping gossip costs little.
const BRACHA_QUEUE_FACTOR: usize = 4;
/// Most instances tracked for latency (first sight to delivery); older entries are dropped.
const MAX_TRACKED_LATENCY: usize = 8192;
/// Most stored deliveries looked up to answer one sync digest.
const MAX_SYNC_LOOKUPS: usize = 4 * crate::sync::MAX_SYNC_ITEMS;
/// Most outstanding sync requests.
const MAX_SYNC_IN_FLIGHT: usize = 64;
/// Most peers an operator (or the testnet) may block by hand at once: the set lives in memory
/// for the node's lifetime, and a committee plus its observers is far smaller.
pub const MAX_OPERATOR_BLOCKS: usize = 4096;

fn cfg_err(e: impl ToString) -> NodeError {
    NodeError::Config(e.to_string())
}

/// Runs a storage call on a blocking thread (redb fsyncs).
async fn blocking<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&dyn Store) -> T + Send + 'static,
) -> T {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(store.as_ref())).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// A message waiting for its signature check.
struct VerifyJob {
    pending: Pending,
    gossip_id: gossipsub::MessageId,
    source: PeerId,
    received: Instant,
}

struct VerifyResult {
    job: VerifyJob,
    result: Result<VerifiedEnvelope, VerifyError>,
}

/// The two waiting lines of the verification pool. Committee traffic (Bracha and evidence)
/// is served first, so a gossip flood can delay gossip but never starve agreement.
#[derive(Default)]
struct Lines {
    bracha: std::collections::VecDeque<VerifyJob>,
    gossip: std::collections::VecDeque<VerifyJob>,
    closed: bool,
}

struct VerifyQueue {
    lines: std::sync::Mutex<Lines>,
    ready: std::sync::Condvar,
}

impl VerifyQueue {
    /// The next job, Bracha first; `None` once closed.
    fn next(&self) -> Option<VerifyJob> {
        let mut lines = self.lines.lock().ok()?;
        loop {
            if let Some(job) = lines.bracha.pop_front().or_else(|| lines.gossip.pop_front()) {
                return Some(job);
            }
            if lines.closed {
                return None;
            }
            lines = self.ready.wait(lines).ok()?;
        }
    }
}

/// A fixed pool of threads verifying signatures off the reactor. The gossip line is bounded
/// by `capacity` jobs outstanding (queued, being verified or waiting to be completed), the
/// Bracha line by `BRACHA_QUEUE_FACTOR` times that; beyond, `submit` refuses and the message
/// is answered `Ignore`.
struct Verifier {
    queue: Arc<VerifyQueue>,
    in_flight_bracha: usize,
    in_flight_gossip: usize,
    capacity: usize,
}

impl Verifier {
    fn start(workers: usize, capacity: usize, results: mpsc::Sender<VerifyResult>) -> Verifier {
        let queue = Arc::new(VerifyQueue { lines: std::sync::Mutex::new(Lines::default()), ready: std::sync::Condvar::new() });
        for i in 0..workers {
            let queue = queue.clone();
            let results = results.clone();
            let spawned = std::thread::Builder::new().name(format!("byzgossip-verify-{i}")).spawn(move || {
                while let Some(job) = queue.next() {
                    let result = job.pending.verify();
                    if results.blocking_send(VerifyResult { job, result }).is_err() {
                        return;
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a verification thread");
            }
        }
        Verifier { queue, in_flight_bracha: 0, in_flight_gossip: 0, capacity }
    }

    fn is_bracha(job: &VerifyJob) -> bool {
        job.pending.envelope().header().kind != Kind::Gossip
    }

    /// Queues a job; when its line is full, gives back the gossipsub id and source to answer
    /// `Ignore` to.
    fn submit(&mut self, job: VerifyJob) -> Result<(), (gossipsub::MessageId, PeerId)> {
        let bracha = Self::is_bracha(&job);
        let (in_flight, capacity) = if bracha {
            (&mut self.in_flight_bracha, self.capacity * BRACHA_QUEUE_FACTOR)
        } else {
            (&mut self.in_flight_gossip, self.capacity)
        };
        let Ok(mut lines) = self.queue.lines.lock() else { return Err((job.gossip_id, job.source)) };
        if *in_flight >= capacity {
            return Err((job.gossip_id, job.source));
        }
        *in_flight += 1;
        if bracha { lines.bracha.push_back(job) } else { lines.gossip.push_back(job) }
        drop(lines);
        self.queue.ready.notify_one();
        Ok(())
    }

    /// A job came back from a worker.
    fn done(&mut self, job: &VerifyJob) {
        if Self::is_bracha(job) {
            self.in_flight_bracha = self.in_flight_bracha.saturating_sub(1);
        } else {
            self.in_flight_gossip = self.in_flight_gossip.saturating_sub(1);
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight_bracha + self.in_flight_gossip
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        if let Ok(mut lines) = self.queue.lines.lock() {
            lines.closed = true;
        }
        self.queue.ready.notify_all();
    }
}

/// Keeps this node's own gossip under the origin budget every peer applies to a new origin
/// (`BudgetConfig::origin_base_*`): beyond it, peers would drop the messages and blame us, so
/// `publish` refuses instead and the application gets backpressure, not silent loss.
struct PublishBudget {
    tokens: f64,
    at: Instant,
    rate_per_s: f64,
    burst: f64,
}

impl PublishBudget {
    fn new(budget: &byzgossip_reputation::BudgetConfig) -> Self {
        // Stay a little under the peers' limit so clock and timing differences never cross it.
        let (rate_per_s, burst) = (budget.origin_base_rate_per_s * 0.9, budget.origin_base_burst * 0.9);
        Self { tokens: burst, at: Instant::now(), rate_per_s, burst }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate_per_s).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What an outbound sync request was for.
enum SyncPurpose {
    Digest,
    Value { instance: InstanceId },
}

/// Received messages an interceptor asked to delay ([`Inbound::Delay`]), released in due
/// order (ties in arrival order). At most `max_items` items and `max_bytes` bytes
/// ([`MAX_PARKED`], [`MAX_PARKED_BYTES`] in the node); [`Parked::park`] refuses beyond.
struct Parked<T> {
    heap: BinaryHeap<Reverse<ParkedEntry<T>>>,
    bytes: usize,
    arrivals: u64,
    max_items: usize,
    max_bytes: usize,
}

struct ParkedEntry<T> {
    due: Instant,
    arrival: u64,
    bytes: usize,
    item: T,
}

impl<T> PartialEq for ParkedEntry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.arrival) == (other.due, other.arrival)
    }
}
impl<T> Eq for ParkedEntry<T> {}
impl<T> PartialOrd for ParkedEntry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for ParkedEntry<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.arrival).cmp(&(other.due, other.arrival))
    }
}

impl<T> Parked<T> {
    fn new(max_items: usize, max_bytes: usize) -> Self {
        Parked { heap: BinaryHeap::new(), bytes: 0, arrivals: 0, max_items, max_bytes }
    }

    /// Holds `item` (of `bytes` bytes) until `due`; gives it back when the set is full.
    fn park(&mut self, due: Instant, bytes: usize, item: T) -> Result<(), T> {
        if self.heap.len() >= self.max_items || self.bytes.saturating_add(bytes) > self.max_bytes {
            return Err(item);
        }
        self.arrivals += 1;
        self.bytes += bytes;
        self.heap.push(Reverse(ParkedEntry { due, arrival: self.arrivals, bytes, item }));
        Ok(())
    }

    /// When the next item is due, if any is held.
    fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.due)
    }

    /// The next item due by `now`.
    fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.next_due()? > now {
            return None;
        }
        let Reverse(entry) = self.heap.pop()?;
        self.bytes -= entry.bytes;
        Some(entry.item)
    }

    fn len(&self) -> usize {
        self.heap.len()
    }
}

/// A received message held for [`Inbound::Delay`].
enum ParkedInbound {
    /// A gossipsub message, admitted when due.
    Gossip { source: PeerId, id: gossipsub::MessageId, message: gossipsub::Message, received: Instant },
    /// A response to one of our sync requests, applied when due.
    Sync { peer: PeerId, purpose: Option<SyncPurpose>, response: SyncResponse },
}

/// Sleeps until `at`, or forever when nothing is parked.
async fn wake_at(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Bytes a sync response carries (for the parked bytes bound).
fn sync_response_len(response: &SyncResponse) -> usize {
    match response {
        SyncResponse::Catchup { deliveries, gossip } => {
            deliveries.iter().map(|d| d.certificate.len() + d.value.len()).sum::<usize>()
                + gossip.iter().map(|g| g.len()).sum::<usize>()
        }
        SyncResponse::Value(value) => value.as_ref().map_or(0, |v| v.len()),
    }
}

/// Own messages to retransmit until their instance is delivered here.
struct Retransmit {
    envelope: Envelope,
    next_at: Instant,
    interval: Duration,
}

struct Runtime {
    swarm: Swarm<Behaviour>,
    topics: Topics,
    network: NetworkId,
    committee: Committee,
    keypair: Keypair,
    me: PublicKey,
    admission: Admission,
    bracha: Option<Bracha>,
    store: Arc<dyn Store>,
    events: broadcast::Sender<DeliveryEvent>,
    metrics: Metrics,
    libp2p_metrics: libp2p::metrics::Metrics,
    interceptor: Option<Box<dyn Interceptor>>,
    /// Received messages the interceptor delayed (empty without an interceptor).
    parked: Parked<ParkedInbound>,
    verifier: Verifier,
    subscribed: HashSet<String>,
    recent_gossip: RecentGossip,
    connected: HashSet<PeerId>,
    bootstrap: Vec<(Multiaddr, Option<PeerId>)>,
    redial: HashMap<PeerId, (Instant, Duration)>,
    redial_base: Duration,
    /// Peers blocked by hand ([`NodeHandle::disconnect`], the HTTP API's
    /// `/peers/{id}/block`), kept apart from reputation bans so that lifting one never lifts
    /// the other. At most [`MAX_OPERATOR_BLOCKS`].
    operator_blocked: HashSet<PeerId>,
    sync_requests: HashMap<OutboundRequestId, SyncPurpose>,
    retransmit: HashMap<(InstanceId, Kind), Retransmit>,
    first_seen: HashMap<InstanceId, Instant>,
    /// Smoothed (1/8 weight per sample) first-sight-to-delivery latency, for the first
    /// retransmission delay.
    latency_ewma: Duration,
    listen: Vec<Multiaddr>,
    max_message_len: usize,
    max_value_len: usize,
    gossip_policy: GossipPolicy,
    publish_budget: PublishBudget,
}

pub(crate) async fn spawn(builder: NodeBuilder) -> Result<NodeHandle, NodeError> {
    let NodeBuilder { config, store, interceptor } = builder;
    config.validate().map_err(NodeError::Config)?;
    let committee = config.genesis.committee().map_err(cfg_err)?;
    let network = config.genesis.network_id();
    let me = config.keypair.public();
    let member = committee.index_of(&me);

    let store: Arc<dyn Store> = match (store, &config.data_dir) {
        (Some(store), _) => store,
        (None, Some(dir)) => {
            std::fs::create_dir_all(dir).map_err(|e| NodeError::Config(format!("data dir {}: {e}", dir.display())))?;
            Arc::new(RedbStore::open(dir)?)
        }
        (None, None) => Arc::new(MemoryStore::new()),
    };
    let admission =
        Admission::new(config.admission.clone(), network, committee.clone(), config.genesis.policy).map_err(cfg_err)?;
    let bracha = match member {
        Some(_) => Some(Bracha::new(committee.clone(), config.keypair.clone(), network, config.bracha.clone()).map_err(cfg_err)?),
        None => None,
    };

    let key = identity::libp2p_keypair(&config.keypair);
    let peer_id = key.public().to_peer_id();
    let (metrics, mut registry) = Metrics::new();
    let libp2p_metrics = libp2p::metrics::Metrics::new(&mut registry);
    metrics.install(registry);
    let mut swarm = network::build_swarm(
        key,
        committee.n(),
        config.admission.max_message_len,
        config.max_connections,
        config.max_connections_per_peer,
    )
    .map_err(NodeError::Network)?;
    let listen = bind(&mut swarm, &config.listen, peer_id).await?;

    let topics = Topics::new(&network);
    swarm.behaviour_mut().gossipsub.subscribe(&topics.bracha()).map_err(|e| NodeError::Network(e.to_string()))?;
    let mut subscribed = HashSet::new();
    for topic in &config.topics {
        swarm.behaviour_mut().gossipsub.subscribe(&topics.gossip(topic)).map_err(|e| NodeError::Network(e.to_string()))?;
        subscribed.insert(topic.clone());
    }

    let api_listener = match config.api_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| NodeError::Listen { addr: addr.to_string(), reason: e.to_string() })?,
        ),
        None => None,
    };
    let api_addr = api_listener.as_ref().and_then(|l| l.local_addr().ok());

    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let (commands_tx, commands_rx) = mpsc::channel(crate::handle::COMMAND_QUEUE);
    let (results_tx, results_rx) = mpsc::channel((1 + BRACHA_QUEUE_FACTOR) * config.validation_queue.max(1));
    let verifier = Verifier::start(config.verify_workers, config.validation_queue, results_tx);

    let bootstrap = bootstrap_addrs(&config, peer_id);
    let mut runtime = Runtime {
        swarm,
        topics,
        network,
        committee,
        keypair: config.keypair.clone(),
        me,
        admission,
        bracha,
        store: store.clone(),
        events: events.clone(),
        metrics: metrics.clone(),
        libp2p_metrics,
        interceptor,
        parked: Parked::new(MAX_PARKED, MAX_PARKED_BYTES),
        verifier,
        subscribed,
        recent_gossip: RecentGossip::default(),
        connected: HashSet::new(),
        bootstrap,
        redial: HashMap::new(),
        redial_base: config.redial_backoff,
        operator_blocked: HashSet::new(),
        sync_requests: HashMap::new(),
        retransmit: HashMap::new(),
        first_seen: HashMap::new(),
        latency_ewma: Duration::ZERO,
        listen: listen.clone(),
        max_message_len: config.admission.max_message_len,
        max_value_len: config.bracha.max_value_len,
        gossip_policy: config.genesis.policy,
        publish_budget: PublishBudget::new(&config.admission.reputation.budget),
    };
    runtime.restore().await?;
    for (addr, _) in runtime.bootstrap.clone() {
        if let Err(e) = runtime.swarm.dial(addr.clone()) {
            tracing::debug!(%addr, error = %e, "bootstrap dial failed");
        }
    }

    let tick = config.tick_interval;
    let sync_interval = config.sync_interval;
    let task = tokio::spawn(runtime.run(commands_rx, results_rx, tick, sync_interval));
    let handle = NodeHandle {
        commands: commands_tx,
        events,
        store,
        info: Arc::new(NodeInfo { public_key: me, peer_id, listen, api: api_addr }),
        task: Arc::new(std::sync::Mutex::new(Some(task))),
    };
    if let Some(listener) = api_listener {
        tokio::spawn(crate::api::serve(listener, handle.clone(), metrics));
    }
    tracing::info!(%peer_id, member = ?member, api = ?api_addr, "node started");
    Ok(handle)
}

/// Starts listening and waits until every listen address is bound (ports resolved).
async fn bind(swarm: &mut Swarm<Behaviour>, addrs: &[Multiaddr], peer_id: PeerId) -> Result<Vec<Multiaddr>, NodeError> {
    let mut listeners = HashMap::new();
    for addr in addrs {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| NodeError::Listen { addr: addr.to_string(), reason: e.to_string() })?;
        listeners.insert(id, addr.clone());
    }
    let mut bound = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !listeners.is_empty() {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| NodeError::Listen { addr: format!("{:?}", listeners.values()), reason: "timed out".into() })?;
        match event {
            SwarmEvent::NewListenAddr { listener_id, address } if listeners.remove(&listener_id).is_some() => {
                bound.push(address.with_p2p(peer_id).unwrap_or_else(|a| a));
            }
            SwarmEvent::ListenerError { listener_id, error } | SwarmEvent::ListenerClosed { listener_id, reason: Err(error), .. } => {
                let addr = listeners.remove(&listener_id).map(|a| a.to_string()).unwrap_or_default();
                return Err(NodeError::Listen { addr, reason: error.to_string() });
            }
            _ => {}
        }
    }
    Ok(bound)
}

fn bootstrap_addrs(config: &NodeConfig, me: PeerId) -> Vec<(Multiaddr, Option<PeerId>)> {
    let mut out = Vec::new();
    let genesis = config.genesis.bootstrap.iter().filter(|_| config.use_genesis_bootstrap).filter_map(|a| a.parse::<Multiaddr>().ok());
    for addr in genesis.chain(config.bootstrap.iter().cloned()) {
        let peer = addr.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        });
        if peer != Some(me) {
            out.push((addr, peer));
        }
    }
    out
}

impl Runtime {
    /// Restores Bracha state from storage: watermarks, own votes (so this node never votes
    /// differently after a restart), and broadcasts whose seq was reserved but whose SEND was
    /// lost to a crash before it was stored (they get an empty value, so the origin's window
    /// never stalls on a gap).
    async fn restore(&mut self) -> Result<(), NodeError> {
        let Some(bracha) = self.bracha.as_mut() else { return Ok(()) };
        let now = now_ms();
        let marks = blocking(&self.store, |s| s.high_watermarks()).await?;
        for mark in &marks {
            if self.committee.contains(&mark.origin) {
                bracha.set_low_watermark(&mark.origin, mark.low).map_err(cfg_err)?;
            }
        }
        let own = blocking(&self.store, |s| s.own_messages()).await?;
        let mut own_sends = HashSet::new();
        let mut steps = Vec::new();
        for message in own {
            let Ok(envelope) = codec::decode_envelope(&message.envelope, MAX_ENVELOPE_LEN) else { continue };
            if message.kind == Kind::BrachaSend {
                own_sends.insert(message.seq);
            }
            match bracha.restore_own_vote(&envelope, now) {
                Ok(step) => {
                    let instance = InstanceId { origin: message.instance_origin, seq: message.seq };
                    if bracha.retained(&instance).is_none() && bracha.low_watermark(&instance.origin).is_some_and(|low| instance.seq >= low) {
                        self.retransmit.insert((instance, message.kind), Retransmit { envelope, next_at: Instant::now(), interval: RETRANSMIT_FIRST });
                    }
                    steps.push(step);
                }
                Err(e) => tracing::debug!(error = %e, "own message not restored"),
            }
        }
        let next = blocking(&self.store, |s| s.peek_seq(SeqStream::Broadcast)).await?;
        let low = bracha.low_watermark(&self.me).unwrap_or(0);
        for seq in low..next {
            if !own_sends.contains(&seq) {
                tracing::warn!(seq, "broadcast lost in a crash before its SEND was stored; filling with an empty value");
                let bracha = self.bracha.as_mut().expect("member");
                match bracha.broadcast_at(seq, Vec::new(), now) {
                    Ok(step) => steps.push(step),
                    Err(e) => tracing::warn!(seq, error = %e, "cannot fill lost broadcast"),
                }
            }
        }
        for step in steps {
            self.apply_step(step).await;
        }
        Ok(())
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut results: mpsc::Receiver<VerifyResult>,
        tick: Duration,
        sync_interval: Duration,
    ) {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut sync_timer = tokio::time::interval(sync_interval);
        sync_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let parked_due = self.parked.next_due();
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                command = commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.on_command(command).await,
                    None => break,
                },
                Some(result) = results.recv() => self.on_verified(result).await,
                _ = ticker.tick() => self.on_tick().await,
                _ = sync_timer.tick() => self.start_sync(),
                () = wake_at(parked_due) => self.release_parked().await,
            }
        }
        tracing::info!("node stopped");
    }

    // ---- commands ----

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Broadcast { value, reply } => {
                let _ = reply.send(self.broadcast(value).await);
            }
            Command::Publish { topic, payload, reply } => {
                let _ = reply.send(self.publish(topic, payload).await);
            }
            Command::PublishRaw { topic, bytes, reply } => {
                let topic = match topic {
                    RawTopic::Bracha => self.topics.bracha(),
                    RawTopic::Gossip(name) => self.topics.gossip(&name),
                };
                let (label, len) = (self.topic_label(&topic.hash()), bytes.len());
                let result = self.swarm.behaviour_mut().gossipsub.publish(topic, bytes);
                if result.is_ok() {
                    self.metrics.count_sent(label, len);
                }
                let _ = reply.send(result.map(|_| ()).map_err(|e| NodeError::Network(e.to_string())));
            }
            Command::Subscribe { topic, reply } => {
                let result = network::check_topic_name(&topic).map_err(NodeError::Refused).and_then(|()| {
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .subscribe(&self.topics.gossip(&topic))
                        .map(|_| ())
                        .map_err(|e| NodeError::Network(e.to_string()))
                });
                if result.is_ok() {
                    self.subscribed.insert(topic);
                }
                let _ = reply.send(result);
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peers());
            }
            Command::Status { reply } => {
                let last_cursor = blocking(&self.store, |s| s.last_cursor()).await.unwrap_or(0);
                let _ = reply.send(Status {
                    public_key: self.me,
                    peer_id: self.swarm.local_peer_id().to_string(),
                    member: self.committee.index_of(&self.me),
                    network: self.network.to_hex(),
                    n: self.committee.n(),
                    f: self.committee.f(),
                    listen: self.listen.iter().map(ToString::to_string).collect(),
                    connected_peers: self.connected.len(),
                    last_cursor,
                    open_instances: self.bracha.as_ref().map_or(0, |b| b.open_instances().count()),
                    validation_queue: self.verifier.in_flight(),
                });
            }
            Command::Dial { addr, reply } => {
                let _ = reply.send(self.swarm.dial(addr).map_err(|e| NodeError::Network(e.to_string())));
            }
            Command::Disconnect { peer, block, reply } => {
                let _ = reply.send(if block { self.operator_block(peer) } else { self.operator_unblock(peer) });
            }
            Command::Shutdown { .. } => {}
        }
    }

    /// Closes every connection to `peer` and refuses new ones until [`Runtime::operator_unblock`].
    fn operator_block(&mut self, peer: PeerId) -> Result<(), NodeError> {
        if peer == *self.swarm.local_peer_id() {
            return Err(NodeError::Refused("a node cannot block itself".into()));
        }
        if !self.operator_blocked.contains(&peer) && self.operator_blocked.len() >= MAX_OPERATOR_BLOCKS {
            return Err(NodeError::Refused(format!("at most {MAX_OPERATOR_BLOCKS} peers can be blocked by hand")));
        }
        self.operator_blocked.insert(peer);
        // Closes open connections too (allow_block_list does that on insert).
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        tracing::info!(%peer, "peer blocked by hand");
        Ok(())
    }

    /// Lifts a block by hand. A reputation ban or exclusion of the same peer stays in force
    /// (the connection block is lifted only when neither holds), and a dropped bootstrap peer
    /// is redialled at the next tick rather than after its grown backoff, so a healed link
    /// comes back within a tick.
    fn operator_unblock(&mut self, peer: PeerId) -> Result<(), NodeError> {
        if !self.operator_blocked.remove(&peer) {
            return Ok(());
        }
        let banned = identity::public_key(&peer).is_some_and(|key| {
            matches!(self.admission.reputation().status(&key, now_ms()), PeerStatus::Banned { .. } | PeerStatus::Excluded { .. })
        });
        if banned {
            tracing::info!(%peer, "block by hand lifted; the reputation ban stays");
            return Ok(());
        }
        self.swarm.behaviour_mut().blocked.unblock_peer(peer);
        if !self.connected.contains(&peer) && self.bootstrap.iter().any(|(_, p)| *p == Some(peer)) {
            self.redial.insert(peer, (Instant::now(), self.redial_base));
        }
        tracing::info!(%peer, "peer unblocked by hand");
        Ok(())
    }

    async fn broadcast(&mut self, value: Vec<u8>) -> Result<InstanceId, NodeError> {
        let Some(bracha) = self.bracha.as_ref() else { return Err(NodeError::NotAMember) };
        if value.len() > self.max_value_len {
            return Err(NodeError::Refused(format!("value of {} bytes is over the limit of {}", value.len(), self.max_value_len)));
        }
        // Refuse before reserving a seq: a reserved seq that is never broadcast would stall
        // this origin's window.
        let next = blocking(&self.store, |s| s.peek_seq(SeqStream::Broadcast)).await?;
        if let Some(window) = bracha.window(&self.me)
            && !window.contains(&next)
        {
            return Err(NodeError::Refused(format!(
                "{} broadcasts are still being delivered; retry when one completes",
                window.end - window.start
            )));
        }
        let seq = blocking(&self.store, |s| s.reserve_seq(SeqStream::Broadcast)).await?;
        let instance = InstanceId { origin: self.me, seq };
        let step = self
            .bracha
            .as_mut()
            .expect("member checked above")
            .broadcast_at(seq, value, now_ms())
            .map_err(|e| NodeError::Refused(e.to_string()))?;
        self.first_seen.entry(instance).or_insert_with(Instant::now);
        self.apply_step(step).await;
        Ok(instance)
    }

    async fn publish(&mut self, topic: String, payload: Vec<u8>) -> Result<byzgossip_crypto::MessageId, NodeError> {
        network::check_topic_name(&topic).map_err(NodeError::Refused)?;
        if self.gossip_policy == GossipPolicy::Committee && !self.committee.contains(&self.me) {
            return Err(NodeError::NotAMember);
        }
        if !self.publish_budget.take() {
            return Err(NodeError::Refused(format!(
                "publish rate over {:.0} messages/s (peers would drop the excess); retry shortly",
                self.publish_budget.rate_per_s
            )));
        }
        let body = GossipBody { topic: topic.clone(), payload }.encode();
        if body.len() + codec::ENVELOPE_OVERHEAD > self.max_message_len {
            return Err(NodeError::Refused(format!("message is over the limit of {} bytes", self.max_message_len)));
        }
        let seq = blocking(&self.store, |s| s.reserve_seq(SeqStream::Gossip)).await?;
        let envelope = Envelope::seal(&self.keypair, self.network, Kind::Gossip, seq, now_ms(), body)
            .map_err(|e| NodeError::Refused(e.to_string()))?;
        let id = envelope.id();
        let bytes = codec::encode_envelope(&envelope);
        self.recent_gossip.push(self.me, seq, bytes);
        self.publish_envelope(self.topics.gossip(&topic), &envelope);
        Ok(id)
    }

    /// Publishes an own envelope through the interceptor.
    fn publish_envelope(&mut self, topic: gossipsub::IdentTopic, envelope: &Envelope) {
        let messages = match self.interceptor.as_mut() {
            Some(interceptor) => interceptor.outgoing(envelope),
            None => vec![codec::encode_envelope(envelope)],
        };
        let label = self.topic_label(&topic.hash());
        for bytes in messages {
            Metrics::inc(&self.metrics.published, "kind", envelope.header().kind.label());
            // Counted whether or not gossipsub takes it (no peers yet): the envelope was made
            // and handed over, as the testnet's in-process traffic counters count it.
            self.metrics.count_sent(label, bytes.len());
            if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(topic.clone(), bytes) {
                tracing::debug!(error = %e, kind = envelope.header().kind.label(), "publish failed (will be retransmitted or synced)");
            }
        }
    }

    /// `bracha` or `gossip`: the traffic label of a gossipsub topic (two values, so the
    /// metric's cardinality stays fixed whatever topics peers send on).
    fn topic_label(&self, topic: &gossipsub::TopicHash) -> &'static str {
        if *topic == self.topics.bracha().hash() { "bracha" } else { "gossip" }
    }

    fn peers(&self) -> Vec<PeerInfo> {
        let snapshot = self.admission.snapshot(now_ms());
        snapshot
            .peers
            .into_iter()
            .map(|peer| {
                let peer_id = identity::peer_id(&peer.peer);
                PeerInfo {
                    peer_id: peer_id.map(|p| p.to_string()).unwrap_or_default(),
                    connected: peer_id.is_some_and(|p| self.connected.contains(&p)),
                    member: self.committee.index_of(&peer.peer),
                    reputation: peer,
                }
            })
            .collect()
    }
}

impl Runtime {
    // ---- swarm events ----

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.libp2p_metrics_record(&event);
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message })) => {
                self.on_gossip(propagation_source, message_id, message);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.on_sync_event(event).await,
            SwarmEvent::Behaviour(BehaviourEvent::Identify(libp2p::identify::Event::Received { peer_id, info, .. })) => {
                // Remember the peer's listen addresses on loopback so gossipsub and sync can redial.
                for addr in info.listen_addrs {
                    self.swarm.add_peer_address(peer_id, addr);
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                self.connected.insert(peer_id);
                self.redial.remove(&peer_id);
                if identity::public_key(&peer_id).is_none() {
                    // Not an ed25519 identity: its messages could not be scored. Refuse it.
                    tracing::debug!(%peer_id, "peer without an ed25519 identity refused");
                    self.swarm.behaviour_mut().blocked.block_peer(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                self.connected.remove(&peer_id);
                if self.bootstrap.iter().any(|(_, p)| *p == Some(peer_id)) {
                    self.redial.entry(peer_id).or_insert((Instant::now() + self.redial_base, self.redial_base));
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer_id), .. }
                if self.bootstrap.iter().any(|(_, p)| *p == Some(peer_id)) && !self.connected.contains(&peer_id) =>
            {
                let entry = self.redial.entry(peer_id).or_insert((Instant::now(), self.redial_base));
                entry.1 = (entry.1 * 2).min(Duration::from_secs(30));
                entry.0 = Instant::now() + entry.1;
            }
            _ => {}
        }
    }

    fn libp2p_metrics_record(&mut self, event: &SwarmEvent<BehaviourEvent>) {
        use libp2p::metrics::Recorder;
        self.libp2p_metrics.record(event);
    }

    fn report(&mut self, id: &gossipsub::MessageId, source: &PeerId, acceptance: Acceptance) {
        let acceptance = match acceptance {
            Acceptance::Accept => gossipsub::MessageAcceptance::Accept,
            Acceptance::Ignore => gossipsub::MessageAcceptance::Ignore,
            Acceptance::Reject => gossipsub::MessageAcceptance::Reject,
        };
        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(id, source, acceptance);
    }

    /// A received gossipsub message: counted, shown to the interceptor, then admitted (now,
    /// or when a delay the interceptor asked for has passed).
    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, message: gossipsub::Message) {
        let received = Instant::now();
        self.metrics.count_received(self.topic_label(&message.topic), message.data.len());
        let decision = match self.interceptor.as_mut() {
            Some(interceptor) => interceptor.inbound(&source, &message.data),
            None => Inbound::Process,
        };
        match decision {
            Inbound::Process => {}
            Inbound::Delay(delay) if delay.is_zero() => {}
            Inbound::Drop => {
                self.report(&id, &source, Acceptance::Ignore);
                return;
            }
            Inbound::Delay(delay) => {
                let len = message.data.len();
                let item = ParkedInbound::Gossip { source, id, message, received };
                if let Err(ParkedInbound::Gossip { source, id, .. }) = self.parked.park(received + delay, len, item) {
                    self.metrics.message("unknown", "parked_full");
                    self.report(&id, &source, Acceptance::Ignore);
                }
                self.parked_depth();
                return;
            }
        }
        self.admit_gossip(source, id, message, received);
    }

    /// Runs every parked message that is due.
    async fn release_parked(&mut self) {
        while let Some(item) = self.parked.pop_due(Instant::now()) {
            match item {
                ParkedInbound::Gossip { source, id, message, received } => self.admit_gossip(source, id, message, received),
                ParkedInbound::Sync { peer, purpose, response } => self.on_sync_response(peer, purpose, response).await,
            }
        }
        self.parked_depth();
    }

    fn parked_depth(&self) {
        self.metrics.queue_depth.get_or_create(&vec![("queue", "parked".to_owned())]).set(self.parked.len() as i64);
    }

    /// First half of admission for a gossipsub message (everything before the signature).
    fn admit_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, message: gossipsub::Message, received: Instant) {
        let Some(from) = identity::public_key(&source) else {
            self.report(&id, &source, Acceptance::Ignore);
            return;
        };
        let now = now_ms();
        let pending = match self.admission.precheck(from, &message.data, now) {
            Ok(pending) => pending,
            Err(verdict) => {
                self.finish_verdict(&id, &source, "unknown", verdict, received, true);
                return;
            }
        };
        // The kind must travel on its topic, and a gossip body must name the topic it came
        // on: the forwarder could have checked both.
        let kind = pending.envelope().header().kind;
        let topic_ok = match kind {
            Kind::Gossip => {
                let body = GossipBody::decode(pending.envelope().body(), self.max_message_len);
                body.is_some_and(|b| self.topics.app_topic(message.topic.as_str()) == Some(b.topic.as_str()))
            }
            _ => message.topic == self.topics.bracha().hash(),
        };
        if !topic_ok {
            self.penalise(from, Event::Malformed, now);
            self.metrics.message(kind.label(), "wrong_topic");
            Metrics::inc(&self.metrics.rejections, "reason", "wrong_topic");
            self.report(&id, &source, Acceptance::Reject);
            return;
        }
        let job = VerifyJob { pending, gossip_id: id, source, received };
        if let Err((gossip_id, source)) = self.verifier.submit(job) {
            self.metrics.message(kind.label(), "overloaded");
            self.report(&gossip_id, &source, Acceptance::Ignore);
        }
        self.metrics.queue_depth.get_or_create(&vec![("queue", "validation_bracha".to_owned())]).set(self.verifier.in_flight_bracha as i64);
        self.metrics.queue_depth.get_or_create(&vec![("queue", "validation_gossip".to_owned())]).set(self.verifier.in_flight_gossip as i64);
    }

    /// Second half of admission, once the signature was checked on a worker.
    async fn on_verified(&mut self, VerifyResult { job, result }: VerifyResult) {
        self.verifier.done(&job);
        let kind = job.pending.envelope().header().kind.label();
        let relay = self.relays(job.pending.envelope().header(), &job.source);
        let verdict = self.admission.complete(job.pending, result, now_ms());
        let accepted = match &verdict {
            Verdict::Accept(envelope) => Some(envelope.clone()),
            _ => None,
        };
        self.finish_verdict(&job.gossip_id, &job.source, kind, verdict, job.received, relay);
        if let Some(envelope) = accepted {
            self.on_admitted(envelope).await;
        }
    }

    /// Whether gossipsub may forward an accepted message with this header that arrived from
    /// `source`: always, unless it came straight from its signer, a committee member, in
    /// which case only the signer's designated relays forward it ([`network::relays_direct`]).
    fn relays(&self, header: &byzgossip_crypto::Header, source: &PeerId) -> bool {
        if identity::public_key(source) != Some(header.origin) {
            return true;
        }
        match (self.committee.index_of(&header.origin), self.committee.index_of(&self.me)) {
            (Some(signer), Some(me)) => network::relays_direct(self.committee.n(), signer, me),
            _ => true,
        }
    }

    /// Reports a verdict to gossipsub (an `Accept` this node does not relay goes to gossipsub
    /// as `Ignore`: processed here, not forwarded), counts it, logs it, and applies status
    /// changes.
    fn finish_verdict(&mut self, id: &gossipsub::MessageId, source: &PeerId, kind: &str, verdict: Verdict, received: Instant, relay: bool) {
        self.metrics.admission_seconds.observe(received.elapsed().as_secs_f64());
        self.metrics.message(kind, verdict.label());
        if let Verdict::Reject(reason, blame) = &verdict {
            Metrics::inc(&self.metrics.rejections, "reason", reason.label());
            tracing::debug!(reason = reason.label(), ?blame, %source, "message rejected");
        }
        let acceptance = match verdict.acceptance() {
            Acceptance::Accept if !relay => {
                self.metrics.relay_skipped.inc();
                Acceptance::Ignore
            }
            other => other,
        };
        self.report(id, source, acceptance);
        self.drain_status_changes();
    }

    /// Applies reputation status changes: ban and unban at the swarm, and log them.
    fn drain_status_changes(&mut self) {
        while let Some(change) = self.admission.poll_status_change() {
            self.apply_status_change(change);
        }
    }

    fn apply_status_change(&mut self, change: StatusChange) {
        let label = match change.to {
            PeerStatus::Ok => "ok",
            PeerStatus::Graylisted => "graylisted",
            PeerStatus::Banned { .. } => "banned",
            PeerStatus::Excluded { .. } => "excluded",
        };
        self.metrics
            .status_changes
            .get_or_create(&vec![("to", label.to_owned()), ("reason", format!("{:?}", change.event).split([' ', '{', '(']).next().unwrap_or("").to_owned())])
            .inc();
        let Some(peer) = identity::peer_id(&change.peer) else { return };
        match change.to {
            PeerStatus::Banned { until_ms } => {
                tracing::warn!(%peer, until_ms, reason = ?change.event, score = change.score, "peer banned");
                self.swarm.behaviour_mut().blocked.block_peer(peer);
            }
            PeerStatus::Excluded { evidence } => {
                tracing::warn!(%peer, %evidence, "peer excluded for equivocation");
                self.swarm.behaviour_mut().blocked.block_peer(peer);
            }
            PeerStatus::Graylisted => tracing::info!(%peer, reason = ?change.event, score = change.score, "peer graylisted"),
            PeerStatus::Ok => {
                if matches!(change.from, PeerStatus::Banned { .. }) {
                    tracing::info!(%peer, "ban expired");
                    if !self.operator_blocked.contains(&peer) {
                        self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                    }
                }
            }
        }
    }

    fn penalise(&mut self, peer: PublicKey, event: Event, now: u64) {
        if let Some(change) = self.admission.record(peer, event, now) {
            self.apply_status_change(change);
        }
    }

    /// Acts on an admitted envelope.
    async fn on_admitted(&mut self, envelope: VerifiedEnvelope) {
        match envelope.header().kind {
            Kind::Gossip => self.on_gossip_admitted(&envelope),
            Kind::BrachaSend | Kind::BrachaEcho | Kind::BrachaReady => {
                if let Some(bracha) = self.bracha.as_mut() {
                    if let Ok(Message::Send { instance, .. }) = Message::from_envelope(envelope.envelope(), self.max_value_len) {
                        if self.first_seen.len() >= MAX_TRACKED_LATENCY {
                            // Full of instances that never completed (a Byzantine origin's):
                            // forget those older than a minute.
                            self.first_seen.retain(|_, at| at.elapsed() < Duration::from_secs(60));
                        }
                        if self.first_seen.len() < MAX_TRACKED_LATENCY {
                            self.first_seen.entry(instance).or_insert_with(Instant::now);
                        }
                    }
                    let step = bracha.handle(&envelope, now_ms());
                    self.apply_step(step).await;
                }
            }
            Kind::Evidence => self.on_evidence_envelope(&envelope),
        }
    }

    fn on_gossip_admitted(&mut self, envelope: &VerifiedEnvelope) {
        let Some(body) = GossipBody::decode(envelope.body(), self.max_message_len) else { return };
        let header = envelope.header();
        self.recent_gossip.push(header.origin, header.seq, codec::encode_envelope(envelope.envelope()));
        if self.subscribed.contains(&body.topic) {
            let _ = self.events.send(DeliveryEvent::Gossip(GossipMessage {
                topic: body.topic,
                origin: header.origin,
                seq: header.seq,
                timestamp_ms: header.timestamp_ms,
                id: envelope.id(),
                payload: body.payload,
            }));
        }
    }

    /// Equivocation evidence gossiped by another node: verify it on our own, then exclude.
    fn on_evidence_envelope(&mut self, envelope: &VerifiedEnvelope) {
        let Ok(evidence) = Evidence::decode(envelope.body(), self.max_message_len) else { return };
        self.on_evidence(evidence, false);
    }

    fn on_evidence(&mut self, evidence: Evidence, gossip: bool) {
        match evidence.verify(&self.committee, &self.network) {
            Ok(offender) => {
                let now = now_ms();
                self.penalise(offender, Event::Equivocation { evidence: evidence.digest() }, now);
                if gossip {
                    match Envelope::seal(&self.keypair, self.network, Kind::Evidence, 0, now, evidence.encode()) {
                        Ok(envelope) => self.publish_envelope(self.topics.bracha(), &envelope),
                        Err(e) => tracing::warn!(error = %e, "cannot seal evidence"),
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "evidence does not verify"),
        }
    }

    // ---- Bracha steps ----

    async fn apply_step(&mut self, step: Step) {
        let now = now_ms();
        for envelope in step.outgoing {
            let Ok(message) = Message::from_envelope(&envelope, self.max_value_len) else { continue };
            let instance = *message.instance();
            let kind = envelope.header().kind;
            let bytes = codec::encode_envelope(&envelope);
            let stored = blocking(&self.store, move |s| s.record_own_message(instance.origin, instance.seq, kind, &bytes)).await;
            let envelope = match stored {
                Ok(None) => envelope,
                // Already stored (a restart): publish the stored vote, never a different one.
                Ok(Some(first)) => match codec::decode_envelope(&first, MAX_ENVELOPE_LEN) {
                    Ok(first) => first,
                    Err(_) => continue,
                },
                Err(e) => {
                    tracing::error!(error = %e, "cannot store own vote; not sending it");
                    continue;
                }
            };
            self.publish_envelope(self.topics.bracha(), &envelope);
            let first = self.retransmit_first();
            self.retransmit.insert((instance, kind), Retransmit { envelope, next_at: Instant::now() + first, interval: first });
        }
        for fetch in step.fetches {
            let candidates: Vec<PeerId> = fetch
                .from
                .iter()
                .filter_map(|i| self.committee.member(*i))
                .filter_map(identity::peer_id)
                .filter(|p| self.connected.contains(p))
                .collect();
            let target = candidates.first().copied().or_else(|| self.connected.iter().next().copied());
            if let Some(peer) = target {
                let request = SyncRequest::Value { origin: fetch.instance.origin, seq: fetch.instance.seq, digest: fetch.digest };
                self.send_sync(peer, request, SyncPurpose::Value { instance: fetch.instance });
            }
        }
        for delivery in step.delivered {
            self.retransmit.retain(|(instance, _), _| *instance != delivery.instance);
            let stored = StoredDelivery {
                origin: delivery.instance.origin,
                seq: delivery.instance.seq,
                digest: delivery.digest,
                value: delivery.value.clone(),
                certificate: delivery.certificate.encode(),
                delivered_at_ms: now,
            };
            let certificate = stored.certificate.clone();
            match blocking(&self.store, move |s| s.insert_delivery(&stored)).await {
                Ok(Appended::New(cursor)) => {
                    self.metrics.bracha_deliveries.inc();
                    if let Some(start) = self.first_seen.remove(&delivery.instance) {
                        let latency = start.elapsed();
                        self.metrics.bracha_latency_seconds.observe(latency.as_secs_f64());
                        self.latency_ewma = (self.latency_ewma * 7 + latency) / 8;
                    }
                    tracing::debug!(instance = ?delivery.instance, cursor, "delivered");
                    let _ = self.events.send(DeliveryEvent::Bracha(Delivered {
                        cursor,
                        instance: delivery.instance,
                        value: delivery.value,
                        digest: delivery.digest,
                        certificate,
                        delivered_at_ms: now,
                    }));
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "cannot store a delivery"),
            }
        }
        for evidence in step.evidence {
            self.on_evidence(evidence, true);
        }
        for fault in step.faults {
            Metrics::inc(&self.metrics.faults, "kind", fault.kind.label());
            if fault.kind.is_provable() {
                let event = if matches!(fault.kind, byzgossip_bracha::FaultKind::Equivocation) { continue } else { Event::Malformed };
                self.penalise(fault.member, event, now);
            }
        }
    }

    // ---- timers ----

    async fn on_tick(&mut self) {
        let now = now_ms();
        if let Some(bracha) = self.bracha.as_mut() {
            let step = bracha.tick(now);
            self.apply_step(step).await;
        }
        self.retransmit_due();
        self.drain_status_changes();
        // Feed our scores to gossipsub as the application score (P5).
        let peers: Vec<PeerId> = self.connected.iter().copied().collect();
        for peer in peers {
            if let Some(key) = identity::public_key(&peer) {
                let score = self.admission.reputation().app_score(&key, now);
                self.swarm.behaviour_mut().gossipsub.set_application_score(&peer, score);
            }
        }
        let snapshot = self.admission.snapshot(now);
        let mut by_status: HashMap<&'static str, i64> = HashMap::new();
        for peer in &snapshot.peers {
            let label = match peer.status {
                PeerStatus::Ok => "ok",
                PeerStatus::Graylisted => "graylisted",
                PeerStatus::Banned { .. } => "banned",
                PeerStatus::Excluded { .. } => "excluded",
            };
            *by_status.entry(label).or_default() += 1;
        }
        for label in ["ok", "graylisted", "banned", "excluded"] {
            self.metrics.peers.get_or_create(&vec![("status", label.to_owned())]).set(by_status.get(label).copied().unwrap_or(0));
        }
        // Redial dropped bootstrap peers with backoff.
        // Peers blocked by hand are skipped (a dial would be refused) and keep their backoff
        // until unblocked, which schedules them at once.
        let due: Vec<PeerId> = self
            .redial
            .iter()
            .filter(|(p, (at, _))| *at <= Instant::now() && !self.operator_blocked.contains(p))
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            if let Some((addr, _)) = self.bootstrap.iter().find(|(_, p)| *p == Some(peer)).cloned() {
                let _ = self.swarm.dial(addr);
            }
            if let Some(entry) = self.redial.get_mut(&peer) {
                entry.1 = (entry.1 * 2).min(Duration::from_secs(30));
                entry.0 = Instant::now() + entry.1;
            }
        }
    }

    /// Re-signs and republishes own messages of instances not yet delivered here. Entries of
    /// instances the Bracha machine no longer holds open (delivered, or below a watermark)
    /// are dropped, so the map stays within the machine's windows.
    /// The first retransmission delay: [`RETRANSMIT_FIRST`], or longer when deliveries are
    /// slow ([`RETRANSMIT_LATENCY_FACTOR`]), at most [`RETRANSMIT_MAX`].
    fn retransmit_first(&self) -> Duration {
        (self.latency_ewma * RETRANSMIT_LATENCY_FACTOR).clamp(RETRANSMIT_FIRST, RETRANSMIT_MAX)
    }

    fn retransmit_due(&mut self) {
        if let Some(bracha) = self.bracha.as_ref() {
            self.retransmit.retain(|(instance, _), _| {
                bracha.retained(instance).is_none()
                    && bracha.window(&instance.origin).is_some_and(|w| w.contains(&instance.seq))
            });
        }
        if self.verifier.in_flight_bracha > RETRANSMIT_BACKOFF_QUEUE {
            return;
        }
        let now = Instant::now();
        // At most MAX_RETRANSMIT_PER_TICK, the longest overdue first: under overload every
        // retransmission is one more signature for every peer to check, so an unbounded burst
        // of them turns congestion into collapse.
        let mut due: Vec<((InstanceId, Kind), Instant)> =
            self.retransmit.iter().filter(|(_, r)| r.next_at <= now).map(|(k, r)| (*k, r.next_at)).collect();
        due.sort_by_key(|(_, at)| *at);
        due.truncate(MAX_RETRANSMIT_PER_TICK);
        for (key, _) in due {
            let Some(entry) = self.retransmit.get_mut(&key) else { continue };
            let Ok(message) = Message::from_envelope(&entry.envelope, self.max_value_len) else { continue };
            let Ok(fresh) = message.seal(&self.keypair, self.network, now_ms()) else { continue };
            entry.interval = (entry.interval * 2).min(RETRANSMIT_MAX);
            entry.next_at = now + entry.interval;
            Metrics::inc(&self.metrics.published, "kind", "retransmit");
            self.publish_envelope(self.topics.bracha(), &fresh);
        }
    }

    // ---- sync ----

    fn send_sync(&mut self, peer: PeerId, request: SyncRequest, purpose: SyncPurpose) {
        if self.sync_requests.len() >= MAX_SYNC_IN_FLIGHT {
            return;
        }
        let label = match purpose {
            SyncPurpose::Digest => "digest_sent",
            SyncPurpose::Value { .. } => "value_sent",
        };
        Metrics::inc(&self.metrics.sync, "kind", label);
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
        self.sync_requests.insert(id, purpose);
    }

    /// Sends a digest of what this node has to a random connected peer.
    fn start_sync(&mut self) {
        let peers: Vec<PeerId> = self.connected.iter().copied().collect();
        let Some(peer) = peers.choose(&mut rand::rng()).copied() else { return };
        let store = self.store.clone();
        let bracha_marks: Vec<OriginMark> = store
            .high_watermarks()
            .unwrap_or_default()
            .into_iter()
            .map(|m| OriginMark { origin: m.origin, next: m.low })
            .collect();
        let gossip: Vec<OriginMark> = self.recent_gossip.marks().map(|(origin, next)| OriginMark { origin, next }).collect();
        let mut bracha = bracha_marks;
        bracha.truncate(crate::sync::MAX_DIGEST_ORIGINS / 2);
        let mut gossip = gossip;
        gossip.truncate(crate::sync::MAX_DIGEST_ORIGINS / 2);
        self.send_sync(peer, SyncRequest::Digest { bracha, gossip }, SyncPurpose::Digest);
    }

    async fn on_sync_event(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message { peer, message: request_response::Message::Request { request, channel, .. }, .. } => {
                let response = self.serve_sync(request).await;
                let _ = self.swarm.behaviour_mut().sync.send_response(channel, response);
                let _ = peer;
            }
            request_response::Event::Message { peer, message: request_response::Message::Response { request_id, response }, .. } => {
                let purpose = self.sync_requests.remove(&request_id);
                let decision = match self.interceptor.as_mut() {
                    Some(interceptor) => interceptor.sync_response(&peer),
                    None => Inbound::Process,
                };
                match decision {
                    Inbound::Process => self.on_sync_response(peer, purpose, response).await,
                    Inbound::Delay(delay) if delay.is_zero() => self.on_sync_response(peer, purpose, response).await,
                    Inbound::Drop => Metrics::inc(&self.metrics.sync, "kind", "response_dropped"),
                    Inbound::Delay(delay) => {
                        let len = sync_response_len(&response);
                        let item = ParkedInbound::Sync { peer, purpose, response };
                        if self.parked.park(Instant::now() + delay, len, item).is_err() {
                            Metrics::inc(&self.metrics.sync, "kind", "response_dropped");
                        }
                        self.parked_depth();
                    }
                }
            }
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                self.sync_requests.remove(&request_id);
                Metrics::inc(&self.metrics.sync, "kind", "failed");
                tracing::debug!(%error, "sync request failed");
            }
            _ => {}
        }
    }

    async fn serve_sync(&mut self, request: SyncRequest) -> SyncResponse {
        match request {
            SyncRequest::Value { origin, seq, digest } => {
                Metrics::inc(&self.metrics.sync, "kind", "value_served");
                let instance = InstanceId { origin, seq };
                if let Some(value) = self.bracha.as_ref().and_then(|b| b.value(&instance, &digest)) {
                    return SyncResponse::Value(Some(serde_bytes::ByteBuf::from(value.to_vec())));
                }
                let stored = blocking(&self.store, move |s| s.delivery(origin, seq)).await.ok().flatten();
                SyncResponse::Value(stored.filter(|(_, d)| d.digest == digest).map(|(_, d)| serde_bytes::ByteBuf::from(d.value)))
            }
            SyncRequest::Digest { bracha, gossip } => {
                Metrics::inc(&self.metrics.sync, "kind", "digest_served");
                let theirs: HashMap<PublicKey, u64> = bracha.iter().map(|m| (m.origin, m.next)).collect();
                let members: Vec<PublicKey> = self.committee.members().to_vec();
                let store = self.store.clone();
                let mut response = blocking(&store, move |s| {
                    let mut response = ResponseBuilder::default();
                    let marks = s.high_watermarks().unwrap_or_default();
                    // Lookups are bounded too: a requester claiming seq 0 against a long,
                    // mostly pruned history must not cost a million reads.
                    let mut lookups = 0usize;
                    'origins: for origin in members {
                        let Some(mine) = marks.iter().find(|m| m.origin == origin) else { continue };
                        let from = theirs.get(&origin).copied().unwrap_or(0);
                        for seq in from..=mine.high {
                            lookups += 1;
                            if lookups > MAX_SYNC_LOOKUPS {
                                break 'origins;
                            }
                            if let Ok(Some((_, d))) = s.delivery(origin, seq)
                                && !response.push_delivery(d.certificate, d.value)
                            {
                                break 'origins;
                            }
                        }
                    }
                    response
                })
                .await;
                let gossip_marks: HashMap<PublicKey, u64> = gossip.iter().map(|m| (m.origin, m.next)).collect();
                for bytes in self.recent_gossip.missing(&gossip_marks) {
                    if !response.push_gossip(bytes.clone()) {
                        break;
                    }
                }
                response.finish()
            }
        }
    }

    async fn on_sync_response(&mut self, peer: PeerId, purpose: Option<SyncPurpose>, response: SyncResponse) {
        let from = identity::public_key(&peer);
        match (purpose, response) {
            (Some(SyncPurpose::Value { instance }), SyncResponse::Value(Some(value))) => {
                if let Some(bracha) = self.bracha.as_mut() {
                    let step = bracha.supply_value(&instance, value.into_vec(), now_ms());
                    self.apply_step(step).await;
                }
            }
            (Some(SyncPurpose::Digest), SyncResponse::Catchup { deliveries, gossip }) => {
                let now = now_ms();
                for delivery in deliveries {
                    self.apply_synced_delivery(from, delivery.certificate, delivery.value).await;
                }
                let Some(from) = from else { return };
                for bytes in gossip {
                    match self.admission.admit_sync(from, &bytes, now) {
                        Verdict::Accept(envelope) => {
                            Metrics::inc(&self.metrics.sync, "kind", "envelope_admitted");
                            self.on_admitted(envelope).await;
                        }
                        verdict => self.metrics.message("sync", verdict.label()),
                    }
                }
                self.drain_status_changes();
            }
            _ => {}
        }
    }

    /// A certificate and value from sync: verified on our own, then delivered.
    async fn apply_synced_delivery(&mut self, from: Option<PublicKey>, certificate: Vec<u8>, value: Vec<u8>) {
        let Ok(certificate) = Certificate::decode(&certificate, MAX_ENVELOPE_LEN) else {
            if let Some(from) = from {
                self.penalise(from, Event::Malformed, now_ms());
            }
            return;
        };
        if Digest::of(&value) != certificate.digest {
            if let Some(from) = from {
                self.penalise(from, Event::BadHash, now_ms());
            }
            return;
        }
        let instance = certificate.instance;
        let verified = match certificate.verify(&self.committee, &self.network) {
            Ok(verified) => verified,
            Err(e) => {
                tracing::debug!(error = %e, "synced certificate does not verify");
                if let Some(from) = from {
                    self.penalise(from, Event::BadSignature, now_ms());
                }
                return;
            }
        };
        if let Some(bracha) = self.bracha.as_mut() {
            match bracha.handle_certificate(&verified, value, now_ms()) {
                Ok(step) => {
                    if !step.delivered.is_empty() {
                        Metrics::inc(&self.metrics.sync, "kind", "certificate_applied");
                    }
                    self.apply_step(step).await;
                }
                Err(e) => tracing::debug!(?instance, error = %e, "synced certificate not applied"),
            }
        }
    }
}

/// The stream behind [`NodeHandle::deliveries`]: stored Bracha deliveries from `cursor`, then
/// live events; after lagging, re-reads what it missed from storage.
pub(crate) fn delivery_stream(
    store: Arc<dyn Store>,
    live: broadcast::Receiver<DeliveryEvent>,
    cursor: u64,
) -> impl Stream<Item = DeliveryEvent> + Send + 'static {
    struct State {
        store: Arc<dyn Store>,
        live: broadcast::Receiver<DeliveryEvent>,
        next: u64,
        backlog: std::collections::VecDeque<DeliveryEvent>,
        catching_up: bool,
    }
    let state = State { store, live, next: cursor.max(1), backlog: Default::default(), catching_up: true };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(event) = st.backlog.pop_front() {
                return Some((event, st));
            }
            if st.catching_up {
                let (store, from) = (st.store.clone(), st.next);
                let page = blocking(&store, move |s| s.deliveries_from(from, crate::storage::MAX_DELIVERIES_PAGE)).await.unwrap_or_default();
                if page.is_empty() {
                    st.catching_up = false;
                    continue;
                }
                for (cursor, d) in page {
                    st.next = cursor + 1;
                    st.backlog.push_back(DeliveryEvent::Bracha(Delivered {
                        cursor,
                        instance: InstanceId { origin: d.origin, seq: d.seq },
                        value: d.value,
                        digest: d.digest,
                        certificate: d.certificate,
                        delivered_at_ms: d.delivered_at_ms,
                    }));
                }
                continue;
            }
            match st.live.recv().await {
                Ok(DeliveryEvent::Bracha(d)) => {
                    if d.cursor < st.next {
                        continue; // already yielded from storage
                    }
                    if d.cursor > st.next {
                        // Missed some between the stored read and the live subscription.
                        st.catching_up = true;
                        continue;
                    }
                    st.next = d.cursor + 1;
                    return Some((DeliveryEvent::Bracha(d), st));
                }
                Ok(event) => return Some((event, st)),
                Err(broadcast::error::RecvError::Lagged(_)) => st.catching_up = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzgossip_crypto::{Genesis, GossipPolicy};
    use byzgossip_reputation::AdmissionConfig;

    /// A pending gossip envelope from a one-member committee.
    fn pending() -> Pending {
        pending_of(Kind::Gossip)
    }

    /// A pending envelope of `kind` from a one-member committee.
    fn pending_of(kind: Kind) -> Pending {
        let key = Keypair::from_secret_bytes(&[1; 32]);
        let genesis = Genesis { name: "t".into(), f: None, policy: GossipPolicy::Committee, members: vec![key.public()], bootstrap: vec![] };
        let network = genesis.network_id();
        let mut admission = Admission::new(AdmissionConfig::default(), network, genesis.committee().expect("committee"), genesis.policy)
            .expect("admission");
        let body = GossipBody { topic: "t".into(), payload: vec![] }.encode();
        let envelope = Envelope::seal(&key, network, kind, 0, now_ms(), body).expect("seal");
        admission.precheck(key.public(), &codec::encode_envelope(&envelope), now_ms()).expect("precheck")
    }

    #[test]
    fn verification_queue_refuses_work_beyond_its_bound() {
        // No workers: nothing drains, so the bound is what stops the queue.
        let (results, _keep) = mpsc::channel(8);
        let mut verifier = Verifier::start(0, 3, results);
        let job = || VerifyJob { pending: pending(), gossip_id: gossipsub::MessageId::from(vec![1]), source: PeerId::random(), received: Instant::now() };
        for _ in 0..3 {
            assert!(verifier.submit(job()).is_ok());
        }
        assert!(verifier.submit(job()).is_err(), "a fourth gossip job must be refused");
        assert_eq!(verifier.in_flight(), 3);
    }

    #[test]
    fn own_publish_budget_refuses_beyond_its_burst() {
        let mut budget = PublishBudget::new(&byzgossip_reputation::BudgetConfig::default());
        let burst = budget.burst as usize;
        assert!((0..burst).all(|_| budget.take()), "the burst is available at once");
        assert!(!budget.take(), "beyond the burst, publish must wait for the refill");
        // Strictly under what peers allow a new origin.
        let peers = byzgossip_reputation::BudgetConfig::default();
        assert!(budget.rate_per_s < peers.origin_base_rate_per_s && budget.burst < peers.origin_base_burst);
    }

    #[test]
    fn bracha_jobs_are_verified_before_gossip_and_have_their_own_bound() {
        let (results, _keep) = mpsc::channel(8);
        let mut verifier = Verifier::start(0, 2, results);
        let job = |kind| VerifyJob { pending: pending_of(kind), gossip_id: gossipsub::MessageId::from(vec![1]), source: PeerId::random(), received: Instant::now() };
        assert!(verifier.submit(job(Kind::Gossip)).is_ok());
        assert!(verifier.submit(job(Kind::Gossip)).is_ok());
        assert!(verifier.submit(job(Kind::Gossip)).is_err(), "gossip line full");
        for _ in 0..2 * BRACHA_QUEUE_FACTOR {
            assert!(verifier.submit(job(Kind::BrachaEcho)).is_ok(), "a gossip flood must not block Bracha");
        }
        assert!(verifier.submit(job(Kind::BrachaEcho)).is_err(), "the Bracha line has its own bound");
        // Every queued Bracha job comes out before the gossip queued ahead of them.
        let order: Vec<Kind> = (0..2 + 2 * BRACHA_QUEUE_FACTOR)
            .map(|_| verifier.queue.next().expect("job").pending.envelope().header().kind)
            .collect();
        let first_gossip = order.iter().position(|k| *k == Kind::Gossip).expect("gossip");
        assert_eq!(first_gossip, 2 * BRACHA_QUEUE_FACTOR, "{order:?}");
    }

    #[test]
    fn parked_messages_are_bounded_by_count() {
        let now = Instant::now();
        let mut parked = Parked::new(MAX_PARKED, MAX_PARKED_BYTES);
        for i in 0..MAX_PARKED {
            assert!(parked.park(now + Duration::from_secs(1), 1, i).is_ok());
        }
        assert_eq!(parked.park(now, 1, usize::MAX), Err(usize::MAX), "one message past MAX_PARKED is refused");
        assert_eq!(parked.len(), MAX_PARKED);
        // Nothing is due before its time; once due, one released message makes room for one.
        assert!(parked.pop_due(now).is_none());
        assert_eq!(parked.pop_due(now + Duration::from_secs(1)), Some(0), "ties in arrival order");
        assert!(parked.park(now, 1, 7).is_ok());
        assert!(parked.park(now, 1, 8).is_err());
    }

    #[test]
    fn parked_messages_are_bounded_by_bytes_and_released_in_due_order() {
        let now = Instant::now();
        let mut parked = Parked::new(MAX_PARKED, MAX_PARKED_BYTES);
        assert!(parked.park(now + Duration::from_millis(30), MAX_PARKED_BYTES - 10, "big").is_ok());
        assert_eq!(parked.park(now, 11, "over"), Err("over"), "past MAX_PARKED_BYTES is refused");
        assert!(parked.park(now + Duration::from_millis(10), 10, "small").is_ok());
        assert_eq!(parked.next_due(), Some(now + Duration::from_millis(10)));
        let later = now + Duration::from_secs(1);
        assert_eq!(parked.pop_due(later), Some("small"), "the earlier deadline first");
        assert_eq!(parked.pop_due(later), Some("big"));
        assert_eq!(parked.pop_due(later), None);
        assert_eq!((parked.len(), parked.bytes), (0, 0));
        assert!(parked.park(now, MAX_PARKED_BYTES, "all of it").is_ok(), "released bytes are free again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verification_workers_answer_every_job() {
        let (results_tx, mut results) = mpsc::channel(8);
        let mut verifier = Verifier::start(2, 8, results_tx);
        for _ in 0..8 {
            let job = VerifyJob { pending: pending(), gossip_id: gossipsub::MessageId::from(vec![1]), source: PeerId::random(), received: Instant::now() };
            assert!(verifier.submit(job).is_ok());
        }
        for _ in 0..8 {
            let result = tokio::time::timeout(Duration::from_secs(10), results.recv()).await.expect("in time").expect("result");
            assert!(result.result.is_ok());
        }
    }
}
