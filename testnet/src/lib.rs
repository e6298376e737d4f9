//! byzgossip testnets and the attack lab: many real nodes in one process on 127.0.0.1,
//! honest and malicious, a workload, a timeline of attacks and faults, invariant checks over
//! every correct node's delivery log, and reports.
//!
//! - [`scenario`]: scenario files (TOML) and the built-in presets.
//! - [`adversary`]: the adversaries, built on the node's `Interceptor` hook and
//!   `publish_raw` (no attack code in the node crate).
//! - [`harness`]: the in-process runtime: start, connect, workload, timeline, collection.
//! - [`process`]: the process runtime (`run --runtime process`): honest members as real
//!   `byzgossip` processes driven over HTTP, adversaries as processes of this crate's binary;
//!   kill/restart/pause by signals, partition and eclipse by each side blocking the other's
//!   peer id, traffic counts from each process's `/metrics`. Inbound loss and delay
//!   (`degrade` faults) need the in-process interceptor and are reported unsupported, except
//!   with `--netns` ([`process::netns`]): every node in its own network namespace on a
//!   bridge, cuts and `degrade` loss as nftables drops in the kernel (delay not applied).
//! - `timeline` (private): the fault timeline both runtimes share: one plan from the scenario,
//!   one driver applying it through a small `FaultTarget` trait, so the same scenario means
//!   the same faults at the same times in either runtime.
//! - [`sim`]: the deterministic simulator (`run --runtime sim`, `explore`): every node's
//!   engine in virtual time on a simulated network, seeded link conditions, an in-memory
//!   store that survives crashes, and a final state hash (same seed, same hash).
//! - [`record`]: what a run records ([`record::RunLog`], saved as `run.json`).
//! - [`invariants`]: the checker (pure; agreement, integrity, validity, totality, gossip delivery, no forgery,
//!   no replay, no false bans, detection).
//! - [`report`]: summaries, the terminal table, `report.json`, `report.html` (plots drawn
//!   with `plotters`' SVG backend and inlined, so the page works offline).
//! - [`bench`]: macro benchmarks with same-run baselines (`byzgossip-testnet bench [--json FILE]
//!   [--quick]`): Bracha throughput and latency at n = 4, 7, 16 with 0 and f silent members,
//!   1 KiB gossip against bare gossipsub, RSS per node; one JSON object per line.
//!
//! # Bounds
//! Every run ends by itself: its phases come from the scenario, every node call has a
//! timeout, and the drain phase has a deadline. Nodes listen on 127.0.0.1 with OS-chosen
//! ports; nothing is left running after [`harness::run`] returns.

pub mod adversary;
pub mod bench;
pub mod deploy;
pub mod harness;
pub mod invariants;
pub mod monitoring;
pub mod process;
pub mod record;
mod recorder;
mod timeline;
pub mod report;
pub mod scenario;
pub mod sim;

pub use harness::{RunOptions, Testnet, run};
pub use record::RunLog;
pub use scenario::{Role, Scenario, preset};

/// Runs `scenario` and summarizes it.
pub async fn run_and_check(scenario: &Scenario, options: RunOptions) -> anyhow::Result<(RunLog, report::Summary)> {
    let log = run(scenario, options).await?;
    let summary = report::summarize(&log);
    Ok((log, summary))
}
