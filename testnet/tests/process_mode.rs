//! `run --runtime process` with real `byzgossip` processes at n = 4: the baseline; a
//! partition, whose verdict must match the in-process runtime's and whose traffic counts come
//! from the processes' `/metrics`; and no child outliving a SIGKILLed testnet. The tests use
//! the `byzgossip` binary of the same target directory and refuse a missing one or one older
//! than its sources, so they never run against a stale binary. The tests take a lock so only
//! one testnet runs at a time (the timed invariants assume the machine is not shared by
//! several testnets). Those helpers are in `common/mod.rs`, shared with `netns.rs`.

mod common;

use common::{Guard, begin, wait};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `byzgossip-testnet run --nodes 4 --duration 2 --scenario NAME` in `runtime`, writing
/// to `out`; returns whether it exited with success, and its stdout.
fn run_scenario(runtime: &str, name: &str, byzgossip: &Path, out: &Path) -> (bool, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_byzgossip-testnet"))
        .args(["run", "--runtime", runtime, "--scenario", name, "--nodes", "4", "--duration", "2", "--byzgossip"])
        .arg(byzgossip)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start byzgossip-testnet");
    let mut guard = Guard(child);
    let status = wait(&mut guard, Duration::from_secs(120)).unwrap_or_else(|| panic!("{runtime} {name} did not finish in 120 s"));
    let mut stdout = String::new();
    std::io::Read::read_to_string(guard.0.stdout.as_mut().expect("stdout"), &mut stdout).expect("stdout");
    (status.success(), stdout)
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).expect("json")
}

#[test]
fn baseline_runs_as_processes_at_n4() {
    let (_one, byzgossip, dir) = begin();
    let out = dir.path().join("out");
    let (ok, stdout) = run_scenario("process", "baseline", &byzgossip, &out);
    assert!(ok, "process-mode baseline failed\n{stdout}");
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

/// The `partition` preset (node 0 cut from 1..3 for the attack window, then healed) passes in
/// both runtimes with the same verdict on every invariant, and process mode counts traffic
/// from the processes' `/metrics`, as the in-process runtime counts it at its interceptors.
#[test]
fn partition_has_the_same_verdict_as_processes_and_in_process() {
    let (_one, byzgossip, dir) = begin();
    let mut verdicts = Vec::new();
    for runtime in ["process", "in-process"] {
        let out = dir.path().join(runtime);
        let (ok, stdout) = run_scenario(runtime, "partition", &byzgossip, &out);
        assert!(ok && stdout.contains("1 passed, 0 failed"), "{runtime} partition failed\n{stdout}");
        let log = read_json(&out.join("run.json"));
        let events: Vec<&str> = log["events"].as_array().expect("events").iter().filter_map(|e| e["what"].as_str()).collect();
        assert!(events.contains(&"partition [0] | [1, 2, 3]"), "{runtime}: {events:?}");
        assert!(events.contains(&"heal 3 pairs"), "{runtime}: {events:?}");
        let traffic = log["traffic"].as_array().expect("traffic");
        assert_eq!(traffic.len(), 4);
        for t in traffic {
            for field in ["msgs_in", "bytes_in", "msgs_out", "bytes_out"] {
                assert!(t[field].as_u64().is_some_and(|v| v > 0), "{runtime}: no {field} counted: {t}");
            }
        }
        let summary = read_json(&out.join("summary.json"));
        let summary = &summary[0];
        assert!(summary["msgs_per_delivery"].as_f64().is_some_and(|v| v > 0.0), "{runtime}: {summary}");
        let checks: Vec<(String, bool)> = summary["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .map(|c| (c["name"].as_str().unwrap_or_default().to_owned(), c["passed"].as_bool().unwrap_or(false)))
            .collect();
        verdicts.push((summary["passed"].as_bool(), checks));
    }
    assert_eq!(verdicts[0], verdicts[1], "process vs in-process verdicts differ");
}

/// Every process a process-mode run started whose command line names `dir`.
fn children_under(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // Zombies have an empty command line; a zombie has already exited.
        if cmdline.contains(&needle) && !cmdline.contains("byzgossip-testnet run") {
            found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

/// A testnet killed by SIGKILL (no cleanup of its own) leaves no process behind: each child
/// sees its stdin pipe close and shuts down (`byzgossip run --exit-on-stdin-eof`, the
/// adversary subcommand).
#[test]
#[cfg(target_os = "linux")]
fn children_exit_when_the_testnet_is_killed() {
    let (_one, byzgossip, dir) = begin();
    let out = dir.path().join("out");
    // Silent: honest `byzgossip` processes and one adversary process.
    let child = Command::new(env!("CARGO_BIN_EXE_byzgossip-testnet"))
        .args(["run", "--runtime", "process", "--scenario", "silent", "--nodes", "4", "--duration", "30", "--byzgossip"])
        .arg(&byzgossip)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start byzgossip-testnet");
    let mut guard = Guard(child);
    // Every process is up once the last one has written its log.
    let end = Instant::now() + Duration::from_secs(60);
    while children_under(&out).len() < 4 || !out.join("processes").join("node-3.0.log").exists() {
        assert!(Instant::now() < end, "the testnet did not start its 4 processes in 60 s");
        assert!(guard.0.try_wait().ok().flatten().is_none(), "the testnet ended early");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = guard.0.kill(); // SIGKILL
    let _ = guard.0.wait();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let left = children_under(&out);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < end, "children still running 20 s after the testnet was killed:\n{}", left.join("\n"));
        std::thread::sleep(Duration::from_millis(100));
    }
}
