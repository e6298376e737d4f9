//! Admission: what the node calls for every received envelope (DESIGN.md section 4).
//!
//! # Order (cheapest first)
//! 1. size-limited decode (framing, version, kind, body length and hash);
//! 2. stateless checks: network, committee membership (Bracha kinds always need a committee
//!    origin; gossip only under [`GossipPolicy::Committee`]), origin not excluded;
//! 3. time window (gossip: both sides; sync: future side only);
//! 4. seen-set check (duplicates are dropped before any signature work, at no cost to anyone;
//!    an id whose pool or origin share is full is dropped after step 5, so it is still
//!    charged to the budgets);
//! 5. reputation gate: a banned or excluded forwarder is ignored, and a graylisted one too,
//!    but for a copy of a message signed by another key in good standing; rate budget;
//! 6. origin key (cached, committee keys pinned) and signature;
//! 7. insert into the seen-set (only now: a forged copy cannot poison it);
//! 8. reward the forwarder for the first delivery.
//!
//! Steps 1-6a are [`Admission::precheck`]; the signature can then be verified anywhere (a
//! worker pool, in batches: [`verify_pending`]); [`Admission::complete`] does 7-8.
//! [`Admission::admit`] and [`Admission::admit_batch`] do all of it.
//!
//! # Verdicts and gossipsub
//! [`Verdict`] maps 1:1 to gossipsub's `MessageAcceptance` (see [`Acceptance`]):
//! `Accept` -> `Accept` (deliver and forward), `Ignore` -> `Ignore` (drop, do not forward, no
//! gossipsub penalty: duplicates, window, graylisted, overloaded), `Reject` -> `Reject` (drop
//! and let gossipsub penalise the forwarder: a fault it could have checked). Some ignores
//! still record a penalty here (a timestamp far outside the window, a flood); the node learns
//! of every status change through [`Admission::poll_status_change`].
//!
//! # Blame
//! A rejection blames the forwarding peer ([`Blame::Forwarder`]). The claimed origin is never
//! blamed for an envelope whose signature did not verify, so forgeries cannot frame an honest
//! key. Only equivocation, proven by two verified signatures and detected by the bracha
//! crate, blames the origin; the node reports it with [`Admission::record`].
//!
//! # Sync
//! Envelopes fetched by anti-entropy go through [`Admission::precheck_sync`] /
//! [`Admission::admit_sync`]: every check above applies except the `max_age` side of the
//! window, so an old but certified Bracha message stays admittable. Signature, seen-set,
//! future limit and reputation all still apply.
//!
//! # Bounds
//! Decode is capped at [`AdmissionConfig::max_message_len`]; the replay guard, the reputation
//! table and the key cache have their own caps; [`Admission::admit_batch`] verifies at most
//! [`AdmissionConfig::max_batch`] signatures per batch call; at most
//! [`AdmissionConfig::status_outbox_capacity`] status changes wait for the node (oldest dropped
//! and counted).

use crate::error::ConfigError;
use crate::replay::{ReplayConfig, ReplayGuard, ReplayOutcome, WindowMode};
use crate::reputation::{Event, PeerStatus, Reputation, ReputationConfig, ReputationSnapshot, StatusChange};
use byzgossip_crypto::codec::{self, MAX_ENVELOPE_LEN};
use byzgossip_crypto::{
    Committee, DecodeError, Envelope, GossipPolicy, KeyCache, KeyError, Kind, MessageId, NetworkId, ParsedKey,
    PublicKey, VerifiedEnvelope, VerifyError, verify_batch,
};
use std::collections::{HashSet, VecDeque};

/// Default decode limit: 256 KiB, far above gossip messages and Bracha values and a quarter of
/// the codec's hard 1 MiB ceiling, so one peer cannot make us hash megabytes per message.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 256 * 1024;
/// Default cap on cached non-committee keys (open gossip): each saves a 5 us decompression.
pub const DEFAULT_KEY_CACHE_CAPACITY: usize = 4096;
/// Default cap on signatures per batch verification: past a few dozen, batching gains little
/// and a failed batch (re-verified one by one) costs more.
pub const DEFAULT_MAX_BATCH: usize = 64;
/// Default cap on undrained status changes.
pub const DEFAULT_STATUS_OUTBOX_CAPACITY: usize = 1024;

/// Admission limits and the configurations of its parts.
#[derive(Clone, Debug, PartialEq)]
pub struct AdmissionConfig {
    /// Decode limit in bytes (at most the codec's 1 MiB).
    pub max_message_len: usize,
    /// Non-committee keys kept decompressed.
    pub key_cache_capacity: usize,
    /// Budget tokens one envelope costs (spent only by envelopes that reach the signature).
    pub message_cost: f64,
    /// Most signatures verified together in [`Admission::admit_batch`].
    pub max_batch: usize,
    /// Most status changes waiting for [`Admission::poll_status_change`].
    pub status_outbox_capacity: usize,
    /// Window and seen-set.
    pub replay: ReplayConfig,
    /// Scores, thresholds, budgets.
    pub reputation: ReputationConfig,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            key_cache_capacity: DEFAULT_KEY_CACHE_CAPACITY,
            message_cost: 1.0,
            max_batch: DEFAULT_MAX_BATCH,
            status_outbox_capacity: DEFAULT_STATUS_OUTBOX_CAPACITY,
            replay: ReplayConfig::default(),
            reputation: ReputationConfig::default(),
        }
    }
}

impl AdmissionConfig {
    /// Checks this config and its parts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_message_len == 0 || self.max_message_len > MAX_ENVELOPE_LEN {
            return Err(ConfigError::invalid("max_message_len", "must be in 1..=codec::MAX_ENVELOPE_LEN"));
        }
        if !(self.message_cost.is_finite() && self.message_cost >= 0.0) {
            return Err(ConfigError::invalid("message_cost", "must be finite and >= 0"));
        }
        if self.max_batch == 0 {
            return Err(ConfigError::invalid("max_batch", "must be positive"));
        }
        if self.status_outbox_capacity == 0 {
            return Err(ConfigError::invalid("status_outbox_capacity", "must be positive"));
        }
        self.replay.validate()?;
        self.reputation.validate()
    }
}

/// Gossipsub's three validation results, mirrored without depending on libp2p.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Acceptance {
    /// `MessageAcceptance::Accept`: deliver and forward.
    Accept,
    /// `MessageAcceptance::Ignore`: drop, no penalty in gossipsub.
    Ignore,
    /// `MessageAcceptance::Reject`: drop and penalise the propagation source.
    Reject,
}

/// Who is penalised for a rejection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Blame {
    /// The peer that sent us the bytes: it could have checked them.
    Forwarder(PublicKey),
    /// The signing origin: only for verified equivocation.
    Origin(PublicKey),
}

/// Why an envelope was dropped without blame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IgnoreReason {
    /// Already admitted (normal in gossip; costs nobody anything).
    Duplicate,
    /// Older than the window.
    TooOld {
        /// how far outside
        by_ms: u64,
    },
    /// Newer than the window.
    TooNew {
        /// how far outside
        by_ms: u64,
    },
    /// The seen-set or this origin's share of it is full.
    SeenSetFull,
    /// The origin is excluded for equivocation.
    OriginExcluded,
    /// The forwarder is graylisted.
    Graylisted,
    /// The forwarder is banned.
    Banned,
    /// The forwarder is excluded for equivocation.
    ForwarderExcluded,
    /// The forwarder exceeded its rate budget (or cannot be tracked: table full of banned
    /// keys).
    RateLimited,
    /// The (verified) origin signed more gossip than its budget allows; the message is
    /// remembered as seen but neither delivered nor forwarded.
    OriginRateLimited,
    /// Gossip whose origin this node has graylisted or banned (a convicted flooder): dropped
    /// before its signature is checked, so it is never forwarded. Otherwise each node would
    /// forward the part of a flood its own budget of that origin lets through, a different
    /// part at each node, and every node would receive and check the union: a flood that
    /// grows with the number of nodes.
    OriginConvicted,
    /// [`Admission::complete`] got a verification result for another envelope (a caller bug).
    VerificationMismatch,
}

impl IgnoreReason {
    /// A short fixed name for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::TooOld { .. } => "too_old",
            Self::TooNew { .. } => "too_new",
            Self::SeenSetFull => "seen_set_full",
            Self::OriginExcluded => "origin_excluded",
            Self::Graylisted => "graylisted",
            Self::Banned => "banned",
            Self::ForwarderExcluded => "forwarder_excluded",
            Self::RateLimited => "rate_limited",
            Self::OriginRateLimited => "origin_rate_limited",
            Self::OriginConvicted => "origin_convicted",
            Self::VerificationMismatch => "verification_mismatch",
        }
    }
}

/// Why an envelope was refused with blame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The bytes do not decode (label: the decode error's own label).
    Decode(DecodeError),
    /// Signed for another network.
    WrongNetwork,
    /// A Bracha kind (or gossip under the committee policy) from a non-member origin.
    NotCommitteeOrigin(Kind),
    /// The origin key is not usable.
    BadOriginKey(KeyError),
    /// The signature does not verify.
    BadSignature,
}

impl RejectReason {
    /// A short fixed name for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Decode(e) => e.label(),
            Self::WrongNetwork => "wrong_network",
            Self::NotCommitteeOrigin(_) => "not_committee_origin",
            Self::BadOriginKey(_) => "bad_origin_key",
            Self::BadSignature => "bad_signature",
        }
    }

    /// The reputation event it costs the forwarder.
    pub fn event(&self) -> Event {
        match self {
            Self::Decode(DecodeError::BodyHashMismatch | DecodeError::BodyLengthMismatch { .. }) => Event::BadHash,
            Self::Decode(_) | Self::WrongNetwork | Self::NotCommitteeOrigin(_) => Event::Malformed,
            Self::BadOriginKey(_) | Self::BadSignature => Event::BadSignature,
        }
    }
}

/// The result of admitting one envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid, fresh, signature verified: deliver and forward.
    Accept(VerifiedEnvelope),
    /// Dropped without blame.
    Ignore(IgnoreReason),
    /// Refused; `Blame` names the key that was penalised.
    Reject(RejectReason, Blame),
}

impl Verdict {
    /// The gossipsub validation result.
    pub fn acceptance(&self) -> Acceptance {
        match self {
            Self::Accept(_) => Acceptance::Accept,
            Self::Ignore(_) => Acceptance::Ignore,
            Self::Reject(..) => Acceptance::Reject,
        }
    }

    /// A short fixed name for metrics and logs ("accept" or the reason's label).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Accept(_) => "accept",
            Self::Ignore(reason) => reason.label(),
            Self::Reject(reason, _) => reason.label(),
        }
    }

    /// The accepted envelope, if any.
    pub fn accepted(&self) -> Option<&VerifiedEnvelope> {
        match self {
            Self::Accept(envelope) => Some(envelope),
            _ => None,
        }
    }
}

/// An envelope that passed every check before the signature. Verify it with
/// [`Pending::verify`] or [`verify_pending`] (anywhere, e.g. a worker pool: it is `Send`),
/// then hand the result to [`Admission::complete`].
#[derive(Clone, Debug)]
pub struct Pending {
    from: PublicKey,
    envelope: Envelope,
    id: MessageId,
    key: ParsedKey,
    network: NetworkId,
    mode: WindowMode,
}

impl Pending {
    /// The forwarding peer.
    pub fn from(&self) -> PublicKey {
        self.from
    }

    /// The decoded, not yet verified envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Its message id.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// The origin's decompressed key.
    pub fn key(&self) -> &ParsedKey {
        &self.key
    }

    /// Gossip or sync.
    pub fn mode(&self) -> WindowMode {
        self.mode
    }

    /// Verifies the signature alone (`verify_strict` with the cached key).
    pub fn verify(&self) -> Result<VerifiedEnvelope, VerifyError> {
        self.envelope.clone().verify_with_key(&self.network, &self.key.verifying)
    }
}

/// Verifies pending envelopes, one result per input in order: single `verify_strict` for one,
/// [`byzgossip_crypto::verify_batch`] (same acceptance rule) for more. `keys` is any key
/// cache, e.g. a worker's own `Committee::key_cache`.
pub fn verify_pending(pending: &[Pending], network: &NetworkId, keys: &mut KeyCache) -> Vec<Result<VerifiedEnvelope, VerifyError>> {
    match pending {
        [] => Vec::new(),
        [one] => vec![one.verify()],
        many => verify_batch(many.iter().map(|p| p.envelope.clone()).collect(), network, keys),
    }
}

/// The admission pipeline (module docs).
#[derive(Debug)]
pub struct Admission {
    config: AdmissionConfig,
    network: NetworkId,
    committee: Committee,
    policy: GossipPolicy,
    keys: KeyCache,
    guard: ReplayGuard,
    reputation: Reputation,
    outbox: VecDeque<StatusChange>,
    dropped_changes: u64,
}

impl Admission {
    /// A pipeline for `network`, its committee and gossip policy.
    pub fn new(
        config: AdmissionConfig,
        network: NetworkId,
        committee: Committee,
        policy: GossipPolicy,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            keys: committee.key_cache(config.key_cache_capacity),
            guard: ReplayGuard::with_committee(config.replay.clone(), committee.members().iter().copied())?,
            reputation: Reputation::new(config.reputation.clone())?,
            outbox: VecDeque::new(),
            dropped_changes: 0,
            config,
            network,
            committee,
            policy,
        })
    }

    /// Every check before the signature, for gossip. `Err` is the final verdict.
    #[allow(clippy::result_large_err, reason = "the Err is the final verdict, returned once per message")]
    pub fn precheck(&mut self, from: PublicKey, bytes: &[u8], now_ms: u64) -> Result<Pending, Verdict> {
        self.precheck_mode(from, bytes, now_ms, WindowMode::Gossip)
    }

    /// [`Admission::precheck`] for an envelope fetched by sync (no `max_age` limit).
    #[allow(clippy::result_large_err, reason = "the Err is the final verdict, returned once per message")]
    pub fn precheck_sync(&mut self, from: PublicKey, bytes: &[u8], now_ms: u64) -> Result<Pending, Verdict> {
        self.precheck_mode(from, bytes, now_ms, WindowMode::Sync)
    }

    /// Finishes admission once the signature of `pending` has been checked.
    pub fn complete(&mut self, pending: Pending, verified: Result<VerifiedEnvelope, VerifyError>, now_ms: u64) -> Verdict {
        self.finish(pending.from, pending.id, pending.mode, verified, now_ms)
    }

    /// Verifies a pending envelope by value (no copy of the body) and completes it.
    fn verify_and_complete(&mut self, pending: Pending, now_ms: u64) -> Verdict {
        let Pending { from, envelope, id, key, network, mode } = pending;
        let verified = envelope.verify_with_key(&network, &key.verifying);
        self.finish(from, id, mode, verified, now_ms)
    }

    fn finish(
        &mut self,
        from: PublicKey,
        id: MessageId,
        mode: WindowMode,
        verified: Result<VerifiedEnvelope, VerifyError>,
        now_ms: u64,
    ) -> Verdict {
        let envelope = match verified {
            Ok(envelope) => envelope,
            Err(error) => {
                let reason = match error {
                    VerifyError::Decode(e) => RejectReason::Decode(e),
                    VerifyError::WrongNetwork => RejectReason::WrongNetwork,
                    VerifyError::BadOrigin(e) => RejectReason::BadOriginKey(e),
                    VerifyError::BadSignature => RejectReason::BadSignature,
                };
                return self.reject(from, reason, now_ms);
            }
        };
        if envelope.id() != id {
            return Verdict::Ignore(IgnoreReason::VerificationMismatch);
        }
        match self.guard.insert_verified(&envelope, now_ms, mode) {
            ReplayOutcome::Fresh => {
                // The origin's own gossip budget, charged now that its signature is proven
                // (unless it came straight from the origin: charged at precheck, step 5b).
                // The id stays in the seen-set, so other copies are dropped cheaply.
                let origin = envelope.origin();
                if envelope.header().kind == Kind::Gossip
                    && from != origin
                    && !self.reputation.allow_origin(origin, self.config.message_cost, now_ms)
                {
                    self.record_internal(origin, Event::Flood, now_ms);
                    return Verdict::Ignore(IgnoreReason::OriginRateLimited);
                }
                self.record_internal(from, Event::FirstDelivery, now_ms);
                Verdict::Accept(envelope)
            }
            // Time passed or another copy won while verifying: nobody's fault.
            other => Verdict::Ignore(ignore_for(other)),
        }
    }

    /// Precheck, one `verify_strict`, complete.
    pub fn admit(&mut self, from: PublicKey, bytes: &[u8], now_ms: u64) -> Verdict {
        match self.precheck(from, bytes, now_ms) {
            Ok(pending) => self.verify_and_complete(pending, now_ms),
            Err(verdict) => verdict,
        }
    }

    /// [`Admission::admit`] for an envelope fetched by sync.
    pub fn admit_sync(&mut self, from: PublicKey, bytes: &[u8], now_ms: u64) -> Verdict {
        match self.precheck_sync(from, bytes, now_ms) {
            Ok(pending) => self.verify_and_complete(pending, now_ms),
            Err(verdict) => verdict,
        }
    }

    /// Admits many gossip envelopes, verifying signatures in batches of at most `max_batch`.
    /// Copies of one id within the batch are verified once (later copies are duplicates).
    /// One verdict per input, in order.
    pub fn admit_batch(&mut self, messages: &[(PublicKey, &[u8])], now_ms: u64) -> Vec<Verdict> {
        let mut verdicts: Vec<Option<Verdict>> = Vec::with_capacity(messages.len());
        let mut pending: Vec<(usize, Pending)> = Vec::new();
        let mut in_batch: HashSet<MessageId> = HashSet::new();
        for (i, (from, bytes)) in messages.iter().enumerate() {
            match self.precheck(*from, bytes, now_ms) {
                Ok(p) if !in_batch.insert(p.id) => verdicts.push(Some(Verdict::Ignore(IgnoreReason::Duplicate))),
                Ok(p) => {
                    verdicts.push(None);
                    pending.push((i, p));
                }
                Err(verdict) => verdicts.push(Some(verdict)),
            }
        }
        while !pending.is_empty() {
            let rest = pending.split_off(pending.len().min(self.config.max_batch));
            let (slots, batch): (Vec<usize>, Vec<Pending>) = std::mem::replace(&mut pending, rest).into_iter().unzip();
            let results = verify_pending(&batch, &self.network, &mut self.keys);
            for ((i, p), result) in slots.into_iter().zip(batch).zip(results) {
                let verdict = self.complete(p, result, now_ms);
                if let Some(slot) = verdicts.get_mut(i) {
                    *slot = Some(verdict);
                }
            }
        }
        verdicts.into_iter().map(|v| v.unwrap_or(Verdict::Ignore(IgnoreReason::VerificationMismatch))).collect()
    }

    /// Charges a sync request from `peer` (cost 1 for a digest, [`SYNC_VALUE_COST`] for a
    /// value) before anything is read to answer it. False, with the reason, if it must be
    /// refused: the peer is graylisted, banned or excluded (no penalty: it already pays), or
    /// over its sync budget (penalised with [`Event::Flood`], so a peer that floods us with
    /// requests is graylisted, then banned).
    ///
    /// [`SYNC_VALUE_COST`]: crate::SYNC_VALUE_COST
    pub fn allow_sync(&mut self, peer: PublicKey, cost: f64, now_ms: u64) -> Result<(), SyncRefusal> {
        if self.reputation.status(&peer, now_ms) != PeerStatus::Ok {
            return Err(SyncRefusal::Status);
        }
        if !self.reputation.allow_sync(peer, cost, now_ms) {
            self.record_internal(peer, Event::Flood, now_ms);
            return Err(SyncRefusal::OverBudget);
        }
        Ok(())
    }

    /// Verifies pending envelopes with this pipeline's key cache (see [`verify_pending`]).
    pub fn verify_pending(&mut self, pending: &[Pending]) -> Vec<Result<VerifiedEnvelope, VerifyError>> {
        verify_pending(pending, &self.network, &mut self.keys)
    }

    /// Records an event the node observed outside admission ([`Event::UsefulVote`] from
    /// bracha, [`Event::Equivocation`] with the evidence digest, ...). Returns the status
    /// change directly (it is not queued).
    pub fn record(&mut self, peer: PublicKey, event: Event, now_ms: u64) -> Option<StatusChange> {
        self.reputation.record(peer, event, now_ms)
    }

    /// Restores a ban record kept across a restart ([`Reputation::restore_ban`]).
    pub fn restore_ban(&mut self, peer: PublicKey, bans: u32, until_ms: u64, now_ms: u64) -> bool {
        self.reputation.restore_ban(peer, bans, until_ms, now_ms)
    }

    /// Remembers the id of gossip admitted before a restart until its stored expiry
    /// ([`ReplayGuard::restore`]).
    pub fn restore_seen(&mut self, id: MessageId, origin: PublicKey, expires_at_ms: u64, now_ms: u64) -> bool {
        self.guard.restore(id, origin, expires_at_ms, now_ms)
    }

    /// When the id of `envelope`, admitted now under `mode`, leaves the seen-set.
    pub fn seen_expiry(&self, timestamp_ms: u64, now_ms: u64, mode: WindowMode) -> u64 {
        self.guard.expiry_of(timestamp_ms, now_ms, mode)
    }

    /// The next status change caused inside admission (graylist, ban, recovery), oldest
    /// first. The node drains this after each call to log and count them.
    pub fn poll_status_change(&mut self) -> Option<StatusChange> {
        self.outbox.pop_front()
    }

    /// Status changes dropped because the outbox was full.
    pub fn dropped_status_changes(&self) -> u64 {
        self.dropped_changes
    }

    /// The reputation table (scores, status, app score, snapshot).
    pub fn reputation(&self) -> &Reputation {
        &self.reputation
    }

    /// The replay guard.
    pub fn replay_guard(&self) -> &ReplayGuard {
        &self.guard
    }

    /// A snapshot of every tracked peer.
    pub fn snapshot(&self, now_ms: u64) -> ReputationSnapshot {
        self.reputation.snapshot(now_ms)
    }

    /// The network this pipeline admits for.
    pub fn network(&self) -> &NetworkId {
        &self.network
    }

    /// The committee.
    pub fn committee(&self) -> &Committee {
        &self.committee
    }

    /// The configuration in force.
    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    #[allow(clippy::result_large_err, reason = "the Err is the final verdict, returned once per message")]
    fn precheck_mode(&mut self, from: PublicKey, bytes: &[u8], now_ms: u64, mode: WindowMode) -> Result<Pending, Verdict> {
        // 1. Decode with limits.
        let envelope = match codec::decode_envelope(bytes, self.config.max_message_len) {
            Ok(envelope) => envelope,
            Err(e) => return Err(self.reject(from, RejectReason::Decode(e), now_ms)),
        };
        // 2. Stateless checks.
        let header = *envelope.header();
        if envelope.check_network(&self.network).is_err() {
            return Err(self.reject(from, RejectReason::WrongNetwork, now_ms));
        }
        let needs_member = match header.kind {
            Kind::BrachaSend | Kind::BrachaEcho | Kind::BrachaReady | Kind::Evidence | Kind::Certified => true,
            Kind::Gossip => self.policy == GossipPolicy::Committee,
        };
        if needs_member && !self.committee.contains(&header.origin) {
            return Err(self.reject(from, RejectReason::NotCommitteeOrigin(header.kind), now_ms));
        }
        if matches!(self.reputation.status(&header.origin, now_ms), PeerStatus::Excluded { .. }) {
            return Err(Verdict::Ignore(IgnoreReason::OriginExcluded));
        }
        // 3-4. Window, then seen-set. A full share is answered only after the budgets below
        // are charged: a flooder that has filled its share must go on paying for what it
        // sends, or it would flood for free once full.
        let id = envelope.id();
        self.guard.expire(now_ms);
        let share_full = match self.guard.check_mode(&id, &header, now_ms, mode) {
            ReplayOutcome::Fresh => false,
            ReplayOutcome::OverCapacity(_) => true,
            outcome @ (ReplayOutcome::TooOld { by_ms } | ReplayOutcome::TooNew { by_ms }) => {
                self.record_internal(from, Event::OutsideWindow { by_ms }, now_ms);
                return Err(Verdict::Ignore(ignore_for(outcome)));
            }
            other => return Err(Verdict::Ignore(ignore_for(other))),
        };
        // 5. Reputation gate. The rate budget comes before the graylist, so a graylisted
        // peer that keeps flooding goes on paying penalties until it is banned (and
        // disconnected) instead of being ignored forever at a cost to us.
        let status = self.reputation.status(&from, now_ms);
        match status {
            PeerStatus::Ok | PeerStatus::Graylisted => {}
            PeerStatus::Banned { .. } => return Err(Verdict::Ignore(IgnoreReason::Banned)),
            PeerStatus::Excluded { .. } => return Err(Verdict::Ignore(IgnoreReason::ForwarderExcluded)),
        }
        if !self.reputation.allow(from, self.config.message_cost, now_ms) {
            self.record_internal(from, Event::Flood, now_ms);
            return Err(Verdict::Ignore(IgnoreReason::RateLimited));
        }
        // 5b. Gossip straight from its origin (the forwarder is the signer, authenticated by
        // the transport, so nobody else can spend this budget) is charged to the origin
        // budget now, before any signature work. Charged only after verification, a flood
        // faster than this node can verify would mostly be dropped unverified from a full
        // queue, never charged, and never convicted, while it still cost us the decode.
        if header.kind == Kind::Gossip
            && from == header.origin
            && !self.reputation.allow_origin(from, self.config.message_cost, now_ms)
        {
            self.record_internal(from, Event::Flood, now_ms);
            return Err(Verdict::Ignore(IgnoreReason::OriginRateLimited));
        }
        if share_full {
            return Err(Verdict::Ignore(IgnoreReason::SeenSetFull));
        }
        // A graylisted forwarder's own messages are ignored, and what it relays of keys not
        // in good standing. What it relays of a key in good standing is admitted (checked,
        // within its budget): ignoring that copy leaves its id in gossipsub's duplicate
        // cache, so every honest copy arriving after it is dropped unseen, and a graylisted
        // relay that front-runs a member's SEND censors it (the simulator's sync-flood at
        // n = 16, seed 4: a SEND relayed first by a graylisted member was never delivered).
        if status == PeerStatus::Graylisted
            && (header.origin == from || self.reputation.status(&header.origin, now_ms) != PeerStatus::Ok)
        {
            return Err(Verdict::Ignore(IgnoreReason::Graylisted));
        }
        // 5c. Gossip of a convicted origin, after the budgets above are charged (a direct
        // flooder goes on paying until it is banned).
        if header.kind == Kind::Gossip
            && matches!(self.reputation.status(&header.origin, now_ms), PeerStatus::Graylisted | PeerStatus::Banned { .. })
        {
            return Err(Verdict::Ignore(IgnoreReason::OriginConvicted));
        }
        // 6a. The origin key (cached; committee keys pinned).
        let key = match self.keys.get(&header.origin) {
            Ok(key) => key,
            Err(e) => return Err(self.reject(from, RejectReason::BadOriginKey(e), now_ms)),
        };
        Ok(Pending { from, envelope, id, key, network: self.network, mode })
    }

    fn reject(&mut self, from: PublicKey, reason: RejectReason, now_ms: u64) -> Verdict {
        self.record_internal(from, reason.event(), now_ms);
        Verdict::Reject(reason, Blame::Forwarder(from))
    }

    fn record_internal(&mut self, peer: PublicKey, event: Event, now_ms: u64) {
        if let Some(change) = self.reputation.record(peer, event, now_ms) {
            if self.outbox.len() >= self.config.status_outbox_capacity {
                self.outbox.pop_front();
                self.dropped_changes += 1;
            }
            self.outbox.push_back(change);
        }
    }
}

/// Why a sync request was refused ([`Admission::allow_sync`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncRefusal {
    /// The peer is graylisted, banned or excluded.
    Status,
    /// The peer is over its sync budget (penalised).
    OverBudget,
}

impl SyncRefusal {
    /// A short fixed name for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Status => "refused_status",
            Self::OverBudget => "refused_over_budget",
        }
    }
}

fn ignore_for(outcome: ReplayOutcome) -> IgnoreReason {
    match outcome {
        ReplayOutcome::Duplicate | ReplayOutcome::Fresh => IgnoreReason::Duplicate,
        ReplayOutcome::TooOld { by_ms } => IgnoreReason::TooOld { by_ms },
        ReplayOutcome::TooNew { by_ms } => IgnoreReason::TooNew { by_ms },
        ReplayOutcome::OverCapacity(_) => IgnoreReason::SeenSetFull,
    }
}
