//! `run --runtime process` with real `byzgossip` processes at n = 4: the baseline; a
//! partition, whose verdict must match the in-process runtime's and whose traffic counts come
//! from the processes' `/metrics`; and no child outliving a SIGKILLed testnet. The tests use
//! the `byzgossip` binary of the same target directory and refuse a missing one or one older
//! than its sources, so they never run against a stale binary. The tests take a lock so only one testnet runs at a time (the timed
//! invariants assume the machine is not shared by several testnets).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Held for a whole test (see the module docs).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

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

/// The `byzgossip` binary next to the testnet binary, checked to be newer than every source
/// file it is built from. `cargo test --workspace` builds it (the node's own tests need it)
/// before any test runs. The test does not run `cargo build` itself: the outer `cargo test`
/// holds the target directory's lock while tests run, so an inner build waited for it (and a
/// build with the node's features alone would recompile libp2p).
fn byzgossip_binary() -> PathBuf {
    let testnet = PathBuf::from(env!("CARGO_BIN_EXE_byzgossip-testnet"));
    let binary = testnet.with_file_name("byzgossip");
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).unwrap_or_else(|_| {
        panic!("no byzgossip binary at {}: run `cargo test --workspace` or `cargo build -p byzgossip-node` first", binary.display())
    });
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut newest = None;
    for dir in ["crypto", "reputation", "bracha", "engine", "node"] {
        newest_source(&workspace.join(dir), &mut newest);
    }
    if let Some((modified, path)) = newest {
        assert!(
            modified <= built,
            "{} is older than {}: run `cargo test --workspace` or `cargo build -p byzgossip-node` first",
            binary.display(),
            path.display()
        );
    }
    binary
}

/// The newest `.rs` or `Cargo.toml` under `dir` (skipping `target`), into `newest`.
fn newest_source(dir: &Path, newest: &mut Option<(std::time::SystemTime, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                newest_source(&path, newest);
            }
        } else if (path.extension().is_some_and(|e| e == "rs") || path.file_name().is_some_and(|n| n == "Cargo.toml"))
            && let Ok(modified) = entry.metadata().and_then(|m| m.modified())
            && newest.as_ref().is_none_or(|(t, _)| modified > *t)
        {
            *newest = Some((modified, path));
        }
    }
}

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
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let byzgossip = byzgossip_binary();
    let dir = tempfile::tempdir().expect("tempdir");
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
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let byzgossip = byzgossip_binary();
    let dir = tempfile::tempdir().expect("tempdir");
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
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let byzgossip = byzgossip_binary();
    let dir = tempfile::tempdir().expect("tempdir");
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
