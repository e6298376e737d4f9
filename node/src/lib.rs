//! The byzgossip node: libp2p networking, admission, Bracha reliable broadcast, anti-entropy
//! sync, persistence, the embedding API, the HTTP API and metrics.
//!
//! Start one with [`NodeBuilder::new`]`(config).spawn().await` and talk to it through the
//! returned [`NodeHandle`]. The `byzgossip` binary wraps the same API.

pub mod api;
pub mod config;
/// Gossip bodies and recent gossip: the engine's (re-exported where they always were).
pub use byzgossip_engine::gossip;
mod handle;
/// The interceptor hook: the engine's, shared by every driver (re-exported).
pub use byzgossip_engine::hooks;
/// Certified deliveries for observers: the engine's wire body (re-exported for tools and tests).
pub use byzgossip_engine::observer;
pub mod identity;
pub mod metrics;
pub mod network;
mod runtime;
pub mod storage;
pub mod sync;
pub mod testnet_keys;

pub use config::NodeConfig;
pub use handle::{
    COMMAND_QUEUE, Delivered, DeliveryEvent, EVENT_BUFFER, GossipMessage, NodeBuilder, NodeError, NodeHandle, PeerInfo,
    RawTopic, Status,
};
pub use byzgossip_engine::blocks::MAX_OPERATOR_BLOCKS;
pub use byzgossip_engine::{Engine, EngineConfig, Peer};
pub use runtime::now_ms;
