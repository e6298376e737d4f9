//! The byzgossip node: libp2p networking, admission, Bracha reliable broadcast, anti-entropy
//! sync, persistence, the embedding API, the HTTP API and metrics.
//!
//! Start one with [`NodeBuilder::new`]`(config).spawn().await` and talk to it through the
//! returned [`NodeHandle`]. The `byzgossip` binary wraps the same API.

pub mod api;
pub mod config;
pub mod gossip;
mod handle;
pub mod hooks;
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
pub use runtime::{MAX_OPERATOR_BLOCKS, now_ms};
