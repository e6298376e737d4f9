//! The checker catches violations: synthetic logs with a known fault must fail the matching
//! invariant, and a clean one must pass every check.

use byzgossip_testnet::invariants::{self, CheckResult};
use byzgossip_testnet::record::{
    BroadcastRecord, DeliveryRecord, EventRecord, GossipRecord, NodeRecord, PeerSample, PublishRecord, RunLog, UnconfirmedRecord,
};
use byzgossip_testnet::scenario::{Role, preset};

fn key(i: usize) -> String {
    format!("{:064x}", i + 1)
}

/// Four correct nodes; node 0 broadcast seq 0 with digest "aa..", everyone delivered it.
fn clean_log() -> RunLog {
    let scenario = preset("baseline", 4).expect("preset");
    let nodes = (0..4)
        .map(|i| NodeRecord {
            index: i,
            role: Role::Honest,
            key: key(i),
            peer_id: format!("peer{i}"),
            member: Some(i),
            armed_at_ms: None,
            down_at_end: false,
        })
        .collect();
    let digest = "aa".repeat(32);
    let deliveries = (0..4)
        .map(|n| DeliveryRecord { node: n, origin: key(0), seq: 0, digest: digest.clone(), delivered_at_ms: 1_100 + n as u64, cursor: 1 })
        .collect();
    let gossip = (1..4)
        .map(|n| GossipRecord { node: n, incarnation: 0, origin: key(0), id: "11".repeat(32), received_at_ms: 1_050, hops: None })
        .collect();
    RunLog {
        scenario,
        n: 4,
        f: 1,
        nodes,
        t0_ms: 1_000,
        attack_start_ms: 2_000,
        attack_end_ms: 3_000,
        load_end_ms: 4_000,
        end_ms: 10_000,
        disrupted_until_ms: 0,
        broadcasts: vec![BroadcastRecord { origin: 0, seq: 0, digest, sent_at_ms: 1_010 }],
        broadcast_failures: 0,
        unconfirmed_broadcasts: vec![],
        unconfirmed_publishes: vec![],
        publishes: vec![PublishRecord { origin: 0, id: "11".repeat(32), sent_at_ms: 1_001 }],
        deliveries,
        gossip,
        peer_samples: vec![],
        traffic: vec![],
        events: vec![],
    }
}

fn result<'a>(results: &'a [CheckResult], name: &str) -> &'a CheckResult {
    results.iter().find(|r| r.name == name).expect("check exists")
}

#[test]
fn clean_log_passes_every_check() {
    let results = invariants::check(&clean_log());
    for r in &results {
        assert!(r.passed, "{} failed: {:?}", r.name, r.evidence);
    }
}

#[test]
fn agreement_fails_when_two_correct_nodes_deliver_different_values() {
    let mut log = clean_log();
    log.deliveries[2].digest = "bb".repeat(32);
    let results = invariants::check(&log);
    let agreement = result(&results, "agreement");
    assert!(!agreement.passed);
    assert!(agreement.evidence[0].contains("nodes [2] delivered bbbbbbbb"), "{:?}", agreement.evidence);
    // The changed value is also a value node 0 never broadcast.
    assert!(!result(&results, "integrity").passed);
    assert!(!result(&results, "no-forgery").passed);
}

#[test]
fn integrity_fails_on_a_double_delivery() {
    let mut log = clean_log();
    let mut again = log.deliveries[1].clone();
    again.cursor = 2;
    log.deliveries.push(again);
    let results = invariants::check(&log);
    assert!(!result(&results, "integrity").passed);
    assert!(result(&results, "agreement").passed);
}

#[test]
fn validity_and_totality_fail_when_a_node_misses_a_delivery() {
    let mut log = clean_log();
    log.deliveries.retain(|d| d.node != 3);
    let results = invariants::check(&log);
    assert!(!result(&results, "validity").passed);
    assert!(!result(&results, "totality").passed);
    // A late delivery breaks totality only.
    let mut log = clean_log();
    log.deliveries[3].delivered_at_ms = 9_000;
    let results = invariants::check(&log);
    assert!(result(&results, "validity").passed);
    assert!(!result(&results, "totality").passed);
    // ... unless it was late because of a disruption that ended shortly before.
    log.disrupted_until_ms = 8_000;
    assert!(result(&invariants::check(&log), "totality").passed);
}

#[test]
fn gossip_delivery_fails_when_a_node_never_or_late_receives_honest_gossip() {
    let mut log = clean_log();
    log.gossip.retain(|g| g.node != 2);
    let check = invariants::gossip_delivery(&log);
    assert!(!check.passed);
    assert!(check.evidence[0].contains("never received by node 2"), "{:?}", check.evidence);
    // Late: after the totality deadline of its publish.
    let mut log = clean_log();
    log.gossip[1].received_at_ms = 9_000;
    assert!(!invariants::gossip_delivery(&log).passed);
    // ... unless a disruption ended shortly before.
    log.disrupted_until_ms = 8_000;
    assert!(invariants::gossip_delivery(&log).passed);
    // Not yet due when the run ended: inconclusive, not failed; a node down at the end owes
    // nothing.
    let mut log = clean_log();
    log.gossip.retain(|g| g.node != 2);
    log.end_ms = 3_000;
    assert!(invariants::gossip_delivery(&log).passed);
    let mut log = clean_log();
    log.gossip.retain(|g| g.node != 2);
    log.nodes[2].down_at_end = true;
    assert!(invariants::gossip_delivery(&log).passed);
    // A kill right after the publish may lose it (at most once across a crash); a kill long
    // after it is no excuse.
    for (killed_at, passes) in [(1_001 + invariants::CRASH_LOSS_WINDOW_MS - 1, true), (1_001 + invariants::CRASH_LOSS_WINDOW_MS, false), (900, false)] {
        let mut log = clean_log();
        log.gossip.retain(|g| g.node != 2);
        log.events.push(EventRecord { t_ms: killed_at, what: "kill node 2".into() });
        assert_eq!(invariants::gossip_delivery(&log).passed, passes, "killed at {killed_at}");
    }
}

/// A call that timed out may have been carried out (under load, a broadcast answered after
/// the harness gave up): its value, delivered, is no forgery, though nothing requires it. It
/// excuses exactly what it could be: the value it carried from its origin, and one unknown
/// gossip id of its origin per unanswered publish.
#[test]
fn a_timed_out_call_carried_out_anyway_is_no_forgery_and_excuses_no_more() {
    let timed_out = |origin: usize, digest: String| UnconfirmedRecord { origin, digest, sent_at_ms: 1_020 };
    // Node 0's broadcast seq 1 of value "cc.." timed out at the harness; everyone delivered it.
    let mut log = clean_log();
    let late = (0..4).map(|n| DeliveryRecord { node: n, origin: key(0), seq: 1, digest: "cc".repeat(32), delivered_at_ms: 1_300, cursor: 2 });
    log.deliveries.extend(late);
    let results = invariants::check(&log);
    assert!(!result(&results, "no-forgery").passed && !result(&results, "integrity").passed, "without the record it is a forgery");
    log.unconfirmed_broadcasts.push(timed_out(0, "cc".repeat(32)));
    let results = invariants::check(&log);
    assert!(results.iter().all(|r| r.passed), "{results:?}");
    // The record excuses its own value from its own origin only.
    let mut other = log.clone();
    other.unconfirmed_broadcasts = vec![timed_out(1, "cc".repeat(32))];
    assert!(!result(&invariants::check(&other), "no-forgery").passed, "another origin's timeout excuses nothing");
    // Gossip: one unanswered publish of node 0 explains one unknown id of node 0, not two.
    let mut log = clean_log();
    for id in ["22", "33"] {
        log.gossip.push(GossipRecord { node: 1, incarnation: 0, origin: key(0), id: id.repeat(32), received_at_ms: 1_200, hops: None });
    }
    log.unconfirmed_publishes.push(timed_out(0, "dd".repeat(32)));
    let no_forgery = invariants::no_forgery(&log);
    assert!(!no_forgery.passed);
    assert_eq!(no_forgery.evidence.len(), 1, "{:?}", no_forgery.evidence);
    log.unconfirmed_publishes.push(timed_out(0, "ee".repeat(32)));
    assert!(invariants::no_forgery(&log).passed);
}

#[test]
fn forged_and_replayed_gossip_are_caught() {
    let mut log = clean_log();
    log.gossip.push(GossipRecord { node: 1, incarnation: 0, origin: key(0), id: "22".repeat(32), received_at_ms: 1_200, hops: None });
    assert!(!result(&invariants::check(&log), "no-forgery").passed);
    let mut log = clean_log();
    log.gossip.push(log.gossip[0].clone());
    assert!(!result(&invariants::check(&log), "no-replay").passed);
    // A restart is no excuse: gossip ids persist with the replay window.
    let mut log = clean_log();
    let mut again = log.gossip[0].clone();
    again.incarnation = 1;
    log.gossip.push(again);
    let results = invariants::check(&log);
    let no_replay = result(&results, "no-replay");
    assert!(!no_replay.passed);
    assert!(no_replay.evidence[0].contains("start 1 of the node"), "{:?}", no_replay.evidence);
}

fn sample(t_ms: u64, observer: usize, peer: usize, status: &str, bans: u32, until_ms: Option<u64>) -> PeerSample {
    PeerSample { t_ms, observer, peer, score: 0.0, status: status.into(), bans, until_ms, asked_ms: 0 }
}

#[test]
fn a_restarted_node_that_never_excludes_a_convicted_equivocator_fails_catch_up() {
    // Node 3 equivocates; honest node 0 excludes it at 2.1 s; node 2 (crash-restart) restarts
    // at 3 s and excludes it at 3.5 s: in time (deadline 3.5 s).
    let mut log = clean_log();
    log.nodes[3].role = Role::EquivocateOrigin;
    log.nodes[3].armed_at_ms = Some(2_000);
    log.nodes[2].role = Role::CrashRestart;
    log.deliveries.retain(|d| d.node != 3);
    log.gossip.retain(|g| g.node != 3);
    log.events.push(byzgossip_testnet::record::EventRecord { t_ms: 3_000, what: "restart node 2".into() });
    log.peer_samples = vec![
        sample(2_100, 0, 3, "excluded", 0, None),
        sample(2_100, 1, 3, "excluded", 0, None),
        sample(3_500, 2, 3, "excluded", 0, None),
    ];
    assert!(result(&invariants::check(&log), "catch-up").passed);
    // Excluded only before the restart (its memory of it) does not count; never after fails.
    log.peer_samples[2].t_ms = 2_900;
    let results = invariants::check(&log);
    let catch_up = result(&results, "catch-up");
    assert!(!catch_up.passed);
    assert!(catch_up.evidence[0].contains("never excluded equivocator 3"), "{:?}", catch_up.evidence);
    // Too late fails too.
    log.peer_samples[2].t_ms = 7_000;
    assert!(!result(&invariants::check(&log), "catch-up").passed);
}

#[test]
fn readmission_needs_an_ok_after_the_first_ban_and_a_second_ban_twice_as_long() {
    // Node 3 is reformed, armed at 2 s; samples every 250 ms at nodes 0..=2.
    let base = |second_ban_ms: u64, readmitted: bool| {
        let mut log = clean_log();
        log.nodes[3].role = Role::Reformed;
        log.nodes[3].armed_at_ms = Some(2_000);
        log.deliveries.retain(|d| d.node != 3);
        log.gossip.retain(|g| g.node != 3);
        for o in 0..3 {
            // First ban from 2_200 to 4_200, second from 5_600.
            let mut t = 2_000;
            while t <= 9_500 {
                let s = if t < 2_250 {
                    sample(t, o, 3, "ok", 0, None)
                } else if t < 4_200 {
                    sample(t, o, 3, "banned", 1, Some(4_200))
                } else if t < 5_750 {
                    sample(t, o, 3, if readmitted { "ok" } else { "graylisted" }, 1, None)
                } else if t < 5_600 + second_ban_ms {
                    sample(t, o, 3, "banned", 2, Some(5_600 + second_ban_ms))
                } else {
                    sample(t, o, 3, "ok", 2, None)
                };
                log.peer_samples.push(s);
                t += 250;
            }
        }
        log
    };
    let results = invariants::check(&base(4_000, true));
    assert!(result(&results, "readmission").passed, "{:?}", result(&results, "readmission").evidence);
    assert!(result(&results, "detection").passed);
    // A second ban as long as the first is not a doubling.
    let results = invariants::check(&base(2_000, true));
    let readmission = result(&results, "readmission");
    assert!(!readmission.passed);
    assert!(readmission.evidence[0].contains("not twice as long"), "{:?}", readmission.evidence);
    // Never back to ok after the first ban.
    let results = invariants::check(&base(4_000, false));
    assert!(result(&results, "readmission").evidence[0].contains("never readmitted"));
}

#[test]
fn bans_of_correct_nodes_and_missed_attackers_are_caught() {
    let mut log = clean_log();
    log.peer_samples.push(PeerSample { t_ms: 2_500, observer: 0, peer: 1, score: -50.0, status: "banned".into(), bans: 0, until_ms: None, asked_ms: 0 });
    assert!(!result(&invariants::check(&log), "no-false-bans").passed);

    // Node 3 is a forger armed at 2 s; node 0 convicts it in time, node 1 late, node 2 never.
    let mut log = clean_log();
    log.nodes[3].role = Role::Forge;
    log.nodes[3].armed_at_ms = Some(2_000);
    log.deliveries.retain(|d| d.node != 3);
    log.gossip.retain(|g| g.node != 3);
    log.peer_samples = vec![
        PeerSample { t_ms: 2_300, observer: 0, peer: 3, score: -20.0, status: "graylisted".into(), bans: 0, until_ms: None, asked_ms: 0 },
        PeerSample { t_ms: 9_000, observer: 1, peer: 3, score: -20.0, status: "banned".into(), bans: 0, until_ms: None, asked_ms: 0 },
    ];
    let results = invariants::check(&log);
    let detection = result(&results, "detection");
    assert!(!detection.passed);
    assert_eq!(detection.evidence.len(), 2, "{:?}", detection.evidence);
    assert!(result(&results, "no-false-bans").passed);
    // Graylisting an attacker is not a false ban, and its deliveries are not held to validity.
    assert!(result(&results, "validity").passed);
}

#[test]
fn every_scenario_file_loads_and_every_preset_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("scenarios dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = byzgossip_testnet::Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // A saved scenario round-trips through TOML unchanged.
            let again: byzgossip_testnet::Scenario = toml_round_trip(&s);
            assert_eq!(again, s, "{}", path.display());
            files += 1;
        }
    }
    assert!(files >= byzgossip_testnet::scenario::PRESETS.len(), "one file per preset at least");
    for (name, _) in byzgossip_testnet::scenario::PRESETS {
        for n in [4, 7, 10] {
            let s = preset(name, n).expect("preset");
            s.validate().unwrap_or_else(|e| panic!("{name} at n = {n}: {e}"));
        }
    }
}

fn toml_round_trip(s: &byzgossip_testnet::Scenario) -> byzgossip_testnet::Scenario {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.toml");
    std::fs::write(&path, s.to_toml()).expect("write");
    byzgossip_testnet::Scenario::load(&path).expect("load")
}
