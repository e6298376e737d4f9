//! Agreement, integrity, validity and totality in the virtual network, under every Byzantine
//! strategy and adversarial schedules, with exactly f Byzantine members (DESIGN.md sections 5
//! and 7). A failure prints the seed, size and strategy; replay it with
//! `SimConfig::new(n, strategy, seed)`.
//!
//! Case counts are sized for a debug `cargo test` under a minute; raise them with
//! `PROPTEST_CASES=1000`.

use byzgossip_bracha::sim::{SimConfig, Strategy, VirtualNet};
use proptest::prelude::*;

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn run(config: SimConfig) -> Result<VirtualNet, TestCaseError> {
    let replay = format!(
        "replay: SimConfig::new({}, Strategy::{:?}, {}) (schedule {:?}, signatures {})",
        config.n, config.strategy, config.seed, config.schedule, config.signatures
    );
    let mut net = VirtualNet::new(config).map_err(|e| TestCaseError::fail(format!("{e}; {replay}")))?;
    net.run().map_err(|e| TestCaseError::fail(format!("{e}; {replay}")))?;
    net.check().map_err(|e| TestCaseError::fail(format!("{e}; {replay}")))?;
    Ok(net)
}

macro_rules! strategy_property {
    ($name:ident, $strategy:expr) => {
        proptest! {
            #![proptest_config(cases(12))]
            #[test]
            fn $name(seed in any::<u64>(), n in 1usize..=64) {
                run(SimConfig::new(n, $strategy, seed))?;
            }
        }
    };
}

strategy_property!(reliable_broadcast_with_silent_members, Strategy::Silent);
strategy_property!(reliable_broadcast_with_equivocating_origins, Strategy::EquivocatingOrigin);
strategy_property!(reliable_broadcast_with_equivocating_voters, Strategy::EquivocatingVoter);
strategy_property!(reliable_broadcast_with_votes_for_values_nobody_sent, Strategy::BogusVotes);
strategy_property!(reliable_broadcast_with_ready_without_echo, Strategy::ReadyWithoutEcho);
strategy_property!(reliable_broadcast_with_replayed_old_instances, Strategy::Replay);
strategy_property!(reliable_broadcast_with_future_seq_floods, Strategy::FloodFuture);

proptest! {
    #![proptest_config(cases(6))]
    /// The same properties with every envelope signed and verified, and every certificate
    /// and piece of evidence checked on its own.
    #[test]
    fn reliable_broadcast_with_signatures(seed in any::<u64>(), n in 1usize..=13, s in 0usize..Strategy::ALL.len()) {
        let mut config = SimConfig::new(n, Strategy::ALL[s], seed);
        config.signatures = true;
        run(config)?;
    }

    /// Several instances per origin, a small window and retention: windows slide, members
    /// that dropped messages beyond their window catch up by certificates (sync), and
    /// collected instances stay delivered exactly once.
    #[test]
    fn reliable_broadcast_with_sliding_windows(seed in any::<u64>(), n in 4usize..=16, s in 0usize..Strategy::ALL.len()) {
        let mut config = SimConfig::new(n, Strategy::ALL[s], seed);
        config.instances_per_origin = 6;
        config.bracha.window = 3;
        config.bracha.retention_ms = 20;
        config.sync = true;
        run(config)?;
    }
}

/// The harness catches the seed design's bug: READY on a bare majority of ECHOs
/// (`floor(n/2)+1`) lets an equivocating origin with f colluders make honest members deliver
/// different values, while the real threshold never does on the same seeds.
#[test]
fn seed_design_thresholds_break_agreement_and_bracha_thresholds_do_not() {
    let mut broken = 0;
    let mut runs = 0;
    for n in [5usize, 8, 11] {
        for seed in 0..20u64 {
            let mut config = SimConfig::new(n, Strategy::EquivocatingOrigin, seed);
            config.honest_broadcasters = 0;
            run(config.clone()).unwrap_or_else(|e| panic!("Bracha thresholds failed: {e}"));
            config.seed_thresholds = true;
            let mut net = VirtualNet::new(config).expect("net");
            runs += 1;
            if net.run().is_ok()
                && let Err(e) = net.check()
                && e.starts_with("agreement")
            {
                broken += 1;
            }
        }
    }
    eprintln!("seed design thresholds broke agreement in {broken} of {runs} runs");
    assert!(broken > 0, "the harness did not catch the broken rule in {runs} runs");
}
