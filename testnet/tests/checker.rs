//! The checker catches violations: synthetic logs with a known fault must fail the matching
//! invariant, and a clean one must pass every check.

use byzgossip_testnet::invariants::{self, CheckResult};
use byzgossip_testnet::record::{BroadcastRecord, DeliveryRecord, GossipRecord, NodeRecord, PeerSample, PublishRecord, RunLog};
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
        .map(|n| GossipRecord { node: n, incarnation: 0, origin: key(0), id: "11".repeat(32), received_at_ms: 1_050 })
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
fn forged_and_replayed_gossip_are_caught() {
    let mut log = clean_log();
    log.gossip.push(GossipRecord { node: 1, incarnation: 0, origin: key(0), id: "22".repeat(32), received_at_ms: 1_200 });
    assert!(!result(&invariants::check(&log), "no-forgery").passed);
    let mut log = clean_log();
    log.gossip.push(log.gossip[0].clone());
    assert!(!result(&invariants::check(&log), "no-replay").passed);
    // After a restart, a second sighting is allowed (gossip ids are not persisted).
    let mut log = clean_log();
    let mut again = log.gossip[0].clone();
    again.incarnation = 1;
    log.gossip.push(again);
    assert!(result(&invariants::check(&log), "no-replay").passed);
}

#[test]
fn bans_of_correct_nodes_and_missed_attackers_are_caught() {
    let mut log = clean_log();
    log.peer_samples.push(PeerSample { t_ms: 2_500, observer: 0, peer: 1, score: -50.0, status: "banned".into() });
    assert!(!result(&invariants::check(&log), "no-false-bans").passed);

    // Node 3 is a forger armed at 2 s; node 0 convicts it in time, node 1 late, node 2 never.
    let mut log = clean_log();
    log.nodes[3].role = Role::Forge;
    log.nodes[3].armed_at_ms = Some(2_000);
    log.deliveries.retain(|d| d.node != 3);
    log.gossip.retain(|g| g.node != 3);
    log.peer_samples = vec![
        PeerSample { t_ms: 2_300, observer: 0, peer: 3, score: -20.0, status: "graylisted".into() },
        PeerSample { t_ms: 9_000, observer: 1, peer: 3, score: -20.0, status: "banned".into() },
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
