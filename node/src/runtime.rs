//! The driver: one tokio task owns the libp2p swarm, the [`Engine`], the verifier threads,
//! the store thread and the timers. It feeds the engine what happens (with the wall clock's
//! `now_ms`) and carries out the engine's [`Output`]s; it makes no protocol decision of its
//! own. [`Runtime::act`] is the one place outputs become swarm calls, store commits, events
//! for the application and metrics.
//!
//! Threads and queues:
//! - **Verification**: [`Output::Verify`] jobs run on `verify_workers` threads, committee
//!   traffic first ([`Line::Bracha`] before [`Line::Gossip`]); the engine bounds how many are
//!   in flight per line.
//! - **Persistence** (raft-style): [`Output::Persist`] batches are committed in order by one
//!   store thread, one transaction each; the engine releases the publishes and deliveries a
//!   batch gates when [`Engine::handle_committed`] hears it is durable.
//! - **Sync serving**: [`Output::SyncServe`] plans read the store on a blocking thread and the
//!   response is sent when ready.
//!
//! An interceptor may ask to delay a received message or sync response
//! ([`Inbound::Delay`]): it is parked (bounded by [`MAX_PARKED`] and [`MAX_PARKED_BYTES`],
//! beyond which it is dropped as `Ignore`) and handed to the engine when due. Without an
//! interceptor nothing is ever parked.

use crate::config::NodeConfig;
use crate::handle::{
    Command, Delivered, DeliveryEvent, EVENT_BUFFER, NodeBuilder, NodeError, NodeHandle, NodeInfo,
    PeerInfo, RawTopic, Status,
};
use crate::hooks::{Inbound, Interceptor, MAX_PARKED, MAX_PARKED_BYTES};
use crate::identity;
use crate::metrics::Metrics;
use crate::network::{self, Behaviour, BehaviourEvent};
use crate::storage::{self, MemoryStore, RedbStore, Store};
use crate::sync::{SyncRequest, SyncResponse};
use byzgossip_bracha::InstanceId;
use byzgossip_crypto::codec;
use byzgossip_engine::{Batch, Committed, Done, Engine, EngineConfig, EngineError, Job, Line, Metric, Output, Peer, PeerAction};
use byzgossip_reputation::Acceptance;
use futures::{Stream, StreamExt};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl From<EngineError> for NodeError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Config(e) => NodeError::Config(e),
            EngineError::NotAMember => NodeError::NotAMember,
            EngineError::Refused(e) => NodeError::Refused(e),
            EngineError::Busy(e) => NodeError::Busy(e),
            // Backpressure like a full window: the HTTP API answers 429 with Retry-After.
            e @ EngineError::RecoveringSeq => NodeError::Busy(e.to_string()),
        }
    }
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

/// The engine's view of a libp2p peer.
pub(crate) fn to_peer(peer: &PeerId) -> Peer {
    identity::public_key(peer).map(Peer::Key).unwrap_or_else(|| Peer::Foreign(peer.to_bytes()))
}

/// The libp2p id of an engine peer.
pub(crate) fn to_peer_id(peer: &Peer) -> Option<PeerId> {
    match peer {
        Peer::Key(key) => identity::peer_id(key),
        Peer::Foreign(bytes) => PeerId::from_bytes(bytes).ok(),
    }
}

/// The two waiting lines of the verification pool, committee traffic first.
#[derive(Default)]
struct Lines {
    bracha: VecDeque<Job>,
    gossip: VecDeque<Job>,
    closed: bool,
}

struct VerifyQueue {
    lines: std::sync::Mutex<Lines>,
    ready: std::sync::Condvar,
}

impl VerifyQueue {
    /// The next job, Bracha first; `None` once closed.
    fn next(&self) -> Option<Job> {
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

/// A fixed pool of threads running verification jobs off the reactor. How many jobs may be
/// outstanding is the engine's decision (it answers `Ignore` beyond its bound); the pool
/// only orders them.
struct Verifier {
    queue: Arc<VerifyQueue>,
}

impl Verifier {
    fn start(workers: usize, results: mpsc::UnboundedSender<Done>) -> Verifier {
        let queue = Arc::new(VerifyQueue { lines: std::sync::Mutex::new(Lines::default()), ready: std::sync::Condvar::new() });
        for i in 0..workers {
            let queue = queue.clone();
            let results = results.clone();
            let spawned = std::thread::Builder::new().name(format!("byzgossip-verify-{i}")).spawn(move || {
                while let Some(job) = queue.next() {
                    if results.send(job.run()).is_err() {
                        return;
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a verification thread");
            }
        }
        Verifier { queue }
    }

    fn submit(&self, job: Job) {
        let Ok(mut lines) = self.queue.lines.lock() else { return };
        match job.line() {
            Line::Bracha => lines.bracha.push_back(job),
            Line::Gossip => lines.gossip.push_back(job),
        }
        drop(lines);
        self.queue.ready.notify_one();
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

/// Starts the store thread: commits batches in the order they come, one transaction each,
/// and reports each result. The channel holds at most
/// [`byzgossip_engine::MAX_BATCHES_IN_FLIGHT`] batches: the engine sends no more until a
/// commit returns, and coalesces the writes made meanwhile into one batch.
fn start_committer(store: Arc<dyn Store>, results: mpsc::UnboundedSender<(u64, Result<Committed, String>)>) -> std::sync::mpsc::Sender<Batch> {
    let (tx, rx) = std::sync::mpsc::channel::<Batch>();
    let spawned = std::thread::Builder::new().name("byzgossip-store".into()).spawn(move || {
        while let Ok(batch) = rx.recv() {
            let result = store.commit(&batch).map_err(|e| e.to_string());
            if results.send((batch.id, result)).is_err() {
                return;
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the store thread");
    }
    tx
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
    /// A gossipsub message, handed to the engine when due.
    Gossip { source: PeerId, id: gossipsub::MessageId, message: gossipsub::Message },
    /// A response to one of our sync requests, handed to the engine when due.
    Sync { peer: PeerId, request_id: Option<u64>, response: SyncResponse },
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn wake_at(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// The instant of an engine deadline given in wall-clock milliseconds.
fn instant_of(deadline_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms()))
}

struct Runtime {
    swarm: Swarm<Behaviour>,
    engine: Engine,
    store: Arc<dyn Store>,
    events: broadcast::Sender<DeliveryEvent>,
    metrics: Metrics,
    libp2p_metrics: libp2p::metrics::Metrics,
    interceptor: Option<Box<dyn Interceptor>>,
    /// Received messages the interceptor delayed (empty without an interceptor).
    parked: Parked<ParkedInbound>,
    verifier: Verifier,
    committer: std::sync::mpsc::Sender<Batch>,
    served: mpsc::UnboundedSender<(u64, SyncResponse)>,
    /// Gossipsub messages waiting for the engine's verdict, by token (each answered once).
    validations: HashMap<u64, (gossipsub::MessageId, PeerId)>,
    next_token: u64,
    /// Inbound sync requests waiting for their response, by token.
    sync_channels: HashMap<u64, ResponseChannel<SyncResponse>>,
    /// Broadcasts waiting for their batch to be durable before the application hears back
    /// (at most the Bracha window's worth).
    broadcasts: HashMap<InstanceId, tokio::sync::oneshot::Sender<Result<InstanceId, NodeError>>>,
    /// Our sync requests in flight: the engine's request id.
    sync_requests: HashMap<OutboundRequestId, u64>,
    /// Addresses of bootstrap peers, for the engine's redials.
    bootstrap: Vec<(Multiaddr, Option<PeerId>)>,
    listen: Vec<Multiaddr>,
}

pub(crate) async fn spawn(builder: NodeBuilder) -> Result<NodeHandle, NodeError> {
    let NodeBuilder { config, store, interceptor } = builder;
    config.validate().map_err(NodeError::Config)?;
    let me = config.keypair.public();
    let store: Arc<dyn Store> = match (store, &config.data_dir) {
        (Some(store), _) => store,
        (None, Some(dir)) => {
            std::fs::create_dir_all(dir).map_err(|e| NodeError::Config(format!("data dir {}: {e}", dir.display())))?;
            Arc::new(RedbStore::open(dir)?)
        }
        (None, None) => Arc::new(MemoryStore::new()),
    };

    let key = identity::libp2p_keypair(&config.keypair);
    let peer_id = key.public().to_peer_id();
    let bootstrap = bootstrap_addrs(&config, peer_id);
    // A data dir belongs to one network and one key: refuse another's before reading it.
    let network = config.genesis.network_id();
    blocking(&store, move |s| s.bind(network, me)).await?;
    let recovered = blocking(&store, |s| storage::recover(s)).await?;
    let engine_config = EngineConfig {
        genesis: config.genesis.clone(),
        keypair: config.keypair.clone(),
        admission: config.admission.clone(),
        bracha: config.bracha.clone(),
        topics: config.topics.clone(),
        tick_interval_ms: config.tick_interval.as_millis().max(1) as u64,
        sync_interval_ms: config.sync_interval.as_millis().max(1) as u64,
        validation_queue: config.validation_queue,
        redial_backoff_ms: config.redial_backoff.as_millis().max(1) as u64,
        bootstrap: bootstrap.iter().filter_map(|(_, p)| p.as_ref()).map(to_peer).collect(),
        seed: rand::random(),
        retention_ms: config.retention.as_millis() as u64,
        seq_recovery_timeout_ms: config.seq_recovery_timeout.as_millis().try_into().unwrap_or(u64::MAX),
    };
    let engine = Engine::new(engine_config, recovered, now_ms())?;
    let committee = engine.committee().clone();

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
    // Unbounded in type only: the engine bounds the jobs in flight, the batches follow its
    // polls, and the sync answers its inbound requests (limited by libp2p's streams).
    let (verified_tx, verified_rx) = mpsc::unbounded_channel();
    let (committed_tx, committed_rx) = mpsc::unbounded_channel();
    let (served_tx, served_rx) = mpsc::unbounded_channel();
    let verifier = Verifier::start(config.verify_workers, verified_tx);
    let committer = start_committer(store.clone(), committed_tx);

    let mut runtime = Runtime {
        swarm,
        engine,
        store: store.clone(),
        events: events.clone(),
        metrics: metrics.clone(),
        libp2p_metrics,
        interceptor,
        parked: Parked::new(MAX_PARKED, MAX_PARKED_BYTES),
        verifier,
        committer,
        served: served_tx,
        validations: HashMap::new(),
        broadcasts: HashMap::new(),
        next_token: 0,
        sync_channels: HashMap::new(),
        sync_requests: HashMap::new(),
        bootstrap,
        listen: listen.clone(),
    };
    runtime.drain();
    for (addr, _) in runtime.bootstrap.clone() {
        if let Err(e) = runtime.swarm.dial(addr.clone()) {
            tracing::debug!(%addr, error = %e, "bootstrap dial failed");
        }
    }

    let task = tokio::spawn(runtime.run(commands_rx, verified_rx, committed_rx, served_rx));
    let handle = NodeHandle {
        commands: commands_tx,
        events,
        store,
        info: Arc::new(NodeInfo { public_key: me, peer_id, listen, api: api_addr }),
        task: Arc::new(std::sync::Mutex::new(Some(task))),
    };
    if let Some(listener) = api_listener {
        tokio::spawn(crate::api::serve(listener, handle.clone(), metrics, crate::api::ApiOptions::from_config(&config)));
    }
    tracing::info!(%peer_id, member = ?committee.index_of(&me), api = ?api_addr, "node started");
    Ok(handle)
}

impl Runtime {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut verified: mpsc::UnboundedReceiver<Done>,
        mut committed: mpsc::UnboundedReceiver<(u64, Result<Committed, String>)>,
        mut served: mpsc::UnboundedReceiver<(u64, SyncResponse)>,
    ) {
        loop {
            let parked_due = self.parked.next_due();
            let engine_due = self.engine.poll_timeout().map(instant_of);
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.on_command(command).await,
                    None => break,
                },
                Some(done) = verified.recv() => self.engine.handle_verified(now_ms(), done),
                Some((id, result)) = committed.recv() => self.engine.handle_committed(now_ms(), id, result),
                Some((token, response)) = served.recv() => {
                    // At most MAX_SYNC_SERVING plans run at once: the engine counts them
                    // until this report, so this channel never holds more.
                    self.engine.handle_sync_served(now_ms(), token);
                    if let Some(channel) = self.sync_channels.remove(&token) {
                        let _ = self.swarm.behaviour_mut().sync.send_response(channel, response);
                    }
                }
                () = wake_at(engine_due) => self.engine.handle_timeout(now_ms()),
                () = wake_at(parked_due) => self.release_parked(),
            }
            self.drain();
        }
        tracing::info!("node stopped");
    }

    /// Carries out every output the engine has.
    fn drain(&mut self) {
        while let Some(output) = self.engine.poll() {
            self.act(output);
        }
    }

    /// The one place engine outputs become actions.
    fn act(&mut self, output: Output) {
        match output {
            Output::Subscribe { topic } => {
                if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&gossipsub::IdentTopic::new(&topic)) {
                    tracing::warn!(%topic, error = %e, "cannot subscribe");
                }
            }
            Output::Validation { token, acceptance } => {
                let Some((id, source)) = self.validations.remove(&token) else { return };
                let acceptance = match acceptance {
                    Acceptance::Accept => gossipsub::MessageAcceptance::Accept,
                    Acceptance::Ignore => gossipsub::MessageAcceptance::Ignore,
                    Acceptance::Reject => gossipsub::MessageAcceptance::Reject,
                };
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&id, &source, acceptance);
            }
            Output::Publish { topic, envelope } => {
                let messages = match self.interceptor.as_mut() {
                    Some(interceptor) => interceptor.outgoing(&envelope),
                    None => vec![codec::encode_envelope(&envelope)],
                };
                let label = self.engine.topics().label(&topic);
                for bytes in messages {
                    // Counted whether or not gossipsub takes it (no peers yet): the envelope
                    // was made and handed over, as the testnet's in-process counters count it.
                    self.metrics.count_sent(label, bytes.len());
                    if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(gossipsub::IdentTopic::new(&topic), bytes) {
                        tracing::debug!(error = %e, kind = envelope.header().kind.label(), "publish failed (will be retransmitted or synced)");
                    }
                }
            }
            Output::Verify(job) => self.verifier.submit(job),
            Output::Persist(batch) => {
                if self.committer.send(batch).is_err() {
                    tracing::error!("the store thread is gone");
                }
            }
            Output::Broadcast { instance } => {
                if let Some(reply) = self.broadcasts.remove(&instance) {
                    let _ = reply.send(Ok(instance));
                }
            }
            Output::Deliver(d) => {
                tracing::debug!(instance = ?d.instance, cursor = d.cursor, "delivered");
                let _ = self.events.send(DeliveryEvent::Bracha(d));
            }
            Output::Gossip(m) => {
                let _ = self.events.send(DeliveryEvent::Gossip(m));
            }
            Output::Peer(action) => self.peer_action(action),
            Output::SyncRequest { peer, request_id, request } => match to_peer_id(&peer) {
                Some(peer) => {
                    let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                    self.sync_requests.insert(id, request_id);
                }
                None => self.engine.handle_sync_response(now_ms(), peer, request_id, None),
            },
            Output::SyncServe { token, plan } => {
                let (store, served) = (self.store.clone(), self.served.clone());
                tokio::task::spawn_blocking(move || {
                    let response = plan.execute(&storage::StoreLog(store.as_ref()));
                    let _ = served.send((token, response));
                });
            }
            Output::SyncRefuse { token } => {
                self.sync_channels.remove(&token);
            }
            Output::AppScore { peer, score } => {
                if let Some(peer) = to_peer_id(&peer) {
                    self.swarm.behaviour_mut().gossipsub.set_application_score(&peer, score);
                }
            }
            Output::Metric(metric) => self.metrics.record(&metric),
        }
    }

    fn peer_action(&mut self, action: PeerAction) {
        match action {
            PeerAction::Block(peer) => {
                if let Some(peer) = to_peer_id(&peer) {
                    // Closes open connections too (allow_block_list does that on insert).
                    self.swarm.behaviour_mut().blocked.block_peer(peer);
                    tracing::debug!(%peer, "peer blocked");
                }
            }
            PeerAction::Disconnect(peer) => {
                if let Some(peer) = to_peer_id(&peer) {
                    // One line per dropped connection: at most one per peer per streak.
                    tracing::warn!(%peer, "dropping the connection of a peer whose send queue stayed full (wedged link); redialling");
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
            }
            PeerAction::Unblock(peer) => {
                if let Some(peer) = to_peer_id(&peer) {
                    self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                    tracing::info!(%peer, "peer unblocked");
                }
            }
            PeerAction::Dial(peer) => {
                let Some(peer) = to_peer_id(&peer) else { return };
                if let Some((addr, _)) = self.bootstrap.iter().find(|(_, p)| *p == Some(peer)).cloned() {
                    let _ = self.swarm.dial(addr);
                }
            }
        }
    }

    // ---- commands ----

    async fn on_command(&mut self, command: Command) {
        let now = now_ms();
        match command {
            Command::Broadcast { value, reply } => match self.engine.broadcast(now, value) {
                // Answered once its seq and SEND are durable (Output::Broadcast).
                Ok(instance) => {
                    self.broadcasts.insert(instance, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Command::Publish { topic, payload, reply } => {
                let _ = reply.send(self.engine.publish(now, &topic, payload).map_err(NodeError::from));
            }
            Command::PublishRaw { messages, reply } => {
                // The testnet's hook for hand-made bytes (adversaries): straight to gossipsub.
                let results = messages
                    .into_iter()
                    .map(|(topic, bytes)| {
                        let topic = match topic {
                            RawTopic::Bracha => self.engine.topics().bracha(),
                            RawTopic::Gossip(name) => self.engine.topics().gossip(&name),
                            RawTopic::Sync => return self.send_raw_sync(&bytes),
                        };
                        let (label, len) = (self.engine.topics().label(&topic), bytes.len());
                        let result = self.swarm.behaviour_mut().gossipsub.publish(gossipsub::IdentTopic::new(topic), bytes);
                        if result.is_ok() {
                            self.metrics.count_sent(label, len);
                        }
                        result.map(|_| ()).map_err(|e| NodeError::Network(e.to_string()))
                    })
                    .collect();
                let _ = reply.send(results);
            }
            Command::Subscribe { topic, reply } => {
                let _ = reply.send(self.engine.subscribe(&topic).map_err(NodeError::from));
            }
            Command::Peers { reply } => {
                let peers = self
                    .engine
                    .peers(now)
                    .into_iter()
                    .map(|view| PeerInfo {
                        peer_id: to_peer_id(&view.peer).map(|p| p.to_string()).unwrap_or_default(),
                        connected: view.connected,
                        member: view.member,
                        reputation: view.reputation,
                        ping_rtt_ms: view.ping_rtt_ms,
                        ping_failures: view.ping_failures,
                        suspected: view.suspected,
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::Status { reply } => {
                let status = self.engine.status();
                let _ = reply.send(Status {
                    public_key: self.engine.public_key(),
                    peer_id: self.swarm.local_peer_id().to_string(),
                    member: status.member,
                    network: self.engine.network().to_hex(),
                    n: status.n,
                    f: status.f,
                    listen: self.listen.iter().map(ToString::to_string).collect(),
                    connected_peers: status.connected_peers,
                    last_cursor: status.last_cursor,
                    open_instances: status.open_instances,
                    validation_queue: status.validation_queue,
                    members_reachable: status.quorum.members_reachable,
                    members_needed: status.quorum.members_needed,
                    progress_possible: status.quorum.progress_possible(),
                    stalled_instances: status.quorum.stalled_instances,
                });
            }
            Command::Dial { addr, reply } => {
                let _ = reply.send(self.swarm.dial(addr).map_err(|e| NodeError::Network(e.to_string())));
            }
            Command::Disconnect { peer, block, reply } => {
                let result = if block {
                    self.engine.block(now, to_peer(&peer)).map_err(NodeError::from)
                } else {
                    self.engine.unblock(now, to_peer(&peer));
                    Ok(())
                };
                let _ = reply.send(result);
            }
            Command::Shutdown { .. } => {}
        }
    }

    // ---- swarm events ----

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        {
            use libp2p::metrics::Recorder;
            self.libp2p_metrics.record(&event);
        }
        let now = now_ms();
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message })) => {
                self.on_gossip(propagation_source, message_id, message);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::SlowPeer { peer_id, failed_messages })) => {
                // Gossipsub's own "Send Queue full" line per dropped RPC is filtered out of the
                // default log (it filled disks at 50 lines/s on a wedged link); the engine
                // counts reports and decides when the connection goes.
                tracing::debug!(peer = %peer_id, ?failed_messages, "slow peer");
                self.engine.handle_slow_peer(now, to_peer(&peer_id));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.on_sync_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(libp2p::ping::Event { peer, result, .. })) => {
                let rtt_ms = result.ok().map(|rtt| rtt.as_millis().try_into().unwrap_or(u64::MAX));
                self.engine.handle_ping(now, to_peer(&peer), rtt_ms);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(libp2p::identify::Event::Received { peer_id, info, .. })) => {
                // Remember the peer's listen addresses so gossipsub and sync can redial.
                for addr in info.listen_addrs {
                    self.swarm.add_peer_address(peer_id, addr);
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, num_established, .. } if num_established.get() == 1 => {
                self.engine.handle_connected(now, to_peer(&peer_id));
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                self.engine.handle_disconnected(now, to_peer(&peer_id));
            }
            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer_id), .. } => {
                self.engine.handle_dial_failed(now, to_peer(&peer_id));
            }
            _ => {}
        }
    }

    /// A received gossipsub message: counted, shown to the interceptor, then handed to the
    /// engine (now, or when a delay the interceptor asked for has passed).
    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, message: gossipsub::Message) {
        let label = self.engine.topics().label(message.topic.as_str());
        self.metrics.count_received(label, message.data.len());
        let decision = match self.interceptor.as_mut() {
            Some(interceptor) => interceptor.inbound(&to_peer(&source), &message.data),
            None => Inbound::Process,
        };
        match decision {
            Inbound::Process => {}
            Inbound::Delay(delay) if delay.is_zero() => {}
            Inbound::Drop => {
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&id, &source, gossipsub::MessageAcceptance::Ignore);
                return;
            }
            Inbound::Delay(delay) => {
                let len = message.data.len();
                let item = ParkedInbound::Gossip { source, id, message };
                if let Err(ParkedInbound::Gossip { source, id, .. }) = self.parked.park(Instant::now() + delay, len, item) {
                    self.metrics.message("unknown", "parked_full");
                    self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&id, &source, gossipsub::MessageAcceptance::Ignore);
                }
                self.parked_depth();
                return;
            }
        }
        self.admit_gossip(source, id, message);
    }

    fn admit_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, message: gossipsub::Message) {
        let token = self.next_token;
        self.next_token += 1;
        self.validations.insert(token, (id, source));
        self.engine.handle_message(now_ms(), to_peer(&source), token, message.topic.as_str(), &message.data);
    }

    /// Hands every parked message that is due to the engine.
    fn release_parked(&mut self) {
        while let Some(item) = self.parked.pop_due(Instant::now()) {
            match item {
                ParkedInbound::Gossip { source, id, message } => self.admit_gossip(source, id, message),
                ParkedInbound::Sync { peer, request_id, response } => self.sync_response(peer, request_id, response),
            }
            self.drain();
        }
        self.parked_depth();
    }

    fn parked_depth(&self) {
        self.metrics.record(&Metric::QueueDepth { queue: "parked", depth: self.parked.len() });
    }

    /// The testnet's hook for hand-made sync requests: `bytes` decoded and sent to every
    /// connected peer, outside the engine (their answers match no request and are dropped).
    fn send_raw_sync(&mut self, bytes: &[u8]) -> Result<(), NodeError> {
        let request: SyncRequest = codec::decode(bytes, crate::sync::MAX_SYNC_FRAME).map_err(|e| NodeError::Network(e.to_string()))?;
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            self.swarm.behaviour_mut().sync.send_request(&peer, request.clone());
        }
        self.metrics.count_sent("sync", bytes.len());
        Ok(())
    }

    fn sync_response(&mut self, peer: PeerId, request_id: Option<u64>, response: SyncResponse) {
        if let Some(request_id) = request_id {
            self.engine.handle_sync_response(now_ms(), to_peer(&peer), request_id, Some(response));
        }
    }

    fn on_sync_event(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        let now = now_ms();
        match event {
            request_response::Event::Message { peer, message: request_response::Message::Request { request, channel, .. }, .. } => {
                let token = self.next_token;
                self.next_token += 1;
                self.sync_channels.insert(token, channel);
                self.engine.handle_sync_request(now, to_peer(&peer), token, request);
            }
            request_response::Event::Message { peer, message: request_response::Message::Response { request_id, response }, .. } => {
                let request_id = self.sync_requests.remove(&request_id);
                let decision = match self.interceptor.as_mut() {
                    Some(interceptor) => interceptor.sync_response(&to_peer(&peer)),
                    None => Inbound::Process,
                };
                match decision {
                    Inbound::Process => self.sync_response(peer, request_id, response),
                    Inbound::Delay(delay) if delay.is_zero() => self.sync_response(peer, request_id, response),
                    Inbound::Drop => {
                        self.metrics.record(&Metric::Sync { kind: "response_dropped" });
                        if let Some(request_id) = request_id {
                            self.engine.handle_sync_response(now, to_peer(&peer), request_id, None);
                        }
                    }
                    Inbound::Delay(delay) => {
                        let len = response.payload_len();
                        let item = ParkedInbound::Sync { peer, request_id, response };
                        if let Err(ParkedInbound::Sync { peer, request_id: Some(request_id), .. }) =
                            self.parked.park(Instant::now() + delay, len, item)
                        {
                            self.metrics.record(&Metric::Sync { kind: "response_dropped" });
                            self.engine.handle_sync_response(now, to_peer(&peer), request_id, None);
                        }
                        self.parked_depth();
                    }
                }
            }
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                tracing::debug!(%error, "sync request failed");
                if let Some(request_id) = self.sync_requests.remove(&request_id) {
                    self.engine.handle_sync_response(now, to_peer(&peer), request_id, None);
                }
            }
            _ => {}
        }
    }
}

/// Starts listening and waits until every listen address is bound (ports resolved).
async fn bind(swarm: &mut Swarm<Behaviour>, addrs: &[Multiaddr], peer_id: PeerId) -> Result<Vec<Multiaddr>, NodeError> {
    let mut listeners = HashMap::new();
    for addr in addrs {
        probe_tcp_port(addr)?;
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

/// The socket address of a `/ip4|ip6/<ip>/tcp/<port>` listen address with a fixed port.
fn fixed_tcp_port(addr: &Multiaddr) -> Option<std::net::SocketAddr> {
    use libp2p::multiaddr::Protocol;
    let mut parts = addr.iter();
    let ip: std::net::IpAddr = match parts.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    match parts.next()? {
        Protocol::Tcp(port) if port != 0 => Some((ip, port).into()),
        _ => None,
    }
}

/// Refuses a TCP listen address whose port another socket holds. libp2p's TCP transport
/// sets `SO_REUSEPORT` on every listener (libp2p-tcp 0.45 has no option to turn it off), so a
/// second byzgossip on the same port would bind without error and the kernel would split
/// incoming connections between the two processes. A probe bound without `SO_REUSEPORT`
/// fails with `EADDRINUSE` while any other listener holds the port, and is closed at once so
/// libp2p can bind. (Two nodes starting in the same instant can still both pass the probe;
/// a port held from before, the operator's mistake, is always caught.)
fn probe_tcp_port(addr: &Multiaddr) -> Result<(), NodeError> {
    let Some(socket) = fixed_tcp_port(addr) else { return Ok(()) };
    match std::net::TcpListener::bind(socket) {
        Ok(probe) => {
            drop(probe);
            Ok(())
        }
        Err(e) => Err(NodeError::Listen { addr: addr.to_string(), reason: e.to_string() }),
    }
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
}
