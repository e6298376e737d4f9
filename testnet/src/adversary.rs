//! The adversary library. Every adversary is a real node (a [`NodeBuilder`] with an
//! [`Interceptor`]) plus, for active attacks, a driver task that puts hand-made bytes on the
//! wire through [`NodeHandle::publish_raw`]. No attack code lives in the node crate.
//!
//! - Passive attacks live in [`AgentInterceptor`]: silence, censorship, eclipse, conflicting
//!   votes next to every own vote, capturing envelopes for replay.
//! - Active attacks live in [`drive`]: equivocating SENDs, stale and future timestamps,
//!   forgeries, tampered bodies, malformed and oversize bytes, fake votes, floods, Sybil
//!   messages, replays and the covert flash.
//! - The envelope builders (`forged_*`, `tampered`, `malformed`, ...) are plain functions.
//!
//! Every node of a testnet, honest ones included, gets an [`AgentInterceptor`]; for an honest
//! node it only counts traffic and implements the harness's pause and degrade faults (a
//! degraded node, honest or not, loses and delays what it receives before its role sees it).
//!
//! [`NodeBuilder`]: byzgossip_node::NodeBuilder
//! [`Interceptor`]: byzgossip_node::hooks::Interceptor

use crate::scenario::{Attack as AttackKnobs, Degradation, REFORMED_OFFENCE_S, Role};
use byzgossip_bracha::{InstanceId, Message};
use byzgossip_crypto::codec::{self, MAX_ENVELOPE_LEN};
use byzgossip_crypto::{Digest, Envelope, Header, Keypair, Kind, NetworkId, PublicKey, Signature, WIRE_VERSION};
use byzgossip_node::gossip::GossipBody;
use byzgossip_node::hooks::{Inbound, Interceptor};
use byzgossip_node::{NodeHandle, RawTopic, now_ms};
use byzgossip_node::Peer;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The gossip topic of the workload (every node subscribes to it).
pub const LOAD_TOPIC: &str = "load";
/// Most envelopes a replayer captures.
pub const MAX_CAPTURED: usize = 2000;
/// How far stale and future timestamps are off: far outside the 5 min / 2 s window and its
/// 10 s grace, so each message costs the forwarder the full window penalty.
pub const TIMESTAMP_SKEW_MS: u64 = 20 * 60 * 1000;
/// Seqs used by attackers' own gossip, far from the node's own gossip seqs.
const ATTACK_SEQ_BASE: u64 = 1 << 40;

/// The node a driver talks to; replaced on restart, `None` while killed.
pub type HandleCell = Arc<Mutex<Option<NodeHandle>>>;

/// Reads the current handle of a cell.
pub fn current(cell: &HandleCell) -> Option<NodeHandle> {
    cell.lock().ok().and_then(|h| h.clone())
}

/// State shared by a node's interceptor, its driver and the harness.
pub struct Agent {
    /// The node's role.
    pub role: Role,
    /// The node's key.
    pub keypair: Keypair,
    /// The network.
    pub network: NetworkId,
    /// The attack is on.
    pub armed: AtomicBool,
    /// Pause fault: drop everything in and out.
    pub paused: AtomicBool,
    /// Degrade fault: probability of dropping a received message, in millionths (0: none).
    loss_ppm: AtomicU64,
    /// Degrade fault: milliseconds a received message is held (0: none).
    delay_ms: AtomicU64,
    /// Origins whose messages a censor drops.
    pub censored: Vec<PublicKey>,
    /// Highest SEND seq seen per origin (targets for fake votes and forgeries).
    pub observed: Mutex<HashMap<PublicKey, u64>>,
    /// Captured envelopes for replay, with their topic.
    pub captured: Mutex<Vec<(RawTopic, Vec<u8>)>>,
    /// Traffic counters: messages in, bytes in, messages out, bytes out (own envelopes and
    /// the driver's raw messages that gossipsub accepted for publishing).
    pub traffic: [AtomicU64; 4],
    /// The clock of timestamps the agent signs: the wall clock, or the simulator's virtual
    /// clock (ms since the Unix epoch).
    clock: Option<Arc<AtomicU64>>,
}

impl Agent {
    /// A new agent.
    pub fn new(role: Role, keypair: Keypair, network: NetworkId, censored: Vec<PublicKey>) -> Arc<Agent> {
        Agent::with_clock(role, keypair, network, censored, None)
    }

    /// A new agent whose timestamps come from `clock` (the simulator's virtual time) instead
    /// of the wall clock when it is `Some`.
    pub fn with_clock(
        role: Role,
        keypair: Keypair,
        network: NetworkId,
        censored: Vec<PublicKey>,
        clock: Option<Arc<AtomicU64>>,
    ) -> Arc<Agent> {
        Arc::new(Agent {
            role,
            keypair,
            network,
            armed: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            loss_ppm: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            censored,
            observed: Mutex::new(HashMap::new()),
            captured: Mutex::new(Vec::new()),
            traffic: Default::default(),
            clock,
        })
    }

    /// Now, by the agent's clock (ms since the Unix epoch).
    pub fn now_ms(&self) -> u64 {
        match &self.clock {
            Some(clock) => clock.load(Ordering::Relaxed),
            None => now_ms(),
        }
    }

    /// Whether the attack is on.
    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    /// Sets (or with `None` clears) the inbound loss and delay of the degrade fault.
    pub fn set_degradation(&self, degradation: Option<Degradation>) {
        let d = degradation.unwrap_or(Degradation { loss: 0.0, delay_ms: 0 });
        self.loss_ppm.store((d.loss.clamp(0.0, 1.0) * 1e6).round() as u64, Ordering::Relaxed);
        self.delay_ms.store(d.delay_ms, Ordering::Relaxed);
    }

    /// The next seq after the highest observed SEND of `origin`.
    pub fn next_seq(&self, origin: &PublicKey) -> u64 {
        self.observed.lock().ok().and_then(|m| m.get(origin).copied()).map_or(0, |s| s + 1)
    }
}

/// The interceptor every testnet node runs (see the module docs).
pub struct AgentInterceptor {
    agent: Arc<Agent>,
    rng: ChaCha20Rng,
    /// Draws of the degrade fault's loss, apart from the attack's randomness so that a
    /// degradation does not change what an attacker sends.
    loss_rng: ChaCha20Rng,
}

impl AgentInterceptor {
    /// An interceptor for `agent`, its randomness from `seed`.
    pub fn new(agent: Arc<Agent>, seed: u64) -> AgentInterceptor {
        AgentInterceptor { agent, rng: ChaCha20Rng::seed_from_u64(seed), loss_rng: ChaCha20Rng::seed_from_u64(seed ^ 0x1055_0000_0000_1055) }
    }

    /// The degrade fault on one received message: `Drop` with the loss probability, else
    /// `Delay` by the configured delay, else `Process`.
    fn degraded(&mut self) -> Inbound {
        let loss_ppm = self.agent.loss_ppm.load(Ordering::Relaxed);
        if loss_ppm > 0 && (loss_ppm >= 1_000_000 || self.loss_rng.random_range(0..1_000_000) < loss_ppm) {
            return Inbound::Drop;
        }
        match self.agent.delay_ms.load(Ordering::Relaxed) {
            0 => Inbound::Process,
            ms => Inbound::Delay(Duration::from_millis(ms)),
        }
    }
}

/// The instance a Bracha envelope is about.
fn instance_of(envelope: &Envelope) -> Option<InstanceId> {
    Message::from_envelope(envelope, MAX_ENVELOPE_LEN).ok().map(|m| *m.instance())
}

impl Interceptor for AgentInterceptor {
    fn outgoing(&mut self, envelope: &Envelope) -> Vec<Vec<u8>> {
        let agent = &self.agent;
        let bytes = codec::encode_envelope(envelope);
        if agent.paused.load(Ordering::Relaxed) {
            return vec![];
        }
        let armed = agent.is_armed();
        let mut out = vec![bytes];
        match agent.role {
            Role::Silent | Role::Eclipse if armed => out.clear(),
            Role::Censor if armed && instance_of(envelope).is_some_and(|i| agent.censored.contains(&i.origin)) => out.clear(),
            Role::EquivocateVote | Role::CovertFlash if armed => {
                if let Some(conflict) = conflicting_vote_at(envelope, &agent.keypair, agent.network, &mut self.rng, agent.now_ms()) {
                    out.push(conflict);
                }
            }
            _ => {}
        }
        for b in &out {
            agent.traffic[2].fetch_add(1, Ordering::Relaxed);
            agent.traffic[3].fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        out
    }

    fn inbound(&mut self, _from: &Peer, bytes: &[u8]) -> Inbound {
        self.agent.traffic[0].fetch_add(1, Ordering::Relaxed);
        self.agent.traffic[1].fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if self.agent.paused.load(Ordering::Relaxed) {
            return Inbound::Drop;
        }
        // The degraded link loses the message before the node (and its role) sees it.
        let link = self.degraded();
        if link == Inbound::Drop {
            return link;
        }
        match self.role_inbound(bytes) {
            Inbound::Process => link,
            other => other,
        }
    }

    fn sync_response(&mut self, _from: &Peer) -> Inbound {
        // A paused node takes in nothing, sync answers included (as a SIGSTOPped process).
        if self.agent.paused.load(Ordering::Relaxed) {
            return Inbound::Drop;
        }
        self.degraded()
    }
}

impl AgentInterceptor {
    /// What the node's role does with a received message.
    fn role_inbound(&mut self, bytes: &[u8]) -> Inbound {
        let agent = &self.agent;
        let armed = agent.is_armed();
        if matches!(agent.role, Role::Silent | Role::Eclipse) && armed {
            return Inbound::Drop;
        }
        if agent.role.correct() {
            return Inbound::Process;
        }
        let Ok(envelope) = codec::decode_envelope(bytes, MAX_ENVELOPE_LEN) else { return Inbound::Process };
        let header = *envelope.header();
        if header.kind == Kind::BrachaSend
            && let Ok(mut observed) = agent.observed.lock()
        {
            let entry = observed.entry(header.origin).or_insert(header.seq);
            *entry = (*entry).max(header.seq);
        }
        match agent.role {
            Role::Censor if armed => {
                let about = if header.kind == Kind::Gossip { Some(header.origin) } else { instance_of(&envelope).map(|i| i.origin) };
                if about.is_some_and(|o| agent.censored.contains(&o)) || agent.censored.contains(&header.origin) {
                    return Inbound::Drop;
                }
            }
            Role::Replay if !armed => {
                if let Ok(mut captured) = agent.captured.lock()
                    && captured.len() < MAX_CAPTURED
                    && header.origin != agent.keypair.public()
                {
                    let topic = match header.kind {
                        Kind::Gossip => GossipBody::decode(envelope.body(), MAX_ENVELOPE_LEN).map(|b| RawTopic::Gossip(b.topic)),
                        _ => Some(RawTopic::Bracha),
                    };
                    if let Some(topic) = topic {
                        captured.push((topic, bytes.to_vec()));
                    }
                }
            }
            _ => {}
        }
        Inbound::Process
    }
}

// ---- envelope builders ----

fn random_bytes<R: Rng + ?Sized>(rng: &mut R, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// A gossip envelope on `topic`, signed by `keypair`, with any timestamp.
pub fn gossip_envelope(keypair: &Keypair, network: NetworkId, seq: u64, timestamp_ms: u64, topic: &str, payload: Vec<u8>) -> Envelope {
    let body = GossipBody { topic: topic.to_owned(), payload }.encode();
    Envelope::seal(keypair, network, Kind::Gossip, seq, timestamp_ms, body).expect("small body")
}

/// A header for `body` claiming `origin`.
fn header_for(network: NetworkId, kind: Kind, origin: PublicKey, seq: u64, timestamp_ms: u64, body: &[u8]) -> Header {
    Header {
        version: WIRE_VERSION,
        network,
        kind,
        origin,
        seq,
        timestamp_ms,
        body_len: body.len() as u32,
        body_hash: Digest::of(body),
    }
}

/// A gossip envelope claiming `claimed` as its origin, signed by `signer` (so the signature
/// does not verify): a forgery meant to frame `claimed`.
pub fn forged_gossip(signer: &Keypair, claimed: PublicKey, network: NetworkId, seq: u64, topic: &str, payload: Vec<u8>) -> Vec<u8> {
    forged_gossip_at(signer, claimed, network, seq, topic, payload, now_ms())
}

/// [`forged_gossip`] with the timestamp `timestamp_ms`.
pub fn forged_gossip_at(
    signer: &Keypair,
    claimed: PublicKey,
    network: NetworkId,
    seq: u64,
    topic: &str,
    payload: Vec<u8>,
    timestamp_ms: u64,
) -> Vec<u8> {
    let body = GossipBody { topic: topic.to_owned(), payload }.encode();
    let header = header_for(network, Kind::Gossip, claimed, seq, timestamp_ms, &body);
    let signature = signer.sign(&header.signing_bytes());
    codec::encode_raw(&header, &body, &signature)
}

/// A Bracha SEND for `(claimed, seq)` with `value`, signed by `signer` instead of `claimed`.
pub fn forged_send(signer: &Keypair, claimed: PublicKey, network: NetworkId, seq: u64, value: Vec<u8>) -> Vec<u8> {
    forged_send_at(signer, claimed, network, seq, value, now_ms())
}

/// [`forged_send`] with the timestamp `timestamp_ms`.
pub fn forged_send_at(signer: &Keypair, claimed: PublicKey, network: NetworkId, seq: u64, value: Vec<u8>, timestamp_ms: u64) -> Vec<u8> {
    let message = Message::Send { instance: InstanceId { origin: claimed, seq }, value };
    let body = message.encode_body();
    let header = header_for(network, Kind::BrachaSend, claimed, seq, timestamp_ms, &body);
    let signature = signer.sign(&header.signing_bytes());
    codec::encode_raw(&header, &body, &signature)
}

/// `envelope` with its body changed after signing: either the body alone (the header's hash
/// no longer matches) or body and hash (the signature no longer matches).
pub fn tampered<R: Rng + ?Sized>(envelope: &Envelope, rng: &mut R) -> Vec<u8> {
    let mut body = envelope.body().to_vec();
    if body.is_empty() {
        body.push(0);
    }
    let at = rng.random_range(0..body.len());
    body[at] ^= 0x5a;
    let mut header = *envelope.header();
    if rng.random_bool(0.5) {
        header.body_hash = Digest::of(&body);
    }
    codec::encode_raw(&header, &body, envelope.signature())
}

/// Garbage: random bytes, a truncated or bit-flipped valid frame, or an oversize frame
/// (over the 256 KiB admission limit but under gossipsub's transmit limit, so it reaches
/// admission).
pub fn malformed<R: Rng + ?Sized>(rng: &mut R, valid: &Envelope, oversize: usize) -> Vec<u8> {
    let frame = codec::encode_envelope(valid);
    match rng.random_range(0..4u8) {
        0 => {
            let len = rng.random_range(1..600);
            random_bytes(rng, len)
        }
        1 => frame[..rng.random_range(1..frame.len())].to_vec(),
        2 => {
            let mut f = frame;
            let at = rng.random_range(0..f.len());
            f[at] ^= 1 << rng.random_range(0..8);
            f
        }
        _ => random_bytes(rng, oversize),
    }
}

/// A second vote next to `envelope` (an own ECHO or READY) for a random digest: proof of
/// equivocation once both are seen.
pub fn conflicting_vote<R: Rng + ?Sized>(envelope: &Envelope, keypair: &Keypair, network: NetworkId, rng: &mut R) -> Option<Vec<u8>> {
    conflicting_vote_at(envelope, keypair, network, rng, now_ms())
}

/// [`conflicting_vote`] with the timestamp `timestamp_ms`.
pub fn conflicting_vote_at<R: Rng + ?Sized>(
    envelope: &Envelope,
    keypair: &Keypair,
    network: NetworkId,
    rng: &mut R,
    timestamp_ms: u64,
) -> Option<Vec<u8>> {
    let message = Message::from_envelope(envelope, MAX_ENVELOPE_LEN).ok()?;
    let digest = Digest(random_bytes(rng, 32).try_into().ok()?);
    let conflict = match message {
        Message::Echo { instance, .. } => Message::Echo { instance, digest },
        Message::Ready { instance, .. } => Message::Ready { instance, digest },
        Message::Send { .. } => return None,
    };
    let sealed = conflict.seal(keypair, network, timestamp_ms).ok()?;
    Some(codec::encode_envelope(&sealed))
}

/// An ECHO or READY for a random digest in `instance`.
pub fn fake_vote<R: Rng + ?Sized>(keypair: &Keypair, network: NetworkId, instance: InstanceId, ready: bool, rng: &mut R) -> Vec<u8> {
    fake_vote_at(keypair, network, instance, ready, rng, now_ms())
}

/// [`fake_vote`] with the timestamp `timestamp_ms`.
pub fn fake_vote_at<R: Rng + ?Sized>(
    keypair: &Keypair,
    network: NetworkId,
    instance: InstanceId,
    ready: bool,
    rng: &mut R,
    timestamp_ms: u64,
) -> Vec<u8> {
    let digest = Digest(random_bytes(rng, 32).try_into().unwrap_or([0; 32]));
    let message = if ready { Message::Ready { instance, digest } } else { Message::Echo { instance, digest } };
    message.seal(keypair, network, timestamp_ms).map(|e| codec::encode_envelope(&e)).unwrap_or_default()
}

/// A SEND signed by its origin.
pub fn signed_send(keypair: &Keypair, network: NetworkId, seq: u64, timestamp_ms: u64, value: Vec<u8>) -> Vec<u8> {
    let message = Message::Send { instance: InstanceId { origin: keypair.public(), seq }, value };
    message.seal(keypair, network, timestamp_ms).map(|e| codec::encode_envelope(&e)).unwrap_or_default()
}

// ---- drivers ----

/// What a driver needs besides its agent.
pub struct DriverContext {
    /// The node (current incarnation).
    pub node: HandleCell,
    /// Keys of honest members (targets of forgeries and fake votes).
    pub honest: Vec<PublicKey>,
    /// The scenario's attack knobs (rates, Sybil keys).
    pub knobs: AttackKnobs,
    /// Admission decode limit (oversize garbage is just over it).
    pub max_message_len: usize,
    /// Randomness seed.
    pub seed: u64,
}

/// Ticks of an attack driver: each tick sends the messages due by then.
pub const DRIVER_TICK: Duration = Duration::from_millis(20);

/// The state of one active attack: what bytes to put on the wire at each tick. Both runtimes
/// run the same attack code through it: [`drive`] calls [`Attack::step`] from a tokio
/// interval in real time, the simulator from timer events in virtual time.
pub struct Attack {
    agent: Arc<Agent>,
    honest: Vec<PublicKey>,
    rate: f64,
    /// Keys a `sybil-keys` node signs with, in turn (empty for other roles).
    sybil_keys: Vec<Keypair>,
    max_message_len: usize,
    rng: ChaCha20Rng,
    sent: u64,
    seq: u64,
    own_send_seq: u64,
    flashed: bool,
    replay_at: usize,
    reoffend_at_s: f64,
    /// When a `reformed` attacker's second offence began (attack time, s): the first step
    /// at or after `reoffend_at_s` at which it is connected to every honest member again.
    reoffended_at_s: Option<f64>,
    equivocate_s: f64,
}

impl Attack {
    /// The attack of `agent` (its randomness from `seed`); `None` for a role without an active
    /// part or a rate of zero.
    pub fn new(agent: Arc<Agent>, honest: Vec<PublicKey>, knobs: &AttackKnobs, max_message_len: usize, seed: u64) -> Option<Attack> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let (rate, sybil_keys) = match agent.role {
            Role::Flood => (knobs.flood_per_s, vec![]),
            Role::BudgetFlood => (knobs.budget_flood_per_s, vec![]),
            Role::SyncFlood => (knobs.sync_flood_per_s, vec![]),
            Role::SybilKeys => {
                let keys: Vec<Keypair> = (0..knobs.sybil_keys).map(|_| Keypair::generate(&mut rng)).collect();
                (knobs.sybil_key_rate_per_s * keys.len() as f64, keys)
            }
            _ => (knobs.rate_per_s, vec![]),
        };
        if rate <= 0.0 {
            return None;
        }
        Some(Attack {
            agent,
            honest,
            rate,
            sybil_keys,
            max_message_len,
            rng,
            sent: 0,
            seq: ATTACK_SEQ_BASE,
            own_send_seq: 0,
            flashed: false,
            replay_at: 0,
            reoffend_at_s: knobs.reoffend_at_s,
            reoffended_at_s: None,
            equivocate_s: knobs.equivocate_s,
        })
    }

    /// Whether the next [`Attack::step`] needs to know if this node is connected to every
    /// honest member (a `reformed` attacker waiting to offend again once readmitted: at a
    /// fixed time, the second offence could come before its redial after the first ban, under
    /// load, and then never reach anyone).
    pub fn wants_readmission(&self, elapsed_s: f64) -> bool {
        self.agent.role == Role::Reformed && self.reoffended_at_s.is_none() && elapsed_s >= self.reoffend_at_s
    }

    /// The honest members this attack targets.
    pub fn honest(&self) -> &[PublicKey] {
        &self.honest
    }

    /// The messages due `elapsed_s` seconds after the attack started, stamped `now_ms`;
    /// `None` when the role has no active part (the driver stops). `readmitted`: whether
    /// this node is connected to every honest member now (asked only when
    /// [`Attack::wants_readmission`]).
    pub fn step(&mut self, elapsed_s: f64, now_ms: u64, readmitted: bool) -> Option<Vec<(RawTopic, Vec<u8>)>> {
        if self.wants_readmission(elapsed_s) && readmitted {
            self.reoffended_at_s = Some(elapsed_s);
        }
        let due = (elapsed_s * self.rate) as u64;
        let agent = self.agent.clone();
        let (key, net) = (&agent.keypair, agent.network);
        let rng = &mut self.rng;
        let mut batch: Vec<(RawTopic, Vec<u8>)> = Vec::new();
        while self.sent < due {
            self.sent += 1;
            self.seq += 1;
            let (sent, seq) = (self.sent, self.seq);
            let victim = self.honest[rng.random_range(0..self.honest.len())];
            let payload = random_bytes(rng, 64);
            match agent.role {
                Role::EquivocateOrigin => {
                    // Two values for one seq; the second SEND follows the first at once.
                    let equivocating = self.equivocate_s <= 0.0 || (sent as f64) / self.rate <= self.equivocate_s;
                    if equivocating && sent.is_multiple_of(10) {
                        let s = self.own_send_seq;
                        self.own_send_seq += 1;
                        batch.push((RawTopic::Bracha, signed_send(key, net, s, now_ms, random_bytes(rng, 64))));
                        batch.push((RawTopic::Bracha, signed_send(key, net, s, now_ms, random_bytes(rng, 64))));
                    }
                }
                Role::StaleTimestamp | Role::FutureTimestamp => {
                    let ts = if agent.role == Role::StaleTimestamp { now_ms - TIMESTAMP_SKEW_MS } else { now_ms + TIMESTAMP_SKEW_MS };
                    let e = gossip_envelope(key, net, seq, ts, LOAD_TOPIC, payload);
                    batch.push((RawTopic::Gossip(LOAD_TOPIC.into()), codec::encode_envelope(&e)));
                    if sent.is_multiple_of(5) {
                        batch.push((RawTopic::Bracha, signed_send(key, net, 1_000 + seq % 16, ts, random_bytes(rng, 32))));
                    }
                }
                Role::Forge => forge_one(&mut batch, &agent, victim, seq, payload, rng, now_ms),
                Role::Tamper => {
                    let e = gossip_envelope(key, net, seq, now_ms, LOAD_TOPIC, payload);
                    batch.push((RawTopic::Gossip(LOAD_TOPIC.into()), tampered(&e, rng)));
                }
                Role::Reformed => {
                    // The message's own time decides: offences in two windows, honest
                    // (nothing extra sent) in between and after; the second one starts once
                    // the node is readmitted at `reoffend_at_s` or later.
                    let at = (sent as f64) / self.rate;
                    let offending = at < REFORMED_OFFENCE_S
                        || self.reoffended_at_s.is_some_and(|t| at >= t && at < t + REFORMED_OFFENCE_S);
                    if offending {
                        // A body that no longer matches its hash: refused at decode, so each
                        // one costs the sender even once it is graylisted, and it is banned.
                        let e = gossip_envelope(key, net, seq, now_ms, LOAD_TOPIC, payload);
                        let mut body = e.body().to_vec();
                        body[0] ^= 0x5a;
                        batch.push((RawTopic::Gossip(LOAD_TOPIC.into()), codec::encode_raw(e.header(), &body, e.signature())));
                    }
                }
                Role::Malformed => {
                    let e = gossip_envelope(key, net, seq, now_ms, LOAD_TOPIC, payload);
                    let topic = if rng.random_bool(0.5) { RawTopic::Bracha } else { RawTopic::Gossip(LOAD_TOPIC.into()) };
                    batch.push((topic, malformed(rng, &e, self.max_message_len + 256)));
                }
                Role::FakeVotes | Role::Sybil => {
                    let next = agent.next_seq(&victim);
                    let instance = InstanceId { origin: victim, seq: next + rng.random_range(0..3) };
                    let ready = rng.random_bool(0.5);
                    batch.push((RawTopic::Bracha, fake_vote_at(key, net, instance, ready, rng, now_ms)));
                    if agent.role == Role::Sybil {
                        let e = gossip_envelope(key, net, seq, now_ms, LOAD_TOPIC, payload);
                        batch.push((RawTopic::Gossip(LOAD_TOPIC.into()), codec::encode_envelope(&e)));
                    }
                }
                Role::Flood | Role::BudgetFlood => {
                    let e = gossip_envelope(key, net, seq, now_ms, LOAD_TOPIC, payload);
                    batch.push((RawTopic::Gossip(LOAD_TOPIC.into()), codec::encode_envelope(&e)));
                }
                Role::SyncFlood => {
                    // No marks: "send me everything from seq 0", the most a digest can ask.
                    let request = byzgossip_node::sync::SyncRequest::Digest { bracha: vec![], gossip: vec![] };
                    batch.push((RawTopic::Sync, codec::encode(&request)));
                }
                Role::SybilKeys => {
                    // The keys take turns, so each signs at `sybil_key_rate_per_s`.
                    let signer = &self.sybil_keys[(sent % self.sybil_keys.len() as u64) as usize];
                    let e = gossip_envelope(signer, net, seq, now_ms, LOAD_TOPIC, payload);
                    batch.push((RawTopic::Gossip(LOAD_TOPIC.into()), codec::encode_envelope(&e)));
                }
                Role::Replay => {
                    let next = agent.captured.lock().ok().and_then(|c| c.get(self.replay_at).cloned());
                    if let Some(item) = next {
                        self.replay_at += 1;
                        batch.push(item);
                    }
                }
                Role::CovertFlash => {
                    // One burst of everything detectable, then the conflicting votes of the
                    // interceptor go on.
                    if !self.flashed {
                        self.flashed = true;
                        for _ in 0..10 {
                            let victim = self.honest[rng.random_range(0..self.honest.len())];
                            self.seq += 1;
                            let payload = random_bytes(rng, 64);
                            forge_one(&mut batch, &agent, victim, self.seq, payload, rng, now_ms);
                            let e = gossip_envelope(key, net, self.seq, now_ms, LOAD_TOPIC, random_bytes(rng, 32));
                            batch.push((RawTopic::Gossip(LOAD_TOPIC.into()), malformed(rng, &e, 600)));
                        }
                    }
                }
                _ => return None,
            }
        }
        batch.retain(|(_, bytes)| !bytes.is_empty());
        Some(batch)
    }

    /// Counts a message the network took for publishing.
    pub fn count_sent(&self, len: usize) {
        self.agent.traffic[2].fetch_add(1, Ordering::Relaxed);
        self.agent.traffic[3].fetch_add(len as u64, Ordering::Relaxed);
    }
}

/// Runs `agent`'s active attack until the task is aborted (the harness aborts it at the end
/// of the attack window). Roles without an active part return at once.
pub async fn drive(agent: Arc<Agent>, ctx: DriverContext) {
    let Some(mut attack) = Attack::new(agent, ctx.honest, &ctx.knobs, ctx.max_message_len, ctx.seed) else {
        return;
    };
    let mut interval = tokio::time::interval(DRIVER_TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = tokio::time::Instant::now();
    loop {
        interval.tick().await;
        let Some(node) = current(&ctx.node) else { continue };
        let elapsed = started.elapsed().as_secs_f64();
        let readmitted = attack.wants_readmission(elapsed) && connected_to_all(&node, attack.honest()).await;
        let Some(batch) = attack.step(elapsed, now_ms(), readmitted) else { return };
        if batch.is_empty() {
            continue;
        }
        // One round trip per tick, not per message (see `NodeHandle::publish_raw_many`).
        let lens: Vec<usize> = batch.iter().map(|(_, bytes)| bytes.len()).collect();
        if let Ok(results) = node.publish_raw_many(batch).await {
            for (len, result) in lens.into_iter().zip(results) {
                if result.is_ok() {
                    attack.count_sent(len);
                }
            }
        }
    }
}

/// Whether `node` has a connection to every key in `keys`.
async fn connected_to_all(node: &NodeHandle, keys: &[PublicKey]) -> bool {
    let Ok(peers) = node.peers().await else { return false };
    keys.iter().all(|key| {
        let id = byzgossip_node::identity::peer_id(key).map(|p| p.to_string());
        peers.iter().any(|p| p.connected && Some(&p.peer_id) == id.as_ref())
    })
}

#[allow(clippy::too_many_arguments)]
fn forge_one<R: Rng + ?Sized>(
    batch: &mut Vec<(RawTopic, Vec<u8>)>,
    agent: &Agent,
    victim: PublicKey,
    seq: u64,
    payload: Vec<u8>,
    rng: &mut R,
    now_ms: u64,
) {
    if rng.random_bool(0.5) {
        batch.push((RawTopic::Gossip(LOAD_TOPIC.into()), forged_gossip_at(&agent.keypair, victim, agent.network, seq, LOAD_TOPIC, payload, now_ms)));
    } else {
        let next = agent.next_seq(&victim);
        let seq = next + rng.random_range(0..2);
        batch.push((RawTopic::Bracha, forged_send_at(&agent.keypair, victim, agent.network, seq, payload, now_ms)));
    }
}

/// A random signature (for tests of the builders).
pub fn random_signature<R: Rng + ?Sized>(rng: &mut R) -> Signature {
    Signature(random_bytes(rng, 64).try_into().unwrap_or([0; 64]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Either it does not decode, or it decodes and does not verify.
    fn refused(decoded: Result<Envelope, byzgossip_crypto::DecodeError>, net: &NetworkId) -> bool {
        decoded.map_or(true, |e| e.verify(net).is_err())
    }

    fn key(b: u8) -> Keypair {
        Keypair::from_secret_bytes(&[b; 32])
    }

    #[test]
    fn degraded_interceptor_drops_with_the_seeded_probability_and_delays_the_rest() {
        let agent = Agent::new(Role::Honest, key(1), NetworkId([9; 32]), vec![]);
        let from = Peer::Key(PublicKey([7; 32]));
        let verdicts = |seed: u64| {
            let mut interceptor = AgentInterceptor::new(agent.clone(), seed);
            (0..2000).map(|_| interceptor.inbound(&from, b"x")).collect::<Vec<_>>()
        };
        assert!(verdicts(1).iter().all(|v| *v == Inbound::Process), "not degraded");
        agent.set_degradation(Some(Degradation { loss: 0.2, delay_ms: 50 }));
        let first = verdicts(1);
        assert_eq!(first, verdicts(1), "the same seed replays the same losses");
        let dropped = first.iter().filter(|v| **v == Inbound::Drop).count();
        assert!((300..500).contains(&dropped), "about 20% of 2000 dropped: {dropped}");
        assert!(first.iter().all(|v| *v == Inbound::Drop || *v == Inbound::Delay(Duration::from_millis(50))), "the rest is delayed");
        agent.set_degradation(Some(Degradation { loss: 1.0, delay_ms: 0 }));
        let mut interceptor = AgentInterceptor::new(agent.clone(), 2);
        assert!((0..100).all(|_| interceptor.inbound(&from, b"x") == Inbound::Drop && interceptor.sync_response(&from) == Inbound::Drop));
        agent.set_degradation(None);
        assert_eq!(interceptor.inbound(&from, b"x"), Inbound::Process);
        assert_eq!(interceptor.sync_response(&from), Inbound::Process);
    }

    #[test]
    fn builders_make_what_admission_must_refuse() {
        let net = NetworkId([9; 32]);
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let (a, b) = (key(1), key(2));
        // A forgery decodes but does not verify.
        let forged = codec::decode_envelope(&forged_gossip(&a, b.public(), net, 1, "t", vec![1]), MAX_ENVELOPE_LEN).expect("decodes");
        assert_eq!(forged.origin(), b.public());
        assert!(forged.verify(&net).is_err());
        let send = codec::decode_envelope(&forged_send(&a, b.public(), net, 3, vec![7]), MAX_ENVELOPE_LEN).expect("decodes");
        assert!(send.verify(&net).is_err());
        // A tampered envelope never decodes and verifies.
        let e = gossip_envelope(&a, net, 1, now_ms(), "t", vec![1, 2, 3]);
        for _ in 0..20 {
            let t = tampered(&e, &mut rng);
            assert!(refused(codec::decode_envelope(&t, MAX_ENVELOPE_LEN), &net));
        }
        // A conflicting vote verifies but has another digest.
        let instance = InstanceId { origin: b.public(), seq: 0 };
        let echo = Message::Echo { instance, digest: Digest::of(b"v") }.seal(&a, net, now_ms()).expect("seal");
        let conflict = codec::decode_envelope(&conflicting_vote(&echo, &a, net, &mut rng).expect("vote"), MAX_ENVELOPE_LEN).expect("decodes");
        assert!(conflict.clone().verify(&net).is_ok());
        assert_ne!(conflict.body(), echo.body());
        let _ = random_signature(&mut rng);
    }
}
