//! Reports: a summary per run (verdict, delivery ratio, latency percentiles, cost per
//! delivery, time to convict attackers, false bans), the terminal table, `report.json`, and a
//! self-contained `report.html` with inline SVG plots (latency CDF, deliveries over time,
//! peer scores over time with conviction marks), viewable offline.

use crate::invariants::{self, CheckResult};
use crate::record::RunLog;
use crate::scenario::Role;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

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
    /// Sybil nodes.
    pub sybils: usize,
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
    let mut latencies = Vec::new();
    let mut hits = 0usize;
    for b in &log.broadcasts {
        let origin = keys.get(&b.origin).copied().unwrap_or("");
        for &n in &live {
            if let Some((digest, at)) = delivered.get(&(n, origin, b.seq))
                && *digest == b.digest
            {
                hits += 1;
                latencies.push(at.saturating_sub(b.sent_at_ms) as f64);
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
        sybils: log.nodes.iter().filter(|n| n.role == Role::Sybil).count(),
        passed: invariants::all_passed(&checks),
        checks,
        broadcasts: log.broadcasts.len(),
        broadcast_failures: log.broadcast_failures,
        honest_delivery_pct: pct(hits, pairs),
        gossip_delivery_pct: pct(gossip_hits, gossip_pairs),
        latency_ms: Percentiles::of(&latencies),
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

// ---- SVG ----

/// One line of a chart.
pub struct Series {
    /// Legend name.
    pub name: String,
    /// CSS color.
    pub color: String,
    /// Points in data coordinates.
    pub points: Vec<(f64, f64)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const PALETTE: [&str; 10] = ["#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#8c564b", "#bcbd22", "#7f7f7f", "#e377c2", "#ff7f0e", "#aec7e8"];
const BAD: [&str; 4] = ["#d62728", "#ff7f0e", "#e377c2", "#8c0000"];

/// A line chart as an inline SVG: series, vertical marker lines (x, label) and point marks
/// (x, y, tooltip).
pub fn svg_chart(title: &str, xlabel: &str, ylabel: &str, series: &[Series], vlines: &[(f64, String)], marks: &[(f64, f64, String)]) -> String {
    let (w, h, ml, mr, mt, mb) = (760.0, 300.0, 60.0, 20.0, 30.0, 40.0);
    let pts = series.iter().flat_map(|s| s.points.iter().copied()).chain(marks.iter().map(|m| (m.0, m.1)));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for (x, y) in pts.chain(vlines.iter().map(|v| (v.0, f64::NAN))) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        if y.is_finite() {
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-9 {
        y1 = y0 + 1.0;
    }
    let pad = (y1 - y0) * 0.05;
    let (y0, y1) = (y0 - pad, y1 + pad);
    let sx = |x: f64| ml + (x - x0) / (x1 - x0) * (w - ml - mr);
    let sy = |y: f64| mt + (1.0 - (y - y0) / (y1 - y0)) * (h - mt - mb);
    let legend_h = 18.0 * series.len().div_ceil(4) as f64;
    let mut s = String::new();
    let _ = write!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" font-family="sans-serif" font-size="11">"#, h + legend_h);
    let _ = write!(s, r#"<text x="{}" y="18" font-size="14" font-weight="bold">{}</text>"#, ml, esc(title));
    let _ = write!(s, r##"<rect x="{ml}" y="{mt}" width="{}" height="{}" fill="none" stroke="#999"/>"##, w - ml - mr, h - mt - mb);
    for i in 0..=5 {
        let fx = x0 + (x1 - x0) * i as f64 / 5.0;
        let fy = y0 + (y1 - y0) * i as f64 / 5.0;
        let _ = write!(s, r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#eee"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4}</text>"##, sx(fx), mt, h - mb, h - mb + 14.0, num(fx));
        let _ = write!(s, r##"<line x1="{1}" y1="{0:.1}" x2="{2}" y2="{0:.1}" stroke="#eee"/><text x="{3}" y="{4:.1}" text-anchor="end">{5}</text>"##, sy(fy), ml, w - mr, ml - 4.0, sy(fy) + 4.0, num(fy));
    }
    let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, (ml + w - mr) / 2.0, h - 6.0, esc(xlabel));
    let _ = write!(s, r#"<text x="14" y="{0}" transform="rotate(-90 14 {0})" text-anchor="middle">{1}</text>"#, (mt + h - mb) / 2.0, esc(ylabel));
    for (x, label) in vlines {
        let _ = write!(s, r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#c00" stroke-dasharray="4 3"/><text x="{3:.1}" y="{4}" fill="#c00">{5}</text>"##, sx(*x), mt, h - mb, sx(*x) + 3.0, mt + 12.0, esc(label));
    }
    for series in series {
        if series.points.is_empty() {
            continue;
        }
        let path: Vec<String> = series.points.iter().map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y))).collect();
        let _ = write!(s, r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"><title>{}</title></polyline>"#, series.color, path.join(" "), esc(&series.name));
    }
    for (x, y, tip) in marks {
        let (px, py) = (sx(*x), sy(*y));
        let _ = write!(s, r##"<path d="M{:.1},{:.1} l6,6 m0,-6 l-6,6" stroke="#000" stroke-width="2"><title>{}</title></path>"##, px - 3.0, py - 3.0, esc(tip));
    }
    for (i, series) in series.iter().enumerate() {
        let lx = ml + (i % 4) as f64 * 175.0;
        let ly = h + 4.0 + (i / 4) as f64 * 18.0;
        let _ = write!(s, r#"<rect x="{lx}" y="{ly}" width="12" height="8" fill="{}"/><text x="{}" y="{}">{}</text>"#, series.color, lx + 16.0, ly + 8.0, esc(&series.name));
    }
    s.push_str("</svg>");
    s
}

fn num(x: f64) -> String {
    if x.abs() >= 100.0 || x == x.trunc() { format!("{x:.0}") } else { format!("{x:.2}") }
}

/// The HTML report of one run.
pub fn html(log: &RunLog, summary: &Summary) -> String {
    let t0 = log.t0_ms as f64;
    let rel = |t: u64| (t as f64 - t0) / 1000.0;
    let vlines = vec![(rel(log.attack_start_ms), "attack".to_owned()), (rel(log.attack_end_ms), "end".to_owned())];
    // Latency CDF.
    let keys: HashMap<usize, &str> = log.nodes.iter().map(|n| (n.index, n.key.as_str())).collect();
    let sent: HashMap<(&str, u64), u64> = log.broadcasts.iter().map(|b| ((keys.get(&b.origin).copied().unwrap_or(""), b.seq), b.sent_at_ms)).collect();
    let mut lat: Vec<f64> = log
        .deliveries
        .iter()
        .filter_map(|d| sent.get(&(d.origin.as_str(), d.seq)).map(|s| d.delivered_at_ms.saturating_sub(*s) as f64))
        .collect();
    lat.sort_by(f64::total_cmp);
    let cdf: Vec<(f64, f64)> = lat.iter().enumerate().map(|(i, l)| (*l, (i + 1) as f64 / lat.len() as f64)).collect();
    let latency = svg_chart("Bracha delivery latency (CDF)", "ms from broadcast to delivery", "fraction", &[Series { name: "all correct nodes".into(), color: PALETTE[0].into(), points: cdf }], &[], &[]);
    // Deliveries over time.
    let mut per_node: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for d in &log.deliveries {
        per_node.entry(d.node).or_default().push(d.delivered_at_ms);
    }
    let series: Vec<Series> = per_node
        .into_iter()
        .enumerate()
        .map(|(i, (node, mut ts))| {
            ts.sort_unstable();
            let mut points = vec![(0.0, 0.0)];
            points.extend(ts.iter().enumerate().map(|(k, t)| (rel(*t), (k + 1) as f64)));
            Series { name: format!("node {node}"), color: PALETTE[i % PALETTE.len()].into(), points }
        })
        .collect();
    let over_time = svg_chart("Bracha deliveries over time (correct nodes)", "seconds", "deliveries", &series, &vlines, &[]);
    // Peer scores: mean over honest observers, per peer; marks at first conviction.
    let honest: HashSet<usize> = log.honest_nodes().into_iter().collect();
    let mut buckets: BTreeMap<usize, BTreeMap<u64, (f64, usize)>> = BTreeMap::new();
    for s in log.peer_samples.iter().filter(|s| honest.contains(&s.observer)) {
        let b = buckets.entry(s.peer).or_default().entry(s.t_ms / 250).or_insert((0.0, 0));
        b.0 += s.score;
        b.1 += 1;
    }
    let (mut good, mut bad) = (0, 0);
    let roles: HashMap<usize, Role> = log.nodes.iter().map(|n| (n.index, n.role)).collect();
    let score_series: Vec<Series> = buckets
        .iter()
        .map(|(peer, b)| {
            let role = roles.get(peer).copied().unwrap_or(Role::Honest);
            let color = if role.correct() {
                good += 1;
                PALETTE[(good - 1) % PALETTE.len()]
            } else {
                bad += 1;
                BAD[(bad - 1) % BAD.len()]
            };
            Series {
                name: format!("node {peer} ({})", role.name()),
                color: color.into(),
                points: b.iter().map(|(t, (sum, k))| (rel(t * 250), sum / *k as f64)).collect(),
            }
        })
        .collect();
    let mut marks = Vec::new();
    for peer in buckets.keys() {
        for (observer, t) in invariants::first_conviction(log, *peer) {
            if !honest.contains(&observer) {
                continue;
            }
            let score = log.peer_samples.iter().find(|s| s.peer == *peer && s.observer == observer && s.t_ms == t).map_or(0.0, |s| s.score);
            let status = log.peer_samples.iter().find(|s| s.peer == *peer && s.observer == observer && s.t_ms == t).map_or("?", |s| s.status.as_str());
            marks.push((rel(t), score, format!("node {observer} rated node {peer} {status}")));
        }
    }
    let scores = svg_chart("Peer scores (mean over honest observers; x = convicted by one)", "seconds", "score", &score_series, &vlines, &marks);

    let mut h = String::new();
    let verdict = if summary.passed { "<span style=\"color:#080\">PASS</span>" } else { "<span style=\"color:#c00\">FAIL</span>" };
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>byzgossip testnet: {0}</title><style>body{{font-family:sans-serif;max-width:900px;margin:2em auto}}td,th{{padding:2px 8px;text-align:left;border-bottom:1px solid #ddd}}pre{{background:#f6f6f6;padding:8px;overflow:auto}}</style></head><body><h1>{0}: {1}</h1><p>{2}</p>",
        esc(&summary.scenario),
        verdict,
        esc(&summary.description)
    );
    let _ = write!(h, "<table><tr><th>n / f</th><td>{} / {} ({} byzantine members, {} sybils), seed {}</td></tr>", summary.n, summary.f, summary.byzantine, summary.sybils, summary.seed);
    let _ = write!(h, "<tr><th>honest broadcasts</th><td>{} ({} refused or failed)</td></tr>", summary.broadcasts, summary.broadcast_failures);
    let _ = write!(h, "<tr><th>honest delivery</th><td>{:.1}% (gossip {:.1}%)</td></tr>", summary.honest_delivery_pct, summary.gossip_delivery_pct);
    let l = &summary.latency_ms;
    let _ = write!(h, "<tr><th>latency</th><td>p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} samples)</td></tr>", l.p50, l.p95, l.p99, l.max, l.count);
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
    h.push_str("</table><h2>Plots</h2>");
    for svg in [latency, over_time, scores] {
        let _ = write!(h, "<div>{svg}</div>");
    }
    h.push_str("<h2>Timeline</h2><ul>");
    for e in &log.events {
        let _ = write!(h, "<li>+{:.2} s: {}</li>", rel(e.t_ms), esc(&e.what));
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
