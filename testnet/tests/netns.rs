//! `run --runtime process --netns` at n = 4: a partition and `lossy` (whose loss is an
//! nftables rule in this mode) must pass, and nothing named after the run (namespace, veth,
//! bridge, nftables table, state file) may remain afterwards; a SIGKILLed netns run leaves
//! its namespaces behind, and the next run's sweep removes them. Skipped, with the reason
//! printed, unless this process is root and `ip` and `nft` run (CI installs iproute2 and
//! nftables; see `.ci/run`).
//!
//! Like `process_mode.rs`, it uses the `byzgossip` binary of the same target directory,
//! refuses a missing or stale one, and runs one testnet at a time (the timed invariants
//! assume the machine is not shared by several testnets): see `common/mod.rs`.

mod common;

use byzgossip_testnet::process::netns;
use common::{Guard, begin, wait};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

/// Longest a whole n = 4 run may take (it takes about 10 s).
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// What each test starts with ([`common::begin`]); None, with the reason printed, where this
/// process is not root or `ip` or `nft` does not run.
fn begin_netns() -> Option<(MutexGuard<'static, ()>, PathBuf, tempfile::TempDir)> {
    match netns::check_available() {
        Ok(()) => Some(begin()),
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
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

/// Runs `scenario` in namespaces (output under `tmp/scenario`) and checks that it passed and
/// left nothing behind; `check_drops` checks the drop report in the run's event log (what
/// follows "nftables dropped "), which must be there.
fn run_and_check(scenario: &str, tmp: &Path, byzgossip: &Path, check_drops: impl FnOnce(&str)) {
    let out = tmp.join(scenario);
    let mut guard = start(scenario, &out, byzgossip);
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
    check_drops(report);
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
    let Some((_one, byzgossip, tmp)) = begin_netns() else { return };
    run_and_check("partition", tmp.path(), &byzgossip, |report| {
        assert!(!report.starts_with("0 packets"), "the partition dropped nothing: {report:.200}");
    });
    run_and_check("lossy", tmp.path(), &byzgossip, |report| {
        assert!(report.contains("by loss rules, node 0: "), "{report:.200}");
        assert!(!report.starts_with("0 packets between cut nodes and, by loss rules, none"), "{report:.200}");
    });
}

#[test]
fn a_sigkilled_run_s_namespaces_are_swept_by_the_next_run() {
    let Some((_one, byzgossip, tmp)) = begin_netns() else { return };
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
