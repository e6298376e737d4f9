//! A deterministic virtual network for testing and benchmarking (feature `sim`; never used by
//! the node). Like hbbft's `VirtualNet`: every honest member runs the real [`Bracha`] state
//! machine and verifies the signature of every envelope it receives (unless the run is
//! unsigned); a seeded scheduler picks which in-flight message is delivered next (random,
//! last-in-first-out, or with some members delayed); Byzantine members follow a scripted
//! [`Strategy`]. Fetches are answered by the members they name (Byzantine ones never answer).
//!
//! The drive loop is bounded ([`SimConfig::max_steps`]): a run that does not settle is an
//! error, which catches livelock. [`VirtualNet::check`] tests agreement, integrity, validity
//! and totality, that no honest member is blamed, and the memory bound.

use crate::config::Thresholds;
use crate::evidence::Evidence;
use crate::machine::Bracha;
use crate::message::{InstanceId, Message, sim_frame_unsigned};
use crate::step::{Fault, Step};
use crate::{Certificate, Config, VerifiedCertificate};
use byzgossip_crypto::{Committee, Digest, Envelope, Keypair, Kind, NetworkId};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// SplitMix64: a tiny seeded generator (no global RNG, no dependency).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next_u64() % den < num
    }

    /// Shuffles in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }

    /// A random digest (for votes on values nobody sent).
    pub fn digest(&mut self) -> Digest {
        Digest(std::array::from_fn(|_| self.next_u64() as u8))
    }
}

/// What the Byzantine members do. All f of them follow the same strategy and coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Never send anything (crash from the start).
    Silent,
    /// Each Byzantine member broadcasts one value to half of the honest members and another
    /// to the other half (sometimes only to a few, sometimes both to one victim), and all
    /// Byzantine members ECHO and READY each half's value to that half.
    EquivocatingOrigin,
    /// On every SEND: ECHO and READY the real digest to one half, a fake digest to the other,
    /// and both ECHOs to one victim.
    EquivocatingVoter,
    /// ECHO and READY digests nobody sent, before and after the real SEND.
    BogusVotes,
    /// READY the real digest on seeing the SEND, without ECHO; READY fake digests for
    /// instances that were never broadcast.
    ReadyWithoutEcho,
    /// Capture every envelope and replay old ones to honest members, during the run and
    /// after the instances were delivered and collected.
    Replay,
    /// Send SENDs and votes for far-future seqs (beyond every window) and a valid instance.
    FloodFuture,
}

impl Strategy {
    /// Every strategy.
    pub const ALL: [Strategy; 7] = [
        Strategy::Silent,
        Strategy::EquivocatingOrigin,
        Strategy::EquivocatingVoter,
        Strategy::BogusVotes,
        Strategy::ReadyWithoutEcho,
        Strategy::Replay,
        Strategy::FloodFuture,
    ];
}

/// How the next in-flight message is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Uniformly at random among all in flight.
    Random,
    /// Mostly the newest first (deep reordering), sometimes random.
    Lifo,
    /// Random, but messages to or from some honest members wait until nothing else is left
    /// (or a 1-in-16 chance).
    DelayNodes,
}

/// One simulation run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Committee size.
    pub n: usize,
    /// Byzantine members (default f = floor((n-1)/3)).
    pub byzantine: usize,
    /// What they do.
    pub strategy: Strategy,
    /// Message order.
    pub schedule: Schedule,
    /// Seed of everything random (keys, roles, order, values).
    pub seed: u64,
    /// Sign and verify every envelope (false: zero signatures, no verification).
    pub signatures: bool,
    /// How many honest members broadcast.
    pub honest_broadcasters: usize,
    /// Instances each broadcaster (honest or Byzantine origin) starts.
    pub instances_per_origin: u64,
    /// Length of honest values.
    pub value_len: usize,
    /// Run the seed design's READY-on-echo rule `floor(n/2)+1` (to show the checks catch it).
    pub seed_thresholds: bool,
    /// The members' configuration.
    pub bracha: Config,
    /// Model the node's sync: when nothing is in flight, members that missed a delivered
    /// instance (for example because its messages arrived beyond their window) get its
    /// certificate and value through [`Bracha::handle_certificate`].
    pub sync: bool,
    /// Bound on delivered messages (livelock detection).
    pub max_steps: usize,
}

impl SimConfig {
    /// Defaults for `n`, `strategy` and `seed`; the schedule is derived from the seed.
    pub fn new(n: usize, strategy: Strategy, seed: u64) -> Self {
        let schedule = match seed % 3 {
            0 => Schedule::Random,
            1 => Schedule::Lifo,
            _ => Schedule::DelayNodes,
        };
        SimConfig {
            n,
            byzantine: n.saturating_sub(1) / 3,
            strategy,
            schedule,
            seed,
            signatures: false,
            honest_broadcasters: 2,
            instances_per_origin: 1,
            value_len: 32,
            seed_thresholds: false,
            sync: false,
            bracha: Config { window: 8, retention_ms: 60_000, fetch_retry_ms: 50, ..Config::default() },
            max_steps: 20_000_000,
        }
    }
}

/// Counters of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Envelopes handed to a member.
    pub messages: u64,
    /// Signature verifications done by honest members.
    pub verifications: u64,
    /// Fetch requests and replies.
    pub fetch_messages: u64,
    /// Deliveries through sync (certificate and value).
    pub synced: u64,
    /// Deliveries by honest members.
    pub deliveries: u64,
    /// Drive-loop steps.
    pub steps: u64,
}

#[derive(Clone, Debug)]
enum Payload {
    Envelope(Envelope),
    FetchRequest(InstanceId, Digest),
    FetchReply(InstanceId, Vec<u8>),
}

#[derive(Clone, Debug)]
struct InFlight {
    from: usize,
    to: usize,
    payload: Payload,
}

/// Honest members' records of a run.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// Per member: instance -> digests delivered (more than one entry is an integrity bug).
    pub delivered: Vec<BTreeMap<InstanceId, Vec<Digest>>>,
    /// Honest broadcasts: instance -> digest of the value.
    pub broadcasts: BTreeMap<InstanceId, Digest>,
    /// Faults reported by honest members: (reporter, fault).
    pub faults: Vec<(usize, Fault)>,
    /// Evidence reported by honest members.
    pub evidence: Vec<(usize, Evidence)>,
    /// One certificate per delivered instance (for checking).
    pub certificates: BTreeMap<InstanceId, Certificate>,
    /// Delivered values, as the node's storage would keep them (for sync).
    pub values: BTreeMap<InstanceId, Vec<u8>>,
}

/// The virtual network.
pub struct VirtualNet {
    /// The run's settings.
    pub config: SimConfig,
    /// The committee.
    pub committee: Committee,
    /// The network id.
    pub network: NetworkId,
    keys: Vec<Keypair>,
    /// Which members are Byzantine.
    pub byzantine: Vec<bool>,
    nodes: Vec<Option<Bracha>>,
    fast: Vec<InFlight>,
    slow_queue: Vec<InFlight>,
    slow: Vec<bool>,
    side_a: Vec<bool>,
    victim: usize,
    rng: Rng,
    /// Virtual time (ms): one per delivered message, jumps when idle.
    pub now_ms: u64,
    captured: Vec<Envelope>,
    reacted: HashSet<(usize, InstanceId)>,
    outstanding: BTreeSet<(usize, InstanceId)>,
    pending: Vec<(usize, u64)>,
    /// What happened.
    pub record: Record,
    /// Counters.
    pub counters: Counters,
}

/// Most envelopes a replaying member keeps.
const MAX_CAPTURED: usize = 4096;
/// Far-future SENDs each flooding member sends (beyond every window).
const FLOOD_PER_MEMBER: u64 = 40;

impl VirtualNet {
    /// Builds the committee (keys from the seed), picks the Byzantine members, halves and
    /// delayed members, and creates the honest state machines.
    pub fn new(config: SimConfig) -> Result<Self, String> {
        let mut rng = Rng::new(config.seed);
        let n = config.n;
        let keys: Vec<Keypair> = (0..n)
            .map(|_| {
                let mut secret = [0u8; 32];
                for chunk in secret.chunks_mut(8) {
                    chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
                }
                Keypair::from_secret_bytes(&secret)
            })
            .collect();
        let f = n.saturating_sub(1) / 3;
        let committee = Committee::new(keys.iter().map(Keypair::public).collect(), f).map_err(|e| e.to_string())?;
        let network = NetworkId(Digest::of(&config.seed.to_be_bytes()).0);
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        let mut byzantine = vec![false; n];
        for &i in order.iter().take(config.byzantine.min(n)) {
            byzantine[i] = true;
        }
        let honest: Vec<usize> = order.iter().copied().filter(|&i| !byzantine[i]).collect();
        let mut side_a = vec![false; n];
        for &i in honest.iter().take(honest.len().div_ceil(2)) {
            side_a[i] = true;
        }
        let victim = honest.first().copied().unwrap_or(0);
        let mut slow = vec![false; n];
        if config.schedule == Schedule::DelayNodes {
            for &i in honest.iter().rev().take(f.max(1)) {
                slow[i] = true;
            }
        }
        let mut nodes = Vec::with_capacity(n);
        for (i, key) in keys.iter().enumerate() {
            if byzantine[i] {
                nodes.push(None);
                continue;
            }
            let mut node = Bracha::new(committee.clone(), key.clone(), network, config.bracha.clone())
                .map_err(|e| e.to_string())?;
            if config.seed_thresholds {
                node.sim_set_thresholds(Thresholds::seed_majority(n, f).map_err(|e| e.to_string())?);
            }
            node.sim_set_unsigned(!config.signatures);
            nodes.push(Some(node));
        }
        Ok(VirtualNet {
            record: Record { delivered: vec![BTreeMap::new(); n], ..Record::default() },
            config,
            committee,
            network,
            keys,
            byzantine,
            nodes,
            fast: Vec::new(),
            slow_queue: Vec::new(),
            slow,
            side_a,
            victim,
            rng,
            now_ms: 1_000,
            captured: Vec::new(),
            reacted: HashSet::new(),
            outstanding: BTreeSet::new(),
            pending: Vec::new(),
            counters: Counters::default(),
        })
    }

    /// Honest member indices.
    pub fn honest(&self) -> Vec<usize> {
        (0..self.config.n).filter(|&i| !self.byzantine[i]).collect()
    }

    /// The honest member `i`'s state machine.
    pub fn node(&self, i: usize) -> Option<&Bracha> {
        self.nodes.get(i).and_then(Option::as_ref)
    }

    /// Starts the workload, drives to quiescence, runs the end phase (collection and late
    /// replays), and returns an error on livelock.
    pub fn run(&mut self) -> Result<(), String> {
        self.start();
        self.drain()?;
        self.end_phase()
    }

    /// Honest broadcasts and the Byzantine members' opening moves.
    pub fn start(&mut self) {
        let honest = self.honest();
        let mut broadcasters = honest.clone();
        self.rng.shuffle(&mut broadcasters);
        broadcasters.truncate(self.config.honest_broadcasters);
        self.pending = broadcasters.iter().map(|&o| (o, self.config.instances_per_origin)).collect();
        self.broadcast_pending();
        self.byzantine_start(&broadcasters);
    }

    /// Broadcasts what honest broadcasters still have to send, as far as their own windows
    /// allow. True if anything was sent.
    fn broadcast_pending(&mut self) -> bool {
        let mut sent = false;
        for k in 0..self.pending.len() {
            let origin = self.pending[k].0;
            while self.pending[k].1 > 0 {
                let fits = self.nodes[origin].as_ref().is_some_and(|node| {
                    let own = node.public_key();
                    node.window(&own).is_some_and(|w| w.contains(&node.next_seq()))
                });
                if !fits {
                    break;
                }
                let value = self.honest_value(origin);
                self.broadcast_from(origin, value);
                self.pending[k].1 -= 1;
                sent = true;
            }
        }
        sent
    }

    /// One sync round: every honest member missing a delivered instance inside its window
    /// gets the certificate and the value. True if anything was delivered.
    fn sync_round(&mut self) -> bool {
        let mut progress = false;
        for i in self.honest() {
            let missing: Vec<InstanceId> = self
                .record
                .certificates
                .keys()
                .filter(|instance| !self.record.delivered[i].contains_key(instance))
                .copied()
                .collect();
            for instance in missing {
                let (Some(certificate), Some(value)) =
                    (self.record.certificates.get(&instance), self.record.values.get(&instance))
                else {
                    continue;
                };
                let verified = if self.config.signatures {
                    self.counters.verifications += certificate.readys.len() as u64;
                    match certificate.clone().verify(&self.committee, &self.network) {
                        Ok(v) => v,
                        Err(e) => panic!("a delivered certificate does not verify: {e}"),
                    }
                } else {
                    VerifiedCertificate::assume_valid(certificate.clone())
                };
                let now = self.now_ms;
                let value = value.clone();
                let Some(node) = self.nodes[i].as_mut() else { continue };
                if let Ok(step) = node.handle_certificate(&verified, value, now) {
                    let before = self.counters.deliveries;
                    self.apply(i, step);
                    if self.counters.deliveries > before {
                        self.counters.synced += self.counters.deliveries - before;
                        progress = true;
                    }
                }
            }
        }
        progress
    }

    fn honest_value(&mut self, origin: usize) -> Vec<u8> {
        let mut value = format!("value of {origin} #{} seed {}", self.rng.next_u64(), self.config.seed).into_bytes();
        value.resize(self.config.value_len.max(value.len()), b'.');
        value
    }

    /// Honest member `origin` broadcasts `value` (recorded for the validity check).
    pub fn broadcast_from(&mut self, origin: usize, value: Vec<u8>) {
        let digest = Digest::of(&value);
        let now = self.now_ms;
        let Some(node) = self.nodes[origin].as_mut() else { return };
        let seq = node.next_seq();
        let step = node.broadcast(value, now).unwrap_or_else(|e| panic!("honest broadcast refused: {e}"));
        let instance = InstanceId { origin: self.keys[origin].public(), seq };
        self.record.broadcasts.insert(instance, digest);
        self.apply(origin, step);
    }

    /// Delivers messages until none are in flight and no fetch is outstanding.
    pub fn drain(&mut self) -> Result<(), String> {
        let mut idle_rounds = 0;
        loop {
            if self.counters.steps >= self.config.max_steps as u64 {
                return Err(format!("livelock: {} steps without settling", self.counters.steps));
            }
            if let Some(message) = self.pick() {
                self.counters.steps += 1;
                self.now_ms += 1;
                self.deliver(message);
                continue;
            }
            if self.broadcast_pending() || (self.config.sync && self.sync_round()) {
                continue;
            }
            if self.outstanding.is_empty() {
                if self.pending.iter().any(|p| p.1 > 0) {
                    return Err(format!("broadcasters stalled with {:?} instances to send", self.pending));
                }
                return Ok(());
            }
            idle_rounds += 1;
            if idle_rounds > 10 * self.config.n + 20 {
                return Err(format!("fetches never answered: {:?}", self.outstanding));
            }
            self.now_ms += self.config.bracha.fetch_retry_ms;
            self.tick_all();
        }
    }

    /// Advances time by `ms` and ticks every honest member.
    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
        self.tick_all();
    }

    fn tick_all(&mut self) {
        for i in 0..self.config.n {
            if let Some(node) = self.nodes[i].as_mut() {
                let step = node.tick(self.now_ms);
                self.apply(i, step);
            }
        }
    }

    /// After the run: collect everything (retention over), then replay captured envelopes
    /// to every honest member (the Replay strategy); nothing may change.
    fn end_phase(&mut self) -> Result<(), String> {
        if self.config.strategy != Strategy::Replay {
            return Ok(());
        }
        self.advance(self.config.bracha.retention_ms + 1);
        let captured = std::mem::take(&mut self.captured);
        let replayer = (0..self.config.n).find(|&i| self.byzantine[i]).unwrap_or(0);
        for envelope in captured.iter().take(256) {
            for to in self.honest() {
                self.push(replayer, to, Payload::Envelope(envelope.clone()));
            }
        }
        self.drain()
    }

    fn pick(&mut self) -> Option<InFlight> {
        let use_slow = self.fast.is_empty() || (!self.slow_queue.is_empty() && self.rng.chance(1, 16));
        let queue = if use_slow { &mut self.slow_queue } else { &mut self.fast };
        if queue.is_empty() {
            return None;
        }
        let index = match self.config.schedule {
            Schedule::Lifo if !self.rng.chance(1, 8) => queue.len() - 1,
            _ => self.rng.below(queue.len()),
        };
        Some(queue.swap_remove(index))
    }

    fn push(&mut self, from: usize, to: usize, payload: Payload) {
        let message = InFlight { from, to, payload };
        if self.slow[to] || self.slow[from] {
            self.slow_queue.push(message);
        } else {
            self.fast.push(message);
        }
    }

    fn deliver(&mut self, message: InFlight) {
        let InFlight { from, to, payload } = message;
        let now = self.now_ms;
        match payload {
            Payload::Envelope(envelope) => {
                self.counters.messages += 1;
                if self.byzantine[to] {
                    self.byzantine_receive(to, envelope);
                    return;
                }
                let signatures = self.config.signatures;
                let Some(signer) = self.committee.index_of(&envelope.origin()) else { return };
                let step = if signatures {
                    self.counters.verifications += 1;
                    let key = self.committee.verifying_key(signer).copied();
                    let Some(key) = key else { return };
                    match envelope.verify_with_key(&self.network, &key) {
                        Ok(verified) => self.nodes[to].as_mut().map(|node| node.handle(&verified, now)),
                        Err(_) => return, // admission drops it; the forwarder is to blame
                    }
                } else {
                    self.nodes[to].as_mut().map(|node| node.handle_unverified(&envelope, now))
                };
                if let Some(step) = step {
                    self.apply(to, step);
                }
            }
            Payload::FetchRequest(instance, digest) => {
                self.counters.fetch_messages += 1;
                let value = self.nodes[to].as_ref().and_then(|node| node.value(&instance, &digest)).map(<[u8]>::to_vec);
                if let Some(value) = value {
                    self.push(to, from, Payload::FetchReply(instance, value));
                }
            }
            Payload::FetchReply(instance, value) => {
                self.counters.fetch_messages += 1;
                if let Some(step) = self.nodes[to].as_mut().map(|node| node.supply_value(&instance, value, now)) {
                    self.apply(to, step);
                }
            }
        }
    }

    /// Acts on an honest member's step.
    fn apply(&mut self, i: usize, step: Step) {
        let Step { outgoing, fetches, delivered, evidence, faults } = step;
        for envelope in outgoing {
            for to in 0..self.config.n {
                if to != i {
                    self.push(i, to, Payload::Envelope(envelope.clone()));
                }
            }
        }
        for fetch in fetches {
            self.outstanding.insert((i, fetch.instance));
            if let Some(&to) = fetch.from.first() {
                self.push(i, to, Payload::FetchRequest(fetch.instance, fetch.digest));
            }
        }
        for delivery in delivered {
            self.counters.deliveries += 1;
            self.outstanding.remove(&(i, delivery.instance));
            assert_eq!(Digest::of(&delivery.value), delivery.digest, "delivered value does not match its digest");
            self.record.delivered[i].entry(delivery.instance).or_default().push(delivery.digest);
            self.record.certificates.entry(delivery.instance).or_insert(delivery.certificate);
            self.record.values.entry(delivery.instance).or_insert(delivery.value);
        }
        self.record.evidence.extend(evidence.into_iter().map(|e| (i, e)));
        self.record.faults.extend(faults.into_iter().map(|f| (i, f)));
    }

    fn seal(&self, signer: usize, message: &Message) -> Envelope {
        if self.config.signatures {
            message.seal(&self.keys[signer], self.network, self.now_ms).unwrap_or_else(|e| panic!("seal: {e}"))
        } else {
            sim_frame_unsigned(self.network, self.keys[signer].public(), message, self.now_ms)
        }
    }

    fn send_to(&mut self, from: usize, message: &Message, targets: &[usize]) {
        let envelope = self.seal(from, message);
        for &to in targets {
            self.push(from, to, Payload::Envelope(envelope.clone()));
        }
    }

    fn byzantine_members(&self) -> Vec<usize> {
        (0..self.config.n).filter(|&i| self.byzantine[i]).collect()
    }

    fn halves(&self) -> (Vec<usize>, Vec<usize>) {
        self.honest().into_iter().partition(|&i| self.side_a[i])
    }

    fn byzantine_start(&mut self, broadcasters: &[usize]) {
        let byz = self.byzantine_members();
        let all_honest = self.honest();
        let (a, b) = self.halves();
        let k = self.config.instances_per_origin;
        match self.config.strategy {
            Strategy::Silent | Strategy::EquivocatingVoter | Strategy::Replay => {}
            Strategy::EquivocatingOrigin => {
                for &origin in &byz {
                    for seq in 0..k {
                        let instance = InstanceId { origin: self.keys[origin].public(), seq };
                        let v1 = format!("A side {origin}/{seq}").into_bytes();
                        let v2 = format!("B side {origin}/{seq}").into_bytes();
                        let (d1, d2) = (Digest::of(&v1), Digest::of(&v2));
                        let (mut to_a, mut to_b) = (a.clone(), b.clone());
                        if self.rng.chance(1, 4) {
                            // Partial: only some members hear anything.
                            to_a.retain(|_| self.rng.chance(1, 2));
                            to_b.retain(|_| self.rng.chance(1, 2));
                        }
                        self.send_to(origin, &Message::Send { instance, value: v1 }, &to_a);
                        self.send_to(origin, &Message::Send { instance, value: v2.clone() }, &to_b);
                        if self.rng.chance(1, 2) {
                            let victim = self.victim;
                            self.send_to(origin, &Message::Send { instance, value: v2 }, &[victim]);
                        }
                        for &voter in &byz {
                            self.send_to(voter, &Message::Echo { instance, digest: d1 }, &to_a);
                            self.send_to(voter, &Message::Ready { instance, digest: d1 }, &to_a);
                            self.send_to(voter, &Message::Echo { instance, digest: d2 }, &to_b);
                            self.send_to(voter, &Message::Ready { instance, digest: d2 }, &to_b);
                        }
                    }
                }
            }
            Strategy::BogusVotes | Strategy::ReadyWithoutEcho => {
                for &voter in &byz {
                    for &origin in broadcasters {
                        for seq in 0..=k {
                            let instance = InstanceId { origin: self.keys[origin].public(), seq };
                            let digest = self.rng.digest();
                            if self.config.strategy == Strategy::BogusVotes {
                                self.send_to(voter, &Message::Echo { instance, digest }, &all_honest);
                            }
                            self.send_to(voter, &Message::Ready { instance, digest }, &all_honest);
                        }
                    }
                }
            }
            Strategy::FloodFuture => {
                // Beyond every window any member ever reaches in this run.
                let beyond = self.config.bracha.window + self.config.instances_per_origin + 1;
                for &member in &byz {
                    // One valid instance of its own, to show honest work continues.
                    let own = InstanceId { origin: self.keys[member].public(), seq: 0 };
                    self.send_to(member, &Message::Send { instance: own, value: b"flooder's value".to_vec() }, &all_honest);
                    for i in 0..FLOOD_PER_MEMBER {
                        let seq = if i % 2 == 0 { beyond + i } else { u64::MAX - i };
                        let instance = InstanceId { origin: self.keys[member].public(), seq };
                        self.send_to(member, &Message::Send { instance, value: vec![7; 64] }, &all_honest);
                        if let Some(&origin) = broadcasters.first() {
                            let instance = InstanceId { origin: self.keys[origin].public(), seq };
                            let digest = self.rng.digest();
                            self.send_to(member, &Message::Ready { instance, digest }, &all_honest);
                        }
                    }
                }
            }
        }
    }

    fn byzantine_receive(&mut self, me: usize, envelope: Envelope) {
        if self.captured.len() < MAX_CAPTURED {
            self.captured.push(envelope.clone());
        }
        let strategy = self.config.strategy;
        if strategy == Strategy::Replay {
            if self.rng.chance(1, 4) && !self.captured.is_empty() {
                let old = self.captured[self.rng.below(self.captured.len())].clone();
                let honest = self.honest();
                let to = honest[self.rng.below(honest.len())];
                self.push(me, to, Payload::Envelope(old));
            }
            return;
        }
        let Ok(Message::Send { instance, value }) = Message::from_envelope(&envelope, usize::MAX / 2) else { return };
        if envelope.header().kind != Kind::BrachaSend || !self.reacted.insert((me, instance)) {
            return;
        }
        let digest = Digest::of(&value);
        let all_honest = self.honest();
        let (a, b) = self.halves();
        match strategy {
            Strategy::EquivocatingVoter => {
                let fake = self.rng.digest();
                self.send_to(me, &Message::Echo { instance, digest }, &a);
                self.send_to(me, &Message::Echo { instance, digest: fake }, &b);
                self.send_to(me, &Message::Ready { instance, digest }, &a);
                self.send_to(me, &Message::Ready { instance, digest: fake }, &b);
                let victim = self.victim;
                self.send_to(me, &Message::Echo { instance, digest: fake }, &[victim]);
            }
            Strategy::BogusVotes => {
                let (e, r) = (self.rng.digest(), self.rng.digest());
                self.send_to(me, &Message::Echo { instance, digest: e }, &all_honest);
                self.send_to(me, &Message::Ready { instance, digest: r }, &all_honest);
            }
            Strategy::ReadyWithoutEcho => {
                self.send_to(me, &Message::Ready { instance, digest }, &all_honest);
            }
            _ => {}
        }
    }

    /// Checks the properties of reliable broadcast over what honest members did, plus that
    /// no honest member was blamed for a provable fault, evidence names only Byzantine members, certificates hold,
    /// and every honest member's state is under the configured memory bound.
    pub fn check(&self) -> Result<(), String> {
        let honest = self.honest();
        let mut by_instance: BTreeMap<InstanceId, BTreeMap<Digest, Vec<usize>>> = BTreeMap::new();
        for &i in &honest {
            for (instance, digests) in &self.record.delivered[i] {
                // Integrity: at most once.
                if digests.len() != 1 {
                    return Err(format!("integrity: member {i} delivered {instance:?} {} times", digests.len()));
                }
                by_instance.entry(*instance).or_default().entry(digests[0]).or_default().push(i);
            }
        }
        for (instance, digests) in &by_instance {
            if digests.len() > 1 {
                return Err(format!("agreement: {instance:?} delivered with {} different digests: {digests:?}", digests.len()));
            }
            let (digest, members) = digests.iter().next().unwrap_or_else(|| unreachable!("non-empty"));
            let origin = self.committee.index_of(&instance.origin).unwrap_or(usize::MAX);
            if origin < self.config.n && !self.byzantine[origin] && self.record.broadcasts.get(instance) != Some(digest) {
                return Err(format!("integrity: {instance:?} delivered a value its honest origin never broadcast"));
            }
            if members.len() != honest.len() {
                return Err(format!(
                    "totality: {instance:?} delivered by {} of {} honest members",
                    members.len(),
                    honest.len()
                ));
            }
        }
        for instance in self.record.broadcasts.keys() {
            if !by_instance.contains_key(instance) {
                return Err(format!("validity: honest broadcast {instance:?} was not delivered"));
            }
        }
        // Only provable faults must never name an honest member: a member ahead of another
        // may legitimately vote beyond the other's window (a weak, non-provable fault).
        for (reporter, fault) in &self.record.faults {
            if let Some(member) = self.committee.index_of(&fault.member)
                && !self.byzantine[member]
                && fault.kind.is_provable()
            {
                return Err(format!("member {reporter} blamed honest member {member}: {fault:?}"));
            }
        }
        for (reporter, evidence) in &self.record.evidence {
            let offender = if self.config.signatures {
                evidence.verify(&self.committee, &self.network).map_err(|e| format!("bad evidence from {reporter}: {e}"))?
            } else {
                evidence.offender()
            };
            if self.committee.index_of(&offender).is_none_or(|m| !self.byzantine[m]) {
                return Err(format!("member {reporter} produced evidence against honest {offender:?}"));
            }
        }
        for (instance, certificate) in &self.record.certificates {
            let checked = if self.config.signatures {
                certificate.clone().verify(&self.committee, &self.network).map(VerifiedCertificate::into_inner)
            } else {
                Ok(certificate.clone())
            };
            match checked {
                Ok(c) if c.readys.len() > 2 * self.committee.f() => {}
                other => return Err(format!("certificate of {instance:?} does not hold: {other:?}")),
            }
        }
        let bound = self.config.bracha.memory_bound(self.config.n);
        for &i in &honest {
            let bytes = self.node(i).map(|n| n.stats().bytes).unwrap_or(0);
            if bytes > bound {
                return Err(format!("memory: member {i} holds {bytes} bytes, over the bound {bound}"));
            }
        }
        Ok(())
    }
}
