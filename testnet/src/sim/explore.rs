//! `explore`: random scenarios in the simulator, each checked by every invariant.
//!
//! A seed draws one scenario ([`random_scenario`]): committee size in the asked range,
//! adversaries (up to f committee members with random roles, sometimes Sybils), workload,
//! attack knobs, link conditions and a fault timeline. Faults respect the model the
//! invariants are written for, so that a violation is a finding and not a foregone
//! conclusion of the checker's definitions:
//! - crashed or paused correct members plus Byzantine members never exceed f at once (a
//!   crash counts against f); every kill is followed by a restart and every pause by a resume;
//!   partitions heal; degradations are partial (loss at most 0.2, delay at most 100 ms, as
//!   the `lossy` preset) and restored;
//! - every fault ends at least 1.5 s before the workload stops (the cooldown grows when
//!   needed), so the drain follows the last disruption;
//! - when the scenario has a detectable attacker, faults start only after every detection
//!   deadline has passed, and no eclipse is drawn (the checker does not excuse an observer
//!   that was paused, crashed or cut off while it should have been convicting).
//!
//! A failing seed prints its failed checks and writes the scenario file that reproduces it
//! (`run --runtime sim --scenario FILE`).

use super::{SimOptions, SimRun};
use crate::invariants::{self, CheckResult};
use crate::scenario::{Fault, FaultKind, Group, Links, Role, Scenario};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::path::{Path, PathBuf};

/// Committee roles an explored scenario draws its Byzantine members from.
pub const ADVERSARY_ROLES: [Role; 15] = [
    Role::Silent,
    Role::CrashRestart,
    Role::EquivocateOrigin,
    Role::EquivocateVote,
    Role::Replay,
    Role::StaleTimestamp,
    Role::FutureTimestamp,
    Role::Forge,
    Role::Tamper,
    Role::Malformed,
    Role::FakeVotes,
    Role::Flood,
    Role::Censor,
    Role::Eclipse,
    Role::CovertFlash,
];

fn round(v: f64, step: f64) -> f64 {
    (v / step).round() * step
}

/// The scenario of one explore seed, with `min..=max` committee members.
pub fn random_scenario(seed: u64, min: usize, max: usize) -> Scenario {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0xe8b1_04e0);
    let n = rng.random_range(min.max(1)..=max.max(min.max(1)));
    let f = n.saturating_sub(1) / 3;
    let byzantine = if f == 0 { 0 } else { rng.random_range(0..=f) };
    let mut groups: Vec<Group> = Vec::new();
    for _ in 0..byzantine {
        let role = ADVERSARY_ROLES[rng.random_range(0..ADVERSARY_ROLES.len())];
        match groups.iter_mut().find(|g| g.role == role) {
            Some(g) => g.count += 1,
            None => groups.push(Group { role, count: 1 }),
        }
    }
    if rng.random_bool(0.2) {
        groups.push(Group { role: Role::Sybil, count: rng.random_range(1..=4) });
    }
    // An eclipse cuts its victim, an honest observer, from every other node for the attack
    // window, so the victim cannot convict a detectable attacker within the detection
    // deadline: with a detectable attacker, the eclipsers go silent instead.
    if groups.iter().any(|g| g.role.detectable())
        && let Some(eclipse) = groups.iter().position(|g| g.role == Role::Eclipse)
    {
        let count = groups.remove(eclipse).count;
        match groups.iter_mut().find(|g| g.role == Role::Silent) {
            Some(g) => g.count += count,
            None => groups.push(Group { role: Role::Silent, count }),
        }
    }
    groups.sort_by_key(|g| g.role);
    let mut s = Scenario::new(&format!("explore-{seed}"), "a random scenario drawn by `explore`", n, groups);
    s.seed = seed;
    s.workload.broadcasts_per_s = round(rng.random_range(2.0..20.0), 0.5);
    s.workload.gossip_per_s = round(rng.random_range(0.0..20.0), 0.5);
    s.workload.value_size = rng.random_range(32..=1024);
    s.attack.rate_per_s = round(rng.random_range(5.0..40.0), 1.0);
    // A flood is a flood (and detectable) only above a trusted origin's budget of 1,000/s
    // (`byzgossip_reputation::BudgetConfig`): an attacker honest through the warm-up is trusted.
    s.attack.flood_per_s = round(rng.random_range(1500.0..3000.0), 10.0);
    s.timeline.attack_s = round(rng.random_range(2.0..6.0), 0.5);
    s.links = Links {
        latency_ms: round(rng.random_range(0.5..30.0), 0.5),
        latency_spread_ms: round(rng.random_range(0.0..20.0), 0.5),
        jitter_ms: round(rng.random_range(0.0..10.0), 0.5),
        loss: if rng.random_bool(0.5) { 0.0 } else { round(rng.random_range(0.0..0.03), 0.001) },
        bandwidth_mbps: if rng.random_bool(0.5) { 0.0 } else { round(rng.random_range(10.0..1000.0), 10.0) },
    };
    let roles = s.roles();
    let honest: Vec<usize> = (0..roles.len()).filter(|i| roles[*i] == Role::Honest).collect();
    let t = s.timeline.clone();
    let (attack_start, attack_end) = (t.warmup_s, t.warmup_s + t.attack_s);
    // Faults start after every detection deadline (see the module docs).
    let detectable = roles.iter().any(|r| r.detectable());
    let covert = roles.contains(&Role::CovertFlash);
    let last_arm = if covert { t.warmup_s + t.attack_s / 2.0 } else { t.warmup_s };
    let earliest = if detectable { last_arm + s.deadlines.detection_s } else { attack_start };
    // Every fault ends 1.5 s before the workload does (the cooldown grows when detection
    // pushed the faults past the attack window), so the drain follows the last disruption.
    let latest = attack_end.max(earliest + 1.5);
    s.timeline.cooldown_s = s.timeline.cooldown_s.max(latest + 1.5 - attack_end);
    let window = |rng: &mut ChaCha20Rng| {
        let a = round(rng.random_range(earliest..latest - 0.5), 0.1);
        let b = round(rng.random_range(a + 0.3..=latest), 0.1);
        (a, b)
    };
    let at = |at_s: f64, kind: FaultKind, nodes: Vec<usize>| Fault { at_s, at: None, kind, nodes, loss: 0.0, delay_ms: 0 };
    // Correct members that may be down or paused at once.
    let mut budget = f.saturating_sub(s.byzantine());
    for _ in 0..rng.random_range(0..=2usize) {
        match rng.random_range(0..4u8) {
            0 => {
                let size = rng.random_range(1..=(roles.len() / 2).max(1));
                let mut side: Vec<usize> = Vec::new();
                while side.len() < size {
                    let i = rng.random_range(0..roles.len());
                    if !side.contains(&i) {
                        side.push(i);
                    }
                }
                side.sort_unstable();
                let (a, b) = window(&mut rng);
                s.faults.push(at(a, FaultKind::Partition, side));
                s.faults.push(at(b, FaultKind::Heal, vec![]));
            }
            kind @ (1 | 2) if budget > 0 && honest.len() > 1 => {
                budget -= 1;
                let i = honest[rng.random_range(0..honest.len())];
                let (a, b) = window(&mut rng);
                let (start, stop) = if kind == 1 { (FaultKind::Kill, FaultKind::Restart) } else { (FaultKind::Pause, FaultKind::Resume) };
                s.faults.push(at(a, start, vec![i]));
                s.faults.push(at(b, stop, vec![i]));
            }
            _ => {
                let i = honest[rng.random_range(0..honest.len())];
                let (a, b) = window(&mut rng);
                let mut degrade = at(a, FaultKind::Degrade, vec![i]);
                degrade.loss = round(rng.random_range(0.0..=0.2), 0.01);
                degrade.delay_ms = rng.random_range(0..=100);
                s.faults.push(degrade);
                s.faults.push(at(b, FaultKind::Restore, vec![i]));
            }
        }
    }
    s
}

/// One explored seed that violated an invariant.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The seed.
    pub seed: u64,
    /// The failed checks with their evidence.
    pub failed: Vec<CheckResult>,
    /// The scenario file that reproduces it.
    pub scenario: PathBuf,
}

/// Explores `seeds` seeds from `first`, committees of `min..=max` members; calls `line` with
/// one line per seed; writes failing scenarios under `out`.
pub fn explore(first: u64, seeds: u64, (min, max): (usize, usize), out: &Path, mut line: impl FnMut(String)) -> anyhow::Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for seed in first..first.saturating_add(seeds) {
        let scenario = random_scenario(seed, min, max);
        let started = std::time::Instant::now();
        let SimRun { log, state_hash, stats } = super::run(&scenario, &SimOptions::default())?;
        let checks = invariants::check(&log);
        let failed: Vec<CheckResult> = checks.into_iter().filter(|c| !c.passed).collect();
        let groups: Vec<String> = scenario.groups.iter().map(|g| format!("{}x{}", g.count, g.role.name())).collect();
        line(format!(
            "seed: {seed} n = {} [{}] faults {} -> {} in {:.1} s ({:.1} virtual s), state hash: {state_hash}",
            scenario.nodes,
            groups.join(" "),
            scenario.faults.len(),
            if failed.is_empty() { "PASS".to_owned() } else { format!("FAIL {}", failed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(",")) },
            started.elapsed().as_secs_f64(),
            stats.virtual_s,
        ));
        if !failed.is_empty() {
            std::fs::create_dir_all(out)?;
            let path = out.join(format!("explore-{seed}.toml"));
            std::fs::write(&path, format!("# explore seed {seed}: reproduce with `byzgossip-testnet run --runtime sim --scenario {}`\n{}", path.display(), scenario.to_toml()))?;
            for c in &failed {
                line(format!("  {}: {}", c.name, c.detail));
                for e in &c.evidence {
                    line(format!("    {e}"));
                }
            }
            line(format!("  scenario written to {}", path.display()));
            findings.push(Finding { seed, failed, scenario: path });
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_scenarios_are_valid_and_within_f() {
        for seed in 0..500 {
            let s = random_scenario(seed, 4, 16);
            s.validate().unwrap_or_else(|e| panic!("seed {seed}: {e}\n{}", s.to_toml()));
            assert!(s.byzantine() <= s.f(), "seed {seed}");
            let back: Scenario = toml::from_str(&s.to_toml()).expect("round trip");
            assert_eq!(back, s, "seed {seed}");
        }
    }
}
