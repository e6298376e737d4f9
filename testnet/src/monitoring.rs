//! Monitoring a testnet: the Grafana dashboard shipped in `deploy/grafana/byzgossip.json`
//! and a Prometheus configuration that scrapes every node's `/metrics`
//! (`byzgossip-testnet up --prometheus-config FILE`). `tests/dashboard.rs` runs a real
//! Prometheus against a live testnet and checks that every query of the dashboard returns
//! data.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// The dashboard (Grafana JSON model), as shipped.
pub const DASHBOARD_JSON: &str = include_str!("../../deploy/grafana/byzgossip.json");

/// Every query of the dashboard: (panel title, PromQL expression), in panel order.
pub fn dashboard_queries() -> Result<Vec<(String, String)>, serde_json::Error> {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD_JSON)?;
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                queries.push((title.to_owned(), expr.to_owned()));
            }
        }
    }
    Ok(queries)
}

/// A Prometheus configuration scraping `targets` (nodes' HTTP API addresses) every
/// `interval_s` seconds, job `byzgossip`.
pub fn prometheus_config(targets: &[SocketAddr], interval_s: u64) -> String {
    let mut yaml = format!("global:\n  scrape_interval: {interval_s}s\n  evaluation_interval: {interval_s}s\nscrape_configs:\n  - job_name: byzgossip\n    metrics_path: /metrics\n    static_configs:\n      - targets:\n");
    for target in targets {
        let _ = writeln!(yaml, "          - '{target}'");
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_parses_and_covers_what_an_operator_watches() {
        let queries = dashboard_queries().expect("dashboard JSON");
        let all: String = queries.iter().map(|(_, q)| q.as_str()).collect::<Vec<_>>().join("\n");
        for metric in [
            "byzgossip_bracha_deliveries_total",
            "byzgossip_bracha_latency_seconds_bucket",
            "byzgossip_rejections_total",
            "byzgossip_peers",
            "byzgossip_status_changes_total",
            "byzgossip_queue_depth",
            "byzgossip_sync_total",
            "byzgossip_received_messages_total",
            "byzgossip_sent_bytes_total",
        ] {
            assert!(all.contains(metric), "no panel reads {metric}");
        }
    }

    #[test]
    fn the_prometheus_config_lists_every_target() {
        let config = prometheus_config(&["127.0.0.1:8100".parse().expect("addr"), "127.0.0.1:8101".parse().expect("addr")], 1);
        assert!(config.contains("scrape_interval: 1s"));
        assert!(config.contains("- '127.0.0.1:8100'") && config.contains("- '127.0.0.1:8101'"));
    }
}
