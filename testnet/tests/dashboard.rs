//! Every query of the shipped Grafana dashboard (`deploy/grafana/byzgossip.json`) returns data
//! from a real Prometheus scraping a live testnet under attack (issue #14 point 4).
//!
//! Needs the `prometheus` binary (`apt-get install prometheus`, Debian ships 2.42; `.ci/run`
//! installs it). Without it the test prints why and passes, so a developer machine without
//! Prometheus can still run the suite.

use byzgossip_testnet::adversary::LOAD_TOPIC;
use byzgossip_testnet::monitoring::{dashboard_queries, prometheus_config};
use byzgossip_testnet::{RunOptions, Testnet, preset};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Kills Prometheus when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_live_testnet() {
    if Command::new("prometheus").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        eprintln!("SKIPPED: no `prometheus` binary on PATH (apt-get install prometheus; CI installs it)");
        return;
    }
    // An attacker, so rejections and convictions exist next to honest traffic.
    let scenario = preset("malformed", 4).expect("preset");
    let testnet = Testnet::start(&scenario, RunOptions { api: true, verbose: false }).await.expect("testnet");
    let targets: Vec<_> = testnet.describe().iter().filter_map(|n| n.api).collect();
    assert_eq!(targets.len(), 4, "every node runs its API");

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, prometheus_config(&targets, 1)).expect("config");
    let port = free_port();
    let _prometheus = Child(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );

    // Traffic for 6 s: broadcasts and gossip from the honest members, the attacker armed.
    let drivers = testnet.arm_attackers();
    let handles: Vec<_> = testnet.nodes().into_iter().filter(|(role, _)| role.correct()).filter_map(|(_, h)| h).collect();
    for round in 0..30u32 {
        for (i, node) in handles.iter().enumerate() {
            let _ = node.broadcast(format!("value {round} from {i}").into_bytes()).await;
            let _ = node.publish(LOAD_TOPIC, format!("gossip {round} from {i}").into_bytes()).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for driver in drivers {
        driver.abort();
    }

    // Every query must return at least one series; Prometheus needs a few scrapes first.
    let client = reqwest::Client::new();
    let queries = dashboard_queries().expect("dashboard JSON");
    assert!(queries.len() >= 10, "{} queries", queries.len());
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut empty: Vec<String> = Vec::new();
    for (title, expr) in &queries {
        let mut last = String::new();
        let answered = loop {
            let url = format!("http://127.0.0.1:{port}/api/v1/query");
            if let Ok(response) = client.get(&url).query(&[("query", expr.as_str())]).send().await
                && let Ok(body) = response.json::<serde_json::Value>().await
            {
                assert_ne!(body["status"], "error", "{title}: {expr}: {body}");
                if body["data"]["result"].as_array().is_some_and(|r| !r.is_empty()) {
                    break true;
                }
                last = body.to_string();
            }
            if Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        if !answered {
            empty.push(format!("{title}: {expr} -> {last}"));
        }
    }
    testnet.stop().await;
    assert!(empty.is_empty(), "queries without data:\n{}", empty.join("\n"));
}
