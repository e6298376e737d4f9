//! Reports: a summary per run (verdict, delivery ratio, latency percentiles, cost per
//! delivery, time to convict attackers, false bans), the terminal table, `report.json`, and a
//! self-contained `report.html` with plots (latency CDF, deliveries over time, peer scores over
//! time with conviction marks and event lines) drawn with `plotters` and inlined as SVG, so the
//! page is viewable offline.

use crate::invariants::{self, CheckResult};
use crate::record::RunLog;
use crate::scenario::Role;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

mod index;
mod plot;
pub use index::index_html;
use plot::{Chart, Event, Line, Mark};

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of `values` (nearest rank).
    pub fn of(values: &[f64]) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Percentiles { count: v.len(), p50: at(0.50), p95: at(0.95), p99: at(0.99), max: v[v.len() - 1] }
    }
}

/// The summary of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Its description.
    pub description: String,
    /// Seed.
    pub seed: u64,
    /// Committee size.
    pub n: usize,
    /// Fault bound.
    pub f: usize,
    /// Non-correct committee members.
    pub byzantine: usize,
    /// Sybil nodes (outside the committee, not correct).
    pub sybils: usize,
    /// Honest observers (outside the committee, delivering on certificates).
    #[serde(default)]
    pub observers: usize,
    /// Whether every check passed.
    pub passed: bool,
    /// The checks.
    pub checks: Vec<CheckResult>,
    /// Honest broadcasts made.
    pub broadcasts: usize,
    /// Honest broadcasts refused or failed.
    pub broadcast_failures: u64,
    /// Percent of (honest broadcast, live correct node) pairs delivered.
    pub honest_delivery_pct: f64,
    /// Percent of (honest gossip message, live correct node) pairs received.
    pub gossip_delivery_pct: f64,
    /// Broadcast to delivery, over every (broadcast, correct node) pair delivered.
    pub latency_ms: Percentiles,
    /// The same at correct members only.
    #[serde(default)]
    pub member_latency_ms: Percentiles,
    /// The same at observers only (empty without observers).
    #[serde(default)]
    pub observer_latency_ms: Percentiles,
    /// Links each honest gossip message crossed to reach each correct node (the copy that got
    /// there first), where the runtime counts them (the simulator; empty elsewhere). An
    /// epidemic over a mesh reaches N nodes in about log2(N) rounds: compare with
    /// `log2(nodes)`.
    #[serde(default)]
    pub gossip_hops: Percentiles,
    /// Every node of the run: members, observers and adversaries.
    #[serde(default)]
    pub nodes: usize,
    /// Gossipsub messages received by correct nodes per Bracha delivery at a correct node.
    pub msgs_per_delivery: Option<f64>,
    /// Their bytes per delivery.
    pub bytes_per_delivery: Option<f64>,
    /// Slowest conviction of a detectable attacker by an honest node, from its arming (ms).
    pub time_to_convict_ms: Option<u64>,
    /// Honest-observer / correct-peer pairs rated below ok.
    pub false_bans: usize,
    /// Length of the run (t0 to end), seconds.
    pub run_s: f64,
}

/// Computes the summary (runs the checker).
pub fn summarize(log: &RunLog) -> Summary {
    let checks = invariants::check(log);
    let keys: HashMap<usize, &str> = log.nodes.iter().map(|n| (n.index, n.key.as_str())).collect();
    let correct: HashSet<usize> = log.correct_nodes().into_iter().collect();
    let live: Vec<usize> = log.nodes.iter().filter(|n| n.correct() && !n.down_at_end).map(|n| n.index).collect();
    let delivered: HashMap<(usize, &str, u64), (&str, u64)> =
        log.deliveries.iter().map(|d| ((d.node, d.origin.as_str(), d.seq), (d.digest.as_str(), d.delivered_at_ms))).collect();
    let observers: HashSet<usize> = log.nodes.iter().filter(|n| n.role == crate::scenario::Role::Observer).map(|n| n.index).collect();
    let (mut latencies, mut at_members, mut at_observers) = (Vec::new(), Vec::new(), Vec::new());
    let mut hits = 0usize;
    for b in &log.broadcasts {
        let origin = keys.get(&b.origin).copied().unwrap_or("");
        for &n in &live {
            if let Some((digest, at)) = delivered.get(&(n, origin, b.seq))
                && *digest == b.digest
            {
                hits += 1;
                let ms = at.saturating_sub(b.sent_at_ms) as f64;
                latencies.push(ms);
                if observers.contains(&n) { at_observers.push(ms) } else { at_members.push(ms) }
            }
        }
    }
    let pairs = log.broadcasts.len() * live.len();
    let gossip_got: HashSet<(usize, &str)> = log.gossip.iter().map(|g| (g.node, g.id.as_str())).collect();
    let mut gossip_hits = 0usize;
    let mut gossip_pairs = 0usize;
    for p in &log.publishes {
        for &n in live.iter().filter(|n| **n != p.origin) {
            gossip_pairs += 1;
            if gossip_got.contains(&(n, p.id.as_str())) {
                gossip_hits += 1;
            }
        }
    }
    let honest_ids: HashSet<&str> = log.publishes.iter().map(|p| p.id.as_str()).collect();
    let gossip_hops: Vec<f64> =
        log.gossip.iter().filter(|g| correct.contains(&g.node) && honest_ids.contains(g.id.as_str())).filter_map(|g| g.hops.map(f64::from)).collect();
    let correct_deliveries = log.deliveries.iter().filter(|d| correct.contains(&d.node)).count();
    let (msgs, bytes) = log.traffic.iter().filter(|t| correct.contains(&t.node)).fold((0u64, 0u64), |(m, b), t| (m + t.msgs_in, b + t.bytes_in));
    let per = |x: u64| (correct_deliveries > 0).then(|| x as f64 / correct_deliveries as f64);
    let mut convict: Option<u64> = None;
    let honest = log.honest_nodes();
    for node in log.nodes.iter().filter(|n| n.role.detectable()) {
        let Some(armed) = node.armed_at_ms else { continue };
        let first = invariants::first_conviction(log, node.index);
        for o in &honest {
            if let Some(t) = first.get(o) {
                convict = Some(convict.unwrap_or(0).max(t.saturating_sub(armed)));
            }
        }
    }
    let false_bans = checks.iter().find(|c| c.name == "no-false-bans").map_or(0, |c| c.evidence.len());
    let pct = |a: usize, b: usize| if b == 0 { 100.0 } else { 100.0 * a as f64 / b as f64 };
    Summary {
        scenario: log.scenario.name.clone(),
        description: log.scenario.description.clone(),
        seed: log.scenario.seed,
        n: log.n,
        f: log.f,
        byzantine: log.scenario.byzantine(),
        sybils: log.nodes.iter().filter(|n| !n.role.in_committee() && !n.role.correct()).count(),
        observers: observers.len(),
        passed: invariants::all_passed(&checks),
        checks,
        broadcasts: log.broadcasts.len(),
        broadcast_failures: log.broadcast_failures,
        honest_delivery_pct: pct(hits, pairs),
        gossip_delivery_pct: pct(gossip_hits, gossip_pairs),
        latency_ms: Percentiles::of(&latencies),
        member_latency_ms: Percentiles::of(&at_members),
        observer_latency_ms: Percentiles::of(&at_observers),
        gossip_hops: Percentiles::of(&gossip_hops),
        nodes: log.nodes.len(),
        msgs_per_delivery: per(msgs),
        bytes_per_delivery: per(bytes),
        time_to_convict_ms: convict,
        false_bans,
        run_s: log.end_ms.saturating_sub(log.t0_ms) as f64 / 1000.0,
    }
}

fn opt(v: Option<f64>, unit: f64, digits: usize) -> String {
    v.map_or("-".into(), |x| format!("{:.*}", digits, x / unit))
}

/// The terminal table of a suite.
pub fn table(summaries: &[Summary]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<18} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>7} {:>6}  failed checks",
        "scenario", "verdict", "deliv%", "p50ms", "p95ms", "p99ms", "msg/dl", "KiB/dl", "convict", "fbans", "run s"
    );
    for s in summaries {
        let failed: Vec<&str> = s.checks.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect();
        let _ = writeln!(
            out,
            "{:<18} {:>7} {:>7.1} {:>7.0} {:>7.0} {:>7.0} {:>7} {:>8} {:>8} {:>7} {:>6.1}  {}",
            s.scenario,
            if s.passed { "PASS" } else { "FAIL" },
            s.honest_delivery_pct,
            s.latency_ms.p50,
            s.latency_ms.p95,
            s.latency_ms.p99,
            opt(s.msgs_per_delivery, 1.0, 1),
            opt(s.bytes_per_delivery, 1024.0, 1),
            s.time_to_convict_ms.map_or("-".into(), |t| format!("{:.2}s", t as f64 / 1000.0)),
            s.false_bans,
            s.run_s,
            if failed.is_empty() { "-".to_owned() } else { failed.join(",") }
        );
    }
    out
}

/// The failed checks of a summary with their evidence, for the terminal.
pub fn failures(summary: &Summary) -> String {
    let mut out = String::new();
    for c in summary.checks.iter().filter(|c| !c.passed) {
        let _ = writeln!(out, "{}: {} FAILED ({})", summary.scenario, c.name, c.detail);
        for e in &c.evidence {
            let _ = writeln!(out, "    {e}");
        }
    }
    out
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Seconds since the start of the run: the x axis of the time plots and the timeline.
fn rel(log: &RunLog, t_ms: u64) -> f64 {
    (t_ms as f64 - log.t0_ms as f64) / 1000.0
}

/// Whether a timeline event is a fault. Faults are drawn as lines in the time plots; arming,
/// phases and connection notes are only listed in the timeline, so the plots stay readable.
fn is_fault(what: &str) -> bool {
    ["kill ", "restart ", "pause ", "resume ", "partition ", "heal ", "degrade ", "restore "].iter().any(|p| what.starts_with(p))
}

/// The vertical lines of the time plots: the attack window and every fault during the run.
fn event_lines(log: &RunLog) -> Vec<Event> {
    let mut out = vec![Event { x: rel(log, log.attack_start_ms), label: "attack".into() }, Event { x: rel(log, log.attack_end_ms), label: "attack end".into() }];
    let during = |t: u64| (log.t0_ms..=log.end_ms).contains(&t);
    out.extend(log.events.iter().filter(|e| is_fault(&e.what) && during(e.t_ms)).map(|e| Event { x: rel(log, e.t_ms), label: e.what.clone() }));
    out
}

/// Plot 1: the CDF of broadcast-to-delivery latency over every delivery of an honest broadcast
/// at a correct node (the log records deliveries at correct nodes only).
fn latency_chart(log: &RunLog) -> Chart<'static> {
    let keys: HashMap<usize, &str> = log.nodes.iter().map(|n| (n.index, n.key.as_str())).collect();
    let sent: HashMap<(&str, u64), u64> = log.broadcasts.iter().map(|b| ((keys.get(&b.origin).copied().unwrap_or(""), b.seq), b.sent_at_ms)).collect();
    let mut lat: Vec<f64> = log
        .deliveries
        .iter()
        .filter_map(|d| sent.get(&(d.origin.as_str(), d.seq)).map(|s| d.delivered_at_ms.saturating_sub(*s) as f64))
        .collect();
    lat.sort_by(f64::total_cmp);
    let cdf: Vec<(f64, f64)> = lat.iter().enumerate().map(|(i, l)| (*l, (i + 1) as f64 / lat.len() as f64)).collect();
    Chart {
        title: "Bracha delivery latency (CDF)",
        x_label: "ms from broadcast to delivery",
        y_label: "fraction of deliveries",
        lines: vec![Line { name: "all correct nodes".into(), color: plot::GOOD[0], points: cdf }],
        events: vec![],
        marks: vec![],
        y_range: Some(0.0..1.05),
        x_from_zero: true,
    }
}

/// Plot 2: Bracha deliveries so far per correct node, over time, with the event lines: a
/// stalled node shows as a flat line, an attack's cost as a change of slope.
fn deliveries_chart(log: &RunLog, events: Vec<Event>) -> Chart<'static> {
    let mut per_node: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for d in &log.deliveries {
        per_node.entry(d.node).or_default().push(d.delivered_at_ms);
    }
    let lines = per_node
        .into_iter()
        .enumerate()
        .map(|(i, (node, mut ts))| {
            ts.sort_unstable();
            let mut points = vec![(0.0, 0.0)];
            points.extend(ts.iter().enumerate().map(|(k, t)| (rel(log, *t), (k + 1) as f64)));
            Line { name: format!("node {node}"), color: plot::GOOD[i % plot::GOOD.len()], points }
        })
        .collect();
    Chart { title: "Bracha deliveries over time (correct nodes)", x_label: "seconds since start", y_label: "deliveries", lines, events, marks: vec![], y_range: None, x_from_zero: true }
}

/// Bucket width for score traces: honest observers sample at different instants, so their
/// scores are averaged per bucket.
const SCORE_BUCKET_MS: u64 = 250;

/// Per peer, the mean score over honest observers per [`SCORE_BUCKET_MS`] bucket.
fn score_buckets(log: &RunLog, honest: &HashSet<usize>) -> BTreeMap<usize, BTreeMap<u64, (f64, usize)>> {
    let mut buckets: BTreeMap<usize, BTreeMap<u64, (f64, usize)>> = BTreeMap::new();
    for s in log.peer_samples.iter().filter(|s| honest.contains(&s.observer)) {
        let b = buckets.entry(s.peer).or_default().entry(s.t_ms / SCORE_BUCKET_MS).or_insert((0.0, 0));
        b.0 += s.score;
        b.1 += 1;
    }
    buckets
}

/// Every first conviction of a peer by an honest observer, in time order: (time, observer,
/// peer, the observer's score for it then, the status it gave).
fn convictions(log: &RunLog, peers: impl Iterator<Item = usize>, honest: &HashSet<usize>) -> Vec<(u64, usize, usize, f64, String)> {
    let mut out = Vec::new();
    for peer in peers {
        for (observer, t) in invariants::first_conviction(log, peer) {
            if !honest.contains(&observer) {
                continue;
            }
            let sample = log.peer_samples.iter().find(|s| s.peer == peer && s.observer == observer && s.t_ms == t);
            out.push((t, observer, peer, sample.map_or(0.0, |s| s.score), sample.map_or_else(|| "?".to_owned(), |s| s.status.clone())));
        }
    }
    out.sort_by_key(|c| (c.0, c.1, c.2));
    out
}

/// Plot 3: each peer's score (mean over honest observers) over time, correct peers in cool
/// colors and the others in reds, a mark where an honest node convicted a peer, and the event
/// lines. Also returns the convictions in words for the list under the plot (the marks alone
/// do not say who convicted whom).
fn scores_chart(log: &RunLog, events: Vec<Event>) -> (Chart<'static>, Vec<String>) {
    let honest: HashSet<usize> = log.honest_nodes().into_iter().collect();
    let buckets = score_buckets(log, &honest);
    let roles: HashMap<usize, Role> = log.nodes.iter().map(|n| (n.index, n.role)).collect();
    let (mut good, mut bad) = (0, 0);
    let lines = buckets
        .iter()
        .map(|(peer, b)| {
            let role = roles.get(peer).copied().unwrap_or(Role::Honest);
            let color = if role.correct() {
                good += 1;
                plot::GOOD[(good - 1) % plot::GOOD.len()]
            } else {
                bad += 1;
                plot::BAD[(bad - 1) % plot::BAD.len()]
            };
            let points = b.iter().map(|(t, (sum, k))| (rel(log, t * SCORE_BUCKET_MS), sum / *k as f64)).collect();
            Line { name: format!("node {peer} ({})", role.name()), color, points }
        })
        .collect();
    let found = convictions(log, buckets.keys().copied(), &honest);
    let marks = found.iter().map(|(t, _, _, score, status)| Mark { x: rel(log, *t), y: *score, kind: status.clone() }).collect();
    let words = found.iter().map(|(t, o, p, _, status)| format!("+{:.2} s: node {o} rated node {p} {status}", rel(log, *t))).collect();
    let chart = Chart { title: "Peer scores (mean over honest observers)", x_label: "seconds since start", y_label: "score", lines, events, marks, y_range: None, x_from_zero: true };
    (chart, words)
}

/// The plots section of the page: three inline SVG charts and the list of convictions.
fn plots_html(log: &RunLog) -> String {
    let events = event_lines(log);
    let (scores, convicted) = scores_chart(log, events.clone());
    let mut h = String::from("<h2>Plots</h2>");
    for chart in [latency_chart(log), deliveries_chart(log, events), scores] {
        let _ = write!(h, "<div>{}</div>", plot::svg_or_note(&chart));
    }
    let _ = write!(h, "<details><summary>Convictions by honest nodes ({})</summary><ul>", convicted.len());
    for c in &convicted {
        let _ = write!(h, "<li>{}</li>", esc(c));
    }
    h.push_str("</ul></details>");
    h
}

/// The HTML report of one run: one self-contained page (inline CSS and SVG, no scripts, no
/// other files), so it can be opened offline or attached to an issue.
pub fn html(log: &RunLog, summary: &Summary) -> String {
    let mut h = String::new();
    let verdict = if summary.passed { "<span style=\"color:#080\">PASS</span>" } else { "<span style=\"color:#c00\">FAIL</span>" };
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>byzgossip testnet: {0}</title><style>body{{font-family:sans-serif;max-width:900px;margin:2em auto}}td,th{{padding:2px 8px;text-align:left;border-bottom:1px solid #ddd}}pre{{background:#f6f6f6;padding:8px;overflow:auto}}svg{{max-width:100%;height:auto}}.note{{color:#c00}}</style></head><body><h1>{0}: {1}</h1><p>{2}</p>",
        esc(&summary.scenario),
        verdict,
        esc(&summary.description)
    );
    let _ = write!(
        h,
        "<table><tr><th>n / f</th><td>{} / {} ({} byzantine members, {} sybils, {} observers), seed {}</td></tr>",
        summary.n, summary.f, summary.byzantine, summary.sybils, summary.observers, summary.seed
    );
    if summary.observers > 0 {
        let (m, o) = (&summary.member_latency_ms, &summary.observer_latency_ms);
        let _ = write!(
            h,
            "<tr><th>latency members / observers</th><td>p50 {:.0} / {:.0} ms, p99 {:.0} / {:.0} ms ({} / {} deliveries)</td></tr>",
            m.p50, o.p50, m.p99, o.p99, m.count, o.count
        );
    }
    let _ = write!(h, "<tr><th>honest broadcasts</th><td>{} ({} refused or failed)</td></tr>", summary.broadcasts, summary.broadcast_failures);
    let _ = write!(h, "<tr><th>honest delivery</th><td>{:.1}% (gossip {:.1}%)</td></tr>", summary.honest_delivery_pct, summary.gossip_delivery_pct);
    let l = &summary.latency_ms;
    let _ = write!(h, "<tr><th>latency</th><td>p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} samples)</td></tr>", l.p50, l.p95, l.p99, l.max, l.count);
    let g = &summary.gossip_hops;
    if g.count > 0 {
        let _ = write!(
            h,
            "<tr><th>gossip hops</th><td>p50 {:.0}, p99 {:.0}, max {:.0} ({} receipts); log2 of {} nodes = {:.1}</td></tr>",
            g.p50,
            g.p99,
            g.max,
            g.count,
            summary.nodes,
            (summary.nodes.max(1) as f64).log2()
        );
    }
    let _ = write!(h, "<tr><th>cost per delivery</th><td>{} messages, {} KiB received by correct nodes</td></tr>", opt(summary.msgs_per_delivery, 1.0, 1), opt(summary.bytes_per_delivery, 1024.0, 1));
    let _ = write!(h, "<tr><th>time to convict</th><td>{}</td></tr>", summary.time_to_convict_ms.map_or("-".into(), |t| format!("{:.2} s (slowest honest observer)", t as f64 / 1000.0)));
    let _ = write!(h, "<tr><th>false bans</th><td>{}</td></tr></table>", summary.false_bans);
    h.push_str("<h2>Invariants</h2><table><tr><th>check</th><th>result</th><th>detail</th></tr>");
    for c in &summary.checks {
        let _ = write!(h, "<tr><td>{}</td><td>{}</td><td>{}", esc(&c.name), if c.passed { "pass" } else { "<b style=\"color:#c00\">FAIL</b>" }, esc(&c.detail));
        for e in &c.evidence {
            let _ = write!(h, "<br><code>{}</code>", esc(e));
        }
        h.push_str("</td></tr>");
    }
    h.push_str("</table>");
    h.push_str(&plots_html(log));
    h.push_str("<h2>Timeline</h2><ul>");
    for e in &log.events {
        let _ = write!(h, "<li>+{:.2} s: {}</li>", rel(log, e.t_ms), esc(&e.what));
    }
    h.push_str("</ul><h2>Nodes</h2><table><tr><th>index</th><th>role</th><th>peer id</th></tr>");
    for n in &log.nodes {
        let _ = write!(h, "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>", n.index, n.role.name(), esc(&n.peer_id));
    }
    let _ = write!(h, "</table><h2>Scenario (replay with <code>run --scenario scenario.toml</code>)</h2><pre>{}</pre></body></html>", esc(&log.scenario.to_toml()));
    h
}

/// Writes `scenario.toml`, `run.json`, `report.json` and `report.html` into `dir`.
pub fn write_run(dir: &Path, log: &RunLog, summary: &Summary) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("scenario.toml"), log.scenario.to_toml())?;
    std::fs::write(dir.join("run.json"), serde_json::to_vec(log)?)?;
    std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(summary)?)?;
    std::fs::write(dir.join("report.html"), html(log, summary))?;
    Ok(())
}

/// Reads a run directory's `run.json`.
pub fn read_run(dir: &Path) -> anyhow::Result<RunLog> {
    let bytes = std::fs::read(dir.join("run.json"))?;
    Ok(serde_json::from_slice(&bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{BroadcastRecord, DeliveryRecord, EventRecord, NodeRecord, PeerSample};

    /// Four nodes (node 3 a forger), no traffic: t0 = 1 s, attack 2 s to 3 s, end 10 s.
    fn empty_log() -> RunLog {
        let nodes = (0..4)
            .map(|i| NodeRecord {
                index: i,
                role: if i == 3 { Role::Forge } else { Role::Honest },
                key: format!("{:064x}", i + 1),
                peer_id: format!("peer{i}"),
                member: Some(i),
                armed_at_ms: (i == 3).then_some(2_000),
                down_at_end: false,
            })
            .collect();
        RunLog {
            scenario: crate::scenario::preset("baseline", 4).expect("preset exists"),
            n: 4,
            f: 1,
            nodes,
            t0_ms: 1_000,
            attack_start_ms: 2_000,
            attack_end_ms: 3_000,
            load_end_ms: 4_000,
            end_ms: 10_000,
            disrupted_until_ms: 0,
            broadcasts: vec![],
            broadcast_failures: 0,
            unconfirmed_broadcasts: vec![],
            unconfirmed_publishes: vec![],
            publishes: vec![],
            deliveries: vec![],
            gossip: vec![],
            peer_samples: vec![],
            traffic: vec![],
            events: vec![],
        }
    }

    /// `empty_log` plus one broadcast delivered by the honest nodes, score samples in which
    /// node 0 graylists the forger, and a kill/restart of node 2.
    fn busy_log() -> RunLog {
        let mut log = empty_log();
        let digest = "aa".repeat(32);
        log.broadcasts.push(BroadcastRecord { origin: 0, seq: 0, digest: digest.clone(), sent_at_ms: 1_010 });
        log.deliveries = (0..3).map(|n| DeliveryRecord { node: n, origin: format!("{:064x}", 1), seq: 0, digest: digest.clone(), delivered_at_ms: 1_100 + 10 * n as u64, cursor: 1 }).collect();
        for (t, score, status) in [(2_000, 0.0, "ok"), (2_500, -30.0, "graylisted"), (3_000, -80.0, "banned")] {
            log.peer_samples.push(PeerSample { t_ms: t, observer: 0, peer: 3, score, status: status.into(), bans: 0, until_ms: None, asked_ms: 0 });
            log.peer_samples.push(PeerSample { t_ms: t, observer: 0, peer: 1, score: 1.0, status: "ok".into(), bans: 0, until_ms: None, asked_ms: 0 });
        }
        log.events = vec![EventRecord { t_ms: 2_200, what: "kill node 2".into() }, EventRecord { t_ms: 2_600, what: "restart node 2".into() }, EventRecord { t_ms: 2_000, what: "arm [3]".into() }];
        log
    }

    fn page(log: &RunLog) -> String {
        html(log, &summarize(log))
    }

    #[test]
    fn html_of_a_run_without_traffic_has_three_charts() {
        let h = page(&empty_log());
        assert_eq!(h.matches("<svg").count(), 3, "{h}");
        assert!(!h.contains("plot unavailable"));
        assert!(!h.contains("NaN"));
        assert!(h.contains("Convictions by honest nodes (0)"));
    }

    #[test]
    fn html_shows_deliveries_events_and_convictions() {
        let h = page(&busy_log());
        assert_eq!(h.matches("<svg").count(), 3);
        for text in ["Bracha delivery latency (CDF)", "node 3 (forge)", "kill node 2", "restart node 2", "attack end", "graylisted by an honest node", "+1.50 s: node 0 rated node 3 graylisted"] {
            assert!(h.contains(text), "missing {text:?}");
        }
        assert!(!h.contains(">arm [3]\n"), "arming is listed in the timeline, not drawn");
        assert!(h.contains("<li>+1.00 s: arm [3]</li>"));
    }

    #[test]
    fn fault_events_become_lines_and_other_events_do_not() {
        let mut log = busy_log();
        log.events.push(EventRecord { t_ms: 99_000, what: "kill node 1".into() });
        let labels: Vec<String> = event_lines(&log).into_iter().map(|e| e.label).collect();
        assert_eq!(labels, ["attack", "attack end", "kill node 2", "restart node 2"]);
    }

    #[test]
    fn write_run_writes_a_page_that_read_run_can_redo() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = busy_log();
        write_run(dir.path(), &log, &summarize(&log)).expect("write");
        let again = read_run(dir.path()).expect("read");
        assert_eq!(again, log);
        let h = std::fs::read_to_string(dir.path().join("report.html")).expect("report.html");
        assert_eq!(h.matches("<svg").count(), 3);
        assert!(!h.contains("<script") && !h.contains(" src=") && !h.contains(" href="), "the page loads nothing");
    }
}
