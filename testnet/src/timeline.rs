//! The fault timeline, shared by both runtimes: [`plan`] turns a scenario into timed
//! [`Action`]s once, and [`run`] applies them to a [`FaultTarget`] (the in-process harness or
//! the process runtime), logging every event and marking disruptions in one place. The
//! runtimes only say how to kill, start, pause, arm or block one node; what happens when, and
//! which links a partition or an eclipse cuts (also after a restart), is decided here, so the
//! two runtimes cannot drift apart.
//!
//! The rest of a run is written once too, for both real runtimes: [`run_scenario`] (the
//! schedule: workload, sampler, timeline, drain), [`spawn_workload`], [`spawn_sampler`],
//! [`drained`] and [`collect`], over the [`Runtime`] trait (what a runtime shows of its nodes)
//! and [`NodeApi`] (one node's broadcast, publish and peers: a `NodeHandle` in process, the
//! typed HTTP client in process mode).
//!
//! # Cuts
//! A partition or an eclipse cuts pairs of nodes: each side blocks the other by peer id (the
//! node's block by hand, [`byzgossip_node::NodeHandle::disconnect`] or the HTTP API's
//! `/peers/{id}/block`). The driver keeps the set of cut pairs. Whenever a node comes back
//! (restart, refresh, resume) its block list is made to match that set again: a restarted
//! node has lost its blocks, and a paused process could not take the blocks or unblocks made
//! while it was stopped.
//!
//! # Degradations
//! `degrade` and `restore` set and clear a node's inbound loss and delay. The driver keeps
//! the degradation of every node and applies it again whenever the node comes back, like the
//! cuts. Only a degradation that drops everything (`loss = 1`) is a disruption for the timed
//! invariants (see [`Degradation::total`]).

use crate::adversary::LOAD_TOPIC;
use crate::harness::{CALL_TIMEOUT, SAMPLE_INTERVAL};
use crate::record::{BroadcastRecord, NodeRecord, PeerSample, PublishRecord, RunLog, TrafficRecord, UnconfirmedRecord};
use crate::recorder::{Shared, lock};
use crate::scenario::{Degradation, FaultKind, Role, Scenario};
use byzgossip_crypto::{Digest, PublicKey};
use byzgossip_node::now_ms;
use byzgossip_reputation::PeerSnapshot;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One step of the timeline.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Action {
    /// Restart these adversaries with fresh gossip caches (same store), so the envelopes a
    /// replayer captured can be published again.
    Refresh(Vec<usize>),
    /// Arm these nodes' attacks (and start their drivers).
    Arm(Vec<usize>),
    /// Disarm these nodes (the attack window ends).
    Disarm(Vec<usize>),
    /// A fault from the scenario or a role (crash-restart) on these nodes.
    Fault(FaultKind, Vec<usize>),
    /// Cut the first group from the second (partition, eclipse).
    Cut(Vec<usize>, Vec<usize>),
    /// Heal every cut that touches this node (the end of an eclipse).
    HealNode(usize),
    /// Give these nodes this inbound loss and delay.
    Degrade(Vec<usize>, Degradation),
    /// Clear these nodes' degradation.
    Restore(Vec<usize>),
}

/// The timeline of `scenario` as (seconds from the start, action), in time order; actions
/// due at the same time keep the order below.
pub(crate) fn plan(scenario: &Scenario) -> Vec<(f64, Action)> {
    let t = &scenario.timeline;
    let roles = scenario.roles();
    let of_role = |role: Role| -> Vec<usize> { (0..roles.len()).filter(|i| roles[*i] == role).collect() };
    let attack_start = t.warmup_s;
    let attack_mid = t.warmup_s + t.attack_s / 2.0;
    let attack_end = t.warmup_s + t.attack_s;
    let mut plan = Vec::new();
    let replayers = of_role(Role::Replay);
    if !replayers.is_empty() {
        plan.push((attack_start, Action::Refresh(replayers)));
    }
    // A covert flash behaves honestly until the middle of the window.
    let attackers: Vec<usize> = (0..roles.len()).filter(|i| !roles[*i].correct() && roles[*i] != Role::CovertFlash).collect();
    plan.push((attack_start, Action::Arm(attackers)));
    plan.push((attack_mid, Action::Arm(of_role(Role::CovertFlash))));
    for i in of_role(Role::CrashRestart) {
        plan.push((attack_start, Action::Fault(FaultKind::Kill, vec![i])));
        plan.push((attack_mid, Action::Fault(FaultKind::Restart, vec![i])));
    }
    // Eclipse: the victim is cut from everyone but the eclipsers for the attack window.
    let eclipsers = of_role(Role::Eclipse);
    if !eclipsers.is_empty() {
        let victim = scenario.attack.victim;
        let others: Vec<usize> = (0..roles.len()).filter(|i| roles[*i] != Role::Eclipse && *i != victim).collect();
        plan.push((attack_start, Action::Cut(vec![victim], others)));
        plan.push((attack_end, Action::HealNode(victim)));
    }
    for fault in &scenario.faults {
        let action = match fault.kind {
            FaultKind::Partition => {
                let others: Vec<usize> = (0..roles.len()).filter(|i| !fault.nodes.contains(i)).collect();
                Action::Cut(fault.nodes.clone(), others)
            }
            FaultKind::Degrade => Action::Degrade(fault.nodes.clone(), fault.degradation()),
            FaultKind::Restore if fault.nodes.is_empty() => Action::Restore((0..roles.len()).collect()),
            FaultKind::Restore => Action::Restore(fault.nodes.clone()),
            kind => Action::Fault(kind, fault.nodes.clone()),
        };
        plan.push((fault.time_s(t).max(0.0), action));
    }
    let adversaries: Vec<usize> = (0..roles.len()).filter(|i| !roles[*i].correct()).collect();
    plan.push((attack_end, Action::Disarm(adversaries)));
    plan.sort_by(|a, b| a.0.total_cmp(&b.0));
    plan
}

/// What a runtime does to one node. Every method is best effort: a node that is down (or, in
/// process mode, stopped by SIGSTOP) is skipped, and the driver repairs block lists when the
/// node comes back. Methods log nothing; the driver records the events.
pub(crate) trait FaultTarget {
    /// The run's records (events, disruptions).
    fn shared(&self) -> &Shared;
    /// Nodes in the run.
    fn len(&self) -> usize;
    /// Whether node `i` follows the protocol (its disruptions move the totality deadline).
    fn correct(&self, i: usize) -> bool;
    /// Whether node `i` is running (not killed).
    fn is_up(&self, i: usize) -> bool;
    /// Arms node `i`'s attack and starts its driver.
    async fn arm(&self, i: usize);
    /// Disarms node `i` and stops its driver.
    async fn disarm(&self, i: usize);
    /// Restarts adversary `i` with fresh gossip caches and the same store; `cut` are the
    /// nodes it is cut from (not to be dialled).
    async fn refresh(&self, i: usize, cut: &[usize]);
    /// Kills node `i` without any shutdown step.
    async fn kill(&self, i: usize);
    /// Starts killed node `i` again from its store; `cut` are the nodes it is cut from (not
    /// to be dialled).
    async fn start(&self, i: usize, cut: &[usize]) -> anyhow::Result<()>;
    /// Pauses (stops sending and processing) or resumes node `i`.
    async fn pause(&self, i: usize, paused: bool);
    /// Makes node `i` block (or stop blocking) node `peer`: one direction of a cut.
    async fn block(&self, i: usize, peer: usize, block: bool);
    /// Asks node `i` to dial `peer` after a heal, where its own redialling would not.
    async fn reconnect(&self, i: usize, peer: usize);
    /// Sets (or with `None` clears) node `i`'s inbound loss and delay. Set again after
    /// every restart and refresh, so a runtime may forget it when a node goes down.
    async fn degrade(&self, i: usize, degradation: Option<Degradation>);
}

/// What the driver keeps across actions.
#[derive(Default)]
pub(crate) struct State {
    cuts: Cuts,
    /// The degradation of every degraded node.
    degraded: BTreeMap<usize, Degradation>,
}

impl State {
    /// Makes node `i` match the driver's state again after it came back: its blocks and its
    /// degradation.
    async fn repair<T: FaultTarget>(&self, target: &T, i: usize) {
        sync_blocks(target, &self.cuts, i).await;
        if let Some(d) = self.degraded.get(&i) {
            target.degrade(i, Some(*d)).await;
        }
    }
}

/// The cut pairs, both orders normalised to `(low, high)`.
#[derive(Default)]
struct Cuts(HashSet<(usize, usize)>);

impl Cuts {
    fn key(a: usize, b: usize) -> (usize, usize) {
        (a.min(b), a.max(b))
    }
    fn peers_of(&self, i: usize) -> Vec<usize> {
        let mut peers: Vec<usize> =
            self.0.iter().filter_map(|&(a, b)| if a == i { Some(b) } else if b == i { Some(a) } else { None }).collect();
        peers.sort_unstable();
        peers
    }
}

/// Why a call to a node gave no answer.
pub(crate) enum Failure {
    /// Refused or unreachable: an ordinary failure (a broadcast counts in
    /// `broadcast_failures`); the node did not carry the call out.
    Failed,
    /// No answer although the call may have reached the node (a connection broken after
    /// the request was sent): it may have been carried out. Timeouts are the same.
    Unknown,
    /// The node answered something its API does not promise (a missing or malformed field):
    /// also recorded as a protocol error in the run log ([`Shared::protocol_error`]).
    Protocol(String),
}

/// One running node as the workload and the sampler call it: a [`byzgossip_node::NodeHandle`]
/// in process, an HTTP client in process mode. Each call's timeout is the caller's.
pub(crate) trait NodeApi: Send + Sync + 'static {
    /// Bracha broadcast of `value`; the instance's seq.
    fn broadcast(&self, value: Vec<u8>) -> impl Future<Output = Result<u64, Failure>> + Send;
    /// Signed gossip of `payload` on `topic`; the message id (hex).
    fn publish(&self, topic: &'static str, payload: Vec<u8>) -> impl Future<Output = Result<String, Failure>> + Send;
    /// The node's view of its peers.
    fn peers(&self) -> impl Future<Output = Result<Vec<PeerSnapshot>, Failure>> + Send;
}

/// What a runtime shows of its nodes besides faults, so that the workload, the peer sampler,
/// the drain check and the final collection are written once ([`spawn_workload`],
/// [`spawn_sampler`], [`drained`], [`collect`]) for both real runtimes.
pub(crate) trait Runtime: FaultTarget + Send + Sync + 'static {
    /// How the workload and the sampler reach a node.
    type Node: NodeApi;
    /// The scenario being run.
    fn scenario(&self) -> &Scenario;
    /// Node `i`'s role.
    fn role(&self, i: usize) -> Role;
    /// Node `i`'s signing key.
    fn key(&self, i: usize) -> PublicKey;
    /// Node `i`'s libp2p id.
    fn peer_id(&self, i: usize) -> libp2p::PeerId;
    /// Node `i`, if it can be called now (`None` while killed; a stopped process too).
    fn node(&self, i: usize) -> Option<Self::Node>;
    /// Whether node `i` is paused (the workload sends it nothing).
    fn paused(&self, i: usize) -> bool;
    /// When node `i` was last armed (ms since the epoch; 0 if never).
    fn armed_at(&self, i: usize) -> u64;
    /// Node `i`'s traffic so far.
    fn traffic(&self, i: usize) -> TrafficRecord;
}

async fn timed<T>(f: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(CALL_TIMEOUT, f).await.ok()
}

/// Starts the scenario's workload, which stops at `until`: honest members in turn broadcast
/// `broadcasts_per_s` values and publish `gossip_per_s` payloads on [`LOAD_TOPIC`] (seeded
/// bytes), each call in its own task; a broadcast to a node that is down or paused, or that
/// fails, counts as a failure. Waits for the calls in flight before it ends.
pub(crate) fn spawn_workload<T: Runtime>(target: &Arc<T>, until: Instant) -> JoinHandle<()> {
    let target = target.clone();
    tokio::spawn(async move {
        let w = target.scenario().workload.clone();
        let origins: Vec<usize> = (0..target.len()).filter(|&i| target.role(i) == Role::Honest).collect();
        let mut rng = ChaCha20Rng::seed_from_u64(target.scenario().seed ^ 0x10ad);
        let started = Instant::now();
        let (mut b_sent, mut g_sent) = (0u64, 0u64);
        let mut inflight: Vec<JoinHandle<()>> = Vec::new();
        let mut interval = tokio::time::interval(Duration::from_millis(10));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while Instant::now() < until {
            interval.tick().await;
            let t = started.elapsed().as_secs_f64();
            while (b_sent as f64) < t * w.broadcasts_per_s {
                let origin = origins[b_sent as usize % origins.len()];
                b_sent += 1;
                let Some(node) = target.node(origin).filter(|_| !target.paused(origin)) else {
                    target.shared().failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let mut value = vec![0u8; w.value_size];
                rng.fill_bytes(&mut value);
                let digest = Digest::of(&value).to_hex();
                let target = target.clone();
                inflight.push(tokio::spawn(async move {
                    let sent_at_ms = now_ms();
                    let shared = target.shared();
                    match timed(node.broadcast(value)).await {
                        Some(Ok(seq)) => lock(&shared.broadcasts).push(BroadcastRecord { origin, seq, digest, sent_at_ms }),
                        failed => {
                            shared.failures.fetch_add(1, Ordering::Relaxed);
                            match failed {
                                Some(Err(Failure::Protocol(why))) => shared.protocol_error(format!("node {origin} broadcast: {why}")),
                                None | Some(Err(Failure::Unknown)) => {
                                    lock(&shared.unconfirmed_broadcasts).push(UnconfirmedRecord { origin, digest, sent_at_ms })
                                }
                                _ => {}
                            }
                        }
                    }
                }));
            }
            while (g_sent as f64) < t * w.gossip_per_s {
                let origin = origins[g_sent as usize % origins.len()];
                g_sent += 1;
                let Some(node) = target.node(origin).filter(|_| !target.paused(origin)) else { continue };
                let mut payload = vec![0u8; w.gossip_size];
                rng.fill_bytes(&mut payload);
                let digest = Digest::of(&payload).to_hex();
                let target = target.clone();
                inflight.push(tokio::spawn(async move {
                    let sent_at_ms = now_ms();
                    let shared = target.shared();
                    match timed(node.publish(LOAD_TOPIC, payload)).await {
                        Some(Ok(id)) => lock(&shared.publishes).push(PublishRecord { origin, id, sent_at_ms }),
                        Some(Err(Failure::Protocol(why))) => shared.protocol_error(format!("node {origin} publish: {why}")),
                        None | Some(Err(Failure::Unknown)) => {
                            lock(&shared.unconfirmed_publishes).push(UnconfirmedRecord { origin, digest, sent_at_ms })
                        }
                        Some(Err(Failure::Failed)) => {}
                    }
                }));
            }
            inflight.retain(|t| !t.is_finished());
        }
        for t in inflight {
            let _ = t.await;
        }
    })
}

/// Starts sampling every correct node's view of its peers every [`SAMPLE_INTERVAL`]
/// (aborted by [`run_scenario`] at the end); peers outside the testnet are left out.
pub(crate) fn spawn_sampler<T: Runtime>(target: &Arc<T>) -> JoinHandle<()> {
    let target = target.clone();
    tokio::spawn(async move {
        let by_key: HashMap<PublicKey, usize> = (0..target.len()).map(|i| (target.key(i), i)).collect();
        let mut interval = tokio::time::interval(SAMPLE_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            interval.tick().await;
            for observer in (0..target.len()).filter(|&i| target.correct(i)) {
                let Some(node) = target.node(observer) else { continue };
                let asked_ms = now_ms();
                let peers = match timed(node.peers()).await {
                    Some(Ok(peers)) => peers,
                    Some(Err(Failure::Protocol(why))) => {
                        target.shared().protocol_error(format!("node {observer} peers: {why}"));
                        continue;
                    }
                    _ => continue,
                };
                let t_ms = now_ms();
                let mut samples = lock(&target.shared().samples);
                for p in peers {
                    if let Some(&peer) = by_key.get(&p.peer) {
                        samples.push(PeerSample { asked_ms, ..PeerSample::of(t_ms, observer, peer, &p) });
                    }
                }
            }
        }
    })
}

/// Whether the run is drained: see [`Shared::drained`].
pub(crate) fn drained<T: Runtime>(target: &T) -> bool {
    let keys: Vec<String> = (0..target.len()).map(|i| target.key(i).to_hex()).collect();
    target.shared().drained(&keys, (0..target.len()).filter(|&i| target.correct(i) && target.is_up(i)))
}

/// The run's log: every node's record and traffic, with what the run recorded.
pub(crate) fn collect<T: Runtime>(target: &T, marks: &RunMarks) -> RunLog {
    let sc = target.scenario();
    let nodes = (0..target.len())
        .map(|i| {
            let armed = target.armed_at(i);
            NodeRecord {
                index: i,
                role: target.role(i),
                key: target.key(i).to_hex(),
                peer_id: target.peer_id(i).to_string(),
                member: (i < sc.nodes).then_some(i),
                armed_at_ms: (armed > 0).then_some(armed),
                down_at_end: !target.is_up(i),
            }
        })
        .collect();
    let traffic = (0..target.len()).map(|i| target.traffic(i)).collect();
    target.shared().log(sc, nodes, traffic, (marks.t0_ms, marks.load_end_ms, marks.end_ms))
}

/// When a run started, when its load ended and when it ended (ms since the epoch).
pub(crate) struct RunMarks {
    /// Start of the run.
    pub t0_ms: u64,
    /// End of the workload.
    pub load_end_ms: u64,
    /// End of the drain.
    pub end_ms: u64,
}

/// One run's schedule, the same for both runtimes: workload and sampler, the fault timeline,
/// the end of the load, then the drain (until every correct node is drained or the drain
/// deadline), with events logged along the way. `unit` names the nodes in the start event
/// ("nodes", "processes").
pub(crate) async fn run_scenario<T: Runtime>(target: &Arc<T>, unit: &str) -> RunMarks {
    let sc = target.scenario().clone();
    let t = &sc.timeline;
    let start = Instant::now();
    let t0_ms = now_ms();
    let shared = target.shared();
    shared.t0.store(t0_ms, Ordering::Relaxed);
    shared.event(format!("start: {} {unit}, scenario {}", target.len(), sc.name));
    let load_end = start + Duration::from_secs_f64(t.warmup_s + t.attack_s + t.cooldown_s);
    let hard_end = load_end + Duration::from_secs_f64(t.drain_s);
    let workload = spawn_workload(target, load_end);
    let sampler = spawn_sampler(target);
    run(target.as_ref(), plan(&sc), start).await;
    tokio::time::sleep_until(load_end).await;
    let _ = workload.await;
    let load_end_ms = now_ms();
    shared.event("workload ends; draining".into());
    while Instant::now() < hard_end && !drained(target.as_ref()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let gossip and samples settle briefly.
    tokio::time::sleep(Duration::from_millis(300).min(hard_end.saturating_duration_since(Instant::now()))).await;
    let end_ms = now_ms();
    shared.event(if drained(target.as_ref()) { "drained".into() } else { "drain deadline reached".into() });
    sampler.abort();
    RunMarks { t0_ms, load_end_ms, end_ms }
}

/// Applies `plan` to `target`, each action at `start` plus its offset; returns once the last
/// action is applied.
pub(crate) async fn run<T: FaultTarget>(target: &T, plan: Vec<(f64, Action)>, start: Instant) {
    let mut state = State::default();
    for (at_s, action) in plan {
        tokio::time::sleep_until(start + Duration::from_secs_f64(at_s)).await;
        apply(target, &mut state, action).await;
    }
}

/// Applies one action (the simulator calls it from its own event loop, in virtual time).
pub(crate) async fn apply<T: FaultTarget>(target: &T, state: &mut State, action: Action) {
    let shared = target.shared();
    match action {
        Action::Arm(nodes) => {
            for &i in &nodes {
                target.arm(i).await;
            }
            if !nodes.is_empty() {
                shared.event(format!("arm {nodes:?}"));
            }
        }
        Action::Disarm(nodes) => {
            for &i in &nodes {
                target.disarm(i).await;
            }
            shared.event("attack window ends".into());
        }
        Action::Refresh(nodes) => {
            for i in nodes {
                target.refresh(i, &state.cuts.peers_of(i)).await;
                state.repair(target, i).await;
                shared.event(format!("refresh node {i} (fresh gossip caches)"));
            }
        }
        Action::Fault(FaultKind::Heal, _) => heal(target, &mut state.cuts, None).await,
        Action::Fault(FaultKind::Partition, side) => {
            // [`plan`] already turns partitions into cuts; kept for actions made elsewhere.
            let others: Vec<usize> = (0..target.len()).filter(|i| !side.contains(i)).collect();
            cut(target, &mut state.cuts, &side, &others).await;
        }
        Action::Fault(kind, nodes) => {
            for i in nodes {
                match kind {
                    FaultKind::Kill => kill(target, i).await,
                    FaultKind::Restart => {
                        if target.is_up(i) {
                            kill(target, i).await;
                        }
                        match target.start(i, &state.cuts.peers_of(i)).await {
                            Ok(()) => shared.event(format!("restart node {i}")),
                            Err(e) => shared.event(format!("restart node {i} failed: {e:#}")),
                        }
                        state.repair(target, i).await;
                        if target.correct(i) {
                            shared.disrupted();
                        }
                    }
                    FaultKind::Pause | FaultKind::Resume => {
                        let paused = kind == FaultKind::Pause;
                        target.pause(i, paused).await;
                        if !paused {
                            state.repair(target, i).await;
                        }
                        shared.disrupted();
                        shared.event(format!("{} node {i}", if paused { "pause" } else { "resume" }));
                    }
                    // Whole-fault actions, matched above; degrade and restore become their
                    // own actions in [`plan`].
                    FaultKind::Partition | FaultKind::Heal | FaultKind::Degrade | FaultKind::Restore => {}
                }
            }
        }
        Action::Cut(side, others) => cut(target, &mut state.cuts, &side, &others).await,
        Action::HealNode(i) => heal(target, &mut state.cuts, Some(i)).await,
        Action::Degrade(nodes, degradation) => {
            for &i in &nodes {
                target.degrade(i, Some(degradation)).await;
                let was = state.degraded.insert(i, degradation);
                // The start or the end of a total loss (a later degrade replaces an earlier).
                if (degradation.total() || was.is_some_and(|w| w.total())) && target.correct(i) {
                    shared.disrupted();
                }
            }
            shared.event(format!("degrade {nodes:?}: loss {}, delay {} ms", degradation.loss, degradation.delay_ms));
        }
        Action::Restore(nodes) => {
            let mut restored = Vec::new();
            for &i in &nodes {
                if let Some(was) = state.degraded.remove(&i) {
                    target.degrade(i, None).await;
                    if was.total() && target.correct(i) {
                        shared.disrupted();
                    }
                    restored.push(i);
                }
            }
            shared.event(format!("restore {restored:?}"));
        }
    }
}

/// Cuts every node of `side` from every node of `others`, both ways.
async fn cut<T: FaultTarget>(target: &T, cuts: &mut Cuts, side: &[usize], others: &[usize]) {
    let mut blocks = Vec::new();
    for &a in side {
        for &b in others {
            if a != b && cuts.0.insert(Cuts::key(a, b)) {
                blocks.push((a, b, true));
                blocks.push((b, a, true));
            }
        }
    }
    apply_blocks(target, blocks).await;
    target.shared().disrupted();
    target.shared().event(format!("partition {side:?} | {others:?}"));
}

async fn kill<T: FaultTarget>(target: &T, i: usize) {
    target.kill(i).await;
    if target.correct(i) {
        target.shared().disrupted();
    }
    target.shared().event(format!("kill node {i}"));
}

/// Undoes the cuts (all, or those touching `only`) and reconnects each healed pair.
async fn heal<T: FaultTarget>(target: &T, cuts: &mut Cuts, only: Option<usize>) {
    let mut healed: Vec<(usize, usize)> = cuts.0.iter().copied().filter(|(a, b)| only.is_none_or(|o| *a == o || *b == o)).collect();
    healed.sort_unstable();
    for pair in &healed {
        cuts.0.remove(pair);
    }
    apply_blocks(target, healed.iter().flat_map(|&(a, b)| [(a, b, false), (b, a, false)]).collect()).await;
    futures::future::join_all(healed.iter().map(|&(a, b)| target.reconnect(a, b))).await;
    target.shared().disrupted();
    target.shared().event(format!("heal {} pairs", healed.len()));
}

/// Makes node `i`'s blocks match the cut set, on both ends of its cuts (after a restart or a
/// resume). Unblocking a peer that is not blocked is a no-op in the node.
async fn sync_blocks<T: FaultTarget>(target: &T, cuts: &Cuts, i: usize) {
    let cut = cuts.peers_of(i);
    let mut blocks = Vec::new();
    for j in (0..target.len()).filter(|j| *j != i) {
        let blocked = cut.contains(&j);
        blocks.push((i, j, blocked));
        if blocked {
            blocks.push((j, i, true));
        }
    }
    apply_blocks(target, blocks).await;
}

/// Applies `(node, peer, block)` changes concurrently: a cut of k by m nodes is 2km calls,
/// and one after the other (tens of ms each over HTTP) they would stretch the moment a
/// partition takes effect over most of a second.
async fn apply_blocks<T: FaultTarget>(target: &T, blocks: Vec<(usize, usize, bool)>) {
    futures::future::join_all(blocks.into_iter().map(|(i, peer, block)| target.block(i, peer, block))).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset;

    #[test]
    fn partition_preset_cuts_one_side_from_the_rest_then_heals() {
        let s = preset("partition", 7).expect("preset");
        let plan = plan(&s);
        let cut = plan.iter().find_map(|(t, a)| match a {
            Action::Cut(side, others) => Some((*t, side.clone(), others.clone())),
            _ => None,
        });
        assert_eq!(cut, Some((s.timeline.warmup_s, vec![0, 1, 2], vec![3, 4, 5, 6])));
        let heal = plan.iter().find(|(_, a)| *a == Action::Fault(FaultKind::Heal, vec![])).map(|(t, _)| *t);
        assert_eq!(heal, Some(s.timeline.warmup_s + s.timeline.attack_s));
        assert!(plan.windows(2).all(|w| w[0].0 <= w[1].0), "in time order");
    }

    #[test]
    fn degrade_and_restore_are_planned_at_their_phases() {
        let s = preset("lossy", 7).expect("preset");
        let plan = plan(&s);
        let (start, end) = (s.timeline.warmup_s, s.timeline.warmup_s + s.timeline.attack_s);
        let lossy = Degradation { loss: 0.2, delay_ms: 50 };
        assert!(plan.contains(&(start, Action::Degrade(vec![0, 1, 2], lossy))), "{plan:?}");
        assert!(plan.contains(&(end, Action::Restore(vec![0, 1, 2]))), "{plan:?}");
        // A restore without nodes restores every node.
        let mut s = s;
        s.faults[1].nodes.clear();
        assert!(super::plan(&s).contains(&(end, Action::Restore((0..7).collect()))));
    }

    /// Records what the driver asks of the runtime.
    #[derive(Default)]
    struct Recording {
        shared: Shared,
        calls: std::sync::Mutex<Vec<(usize, Option<Degradation>)>>,
    }

    impl FaultTarget for Recording {
        fn shared(&self) -> &Shared {
            &self.shared
        }
        fn len(&self) -> usize {
            4
        }
        fn correct(&self, _i: usize) -> bool {
            true
        }
        fn is_up(&self, _i: usize) -> bool {
            true
        }
        async fn arm(&self, _i: usize) {}
        async fn disarm(&self, _i: usize) {}
        async fn refresh(&self, _i: usize, _cut: &[usize]) {}
        async fn kill(&self, _i: usize) {}
        async fn start(&self, _i: usize, _cut: &[usize]) -> anyhow::Result<()> {
            Ok(())
        }
        async fn pause(&self, _i: usize, _paused: bool) {}
        async fn block(&self, _i: usize, _peer: usize, _block: bool) {}
        async fn reconnect(&self, _i: usize, _peer: usize) {}
        async fn degrade(&self, i: usize, degradation: Option<Degradation>) {
            crate::recorder::lock(&self.calls).push((i, degradation));
        }
    }

    #[tokio::test]
    async fn degradations_outlast_restarts_and_only_total_loss_disrupts() {
        use std::sync::atomic::Ordering;
        let target = Recording::default();
        let mut state = State::default();
        let partial = Degradation { loss: 0.2, delay_ms: 50 };
        let total = Degradation { loss: 1.0, delay_ms: 0 };
        apply(&target, &mut state, Action::Degrade(vec![1], partial)).await;
        assert_eq!(target.shared.disrupted_until.load(Ordering::Relaxed), 0, "partial loss is no disruption");
        // A restarted node gets its degradation again.
        apply(&target, &mut state, Action::Fault(FaultKind::Restart, vec![1])).await;
        target.shared.disrupted_until.store(0, Ordering::Relaxed);
        apply(&target, &mut state, Action::Degrade(vec![2], total)).await;
        assert_ne!(target.shared.disrupted_until.load(Ordering::Relaxed), 0, "total loss is a disruption");
        target.shared.disrupted_until.store(0, Ordering::Relaxed);
        // Restoring node 3, never degraded, is a no-op; node 2's end of total loss disrupts.
        apply(&target, &mut state, Action::Restore(vec![1, 2, 3])).await;
        assert_ne!(target.shared.disrupted_until.load(Ordering::Relaxed), 0, "the end of total loss is a disruption");
        let calls = crate::recorder::lock(&target.calls).clone();
        assert_eq!(calls, vec![(1, Some(partial)), (1, Some(partial)), (2, Some(total)), (1, None), (2, None)]);
        assert!(state.degraded.is_empty());
    }

    #[test]
    fn eclipse_cuts_the_victim_from_honest_nodes_only() {
        let s = preset("eclipse", 7).expect("preset");
        let plan = plan(&s);
        // Seats 0..5 honest, 5 and 6 eclipsers; the victim is 0.
        assert!(plan.contains(&(s.timeline.warmup_s, Action::Cut(vec![0], vec![1, 2, 3, 4]))), "{plan:?}");
        assert!(plan.contains(&(s.timeline.warmup_s + s.timeline.attack_s, Action::HealNode(0))), "{plan:?}");
    }
}
