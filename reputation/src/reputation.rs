//! Per-peer reputation: decaying scores, trust, thresholds, bans and rate budgets.
//!
//! # Model (like gossipsub's P2/P4/P5, with a slower trust)
//! Each key (a libp2p peer and a signing origin are the same ed25519 key) has two counters
//! that decay exponentially towards zero:
//! - `penalty`: the weights of [`Event::Malformed`], [`Event::BadHash`],
//!   [`Event::BadSignature`], [`Event::OutsideWindow`] (graded by distance) and
//!   [`Event::Flood`]; half-life [`ReputationConfig::penalty_half_life_ms`];
//! - `reward`: [`Event::FirstDelivery`] and [`Event::UsefulVote`], capped at
//!   [`ReputationConfig::reward_cap`]; half-life [`ReputationConfig::reward_half_life_ms`].
//!
//! `score = clamp(reward - penalty, score_min, reward_cap)`. Unknown keys start at score 0 with
//! trust [`ReputationConfig::initial_trust`] (low, not zero: a newcomer is admitted with a
//! small rate budget). Trust in [0, 1] rises towards 1 with half-life
//! [`ReputationConfig::trust_rise_half_life_ms`] while the peer is in good standing
//! (`score >= 0`, not banned), is halved by every [`ReputationConfig::trust_halving_penalty`] points of
//! penalty, and drops to 0 on a ban.
//!
//! # Thresholds
//! - score < `graylist_threshold`: graylisted (its messages are ignored);
//! - a penalty that brings the score to `ban_threshold` or below: banned for
//!   `ban_base_ms * 2^(bans - 1)`, capped at `ban_max_ms`;
//! - [`Event::Equivocation`]: excluded for good (the epoch), with the evidence digest.
//!
//! With the defaults, a bad signature costs 10, the reward cap is 5 and the graylist
//! threshold is -10: one stray fault does not graylist a peer with a full reward, two within
//! a penalty half-life (30 min) do. A peer that relays 1% bad signatures at 1 message/s is
//! graylisted by its second bad signature, i.e. within 200 messages (tested in
//! `tests/scenario.rs`).
//!
//! # One function for every penalty
//! [`Reputation::record`] is the only way to change a score or status. It returns the
//! [`StatusChange`] when the status changed, so the caller can log and count every graylist,
//! ban and exclusion with its reason.
//!
//! # Bounds
//! At most [`ReputationConfig::max_peers`] tracked keys. A new key takes the place of the
//! least informative evictable one among [`EVICTION_SCAN_LIMIT`] examined (score near 0, low
//! trust, no ban history); banned and excluded keys are never evicted. If none of those
//! examined can go, the newcomer is not tracked: its budget is refused (its messages are
//! ignored) until a place frees. Exclusions are also kept in a separate table of at most
//! [`ReputationConfig::max_excluded`] keys, so evidence is never lost to the peer cap.
//!
//! # IO contract
//! Pure: `now_ms` is an argument of every call that depends on time; decay and trust are
//! computed lazily from the elapsed time, so nothing needs a timer. A clock going backwards
//! counts as no time passing.

use crate::error::ConfigError;
use crate::hash::{SeededMap, SeededState};
use byzgossip_crypto::{Digest, PublicKey};
use serde::{Deserialize, Serialize};

/// At most this many entries are examined to find one to evict, so admitting a new key costs
/// bounded work even when the table is full of protected (banned) keys.
pub const EVICTION_SCAN_LIMIT: usize = 256;
/// Among the evictable entries found, the least informative of the first this many goes.
pub const EVICTION_SAMPLE: usize = 16;
/// Default tracked-peer cap: far above a node's connection limit (tens to hundreds) plus the
/// committee; about 200 bytes each.
pub const DEFAULT_MAX_PEERS: usize = 4096;
/// Default cap on remembered exclusions: only committee members can be proven to equivocate,
/// and committees are far smaller.
pub const DEFAULT_MAX_EXCLUDED: usize = 1024;

/// A ban-history entry counts this much "information" when choosing what to evict, so keys
/// with past bans are the last evictable ones to go (their next ban must double).
const BAN_HISTORY_INFORMATION: f64 = 1_000.0;

/// Something a peer did. Penalties and rewards go to the forwarding peer, except
/// [`Event::Equivocation`], which goes to the signing origin (its signature proves it).
/// A duplicate is not an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Bytes that do not decode, or a header that breaks a stateless rule (network, kind,
    /// committee membership).
    Malformed,
    /// A body whose length or hash does not match its header.
    BadHash,
    /// A signature (or origin key) that does not verify.
    BadSignature,
    /// A timestamp outside the window; graded by how far (see
    /// [`ReputationConfig::outside_window_grace_ms`]).
    OutsideWindow {
        /// distance outside the window
        by_ms: u64,
    },
    /// More traffic than the peer's rate budget.
    Flood,
    /// The first copy of a message that was accepted (small reward).
    FirstDelivery,
    /// A Bracha vote that counted towards a delivery (small reward, fed by the node).
    UsefulVote,
    /// The origin signed two conflicting messages; `evidence` is the digest of the proof
    /// (defined by the bracha crate).
    Equivocation {
        /// digest of the evidence
        evidence: Digest,
    },
}

impl Event {
    /// A short fixed name for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadHash => "bad_hash",
            Self::BadSignature => "bad_signature",
            Self::OutsideWindow { .. } => "outside_window",
            Self::Flood => "flood",
            Self::FirstDelivery => "first_delivery",
            Self::UsefulVote => "useful_vote",
            Self::Equivocation { .. } => "equivocation",
        }
    }

    /// Whether the event lowers the score (rewards and equivocation do not count here;
    /// equivocation excludes directly).
    pub fn is_penalty(&self) -> bool {
        matches!(self, Self::Malformed | Self::BadHash | Self::BadSignature | Self::OutsideWindow { .. } | Self::Flood)
    }
}

/// Event weights (score points). Penalties are positive numbers subtracted from the score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventWeights {
    /// Undecodable or rule-breaking bytes: proof of a broken or hostile forwarder.
    pub malformed: f64,
    /// Body that does not match its header: the forwarder could have hashed it.
    pub bad_hash: f64,
    /// Signature that does not verify: honest forwarders verify before relaying.
    pub bad_signature: f64,
    /// Largest penalty for a timestamp outside the window (reached at
    /// `outside_window_grace_ms + outside_window_full_ms` outside).
    pub outside_window_max: f64,
    /// One message over the rate budget: small, so only sustained floods matter.
    pub flood: f64,
    /// First delivery of an accepted message.
    pub first_delivery: f64,
    /// A useful Bracha vote.
    pub useful_vote: f64,
}

impl Default for EventWeights {
    fn default() -> Self {
        Self {
            malformed: 10.0,
            bad_hash: 10.0,
            bad_signature: 10.0,
            outside_window_max: 5.0,
            flood: 0.5,
            first_delivery: 0.05,
            useful_vote: 0.1,
        }
    }
}

/// Token-bucket rate budgets; both the refill rate and the bucket size grow linearly with
/// trust from their base to their trusted value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetConfig {
    /// Refill per second at trust 0.
    pub base_rate_per_s: f64,
    /// Refill per second at trust 1.
    pub trusted_rate_per_s: f64,
    /// Bucket size at trust 0 (a new peer starts full).
    pub base_burst: f64,
    /// Bucket size at trust 1.
    pub trusted_burst: f64,
    /// Gossip an origin may sign per second at trust 0 (its own messages, whoever relays
    /// them). Charged only after the signature verified, so forgeries never spend an honest
    /// origin's budget; over it, honest nodes stop forwarding that origin's gossip, so relays
    /// are never charged for someone else's flood. Bracha messages are bounded by the Bracha
    /// window instead and are not charged here.
    pub origin_base_rate_per_s: f64,
    /// Origin refill per second at trust 1.
    pub origin_trusted_rate_per_s: f64,
    /// Origin bucket size at trust 0.
    pub origin_base_burst: f64,
    /// Origin bucket size at trust 1.
    pub origin_trusted_burst: f64,
    /// Sync requests a peer may send us per second at trust 0 (a digest costs 1, a value
    /// request [`SYNC_VALUE_COST`]). Charged before anything is read to answer; over it the
    /// request is refused and the peer penalised ([`Event::Flood`]). An honest peer sends one
    /// digest per sync interval (1 s) to one random peer, plus a value request now and then.
    #[serde(default = "default_sync_base_rate")]
    pub sync_base_rate_per_s: f64,
    /// Sync refill per second at trust 1.
    #[serde(default = "default_sync_trusted_rate")]
    pub sync_trusted_rate_per_s: f64,
    /// Sync bucket size at trust 0.
    #[serde(default = "default_sync_base_burst")]
    pub sync_base_burst: f64,
    /// Sync bucket size at trust 1.
    #[serde(default = "default_sync_trusted_burst")]
    pub sync_trusted_burst: f64,
}

/// What a sync value request costs from the sync budget (one in-memory lookup), against 1
/// for a digest (up to about a thousand store reads, bounded by the engine's `sync` module).
pub const SYNC_VALUE_COST: f64 = 0.25;

fn default_sync_base_rate() -> f64 {
    5.0
}
fn default_sync_trusted_rate() -> f64 {
    20.0
}
fn default_sync_base_burst() -> f64 {
    20.0
}
fn default_sync_trusted_burst() -> f64 {
    60.0
}

impl Default for BudgetConfig {
    fn default() -> Self {
        // The n = 16 testnet's ceiling is about 2,600 unique envelopes/s in total; a trusted
        // peer may deliver all of them first, a new one a fifth. One origin's own gossip gets
        // 100/s (1,000/s once trusted): a node's `publish` keeps its own rate under the base.
        Self {
            base_rate_per_s: 500.0,
            trusted_rate_per_s: 5_000.0,
            base_burst: 1_000.0,
            trusted_burst: 10_000.0,
            origin_base_rate_per_s: 100.0,
            origin_trusted_rate_per_s: 1_000.0,
            origin_base_burst: 300.0,
            origin_trusted_burst: 3_000.0,
            sync_base_rate_per_s: default_sync_base_rate(),
            sync_trusted_rate_per_s: default_sync_trusted_rate(),
            sync_base_burst: default_sync_base_burst(),
            sync_trusted_burst: default_sync_trusted_burst(),
        }
    }
}

/// Which of a key's token buckets (see [`BudgetConfig`]).
#[derive(Clone, Copy)]
enum Budget {
    /// Messages it forwards that reach the signature check.
    Forwarder,
    /// Gossip it signs.
    Origin,
    /// Sync requests it sends us.
    Sync,
}

/// A token bucket: refills at `rate` per second up to `burst`, then spends `cost`.
fn spend(tokens: &mut f64, at_ms: &mut u64, rate: f64, burst: f64, cost: f64, now_ms: u64) -> bool {
    let elapsed = now_ms.saturating_sub(*at_ms);
    *tokens = (*tokens + elapsed as f64 / 1000.0 * rate).min(burst);
    *at_ms = (*at_ms).max(now_ms);
    if cost.is_finite() && *tokens >= cost {
        *tokens -= cost.max(0.0);
        true
    } else {
        false
    }
}

/// Reputation parameters. The defaults are reasoned in the module docs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReputationConfig {
    /// Event weights.
    pub weights: EventWeights,
    /// Half-life of the penalty counter (30 min): long enough that faults at 1% of traffic add
    /// up, short enough that an honest peer with a transient bug recovers within hours.
    pub penalty_half_life_ms: u64,
    /// Half-life of the reward counter (10 min).
    pub reward_half_life_ms: u64,
    /// Cap on the reward counter and so on the score (5): good behaviour can offset one half
    /// of one bad signature, never a pattern of them.
    pub reward_cap: f64,
    /// Floor of the score (-100), and cap of the penalty counter (its negation), so a storm
    /// of faults decays back in bounded time.
    pub score_min: f64,
    /// Below this score a peer's messages are ignored (-10).
    pub graylist_threshold: f64,
    /// At or below this score after a penalty a peer is banned (-40).
    pub ban_threshold: f64,
    /// First ban period (10 min); doubles on each repeat.
    pub ban_base_ms: u64,
    /// Longest ban period (24 h).
    pub ban_max_ms: u64,
    /// Trust of a key never seen (0.1).
    pub initial_trust: f64,
    /// Half-life of the distance to full trust while in good standing (1 h).
    pub trust_rise_half_life_ms: u64,
    /// Penalty points that halve trust (5: one bad signature quarters it).
    pub trust_halving_penalty: f64,
    /// Distance outside the window that costs nothing (10 s): honest relays near the
    /// boundary and clock skew.
    pub outside_window_grace_ms: u64,
    /// Distance past the grace over which the penalty grows linearly to its maximum (10 min).
    pub outside_window_full_ms: u64,
    /// Rate budgets.
    pub budget: BudgetConfig,
    /// Cap on tracked keys.
    pub max_peers: usize,
    /// Cap on remembered exclusions.
    pub max_excluded: usize,
    /// Seed of the table's hasher (the node passes a random value).
    pub hash_seed: u64,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        Self {
            weights: EventWeights::default(),
            penalty_half_life_ms: 30 * 60 * 1000,
            reward_half_life_ms: 10 * 60 * 1000,
            reward_cap: 5.0,
            score_min: -100.0,
            graylist_threshold: -10.0,
            ban_threshold: -40.0,
            ban_base_ms: 10 * 60 * 1000,
            ban_max_ms: 24 * 60 * 60 * 1000,
            initial_trust: 0.1,
            trust_rise_half_life_ms: 60 * 60 * 1000,
            trust_halving_penalty: 5.0,
            outside_window_grace_ms: 10_000,
            outside_window_full_ms: 10 * 60 * 1000,
            budget: BudgetConfig::default(),
            max_peers: DEFAULT_MAX_PEERS,
            max_excluded: DEFAULT_MAX_EXCLUDED,
            hash_seed: 0,
        }
    }
}

impl ReputationConfig {
    /// Checks ranges and cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let w = &self.weights;
        for (field, value) in [
            ("weights.malformed", w.malformed),
            ("weights.bad_hash", w.bad_hash),
            ("weights.bad_signature", w.bad_signature),
            ("weights.outside_window_max", w.outside_window_max),
            ("weights.flood", w.flood),
            ("weights.first_delivery", w.first_delivery),
            ("weights.useful_vote", w.useful_vote),
            ("reward_cap", self.reward_cap),
            ("budget.base_rate_per_s", self.budget.base_rate_per_s),
            ("budget.base_burst", self.budget.base_burst),
            ("budget.sync_base_rate_per_s", self.budget.sync_base_rate_per_s),
            ("budget.sync_base_burst", self.budget.sync_base_burst),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(ConfigError::invalid(field, "must be finite and >= 0"));
            }
        }
        if !(self.budget.trusted_rate_per_s.is_finite() && self.budget.trusted_rate_per_s >= self.budget.base_rate_per_s) {
            return Err(ConfigError::invalid("budget.trusted_rate_per_s", "must be finite and >= base_rate_per_s"));
        }
        if !(self.budget.trusted_burst.is_finite() && self.budget.trusted_burst >= self.budget.base_burst) {
            return Err(ConfigError::invalid("budget.trusted_burst", "must be finite and >= base_burst"));
        }
        if !(self.budget.sync_trusted_rate_per_s.is_finite() && self.budget.sync_trusted_rate_per_s >= self.budget.sync_base_rate_per_s) {
            return Err(ConfigError::invalid("budget.sync_trusted_rate_per_s", "must be finite and >= sync_base_rate_per_s"));
        }
        if !(self.budget.sync_trusted_burst.is_finite() && self.budget.sync_trusted_burst >= self.budget.sync_base_burst) {
            return Err(ConfigError::invalid("budget.sync_trusted_burst", "must be finite and >= sync_base_burst"));
        }
        for (field, value) in [
            ("penalty_half_life_ms", self.penalty_half_life_ms),
            ("reward_half_life_ms", self.reward_half_life_ms),
            ("trust_rise_half_life_ms", self.trust_rise_half_life_ms),
            ("outside_window_full_ms", self.outside_window_full_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(field, "must be positive"));
            }
        }
        if !(self.score_min.is_finite() && self.score_min < 0.0) {
            return Err(ConfigError::invalid("score_min", "must be finite and negative"));
        }
        if !(self.graylist_threshold.is_finite() && self.graylist_threshold < 0.0) {
            return Err(ConfigError::invalid("graylist_threshold", "must be finite and negative (a new peer scores 0)"));
        }
        if !(self.ban_threshold.is_finite()
            && self.ban_threshold <= self.graylist_threshold
            && self.ban_threshold > self.score_min)
        {
            return Err(ConfigError::invalid("ban_threshold", "must be in (score_min, graylist_threshold]"));
        }
        if self.ban_base_ms == 0 || self.ban_max_ms < self.ban_base_ms {
            return Err(ConfigError::invalid("ban_max_ms", "need 0 < ban_base_ms <= ban_max_ms"));
        }
        if !(0.0..=1.0).contains(&self.initial_trust) {
            return Err(ConfigError::invalid("initial_trust", "must be in [0, 1]"));
        }
        if !(self.trust_halving_penalty.is_finite() && self.trust_halving_penalty > 0.0) {
            return Err(ConfigError::invalid("trust_halving_penalty", "must be finite and positive"));
        }
        if self.max_peers == 0 || self.max_peers > u32::MAX as usize {
            return Err(ConfigError::invalid("max_peers", "must be in 1..=u32::MAX"));
        }
        if self.max_excluded == 0 {
            return Err(ConfigError::invalid("max_excluded", "must be positive"));
        }
        Ok(())
    }

    /// The penalty (positive points) or reward of `event`; 0 for equivocation.
    pub fn weight(&self, event: &Event) -> f64 {
        let w = &self.weights;
        match event {
            Event::Malformed => w.malformed,
            Event::BadHash => w.bad_hash,
            Event::BadSignature => w.bad_signature,
            Event::OutsideWindow { by_ms } => {
                let past = by_ms.saturating_sub(self.outside_window_grace_ms) as f64;
                w.outside_window_max * (past / self.outside_window_full_ms as f64).min(1.0)
            }
            Event::Flood => w.flood,
            Event::FirstDelivery => w.first_delivery,
            Event::UsefulVote => w.useful_vote,
            Event::Equivocation { .. } => 0.0,
        }
    }

    /// Ban period for the `bans`-th ban (1-based): doubling from `ban_base_ms`, capped.
    pub fn ban_duration(&self, bans: u32) -> u64 {
        let doublings = bans.saturating_sub(1);
        if doublings >= 63 {
            return self.ban_max_ms;
        }
        self.ban_base_ms.saturating_mul(1u64 << doublings).min(self.ban_max_ms)
    }
}

/// Where a peer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PeerStatus {
    /// Messages are processed.
    Ok,
    /// Messages are ignored until the score recovers above the graylist threshold.
    Graylisted,
    /// Disconnect and refuse until `until_ms`.
    Banned {
        /// end of the ban
        until_ms: u64,
    },
    /// Excluded for the epoch on verified equivocation evidence.
    Excluded {
        /// digest of the evidence
        evidence: Digest,
    },
}

impl PeerStatus {
    /// A short fixed name for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Graylisted => "graylisted",
            Self::Banned { .. } => "banned",
            Self::Excluded { .. } => "excluded",
        }
    }
}

/// A status change caused by one [`Reputation::record`] call: what the node logs and counts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    /// The key whose status changed.
    pub peer: PublicKey,
    /// Status before the event.
    pub from: PeerStatus,
    /// Status after the event.
    pub to: PeerStatus,
    /// The event that caused it (the reason).
    pub event: Event,
    /// Score after the event.
    pub score: f64,
    /// Trust after the event.
    pub trust: f64,
    /// Bans so far (including this one if it is a ban).
    pub bans: u32,
    /// When it happened.
    pub at_ms: u64,
}

/// One peer in a [`ReputationSnapshot`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerSnapshot {
    /// The key.
    pub peer: PublicKey,
    /// Score at the snapshot time.
    pub score: f64,
    /// Trust at the snapshot time.
    pub trust: f64,
    /// The gossipsub application score ([`Reputation::app_score`]).
    pub app_score: f64,
    /// Status at the snapshot time.
    pub status: PeerStatus,
    /// Bans so far.
    pub bans: u32,
    /// Penalty events recorded.
    pub penalties: u64,
    /// Reward events recorded.
    pub rewards: u64,
    /// When the key was first tracked.
    pub first_seen_ms: u64,
}

/// Every tracked peer, for the HTTP API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReputationSnapshot {
    /// When it was taken.
    pub now_ms: u64,
    /// The tracked-peer cap.
    pub max_peers: usize,
    /// Peers, in table order.
    pub peers: Vec<PeerSnapshot>,
}

/// The state of one key.
#[derive(Clone, Copy, Debug)]
struct PeerState {
    key: PublicKey,
    reward: f64,
    penalty: f64,
    trust: f64,
    /// When `reward`, `penalty` and `trust` were last brought up to date.
    updated_ms: u64,
    tokens: f64,
    tokens_ms: u64,
    origin_tokens: f64,
    origin_tokens_ms: u64,
    sync_tokens: f64,
    sync_tokens_ms: u64,
    ban_until_ms: u64,
    bans: u32,
    excluded: Option<Digest>,
    penalties: u64,
    rewards: u64,
    first_seen_ms: u64,
}

fn decay(value: f64, elapsed_ms: u64, half_life_ms: u64) -> f64 {
    if elapsed_ms == 0 || value == 0.0 {
        return value;
    }
    value * (-(elapsed_ms as f64) / half_life_ms as f64).exp2()
}

impl PeerState {
    fn new(key: PublicKey, now_ms: u64, config: &ReputationConfig) -> Self {
        Self {
            key,
            reward: 0.0,
            penalty: 0.0,
            trust: config.initial_trust,
            updated_ms: now_ms,
            tokens: config.budget.base_burst + config.initial_trust * (config.budget.trusted_burst - config.budget.base_burst),
            tokens_ms: now_ms,
            origin_tokens: config.budget.origin_base_burst
                + config.initial_trust * (config.budget.origin_trusted_burst - config.budget.origin_base_burst),
            origin_tokens_ms: now_ms,
            sync_tokens: config.budget.sync_base_burst
                + config.initial_trust * (config.budget.sync_trusted_burst - config.budget.sync_base_burst),
            sync_tokens_ms: now_ms,
            ban_until_ms: 0,
            bans: 0,
            excluded: None,
            penalties: 0,
            rewards: 0,
            first_seen_ms: now_ms,
        }
    }

    fn score(&self, config: &ReputationConfig) -> f64 {
        (self.reward - self.penalty).clamp(config.score_min, config.reward_cap)
    }

    /// Brings counters and trust up to `now_ms` (no-op if the clock has not advanced).
    fn refresh(&mut self, now_ms: u64, config: &ReputationConfig) {
        let elapsed = now_ms.saturating_sub(self.updated_ms);
        if elapsed == 0 {
            return;
        }
        // Trust rises over the part of the interval spent out of a ban, if the score was in
        // good standing at the start of it (a lazy approximation: the score only decays
        // towards 0 in between).
        let good_from = self.updated_ms.max(self.ban_until_ms);
        if self.excluded.is_none() && self.score(config) >= 0.0 && good_from < now_ms {
            let good = now_ms - good_from;
            self.trust = 1.0 - decay(1.0 - self.trust, good, config.trust_rise_half_life_ms);
        }
        self.penalty = decay(self.penalty, elapsed, config.penalty_half_life_ms);
        self.reward = decay(self.reward, elapsed, config.reward_half_life_ms);
        self.updated_ms = now_ms;
    }

    fn status(&self, now_ms: u64, config: &ReputationConfig) -> PeerStatus {
        if let Some(evidence) = self.excluded {
            PeerStatus::Excluded { evidence }
        } else if now_ms < self.ban_until_ms {
            PeerStatus::Banned { until_ms: self.ban_until_ms }
        } else if self.score(config) < config.graylist_threshold {
            PeerStatus::Graylisted
        } else {
            PeerStatus::Ok
        }
    }

    fn at(&self, now_ms: u64, config: &ReputationConfig) -> PeerState {
        let mut copy = *self;
        copy.refresh(now_ms, config);
        copy
    }

    /// How much we would lose by forgetting this key; `None` if it must not be forgotten.
    fn information(&self, now_ms: u64, config: &ReputationConfig) -> Option<f64> {
        if self.excluded.is_some() || now_ms < self.ban_until_ms {
            return None;
        }
        let now = self.at(now_ms, config);
        Some(now.score(config).abs() + now.trust + BAN_HISTORY_INFORMATION * f64::from(now.bans))
    }
}

/// Per-peer scores, trust, bans and budgets (module docs).
#[derive(Debug)]
pub struct Reputation {
    config: ReputationConfig,
    peers: Vec<PeerState>,
    index: SeededMap<PublicKey, u32>,
    excluded: SeededMap<PublicKey, Digest>,
    /// Where the next eviction scan starts (a clock hand over `peers`).
    hand: usize,
}

impl Reputation {
    /// An empty table.
    pub fn new(config: ReputationConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            peers: Vec::new(),
            index: SeededMap::with_hasher(SeededState::new(config.hash_seed)),
            excluded: SeededMap::with_hasher(SeededState::new(config.hash_seed.rotate_left(29))),
            hand: 0,
            config,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ReputationConfig {
        &self.config
    }

    /// Records `event` for `peer` at `now_ms`: the one function through which every penalty,
    /// reward, ban and exclusion passes. Returns the status change it caused, if any. An
    /// event for a key that cannot be tracked (table full of protected keys) is dropped,
    /// except an exclusion, which has its own table.
    pub fn record(&mut self, peer: PublicKey, event: Event, now_ms: u64) -> Option<StatusChange> {
        if let Event::Equivocation { evidence } = event {
            return self.exclude(peer, evidence, now_ms, event);
        }
        let slot = self.slot_or_track(peer, now_ms)?;
        let config = &self.config;
        let state = self.peers.get_mut(slot)?;
        let from = state.status(now_ms, config);
        state.refresh(now_ms, config);
        let weight = config.weight(&event);
        if event.is_penalty() {
            if weight <= 0.0 {
                return None;
            }
            state.penalties += 1;
            state.penalty = (state.penalty + weight).min(-config.score_min);
            state.trust *= (-weight / config.trust_halving_penalty).exp2();
            let banned_now = now_ms < state.ban_until_ms;
            if state.excluded.is_none() && !banned_now && state.score(config) <= config.ban_threshold {
                state.bans = state.bans.saturating_add(1);
                state.ban_until_ms = now_ms.saturating_add(config.ban_duration(state.bans));
                state.trust = 0.0;
            }
        } else {
            state.rewards += 1;
            state.reward = (state.reward + weight).min(config.reward_cap);
        }
        let to = state.status(now_ms, config);
        (from != to).then(|| StatusChange {
            peer,
            from,
            to,
            event,
            score: state.score(config),
            trust: state.trust,
            bans: state.bans,
            at_ms: now_ms,
        })
    }

    /// Restores a ban record kept across a restart: `bans` so far and the end of the last
    /// one (`until_ms`, possibly past). The key is tracked with that history, so a ban still
    /// running blocks it until it ends and its next ban doubles from there; trust restarts
    /// at 0. A record never lowers what the table already holds. False if the key cannot be
    /// tracked (table full of protected keys) or the record holds no ban.
    pub fn restore_ban(&mut self, peer: PublicKey, bans: u32, until_ms: u64, now_ms: u64) -> bool {
        if bans == 0 {
            return false;
        }
        let Some(slot) = self.slot_or_track(peer, now_ms) else { return false };
        let Some(state) = self.peers.get_mut(slot) else { return false };
        state.bans = state.bans.max(bans);
        state.ban_until_ms = state.ban_until_ms.max(until_ms);
        state.trust = 0.0;
        true
    }

    /// Bans so far of `peer` (0 for an unknown key) and the end of its last ban.
    pub fn ban_record(&self, peer: &PublicKey) -> (u32, u64) {
        self.state(peer).map_or((0, 0), |s| (s.bans, s.ban_until_ms))
    }

    /// Spends `cost` from `peer`'s token bucket; false if the budget is exceeded or the key
    /// cannot be tracked. The caller records [`Event::Flood`] on false (through
    /// [`Reputation::record`], so the penalty is reported like any other).
    pub fn allow(&mut self, peer: PublicKey, cost: f64, now_ms: u64) -> bool {
        self.spend_budget(peer, Budget::Forwarder, cost, now_ms)
    }

    /// Spends `cost` from the budget of gossip that `origin` signs (a verified origin only);
    /// false if it is exceeded or the key cannot be tracked. The caller records
    /// [`Event::Flood`] against the origin on false.
    pub fn allow_origin(&mut self, origin: PublicKey, cost: f64, now_ms: u64) -> bool {
        self.spend_budget(origin, Budget::Origin, cost, now_ms)
    }

    /// Spends `cost` from the budget of sync requests `peer` sends us; false if it is
    /// exceeded or the key cannot be tracked. The caller refuses the request and records
    /// [`Event::Flood`] on false.
    pub fn allow_sync(&mut self, peer: PublicKey, cost: f64, now_ms: u64) -> bool {
        self.spend_budget(peer, Budget::Sync, cost, now_ms)
    }

    /// One token bucket of `key`, sized between its base and trusted values by the key's trust.
    fn spend_budget(&mut self, key: PublicKey, which: Budget, cost: f64, now_ms: u64) -> bool {
        let Some(slot) = self.slot_or_track(key, now_ms) else { return false };
        let config = &self.config;
        let Some(state) = self.peers.get_mut(slot) else { return false };
        state.refresh(now_ms, config);
        let b = &config.budget;
        let trust = state.trust;
        let by_trust = |base: f64, trusted: f64| base + trust * (trusted - base);
        let (rate, burst, tokens, at_ms) = match which {
            Budget::Forwarder => (
                by_trust(b.base_rate_per_s, b.trusted_rate_per_s),
                by_trust(b.base_burst, b.trusted_burst),
                &mut state.tokens,
                &mut state.tokens_ms,
            ),
            Budget::Origin => (
                by_trust(b.origin_base_rate_per_s, b.origin_trusted_rate_per_s),
                by_trust(b.origin_base_burst, b.origin_trusted_burst),
                &mut state.origin_tokens,
                &mut state.origin_tokens_ms,
            ),
            Budget::Sync => (
                by_trust(b.sync_base_rate_per_s, b.sync_trusted_rate_per_s),
                by_trust(b.sync_base_burst, b.sync_trusted_burst),
                &mut state.sync_tokens,
                &mut state.sync_tokens_ms,
            ),
        };
        spend(tokens, at_ms, rate, burst, cost, now_ms)
    }

    /// The score at `now_ms` (0 for an unknown key).
    pub fn score(&self, peer: &PublicKey, now_ms: u64) -> f64 {
        self.state(peer).map_or(0.0, |s| s.at(now_ms, &self.config).score(&self.config))
    }

    /// The trust at `now_ms` (`initial_trust` for an unknown key, 0 once excluded).
    pub fn trust(&self, peer: &PublicKey, now_ms: u64) -> f64 {
        if self.excluded.contains_key(peer) {
            return 0.0;
        }
        self.state(peer).map_or(self.config.initial_trust, |s| s.at(now_ms, &self.config).trust)
    }

    /// The status at `now_ms` (`Ok` for an unknown key).
    pub fn status(&self, peer: &PublicKey, now_ms: u64) -> PeerStatus {
        if let Some(evidence) = self.excluded.get(peer) {
            return PeerStatus::Excluded { evidence: *evidence };
        }
        self.state(peer).map_or(PeerStatus::Ok, |s| s.at(now_ms, &self.config).status(now_ms, &self.config))
    }

    /// The value for gossipsub's application-specific score (P5): the score plus the trust
    /// (so long good standing breaks ties), or `score_min` when banned or excluded. In
    /// `[score_min, reward_cap + 1]`; below `graylist_threshold + 1` means graylisted here,
    /// so the node sets gossipsub's weight and thresholds so that this range crosses them.
    pub fn app_score(&self, peer: &PublicKey, now_ms: u64) -> f64 {
        match self.status(peer, now_ms) {
            PeerStatus::Banned { .. } | PeerStatus::Excluded { .. } => self.config.score_min,
            PeerStatus::Ok | PeerStatus::Graylisted => self.score(peer, now_ms) + self.trust(peer, now_ms),
        }
    }

    /// How a key with no record yet stands (a peer connected that has sent nothing scored):
    /// initial trust, score 0, ok, first seen now. `None` for a tracked or excluded key (it is
    /// in [`Reputation::snapshot`]).
    pub fn snapshot_of_unknown(&self, peer: &PublicKey, now_ms: u64) -> Option<PeerSnapshot> {
        if self.state(peer).is_some() || self.excluded.contains_key(peer) {
            return None;
        }
        Some(PeerSnapshot {
            peer: *peer,
            score: self.score(peer, now_ms),
            trust: self.trust(peer, now_ms),
            app_score: self.app_score(peer, now_ms),
            status: self.status(peer, now_ms),
            bans: 0,
            penalties: 0,
            rewards: 0,
            first_seen_ms: now_ms,
        })
    }

    /// Every tracked key (and every exclusion), for the HTTP API.
    pub fn snapshot(&self, now_ms: u64) -> ReputationSnapshot {
        let config = &self.config;
        let mut peers: Vec<PeerSnapshot> = self
            .peers
            .iter()
            .map(|s| {
                let now = s.at(now_ms, config);
                PeerSnapshot {
                    peer: s.key,
                    score: now.score(config),
                    trust: self.trust(&s.key, now_ms),
                    app_score: self.app_score(&s.key, now_ms),
                    status: self.status(&s.key, now_ms),
                    bans: now.bans,
                    penalties: now.penalties,
                    rewards: now.rewards,
                    first_seen_ms: now.first_seen_ms,
                }
            })
            .collect();
        for (key, evidence) in &self.excluded {
            if !self.index.contains_key(key) {
                peers.push(PeerSnapshot {
                    peer: *key,
                    score: config.score_min,
                    trust: 0.0,
                    app_score: config.score_min,
                    status: PeerStatus::Excluded { evidence: *evidence },
                    bans: 0,
                    penalties: 0,
                    rewards: 0,
                    first_seen_ms: now_ms,
                });
            }
        }
        ReputationSnapshot { now_ms, max_peers: config.max_peers, peers }
    }

    /// Tracked keys (never above `max_peers`).
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Whether `peer` is tracked.
    pub fn is_tracked(&self, peer: &PublicKey) -> bool {
        self.index.contains_key(peer)
    }

    /// Remembered exclusions (never above `max_excluded`).
    pub fn excluded_len(&self) -> usize {
        self.excluded.len()
    }

    fn state(&self, peer: &PublicKey) -> Option<&PeerState> {
        self.index.get(peer).and_then(|slot| self.peers.get(*slot as usize))
    }

    fn exclude(&mut self, peer: PublicKey, evidence: Digest, now_ms: u64, event: Event) -> Option<StatusChange> {
        if self.excluded.contains_key(&peer) {
            return None;
        }
        if self.excluded.len() >= self.config.max_excluded {
            return None;
        }
        let from = self.status(&peer, now_ms);
        self.excluded.insert(peer, evidence);
        let mut bans = 0;
        if let Some(state) = self.index.get(&peer).and_then(|slot| self.peers.get_mut(*slot as usize)) {
            state.excluded = Some(evidence);
            state.trust = 0.0;
            bans = state.bans;
        }
        let to = PeerStatus::Excluded { evidence };
        Some(StatusChange { peer, from, to, event, score: self.score(&peer, now_ms), trust: 0.0, bans, at_ms: now_ms })
    }

    /// The slot of `peer`, tracking it (and evicting if full) when new.
    fn slot_or_track(&mut self, peer: PublicKey, now_ms: u64) -> Option<usize> {
        if let Some(slot) = self.index.get(&peer) {
            return Some(*slot as usize);
        }
        if self.peers.len() >= self.config.max_peers {
            self.evict_one(now_ms)?;
        }
        let mut state = PeerState::new(peer, now_ms, &self.config);
        if let Some(evidence) = self.excluded.get(&peer) {
            state.excluded = Some(*evidence);
            state.trust = 0.0;
        }
        self.peers.push(state);
        let slot = self.peers.len() - 1;
        // Fits: max_peers <= u32::MAX (validate).
        self.index.insert(peer, slot as u32);
        Some(slot)
    }

    /// Removes the least informative evictable key among those examined; None if none.
    fn evict_one(&mut self, now_ms: u64) -> Option<()> {
        let len = self.peers.len();
        if len == 0 {
            return None;
        }
        let mut best: Option<(usize, f64)> = None;
        let mut found = 0;
        for step in 0..len.min(EVICTION_SCAN_LIMIT) {
            let slot = (self.hand + step) % len;
            let Some(info) = self.peers.get(slot).and_then(|s| s.information(now_ms, &self.config)) else { continue };
            if best.is_none_or(|(_, b)| info < b) {
                best = Some((slot, info));
            }
            found += 1;
            if found >= EVICTION_SAMPLE {
                break;
            }
        }
        let (slot, _) = best?;
        let removed = self.peers.swap_remove(slot);
        self.index.remove(&removed.key);
        if let Some(moved) = self.peers.get(slot) {
            self.index.insert(moved.key, slot as u32);
        }
        self.hand = if self.peers.is_empty() { 0 } else { (slot + 1) % self.peers.len() };
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60 * 1000;
    const HOUR: u64 = 60 * MIN;
    const T0: u64 = 1_700_000_000_000;

    fn key(i: u32) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        PublicKey(bytes)
    }

    fn rep() -> Reputation {
        Reputation::new(ReputationConfig::default()).expect("valid")
    }

    #[test]
    fn unknown_key_is_neutral_with_low_trust() {
        let r = rep();
        assert_eq!(r.score(&key(1), T0), 0.0);
        assert_eq!(r.trust(&key(1), T0), 0.1);
        assert_eq!(r.status(&key(1), T0), PeerStatus::Ok);
        assert!(r.app_score(&key(1), T0) > 0.0);
    }

    #[test]
    fn one_fault_is_tolerated_two_graylist() {
        let mut r = rep();
        let p = key(1);
        for i in 0..200 {
            r.record(p, Event::FirstDelivery, T0 + i);
        }
        assert!((r.score(&p, T0 + 199) - 5.0).abs() < 1e-3, "reward is capped");
        assert_eq!(r.record(p, Event::BadSignature, T0 + 300), None);
        assert_eq!(r.status(&p, T0 + 300), PeerStatus::Ok);
        let change = r.record(p, Event::BadSignature, T0 + 400).expect("graylisted");
        assert_eq!((change.from, change.to, change.event), (PeerStatus::Ok, PeerStatus::Graylisted, Event::BadSignature));
        assert!(change.score < -10.0);
    }

    #[test]
    fn graylist_recovers_by_decay() {
        let mut r = rep();
        let p = key(1);
        r.record(p, Event::BadHash, T0);
        r.record(p, Event::BadHash, T0);
        assert_eq!(r.status(&p, T0), PeerStatus::Graylisted);
        // -20 halves every 30 min: above -10 after just over 30 min.
        assert_eq!(r.status(&p, T0 + 29 * MIN), PeerStatus::Graylisted);
        assert_eq!(r.status(&p, T0 + 31 * MIN), PeerStatus::Ok);
        let s = r.score(&p, T0 + 60 * MIN);
        assert!((s + 5.0).abs() < 1e-9, "{s}");
    }

    #[test]
    fn reward_decays_with_its_half_life() {
        let mut r = rep();
        let p = key(1);
        for _ in 0..10 {
            r.record(p, Event::UsefulVote, T0);
        }
        assert!((r.score(&p, T0) - 1.0).abs() < 1e-9);
        assert!((r.score(&p, T0 + 10 * MIN) - 0.5).abs() < 1e-9);
        assert!((r.score(&p, T0 + 20 * MIN) - 0.25).abs() < 1e-9);
    }

    #[test]
    fn ban_at_threshold_doubles_on_repeat_and_is_capped() {
        let mut r = rep();
        let p = key(7);
        let mut now = T0;
        let mut periods = Vec::new();
        for round in 0..12 {
            // Faults until banned; every change is reported.
            let mut banned = None;
            for _ in 0..20 {
                if let Some(change) = r.record(p, Event::Malformed, now)
                    && let PeerStatus::Banned { until_ms } = change.to
                {
                    assert_eq!(change.bans, round + 1);
                    banned = Some(until_ms);
                    break;
                }
            }
            let until = banned.expect("banned within 20 faults");
            periods.push(until - now);
            assert_eq!(r.status(&p, until - 1), PeerStatus::Banned { until_ms: until });
            assert_eq!(r.trust(&p, now), 0.0);
            // Faults during a ban do not extend it.
            assert_eq!(r.record(p, Event::Malformed, now + 1), None);
            now = until;
            assert_ne!(r.status(&p, now), PeerStatus::Banned { until_ms: until });
        }
        let base = 10 * MIN;
        assert_eq!(&periods[..5], &[base, 2 * base, 4 * base, 8 * base, 16 * base]);
        assert_eq!(periods[7], 128 * base);
        assert_eq!(periods[8], 24 * HOUR, "256 base periods exceed the cap");
        assert!(periods.iter().all(|p| *p <= 24 * HOUR));
        assert_eq!(ReputationConfig::default().ban_duration(u32::MAX), 24 * HOUR);
    }

    #[test]
    fn trust_rises_slowly_in_good_standing_and_falls_fast() {
        let mut r = rep();
        let p = key(3);
        r.record(p, Event::FirstDelivery, T0);
        let t1 = r.trust(&p, T0 + HOUR);
        assert!((t1 - 0.55).abs() < 1e-9, "{t1}");
        let t2 = r.trust(&p, T0 + 3 * HOUR);
        assert!((t2 - (1.0 - 0.9 / 8.0)).abs() < 1e-9, "{t2}");
        // One bad signature quarters it.
        r.record(p, Event::BadSignature, T0 + 3 * HOUR);
        assert!((r.trust(&p, T0 + 3 * HOUR) - t2 / 4.0).abs() < 1e-9);
        // While the score is negative, no rise.
        let low = r.trust(&p, T0 + 3 * HOUR);
        r.record(p, Event::FirstDelivery, T0 + 3 * HOUR + MIN);
        assert!((r.trust(&p, T0 + 3 * HOUR + MIN) - low).abs() < 1e-12);
        // Recovery: once the penalty decays below the reward, trust climbs again.
        for h in 4..12 {
            r.record(p, Event::FirstDelivery, T0 + h * HOUR);
        }
        assert!(r.trust(&p, T0 + 12 * HOUR) > 0.9);
    }

    #[test]
    fn outside_window_is_graded() {
        let c = ReputationConfig::default();
        assert_eq!(c.weight(&Event::OutsideWindow { by_ms: 0 }), 0.0);
        assert_eq!(c.weight(&Event::OutsideWindow { by_ms: 10_000 }), 0.0);
        assert!((c.weight(&Event::OutsideWindow { by_ms: 10_000 + 5 * MIN }) - 2.5).abs() < 1e-9);
        assert_eq!(c.weight(&Event::OutsideWindow { by_ms: u64::MAX }), 5.0);
        let mut r = rep();
        assert_eq!(r.record(key(1), Event::OutsideWindow { by_ms: 3_000 }, T0), None);
        assert_eq!(r.score(&key(1), T0), 0.0, "within the grace: no penalty");
    }

    #[test]
    fn a_restored_ban_blocks_until_its_end_and_the_next_one_doubles() {
        let mut r = Reputation::new(ReputationConfig { ban_base_ms: 10 * MIN, ..ReputationConfig::default() }).expect("valid");
        let p = key(7);
        assert!(!r.restore_ban(p, 0, T0 + MIN, T0), "a record without a ban restores nothing");
        assert!(r.restore_ban(p, 1, T0 + MIN, T0));
        assert_eq!(r.status(&p, T0), PeerStatus::Banned { until_ms: T0 + MIN });
        assert_eq!(r.trust(&p, T0), 0.0);
        assert_eq!(r.status(&p, T0 + MIN), PeerStatus::Ok, "readmitted when the stored ban ends");
        assert_eq!(r.ban_record(&p), (1, T0 + MIN));
        // The next offence is the second ban: 20 minutes.
        let mut t = T0 + MIN;
        let until = loop {
            t += 1;
            if let Some(StatusChange { to: PeerStatus::Banned { until_ms }, bans, .. }) = r.record(p, Event::BadSignature, t) {
                assert_eq!(bans, 2);
                break until_ms;
            }
        };
        assert_eq!(until - t, 20 * MIN);
        // A stale record never shortens what the table holds.
        r.restore_ban(p, 1, T0, t);
        assert_eq!(r.ban_record(&p), (2, until));
    }

    #[test]
    fn equivocation_excludes_for_good_with_evidence() {
        let mut r = rep();
        let p = key(2);
        let evidence = Digest([5; 32]);
        let change = r.record(p, Event::Equivocation { evidence }, T0).expect("excluded");
        assert_eq!(change.to, PeerStatus::Excluded { evidence });
        assert_eq!(r.status(&p, T0 + 1000 * HOUR), PeerStatus::Excluded { evidence });
        assert_eq!(r.app_score(&p, T0), -100.0);
        assert_eq!(r.trust(&p, T0), 0.0);
        assert_eq!(r.record(p, Event::Equivocation { evidence: Digest([6; 32]) }, T0), None);
        assert_eq!(r.record(p, Event::Malformed, T0), None, "no change from excluded");
    }

    #[test]
    fn token_bucket_grows_with_trust() {
        let mut r = rep();
        let p = key(1);
        // Trust 0.1: burst 1000 + 0.1 * 9000 = 1900.
        let spent = (0..5000).take_while(|_| r.allow(p, 1.0, T0)).count();
        assert_eq!(spent, 1900);
        // Refill at 500 + 0.1 * 4500 = 950/s.
        let refilled = (0..5000).take_while(|_| r.allow(p, 1.0, T0 + 1000)).count();
        assert!((949..=951).contains(&refilled), "{refilled}");
        // A long-trusted peer gets a bigger bucket.
        let q = key(2);
        r.record(q, Event::FirstDelivery, T0);
        let later = T0 + 10 * HOUR;
        let trusted = (0..20_000).take_while(|_| r.allow(q, 1.0, later)).count();
        assert!(trusted > 9_900, "{trusted}");
        assert!(!r.allow(q, f64::NAN, later));
    }

    #[test]
    fn tracked_peer_cap_evicts_neutral_never_banned() {
        let config = ReputationConfig { max_peers: 8, ..ReputationConfig::default() };
        let mut r = Reputation::new(config).expect("valid");
        // Four banned, two graylisted, two neutral.
        for i in 0..4 {
            for _ in 0..5 {
                r.record(key(i), Event::BadSignature, T0);
            }
            assert!(matches!(r.status(&key(i), T0), PeerStatus::Banned { .. }));
        }
        for i in 4..6 {
            r.record(key(i), Event::BadSignature, T0);
            r.record(key(i), Event::BadSignature, T0);
        }
        for i in 6..8 {
            assert!(r.allow(key(i), 1.0, T0));
        }
        assert_eq!(r.len(), 8);
        // Newcomers push out neutral ones, then graylisted ones, never banned ones.
        for i in 100..120 {
            assert!(r.allow(key(i), 1.0, T0), "newcomer {i}");
            assert_eq!(r.len(), 8);
            for b in 0..4 {
                assert!(r.is_tracked(&key(b)), "banned {b} kept");
            }
        }
        // A table of only banned keys refuses newcomers instead.
        let config = ReputationConfig { max_peers: 2, ..ReputationConfig::default() };
        let mut r = Reputation::new(config).expect("valid");
        for i in 0..2 {
            for _ in 0..5 {
                r.record(key(i), Event::BadSignature, T0);
            }
        }
        assert!(!r.allow(key(9), 1.0, T0));
        assert_eq!(r.record(key(9), Event::BadSignature, T0), None);
        assert_eq!(r.len(), 2);
        // Once the bans end, the keys become evictable again.
        assert!(r.allow(key(9), 1.0, T0 + 11 * MIN));
    }

    #[test]
    fn exclusion_table_is_bounded() {
        let config = ReputationConfig { max_excluded: 3, max_peers: 2, ..ReputationConfig::default() };
        let mut r = Reputation::new(config).expect("valid");
        for i in 0..5 {
            let change = r.record(key(i), Event::Equivocation { evidence: Digest([i as u8; 32]) }, T0);
            assert_eq!(change.is_some(), i < 3);
        }
        assert_eq!(r.excluded_len(), 3);
        assert_eq!(r.snapshot(T0).peers.len(), 3);
    }

    #[test]
    fn snapshot_serializes() {
        let mut r = rep();
        r.record(key(1), Event::FirstDelivery, T0);
        r.record(key(2), Event::Equivocation { evidence: Digest([1; 32]) }, T0);
        let json = serde_json::to_string(&r.snapshot(T0)).expect("json");
        assert!(json.contains("\"status\":\"excluded\""), "{json}");
        let back: ReputationSnapshot = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.peers.len(), 2);
    }

    #[test]
    fn clock_going_back_is_no_time() {
        let mut r = rep();
        let p = key(1);
        r.record(p, Event::BadSignature, T0);
        assert_eq!(r.score(&p, T0 - HOUR), -10.0);
        assert!(r.allow(p, 1.0, T0 - HOUR));
        assert_eq!(r.record(p, Event::FirstDelivery, 0), None);
    }

    #[test]
    fn config_validation() {
        assert!(ReputationConfig::default().validate().is_ok());
        let d = ReputationConfig::default;
        let bad = [
            ReputationConfig { graylist_threshold: 0.0, ..d() },
            ReputationConfig { ban_threshold: -5.0, ..d() },
            ReputationConfig { ban_threshold: -200.0, ..d() },
            ReputationConfig { score_min: f64::NAN, ..d() },
            ReputationConfig { initial_trust: 1.5, ..d() },
            ReputationConfig { penalty_half_life_ms: 0, ..d() },
            ReputationConfig { ban_max_ms: 1, ..d() },
            ReputationConfig { max_peers: 0, ..d() },
            ReputationConfig { weights: EventWeights { flood: -1.0, ..EventWeights::default() }, ..d() },
            ReputationConfig { budget: BudgetConfig { trusted_burst: 1.0, ..BudgetConfig::default() }, ..d() },
        ];
        for config in bad {
            assert!(Reputation::new(config).is_err());
        }
    }
}
