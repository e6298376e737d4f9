//! The suite's `index.html`: one row per scenario, read at a glance (verdict in colour,
//! delivery, latency with a small chart, time to convict, failed checks with their evidence,
//! a link to the scenario's own page). Rendered from `templates/index.html` with askama, which
//! checks the template against [`IndexPage`] at compile time and escapes every value.

use super::{Percentiles, Summary};
use askama::Template;

/// Evidence lines shown per failed check (the scenario's page has them all).
pub const MAX_EVIDENCE_SHOWN: usize = 3;

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    passed: usize,
    failed: usize,
    rows: Vec<Row>,
}

struct Row {
    scenario: String,
    description: String,
    link: String,
    passed: bool,
    n: usize,
    f: usize,
    byzantine: usize,
    seed: u64,
    delivered: String,
    p50: String,
    p99: String,
    chart: String,
    convicted: String,
    false_bans: usize,
    run: String,
    failed_checks: Vec<FailedCheck>,
}

struct FailedCheck {
    name: String,
    detail: String,
    evidence: Vec<String>,
}

/// The index page of a suite run whose per-scenario pages are at `<scenario>/report.html`.
pub fn index_html(summaries: &[Summary]) -> String {
    let rows: Vec<Row> = summaries.iter().map(row).collect();
    let passed = rows.iter().filter(|r| r.passed).count();
    let page = IndexPage { passed, failed: rows.len() - passed, rows };
    page.render().unwrap_or_else(|e| format!("<!doctype html><p>index could not be rendered: {e}</p>"))
}

fn row(s: &Summary) -> Row {
    let failed_checks = s
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| {
            let mut evidence: Vec<String> = c.evidence.iter().take(MAX_EVIDENCE_SHOWN).cloned().collect();
            if c.evidence.len() > MAX_EVIDENCE_SHOWN {
                evidence.push(format!("... {} more on the scenario's page", c.evidence.len() - MAX_EVIDENCE_SHOWN));
            }
            FailedCheck { name: c.name.clone(), detail: c.detail.clone(), evidence }
        })
        .collect();
    let ms = |v: f64| if s.latency_ms.count == 0 { "-".to_owned() } else { format!("{v:.0} ms") };
    Row {
        scenario: s.scenario.clone(),
        description: s.description.clone(),
        link: format!("{}/report.html", s.scenario),
        passed: s.passed,
        n: s.n,
        f: s.f,
        byzantine: s.byzantine,
        seed: s.seed,
        delivered: format!("{:.1}%", s.honest_delivery_pct),
        p50: ms(s.latency_ms.p50),
        p99: ms(s.latency_ms.p99),
        chart: latency_chart(&s.latency_ms),
        convicted: s.time_to_convict_ms.map_or("-".into(), |t| format!("{:.2} s", t as f64 / 1000.0)),
        false_bans: s.false_bans,
        run: format!("{:.1} s", s.run_s),
        failed_checks,
    }
}

/// Width and height of the per-row chart (px).
const CHART_W: f64 = 180.0;
const CHART_H: f64 = 18.0;

/// X position of `ms` on a log scale from 1 ms to 10 s.
fn x_of(ms: f64) -> f64 {
    (ms.max(1.0).log10() / 4.0).clamp(0.0, 1.0) * CHART_W
}

/// A small inline SVG of a latency distribution: the p50-p99 range as a bar, p95 as a tick,
/// the maximum as a dot, on a log scale from 1 ms to 10 s with faint decade lines.
fn latency_chart(p: &Percentiles) -> String {
    let mut svg = format!("<svg width=\"{CHART_W}\" height=\"{CHART_H}\" viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\">");
    for decade in [1.0, 10.0, 100.0, 1000.0, 10_000.0] {
        let x = x_of(decade);
        svg.push_str(&format!("<line x1=\"{x:.1}\" y1=\"0\" x2=\"{x:.1}\" y2=\"{CHART_H}\" stroke=\"#ddd\"/>"));
    }
    if p.count > 0 {
        let (a, b) = (x_of(p.p50), x_of(p.p99));
        let colour = if p.p99 > 1000.0 { "#e57373" } else { "#64b5f6" };
        svg.push_str(&format!(
            "<rect x=\"{a:.1}\" y=\"4\" width=\"{:.1}\" height=\"10\" fill=\"{colour}\"><title>p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms</title></rect>",
            (b - a).max(1.5),
            p.p50,
            p.p95,
            p.p99,
            p.max
        ));
        let t = x_of(p.p95);
        svg.push_str(&format!("<line x1=\"{t:.1}\" y1=\"2\" x2=\"{t:.1}\" y2=\"16\" stroke=\"#333\"/>"));
        svg.push_str(&format!("<circle cx=\"{:.1}\" cy=\"9\" r=\"2\" fill=\"#333\"/>", x_of(p.max)));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::CheckResult;

    fn summary(name: &str, passed: bool) -> Summary {
        Summary {
            scenario: name.into(),
            description: "a <scenario> & its description".into(),
            seed: 3,
            n: 7,
            f: 2,
            byzantine: 2,
            sybils: 0,
            observers: 0,
            passed,
            checks: vec![CheckResult {
                name: "validity".into(),
                passed,
                detail: "every honest broadcast delivered".into(),
                evidence: (0..5).map(|i| format!("broadcast <{i}> not delivered")).collect(),
            }],
            broadcasts: 10,
            broadcast_failures: 0,
            honest_delivery_pct: if passed { 100.0 } else { 93.5 },
            gossip_delivery_pct: 100.0,
            latency_ms: Percentiles { count: 70, p50: 20.0, p95: 60.0, p99: 90.0, max: 120.0 },
            member_latency_ms: Percentiles { count: 70, p50: 20.0, p95: 60.0, p99: 90.0, max: 120.0 },
            observer_latency_ms: Percentiles::default(),
            gossip_hops: Percentiles::default(),
            nodes: 4,
            msgs_per_delivery: Some(14.0),
            bytes_per_delivery: Some(4000.0),
            time_to_convict_ms: Some(750),
            false_bans: 0,
            run_s: 8.0,
        }
    }

    #[test]
    fn the_index_shows_each_verdict_in_colour_with_its_failed_checks_and_links() {
        let page = index_html(&[summary("flood", true), summary("replay", false)]);
        assert!(page.contains("<title>byzgossip testnet: 1 passed, 1 failed</title>"), "{page}");
        assert!(page.contains("<a href=\"flood/report.html\">flood</a>"));
        assert!(page.contains("<a href=\"replay/report.html\">replay</a>"));
        assert_eq!(page.matches("<td class=\"pass\">PASS</td>").count(), 1);
        assert_eq!(page.matches("<td class=\"fail\">FAIL</td>").count(), 1);
        // The failed check with the first evidence lines, escaped, and how many more.
        assert!(page.contains("<b>validity</b>: every honest broadcast delivered"));
        assert!(page.contains("broadcast &#60;2&#62; not delivered"), "{page}");
        assert!(page.contains("... 2 more on the scenario&#39;s page"), "{page}");
        assert!(!page.contains("broadcast &#60;3&#62;"), "only the first 3 lines");
        // Values are escaped, never markup.
        assert!(page.contains("a &#60;scenario&#62; &#38; its description"));
        // One chart per row, with the percentiles in its tooltip.
        assert_eq!(page.matches("<svg ").count(), 2);
        assert!(page.contains("p50 20 ms, p95 60 ms, p99 90 ms, max 120 ms"));
        assert!(page.contains("93.5%") && page.contains("0.75 s"));
    }

    #[test]
    fn the_chart_places_latencies_on_a_log_scale() {
        assert_eq!(x_of(1.0), 0.0);
        assert_eq!(x_of(10_000.0), CHART_W);
        assert_eq!(x_of(100.0), CHART_W / 2.0);
        assert_eq!(x_of(1e9), CHART_W, "clamped");
        assert!(!latency_chart(&Percentiles::default()).contains("<rect"), "no samples, no bar");
    }
}
