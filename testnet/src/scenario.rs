//! Scenarios: who runs (node groups and their roles), the workload, the timeline, faults,
//! deadlines and the seed. Written as TOML (`scenarios/*.toml`) or taken from the built-in
//! presets ([`preset`], [`PRESETS`]). A run saves its resolved scenario next to its output, so
//! `run --scenario out/<name>/scenario.toml` replays it with the same keys and workload.

use byzgossip_crypto::GossipPolicy;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What a node does. Every role but [`Role::Honest`] and [`Role::CrashRestart`] is malicious;
/// adversaries behave honestly until the attack is armed (see [`Timeline`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Follows the protocol; originates the workload.
    Honest,
    /// Sends nothing and processes nothing once armed.
    Silent,
    /// Correct, but killed at the attack start and restarted from its store mid-attack.
    CrashRestart,
    /// Signs two different SENDs for each of its seqs.
    EquivocateOrigin,
    /// Signs a second, conflicting ECHO/READY next to each of its votes.
    EquivocateVote,
    /// Captures envelopes, restarts with fresh gossip caches and republishes them.
    Replay,
    /// Signs messages 20 minutes in the past.
    StaleTimestamp,
    /// Signs messages 20 minutes in the future.
    FutureTimestamp,
    /// Sends envelopes claiming an honest origin with a bad signature (framing).
    Forge,
    /// Changes bodies after signing.
    Tamper,
    /// Sends random, truncated and oversize bytes.
    Malformed,
    /// ECHOes and READYs digests nobody sent.
    FakeVotes,
    /// Publishes valid gossip far over its rate budget.
    Flood,
    /// An extra node whose key is outside the committee, publishing gossip and votes.
    Sybil,
    /// Drops every message of the censored origins and never relays them.
    Censor,
    /// With the others of its group, surrounds the victim, which is cut from every honest node.
    Eclipse,
    /// Honest for half the attack window, then a burst of forgeries, equivocations and garbage.
    CovertFlash,
    /// An extra node outside the committee signing gossip with many keys of its own, each
    /// under its origin budget (`attack.sybil_keys` keys at `attack.sybil_key_rate_per_s`):
    /// valid gossip that honest nodes relay under the `open` policy, filling seen-sets.
    SybilKeys,
    /// Publishes valid gossip at `attack.budget_flood_per_s`, inside its origin budget: it is
    /// never convicted, and takes all the seen-set room a member's gossip may take.
    BudgetFlood,
    /// Sends sync digests that ask for everything from seq 0 to every connected peer, at
    /// `attack.sync_flood_per_s` rounds a second: as much serving work as it can make us do.
    SyncFlood,
    /// Offends twice: gossip whose body no longer matches its hash, for [`REFORMED_OFFENCE_S`]
    /// at the attack start (banned),
    /// honest after that (readmitted when the ban ends), and again once readmitted, at
    /// `attack.reoffend_at_s` or later: the first moment from then on that it is connected to
    /// every honest member (banned twice as long).
    Reformed,
    /// An honest node outside the committee (`byzgossip --observer`): it never votes and
    /// delivers Bracha values only on certificates it verified. It attaches to
    /// [`OBSERVER_MEMBER_LINKS`] members and to the observer before it
    /// ([`Scenario::start_dials`]), so listeners sit one or more hops from the committee;
    /// every invariant of correct nodes holds at it.
    Observer,
}

/// Committee members each observer dials at start (besides the observer before it).
pub const OBSERVER_MEMBER_LINKS: usize = 2;

/// How long each offence of a [`Role::Reformed`] attacker lasts (s).
pub const REFORMED_OFFENCE_S: f64 = 0.5;

impl Role {
    /// Every role, in [`Role::name`] order of the presets.
    pub const ALL: [Role; 22] = [
        Role::Honest,
        Role::Silent,
        Role::CrashRestart,
        Role::EquivocateOrigin,
        Role::EquivocateVote,
        Role::Replay,
        Role::StaleTimestamp,
        Role::FutureTimestamp,
        Role::Forge,
        Role::Tamper,
        Role::Malformed,
        Role::FakeVotes,
        Role::Flood,
        Role::Sybil,
        Role::Censor,
        Role::Eclipse,
        Role::CovertFlash,
        Role::SybilKeys,
        Role::BudgetFlood,
        Role::SyncFlood,
        Role::Reformed,
        Role::Observer,
    ];

    /// The kebab-case name used in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Role::Honest => "honest",
            Role::Silent => "silent",
            Role::CrashRestart => "crash-restart",
            Role::EquivocateOrigin => "equivocate-origin",
            Role::EquivocateVote => "equivocate-vote",
            Role::Replay => "replay",
            Role::StaleTimestamp => "stale-timestamp",
            Role::FutureTimestamp => "future-timestamp",
            Role::Forge => "forge",
            Role::Tamper => "tamper",
            Role::Malformed => "malformed",
            Role::FakeVotes => "fake-votes",
            Role::Flood => "flood",
            Role::Sybil => "sybil",
            Role::Censor => "censor",
            Role::Eclipse => "eclipse",
            Role::CovertFlash => "covert-flash",
            Role::SybilKeys => "sybil-keys",
            Role::BudgetFlood => "budget-flood",
            Role::SyncFlood => "sync-flood",
            Role::Reformed => "reformed",
            Role::Observer => "observer",
        }
    }

    /// Whether the node follows the protocol (its delivery log is held to the invariants).
    /// A crash is not Byzantine behaviour, though it counts against f.
    pub fn correct(self) -> bool {
        matches!(self, Role::Honest | Role::CrashRestart | Role::Observer)
    }

    /// Whether the node's key is in the committee (Sybils and observers are extra keys
    /// outside it).
    pub fn in_committee(self) -> bool {
        !matches!(self, Role::Sybil | Role::SybilKeys | Role::Observer)
    }

    /// Whether honest nodes can tell from the wire that this node misbehaves, so every honest
    /// node must graylist, ban or exclude it within the detection deadline. Silence, crashes,
    /// censorship, eclipse and replays are not provable from the wire (replays are stopped
    /// as duplicates at no cost to the forwarder, by design), and fake votes for a digest
    /// nobody sent look like votes for a value this node has not seen yet.
    pub fn detectable(self) -> bool {
        matches!(
            self,
            Role::EquivocateOrigin
                | Role::EquivocateVote
                | Role::StaleTimestamp
                | Role::FutureTimestamp
                | Role::Forge
                | Role::Tamper
                | Role::Malformed
                | Role::Flood
                | Role::Sybil
                | Role::CovertFlash
                | Role::SyncFlood
                | Role::Reformed
        )
    }
}

/// Nodes of one role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Their role.
    pub role: Role,
    /// How many. Committee roles take committee seats after the honest members; Sybils are
    /// extra nodes outside the committee.
    pub count: usize,
}

/// What the honest members do: Bracha broadcasts and gossip, spread round-robin over the
/// honest members, from the start of the run until the end of the cooldown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Workload {
    /// Bracha broadcasts per second, all honest origins together.
    pub broadcasts_per_s: f64,
    /// Gossip messages per second on topic `load`, all honest origins together.
    pub gossip_per_s: f64,
    /// Bytes per broadcast value.
    pub value_size: usize,
    /// Bytes per gossip payload.
    pub gossip_size: usize,
}

impl Default for Workload {
    fn default() -> Self {
        Self { broadcasts_per_s: 10.0, gossip_per_s: 10.0, value_size: 256, gossip_size: 128 }
    }
}

/// Phases, in seconds from the moment every node is up and connected:
/// `[0, warmup)` warm-up, `[warmup, warmup + attack)` attack, then `cooldown` more seconds of
/// workload, then at most `drain` seconds waiting for outstanding deliveries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timeline {
    /// Warm-up (meshes form, trust starts).
    pub warmup_s: f64,
    /// Attack window.
    pub attack_s: f64,
    /// Workload after the attack.
    pub cooldown_s: f64,
    /// Longest wait for outstanding deliveries after the workload stops (ends early when
    /// every honest broadcast is delivered everywhere).
    pub drain_s: f64,
}

impl Default for Timeline {
    fn default() -> Self {
        Self { warmup_s: 2.0, attack_s: 4.0, cooldown_s: 1.5, drain_s: 6.0 }
    }
}

/// A fault injected by the harness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Abort the node task (a crash: nothing is flushed beyond what is already durable).
    Kill,
    /// Start a killed node again from its store, same key.
    Restart,
    /// Stop sending and processing, connections kept.
    Pause,
    /// Undo a pause.
    Resume,
    /// Cut the listed nodes from all other nodes (both ways, blocked).
    Partition,
    /// Undo every partition and redial.
    Heal,
    /// Degrade the listed nodes' inbound side: every gossipsub message and sync response
    /// they receive is dropped with probability `loss` (seeded from the scenario seed), and
    /// the rest is held `delay_ms` before admission. In-process runtime only (the `byzgossip`
    /// binary has no interceptor); a later `degrade` of the same node replaces the earlier.
    Degrade,
    /// Undo `degrade` on the listed nodes, or on every node when `nodes` is empty.
    Restore,
}

/// Longest `delay_ms` of a `degrade` fault. Longer than gossipsub keeps a message for
/// forwarding (a few heartbeats), and at the suite's rates still well within the node's
/// bound on held messages (`byzgossip_node::hooks::MAX_PARKED`); a longer outage is a
/// `pause` or a `partition`.
pub const MAX_DEGRADE_DELAY_MS: u64 = 10_000;

/// Most committee members, and most extra (Sybil) nodes, of a scenario: the Bracha machine
/// refuses larger committees (`byzgossip_bracha::MAX_COMMITTEE`), and a run holds a role,
/// and starts a node, per entry, so the bound is checked before anything is allocated.
pub const MAX_SCENARIO_NODES: usize = byzgossip_bracha::MAX_COMMITTEE;
/// Most keys one `sybil-keys` node signs with.
pub const MAX_SYBIL_KEYS: usize = 1024;

/// Latest `at_s` of a fault: four phases of at most 3600 s each (no run is longer), and a
/// bound that keeps every fault time a representable `Duration`.
pub const MAX_FAULT_AT_S: f64 = 4.0 * 3600.0;

/// Inbound loss and delay of a degraded node (a `degrade` fault).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Degradation {
    /// Probability in `0..=1` that a received message is dropped.
    pub loss: f64,
    /// Milliseconds a received message waits before it is processed.
    pub delay_ms: u64,
}

impl Degradation {
    /// Whether it drops everything: the node is cut off while it lasts, so its end is a
    /// disruption for the timed invariants (as a pause's is). Partial loss and delay are not:
    /// retransmission and sync must absorb them within the usual deadlines.
    pub fn total(&self) -> bool {
        self.loss >= 1.0
    }
}

impl FaultKind {
    /// The kebab-case name used in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Restart => "restart",
            FaultKind::Pause => "pause",
            FaultKind::Resume => "resume",
            FaultKind::Partition => "partition",
            FaultKind::Heal => "heal",
            FaultKind::Degrade => "degrade",
            FaultKind::Restore => "restore",
        }
    }
}

/// A point of the timeline a fault can be pinned to (so it moves with `--duration`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The attack start (end of the warm-up).
    AttackStart,
    /// The middle of the attack window.
    AttackMid,
    /// The attack end.
    AttackEnd,
}

/// One fault at one time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Seconds from the start of the run (ignored when `at` is set).
    #[serde(default)]
    pub at_s: f64,
    /// A phase of the timeline, instead of `at_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Phase>,
    /// What.
    pub kind: FaultKind,
    /// Node indices (for `partition`: one side; the other side is everyone else; for
    /// `heal` and `restore`, empty means every node).
    #[serde(default)]
    pub nodes: Vec<usize>,
    /// `degrade` only: probability in `0..=1` that a received message is dropped.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub loss: f64,
    /// `degrade` only: milliseconds each received message is held before it is processed
    /// (at most [`MAX_DEGRADE_DELAY_MS`]).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub delay_ms: u64,
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

impl Fault {
    /// A fault of `kind` on `nodes` at `phase` (no loss or delay).
    pub fn at_phase(phase: Phase, kind: FaultKind, nodes: Vec<usize>) -> Fault {
        Fault { at_s: 0.0, at: Some(phase), kind, nodes, loss: 0.0, delay_ms: 0 }
    }

    /// The degradation a `degrade` fault applies.
    pub fn degradation(&self) -> Degradation {
        Degradation { loss: self.loss, delay_ms: self.delay_ms }
    }

    /// Checks the fields of one fault (node indices are checked by [`Scenario::validate`]).
    fn validate(&self) -> Result<(), String> {
        if !(self.at_s.is_finite() && (0.0..=MAX_FAULT_AT_S).contains(&self.at_s)) {
            return Err(format!("a fault's at_s must be in 0..={MAX_FAULT_AT_S} seconds, not {}", self.at_s));
        }
        if self.kind == FaultKind::Degrade {
            if !(self.loss.is_finite() && (0.0..=1.0).contains(&self.loss)) {
                return Err(format!("a degrade fault's loss must be a probability in 0..=1, not {}", self.loss));
            }
            if self.delay_ms > MAX_DEGRADE_DELAY_MS {
                return Err(format!(
                    "a degrade fault's delay_ms must be at most {MAX_DEGRADE_DELAY_MS} (use pause or partition for longer outages), not {}",
                    self.delay_ms
                ));
            }
            if self.nodes.is_empty() {
                return Err("a degrade fault must list its nodes".into());
            }
        } else if self.loss != 0.0 || self.delay_ms != 0 {
            return Err(format!("loss and delay_ms apply only to degrade faults, not to {}", self.kind.name()));
        }
        Ok(())
    }
    /// Seconds from the start of the run at which the fault fires.
    pub fn time_s(&self, timeline: &Timeline) -> f64 {
        match self.at {
            None => self.at_s,
            Some(Phase::AttackStart) => timeline.warmup_s,
            Some(Phase::AttackMid) => timeline.warmup_s + timeline.attack_s / 2.0,
            Some(Phase::AttackEnd) => timeline.warmup_s + timeline.attack_s,
        }
    }
}

/// Deadlines of the timed invariants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Deadlines {
    /// Every instance delivered by one correct node is delivered by all within this many
    /// seconds of its first delivery (or of the end of the last disruption: partition,
    /// eclipse, kill, pause).
    pub totality_s: f64,
    /// Every detectable attacker is graylisted, banned or excluded by every honest node
    /// within this many seconds of arming.
    pub detection_s: f64,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self { totality_s: 5.0, detection_s: 3.5 }
    }
}

/// Knobs of the attacks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attack {
    /// Bad messages per second per attacker (flood uses `flood_per_s`).
    pub rate_per_s: f64,
    /// Valid gossip messages per second per flooding attacker.
    pub flood_per_s: f64,
    /// Honest node targeted by eclipse, censor and forge.
    pub victim: usize,
    /// Keys each `sybil-keys` node signs with.
    pub sybil_keys: usize,
    /// Gossip per second per key of a `sybil-keys` node: under the 100/s origin budget of an
    /// untrusted key.
    pub sybil_key_rate_per_s: f64,
    /// Gossip per second of a `budget-flood` member: under the origin budget of a new key
    /// (100/s plus a tenth of the trusted 1,000/s at the initial trust of 0.1).
    pub budget_flood_per_s: f64,
    /// Rounds per second of a `sync-flood` member (each round: one digest to every peer).
    pub sync_flood_per_s: f64,
    /// Seconds after arming at which a `reformed` member offends again.
    pub reoffend_at_s: f64,
    /// Seconds after arming during which an `equivocate-origin` member equivocates; 0: the
    /// whole attack window. (`amnesia` stops it before its victim restarts, so that the
    /// victim can learn of the conviction only from its peers.)
    pub equivocate_s: f64,
}

impl Default for Attack {
    fn default() -> Self {
        Self {
            rate_per_s: 20.0,
            flood_per_s: 2000.0,
            victim: 0,
            sybil_keys: 32,
            sybil_key_rate_per_s: 25.0,
            budget_flood_per_s: 150.0,
            sync_flood_per_s: 100.0,
            reoffend_at_s: 3.5,
            equivocate_s: 0.0,
        }
    }
}

/// Reputation settings every node of the scenario runs with (`byzgossip run --ban-base-ms
/// --penalty-half-life-ms` in process mode). The node defaults (10 min bans, 30 min
/// half-life) outlast a run; a scenario that watches bans end scales them down.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bans {
    /// First ban (ms); each repeat doubles it.
    pub base_ms: u64,
    /// Half-life of the penalty counter (ms): how soon a banned peer's score recovers.
    pub penalty_half_life_ms: u64,
}

impl Bans {
    /// Sets these values in a node's reputation configuration.
    pub fn apply(&self, reputation: &mut byzgossip_reputation::ReputationConfig) {
        reputation.ban_base_ms = self.base_ms;
        reputation.penalty_half_life_ms = self.penalty_half_life_ms;
    }

    fn validate(&self) -> Result<(), String> {
        let mut reputation = byzgossip_reputation::ReputationConfig::default();
        self.apply(&mut reputation);
        reputation.validate().map_err(|e| format!("bans: {e}"))
    }
}

/// Seen-set limits every node of the scenario runs with (see `byzgossip_reputation::replay`).
/// A node holds ids for minutes and a run lasts seconds: a scenario that tests crowding the
/// seen-set scales the pools down to what its attackers can fill within the attack window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenSetLimits {
    /// Ids of origins outside the committee (the open pool).
    pub open_capacity: usize,
    /// Ids of one origin outside the committee.
    pub per_origin_capacity: usize,
    /// Ids reserved for the committee, split evenly among its members.
    pub committee_capacity: usize,
}

impl SeenSetLimits {
    /// Sets these limits in a node's replay configuration.
    pub fn apply(&self, replay: &mut byzgossip_reputation::ReplayConfig) {
        replay.capacity = self.open_capacity;
        replay.per_origin_capacity = self.per_origin_capacity;
        replay.committee_capacity = self.committee_capacity;
    }

    fn validate(&self, members: usize) -> Result<(), String> {
        let mut replay = byzgossip_reputation::ReplayConfig::default();
        self.apply(&mut replay);
        replay.validate().map_err(|e| format!("seen_set: {e}"))?;
        if self.committee_capacity < 2 * members {
            return Err(format!("seen_set.committee_capacity must hold at least two ids per member ({})", 2 * members));
        }
        Ok(())
    }
}

/// Link conditions of the deterministic simulator (`run --runtime sim`): every directed link
/// gets a latency of `latency_ms` plus a fixed extra drawn from the seed in
/// `0..=latency_spread_ms`; every message adds a jitter in `0..=jitter_ms` (links stay
/// FIFO, like a TCP stream), is lost with probability `loss`, and waits for the link's
/// `bandwidth_mbps` (0: unlimited). The in-process and process runtimes run on real sockets
/// and ignore this table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Links {
    /// One-way base latency (ms).
    pub latency_ms: f64,
    /// Largest fixed extra latency of one directed link (ms), drawn once from the seed.
    pub latency_spread_ms: f64,
    /// Largest extra latency of one message (ms), drawn per message.
    pub jitter_ms: f64,
    /// Probability in `0..1` that a message (or a sync exchange) is lost.
    pub loss: f64,
    /// Bandwidth of each directed link (Mbit/s); 0 is unlimited.
    pub bandwidth_mbps: f64,
}

impl Default for Links {
    fn default() -> Self {
        Self { latency_ms: 2.0, latency_spread_ms: 3.0, jitter_ms: 1.0, loss: 0.0, bandwidth_mbps: 0.0 }
    }
}

impl Links {
    /// Whether these are the defaults (not written to scenario files).
    pub fn is_default(&self) -> bool {
        *self == Links::default()
    }

    fn validate(&self) -> Result<(), String> {
        for (name, v) in [("latency_ms", self.latency_ms), ("latency_spread_ms", self.latency_spread_ms), ("jitter_ms", self.jitter_ms)] {
            if !(v.is_finite() && (0.0..=10_000.0).contains(&v)) {
                return Err(format!("links.{name} must be in 0..=10000"));
            }
        }
        if !(self.loss.is_finite() && (0.0..1.0).contains(&self.loss)) {
            return Err("links.loss must be a probability in 0..1".into());
        }
        if !(self.bandwidth_mbps.is_finite() && self.bandwidth_mbps >= 0.0) {
            return Err("links.bandwidth_mbps must be 0 (unlimited) or positive".into());
        }
        Ok(())
    }
}

/// A complete scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// Name (a preset's name, or the file's).
    pub name: String,
    /// One line saying what it does.
    #[serde(default)]
    pub description: String,
    /// Seed of keys, workload values and attacker randomness.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Committee size n.
    pub nodes: usize,
    /// Fault bound of the genesis; `floor((n-1)/3)` when absent.
    #[serde(default)]
    pub f: Option<usize>,
    /// Non-honest groups; the rest of the committee is honest.
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Workload.
    #[serde(default)]
    pub workload: Workload,
    /// Phases.
    #[serde(default)]
    pub timeline: Timeline,
    /// Extra faults.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Deadlines.
    #[serde(default)]
    pub deadlines: Deadlines,
    /// Attack knobs.
    #[serde(default)]
    pub attack: Attack,
    /// Link conditions of the simulator (ignored by the other runtimes).
    #[serde(default, skip_serializing_if = "Links::is_default")]
    pub links: Links,
    /// Who may publish gossip: `committee` (default) or `open` (any key, under its budget).
    #[serde(default, skip_serializing_if = "is_committee_policy")]
    pub policy: GossipPolicy,
    /// Seen-set limits of every node; node defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_set: Option<SeenSetLimits>,
    /// Seconds every node keeps deliveries (`--retention-s`); the node default (one day)
    /// when absent. Soaks set it below their length to show the store stays flat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_s: Option<u64>,
    /// Ban length and penalty half-life of every node; node defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bans: Option<Bans>,
}

fn is_committee_policy(policy: &GossipPolicy) -> bool {
    *policy == GossipPolicy::Committee
}

fn default_seed() -> u64 {
    1
}

/// Why a scenario is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A rule is broken.
    #[error("invalid scenario: {0}")]
    Invalid(String),
    /// The file could not be read or parsed.
    #[error("scenario file: {0}")]
    File(String),
}

impl Scenario {
    /// One key per node (members first, in role order) drawn from the seed, and the genesis
    /// of the committee they form: what the in-process runtime and the simulator both start
    /// from, so a seed names the same network in each.
    pub fn keys_and_genesis(&self) -> (Vec<byzgossip_crypto::Keypair>, byzgossip_crypto::Genesis) {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(self.seed);
        let keys: Vec<byzgossip_crypto::Keypair> =
            self.roles().iter().map(|_| byzgossip_crypto::Keypair::generate(&mut rng)).collect();
        let genesis = byzgossip_crypto::Genesis {
            name: format!("testnet-{}-{}", self.name, self.seed),
            f: Some(self.f()),
            policy: self.policy,
            members: keys[..self.nodes].iter().map(byzgossip_crypto::Keypair::public).collect(),
            bootstrap: vec![],
        };
        (keys, genesis)
    }

    /// A scenario of `nodes` honest members and the given non-honest groups, defaults
    /// elsewhere.
    pub fn new(name: &str, description: &str, nodes: usize, groups: Vec<Group>) -> Scenario {
        Scenario {
            name: name.to_owned(),
            description: description.to_owned(),
            seed: default_seed(),
            nodes,
            f: None,
            groups,
            workload: Workload::default(),
            timeline: Timeline::default(),
            faults: Vec::new(),
            deadlines: Deadlines::default(),
            attack: Attack::default(),
            links: Links::default(),
            policy: GossipPolicy::Committee,
            seen_set: None,
            retention_s: None,
            bans: None,
        }
    }

    /// The genesis fault bound.
    pub fn f(&self) -> usize {
        self.f.unwrap_or(self.nodes.saturating_sub(1) / 3)
    }

    /// The role of every node: committee seats `0..nodes` (honest first), then Sybils, then
    /// observers.
    pub fn roles(&self) -> Vec<Role> {
        let adversarial: usize = self.groups.iter().filter(|g| g.role.in_committee()).map(|g| g.count).sum();
        let honest = self.nodes.saturating_sub(adversarial);
        let mut roles = vec![Role::Honest; honest];
        for group in self.groups.iter().filter(|g| g.role.in_committee()) {
            roles.extend(std::iter::repeat_n(group.role, group.count));
        }
        for group in self.groups.iter().filter(|g| !g.role.in_committee() && g.role != Role::Observer) {
            roles.extend(std::iter::repeat_n(group.role, group.count));
        }
        for group in self.groups.iter().filter(|g| g.role == Role::Observer) {
            roles.extend(std::iter::repeat_n(group.role, group.count));
        }
        roles
    }

    /// Honest observers (nodes outside the committee that follow the protocol).
    pub fn observers(&self) -> usize {
        self.groups.iter().filter(|g| g.role == Role::Observer).map(|g| g.count).sum()
    }

    /// Sets the number of honest observers (`--observers`), replacing any observer groups.
    pub fn with_observers(mut self, observers: usize) -> Scenario {
        self.groups.retain(|g| g.role != Role::Observer);
        if observers > 0 {
            self.groups.push(Group { role: Role::Observer, count: observers });
        }
        self
    }

    /// The nodes node `i` dials when the testnet starts (all of them before `i`, so each pair
    /// is dialled once): a member dials every earlier member; a node outside the committee
    /// that is not an observer (a Sybil) dials every member; observer number `k` dials
    /// [`OBSERVER_MEMBER_LINKS`] members (seats `2k` and `2k + 1`, modulo n: observers spread
    /// over the committee, honest and not), observer `k - 1` (so every observer after the
    /// first is also one hop further out), and Sybil number `k` modulo the Sybils, if any (so
    /// attackers outside the committee reach observers too). Sybils do not dial each other:
    /// with hundreds of them (1,000-node runs) that would be most of the connections.
    pub fn start_dials(&self, roles: &[Role], i: usize) -> Vec<usize> {
        let n = self.nodes.min(roles.len());
        if roles.get(i) != Some(&Role::Observer) {
            return (0..i.min(n)).collect();
        }
        let first = roles.iter().position(|r| *r == Role::Observer).unwrap_or(i);
        let k = i - first;
        let n = n.max(1);
        let mut dials: Vec<usize> = (0..OBSERVER_MEMBER_LINKS.min(n)).map(|l| (OBSERVER_MEMBER_LINKS * k + l) % n).collect();
        if k > 0 {
            dials.push(i - 1);
        }
        let sybils = first.saturating_sub(self.nodes);
        if sybils > 0 {
            dials.push(self.nodes + k % sybils);
        }
        dials.sort_unstable();
        dials.dedup();
        dials
    }

    /// How many connections the start dials make ([`Scenario::start_dials`]): what a runtime
    /// waits for before the run starts.
    pub fn start_pairs(&self, roles: &[Role]) -> usize {
        (0..roles.len()).map(|i| self.start_dials(roles, i).len()).sum()
    }

    /// Every node's neighbours after the start dials (those it dials and those that dial
    /// it), in one pass over the dials: asking per node would redo every later node's dials,
    /// a million of them at 1,000 nodes.
    pub fn start_peers(&self, roles: &[Role]) -> Vec<Vec<usize>> {
        let mut peers = vec![Vec::new(); roles.len()];
        for i in 0..roles.len() {
            for j in self.start_dials(roles, i) {
                peers[i].push(j);
                peers[j].push(i);
            }
        }
        peers
    }

    /// Committee members that are not correct (they count against f).
    pub fn byzantine(&self) -> usize {
        self.groups.iter().filter(|g| g.role.in_committee() && g.role != Role::Honest).map(|g| g.count).sum()
    }

    /// Checks the rules a run needs.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |s: String| Err(ScenarioError::Invalid(s));
        if self.nodes < 1 {
            return bad("nodes must be at least 1".into());
        }
        // Sizes first, without overflow: `roles()` allocates one entry per node.
        if self.nodes > MAX_SCENARIO_NODES {
            return bad(format!("nodes must be at most {MAX_SCENARIO_NODES}, not {}", self.nodes));
        }
        let f = self.f();
        if f > (self.nodes - 1) / 3 {
            return bad(format!("n = {} is below 3f + 1 for f = {f}", self.nodes));
        }
        let count = |committee: bool| {
            self.groups.iter().filter(|g| g.role.in_committee() == committee).try_fold(0usize, |sum, g| sum.checked_add(g.count))
        };
        let seats = count(true).unwrap_or(usize::MAX);
        if seats > self.nodes {
            return bad(format!("groups take {seats} committee seats of {}", self.nodes));
        }
        if count(false).is_none_or(|extra| extra > MAX_SCENARIO_NODES) {
            return bad(format!("at most {MAX_SCENARIO_NODES} nodes may be outside the committee"));
        }
        let roles = self.roles();
        let honest = roles.iter().filter(|r| **r == Role::Honest).count();
        if honest == 0 {
            return bad("at least one honest member is needed".into());
        }
        if self.attack.victim >= honest {
            return bad(format!("attack.victim {} is not an honest member (0..{honest})", self.attack.victim));
        }
        for fault in &self.faults {
            if let Some(i) = fault.nodes.iter().find(|i| **i >= roles.len()) {
                return bad(format!("a {} fault names node {i}, but there are {}", fault.kind.name(), roles.len()));
            }
            fault.validate().map_err(ScenarioError::Invalid)?;
        }
        self.links.validate().map_err(ScenarioError::Invalid)?;
        if let Some(seen_set) = &self.seen_set {
            seen_set.validate(self.nodes).map_err(ScenarioError::Invalid)?;
        }
        if let Some(bans) = &self.bans {
            bans.validate().map_err(ScenarioError::Invalid)?;
        }
        let a = &self.attack;
        if a.sybil_keys == 0 || a.sybil_keys > MAX_SYBIL_KEYS {
            return bad(format!("attack.sybil_keys must be in 1..={MAX_SYBIL_KEYS}"));
        }
        for (name, v) in [
            ("sybil_key_rate_per_s", a.sybil_key_rate_per_s),
            ("budget_flood_per_s", a.budget_flood_per_s),
            ("sync_flood_per_s", a.sync_flood_per_s),
            ("reoffend_at_s", a.reoffend_at_s),
            ("equivocate_s", a.equivocate_s),
        ] {
            if !(v.is_finite() && (0.0..=10_000.0).contains(&v)) {
                return bad(format!("attack.{name} must be in 0..=10000"));
            }
        }
        let needs_open = self.groups.iter().any(|g| g.role == Role::SybilKeys && g.count > 0);
        if needs_open && self.policy != GossipPolicy::Open {
            return bad("sybil-keys nodes publish gossip under their own keys: they need policy = \"open\"".into());
        }
        let t = &self.timeline;
        for (name, v) in [("warmup_s", t.warmup_s), ("attack_s", t.attack_s), ("cooldown_s", t.cooldown_s), ("drain_s", t.drain_s)] {
            if !(v.is_finite() && (0.0..=3600.0).contains(&v)) {
                return bad(format!("timeline.{name} must be in 0..=3600"));
            }
        }
        let w = &self.workload;
        if !(w.broadcasts_per_s >= 0.0 && w.broadcasts_per_s <= 1000.0 && w.gossip_per_s >= 0.0 && w.gossip_per_s <= 1000.0) {
            return bad("workload rates must be in 0..=1000 per second".into());
        }
        if w.value_size < 16 || w.value_size > 60_000 || w.gossip_size < 16 || w.gossip_size > 60_000 {
            return bad("workload sizes must be in 16..=60000 bytes".into());
        }
        Ok(())
    }

    /// Applies command-line overrides: committee size, attacker count (spread over the
    /// committee groups in proportion, the first group taking the remainder), seed, and the
    /// attack window.
    pub fn with_overrides(mut self, nodes: Option<usize>, byzantine: Option<usize>, seed: Option<u64>, duration: Option<f64>) -> Scenario {
        if let Some(n) = nodes {
            self.nodes = n;
            self.f = None;
        }
        if let Some(b) = byzantine {
            let committee: Vec<usize> = (0..self.groups.len()).filter(|i| self.groups[*i].role.in_committee()).collect();
            if !committee.is_empty() {
                for i in &committee {
                    self.groups[*i].count = 0;
                }
                // Spread b over the committee groups, round robin.
                for k in 0..b {
                    let i = committee[k % committee.len()];
                    self.groups[i].count += 1;
                }
            }
        }
        if let Some(seed) = seed {
            self.seed = seed;
        }
        if let Some(d) = duration {
            self.timeline.attack_s = d;
        }
        self
    }

    /// Sets what the scenario says about every node (seen-set limits, retention, bans) in a
    /// node's configuration: the one place the in-process runtime, the simulator and the
    /// process runtime's adversaries take them from (its `byzgossip` children get the same
    /// values as command-line flags).
    pub fn apply_node_settings(&self, config: &mut byzgossip_node::NodeConfig) {
        if let Some(limits) = &self.seen_set {
            limits.apply(&mut config.admission.replay);
        }
        if let Some(s) = self.retention_s {
            config.retention = std::time::Duration::from_secs(s);
        }
        if let Some(bans) = &self.bans {
            bans.apply(&mut config.admission.reputation);
        }
    }

    /// Reads a TOML scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::File(format!("{}: {e}", path.display())))?;
        let scenario: Scenario = toml::from_str(&text).map_err(|e| ScenarioError::File(format!("{}: {e}", path.display())))?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// The scenario as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// Built-in presets: name and one-line description, in suite order.
pub const PRESETS: &[(&str, &str)] = &[
    ("baseline", "no attack: the workload on an all-honest committee"),
    ("silent", "f members go silent at the attack start: they send and process nothing"),
    ("crash-restart", "f members are killed at the attack start and restarted from their stores mid-attack"),
    ("equivocate-origin", "f members sign two different SENDs for each of their seqs"),
    ("equivocate-vote", "f members sign a second, conflicting ECHO/READY next to every vote"),
    ("replay", "f members capture envelopes, restart with fresh gossip caches and republish them"),
    ("stale-timestamp", "f members sign gossip and SENDs 20 minutes in the past"),
    ("future-timestamp", "f members sign gossip and SENDs 20 minutes in the future"),
    ("forge", "f members send envelopes claiming an honest origin with bad signatures (framing)"),
    ("tamper", "f members change bodies after signing (hash mismatch, or re-hashed with a stale signature)"),
    ("malformed", "f members send random, truncated and oversize bytes"),
    ("fake-votes", "f members ECHO and READY digests nobody sent, for honest origins' next seqs"),
    ("flood", "f members publish valid gossip far over their rate budget"),
    ("sybil", "8 extra nodes with keys outside the committee publish gossip and votes"),
    ("censor", "f members drop every message of honest member 0 and never relay it"),
    ("eclipse", "f members surround honest member 0, which is cut from every honest node during the attack"),
    ("covert-flash", "f members behave honestly, then flash forgeries, equivocations and garbage"),
    ("partition", "the committee splits 3 | 4 (no side has 2f+1) during the attack, then heals"),
    ("lossy", "f+1 honest members lose 20% of what they receive and hold the rest 50 ms during the attack"),
    ("sync-flood", "f members send sync digests asking for everything to every peer, 100 rounds a second"),
    ("seen-flood", "open policy: 2 extra nodes sign gossip with 32 keys each under budget, f members gossip at their full budget, into small seen-sets"),
    ("reformed", "f members tamper, are banned (2 s bans), behave and are readmitted, then offend again and are banned twice as long"),
    ("amnesia", "a member is down while an equivocator is convicted and while old envelopes are replayed after its restart: it excludes the equivocator after catch-up and delivers no replay"),
];

/// The default suite: every preset, in [`PRESETS`] order.
pub fn default_suite(nodes: usize) -> Vec<Scenario> {
    PRESETS.iter().filter_map(|(name, _)| preset(name, nodes)).collect()
}

/// A built-in preset for a committee of `nodes` (7 in the default suite), with
/// `floor((n-1)/3)` attackers.
pub fn preset(name: &str, nodes: usize) -> Option<Scenario> {
    let description = PRESETS.iter().find(|(n, _)| *n == name)?.1;
    let f = nodes.saturating_sub(1) / 3;
    let group = |role: Role| vec![Group { role, count: f }];
    let mut s = match name {
        "baseline" => Scenario::new(name, description, nodes, vec![]),
        "sybil" => Scenario::new(name, description, nodes, vec![Group { role: Role::Sybil, count: 8 }]),
        "partition" => {
            let mut s = Scenario::new(name, description, nodes, vec![]);
            let side: Vec<usize> = (0..nodes.div_ceil(2).saturating_sub(1).max(1)).collect();
            s.faults = vec![
                Fault::at_phase(Phase::AttackStart, FaultKind::Partition, side),
                Fault::at_phase(Phase::AttackEnd, FaultKind::Heal, vec![]),
            ];
            s
        }
        "seen-flood" => {
            let mut s = Scenario::new(
                name,
                description,
                nodes,
                vec![Group { role: Role::BudgetFlood, count: f }, Group { role: Role::SybilKeys, count: 2 }],
            );
            s.policy = GossipPolicy::Open;
            // Sized so the attack fills them within its 4 s: the Sybil keys' 1,600 msgs/s
            // (25/s per key, under the 128 ids a key may hold) fill the open pool in under a
            // second, a budget flooder's 150/s its half of a 512-id share in under 2 s; an
            // honest member's votes of the whole run need about 170 ids. One pool of the same
            // total size (the seen-set before it had a committee pool) fills within the attack
            // at n = 4, 7 and 16, and honest votes are refused.
            s.seen_set = Some(SeenSetLimits { open_capacity: 1024, per_origin_capacity: 128, committee_capacity: 512 * nodes });
            s
        }
        "reformed" => {
            let mut s = Scenario::new(name, description, nodes, group(Role::Reformed));
            // Bans of 2 s and a penalty half-life of 0.5 s: the first ban (at about 0.2 s)
            // ends near 2.2 s with the score back above the graylist (about -50 halved four
            // times), the attacker is readmitted, offends again at 3.5 s and is banned for
            // 4 s, past the end of the 6 s attack window.
            s.bans = Some(Bans { base_ms: 2_000, penalty_half_life_ms: 500 });
            s.timeline.attack_s = 6.0;
            s.attack.reoffend_at_s = 3.5;
            s
        }
        "amnesia" => {
            // The crash-restart member is killed at the attack start and restarted at its
            // middle (2 s). The equivocator stops after 1 s: the restarted member can learn
            // of its conviction only from its peers. The replayer replays what it captured
            // in the warm-up (which the amnesiac member delivered before it went down) all
            // through the attack window.
            let mut s = Scenario::new(
                name,
                description,
                nodes,
                // One of each from n = 4 (one honest member stays); smaller committees
                // keep only the crash.
                vec![
                    Group { role: Role::EquivocateOrigin, count: usize::from(nodes >= 4) },
                    Group { role: Role::Replay, count: usize::from(nodes >= 4) },
                    Group { role: Role::CrashRestart, count: usize::from(nodes >= 2) },
                ],
            );
            s.attack.equivocate_s = 1.0;
            s
        }
        "lossy" => {
            let mut s = Scenario::new(name, description, nodes, vec![]);
            let degraded: Vec<usize> = (0..(f + 1).min(nodes)).collect();
            s.faults = vec![
                Fault { loss: 0.2, delay_ms: 50, ..Fault::at_phase(Phase::AttackStart, FaultKind::Degrade, degraded.clone()) },
                Fault::at_phase(Phase::AttackEnd, FaultKind::Restore, degraded),
            ];
            s
        }
        other => {
            let role = Role::ALL.into_iter().find(|r| r.name() == other)?;
            Scenario::new(name, description, nodes, group(role))
        }
    };
    s.seed = 7;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4-node scenario with `faults` (TOML `[[faults]]` tables) appended.
    fn with_faults(faults: &str) -> Result<Scenario, ScenarioError> {
        let text = format!("name = \"t\"\nnodes = 4\n{faults}");
        let scenario: Scenario = toml::from_str(&text).map_err(|e| ScenarioError::File(e.to_string()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    #[test]
    fn degrade_and_restore_parse_from_toml() {
        let s = with_faults(
            "[[faults]]\nat = \"attack-start\"\nkind = \"degrade\"\nnodes = [1, 2]\nloss = 0.25\ndelay_ms = 40\n\n\
             [[faults]]\nat_s = 5.0\nkind = \"restore\"\n",
        )
        .expect("valid");
        assert_eq!(s.faults[0].kind, FaultKind::Degrade);
        assert_eq!(s.faults[0].degradation(), Degradation { loss: 0.25, delay_ms: 40 });
        assert_eq!(s.faults[0].time_s(&s.timeline), s.timeline.warmup_s);
        assert_eq!((s.faults[1].kind, s.faults[1].nodes.len(), s.faults[1].at_s), (FaultKind::Restore, 0, 5.0));
        // Round trip: loss and delay are written for degrade only.
        let toml = s.to_toml();
        assert_eq!(toml.matches("loss = ").count(), 1, "{toml}");
        assert_eq!(toml::from_str::<Scenario>(&toml).expect("parses"), s);
    }

    #[test]
    fn degrade_values_out_of_range_are_rejected_with_a_reason() {
        let degrade = |fields: &str| with_faults(&format!("[[faults]]\nkind = \"degrade\"\nnodes = [0]\n{fields}\n"));
        for bad in ["loss = 1.5", "loss = -0.1", "loss = nan"] {
            let e = degrade(bad).expect_err(bad).to_string();
            assert!(e.contains("loss must be a probability in 0..=1"), "{bad}: {e}");
        }
        let e = degrade(&format!("delay_ms = {}", MAX_DEGRADE_DELAY_MS + 1)).expect_err("too long").to_string();
        assert!(e.contains("delay_ms must be at most"), "{e}");
        let e = with_faults("[[faults]]\nkind = \"degrade\"\nloss = 0.5\n").expect_err("no nodes").to_string();
        assert!(e.contains("must list its nodes"), "{e}");
        let e = with_faults("[[faults]]\nkind = \"pause\"\nnodes = [0]\nloss = 0.5\n").expect_err("not degrade").to_string();
        assert!(e.contains("only to degrade faults, not to pause"), "{e}");
        let e = with_faults("[[faults]]\nkind = \"degrade\"\nnodes = [9]\nloss = 0.5\n").expect_err("bad node").to_string();
        assert!(e.contains("a degrade fault names node 9"), "{e}");
        for ok in ["loss = 0.0", "loss = 1.0", "delay_ms = 10000", "loss = 0.2\ndelay_ms = 50"] {
            assert!(degrade(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn lossy_preset_degrades_f_plus_one_honest_members_for_the_attack_window() {
        let s = preset("lossy", 7).expect("preset");
        s.validate().expect("valid");
        assert_eq!(s.byzantine(), 0);
        let degrade = &s.faults[0];
        assert_eq!((degrade.kind, degrade.at, degrade.nodes.clone()), (FaultKind::Degrade, Some(Phase::AttackStart), vec![0, 1, 2]));
        assert_eq!(degrade.degradation(), Degradation { loss: 0.2, delay_ms: 50 });
        assert_eq!((s.faults[1].kind, s.faults[1].at), (FaultKind::Restore, Some(Phase::AttackEnd)));
    }
}
