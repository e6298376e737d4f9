//! The invariant checker: pure functions from a [`RunLog`] to pass/fail results with
//! evidence. It never trusts the nodes' own reports beyond what they delivered and how they
//! rated their peers.
//!
//! | check | rule |
//! |---|---|
//! | `agreement` | no two correct nodes deliver different digests for one instance |
//! | `integrity` | a node delivers an instance at most once; an instance of a correct origin only with the value that origin broadcast |
//! | `validity` | every honest broadcast is delivered by every correct node still up |
//! | `totality` | an instance delivered by one correct node is delivered by all within the deadline (from its first delivery, or from the end of the last disruption) |
//! | `gossip-delivery` | every honest gossip message reaches every other correct node up at the end within the totality deadline (from its publish, or from the end of the last disruption), but one published in the second before that node was killed |
//! | `no-forgery` | no gossip message or Bracha value attributed to a correct origin that it never sent is delivered (a call that timed out may have been carried out: it excuses its own value, or one gossip id) |
//! | `no-replay` | no node hands one gossip message to its application twice, across restarts too (gossip ids persist with the replay window) |
//! | `no-false-bans` | no honest node graylists, bans or excludes a correct node |
//! | `detection` | every detectable attacker is graylisted, banned or excluded by every honest node within the deadline of its arming |
//! | `catch-up` | a correct node restarted after an honest node excluded an equivocator excludes it too, within the detection deadline of its restart |
//! | `readmission` | every honest node readmits a `reformed` attacker (status ok) within the detection deadline of its first ban's end, and bans it again for twice as long |

use crate::record::RunLog;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Most evidence lines kept per check.
pub const MAX_EVIDENCE: usize = 8;

/// The outcome of one invariant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The invariant's name.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// One line: what was checked.
    pub detail: String,
    /// Up to [`MAX_EVIDENCE`] lines of evidence of a violation (and how many more).
    pub evidence: Vec<String>,
}

struct Builder {
    name: &'static str,
    evidence: Vec<String>,
    violations: usize,
}

impl Builder {
    fn new(name: &'static str) -> Builder {
        Builder { name, evidence: vec![], violations: 0 }
    }
    fn fail(&mut self, line: String) {
        self.violations += 1;
        if self.evidence.len() < MAX_EVIDENCE {
            self.evidence.push(line);
        }
    }
    fn finish(mut self, detail: String) -> CheckResult {
        if self.violations > self.evidence.len() {
            self.evidence.push(format!("... and {} more", self.violations - self.evidence.len()));
        }
        CheckResult { name: self.name.to_owned(), passed: self.violations == 0, detail, evidence: self.evidence }
    }
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(8)]
}

/// Seconds since the start of the run, for evidence lines.
fn rel(log: &RunLog, t_ms: u64) -> String {
    format!("+{:.2} s", (t_ms as f64 - log.t0_ms as f64) / 1000.0)
}

/// Runs every check.
pub fn check(log: &RunLog) -> Vec<CheckResult> {
    vec![
        agreement(log),
        integrity(log),
        validity(log),
        totality(log),
        gossip_delivery(log),
        no_forgery(log),
        no_replay(log),
        no_false_bans(log),
        detection(log),
        catch_up(log),
        readmission(log),
    ]
}

/// Whether every check passed.
pub fn all_passed(results: &[CheckResult]) -> bool {
    results.iter().all(|r| r.passed)
}

fn correct_set(log: &RunLog) -> HashSet<usize> {
    log.correct_nodes().into_iter().collect()
}

/// Correct nodes up at the end (liveness is owed by these).
fn live_correct(log: &RunLog) -> Vec<usize> {
    log.nodes.iter().filter(|n| n.correct() && !n.down_at_end).map(|n| n.index).collect()
}

/// No two correct nodes deliver different values for one instance.
pub fn agreement(log: &RunLog) -> CheckResult {
    let mut b = Builder::new("agreement");
    let correct = correct_set(log);
    let mut by_instance: BTreeMap<(&str, u64), BTreeMap<&str, Vec<usize>>> = BTreeMap::new();
    for d in log.deliveries.iter().filter(|d| correct.contains(&d.node)) {
        by_instance.entry((&d.origin, d.seq)).or_default().entry(&d.digest).or_default().push(d.node);
    }
    for ((origin, seq), digests) in &by_instance {
        if digests.len() > 1 {
            let parts: Vec<String> = digests.iter().map(|(d, nodes)| format!("nodes {nodes:?} delivered {}", short(d))).collect();
            b.fail(format!("instance {}/{seq}: {}", short(origin), parts.join("; ")));
        }
    }
    b.finish(format!("{} instances delivered by correct nodes", by_instance.len()))
}

/// At most once per instance per node; a correct origin's instance only with its value (or
/// with a value of a broadcast call of that origin that timed out: it may have been carried out).
pub fn integrity(log: &RunLog) -> CheckResult {
    let mut b = Builder::new("integrity");
    let correct = correct_set(log);
    let by_key = log.index_by_key();
    let sent: HashMap<(usize, u64), &str> = log.broadcasts.iter().map(|x| ((x.origin, x.seq), x.digest.as_str())).collect();
    let maybe_sent = log.unconfirmed_broadcast_values();
    let mut seen: HashSet<(usize, &str, u64)> = HashSet::new();
    let mut count = 0;
    for d in log.deliveries.iter().filter(|d| correct.contains(&d.node)) {
        count += 1;
        if !seen.insert((d.node, &d.origin, d.seq)) {
            b.fail(format!("node {} delivered instance {}/{} more than once", d.node, short(&d.origin), d.seq));
        }
        match by_key.get(d.origin.as_str()) {
            None => b.fail(format!("node {} delivered instance {}/{} of a key outside the testnet", d.node, short(&d.origin), d.seq)),
            Some(&origin) if correct.contains(&origin) => match sent.get(&(origin, d.seq)) {
                Some(digest) if *digest == d.digest => {}
                None if maybe_sent.contains(&(origin, d.digest.as_str())) => {}
                Some(digest) => b.fail(format!(
                    "node {} delivered {} for instance {}/{} of correct node {origin}, which broadcast {}",
                    d.node,
                    short(&d.digest),
                    short(&d.origin),
                    d.seq,
                    short(digest)
                )),
                None => b.fail(format!(
                    "node {} delivered instance {}/{} that correct node {origin} never broadcast",
                    d.node,
                    short(&d.origin),
                    d.seq
                )),
            },
            Some(_) => {}
        }
    }
    b.finish(format!("{count} deliveries at correct nodes"))
}

/// Every honest broadcast is delivered by every correct node up at the end.
pub fn validity(log: &RunLog) -> CheckResult {
    let mut b = Builder::new("validity");
    let keys: HashMap<usize, &str> = log.nodes.iter().map(|n| (n.index, n.key.as_str())).collect();
    let delivered: HashSet<(usize, &str, u64, &str)> =
        log.deliveries.iter().map(|d| (d.node, d.origin.as_str(), d.seq, d.digest.as_str())).collect();
    let live = live_correct(log);
    for x in &log.broadcasts {
        let origin = keys.get(&x.origin).copied().unwrap_or("");
        let missing: Vec<usize> = live.iter().copied().filter(|n| !delivered.contains(&(*n, origin, x.seq, x.digest.as_str()))).collect();
        if !missing.is_empty() {
            b.fail(format!("broadcast {}/{} by node {} (sent {}) not delivered by nodes {missing:?}", short(origin), x.seq, x.origin, rel(log, x.sent_at_ms)));
        }
    }
    b.finish(format!("{} honest broadcasts x {} correct nodes", log.broadcasts.len(), live.len()))
}

/// Every instance delivered by one correct node is delivered by all within the deadline.
pub fn totality(log: &RunLog) -> CheckResult {
    let mut b = Builder::new("totality");
    let correct = correct_set(log);
    let live = live_correct(log);
    let deadline_ms = (log.scenario.deadlines.totality_s * 1000.0) as u64;
    let mut first: BTreeMap<(&str, u64), u64> = BTreeMap::new();
    let mut at: HashMap<(usize, &str, u64), u64> = HashMap::new();
    for d in log.deliveries.iter().filter(|d| correct.contains(&d.node)) {
        let e = first.entry((&d.origin, d.seq)).or_insert(d.delivered_at_ms);
        *e = (*e).min(d.delivered_at_ms);
        at.insert((d.node, &d.origin, d.seq), d.delivered_at_ms);
    }
    let mut inconclusive = 0;
    for (&(origin, seq), &t) in &first {
        let deadline = t.max(log.disrupted_until_ms) + deadline_ms;
        for &n in &live {
            match at.get(&(n, origin, seq)) {
                Some(&when) if when <= deadline => {}
                Some(&when) => b.fail(format!(
                    "instance {}/{seq}: first delivered {}, node {n} delivered it {} (deadline {})",
                    short(origin),
                    rel(log, t),
                    rel(log, when),
                    rel(log, deadline)
                )),
                None if log.end_ms < deadline => inconclusive += 1,
                None => b.fail(format!(
                    "instance {}/{seq}: first delivered {}, never delivered by node {n} (deadline {})",
                    short(origin),
                    rel(log, t),
                    rel(log, deadline)
                )),
            }
        }
    }
    let mut detail = format!("{} instances, deadline {:.1} s after first delivery or the last disruption", first.len(), deadline_ms as f64 / 1000.0);
    if inconclusive > 0 {
        detail.push_str(&format!(" ({inconclusive} pairs still within their deadline at the end)"));
    }
    b.finish(detail)
}

/// How long before a node's kill a gossip message may have been published and still be lost
/// to that node's application by the kill (see [`gossip_delivery`]).
pub const CRASH_LOSS_WINDOW_MS: u64 = 1_000;

/// Every honest gossip message reaches every other correct node that is up at the end,
/// within the totality deadline of its publish (or of the end of the last disruption, so a
/// partition or a restart must be repaired by sync once it is over). Every node of the
/// testnet subscribes to the load topic, so every correct node is owed every message.
///
/// One exemption: a message published less than [`CRASH_LOSS_WINDOW_MS`] before a node was
/// killed is not owed by that node. Gossip reaches the application at most once across a
/// crash: the node hands a message over once its id is durable (so a replay after the restart
/// is a duplicate), and a kill between that commit and the handoff loses it (Bracha
/// deliveries do not have this gap: they are stored with their values and resume from the
/// durable cursor).
pub fn gossip_delivery(log: &RunLog) -> CheckResult {
    let mut b = Builder::new("gossip-delivery");
    let live = live_correct(log);
    let killed: HashMap<usize, Vec<u64>> = live.iter().map(|&n| (n, kills(log, n))).collect();
    let mut exempt = 0;
    let deadline_ms = (log.scenario.deadlines.totality_s * 1000.0) as u64;
    let mut first: HashMap<(usize, &str), u64> = HashMap::new();
    for g in &log.gossip {
        let at = first.entry((g.node, g.id.as_str())).or_insert(g.received_at_ms);
        *at = (*at).min(g.received_at_ms);
    }
    let mut inconclusive = 0;
    for p in &log.publishes {
        let deadline = p.sent_at_ms.max(log.disrupted_until_ms) + deadline_ms;
        for &n in live.iter().filter(|&&n| n != p.origin) {
            let crashed = killed[&n].iter().any(|&k| k >= p.sent_at_ms && k - p.sent_at_ms < CRASH_LOSS_WINDOW_MS);
            match first.get(&(n, p.id.as_str())) {
                Some(&when) if when <= deadline => {}
                None if crashed => exempt += 1,
                Some(&when) => b.fail(format!(
                    "gossip {} by node {} (sent {}): node {n} received it {} (deadline {})",
                    short(&p.id),
                    p.origin,
                    rel(log, p.sent_at_ms),
                    rel(log, when),
                    rel(log, deadline)
                )),
                None if log.end_ms < deadline => inconclusive += 1,
                None => b.fail(format!(
                    "gossip {} by node {} (sent {}): never received by node {n} (deadline {})",
                    short(&p.id),
                    p.origin,
                    rel(log, p.sent_at_ms),
                    rel(log, deadline)
                )),
            }
        }
    }
    let mut detail = format!("{} honest gossip messages x {} correct nodes", log.publishes.len(), live.len());
    if exempt > 0 {
        detail.push_str(&format!(" ({exempt} pairs lost to a kill right after the publish)"));
    }
    if inconclusive > 0 {
        detail.push_str(&format!(" ({inconclusive} pairs still within their deadline at the end)"));
    }
    b.finish(detail)
}

/// Nothing attributed to a correct origin that it never sent is delivered. A call whose
/// answer never came (a timeout under load) may have been carried out: a broadcast value it
/// carried, from its origin, is no forgery whatever its seq, and each such publish explains
/// one gossip id of its origin that no answered publish names.
pub fn no_forgery(log: &RunLog) -> CheckResult {
    let mut b = Builder::new("no-forgery");
    let correct = correct_set(log);
    let by_key = log.index_by_key();
    let published: HashSet<&str> = log.publishes.iter().map(|p| p.id.as_str()).collect();
    let sent: HashSet<(usize, u64, &str)> = log.broadcasts.iter().map(|x| (x.origin, x.seq, x.digest.as_str())).collect();
    let maybe_sent = log.unconfirmed_broadcast_values();
    let mut maybe_published: HashMap<usize, usize> = HashMap::new();
    for p in &log.unconfirmed_publishes {
        *maybe_published.entry(p.origin).or_default() += 1;
    }
    // Per origin, the gossip ids delivered that no answered publish names.
    let mut unexplained: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    let mut checked = 0;
    for g in log.gossip.iter().filter(|g| correct.contains(&g.node)) {
        if let Some(&origin) = by_key.get(g.origin.as_str()).filter(|o| correct.contains(o)) {
            checked += 1;
            if !published.contains(g.id.as_str()) {
                unexplained.entry(origin).or_default().insert(g.id.as_str());
            }
        }
    }
    for (origin, ids) in unexplained {
        let explained = maybe_published.get(&origin).copied().unwrap_or(0);
        for id in ids.into_iter().skip(explained) {
            b.fail(format!("gossip {} claiming correct node {origin} was delivered, which it never published", short(id)));
        }
    }
    for d in log.deliveries.iter().filter(|d| correct.contains(&d.node)) {
        if let Some(&origin) = by_key.get(d.origin.as_str()).filter(|o| correct.contains(o)) {
            checked += 1;
            if !sent.contains(&(origin, d.seq, d.digest.as_str())) && !maybe_sent.contains(&(origin, d.digest.as_str())) {
                b.fail(format!("node {} delivered value {} as correct node {origin}'s broadcast {}, never sent", d.node, short(&d.digest), d.seq));
            }
        }
    }
    b.finish(format!("{checked} deliveries attributed to correct origins"))
}

/// No gossip message reaches one node's application twice, whatever restarts in between.
pub fn no_replay(log: &RunLog) -> CheckResult {
    let mut b = Builder::new("no-replay");
    let mut seen: HashSet<(usize, &str)> = HashSet::new();
    let mut after_restart = 0;
    for g in &log.gossip {
        if !seen.insert((g.node, &g.id)) {
            b.fail(format!(
                "node {} delivered gossip {} twice (second at {}, start {} of the node)",
                g.node,
                short(&g.id),
                rel(log, g.received_at_ms),
                g.incarnation
            ));
        } else if g.incarnation > 0 {
            after_restart += 1;
        }
    }
    b.finish(format!("{} gossip deliveries ({after_restart} by restarted nodes)", log.gossip.len()))
}

/// No honest node rates a correct node below ok.
pub fn no_false_bans(log: &RunLog) -> CheckResult {
    let mut b = Builder::new("no-false-bans");
    let correct = correct_set(log);
    let honest: HashSet<usize> = log.honest_nodes().into_iter().collect();
    let mut reported: HashSet<(usize, usize, &str)> = HashSet::new();
    for s in &log.peer_samples {
        if honest.contains(&s.observer) && correct.contains(&s.peer) && s.status != "ok" && reported.insert((s.observer, s.peer, &s.status)) {
            b.fail(format!("node {} rated correct node {} {} at {} (score {:.1})", s.observer, s.peer, s.status, rel(log, s.t_ms), s.score));
        }
    }
    b.finish(format!("{} peer samples from honest observers", log.peer_samples.iter().filter(|s| honest.contains(&s.observer)).count()))
}

/// When each honest observer first rated `peer` below ok (ms since the Unix epoch).
pub fn first_conviction(log: &RunLog, peer: usize) -> HashMap<usize, u64> {
    let mut out: HashMap<usize, u64> = HashMap::new();
    for s in log.peer_samples.iter().filter(|s| s.peer == peer && s.status != "ok") {
        let e = out.entry(s.observer).or_insert(s.t_ms);
        *e = (*e).min(s.t_ms);
    }
    out
}

/// Every detectable attacker is convicted by every honest node within the deadline.
pub fn detection(log: &RunLog) -> CheckResult {
    let mut b = Builder::new("detection");
    let deadline_ms = (log.scenario.deadlines.detection_s * 1000.0) as u64;
    let observers: Vec<usize> = log.nodes.iter().filter(|n| n.role == crate::scenario::Role::Honest && !n.down_at_end).map(|n| n.index).collect();
    let mut attackers = 0;
    for node in log.nodes.iter().filter(|n| n.role.detectable()) {
        let Some(armed) = node.armed_at_ms else { continue };
        attackers += 1;
        let convicted = first_conviction(log, node.index);
        for &o in &observers {
            match convicted.get(&o) {
                Some(&t) if t <= armed + deadline_ms => {}
                Some(&t) => b.fail(format!("node {o} convicted {} attacker {} only {:.2} s after arming", node.role.name(), node.index, (t - armed.min(t)) as f64 / 1000.0)),
                None => b.fail(format!("node {o} never convicted {} attacker {}", node.role.name(), node.index)),
            }
        }
    }
    let detail = if attackers == 0 {
        "no detectable attacker in this scenario".to_owned()
    } else {
        format!("{attackers} detectable attackers x {} honest observers, deadline {:.1} s", observers.len(), deadline_ms as f64 / 1000.0)
    };
    b.finish(detail)
}

/// When node `i` was restarted (the timeline's `restart node i` events), in order.
fn restarts(log: &RunLog, i: usize) -> Vec<u64> {
    timeline_events(log, &format!("restart node {i}"))
}

/// When node `i` was killed (the timeline's `kill node i` events), in order.
fn kills(log: &RunLog, i: usize) -> Vec<u64> {
    timeline_events(log, &format!("kill node {i}"))
}

fn timeline_events(log: &RunLog, what: &str) -> Vec<u64> {
    log.events.iter().filter(|e| e.what == what).map(|e| e.t_ms).collect()
}

/// A correct node restarted after an honest node excluded an equivocator excludes it too,
/// within the detection deadline of its restart: the evidence it missed while down reaches
/// it through sync.
pub fn catch_up(log: &RunLog) -> CheckResult {
    use crate::scenario::Role;
    let mut b = Builder::new("catch-up");
    let deadline_ms = (log.scenario.deadlines.detection_s * 1000.0) as u64;
    let honest: HashSet<usize> = log.honest_nodes().into_iter().collect();
    let equivocators: Vec<usize> = log
        .nodes
        .iter()
        .filter(|n| matches!(n.role, Role::EquivocateOrigin | Role::EquivocateVote | Role::CovertFlash))
        .map(|n| n.index)
        .collect();
    let mut checked = 0;
    let mut inconclusive = 0;
    for node in log.nodes.iter().filter(|n| n.correct() && !n.down_at_end) {
        let Some(&restart) = restarts(log, node.index).last() else { continue };
        for &e in &equivocators {
            let excluded_before = log
                .peer_samples
                .iter()
                .any(|s| s.peer == e && honest.contains(&s.observer) && s.status == "excluded" && s.t_ms < restart);
            if !excluded_before {
                continue;
            }
            checked += 1;
            let caught_up = log
                .peer_samples
                .iter()
                .filter(|s| s.observer == node.index && s.peer == e && s.status == "excluded" && s.t_ms >= restart)
                .map(|s| s.t_ms)
                .min();
            match caught_up {
                Some(t) if t <= restart + deadline_ms => {}
                Some(t) => b.fail(format!(
                    "node {} excluded equivocator {e} only {:.2} s after its restart at {}",
                    node.index,
                    (t - restart) as f64 / 1000.0,
                    rel(log, restart)
                )),
                None if log.end_ms < restart + deadline_ms => inconclusive += 1,
                None => b.fail(format!("node {} never excluded equivocator {e} after its restart at {}", node.index, rel(log, restart))),
            }
        }
    }
    let mut detail = if checked == 0 {
        "no node restarted after an equivocator's conviction".to_owned()
    } else {
        format!("{checked} (restarted node, convicted equivocator) pairs, deadline {:.1} s after the restart", deadline_ms as f64 / 1000.0)
    };
    if inconclusive > 0 {
        detail.push_str(&format!(" ({inconclusive} still within their deadline at the end)"));
    }
    b.finish(detail)
}

/// One ban as an observer's samples show it: its number, its end, and bounds on its length
/// (the ban started after the last sample before it was asked for, and before the first
/// sample of it was answered).
struct SampledBan {
    bans: u32,
    until_ms: u64,
    first_seen_ms: u64,
    shortest_ms: u64,
    longest_ms: u64,
}

fn sampled_bans(samples: &[&crate::record::PeerSample], armed: u64) -> Vec<SampledBan> {
    let mut out: Vec<SampledBan> = Vec::new();
    let mut previous = armed;
    for s in samples {
        if let (true, Some(until_ms)) = (s.status == "banned", s.until_ms)
            && out.last().is_none_or(|b| b.bans < s.bans)
        {
            out.push(SampledBan {
                bans: s.bans,
                until_ms,
                first_seen_ms: s.t_ms,
                shortest_ms: until_ms.saturating_sub(s.t_ms),
                longest_ms: until_ms.saturating_sub(previous),
            });
        }
        previous = s.asked_ms();
    }
    out
}

/// Every honest node readmits a `reformed` attacker once its first ban ends (rates it ok
/// again within the detection deadline of the ban's end) and bans its second offence twice
/// as long. Ban lengths are measured from the samples: each is known up to the sample
/// interval, so the check asks that the second ban be longer than the first for certain and
/// that twice the first be within the second's bounds.
pub fn readmission(log: &RunLog) -> CheckResult {
    use crate::scenario::Role;
    let mut b = Builder::new("readmission");
    let deadline_ms = (log.scenario.deadlines.detection_s * 1000.0) as u64;
    let observers: Vec<usize> = log.nodes.iter().filter(|n| n.role == Role::Honest && !n.down_at_end).map(|n| n.index).collect();
    let mut pairs = 0;
    for node in log.nodes.iter().filter(|n| n.role == Role::Reformed) {
        let Some(armed) = node.armed_at_ms else { continue };
        for &o in &observers {
            pairs += 1;
            let samples: Vec<&crate::record::PeerSample> =
                log.peer_samples.iter().filter(|s| s.observer == o && s.peer == node.index && s.t_ms >= armed).collect();
            let bans = sampled_bans(&samples, armed);
            let Some(first) = bans.first() else {
                b.fail(format!("node {o} never banned reformed attacker {}", node.index));
                continue;
            };
            let readmitted = samples
                .iter()
                .filter(|s| s.status == "ok" && s.t_ms >= first.until_ms && s.bans == first.bans)
                .map(|s| s.t_ms)
                .min();
            match readmitted {
                Some(t) if t <= first.until_ms + deadline_ms => {}
                Some(t) => b.fail(format!(
                    "node {o} readmitted reformed attacker {} only {:.2} s after its ban ended",
                    node.index,
                    (t - first.until_ms) as f64 / 1000.0
                )),
                None => b.fail(format!("node {o} never readmitted reformed attacker {} after its ban ended at {}", node.index, rel(log, first.until_ms))),
            }
            let Some(second) = bans.iter().find(|x| x.bans == first.bans + 1) else {
                b.fail(format!("node {o} never banned reformed attacker {} again (its second offence)", node.index));
                continue;
            };
            let doubled = second.shortest_ms > first.longest_ms
                && second.shortest_ms <= 2 * first.longest_ms
                && second.longest_ms >= 2 * first.shortest_ms;
            if !doubled {
                b.fail(format!(
                    "node {o}: the second ban of reformed attacker {} (from {}) lasted {}..{} ms, the first {}..{} ms: not twice as long",
                    node.index,
                    rel(log, second.first_seen_ms),
                    second.shortest_ms,
                    second.longest_ms,
                    first.shortest_ms,
                    first.longest_ms
                ));
            }
        }
    }
    let detail = if pairs == 0 {
        "no reformed attacker in this scenario".to_owned()
    } else {
        format!("{pairs} (honest observer, reformed attacker) pairs, readmission deadline {:.1} s", deadline_ms as f64 / 1000.0)
    };
    b.finish(detail)
}
