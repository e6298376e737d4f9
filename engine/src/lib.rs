//! The byzgossip node's protocol policy as a pure, sans-IO state machine (DESIGN.md
//! section 1, `engine`).
//!
//! [`Engine`] owns admission, the Bracha machine, retransmission, relay choice, the
//! topic/kind rule, evidence, sync policy (what to request, what to serve and under which
//! bounds), the delivery log cursor, crash recovery decisions, latency tracking and the wanted
//! set of blocked peers. A driver feeds it inputs with the current time and carries out its
//! [`Output`]s: the node (tokio, libp2p, redb) and the testnet's deterministic simulator run
//! the same engine.
//!
//! # IO contract
//! No clock (every input takes `now_ms`), no IO, no threads, no global randomness (the only
//! randomness is a ChaCha stream seeded from [`EngineConfig::seed`]), no random-state hash
//! map whose order reaches an output: the same inputs give the same outputs, which the
//! simulator's state hash checks.
//!
//! # Bounds
//! Verification jobs in flight: `validation_queue` gossip, [`BRACHA_QUEUE_FACTOR`] times that
//! Bracha (beyond, a message is answered `Ignore`); outstanding sync requests
//! [`MAX_SYNC_IN_FLIGHT`]; uncommitted persistence batches [`MAX_BATCHES_IN_FLIGHT`] (more
//! writes coalesce into the next batch); tracked latencies [`MAX_TRACKED_LATENCY`]; retransmissions follow
//! the Bracha windows; blocks by hand [`blocks::MAX_OPERATOR_BLOCKS`]; foreign identities
//! [`blocks::MAX_FOREIGN_BLOCKS`]; recent gossip [`gossip::RECENT_GOSSIP_ENTRIES`] and
//! [`gossip::RECENT_GOSSIP_BYTES`]; slow peers tracked [`slow::MAX_SLOW_PEERS`]; sync plans [`sync::MAX_SYNC_LOOKUPS`] reads;
//! kept evidence one per excluded member (at most [`MAX_STORED_EXCLUSIONS`]), offered at most
//! [`sync::MAX_SYNC_EVIDENCE`] per sync response; stored bans [`MAX_STORED_BANS`]; stored
//! gossip ids until they leave the replay window ([`store::KeptSanctions`]).

pub mod blocks;
mod budget;
mod engine;
pub mod gossip;
pub mod hooks;
pub mod liveness;
pub mod observer;
pub mod output;
mod peer;
mod recovery;
mod redial;
pub mod relay;
pub mod retransmit;
pub mod slow;
pub mod store;
pub mod sync;
pub mod topics;
pub mod verify;

pub use engine::{
    BRACHA_QUEUE_FACTOR, Engine, EngineConfig, EngineError, EngineStatus, LATENCY_FORGET_MS, MAX_BATCHES_IN_FLIGHT, MAX_HELD_GOSSIP_IDS,
    PRUNE_INTERVAL_MS,
    MAX_SYNC_IN_FLIGHT, MAX_SYNC_SERVING, MAX_TRACKED_LATENCY, PeerView,
};
pub use output::{Delivered, GossipMessage, Metric, Output, PeerAction};
pub use peer::Peer;
pub use recovery::DEFAULT_SEQ_RECOVERY_TIMEOUT_MS;
pub use store::{
    Appended, Batch, Committed, DeliveryLog, KeptSanctions, MAX_PRUNED_PER_BATCH, MAX_STORED_BANS, MAX_STORED_EXCLUSIONS, OwnMessage,
    Recovered, SeqStream, StoredBan, StoredDelivery, StoredExclusion, StoredGossipId, Watermark, KeptGossip,
};
pub use sync::{ServePlan, SyncRequest, SyncResponse};
pub use verify::{Done, Job, Line, Outcome};
