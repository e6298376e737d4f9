//! Presets run in process at n = 7, f = 2 with short timelines: every invariant must hold.
//! The tests take a lock so only one testnet runs at a time (the timed invariants assume the
//! machine is not shared by several testnets).
#![allow(clippy::await_holding_lock, reason = "the lock serializes whole tests, see ONE_AT_A_TIME")]

use byzgossip_testnet::report::{self, Summary};
use byzgossip_testnet::{RunOptions, preset, run};
use std::sync::Mutex;

/// Held for a whole test (across awaits on purpose: it serializes tests on separate
/// runtimes, and nothing else locks it).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

async fn run_preset(name: &str) -> Summary {
    run_scenario(preset(name, 7).expect("preset exists")).await
}

async fn run_scenario(mut s: byzgossip_testnet::Scenario) -> Summary {
    let name = s.name.clone();
    let name = name.as_str();
    s.timeline.warmup_s = 1.5;
    // A `reformed` attacker offends a second time at `reoffend_at_s` after arming at the
    // earliest (once readmitted): its window must hold that offence and the ban after it.
    let reformed = s.groups.iter().any(|g| g.role == byzgossip_testnet::scenario::Role::Reformed && g.count > 0);
    s.timeline.attack_s = if reformed { 3.0_f64.max(s.attack.reoffend_at_s + 1.5) } else { 3.0 };
    s.timeline.cooldown_s = 1.0;
    s.timeline.drain_s = 10.0;
    s.workload.broadcasts_per_s = 8.0;
    s.workload.gossip_per_s = 8.0;
    let log = run(&s, RunOptions::default()).await.expect("run");
    let summary = report::summarize(&log);
    assert!(summary.broadcasts > 10, "{name}: too few broadcasts: {}", summary.broadcasts);
    summary
}

fn assert_passed(summary: &Summary) {
    assert!(summary.passed, "{}\n{}", report::table(std::slice::from_ref(summary)), report::failures(summary));
}

macro_rules! preset_test {
    ($test:ident, $name:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
            let summary = run_preset($name).await;
            assert_passed(&summary);
        }
    };
}

preset_test!(baseline_holds_every_invariant, "baseline");
preset_test!(equivocating_voters_are_excluded_and_safety_holds, "equivocate-vote");
preset_test!(forgers_are_convicted_and_no_honest_origin_is_framed, "forge");
preset_test!(crash_restart_members_catch_up, "crash-restart");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_heals_and_every_value_is_delivered() {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let summary = run_preset("partition").await;
    assert_passed(&summary);
    assert_eq!(summary.honest_delivery_pct, 100.0);
}

/// Flooders at 1,500 valid messages/s each, convicted within 6 s: above the origin budget of
/// even a fully trusted member (1,000/s, `BudgetConfig::origin_trusted_rate_per_s`). At
/// 500/s a flooder that earned trust during the warm-up stayed under its budget on some
/// nodes, and the test passed or failed with timing.
/// Runs in CI's debug build too: dependencies are optimised in the dev profile (root
/// Cargo.toml), and gossip straight from its origin is charged to the origin budget before
/// verification, so a flood is convicted even when it outruns this node's verifiers. The
/// release suite (`byzgossip-testnet run --scenario flood`) floods at 2,000/s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooders_are_convicted_and_honest_traffic_is_delivered() {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut s = preset("flood", 7).expect("preset exists");
    s.attack.flood_per_s = 1_500.0;
    // The burst of 300 is spent first, and a debug build is slow: 6 s to convict, not 3.5.
    s.deadlines.detection_s = 6.0;
    let summary = run_scenario(s).await;
    assert_passed(&summary);
}

/// Every other preset, so that each one passes in CI at n = 7 (about a minute and a half in
/// debug, one after another). Not `reformed`: it failed readmission once in a debug CI run
/// under load ("never banned again": the attacker re-offends at a fixed 3.5 s, which can come
/// before it has redialled the honest nodes after its ban); it runs in the simulator tests
/// until its attacker re-offends only once readmitted (issue #11 note).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_presets_hold_every_invariant() {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut failed = Vec::new();
    for name in [
        "silent", "equivocate-origin", "replay", "stale-timestamp", "future-timestamp", "tamper", "malformed", "fake-votes",
        "sybil", "censor", "eclipse", "covert-flash", "lossy", "amnesia", "reformed",
    ] {
        let summary = run_preset(name).await;
        if !summary.passed {
            failed.push(report::failures(&summary));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
