//! `run --runtime process --netns` at n = 7: every preset of the default suite must pass
//! (`lossy` included, whose loss is an nftables rule in this mode; about 3.5 minutes), the
//! cuts and the loss must show in nftables' drop counters, and nothing named after the run
//! (namespace, veth, bridge, nftables table, state file) may remain afterwards; a SIGKILLed
//! netns run leaves
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

/// Longest the whole n = 7 suite may take (it takes about 3.5 minutes: 23 presets of 8 to
/// 14 s each).
const SUITE_LIMIT: Duration = Duration::from_secs(600);

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

/// Starts `run --runtime process --netns --nodes N` with `scenario` (the default suite when
/// `None`), its stdout into `out/stdout.txt`.
fn start(scenario: Option<&str>, nodes: usize, out: &Path, byzgossip: &Path) -> Guard {
    std::fs::create_dir_all(out).expect("out dir");
    let stdout = std::fs::File::create(out.join("stdout.txt")).expect("stdout file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_byzgossip-testnet"));
    command.args(["run", "--runtime", "process", "--netns", "--nodes", &nodes.to_string(), "--out"]).arg(out);
    if let Some(scenario) = scenario {
        command.args(["--scenario", scenario]);
    }
    let child = command
        .arg("--byzgossip")
        .arg(byzgossip)
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start byzgossip-testnet");
    Guard(child)
}

/// The drop report in a scenario's event log (what follows "nftables dropped "): the faults
/// happened in the kernel.
fn drop_report(out: &Path, scenario: &str) -> String {
    let log = std::fs::read_to_string(out.join(scenario).join("run.json")).expect("run.json");
    log.split("nftables dropped ").nth(1).expect("a drop report in the event log").chars().take(400).collect()
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

/// Issue #14's acceptance, in CI when root: the default suite passes at n = 7 with every node
/// in its own namespace and the faults in nftables.
#[test]
fn every_preset_passes_at_n_7_in_namespaces_and_leaves_nothing_behind() {
    let Some((_one, byzgossip, tmp)) = begin_netns() else { return };
    let out = tmp.path().join("suite");
    let mut guard = start(None, 7, &out, &byzgossip);
    let pid = guard.0.id();
    let status = wait(&mut guard, SUITE_LIMIT).unwrap_or_else(|| panic!("the suite did not finish within {SUITE_LIMIT:?}"));
    let stdout = std::fs::read_to_string(out.join("stdout.txt")).unwrap_or_default();
    assert!(status.success(), "the suite failed in netns mode ({status}):\n{stdout}");
    let summaries: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary.json")).expect("summary.json parses");
    let ran: Vec<&str> = summaries.iter().filter_map(|s| s["scenario"].as_str()).collect();
    let presets: Vec<&str> = byzgossip_testnet::scenario::PRESETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(ran, presets, "the suite ran every preset");
    let failed: Vec<&str> = summaries.iter().filter(|s| s["passed"] != serde_json::Value::Bool(true)).filter_map(|s| s["scenario"].as_str()).collect();
    assert!(failed.is_empty(), "failed in netns mode: {failed:?}\n{stdout}");
    assert_eq!(netns::leftovers(pid), Vec::<String>::new(), "the suite left these behind");
    let partition = drop_report(&out, "partition");
    assert!(!partition.starts_with("0 packets"), "the partition dropped nothing: {partition}");
    let lossy = drop_report(&out, "lossy");
    assert!(lossy.contains("by loss rules, node 0: "), "{lossy}");
    assert!(!lossy.starts_with("0 packets between cut nodes and, by loss rules, none"), "{lossy}");
}

#[test]
fn a_sigkilled_run_s_namespaces_are_swept_by_the_next_run() {
    let Some((_one, byzgossip, tmp)) = begin_netns() else { return };
    let mut guard = start(Some("baseline"), 4, &tmp.path().join("killed"), &byzgossip);
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
