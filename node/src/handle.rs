//! The embedding API: [`NodeBuilder`] starts a node, [`NodeHandle`] talks to it.
//!
//! The node runs as one tokio task that owns the swarm and all protocol state; the handle
//! sends it commands over a bounded channel and receives answers on oneshot channels, so a
//! handle is cheap to clone and safe to use from any task.

use crate::config::NodeConfig;
use crate::hooks::Interceptor;
use crate::storage::Store;
use byzgossip_bracha::InstanceId;
use byzgossip_crypto::{MessageId, PublicKey};
use byzgossip_reputation::PeerSnapshot;
use futures::Stream;
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Most commands waiting for the node task; senders wait (backpressure) when it is full.
pub const COMMAND_QUEUE: usize = 256;
/// Live delivery events buffered per subscriber; a subscriber that falls further behind
/// re-reads Bracha deliveries from storage (gossip messages it missed are lost to it).
pub const EVENT_BUFFER: usize = 4096;

/// Why a node call failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// the configuration is invalid
    #[error("invalid configuration: {0}")]
    Config(String),
    /// the key is not in the genesis committee where membership is required
    #[error("this node's key is not a member of the committee")]
    NotAMember,
    /// a listen address could not be bound (port in use, bad address)
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// the address
        addr: String,
        /// why
        reason: String,
    },
    /// persistence failed
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StoreError),
    /// the request was refused (value too large, bad topic, ...)
    #[error("refused: {0}")]
    Refused(String),
    /// backpressure: the request is fine but the node cannot take it now (its Bracha window
    /// is full, or publishing is over its rate budget); retry shortly
    #[error("busy: {0}")]
    Busy(String),
    /// the node has stopped
    #[error("the node has stopped")]
    Stopped,
    /// a network-level failure
    #[error("network: {0}")]
    Network(String),
}

/// Deliveries and gossip messages as the engine hands them out (re-exported).
pub use byzgossip_engine::{Delivered, GossipMessage};

/// What `deliveries()` yields.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeliveryEvent {
    /// A reliable-broadcast delivery (persisted, resumable by cursor).
    Bracha(Delivered),
    /// A gossip message on a subscribed topic (live only).
    Gossip(GossipMessage),
}

/// One peer as this node sees it.
#[derive(Clone, Debug, Serialize)]
pub struct PeerInfo {
    /// libp2p id.
    pub peer_id: String,
    /// Reputation state (score, trust, status).
    #[serde(flatten)]
    pub reputation: PeerSnapshot,
    /// Whether a connection is open now.
    pub connected: bool,
    /// Committee index, if a member.
    pub member: Option<usize>,
    /// The last successful ping round trip (ms).
    pub ping_rtt_ms: Option<u64>,
    /// Pings failed since the last success or message from the peer.
    pub ping_failures: u32,
    /// Suspected after 3 failed pings in a row; cleared by any message or a successful ping.
    pub suspected: bool,
}

/// A summary of the node.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// This node's key.
    pub public_key: PublicKey,
    /// libp2p id.
    pub peer_id: String,
    /// Committee index, if a member.
    pub member: Option<usize>,
    /// Network id (genesis digest).
    pub network: String,
    /// Committee size and fault bound.
    pub n: usize,
    /// Fault bound.
    pub f: usize,
    /// Addresses the node listens on.
    pub listen: Vec<String>,
    /// Open connections.
    pub connected_peers: usize,
    /// Last delivery cursor.
    pub last_cursor: u64,
    /// Bracha instances open now.
    pub open_instances: usize,
    /// Messages waiting for verification.
    pub validation_queue: usize,
    /// Members reachable: this node if a member, plus connected members not suspected.
    pub members_reachable: usize,
    /// Members a broadcast needs to complete (2f+1).
    pub members_needed: usize,
    /// Whether `members_reachable >= members_needed`: if not, no broadcast can complete.
    pub progress_possible: bool,
    /// Bracha instances seen more than 10 s ago and not delivered.
    pub stalled_instances: usize,
}

/// A request from a handle to the node task.
pub(crate) enum Command {
    Broadcast { value: Vec<u8>, reply: oneshot::Sender<Result<InstanceId, NodeError>> },
    Publish { topic: String, payload: Vec<u8>, reply: oneshot::Sender<Result<MessageId, NodeError>> },
    PublishRaw { messages: Vec<(RawTopic, Vec<u8>)>, reply: oneshot::Sender<Vec<Result<(), NodeError>>> },
    Subscribe { topic: String, reply: oneshot::Sender<Result<(), NodeError>> },
    Peers { reply: oneshot::Sender<Vec<PeerInfo>> },
    Status { reply: oneshot::Sender<Status> },
    Dial { addr: Multiaddr, reply: oneshot::Sender<Result<(), NodeError>> },
    Disconnect { peer: PeerId, block: bool, reply: oneshot::Sender<Result<(), NodeError>> },
    Shutdown { reply: oneshot::Sender<()> },
}

/// Which gossipsub topic raw bytes go to (see [`NodeHandle::publish_raw`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawTopic {
    /// The Bracha topic (SEND, ECHO, READY, evidence).
    Bracha,
    /// An application gossip topic.
    Gossip(String),
    /// Not a topic: the bytes are a sync request (the codec's encoding of
    /// `byzgossip_engine::SyncRequest`), sent to every connected peer; answers are dropped.
    Sync,
}

/// Starts a node.
pub struct NodeBuilder {
    pub(crate) config: NodeConfig,
    pub(crate) store: Option<Arc<dyn Store>>,
    pub(crate) interceptor: Option<Box<dyn Interceptor>>,
}

impl NodeBuilder {
    /// A builder for `config`.
    pub fn new(config: NodeConfig) -> Self {
        Self { config, store: None, interceptor: None }
    }

    /// Uses `store` instead of the one `config.data_dir` names.
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Installs a message interceptor (see [`crate::hooks`]).
    pub fn with_interceptor(mut self, interceptor: Box<dyn Interceptor>) -> Self {
        self.interceptor = Some(interceptor);
        self
    }

    /// Validates the config, opens storage, binds the listen addresses (and the HTTP API if
    /// configured) and starts the node task.
    pub async fn spawn(self) -> Result<NodeHandle, NodeError> {
        crate::runtime::spawn(self).await
    }
}

/// Fixed facts about a running node.
#[derive(Debug)]
pub(crate) struct NodeInfo {
    pub public_key: PublicKey,
    pub peer_id: PeerId,
    pub listen: Vec<Multiaddr>,
    pub api: Option<SocketAddr>,
}

/// A handle to a running node. Cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) events: broadcast::Sender<DeliveryEvent>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) info: Arc<NodeInfo>,
    pub(crate) task: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl NodeHandle {
    /// This node's public key.
    pub fn public_key(&self) -> PublicKey {
        self.info.public_key
    }

    /// This node's libp2p id.
    pub fn peer_id(&self) -> PeerId {
        self.info.peer_id
    }

    /// The addresses the node actually listens on (ports resolved), each ending in `/p2p/<id>`.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.info.listen.clone()
    }

    /// The HTTP API address, if one is running.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.info.api
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(make(reply)).await.map_err(|_| NodeError::Stopped)?;
        answer.await.map_err(|_| NodeError::Stopped)
    }

    /// Reliable broadcast of `value` through Bracha; returns its instance once the SEND is
    /// signed (after its seq was persisted) and published.
    pub async fn broadcast(&self, value: Vec<u8>) -> Result<InstanceId, NodeError> {
        self.call(|reply| Command::Broadcast { value, reply }).await?
    }

    /// Best-effort signed gossip of `payload` on `topic`.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<MessageId, NodeError> {
        self.call(|reply| Command::Publish { topic: topic.to_owned(), payload, reply }).await?
    }

    /// Publishes raw bytes on a topic without signing or checking them. Honest code has no
    /// use for it; the testnet's adversaries use it to put malformed, forged or replayed
    /// envelopes on the wire through a real node.
    pub async fn publish_raw(&self, topic: RawTopic, bytes: Vec<u8>) -> Result<(), NodeError> {
        let mut results = self.publish_raw_many(vec![(topic, bytes)]).await?;
        results.pop().unwrap_or(Err(NodeError::Stopped))
    }

    /// [`NodeHandle::publish_raw`] for many messages in one round trip to the node task: a
    /// flooding adversary sending one message per round trip was held to the rate of the
    /// node's event loop (at n = 16 on two cores, some flooders got 2% of their 2,000/s out,
    /// stayed under every budget, and the `flood` preset could not convict them). One result
    /// per message, in order.
    pub async fn publish_raw_many(&self, messages: Vec<(RawTopic, Vec<u8>)>) -> Result<Vec<Result<(), NodeError>>, NodeError> {
        self.call(|reply| Command::PublishRaw { messages, reply }).await
    }

    /// Subscribes to a gossip topic; its messages then appear in [`NodeHandle::deliveries`].
    pub async fn subscribe(&self, topic: &str) -> Result<(), NodeError> {
        self.call(|reply| Command::Subscribe { topic: topic.to_owned(), reply }).await?
    }

    /// Every known peer with its reputation.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NodeError> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// A summary of the node.
    pub async fn status(&self) -> Result<Status, NodeError> {
        self.call(|reply| Command::Status { reply }).await
    }

    /// Dials `addr`.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NodeError> {
        self.call(|reply| Command::Dial { addr, reply }).await?
    }

    /// Blocking by hand (an operator's quarantine; the testnet's partitions). With
    /// `block = true`, closes every connection to `peer` and refuses new ones, both ways; with
    /// `block = false`, lifts that block, and a bootstrap peer (every committee member with a
    /// genesis bootstrap address) is redialled at the next tick. Bans decided by reputation are
    /// separate: lifting a block by hand leaves a ban in force, and a ban that expires leaves a
    /// block by hand in force. Refused for this node's own id and beyond
    /// [`crate::MAX_OPERATOR_BLOCKS`] blocked peers; blocks are not persisted.
    pub async fn disconnect(&self, peer: PeerId, block: bool) -> Result<(), NodeError> {
        self.call(|reply| Command::Disconnect { peer, block, reply }).await?
    }

    /// Resolves once the node task has ended (shut down, aborted or failed).
    pub(crate) async fn stopped(&self) {
        self.commands.closed().await;
    }

    /// Deliveries from `cursor` on: first the stored Bracha deliveries with cursor >=
    /// `cursor`, then live events (Bracha and gossip) as they happen. A subscriber that lags
    /// more than [`EVENT_BUFFER`] events re-reads the Bracha deliveries it missed from storage.
    pub fn deliveries(&self, cursor: u64) -> impl Stream<Item = DeliveryEvent> + Send + use<> {
        crate::runtime::delivery_stream(self.store.clone(), self.events.subscribe(), cursor)
    }

    /// Stops the node and waits for its task to end. Storage is left consistent (every write
    /// is already durable), so a later start resumes where this one stopped.
    pub async fn shutdown(&self) {
        let _ = self.call(|reply| Command::Shutdown { reply }).await;
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Aborts the node task at once, without any shutdown step: the closest thing to a crash
    /// inside one process (used by crash-restart tests).
    pub fn abort(&self) {
        if let Ok(mut task) = self.task.lock()
            && let Some(task) = task.take()
        {
            task.abort();
        }
    }
}
