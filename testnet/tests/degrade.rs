//! The degrade fault in process: a node that loses everything it receives during the attack
//! window delivers nothing then, and catches up through retransmission and sync once
//! restored, with every invariant holding.

use byzgossip_testnet::report;
use byzgossip_testnet::scenario::{Fault, FaultKind, Phase, Scenario};
use byzgossip_testnet::{RunOptions, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_total_inbound_loss_delivers_nothing_then_catches_up_after_restore() {
    let mut s = Scenario::new("total-loss", "node 3 loses every message it receives during the attack", 4, vec![]);
    s.seed = 11;
    s.timeline.warmup_s = 1.5;
    s.timeline.attack_s = 2.5;
    s.timeline.cooldown_s = 1.0;
    s.timeline.drain_s = 8.0;
    s.workload.broadcasts_per_s = 8.0;
    s.workload.gossip_per_s = 4.0;
    s.faults = vec![
        Fault { loss: 1.0, ..Fault::at_phase(Phase::AttackStart, FaultKind::Degrade, vec![3]) },
        Fault::at_phase(Phase::AttackEnd, FaultKind::Restore, vec![]),
    ];
    s.validate().expect("valid");
    let log = run(&s, RunOptions::default()).await.expect("run");
    let summary = report::summarize(&log);
    assert!(summary.passed, "{}\n{}", report::table(std::slice::from_ref(&summary)), report::failures(&summary));

    let events: Vec<&str> = log.events.iter().map(|e| e.what.as_str()).collect();
    assert!(events.iter().any(|e| e.starts_with("degrade [3]: loss 1")), "{events:?}");
    assert!(events.contains(&"restore [3]"), "{events:?}");
    // Messages admitted just before the degrade may still finish verifying: a short margin.
    let window = (log.attack_start_ms + 500)..log.attack_end_ms.saturating_sub(50);
    let in_window = |node: usize| log.deliveries.iter().filter(|d| d.node == node && window.contains(&d.delivered_at_ms)).count();
    assert_eq!(in_window(3), 0, "node 3 received nothing, so it delivered nothing during the window");
    assert!(in_window(0) > 5, "the others went on delivering: {}", in_window(0));
    let after = log.deliveries.iter().filter(|d| d.node == 3 && d.delivered_at_ms >= log.attack_end_ms).count();
    assert!(after >= in_window(0), "node 3 caught up after the restore: {after}");
    assert_eq!(summary.honest_delivery_pct, 100.0);
}
