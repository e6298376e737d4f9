//! Replay protection, peer reputation and the admission pipeline of byzgossip.
//!
//! Given the bytes a peer sent us, [`Admission`] decides `Accept` / `Ignore` / `Reject`
//! (gossipsub's three validation results) and who is to blame, composing the crypto crate's
//! decode and signature check with a [`ReplayGuard`] (time window + bounded seen-set) and a
//! [`Reputation`] table (decaying scores, trust, graylist, doubling bans, exclusion on
//! equivocation, rate budgets). See DESIGN.md section 4.
//!
//! # IO contract
//! Pure: no network, no threads, no clock, no global RNG. Every time-dependent call takes
//! `now_ms` (milliseconds since the Unix epoch, from the node's clock); hash seeds come from
//! the configs. Peer faults are values ([`Verdict`], [`Event`], [`StatusChange`]), never
//! errors; errors ([`ConfigError`]) are only invalid configurations. Signature verification
//! can be split off ([`Admission::precheck`], [`verify_pending`], [`Admission::complete`]) so
//! the node runs it in batches on a worker pool.
//!
//! # Bounds
//! - decode: [`AdmissionConfig::max_message_len`] (default 256 KiB, never above 1 MiB);
//! - seen-set: [`ReplayConfig::capacity`] ids in total and
//!   [`ReplayConfig::per_origin_capacity`] per origin, expiry amortised O(1) per id;
//! - reputation: [`ReputationConfig::max_peers`] tracked keys (banned and excluded ones never
//!   evicted), [`ReputationConfig::max_excluded`] exclusions;
//! - key cache: [`AdmissionConfig::key_cache_capacity`] non-committee keys;
//! - batches: [`AdmissionConfig::max_batch`] signatures; status outbox:
//!   [`AdmissionConfig::status_outbox_capacity`].
//!
//! No input makes any function panic.

mod admission;
mod error;
mod hash;
mod replay;
mod reputation;

pub use admission::{
    Acceptance, Admission, AdmissionConfig, Blame, DEFAULT_KEY_CACHE_CAPACITY, DEFAULT_MAX_BATCH,
    DEFAULT_MAX_MESSAGE_LEN, DEFAULT_STATUS_OUTBOX_CAPACITY, IgnoreReason, Pending, RejectReason, SyncRefusal, Verdict,
    verify_pending,
};
pub use error::ConfigError;
pub use replay::{
    DEFAULT_BUCKET_MS, DEFAULT_COMMITTEE_CAPACITY, DEFAULT_MAX_AGE_MS, DEFAULT_MAX_FUTURE_MS, DEFAULT_PER_ORIGIN_CAPACITY,
    DEFAULT_SEEN_CAPACITY,
    MAX_BUCKETS, ReplayConfig, ReplayGuard, ReplayOutcome, WindowMode,
};
pub use reputation::{
    BudgetConfig, DEFAULT_MAX_EXCLUDED, SYNC_VALUE_COST, DEFAULT_MAX_PEERS, EVICTION_SAMPLE, EVICTION_SCAN_LIMIT, Event,
    EventWeights, PeerSnapshot, PeerStatus, Reputation, ReputationConfig,
    ReputationSnapshot, StatusChange,
};
