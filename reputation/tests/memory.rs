//! Peak memory of the replay guard holding 1M ids in steady state. Ignored by default (it
//! allocates about 120 MiB); run with
//! `cargo test --release -p byzgossip-reputation --test memory -- --ignored --nocapture`
//! (optionally under `/usr/bin/time -v` for the process's maximum RSS).

use byzgossip_crypto::{Digest, Header, Kind, MessageId, NetworkId, PublicKey};
use byzgossip_reputation::{ReplayConfig, ReplayGuard, ReplayOutcome};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

#[test]
#[ignore = "allocates about 120 MiB; run explicitly"]
fn one_million_ids_peak_memory() {
    const LIVE: u64 = 1_000_000;
    let before = peak_rss_kib();
    let config = ReplayConfig { capacity: 1_100_000, per_origin_capacity: 1_100_000, ..ReplayConfig::default() };
    let max_age = config.max_age_ms;
    let mut guard = ReplayGuard::new(config).expect("guard");
    let t0 = 1_700_000_000_000u64;
    // Three windows' worth of traffic at the rate that keeps LIVE ids in one window.
    for n in 0..3 * LIVE {
        let now = t0 + n * max_age / LIVE;
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        id[8..16].copy_from_slice(&n.to_le_bytes());
        let mut origin = [0u8; 32];
        origin[0] = (n % 64) as u8;
        let header = Header {
            version: 1,
            network: NetworkId([0; 32]),
            kind: Kind::Gossip,
            origin: PublicKey(origin),
            seq: n,
            timestamp_ms: now,
            body_len: 0,
            body_hash: Digest([0; 32]),
        };
        assert_eq!(guard.insert(MessageId(id), &header, now), ReplayOutcome::Fresh);
    }
    let after = peak_rss_kib();
    eprintln!(
        "ids held: {}; estimated heap: {:.1} MiB; peak RSS growth: {:.1} MiB (VmHWM {} -> {} KiB)",
        guard.len(),
        guard.approx_heap_bytes() as f64 / 1048576.0,
        (after - before) as f64 / 1024.0,
        before,
        after
    );
    assert!(guard.len() as u64 <= LIVE + LIVE / 50);
}
