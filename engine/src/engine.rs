//! The engine: every protocol decision of a node, as a sans-IO state machine.
//!
//! Inputs are method calls that take `now_ms` (a message from a peer on a topic, a finished
//! signature check, a sync request or response, a committed batch, a connection change, a
//! timer, an application command); outputs are polled with [`Engine::poll`], and
//! [`Engine::poll_timeout`] says when to call [`Engine::handle_timeout`] next (quinn-proto's
//! shape). The engine reads no clock, spawns nothing, does no IO and draws randomness only
//! from the seed in its config, so the same inputs always give the same outputs: the
//! simulator runs it in virtual time and the node runs it on tokio, unchanged.
//!
//! # Data path of a received message
//! `handle_message` -> `Admission::precheck` (decode, stateless checks, window, seen-set,
//! reputation gate, rate budget) -> topic/kind rule -> [`Output::Verify`] (bounded per
//! [`Line`]; a full line answers `Ignore` at once) -> `handle_verified` ->
//! `Admission::complete` -> [`Output::Validation`] -> Bracha or gossip delivery.
//!
//! # Durability
//! Writes go into one [`Batch`] per poll (group commit); the outputs that must not happen
//! before them (own SEND/ECHO/READY publishes, deliveries, gossip publishes whose seq was
//! reserved) are held until [`Engine::handle_committed`]. A broadcast's seq and its SEND are
//! in the same batch, so a seq is never reserved without its SEND.

use crate::blocks::Blocks;
use crate::budget::PublishBudget;
use crate::gossip::{GossipBody, HeldSeqs, RECENT_GOSSIP_ENTRIES, RecentGossip, Wants};
use crate::output::{Delivered, GossipMessage, Metric, Output, PeerAction};
use crate::peer::Peer;
use crate::recovery::SeqRecovery;
use crate::redial::Redial;
use crate::relay::relays_direct;
use crate::retransmit::{RETRANSMIT_BACKOFF_QUEUE, Retransmit};
use crate::liveness::{Pings, QuorumHealth, STALL_MS};
use crate::slow::SlowPeers;
use crate::store::{
    Appended, Batch, Committed, FIRST_SEQ, KeptGossip, MAX_PRUNED_PER_BATCH, MAX_STORED_EXCLUSIONS, OwnMessage, Recovered, SeqStream,
    StoredBan, StoredDelivery, StoredExclusion, StoredGossipId,
};
use crate::sync::{
    GossipMark, MAX_DIGEST_GAPS, MAX_DIGEST_ORIGINS, MAX_SYNC_EVIDENCE, MAX_SYNC_ITEMS, OriginMark, SYNC_RESPONSE_BUDGET, ServePlan, SyncRequest, SyncResponse, SyncedDelivery,
};
use crate::observer::{CertifiedBody, CertifiedLog, OBSERVER_WINDOW_FACTOR, Position};
use crate::topics::{Topics, check_topic_name};
use crate::verify::{Done, Job, Line, Origin, Outcome, Work};
use byzgossip_bracha::{Bracha, Certificate, Evidence, EvidenceError, FaultKind, InstanceId, Message, Step};
use byzgossip_crypto::codec::{self, MAX_ENVELOPE_LEN};
use byzgossip_crypto::{
    Committee, Digest, Envelope, Genesis, GossipPolicy, Keypair, Kind, MessageId, NetworkId, PublicKey, VerifiedEnvelope,
};
use byzgossip_reputation::{
    Acceptance, Admission, AdmissionConfig, Event, IgnoreReason, PeerSnapshot, PeerStatus, StatusChange, Verdict, WindowMode,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// The Bracha line of verification holds this many times `validation_queue` jobs: dropping
/// a vote costs a retransmission round, dropping gossip costs little.
pub const BRACHA_QUEUE_FACTOR: usize = 4;
/// Most instances tracked for latency (first sight to delivery); when full, entries older
/// than [`LATENCY_FORGET_MS`] are dropped (instances of a Byzantine origin never complete).
pub const MAX_TRACKED_LATENCY: usize = 8192;
/// Age after which a tracked instance may be forgotten when the table is full.
pub const LATENCY_FORGET_MS: u64 = 60_000;
/// Most outstanding sync requests.
pub const MAX_SYNC_IN_FLIGHT: usize = 64;
/// Most serving plans handed to the driver and not yet reported done
/// ([`Engine::handle_sync_served`]): each may read up to a thousand stored deliveries, so at
/// most this many run at once whatever the number of requesters; beyond, requests are refused
/// (`refused_busy`) and the requester asks again at its next sync round.
pub const MAX_SYNC_SERVING: usize = 8;
/// Most [`Output::Persist`] batches handed to the driver and not yet committed. Beyond it,
/// writes coalesce into the next batch, which leaves when a commit returns: a slow disk makes
/// batches larger (group commit), never the driver's queue of batches longer.
pub const MAX_BATCHES_IN_FLIGHT: usize = 4;

/// Everything an engine needs to start.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The network's genesis (committee, f, policy).
    pub genesis: Genesis,
    /// This node's key.
    pub keypair: Keypair,
    /// Admission limits, windows, reputation.
    pub admission: AdmissionConfig,
    /// Bracha window, retention and value limits.
    pub bracha: byzgossip_bracha::Config,
    /// Application gossip topics subscribed at start.
    pub topics: Vec<String>,
    /// How often to tick Bracha, retransmission, reputation, bans and redials (ms).
    pub tick_interval_ms: u64,
    /// How often to send a sync digest to a random connected peer (ms).
    pub sync_interval_ms: u64,
    /// Bound of the gossip verification line; the Bracha line holds
    /// [`BRACHA_QUEUE_FACTOR`] times as many.
    pub validation_queue: usize,
    /// Delay before redialling a bootstrap peer that dropped (ms); doubles up to 30 s.
    pub redial_backoff_ms: u64,
    /// Peers to keep connected to (redialled with backoff when they drop).
    pub bootstrap: Vec<Peer>,
    /// Seed of the engine's only randomness (which peer to sync with).
    pub seed: u64,
    /// How long deliveries (values, certificates, the own votes of their instances) are kept
    /// (ms); 0 keeps them forever. Pruned every [`PRUNE_INTERVAL_MS`], in pages of
    /// [`MAX_PRUNED_PER_BATCH`]. A pruned delivery still counts as delivered (its cursor and
    /// watermark stay); an application reading the log more than this far behind misses it.
    pub retention_ms: u64,
    /// How long a member starting with a fresh store waits for its peers to tell it its own
    /// delivered instances before it hands out broadcast seqs (ms); 0: don't wait. Only a
    /// member with bootstrap peers waits (`crate::recovery`; default in the node:
    /// [`crate::recovery::DEFAULT_SEQ_RECOVERY_TIMEOUT_MS`]).
    pub seq_recovery_timeout_ms: u64,
}

/// How often the engine asks the store to prune deliveries older than the retention.
pub const PRUNE_INTERVAL_MS: u64 = 10_000;

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The configuration is not usable.
    #[error("configuration: {0}")]
    Config(String),
    /// Only committee members broadcast (and, under the committee policy, publish).
    #[error("this node is not a committee member")]
    NotAMember,
    /// The command is not valid (too large, bad topic, ...).
    #[error("{0}")]
    Refused(String),
    /// Backpressure: the command is valid but must wait; retry shortly.
    #[error("{0}")]
    Busy(String),
    /// Backpressure: this member started with a fresh store and is still asking its peers
    /// for its own delivered instances, so that it never reuses a seq (`crate::recovery`);
    /// retry shortly (the wait is bounded by `seq_recovery_timeout_ms`).
    #[error("recovering this node's next broadcast seq from its peers (its store is new); retry shortly")]
    RecoveringSeq,
}

/// One peer as this node sees it.
#[derive(Clone, Debug)]
pub struct PeerView {
    /// The peer.
    pub peer: Peer,
    /// Reputation state (score, trust, status).
    pub reputation: PeerSnapshot,
    /// Whether a connection is open now.
    pub connected: bool,
    /// Committee index, if a member.
    pub member: Option<usize>,
    /// The last successful ping round trip (ms).
    pub ping_rtt_ms: Option<u64>,
    /// Pings failed since the last success or message from the peer.
    pub ping_failures: u32,
    /// Whether the peer is suspected (`liveness::SUSPECT_AFTER_FAILURES` failed pings).
    pub suspected: bool,
}

/// A summary of the engine's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineStatus {
    /// Committee index, if a member.
    pub member: Option<usize>,
    /// Committee size.
    pub n: usize,
    /// Fault bound.
    pub f: usize,
    /// Peers connected now.
    pub connected_peers: usize,
    /// Last delivery cursor.
    pub last_cursor: u64,
    /// Bracha instances open now.
    pub open_instances: usize,
    /// Messages waiting for verification.
    pub validation_queue: usize,
    /// Own messages waiting to be retransmitted.
    pub retransmitting: usize,
    /// Peers blocked at the transport now.
    pub blocked_peers: usize,
    /// Whether the committee can make progress as far as this node can tell
    /// ([`crate::liveness`]).
    pub quorum: QuorumHealth,
}

/// An output held until the batch it depends on is committed.
#[derive(Debug)]
enum Gated {
    /// An own Bracha message, recorded as `own[index]` of the batch.
    Bracha { index: usize, instance: InstanceId, kind: Kind, envelope: Envelope },
    /// An own gossip message whose seq the batch reserves.
    Gossip { topic: String, envelope: Envelope },
    /// A delivery, appended as `deliveries[index]` of the batch.
    Deliver { index: usize, delivered: Delivered },
    /// A broadcast whose seq and SEND the batch makes durable.
    Broadcast { instance: InstanceId },
    /// A gossip message for the application, whose id the batch makes durable (so that a
    /// replay after a restart, even after a crash, is still a duplicate).
    GossipDeliver(GossipMessage),
}

/// What an outbound sync request was for.
#[derive(Clone, Copy, Debug)]
enum SyncPurpose {
    Digest,
    Value { instance: InstanceId },
    /// Recovery of this member's next broadcast seq.
    Latest,
}

/// First-sight-to-delivery latency of instances, and its smoothed value.
#[derive(Default)]
struct Latency {
    first_seen: BTreeMap<InstanceId, u64>,
    ewma_ms: u64,
}

impl Latency {
    fn seen(&mut self, instance: InstanceId, now_ms: u64) {
        if self.first_seen.len() >= MAX_TRACKED_LATENCY {
            self.first_seen.retain(|_, at| now_ms.saturating_sub(*at) < LATENCY_FORGET_MS);
        }
        if self.first_seen.len() < MAX_TRACKED_LATENCY {
            self.first_seen.entry(instance).or_insert(now_ms);
        }
    }

    fn delivered(&mut self, instance: &InstanceId, now_ms: u64) -> Option<u64> {
        let start = self.first_seen.remove(instance)?;
        let latency = now_ms.saturating_sub(start);
        // Smoothed with weight 1/8 per sample.
        self.ewma_ms = (self.ewma_ms * 7 + latency) / 8;
        Some(latency)
    }
}

/// The node's protocol engine. See the module docs.
pub struct Engine {
    network: NetworkId,
    committee: Arc<Committee>,
    keypair: Keypair,
    me: PublicKey,
    member: Option<usize>,
    policy: GossipPolicy,
    topics: Topics,
    admission: Admission,
    bracha: Option<Bracha>,
    /// Outside the committee (observers): what was delivered on verified certificates
    /// (module `observer`). Exactly one of `bracha` and `certified` is set.
    certified: Option<CertifiedLog>,
    max_message_len: usize,
    max_value_len: usize,
    subscribed: BTreeSet<String>,
    recent_gossip: RecentGossip,
    /// When this node last heard from each committee member: a message it sent or relayed,
    /// a ping it answered, its connection coming up (at most the committee). A member that
    /// reconnects after a silence longer than a first retransmission delay was cut off
    /// ([`Engine::handle_connected`]).
    member_heard_ms: BTreeMap<PublicKey, u64>,
    /// Which gossip seqs of each origin this node holds: the gaps its digests ask for.
    held_gossip: HeldSeqs,
    connected: BTreeSet<Peer>,
    /// Connected peers with an ed25519 key outside the committee (observers, foreign
    /// subscribers): while there is one, this node forwards every accepted message.
    outsiders: usize,
    pings: Pings,
    /// Whether progress was possible at the last tick (`None` before the first).
    progress_possible: Option<bool>,
    /// The time of the last tick, for [`Engine::status`] (which takes no clock).
    now_hint_ms: u64,
    blocks: Blocks,
    redial: Redial,
    slow: SlowPeers,
    retransmit: Retransmit,
    latency: Latency,
    in_flight_bracha: usize,
    in_flight_gossip: usize,
    validation_queue: usize,
    next_broadcast_seq: u64,
    next_gossip_seq: u64,
    last_cursor: u64,
    batch: Batch,
    gated: Vec<Gated>,
    next_batch_id: u64,
    awaiting: VecDeque<(u64, Vec<Gated>)>,
    sync_requests: BTreeMap<u64, SyncPurpose>,
    /// Tokens of serving plans the driver has not reported done (at most [`MAX_SYNC_SERVING`]).
    serving: BTreeSet<u64>,
    next_request_id: u64,
    outputs: VecDeque<Output>,
    tick_ms: u64,
    sync_ms: u64,
    next_tick_ms: u64,
    next_sync_ms: u64,
    retention_ms: u64,
    next_prune_ms: u64,
    rng: ChaCha20Rng,
    publish_budget: PublishBudget,
    recovery: SeqRecovery,
    /// The store had no own SEND at start: own instances delivered here from certificates
    /// (not broadcast in this life) get a re-signed SEND of their value stored, so that a
    /// restart never takes their seqs for lost ones (module `recovery`).
    lost_own_sends: bool,
    /// The first seq this engine broadcast, if any.
    first_own_seq: Option<u64>,
    /// Every own seq below it is certified delivered (learned from peers); while the own
    /// low watermark is below it, the recovery wait goes on (the window fills by sync).
    own_floor: u64,
    /// Verified equivocation evidence per excluded member, kept for sync (module docs of
    /// `sync`): one per member, so at most the committee's size (and [`MAX_STORED_EXCLUSIONS`]).
    evidence: BTreeMap<PublicKey, Vec<u8>>,
    /// The batch in flight that carries only gossip ids, if any: at most one at a time.
    gossip_only_in_flight: Option<u64>,
}

/// Gossip ids collected alone (no other write in the batch) wait while another batch of
/// only gossip ids is being committed, up to this many: gossip then costs at most one commit
/// in flight (group commit) instead of a commit, an fsync, per delivered message, and never
/// more than one commit queued ahead of the Bracha votes gated on the store.
pub const MAX_HELD_GOSSIP_IDS: usize = 4096;

impl Engine {
    /// Starts an engine from its config and what the driver recovered from its store:
    /// restores watermarks and own votes (a restarted node never votes differently) and fills
    /// broadcast seqs reserved before a crash whose SEND was never stored (with an empty
    /// value, so the origin's window never stalls on a gap).
    pub fn new(config: EngineConfig, recovered: Recovered, now_ms: u64) -> Result<Engine, EngineError> {
        let cfg = |e: &dyn std::fmt::Display| EngineError::Config(e.to_string());
        if config.tick_interval_ms == 0 || config.sync_interval_ms == 0 {
            return Err(EngineError::Config("tick and sync intervals must be positive".into()));
        }
        let committee = config.genesis.committee().map_err(|e| cfg(&e))?;
        let network = config.genesis.network_id();
        let me = config.keypair.public();
        let member = committee.index_of(&me);
        let admission = Admission::new(config.admission.clone(), network, committee.clone(), config.genesis.policy)
            .map_err(|e| cfg(&e))?;
        let bracha = match member {
            Some(_) => Some(Bracha::new(committee.clone(), config.keypair.clone(), network, config.bracha.clone()).map_err(|e| cfg(&e))?),
            None => None,
        };
        let certified = member.is_none().then(|| {
            CertifiedLog::new(committee.members(), FIRST_SEQ, config.bracha.window.saturating_mul(OBSERVER_WINDOW_FACTOR))
        });
        for topic in &config.topics {
            check_topic_name(topic).map_err(EngineError::Refused)?;
        }
        let topics = Topics::new(&network);
        // A member with nothing of its own stored may have lost its store: wait for peers
        // (module `recovery` says who waits and for how long).
        let fresh = recovered.next_broadcast_seq == FIRST_SEQ
            && !recovered.own.iter().any(|m| m.kind == Kind::BrachaSend && m.instance_origin == me);
        let recovery = if member.is_some()
            && fresh
            && committee.n() > 1
            && config.seq_recovery_timeout_ms > 0
            && !config.bootstrap.is_empty()
        {
            SeqRecovery::wait(now_ms, config.seq_recovery_timeout_ms, committee.n() - 1 - committee.f())
        } else {
            SeqRecovery::Done
        };
        let mut engine = Engine {
            network,
            committee: Arc::new(committee),
            keypair: config.keypair.clone(),
            me,
            member,
            policy: config.genesis.policy,
            topics,
            admission,
            bracha,
            certified,
            max_message_len: config.admission.max_message_len,
            max_value_len: config.bracha.max_value_len,
            subscribed: BTreeSet::new(),
            recent_gossip: RecentGossip::default(),
            member_heard_ms: BTreeMap::new(),
            held_gossip: HeldSeqs::default(),
            connected: BTreeSet::new(),
            outsiders: 0,
            pings: Pings::default(),
            progress_possible: None,
            now_hint_ms: now_ms,
            blocks: Blocks::default(),
            redial: Redial::new(config.bootstrap.clone(), config.redial_backoff_ms),
            slow: SlowPeers::default(),
            retransmit: Retransmit::default(),
            latency: Latency::default(),
            in_flight_bracha: 0,
            in_flight_gossip: 0,
            validation_queue: config.validation_queue.max(1),
            next_broadcast_seq: recovered.next_broadcast_seq,
            next_gossip_seq: recovered.next_gossip_seq,
            last_cursor: recovered.last_cursor,
            batch: Batch::default(),
            gated: Vec::new(),
            next_batch_id: 1,
            awaiting: VecDeque::new(),
            sync_requests: BTreeMap::new(),
            serving: BTreeSet::new(),
            next_request_id: 1,
            outputs: VecDeque::new(),
            tick_ms: config.tick_interval_ms,
            sync_ms: config.sync_interval_ms,
            next_tick_ms: now_ms + config.tick_interval_ms,
            next_sync_ms: now_ms + config.sync_interval_ms,
            retention_ms: config.retention_ms,
            next_prune_ms: now_ms,
            rng: ChaCha20Rng::seed_from_u64(config.seed),
            publish_budget: PublishBudget::new(&config.admission.reputation.budget, now_ms),
            recovery,
            lost_own_sends: fresh,
            first_own_seq: None,
            own_floor: FIRST_SEQ,
            evidence: BTreeMap::new(),
            gossip_only_in_flight: None,
        };
        // Members take part in Bracha; observers listen to the certified deliveries only.
        let protocol_topic = if engine.member.is_some() { engine.topics.bracha() } else { engine.topics.certified() };
        engine.outputs.push_back(Output::Subscribe { topic: protocol_topic });
        for topic in &config.topics {
            engine.subscribe(topic)?;
        }
        engine.restore_sanctions(&recovered, now_ms);
        engine.restore(recovered, now_ms)?;
        // Restored bans and exclusions are blocked before the first connection is up.
        engine.reconcile_blocks(now_ms);
        Ok(engine)
    }

    /// Restores what a restart must not forget about peers (bans with their count, so that a
    /// repeat still doubles; exclusions with their evidence, which sync offers again) and the
    /// ids of gossip delivered within the replay window (a replay after the restart is a
    /// duplicate). The store is this node's own, written only with what it verified, so
    /// nothing is checked again (like the own votes). An exclusion row whose evidence does not
    /// decode or names another signer is skipped (counted as `evidence_unreadable`).
    fn restore_sanctions(&mut self, recovered: &Recovered, now_ms: u64) {
        for ban in &recovered.bans {
            self.admission.restore_ban(ban.peer, ban.bans, ban.until_ms, now_ms);
        }
        for exclusion in &recovered.exclusions {
            match Evidence::decode(&exclusion.evidence, MAX_ENVELOPE_LEN) {
                Ok(evidence) if evidence.offender() == exclusion.member && self.committee.contains(&exclusion.member) => {
                    let _ = self.admission.record(exclusion.member, Event::Equivocation { evidence: evidence.digest() }, now_ms);
                    if self.evidence.len() < MAX_STORED_EXCLUSIONS {
                        self.evidence.insert(exclusion.member, exclusion.evidence.clone());
                    }
                }
                _ => self.metric(Metric::Sync { kind: "evidence_unreadable" }),
            }
        }
        for g in &recovered.gossip {
            self.admission.restore_seen(MessageId(g.id), g.origin, g.expires_at_ms, now_ms);
        }
        // Gossip kept for sync, oldest first (within an origin the buffer evicts its oldest,
        // so replaying in timestamp order rebuilds its choice): served to gap requests again, and its seqs held, so this node asks only for what it
        // lacks. What left the live window is forgotten from the store.
        let oldest = self.oldest_served_gossip_ms(now_ms);
        let mut kept: Vec<&KeptGossip> = recovered.kept_gossip.iter().collect();
        kept.sort_by_key(|k| (k.timestamp_ms, k.origin, k.seq));
        for k in kept {
            if k.timestamp_ms >= oldest {
                self.keep_gossip(k.origin, k.seq, k.timestamp_ms, k.envelope.clone(), false);
                self.held_gossip.insert(k.origin, k.seq, now_ms);
            } else {
                self.batch.forget_kept_gossip.push((k.origin, k.seq));
            }
        }
    }

    /// Keeps a gossip envelope for sync in the recent-gossip buffer and, if `store`, in the
    /// store too, mirroring what the buffer evicts ([`KeptGossip`]; the store applies a
    /// batch's forgets after its writes, so a row written and evicted within one batch is
    /// gone after it).
    fn keep_gossip(&mut self, origin: PublicKey, seq: u64, timestamp_ms: u64, envelope: Vec<u8>, store: bool) {
        let row = store.then(|| KeptGossip { origin, seq, timestamp_ms, envelope: envelope.clone() });
        let (kept, evicted) = self.recent_gossip.push(origin, seq, timestamp_ms, envelope);
        self.batch.forget_kept_gossip.extend(evicted);
        if let (true, Some(row)) = (kept, row) {
            self.batch.kept_gossip.push(row);
        }
        // While commits wait (a slow store), the batch grows: drop the rows it both writes
        // and forgets, so it holds at most about one buffer's worth of either.
        if self.batch.kept_gossip.len() + self.batch.forget_kept_gossip.len() > 2 * RECENT_GOSSIP_ENTRIES {
            let forgotten: HashSet<(PublicKey, u64)> = self.batch.forget_kept_gossip.iter().copied().collect();
            let mut written = HashSet::new();
            self.batch.kept_gossip.retain(|k| {
                let gone = forgotten.contains(&(k.origin, k.seq));
                if gone {
                    written.insert((k.origin, k.seq));
                }
                !gone
            });
            self.batch.forget_kept_gossip.retain(|key| !written.contains(key));
        }
    }

    fn restore(&mut self, recovered: Recovered, now_ms: u64) -> Result<(), EngineError> {
        if let Some(log) = self.certified.as_mut() {
            for mark in &recovered.watermarks {
                log.restore_low(&mark.origin, mark.low);
            }
        }
        let Some(bracha) = self.bracha.as_mut() else { return Ok(()) };
        for mark in &recovered.watermarks {
            if self.committee.contains(&mark.origin) {
                bracha.set_low_watermark(&mark.origin, mark.low).map_err(|e| EngineError::Config(e.to_string()))?;
            }
        }
        // An honest origin signs seq t only while its window [low, low + window) holds it, so
        // every own seq up to t - window was delivered: start the own window there at least
        // (a store that lost instances below it, see `recovery`, would otherwise hold the
        // window below them for ever).
        let window = bracha.window(&self.me).map_or(0, |w| w.end - w.start);
        let highest_send = recovered
            .own
            .iter()
            .filter(|m| m.kind == Kind::BrachaSend && m.instance_origin == self.me)
            .map(|m| m.seq)
            .max();
        if let Some(t) = highest_send {
            bracha
                .set_low_watermark(&self.me, (t + 1).saturating_sub(window))
                .map_err(|e| EngineError::Config(e.to_string()))?;
        }
        let mut own_sends = BTreeSet::new();
        let mut steps = Vec::new();
        for message in recovered.own {
            let Ok(envelope) = codec::decode_envelope(&message.envelope, MAX_ENVELOPE_LEN) else { continue };
            if message.kind == Kind::BrachaSend && message.instance_origin == self.me {
                own_sends.insert(message.seq);
            }
            if let Ok(step) = bracha.restore_own_vote(&envelope, now_ms) {
                let instance = InstanceId { origin: message.instance_origin, seq: message.seq };
                let open = bracha.retained(&instance).is_none()
                    && bracha.low_watermark(&instance.origin).is_some_and(|low| instance.seq >= low);
                if open {
                    // Due at once: whoever missed it before the crash gets it now.
                    self.retransmit.insert(instance, message.kind, envelope, now_ms, 0);
                }
                steps.push(step);
            }
        }
        // A seq reserved without its SEND was reserved while the window held it and no later
        // one passed it, so it is at least `next - window`: older seqs without a stored SEND
        // are not this store's to fill (they were a lost store's, delivered long ago).
        let low = bracha.low_watermark(&self.me).unwrap_or(0).max(self.next_broadcast_seq.saturating_sub(window));
        for seq in low..self.next_broadcast_seq {
            if !own_sends.contains(&seq) {
                self.outputs.push_back(Output::Metric(Metric::FilledLostBroadcast { seq }));
                if let Ok(step) = bracha.broadcast_at(seq, Vec::new(), now_ms) {
                    steps.push(step);
                }
            }
        }
        for step in steps {
            self.apply_step(step, now_ms);
        }
        Ok(())
    }

    // ---- accessors ----

    /// This node's key.
    pub fn public_key(&self) -> PublicKey {
        self.me
    }

    /// The committee.
    pub fn committee(&self) -> &Committee {
        &self.committee
    }

    /// The network id.
    pub fn network(&self) -> NetworkId {
        self.network
    }

    /// Wire topic names.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// The Bracha machine (members only).
    pub fn bracha(&self) -> Option<&Bracha> {
        self.bracha.as_ref()
    }

    /// The admission pipeline (reputation, replay guard).
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// A summary of the engine's state.
    pub fn status(&self) -> EngineStatus {
        EngineStatus {
            member: self.member,
            n: self.committee.n(),
            f: self.committee.f(),
            connected_peers: self.connected.len(),
            last_cursor: self.last_cursor,
            open_instances: self.bracha.as_ref().map_or(0, |b| b.open_instances().count()),
            validation_queue: self.in_flight_bracha + self.in_flight_gossip,
            retransmitting: self.retransmit.len(),
            blocked_peers: self.blocks.applied().len(),
            quorum: self.quorum_health(self.now_hint_ms),
        }
    }

    /// Members reachable, members needed and stalled instances at `now_ms`
    /// ([`crate::liveness`]).
    pub fn quorum_health(&self, now_ms: u64) -> QuorumHealth {
        let others = self
            .connected
            .iter()
            .filter(|peer| peer.key().is_some_and(|key| self.committee.contains(&key) && key != self.me))
            .filter(|peer| !self.pings.get(peer).suspected())
            .count();
        QuorumHealth {
            members_reachable: others + usize::from(self.member.is_some()),
            members_needed: 2 * self.committee.f() + 1,
            stalled_instances: self.latency.first_seen.values().filter(|at| now_ms.saturating_sub(**at) > STALL_MS).count(),
        }
    }

    /// A ping to `peer` came back after `rtt_ms` (`Some`) or failed (`None`).
    pub fn handle_ping(&mut self, now_ms: u64, peer: Peer, rtt_ms: Option<u64>) {
        if self.connected.contains(&peer) {
            self.pings.ping(&peer, rtt_ms);
            if rtt_ms.is_some() {
                self.heard_from(&peer, now_ms);
            }
        }
    }

    /// `peer` showed it is alive: it clears ping suspicion, and a member's silence ends.
    fn heard_from(&mut self, peer: &Peer, now_ms: u64) {
        self.pings.traffic(peer);
        if let Some(heard) = peer.key().and_then(|key| self.member_heard_ms.get_mut(&key)) {
            *heard = (*heard).max(now_ms);
        }
    }

    /// Every known peer with its reputation.
    pub fn peers(&self, now_ms: u64) -> Vec<PeerView> {
        let reputation = self.admission.reputation();
        // Every scored key, then the connected peers nothing has scored yet (a quiet peer is
        // still a peer: an observer attached to one other observer saw an empty list).
        let unscored = self.connected.iter().filter_map(|p| p.key()).filter_map(|key| reputation.snapshot_of_unknown(&key, now_ms));
        self.admission
            .snapshot(now_ms)
            .peers
            .into_iter()
            .chain(unscored.collect::<Vec<_>>())
            .map(|reputation| {
                let peer = Peer::Key(reputation.peer);
                let ping = self.pings.get(&peer);
                PeerView {
                    ping_rtt_ms: ping.rtt_ms,
                    ping_failures: ping.failures,
                    suspected: ping.suspected(),
                    connected: self.connected.contains(&peer),
                    member: self.committee.index_of(&reputation.peer),
                    peer,
                    reputation,
                }
            })
            .collect()
    }

    /// Peers blocked at the transport now (bans, exclusions, blocks by hand, foreign ids).
    pub fn blocked(&self) -> impl Iterator<Item = &Peer> {
        self.blocks.applied().iter()
    }

    // ---- outputs and timers ----

    /// The next action for the driver. Writes collected since the last call leave first, as
    /// one [`Output::Persist`] (group commit).
    pub fn poll(&mut self) -> Option<Output> {
        self.flush();
        self.outputs.pop_front()
    }

    /// When [`Engine::handle_timeout`] is due next (ms).
    pub fn poll_timeout(&self) -> Option<u64> {
        let timers = self.next_tick_ms.min(self.next_sync_ms);
        Some(self.recovery.deadline().map_or(timers, |d| d.min(timers)))
    }

    /// Runs the timers due at `now_ms`: the tick (Bracha ticks, retransmission, reputation,
    /// application scores, the wanted block set, redials) and the sync digest.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.recovery_settle(now_ms);
        if now_ms >= self.next_tick_ms {
            self.next_tick_ms = now_ms + self.tick_ms;
            self.on_tick(now_ms);
        }
        if now_ms >= self.next_sync_ms {
            self.next_sync_ms = now_ms + self.sync_ms;
            self.start_sync(now_ms);
        }
        if self.retention_ms > 0 && now_ms >= self.next_prune_ms {
            self.next_prune_ms = now_ms + PRUNE_INTERVAL_MS;
            self.batch.prune_before_ms = Some(now_ms.saturating_sub(self.retention_ms));
        }
    }

    fn flush(&mut self) {
        let only_gossip_ids = self.batch.next_seq.is_empty()
            && self.batch.own.is_empty()
            && self.batch.deliveries.is_empty()
            && self.batch.prune_before_ms.is_none()
            && self.batch.bans.is_empty()
            && self.batch.exclusions.is_empty();
        if only_gossip_ids
            && self.gossip_only_in_flight.is_some()
            && self.batch.gossip.len() < MAX_HELD_GOSSIP_IDS
            && self.batch.kept_gossip.len() < MAX_HELD_GOSSIP_IDS
        {
            // Gossip ids alone wait for the id-only batch in flight (their deliveries with them).
            return;
        }
        if self.batch.is_empty() || self.awaiting.len() >= MAX_BATCHES_IN_FLIGHT {
            // Nothing to write (whatever is gated, nothing normally, is released with the
            // next batch), or the driver already holds its share of uncommitted batches:
            // keep collecting; the next poll after a commit sends it all as one batch.
            // Indices in `gated` point into this growing batch, so they stay valid.
            return;
        }
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        if only_gossip_ids && !(self.batch.gossip.is_empty() && self.batch.kept_gossip.is_empty() && self.batch.forget_kept_gossip.is_empty()) {
            self.gossip_only_in_flight = Some(id);
        }
        let mut batch = std::mem::take(&mut self.batch);
        batch.id = id;
        self.awaiting.push_back((id, std::mem::take(&mut self.gated)));
        self.outputs.push_back(Output::Persist(batch));
    }

    /// The driver committed batch `id` (`Ok`) or could not (`Err`): release what it gated,
    /// or drop it.
    pub fn handle_committed(&mut self, now_ms: u64, id: u64, result: Result<Committed, String>) {
        if self.gossip_only_in_flight == Some(id) {
            self.gossip_only_in_flight = None;
        }
        let Some(position) = self.awaiting.iter().position(|(b, _)| *b == id) else { return };
        let Some((_, gated)) = self.awaiting.remove(position) else { return };
        let committed = match result {
            Ok(committed) => committed,
            Err(_) => {
                self.outputs.push_back(Output::Metric(Metric::PersistFailed { batch: id }));
                return;
            }
        };
        if committed.pruned > 0 {
            self.outputs.push_back(Output::Metric(Metric::Pruned { deliveries: committed.pruned }));
        }
        if committed.pruned >= MAX_PRUNED_PER_BATCH {
            // A full page: more may be due; ask again at the next timer.
            self.next_prune_ms = now_ms;
        }
        for item in gated {
            match item {
                Gated::Bracha { index, instance, kind, envelope } => {
                    let envelope = match committed.own.get(index).cloned().flatten() {
                        None => envelope,
                        // Already stored (a restart): publish the stored vote, never another.
                        Some(first) => match codec::decode_envelope(&first, MAX_ENVELOPE_LEN) {
                            Ok(first) => first,
                            Err(_) => continue,
                        },
                    };
                    self.publish_envelope(self.topics.bracha(), envelope.clone());
                    let open = self.bracha.as_ref().is_some_and(|b| b.retained(&instance).is_none());
                    if open {
                        let delay = Retransmit::first_delay(self.latency.ewma_ms);
                        self.retransmit.insert(instance, kind, envelope, now_ms, delay);
                    }
                }
                Gated::Gossip { topic, envelope } => self.publish_envelope(topic, envelope),
                Gated::Broadcast { instance } => self.outputs.push_back(Output::Broadcast { instance }),
                Gated::GossipDeliver(message) => self.outputs.push_back(Output::Gossip(message)),
                Gated::Deliver { index, mut delivered } => {
                    let Some(Appended::New(cursor)) = committed.deliveries.get(index).copied() else { continue };
                    self.last_cursor = self.last_cursor.max(cursor);
                    delivered.cursor = cursor;
                    let latency_ms = self.latency.delivered(&delivered.instance, now_ms);
                    self.outputs.push_back(Output::Metric(Metric::Delivered { latency_ms }));
                    self.announce_certified(&delivered, now_ms);
                    self.outputs.push_back(Output::Deliver(delivered));
                }
            }
        }
    }

    fn publish_envelope(&mut self, topic: String, envelope: Envelope) {
        self.outputs.push_back(Output::Metric(Metric::Published { kind: envelope.header().kind.label() }));
        self.outputs.push_back(Output::Publish { topic, envelope });
    }

    // ---- application commands ----

    /// Starts a Bracha broadcast of `value`; [`Output::Broadcast`] says when its seq and
    /// SEND are durable (answer the application then: an acknowledged broadcast survives a
    /// crash, and its seq is never reused). Refused with [`EngineError::Busy`] while this
    /// node's own window is full (before a seq is reserved: a reserved seq that is never
    /// broadcast would stall the window).
    pub fn broadcast(&mut self, now_ms: u64, value: Vec<u8>) -> Result<InstanceId, EngineError> {
        let Some(bracha) = self.bracha.as_mut() else { return Err(EngineError::NotAMember) };
        if value.len() > self.max_value_len {
            return Err(EngineError::Refused(format!(
                "value of {} bytes is over the limit of {}",
                value.len(),
                self.max_value_len
            )));
        }
        let caught_up = bracha.low_watermark(&self.me).is_some_and(|low| low >= self.own_floor);
        if let Some(settled) = self.recovery.settle(now_ms, caught_up) {
            self.outputs.push_back(Output::Metric(Metric::Sync { kind: settled.label() }));
        }
        if self.recovery.waiting() {
            return Err(EngineError::RecoveringSeq);
        }
        // Seqs below the own window were delivered (a lost store learns them through sync),
        // and the machine may know of a later own SEND than the counter: take the highest.
        // Only a seq beyond the window waits.
        let window = bracha.window(&self.me);
        let seq = self.next_broadcast_seq.max(bracha.next_seq()).max(window.as_ref().map_or(0, |w| w.start));
        if let Some(window) = window
            && seq >= window.end
        {
            return Err(EngineError::Busy(format!(
                "{} broadcasts are still being delivered; retry when one completes",
                window.end - window.start
            )));
        }
        let step = bracha.broadcast_at(seq, value, now_ms).map_err(|e| EngineError::Refused(e.to_string()))?;
        self.next_broadcast_seq = seq + 1;
        self.first_own_seq.get_or_insert(seq);
        self.batch.next_seq.push((SeqStream::Broadcast, seq + 1));
        let instance = InstanceId { origin: self.me, seq };
        self.latency.seen(instance, now_ms);
        self.apply_step(step, now_ms);
        self.gated.push(Gated::Broadcast { instance });
        Ok(instance)
    }

    /// Signs and publishes gossip on `topic` (after its seq is committed).
    pub fn publish(&mut self, now_ms: u64, topic: &str, payload: Vec<u8>) -> Result<MessageId, EngineError> {
        check_topic_name(topic).map_err(EngineError::Refused)?;
        if self.policy == GossipPolicy::Committee && self.member.is_none() {
            return Err(EngineError::NotAMember);
        }
        let body = GossipBody { topic: topic.to_owned(), payload }.encode();
        if body.len() + codec::ENVELOPE_OVERHEAD > self.max_message_len {
            return Err(EngineError::Refused(format!("message is over the limit of {} bytes", self.max_message_len)));
        }
        if !self.publish_budget.take(now_ms) {
            return Err(EngineError::Busy(format!(
                "publish rate over {:.0} messages/s (peers would drop the excess); retry shortly",
                self.publish_budget.rate_per_s
            )));
        }
        let seq = self.next_gossip_seq;
        let envelope = Envelope::seal(&self.keypair, self.network, Kind::Gossip, seq, now_ms, body)
            .map_err(|e| EngineError::Refused(e.to_string()))?;
        self.next_gossip_seq = seq + 1;
        self.batch.next_seq.push((SeqStream::Gossip, seq + 1));
        let id = envelope.id();
        self.keep_gossip(self.me, seq, now_ms, codec::encode_envelope(&envelope), true);
        self.held_gossip.insert(self.me, seq, now_ms);
        self.gated.push(Gated::Gossip { topic: self.topics.gossip(topic), envelope });
        Ok(id)
    }

    /// Subscribes to an application gossip topic.
    pub fn subscribe(&mut self, topic: &str) -> Result<(), EngineError> {
        check_topic_name(topic).map_err(EngineError::Refused)?;
        if self.subscribed.insert(topic.to_owned()) {
            self.outputs.push_back(Output::Subscribe { topic: self.topics.gossip(topic) });
        }
        Ok(())
    }

    /// Blocks `peer` by hand (an operator's quarantine), apart from reputation bans: lifting
    /// one never lifts the other.
    pub fn block(&mut self, now_ms: u64, peer: Peer) -> Result<(), EngineError> {
        if peer == Peer::Key(self.me) {
            return Err(EngineError::Refused("a node cannot block itself".into()));
        }
        self.blocks.block_by_hand(peer.clone()).map_err(EngineError::Refused)?;
        self.reconcile_peer(&peer, now_ms);
        Ok(())
    }

    /// Brings one peer's transport block in line with what is wanted of it.
    fn reconcile_peer(&mut self, peer: &Peer, now_ms: u64) {
        let banned = peer.key().is_some_and(|key| {
            matches!(self.admission.reputation().status(&key, now_ms), PeerStatus::Banned { .. } | PeerStatus::Excluded { .. })
        });
        if let Some(action) = self.blocks.reconcile_one(peer, banned) {
            self.outputs.push_back(Output::Peer(action));
        }
    }

    /// Lifts a block by hand. A reputation ban of the same peer stays in force; a bootstrap
    /// peer is redialled at the next tick rather than after its grown backoff.
    pub fn unblock(&mut self, now_ms: u64, peer: Peer) {
        if self.blocks.unblock_by_hand(&peer) {
            self.reconcile_peer(&peer, now_ms);
            if !self.connected.contains(&peer) {
                self.redial.soon(&peer, now_ms);
            }
        }
    }

    // ---- connections ----

    /// A first connection to `peer` is up.
    pub fn handle_connected(&mut self, now_ms: u64, peer: Peer) {
        self.redial.connected(&peer);
        if matches!(peer, Peer::Foreign(_)) {
            // Not an ed25519 identity: its messages could not be scored. Refuse it.
            self.blocks.foreign(peer.clone());
            self.reconcile_peer(&peer, now_ms);
        }
        if self.is_outsider(&peer) && !self.connected.contains(&peer) {
            self.outsiders += 1;
        }
        // A member back after a silence longer than a first retransmission delay (a cut):
        // what the cut stalled is resent now, not after the backoff that grew while it
        // lasted (module `retransmit`). Silence, not time disconnected: a cut link can stall
        // without closing and be reset only when it heals (the `--netns` runs: nftables drops,
        // then the heal's connection reset), so the disconnect comes at the heal's end.
        // The first delay grows with the delivery latency (2 s idle, up to 8 s loaded): under
        // load a member's publishes to us are dropped at its full send queue and it falls
        // silent for seconds, then is dropped as slow and redials; resending every open
        // message then only added load and seen-set ids (seen-flood at n = 16 in-process fell
        // from about 95% to 65% validity when every reconnect did it, and failed gossip
        // delivery 3 runs of 3 when a silence of 2 s did).
        if let Some(key) = peer.key().filter(|key| self.committee.contains(key))
            && !self.connected.contains(&peer)
            && self
                .member_heard_ms
                .insert(key, now_ms)
                .is_some_and(|heard| now_ms.saturating_sub(heard) >= Retransmit::first_delay(self.latency.ewma_ms))
        {
            self.retransmit.hurry(now_ms, Retransmit::first_delay(self.latency.ewma_ms));
        }
        self.connected.insert(peer);
        self.recovery_ask();
    }

    /// A peer with an ed25519 key outside the committee.
    fn is_outsider(&self, peer: &Peer) -> bool {
        peer.key().is_some_and(|key| !self.committee.contains(&key))
    }

    /// The last connection to `peer` closed.
    pub fn handle_disconnected(&mut self, now_ms: u64, peer: Peer) {
        self.pings.forget(&peer);
        if self.connected.remove(&peer) && self.is_outsider(&peer) {
            self.outsiders = self.outsiders.saturating_sub(1);
        }
        self.slow.forget(&peer);
        self.redial.disconnected(&peer, now_ms);
    }

    /// Gossipsub could not queue messages for `peer` since its last heartbeat (its send
    /// queue was full). A peer slow for a whole streak gets its connection dropped and
    /// redialled ([`crate::slow`]); being slow never costs reputation.
    pub fn handle_slow_peer(&mut self, now_ms: u64, peer: Peer) {
        self.metric(Metric::SlowPeer { outcome: "reported" });
        if self.connected.contains(&peer) && self.slow.report(&peer, now_ms) {
            self.metric(Metric::SlowPeer { outcome: "disconnected" });
            self.outputs.push_back(Output::Peer(PeerAction::Disconnect(peer)));
        }
    }

    /// A dial to `peer` failed.
    pub fn handle_dial_failed(&mut self, now_ms: u64, peer: Peer) {
        if !self.connected.contains(&peer) {
            self.redial.failed(&peer, now_ms);
        }
    }

    // ---- received messages ----

    /// A gossipsub message from `from` on wire topic `topic`. The engine answers
    /// [`Output::Validation`] with `token` exactly once (now, or after verification).
    pub fn handle_message(&mut self, now_ms: u64, from: Peer, token: u64, topic: &str, bytes: &[u8]) {
        self.heard_from(&from, now_ms);
        let Some(from) = from.key() else {
            self.validation(token, Acceptance::Ignore);
            return;
        };
        let pending = match self.admission.precheck(from, bytes, now_ms) {
            Ok(pending) => pending,
            Err(verdict) => {
                self.finish_verdict(token, "unknown", verdict, now_ms, now_ms, true);
                return;
            }
        };
        // The kind must travel on its topic, and a gossip body must name the topic it came
        // on: the forwarder could have checked both.
        let header = *pending.envelope().header();
        let topic_ok = match header.kind {
            Kind::Gossip => GossipBody::decode(pending.envelope().body(), self.max_message_len)
                .is_some_and(|b| self.topics.app_topic(topic) == Some(b.topic.as_str())),
            Kind::Certified => self.topics.is_certified(topic),
            _ => self.topics.is_bracha(topic),
        };
        if !topic_ok {
            self.penalise(from, Event::Malformed, now_ms);
            self.metric(Metric::Message { kind: header.kind.label(), outcome: "wrong_topic" });
            self.metric(Metric::Rejected { reason: "wrong_topic" });
            self.validation(token, Acceptance::Reject);
            return;
        }
        if header.kind == Kind::Certified && !self.certified_wanted(pending.envelope(), from, now_ms) {
            self.metric(Metric::Message { kind: header.kind.label(), outcome: "not_wanted" });
            self.validation(token, Acceptance::Ignore);
            return;
        }
        let relay = self.relays(&header, &from);
        let line = if header.kind == Kind::Gossip { Line::Gossip } else { Line::Bracha };
        if self.line_full(line) {
            self.metric(Metric::Message { kind: header.kind.label(), outcome: "overloaded" });
            if header.kind == Kind::Certified {
                self.end_certified_check(pending.envelope());
            }
            self.validation(token, Acceptance::Ignore);
            return;
        }
        self.submit(Job {
            line,
            origin: Origin::Gossip { token, received_ms: now_ms, relay },
            from: Some(from),
            work: Work::Envelope(Box::new(pending)),
        });
    }

    /// Whether `line` holds as many jobs as it may (gossip: `validation_queue`; Bracha:
    /// [`BRACHA_QUEUE_FACTOR`] times that). Beyond, received messages and synced items are
    /// dropped unverified: gossip, retransmission or the next sync bring honest ones back.
    fn line_full(&self, line: Line) -> bool {
        match line {
            Line::Bracha => self.in_flight_bracha >= self.validation_queue * BRACHA_QUEUE_FACTOR,
            Line::Gossip => self.in_flight_gossip >= self.validation_queue,
        }
    }

    fn submit(&mut self, job: Job) {
        match job.line {
            Line::Bracha => self.in_flight_bracha += 1,
            Line::Gossip => self.in_flight_gossip += 1,
        }
        self.outputs.push_back(Output::Verify(job));
        self.queue_depths();
    }

    fn queue_depths(&mut self) {
        self.metric(Metric::QueueDepth { queue: "validation_bracha", depth: self.in_flight_bracha });
        self.metric(Metric::QueueDepth { queue: "validation_gossip", depth: self.in_flight_gossip });
    }

    /// Whether gossipsub may forward an accepted message with this header that arrived from
    /// `source`: always, unless it came straight from its signer, a committee member, in
    /// which case only the signer's designated relays forward it ([`relays_direct`]). The
    /// rule assumes every subscriber is a member that got the signer's own copy; a peer
    /// outside the committee (an observer, a foreign subscriber) gets only what its members
    /// forward, so while one is connected this node forwards all gossip (measured: a stock
    /// gossipsub peer attached to one member of four received 14 of 20 messages the others
    /// published, 20 of 20 with this). Not Bracha messages: only members take the Bracha
    /// topic (observers take certified deliveries), and forwarding every vote at every member
    /// made each delivery cost n times the messages (measured in the `flood` preset with 10
    /// observers: 53.5 messages per delivery against 31.6, and detection missed its deadline).
    fn relays(&self, header: &byzgossip_crypto::Header, source: &PublicKey) -> bool {
        if *source != header.origin || (self.outsiders > 0 && header.kind == Kind::Gossip) {
            return true;
        }
        match (self.committee.index_of(&header.origin), self.member) {
            (Some(signer), Some(me)) => relays_direct(self.committee.n(), signer, me),
            _ => true,
        }
    }

    /// A signature check finished.
    pub fn handle_verified(&mut self, now_ms: u64, done: Done) {
        let Done { job, outcome } = done;
        match job.line {
            Line::Bracha => self.in_flight_bracha = self.in_flight_bracha.saturating_sub(1),
            Line::Gossip => self.in_flight_gossip = self.in_flight_gossip.saturating_sub(1),
        }
        match (job.work, outcome) {
            (Work::Envelope(pending), Outcome::Envelope(result)) => {
                let kind = pending.envelope().header().kind.label();
                let mode = pending.mode();
                let certified = (pending.envelope().header().kind == Kind::Certified).then(|| pending.envelope().clone());
                let verdict = self.admission.complete(*pending, result, now_ms);
                let accepted = verdict.accepted().cloned();
                if let Some(envelope) = certified {
                    // The verdict waits for the certificate inside: only a proof that checks
                    // is forwarded.
                    match (accepted, job.origin, job.from) {
                        (Some(_), Origin::Gossip { token, received_ms, .. }, Some(from)) => {
                            self.check_certified(&envelope, from, Origin::Gossip { token, received_ms, relay: true });
                        }
                        (_, Origin::Gossip { token, received_ms, relay }, _) => {
                            self.end_certified_check(&envelope);
                            self.finish_verdict(token, kind, verdict, received_ms, now_ms, relay);
                        }
                        // From sync: never counted as a check of its instance.
                        _ => {}
                    }
                    return;
                }
                match job.origin {
                    Origin::Gossip { token, received_ms, relay } => {
                        self.finish_verdict(token, kind, verdict, received_ms, now_ms, relay);
                    }
                    Origin::Sync => {
                        if accepted.is_some() {
                            self.metric(Metric::Sync { kind: "envelope_admitted" });
                        } else {
                            self.metric(Metric::Message { kind: "sync", outcome: verdict.label() });
                        }
                        self.drain_status_changes(now_ms);
                    }
                }
                if let Some(envelope) = accepted {
                    self.on_admitted(envelope, mode, now_ms);
                }
            }
            (Work::Certificate { certificate, value, .. }, Outcome::Certificate(result)) => match result {
                Ok(verified) if self.certified.is_some() => {
                    if let Origin::Gossip { token, received_ms, .. } = job.origin {
                        self.metric(Metric::AdmissionLatency { ms: now_ms.saturating_sub(received_ms) });
                        self.metric(Metric::Message { kind: Kind::Certified.label(), outcome: "accept" });
                        self.validation(token, Acceptance::Accept);
                    }
                    self.deliver_certified(&verified, value, now_ms);
                }
                Ok(verified) => {
                    if certificate.instance.origin == self.me {
                        self.learned_own_seq(certificate.instance.seq);
                        self.recovery.checked(certificate.instance.seq);
                        self.recovery_settle(now_ms);
                    }
                    if let Some(bracha) = self.bracha.as_mut() {
                        let instance = certificate.instance;
                        match bracha.handle_certificate(&verified, value, now_ms) {
                            Ok(step) => {
                                if !step.delivered.is_empty() {
                                    self.metric(Metric::Sync { kind: "certificate_applied" });
                                }
                                self.latency.seen(instance, now_ms);
                                self.apply_step(step, now_ms);
                            }
                            Err(_) => self.metric(Metric::Sync { kind: "certificate_not_applied" }),
                        }
                    }
                }
                Err(_) => {
                    if certificate.instance.origin == self.me {
                        self.recovery.checked(certificate.instance.seq);
                        self.recovery_settle(now_ms);
                    }
                    if let Some(log) = self.certified.as_mut() {
                        log.end_check(&certificate.instance);
                    }
                    match job.origin {
                        Origin::Gossip { token, received_ms, .. } => {
                            self.metric(Metric::AdmissionLatency { ms: now_ms.saturating_sub(received_ms) });
                            self.metric(Metric::Message { kind: Kind::Certified.label(), outcome: "invalid_certificate" });
                            self.metric(Metric::Rejected { reason: "invalid_certificate" });
                            self.validation(token, Acceptance::Reject);
                        }
                        Origin::Sync => self.metric(Metric::Sync { kind: "certificate_invalid" }),
                    }
                    if let Some(from) = job.from {
                        self.penalise(from, Event::BadSignature, now_ms);
                    }
                }
            },
            (Work::Evidence { evidence, gossip, .. }, Outcome::Evidence(result)) => match result {
                Ok(offender) => {
                    if job.from.is_some() {
                        self.metric(Metric::Sync { kind: "evidence_applied" });
                    }
                    self.penalise(offender, Event::Equivocation { evidence: evidence.digest() }, now_ms);
                    self.keep_evidence(offender, &evidence);
                    if gossip
                        && let Ok(envelope) = Envelope::seal(&self.keypair, self.network, Kind::Evidence, 0, now_ms, evidence.encode())
                    {
                        self.publish_envelope(self.topics.bracha(), envelope);
                    }
                }
                Err(error) => {
                    self.metric(Metric::Message { kind: "evidence", outcome: "invalid_evidence" });
                    // From sync, the peer that served it could have checked it (it serves
                    // only evidence it verified): it pays. Gossiped evidence is checked at
                    // admission like any envelope, its signer is not the accused.
                    if let Some(from) = job.from {
                        self.metric(Metric::Sync { kind: "evidence_invalid" });
                        let event = match error {
                            EvidenceError::BadSignature => Event::BadSignature,
                            _ => Event::Malformed,
                        };
                        self.penalise(from, event, now_ms);
                    }
                }
            },
            // A job always comes back with the outcome of its own kind of work.
            _ => {}
        }
    }

    /// Reports a verdict to gossipsub (an `Accept` this node does not relay goes to gossipsub
    /// as `Ignore`: processed here, not forwarded), counts it, and applies status changes.
    fn finish_verdict(&mut self, token: u64, kind: &'static str, verdict: Verdict, received_ms: u64, now_ms: u64, relay: bool) {
        self.metric(Metric::AdmissionLatency { ms: now_ms.saturating_sub(received_ms) });
        self.metric(Metric::Message { kind, outcome: verdict.label() });
        if let Verdict::Reject(reason, _) = &verdict {
            self.metric(Metric::Rejected { reason: reason.label() });
        }
        let acceptance = match verdict.acceptance() {
            Acceptance::Accept if !relay => {
                self.metric(Metric::RelaySkipped);
                Acceptance::Ignore
            }
            other => other,
        };
        self.validation(token, acceptance);
        self.drain_status_changes(now_ms);
    }

    fn validation(&mut self, token: u64, acceptance: Acceptance) {
        self.outputs.push_back(Output::Validation { token, acceptance });
    }

    fn metric(&mut self, metric: Metric) {
        self.outputs.push_back(Output::Metric(metric));
    }

    /// Reports status changes; a new ban or exclusion is applied at the transport at once.
    fn drain_status_changes(&mut self, now_ms: u64) {
        let mut block = false;
        while let Some(change) = self.admission.poll_status_change() {
            block |= self.status_changed(change);
        }
        if block {
            self.reconcile_blocks(now_ms);
        }
    }

    fn penalise(&mut self, peer: PublicKey, event: Event, now_ms: u64) {
        if let Some(change) = self.admission.record(peer, event, now_ms)
            && self.status_changed(change)
        {
            self.reconcile_blocks(now_ms);
        }
    }

    /// Counts a status change and writes a new ban into the batch (its count and end, so a
    /// restart keeps it and a repeat still doubles); true if the peer must be blocked.
    /// Exclusions are written with their evidence by [`Engine::keep_evidence`].
    fn status_changed(&mut self, change: StatusChange) -> bool {
        self.metric(Metric::StatusChange(change));
        match change.to {
            PeerStatus::Banned { until_ms } => {
                self.batch.bans.push(StoredBan { peer: change.peer, bans: change.bans, until_ms });
                true
            }
            PeerStatus::Excluded { .. } => true,
            PeerStatus::Ok | PeerStatus::Graylisted => false,
        }
    }

    /// Keeps verified evidence against `offender` (the first one per member): written into
    /// the batch with the exclusion, and offered to peers in sync responses.
    fn keep_evidence(&mut self, offender: PublicKey, evidence: &Evidence) {
        if self.evidence.contains_key(&offender) || self.evidence.len() >= MAX_STORED_EXCLUSIONS {
            return;
        }
        let encoded = evidence.encode();
        self.batch.exclusions.push(StoredExclusion { member: offender, evidence: encoded.clone() });
        self.evidence.insert(offender, encoded);
    }

    /// Acts on an admitted envelope.
    fn on_admitted(&mut self, envelope: VerifiedEnvelope, mode: WindowMode, now_ms: u64) {
        match envelope.header().kind {
            Kind::Gossip => self.on_gossip_admitted(&envelope, mode, now_ms),
            Kind::BrachaSend | Kind::BrachaEcho | Kind::BrachaReady => {
                let Some(bracha) = self.bracha.as_mut() else { return };
                if envelope.header().kind == Kind::BrachaSend
                    && let Ok(Message::Send { instance, .. }) = Message::from_envelope(envelope.envelope(), self.max_value_len)
                {
                    self.latency.seen(instance, now_ms);
                }
                let step = bracha.handle(&envelope, now_ms);
                self.apply_step(step, now_ms);
            }
            Kind::Evidence => {
                let Ok(evidence) = Evidence::decode(envelope.body(), self.max_message_len) else { return };
                self.verify_evidence(evidence, false);
            }
            // Acted on once its certificate verified (`check_certified`).
            Kind::Certified => {}
        }
    }

    // ---- certified deliveries (observers, module `observer`) ----

    /// The certificate of a [`Kind::Certified`] envelope, decoded, with its value, if the
    /// body is well formed and the value matches the certified digest.
    fn certified_parts(&self, envelope: &Envelope) -> Option<(Certificate, Vec<u8>)> {
        let body = CertifiedBody::decode(envelope.body(), self.max_message_len)?;
        let certificate = Certificate::decode(&body.certificate, self.max_message_len).ok()?;
        (Digest::of(&body.value) == certificate.digest).then_some((certificate, body.value))
    }

    /// Whether to check a received [`Kind::Certified`] envelope: this node is an observer and
    /// its instance is open here (not delivered, not being checked, inside the window); then
    /// its instance is marked as being checked. A body that does not decode, or whose value
    /// does not match the certified digest, costs the forwarder (it could have checked).
    fn certified_wanted(&mut self, envelope: &Envelope, from: PublicKey, now_ms: u64) -> bool {
        if self.certified.is_none() {
            return false;
        }
        let Some((certificate, _)) = self.certified_parts(envelope) else {
            self.penalise(from, Event::Malformed, now_ms);
            return false;
        };
        self.certified.as_mut().is_some_and(|log| log.begin_check(&certificate.instance))
    }

    /// A check begun by [`Engine::certified_wanted`] ended without a delivery.
    fn end_certified_check(&mut self, envelope: &Envelope) {
        if let Some((certificate, _)) = self.certified_parts(envelope)
            && let Some(log) = self.certified.as_mut()
        {
            log.end_check(&certificate.instance);
        }
    }

    /// A [`Kind::Certified`] envelope passed admission: its certificate is checked as a job
    /// that answers gossipsub's validation (`origin`) once done.
    fn check_certified(&mut self, envelope: &Envelope, from: PublicKey, origin: Origin) {
        let Some((certificate, value)) = self.certified_parts(envelope) else {
            // Checked when it arrived; the same bytes decode the same way.
            return;
        };
        self.submit(Job {
            line: Line::Bracha,
            origin,
            from: Some(from),
            work: Work::Certificate { certificate: Box::new(certificate), value, committee: self.committee.clone(), network: self.network },
        });
    }

    /// An observer delivers on a verified certificate: once per instance, through the same
    /// batch, log and cursor as a member's delivery.
    fn deliver_certified(&mut self, certificate: &byzgossip_bracha::VerifiedCertificate, value: Vec<u8>, now_ms: u64) {
        let instance = certificate.instance;
        if self.certified.as_mut().is_some_and(|log| log.deliver(&instance)) {
            self.metric(Metric::Sync { kind: "certificate_applied" });
            self.record_delivery(instance, value, certificate.digest, certificate.encode(), now_ms);
        }
    }

    /// Announces a durable delivery, with its certificate, to the nodes outside the committee
    /// (a member with one connected): they deliver on the certificate alone.
    fn announce_certified(&mut self, delivered: &Delivered, now_ms: u64) {
        if self.member.is_none() || self.outsiders == 0 {
            return;
        }
        let body = CertifiedBody { certificate: delivered.certificate.clone(), value: delivered.value.clone() };
        if let Ok(envelope) = Envelope::seal(&self.keypair, self.network, Kind::Certified, delivered.instance.seq, now_ms, body.encode()) {
            self.publish_envelope(self.topics.certified(), envelope);
        }
    }

    fn verify_evidence(&mut self, evidence: Evidence, gossip: bool) {
        self.submit(Job {
            line: Line::Bracha,
            origin: Origin::Sync,
            from: None,
            work: Work::Evidence { evidence: Box::new(evidence), committee: self.committee.clone(), network: self.network, gossip },
        });
    }

    /// Admitted gossip: kept for sync, and handed to the application if subscribed once its
    /// id (with its seen-set expiry) is durable, so a replay after a restart within the
    /// window, after a crash too, is a duplicate, as before it. (Delivering first and writing
    /// at the next tick lost the last tick's ids to a SIGKILL in process mode, and the
    /// restarted node delivered one again through sync.) Ids alone ride at most one commit in
    /// flight ([`MAX_HELD_GOSSIP_IDS`]). Expired ids leave the store with every batch that
    /// carries ids.
    fn on_gossip_admitted(&mut self, envelope: &VerifiedEnvelope, mode: WindowMode, now_ms: u64) {
        let Some(body) = GossipBody::decode(envelope.body(), self.max_message_len) else { return };
        let header = envelope.header();
        self.keep_gossip(header.origin, header.seq, header.timestamp_ms, codec::encode_envelope(envelope.envelope()), true);
        self.held_gossip.insert(header.origin, header.seq, now_ms);
        if self.subscribed.contains(&body.topic) {
            let expires_at_ms = self.admission.seen_expiry(header.timestamp_ms, now_ms, mode);
            self.batch.gossip.push(StoredGossipId { id: *envelope.id().as_bytes(), origin: header.origin, expires_at_ms });
            self.batch.forget_gossip_before_ms = Some(now_ms);
            self.gated.push(Gated::GossipDeliver(GossipMessage {
                topic: body.topic,
                origin: header.origin,
                seq: header.seq,
                timestamp_ms: header.timestamp_ms,
                id: envelope.id(),
                payload: body.payload,
            }));
        }
    }

    // ---- Bracha steps ----

    fn apply_step(&mut self, step: Step, now_ms: u64) {
        for envelope in step.outgoing {
            let Ok(message) = Message::from_envelope(&envelope, self.max_value_len) else { continue };
            let instance = *message.instance();
            let kind = envelope.header().kind;
            let index = self.batch.own.len();
            self.batch.own.push(OwnMessage {
                instance_origin: instance.origin,
                seq: instance.seq,
                kind,
                envelope: codec::encode_envelope(&envelope),
            });
            self.gated.push(Gated::Bracha { index, instance, kind, envelope });
        }
        for fetch in step.fetches {
            let target = fetch
                .from
                .iter()
                .filter_map(|i| self.committee.member(*i))
                .map(|key| Peer::Key(*key))
                .find(|p| self.connected.contains(p))
                .or_else(|| self.connected.iter().next().cloned());
            if let Some(peer) = target {
                let request = SyncRequest::Value { origin: fetch.instance.origin, seq: fetch.instance.seq, digest: fetch.digest };
                self.send_sync(peer, request, SyncPurpose::Value { instance: fetch.instance });
            }
        }
        for delivery in step.delivered {
            self.retransmit.remove_instance(&delivery.instance);
            if delivery.instance.origin == self.me
                && self.lost_own_sends
                && self.first_own_seq.is_none_or(|first| delivery.instance.seq < first)
            {
                // An own instance of a lost store: record a SEND of the delivered value (same
                // digest, so never a conflicting one) as if this store had signed it.
                let send = Message::Send { instance: delivery.instance, value: delivery.value.clone() };
                if let Ok(envelope) = send.seal(&self.keypair, self.network, now_ms) {
                    self.batch.own.push(OwnMessage {
                        instance_origin: self.me,
                        seq: delivery.instance.seq,
                        kind: Kind::BrachaSend,
                        envelope: codec::encode_envelope(&envelope),
                    });
                }
            }
            self.record_delivery(delivery.instance, delivery.value, delivery.digest, delivery.certificate.encode(), now_ms);
        }
        for evidence in step.evidence {
            self.verify_evidence(evidence, true);
        }
        for fault in step.faults {
            self.metric(Metric::Fault { kind: fault.kind.label() });
            // Equivocation is punished once its evidence verified; other provable faults are
            // malformed votes.
            if fault.kind.is_provable() && !matches!(fault.kind, FaultKind::Equivocation) {
                self.penalise(fault.member, Event::Malformed, now_ms);
            }
        }
    }

    /// Appends a delivery to the batch; it reaches the application once committed, under the
    /// cursor the store gives it.
    fn record_delivery(&mut self, instance: InstanceId, value: Vec<u8>, digest: Digest, certificate: Vec<u8>, now_ms: u64) {
        let index = self.batch.deliveries.len();
        self.batch.deliveries.push(StoredDelivery {
            origin: instance.origin,
            seq: instance.seq,
            digest,
            value: value.clone(),
            certificate: certificate.clone(),
            delivered_at_ms: now_ms,
        });
        self.gated.push(Gated::Deliver {
            index,
            delivered: Delivered { cursor: 0, instance, value, digest, certificate, delivered_at_ms: now_ms },
        });
    }

    // ---- the tick ----

    fn on_tick(&mut self, now_ms: u64) {
        self.recovery_ask();
        if let Some(bracha) = self.bracha.as_mut() {
            let step = bracha.tick(now_ms);
            self.apply_step(step, now_ms);
        }
        self.retransmit_due(now_ms);
        self.drain_status_changes(now_ms);
        self.slow.expire(now_ms);
        // Our scores go to gossipsub as the application score (P5).
        let scores: Vec<(Peer, f64)> = self
            .connected
            .iter()
            .filter_map(|peer| peer.key().map(|key| (peer.clone(), self.admission.reputation().app_score(&key, now_ms))))
            .collect();
        for (peer, score) in scores {
            self.outputs.push_back(Output::AppScore { peer, score });
        }
        self.reconcile_blocks(now_ms);
        self.now_hint_ms = now_ms;
        let health = self.quorum_health(now_ms);
        let possible = health.progress_possible();
        let was_possible = self.progress_possible.replace(possible);
        self.metric(Metric::Quorum { health, was_possible });
        let blocked = self.blocks.applied().clone();
        for peer in self.redial.due(now_ms, |p| blocked.contains(p)) {
            self.outputs.push_back(Output::Peer(PeerAction::Dial(peer)));
        }
    }

    /// Computes the wanted block set and emits the difference with what the transport has
    /// (level-triggered: an expired ban unblocks here); also counts peers by status.
    fn reconcile_blocks(&mut self, now_ms: u64) {
        let snapshot = self.admission.snapshot(now_ms);
        let (mut ok, mut graylisted, mut banned, mut excluded) = (0, 0, 0, 0);
        let mut wanted = Vec::new();
        for peer in &snapshot.peers {
            match peer.status {
                PeerStatus::Ok => ok += 1,
                PeerStatus::Graylisted => graylisted += 1,
                PeerStatus::Banned { .. } => {
                    banned += 1;
                    wanted.push(Peer::Key(peer.peer));
                }
                PeerStatus::Excluded { .. } => {
                    excluded += 1;
                    wanted.push(Peer::Key(peer.peer));
                }
            }
        }
        self.metric(Metric::PeersByStatus { ok, graylisted, banned, excluded });
        for action in self.blocks.reconcile(wanted) {
            if let PeerAction::Unblock(peer) = &action
                && !self.connected.contains(peer)
            {
                self.redial.soon(peer, now_ms);
            }
            self.outputs.push_back(Output::Peer(action));
        }
    }

    /// Re-signs and republishes own messages of instances not yet delivered here. Entries of
    /// instances the Bracha machine no longer holds open (delivered, or below a watermark)
    /// are dropped, so the table stays within the machine's windows.
    fn retransmit_due(&mut self, now_ms: u64) {
        let Some(bracha) = self.bracha.as_ref() else { return };
        self.retransmit.retain_open(|instance| {
            bracha.retained(instance).is_none() && bracha.window(&instance.origin).is_some_and(|w| w.contains(&instance.seq))
        });
        if self.in_flight_bracha > RETRANSMIT_BACKOFF_QUEUE {
            return;
        }
        for envelope in self.retransmit.due(now_ms) {
            let Ok(message) = Message::from_envelope(&envelope, self.max_value_len) else { continue };
            let Ok(fresh) = message.seal(&self.keypair, self.network, now_ms) else { continue };
            self.metric(Metric::Published { kind: "retransmit" });
            self.outputs.push_back(Output::Publish { topic: self.topics.bracha(), envelope: fresh });
        }
    }

    // ---- sync ----

    fn send_sync(&mut self, peer: Peer, request: SyncRequest, purpose: SyncPurpose) -> bool {
        if self.sync_requests.len() >= MAX_SYNC_IN_FLIGHT {
            return false;
        }
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.sync_requests.insert(request_id, purpose);
        let kind = match purpose {
            SyncPurpose::Digest => "digest_sent",
            SyncPurpose::Value { .. } => "value_sent",
            SyncPurpose::Latest => "latest_sent",
        };
        self.metric(Metric::Sync { kind });
        self.outputs.push_back(Output::SyncRequest { peer, request_id, request });
        true
    }

    // ---- recovery of the next broadcast seq (module `recovery`) ----

    /// Asks every connected member not asked yet for this node's latest delivered instance.
    fn recovery_ask(&mut self) {
        let asks = self.recovery.ask_new(self.connected.iter(), self.committee.members(), &self.me);
        for key in asks {
            if !self.send_sync(Peer::Key(key), SyncRequest::Latest { origin: self.me }, SyncPurpose::Latest) {
                self.recovery.failed(&key);
            }
        }
    }

    /// Ends the wait when it may end, and says how.
    fn recovery_settle(&mut self, now_ms: u64) {
        let caught_up = self.bracha.as_ref().and_then(|b| b.low_watermark(&self.me)).is_none_or(|low| low >= self.own_floor);
        if let Some(settled) = self.recovery.settle(now_ms, caught_up) {
            self.metric(Metric::Sync { kind: settled.label() });
        }
    }

    /// `from`'s answer to [`SyncRequest::Latest`]: a certificate of an own instance is
    /// checked as a job (it counts once verified); anything else of a peer that could have
    /// checked it costs that peer and is asked again later. An answer arriving after the
    /// wait ended is still checked: a certified seq is never handed out again.
    fn recovery_answer(&mut self, from: PublicKey, answer: Option<SyncedDelivery>, now_ms: u64) {
        let Some(delivery) = answer else {
            self.recovery.answered(from, None);
            self.recovery_settle(now_ms);
            return;
        };
        let certificate = match Certificate::decode(&delivery.certificate, MAX_ENVELOPE_LEN) {
            Ok(c) if c.instance.origin == self.me => c,
            _ => {
                self.recovery.failed(&from);
                self.penalise(from, Event::Malformed, now_ms);
                return;
            }
        };
        if Digest::of(&delivery.value) != certificate.digest {
            self.recovery.failed(&from);
            self.penalise(from, Event::BadHash, now_ms);
            return;
        }
        if self.line_full(Line::Bracha) {
            self.metric(Metric::Message { kind: "sync", outcome: "overloaded" });
            self.recovery.failed(&from);
            return;
        }
        self.recovery.answered(from, Some(certificate.instance.seq));
        self.submit(Job {
            line: Line::Bracha,
            origin: Origin::Sync,
            from: Some(from),
            work: Work::Certificate {
                certificate: Box::new(certificate),
                value: delivery.value,
                committee: self.committee.clone(),
                network: self.network,
            },
        });
    }

    /// A verified certificate proves own instance `seq` was delivered: never hand out `seq`
    /// or a lower one again, and move the own window up to `seq + 1 - window` (an honest
    /// origin broadcasts `seq` only while its window holds it, so every lower seq was
    /// delivered) so that sync fills the rest of the window and the next seq fits in it.
    fn learned_own_seq(&mut self, seq: u64) {
        let Some(bracha) = self.bracha.as_mut() else { return };
        // In memory only: the next broadcast stores the counter with its SEND. Storing it
        // now would make a restart "fill" every seq below it that has no stored SEND with an
        // empty value, a second SEND for seqs this node used before it lost its store.
        self.next_broadcast_seq = self.next_broadcast_seq.max(seq.saturating_add(1));
        self.own_floor = self.own_floor.max(seq.saturating_add(1));
        if let Some(window) = bracha.window(&self.me) {
            let low = seq.saturating_add(1).saturating_sub(window.end - window.start);
            let _ = bracha.set_low_watermark(&self.me, low);
        }
    }

    /// Sends a digest of what this node has to a random connected peer.
    fn start_sync(&mut self, now_ms: u64) {
        let candidates: Vec<Peer> = self.connected.iter().filter(|p| p.key().is_some()).cloned().collect();
        if candidates.is_empty() {
            return;
        }
        let peer = candidates[(self.rng.next_u64() % candidates.len() as u64) as usize].clone();
        let mut bracha: Vec<OriginMark> = match (self.bracha.as_ref(), self.certified.as_ref()) {
            (Some(machine), _) => self
                .committee
                .members()
                .iter()
                .filter_map(|origin| machine.low_watermark(origin).map(|next| OriginMark { origin: *origin, next }))
                .collect(),
            (None, Some(log)) => log.marks().map(|(origin, next)| OriginMark { origin, next }).collect(),
            (None, None) => Vec::new(),
        };
        bracha.truncate(MAX_DIGEST_ORIGINS / 2);
        // Gossip: the marks and gaps of every tracked origin, newest gaps first, at most
        // MAX_DIGEST_GAPS in all (the rest are asked for in later rounds).
        let mut gossip: Vec<GossipMark> = self
            .held_gossip
            .wants(self.oldest_served_gossip_ms(now_ms))
            .map(|(origin, Wants { next, gaps })| GossipMark { origin, next, gaps })
            .collect();
        gossip.sort_by_key(|m| m.origin);
        gossip.truncate(MAX_DIGEST_ORIGINS / 2);
        let mut room = MAX_DIGEST_GAPS;
        for mark in &mut gossip {
            mark.gaps.truncate(room);
            room -= mark.gaps.len();
        }
        self.send_sync(peer, SyncRequest::Digest { bracha, gossip }, SyncPurpose::Digest);
    }

    /// The oldest signing time of gossip this node serves to sync or asks for: the live
    /// gossip window. A requester remembers the id of what it admitted for that long (and a
    /// restarted one, as long, from its store), so an older envelope could be delivered twice.
    fn oldest_served_gossip_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.admission.config().replay.max_age_ms)
    }

    /// A sync request from `from`; the engine answers [`Output::SyncServe`] or
    /// [`Output::SyncRefuse`] with `token`. Before anything is planned: the request is charged
    /// to the peer's sync budget in the reputation layer (over it: refused and penalised; a
    /// graylisted or banned peer is refused), and at most [`MAX_SYNC_SERVING`] plans run at
    /// once. A plan's work is bounded (`sync` module); the driver runs it off its event loop
    /// and reports it done with [`Engine::handle_sync_served`].
    pub fn handle_sync_request(&mut self, now_ms: u64, from: Peer, token: u64, request: SyncRequest) {
        self.heard_from(&from, now_ms);
        let Some(key) = from.key() else {
            return self.refuse_sync(token, "refused_unknown_peer");
        };
        if !request.within_bounds() {
            self.penalise(key, Event::Malformed, now_ms);
            return self.refuse_sync(token, "refused_malformed");
        }
        let cost = match request {
            SyncRequest::Digest { .. } => 1.0,
            SyncRequest::Value { .. } | SyncRequest::Latest { .. } => byzgossip_reputation::SYNC_VALUE_COST,
        };
        let allowed = self.admission.allow_sync(key, cost, now_ms);
        self.drain_status_changes(now_ms);
        if let Err(refusal) = allowed {
            return self.refuse_sync(token, refusal.label());
        }
        if self.serving.len() >= MAX_SYNC_SERVING {
            return self.refuse_sync(token, "refused_busy");
        }
        self.serving.insert(token);
        let plan = match request {
            SyncRequest::Value { origin, seq, digest } => {
                self.metric(Metric::Sync { kind: "value_served" });
                let instance = InstanceId { origin, seq };
                let held = self.bracha.as_ref().and_then(|b| b.value(&instance, &digest)).map(<[u8]>::to_vec);
                ServePlan::value(origin, seq, digest, held)
            }
            SyncRequest::Latest { origin } => {
                self.metric(Metric::Sync { kind: "latest_served" });
                let held = self.bracha.as_ref().and_then(|b| {
                    b.delivered_since(&origin, 0).last().map(|(instance, r)| {
                        (instance.seq, SyncedDelivery { certificate: r.certificate.encode(), value: r.value.clone() })
                    })
                });
                ServePlan::latest(origin, held)
            }
            SyncRequest::Digest { bracha, gossip } => {
                self.metric(Metric::Sync { kind: "digest_served" });
                let theirs: HashMap<PublicKey, u64> = bracha.iter().map(|m| (m.origin, m.next)).collect();
                let wants: HashMap<PublicKey, Wants> =
                    gossip.into_iter().map(|m| (m.origin, Wants { next: m.next, gaps: m.gaps })).collect();
                let (mut items, mut bytes) = (0usize, 0usize);
                let mut envelopes = Vec::new();
                for envelope in self.recent_gossip.missing(&wants, self.oldest_served_gossip_ms(now_ms)) {
                    if items >= MAX_SYNC_ITEMS || bytes + envelope.len() > SYNC_RESPONSE_BUDGET {
                        break;
                    }
                    items += 1;
                    bytes += envelope.len();
                    envelopes.push(envelope.clone());
                }
                ServePlan::catchup(theirs, self.committee.members().to_vec(), envelopes, self.evidence_for_sync())
            }
        };
        self.outputs.push_back(Output::SyncServe { token, plan });
    }

    /// Evidence to offer in a catch-up response: every kept proof, at most
    /// [`MAX_SYNC_EVIDENCE`] from a random starting member (so with more excluded members
    /// than that, each is offered in turn).
    fn evidence_for_sync(&mut self) -> Vec<Vec<u8>> {
        if self.evidence.is_empty() {
            return Vec::new();
        }
        let skip = if self.evidence.len() > MAX_SYNC_EVIDENCE { (self.rng.next_u64() % self.evidence.len() as u64) as usize } else { 0 };
        self.evidence.values().cycle().skip(skip).take(self.evidence.len().min(MAX_SYNC_EVIDENCE)).cloned().collect()
    }

    /// The driver ran the serving plan of `token` (or gave up on it): its slot frees.
    pub fn handle_sync_served(&mut self, _now_ms: u64, token: u64) {
        self.serving.remove(&token);
    }

    /// Serving plans the driver holds now (at most [`MAX_SYNC_SERVING`]).
    pub fn sync_serving(&self) -> usize {
        self.serving.len()
    }

    fn refuse_sync(&mut self, token: u64, kind: &'static str) {
        self.metric(Metric::Sync { kind });
        self.outputs.push_back(Output::SyncRefuse { token });
    }

    /// The answer to sync request `request_id` from `from` (`None`: it failed).
    pub fn handle_sync_response(&mut self, now_ms: u64, from: Peer, request_id: u64, response: Option<SyncResponse>) {
        let purpose = self.sync_requests.remove(&request_id);
        let Some(response) = response else {
            self.metric(Metric::Sync { kind: "failed" });
            if let (Some(SyncPurpose::Latest), Some(key)) = (purpose, from.key()) {
                self.recovery.failed(&key);
            }
            return;
        };
        self.heard_from(&from, now_ms);
        let Some(from) = from.key() else { return };
        match (purpose, response) {
            (Some(SyncPurpose::Latest), SyncResponse::Latest(answer)) => self.recovery_answer(from, answer, now_ms),
            (Some(SyncPurpose::Latest), _) => self.recovery.failed(&from),
            (Some(SyncPurpose::Value { instance }), SyncResponse::Value(Some(value))) => {
                if let Some(bracha) = self.bracha.as_mut() {
                    let step = bracha.supply_value(&instance, value.into_vec(), now_ms);
                    self.apply_step(step, now_ms);
                }
            }
            (Some(SyncPurpose::Digest), SyncResponse::Catchup { deliveries, gossip, evidence }) => {
                for bytes in evidence {
                    self.synced_evidence(from, &bytes, now_ms);
                }
                for delivery in deliveries {
                    self.synced_delivery(from, delivery.certificate, delivery.value, now_ms);
                }
                for bytes in gossip {
                    match self.admission.precheck_sync(from, &bytes, now_ms) {
                        Ok(pending) => {
                            let line = if pending.envelope().header().kind == Kind::Gossip { Line::Gossip } else { Line::Bracha };
                            if self.line_full(line) {
                                self.metric(Metric::Message { kind: "sync", outcome: "overloaded" });
                                continue;
                            }
                            self.submit(Job { line, origin: Origin::Sync, from: Some(from), work: Work::Envelope(Box::new(pending)) });
                        }
                        Err(verdict) => {
                            // A copy of gossip admitted before (its id, a hash over the
                            // header, is remembered): held, so its gap is not asked again.
                            if matches!(verdict, Verdict::Ignore(IgnoreReason::Duplicate))
                                && let Ok(envelope) = codec::decode_envelope(&bytes, self.max_message_len)
                                && envelope.header().kind == Kind::Gossip
                            {
                                self.held_gossip.insert(envelope.header().origin, envelope.header().seq, now_ms);
                            }
                            self.metric(Metric::Message { kind: "sync", outcome: verdict.label() });
                        }
                    }
                }
                self.drain_status_changes(now_ms);
            }
            _ => {}
        }
    }

    /// Evidence from sync: decoded and checked cheaply here (a malformed proof costs the peer
    /// that served it), the signatures in a job; evidence against a member already excluded
    /// is not checked again.
    fn synced_evidence(&mut self, from: PublicKey, bytes: &[u8], now_ms: u64) {
        let evidence = match Evidence::decode(bytes, MAX_ENVELOPE_LEN) {
            Ok(evidence) => evidence,
            Err(_) => {
                self.metric(Metric::Sync { kind: "evidence_malformed" });
                self.penalise(from, Event::Malformed, now_ms);
                return;
            }
        };
        let offender = evidence.offender();
        if matches!(self.admission.reputation().status(&offender, now_ms), PeerStatus::Excluded { .. }) {
            return;
        }
        if self.line_full(Line::Bracha) {
            self.metric(Metric::Message { kind: "sync", outcome: "overloaded" });
            return;
        }
        self.submit(Job {
            line: Line::Bracha,
            origin: Origin::Sync,
            from: Some(from),
            work: Work::Evidence { evidence: Box::new(evidence), committee: self.committee.clone(), network: self.network, gossip: false },
        });
    }

    /// A certificate and value from sync: cheap checks here, the signatures in a job.
    fn synced_delivery(&mut self, from: PublicKey, certificate: Vec<u8>, value: Vec<u8>, now_ms: u64) {
        let Ok(certificate) = Certificate::decode(&certificate, MAX_ENVELOPE_LEN) else {
            self.penalise(from, Event::Malformed, now_ms);
            return;
        };
        if Digest::of(&value) != certificate.digest {
            self.penalise(from, Event::BadHash, now_ms);
            return;
        }
        // Already delivered here (or, at an observer, being checked): nothing to check.
        if self.bracha.as_ref().is_some_and(|b| {
            b.retained(&certificate.instance).is_some()
                || b.low_watermark(&certificate.instance.origin).is_some_and(|low| certificate.instance.seq < low)
        }) {
            return;
        }
        if self.certified.as_ref().is_some_and(|log| log.position(&certificate.instance) != Position::Open) {
            return;
        }
        if self.line_full(Line::Bracha) {
            self.metric(Metric::Message { kind: "sync", outcome: "overloaded" });
            return;
        }
        if let Some(log) = self.certified.as_mut() {
            log.begin_check(&certificate.instance);
        }
        self.submit(Job {
            line: Line::Bracha,
            origin: Origin::Sync,
            from: Some(from),
            work: Work::Certificate { certificate: Box::new(certificate), value, committee: self.committee.clone(), network: self.network },
        });
    }
}
