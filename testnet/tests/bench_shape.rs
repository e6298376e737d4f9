//! `bench --quick` prints one JSON object per line with the documented fields.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills and reaps the child on drop (panic, timeout, early return).
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn quick_bench_prints_json_lines_of_the_documented_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("bench.jsonl");
    let child = Command::new(env!("CARGO_BIN_EXE_byzgossip-testnet"))
        .args(["bench", "--quick", "--json"])
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start byzgossip-testnet");
    let mut guard = Guard(child);
    // Bounded wait: the quick bench takes about 15 s in debug.
    let deadline = Instant::now() + Duration::from_secs(150);
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "bench --quick did not finish in 150 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(guard.0.stdout.as_mut().expect("stdout"), &mut stdout).expect("read stdout");
    assert!(status.success(), "bench failed: {status}\n{stdout}");
    let file = std::fs::read_to_string(&json).expect("json file");
    assert_eq!(file.trim(), stdout.trim(), "the file holds the same lines as stdout");
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"))).collect();
    for l in &lines {
        for field in ["bench", "n", "malicious", "metric", "value", "unit", "baseline", "runs", "min", "max"] {
            assert!(l.get(field).is_some(), "missing {field}: {l}");
        }
        assert!(l["value"].is_number() && l["n"].is_u64() && l["runs"].is_u64(), "{l}");
        assert!(l["baseline"].is_object() || l["baseline"].is_null(), "{l}");
        let (min, value, max) = (l["min"].as_f64(), l["value"].as_f64(), l["max"].as_f64());
        assert!(min <= value && value <= max, "the median lies between min and max: {l}");
    }
    let has = |bench: &str, metric: &str, malicious: u64| {
        lines.iter().any(|l| l["bench"] == bench && l["metric"] == metric && l["malicious"] == malicious)
    };
    assert!(has("bracha", "deliveries_per_s", 0) && has("bracha", "deliveries_per_s", 1), "{stdout}");
    assert!(has("bracha", "latency_p50", 0) && has("bracha", "latency_p99", 1), "{stdout}");
    assert!(has("rss", "rss_per_node", 0), "{stdout}");
    assert!(has("gossip", "received_per_node_per_s", 0) && has("gossip", "cpu_per_received_msg", 0), "{stdout}");
    let delivered = lines.iter().find(|l| l["bench"] == "bracha" && l["metric"] == "deliveries_per_s").expect("bracha line");
    assert!(delivered["value"].as_f64().unwrap_or(0.0) > 0.0, "no Bracha delivery at all: {delivered}");
}
