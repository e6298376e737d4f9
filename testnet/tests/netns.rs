//! `run --runtime process --netns` at n = 4: a partition and `lossy` (whose loss is an
//! nftables rule in this mode) must pass, and nothing named after the run (namespace, veth,
//! bridge, nftables table, state file) may remain afterwards; a SIGKILLed netns run leaves
//! its namespaces behind, and the next run's sweep removes them. Skipped, with the reason
//! printed, unless this process is root and `ip` and `nft` run (CI installs iproute2 and
//! nftables; see `.ci/run`).
//!
//! Like `process_mode.rs`, it uses the `byzgossip` binary of the same target directory,
//! refuses a missing or stale one, and runs one testnet at a time (the timed invariants
//! assume the machine is not shared by several testnets).

use byzgossip_testnet::process::netns;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Held for a whole test (see the module docs).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Longest a whole n = 4 run may take (it takes about 10 s).
const RUN_LIMIT: Duration = Duration::from_secs(90);

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

/// Why the test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    netns::check_available().err().map(|e| e.to_string())
}

/// The `byzgossip` binary next to the testnet binary, checked to be newer than every source
/// file it is built from (see `process_mode.rs`: the test never builds it itself).
fn byzgossip_binary() -> PathBuf {
    let testnet = PathBuf::from(env!("CARGO_BIN_EXE_byzgossip-testnet"));
    let binary = testnet.with_file_name("byzgossip");
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).unwrap_or_else(|_| {
        panic!("no byzgossip binary at {}: run `cargo test --workspace` or `cargo build -p byzgossip-node` first", binary.display())
    });
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["crypto", "reputation", "bracha", "engine", "node"] {
        if let Some(path) = newer_source(&workspace.join(dir), built) {
            panic!("{} is older than {}: run `cargo test --workspace` or `cargo build -p byzgossip-node` first", binary.display(), path.display());
        }
    }
    binary
}

/// A `.rs` or `Cargo.toml` under `dir` (skipping `target`) modified after `than`.
fn newer_source(dir: &Path, than: std::time::SystemTime) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target")
                && let Some(p) = newer_source(&path, than)
            {
                return Some(p);
            }
        } else if (path.extension().is_some_and(|e| e == "rs") || path.file_name().is_some_and(|n| n == "Cargo.toml"))
            && entry.metadata().and_then(|m| m.modified()).is_ok_and(|m| m > than)
        {
            return Some(path);
        }
    }
    None
}

/// Starts `run --runtime process --netns --scenario NAME --nodes 4`.
fn start(scenario: &str, out: &Path, byzgossip: &Path) -> Guard {
    let child = Command::new(env!("CARGO_BIN_EXE_byzgossip-testnet"))
        .args(["run", "--runtime", "process", "--netns", "--scenario", scenario, "--nodes", "4", "--out"])
        .arg(out)
        .arg("--byzgossip")
        .arg(byzgossip)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start byzgossip-testnet");
    Guard(child)
}

/// Polls `check` until it holds or `limit` passes.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn partition_and_lossy_pass_in_namespaces_and_leave_nothing_behind() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let byzgossip = byzgossip_binary();
    let tmp = tempfile::tempdir().expect("tempdir");
    for scenario in ["partition", "lossy"] {
        let out = tmp.path().join(scenario);
        let mut guard = start(scenario, &out, &byzgossip);
        let pid = guard.0.id();
        let status = wait(&mut guard, RUN_LIMIT).unwrap_or_else(|| panic!("{scenario} did not finish within {RUN_LIMIT:?}"));
        let mut stdout = String::new();
        if let Some(mut o) = guard.0.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut o, &mut stdout);
        }
        assert!(status.success(), "{scenario} failed in netns mode ({status}):\n{stdout}");
        assert!(stdout.contains("1 passed, 0 failed"), "{scenario}:\n{stdout}");
        assert_eq!(netns::leftovers(pid), Vec::<String>::new(), "{scenario} left these behind");
        // The faults happened in the kernel: the run's log counts the packets nftables dropped.
        let log = std::fs::read_to_string(out.join("run.json")).expect("run.json");
        let report = log.split("nftables dropped ").nth(1).expect("a drop report in the event log");
        if scenario == "lossy" {
            assert!(report.contains("by loss rules, node 0: "), "{report:.200}");
            assert!(!report.starts_with("0 packets between cut nodes and, by loss rules, none"), "{report:.200}");
        } else {
            assert!(!report.starts_with("0 packets"), "the partition dropped nothing: {report:.200}");
        }
    }
}

#[test]
fn a_sigkilled_run_s_namespaces_are_swept_by_the_next_run() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let byzgossip = byzgossip_binary();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut guard = start("baseline", &tmp.path().join("killed"), &byzgossip);
    let pid = guard.0.id();
    // Wait until the run has built its namespaces and started its 4 nodes in them, then
    // SIGKILL it (no cleanup can run).
    let built = eventually(Duration::from_secs(30), || {
        netns::leftovers(pid).iter().any(|l| l.starts_with("namespace")) && children_of(pid).len() >= 4
    });
    assert!(built, "the run did not build its namespaces and start 4 nodes within 30 s");
    let children = children_of(pid);
    let _ = guard.0.kill();
    let _ = guard.0.wait();
    assert!(!netns::leftovers(pid).is_empty(), "a SIGKILLed run cannot clean up");
    // What the next run does first.
    let removed = netns::sweep_stale();
    assert!(removed.iter().any(|r| r.starts_with("namespace")), "{removed:?}");
    assert_eq!(netns::leftovers(pid), Vec::<String>::new(), "the sweep left these behind");
    // Its children saw their stdin close and exited (they ran in the swept namespaces).
    let children_gone = eventually(Duration::from_secs(20), || children.iter().all(|c| !running(*c)));
    assert!(children_gone, "children of the killed run are still running");
}

/// The pids whose parent is `pid` (field 4 of `/proc/PID/stat`).
fn children_of(pid: u32) -> Vec<u32> {
    let me = pid.to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.split_whitespace().nth(1) == Some(me.as_str())) {
            out.push(child);
        }
    }
    out
}

/// Whether `pid` exists and is not a zombie.
fn running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
}
