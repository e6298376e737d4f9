//! `run --runtime process`: the baseline preset at n = 4 with real `byzgossip` processes.
//! Builds the `byzgossip` binary first (same target directory), so the test never runs
//! against a stale or missing binary.

use std::path::PathBuf;
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

/// Waits for `child` at most `limit`; None on timeout (the guard then kills it).
fn wait(guard: &mut Guard, limit: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = guard.0.try_wait() {
            return Some(status);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Builds `byzgossip` next to the testnet binary; returns its path.
fn build_byzgossip() -> Option<PathBuf> {
    let testnet = PathBuf::from(env!("CARGO_BIN_EXE_byzgossip-testnet"));
    let binary = testnet.with_file_name("byzgossip");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut build = Command::new(cargo);
    build.args(["build", "-p", "byzgossip-node", "--bin", "byzgossip"]).current_dir(&workspace);
    // Same profile and target directory as this test's binaries.
    if let Some(target) = testnet.parent().and_then(|p| p.parent()) {
        build.env("CARGO_TARGET_DIR", target);
    }
    if testnet.parent().and_then(|p| p.file_name()).is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let child = build.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().ok()?;
    let mut guard = Guard(child);
    match wait(&mut guard, Duration::from_secs(300)) {
        Some(status) if status.success() => {}
        other => eprintln!("building byzgossip failed or timed out: {other:?}"),
    }
    binary.exists().then_some(binary)
}

#[test]
fn baseline_runs_as_processes_at_n4() {
    let Some(byzgossip) = build_byzgossip() else {
        eprintln!("SKIPPED: no byzgossip binary next to the testnet binary and it could not be built");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_byzgossip-testnet"))
        .args(["run", "--runtime", "process", "--scenario", "baseline", "--nodes", "4", "--duration", "2", "--byzgossip"])
        .arg(&byzgossip)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start byzgossip-testnet");
    let mut guard = Guard(child);
    let status = wait(&mut guard, Duration::from_secs(120)).expect("process-mode baseline did not finish in 120 s");
    let mut stdout = String::new();
    std::io::Read::read_to_string(guard.0.stdout.as_mut().expect("stdout"), &mut stdout).expect("stdout");
    assert!(status.success(), "process-mode baseline failed: {status}\n{stdout}");
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
    let log: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).expect("run.json")).expect("json");
    let broadcasts = log["broadcasts"].as_array().map_or(0, Vec::len);
    let deliveries = log["deliveries"].as_array().map_or(0, Vec::len);
    assert!(broadcasts > 0, "no broadcast was accepted");
    assert_eq!(deliveries, broadcasts * 4, "every honest broadcast delivered by all 4 processes");
    // Each honest node wrote its own log and data directory.
    for i in 0..4 {
        assert!(out.join("processes").join(format!("node-{i}.0.log")).exists(), "log of node {i}");
        assert!(out.join("processes").join(format!("data-{i}")).exists(), "data dir of node {i}");
    }
}
