//! Node configuration: a plain struct with documented fields, `Default`-like construction from
//! a genesis and key, and `validate()` for cross-field rules (raft-rs style).

use crate::api::ApiToken;
use byzgossip_crypto::{Genesis, Keypair};
use byzgossip_reputation::AdmissionConfig;
use libp2p::Multiaddr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Most envelopes waiting for signature verification. When full, new messages are answered
/// `Ignore` at once instead of queueing: an attacker cannot build an unbounded backlog, and
/// honest messages dropped this way come back through gossip or sync.
pub const DEFAULT_VALIDATION_QUEUE: usize = 1024;

/// The Bracha window for a committee of `n`: about 128 open instances across all origins
/// (`128 / n` per origin, 4 to 32). Every open instance puts about 2n messages in flight on
/// every node; with the window at 32 for every origin, an n = 16 committee saturated by its
/// own broadcasts had ~17,000 messages in flight per node, overflowed gossipsub's send queues
/// and stalled. A smaller window turns that overload into backpressure on `broadcast`.
pub fn bracha_window(n: usize) -> u64 {
    (128 / n.max(1)).clamp(4, 32) as u64
}

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The network's genesis (committee, f, policy, bootstrap addresses).
    pub genesis: Genesis,
    /// This node's key (its libp2p identity is derived from it).
    pub keypair: Keypair,
    /// Directory of the redb database; `None` keeps everything in memory (tests, embedding).
    pub data_dir: Option<PathBuf>,
    /// Addresses to listen on. Default: TCP and QUIC on 127.0.0.1 with OS-chosen ports.
    pub listen: Vec<Multiaddr>,
    /// Extra peers to dial at start, on top of the genesis bootstrap list.
    pub bootstrap: Vec<Multiaddr>,
    /// Whether to dial the genesis bootstrap addresses.
    pub use_genesis_bootstrap: bool,
    /// HTTP API address; `None` runs no HTTP server. Keep it on loopback: reads are open to
    /// anyone who reaches the port, and the token of the mutating calls travels in clear.
    pub api_listen: Option<SocketAddr>,
    /// The bearer token the HTTP API's mutating calls need (see [`crate::api`]). Default: a
    /// random one, held only in memory; set it (for example with
    /// [`ApiToken::load_or_create`]) to give clients a token they can find.
    pub api_token: ApiToken,
    /// Most `/deliveries` event streams open at once ([`crate::api::MAX_SUBSCRIBERS`]).
    pub api_max_subscribers: usize,
    /// Admission limits, windows, reputation.
    pub admission: AdmissionConfig,
    /// Bracha window, retention and value limits.
    pub bracha: byzgossip_bracha::Config,
    /// How often to exchange sync digests with a random peer.
    pub sync_interval: Duration,
    /// Bound of the verification queue ([`DEFAULT_VALIDATION_QUEUE`]).
    pub validation_queue: usize,
    /// Threads verifying signatures off the async reactor.
    pub verify_workers: usize,
    /// How often the node ticks Bracha, reputation decay and peer scores.
    pub tick_interval: Duration,
    /// Most established connections in total (a Sybil flood cannot exhaust sockets).
    pub max_connections: u32,
    /// Most established connections per peer.
    pub max_connections_per_peer: u32,
    /// Delay before redialling a bootstrap peer that dropped; doubles up to 30 s.
    pub redial_backoff: Duration,
    /// Gossip topics to subscribe to at start.
    pub topics: Vec<String>,
    /// How long deliveries (values, certificates, the own votes of their instances) are kept
    /// ([`DEFAULT_RETENTION`]); zero keeps them forever. Bounds the store's size (delivery
    /// rate times retention) and the restart's work (own messages of retained instances
    /// only). Deliveries past it still count as delivered; `/deliveries` skips them.
    pub retention: Duration,
    /// How long a member whose store is new waits for its peers to tell it its own
    /// delivered instances before it broadcasts (a node that lost its data dir must not
    /// reuse a seq); broadcasts meanwhile answer [`crate::NodeError::Busy`]. Only a member
    /// with bootstrap peers waits; zero: never wait. Default
    /// [`byzgossip_engine::DEFAULT_SEQ_RECOVERY_TIMEOUT_MS`] (10 s).
    pub seq_recovery_timeout: Duration,
}

/// Default [`NodeConfig::retention`]: one day.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

impl NodeConfig {
    /// A config with defaults for everything but the genesis and key.
    pub fn new(genesis: Genesis, keypair: Keypair) -> NodeConfig {
        let window = bracha_window(genesis.members.len());
        NodeConfig {
            genesis,
            keypair,
            data_dir: None,
            listen: vec![
                "/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr"),
                "/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("valid multiaddr"),
            ],
            bootstrap: Vec::new(),
            use_genesis_bootstrap: true,
            api_listen: None,
            api_token: ApiToken::generate(),
            api_max_subscribers: crate::api::MAX_SUBSCRIBERS,
            admission: {
                let mut admission = AdmissionConfig::default();
                // A per-process random seed, so nobody can precompute ids that collide in
                // our seen-set's hash table.
                admission.replay.hash_seed = rand::random();
                admission
            },
            bracha: byzgossip_bracha::Config { window, ..Default::default() },
            sync_interval: Duration::from_millis(1000),
            validation_queue: DEFAULT_VALIDATION_QUEUE,
            verify_workers: 2,
            tick_interval: Duration::from_millis(250),
            max_connections: 256,
            max_connections_per_peer: 2,
            redial_backoff: Duration::from_millis(500),
            topics: Vec::new(),
            retention: DEFAULT_RETENTION,
            seq_recovery_timeout: Duration::from_millis(byzgossip_engine::DEFAULT_SEQ_RECOVERY_TIMEOUT_MS),
        }
    }

    /// Checks cross-field rules.
    pub fn validate(&self) -> Result<(), String> {
        self.genesis.committee().map_err(|e| e.to_string())?;
        self.admission.validate().map_err(|e| e.to_string())?;
        self.bracha.validate().map_err(|e| e.to_string())?;
        if self.listen.is_empty() {
            return Err("at least one listen address is needed".into());
        }
        if self.validation_queue == 0 || self.verify_workers == 0 {
            return Err("validation_queue and verify_workers must be positive".into());
        }
        if self.sync_interval.is_zero() || self.tick_interval.is_zero() {
            return Err("sync_interval and tick_interval must be positive".into());
        }
        if self.max_connections == 0 || self.max_connections_per_peer == 0 {
            return Err("connection limits must be positive".into());
        }
        if self.api_max_subscribers == 0 || self.api_max_subscribers > tokio::sync::Semaphore::MAX_PERMITS {
            return Err("api_max_subscribers must be positive".into());
        }
        for topic in &self.topics {
            crate::network::check_topic_name(topic)?;
        }
        Ok(())
    }
}
