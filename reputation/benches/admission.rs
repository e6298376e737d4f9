//! Admission cost, side by side in one run (DESIGN.md section 8):
//! - `admission_1kib/raw_verify_strict`: `verify_strict` of one 1 KiB envelope's signature;
//! - `admission_1kib/full_admit`: decode, stateless checks, window, seen-set, reputation gate,
//!   `verify_strict`, insert, reward, for fresh 1 KiB envelopes;
//! - `guard_reputation/{10k,1M}`: the replay guard and reputation alone per message (expire,
//!   check, status, budget, insert, first-delivery reward) in a steady state of 10k or 1M
//!   remembered ids: time advances so that ids expire as fast as new ones arrive.
//!
//! The 1M case also prints the guard's heap estimate (`ReplayGuard::approx_heap_bytes`).

#![allow(missing_docs, reason = "criterion_group! generates an undocumented pub fn")]

use byzgossip_crypto::codec::encode_envelope;
use byzgossip_crypto::{
    Committee, Digest, Envelope, GossipPolicy, Header, Keypair, Kind, MessageId, NetworkId, PublicKey,
    verify_strict_with,
};
use byzgossip_reputation::{
    Admission, AdmissionConfig, BudgetConfig, Event, ReplayConfig, ReplayGuard, Reputation, ReputationConfig,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};

const T0: u64 = 1_700_000_000_000;
const POOL: usize = 4096;

fn members() -> Vec<Keypair> {
    (0..4u8).map(|i| Keypair::from_secret_bytes(&[i + 1; 32])).collect()
}

fn bench_admission(c: &mut Criterion) {
    let network = NetworkId([7; 32]);
    let keys = members();
    let committee = Committee::new(keys.iter().map(|k| k.public()).collect(), 1).expect("committee");
    let envelopes: Vec<Envelope> = (0..POOL as u64)
        .map(|seq| {
            let body: Vec<u8> = (0..1024u32).map(|i| (i as u64 ^ seq) as u8).collect();
            Envelope::seal(&keys[(seq % 4) as usize], network, Kind::Gossip, seq, T0, body).expect("seal")
        })
        .collect();
    let encoded: Vec<Vec<u8>> = envelopes.iter().map(encode_envelope).collect();
    let forwarders: Vec<PublicKey> = (0..8u8).map(|i| PublicKey([100 + i; 32])).collect();

    let config = AdmissionConfig {
        reputation: ReputationConfig { budget: unlimited_budget(), ..ReputationConfig::default() },
        ..AdmissionConfig::default()
    };

    // Paired: raw verify and full admission of the same envelope, interleaved, so a shared
    // machine's load drift hits both sides equally. Printed, not a criterion benchmark.
    let (mut raw, mut full) = (Duration::ZERO, Duration::ZERO);
    for _round in 0..3 {
        let mut admission =
            Admission::new(config.clone(), network, committee.clone(), GossipPolicy::Committee).expect("admission");
        for (i, (e, bytes)) in envelopes.iter().zip(&encoded).enumerate() {
            let key = committee.verifying_key((e.header().seq % 4) as usize).expect("member");
            let start = Instant::now();
            black_box(verify_strict_with(key, &e.header().signing_bytes(), e.signature()).is_ok());
            raw += start.elapsed();
            let start = Instant::now();
            black_box(admission.admit(forwarders[i % forwarders.len()], bytes, T0 + 1));
            full += start.elapsed();
        }
    }
    let n = 3 * POOL as u32;
    eprintln!(
        "paired over {n} envelopes: raw verify_strict {:.2} us, full admission {:.2} us, ratio {:.3}",
        (raw / n).as_secs_f64() * 1e6,
        (full / n).as_secs_f64() * 1e6,
        full.as_secs_f64() / raw.as_secs_f64()
    );

    let mut group = c.benchmark_group("admission_1kib");
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));

    group.bench_function("raw_verify_strict", |b| {
        let mut i = 0;
        b.iter(|| {
            let e = &envelopes[i % POOL];
            i += 1;
            let key = committee.verifying_key((e.header().seq % 4) as usize).expect("member");
            black_box(verify_strict_with(key, &e.header().signing_bytes(), e.signature()).is_ok())
        })
    });

    group.bench_function("decode", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(byzgossip_crypto::codec::decode_envelope(&encoded[i % POOL], 1 << 20).is_ok())
        })
    });
    group.bench_function("verify_with_key", |b| {
        let mut i = 0;
        b.iter(|| {
            let e = &envelopes[i % POOL];
            i += 1;
            let key = committee.verifying_key((e.header().seq % 4) as usize).expect("member");
            black_box(e.clone().verify_with_key(&network, key).is_ok())
        })
    });

    group.bench_function("precheck", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let mut admission =
                    Admission::new(config.clone(), network, committee.clone(), GossipPolicy::Committee).expect("admission");
                let n = (iters - done).min(POOL as u64) as usize;
                let start = Instant::now();
                for (i, bytes) in encoded.iter().take(n).enumerate() {
                    black_box(admission.precheck(forwarders[i % forwarders.len()], bytes, T0 + 1).is_ok());
                }
                elapsed += start.elapsed();
                done += n as u64;
            }
            elapsed
        })
    });
    group.bench_function("full_admit", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                // A fresh pipeline per pass over the pool, so every envelope is new to it.
                let mut admission =
                    Admission::new(config.clone(), network, committee.clone(), GossipPolicy::Committee).expect("admission");
                let n = (iters - done).min(POOL as u64) as usize;
                let start = Instant::now();
                for (i, bytes) in encoded.iter().take(n).enumerate() {
                    let verdict = admission.admit(forwarders[i % forwarders.len()], bytes, T0 + 1);
                    debug_assert!(verdict.accepted().is_some());
                    black_box(verdict);
                }
                elapsed += start.elapsed();
                done += n as u64;
            }
            elapsed
        })
    });
    group.finish();
}

fn unlimited_budget() -> BudgetConfig {
    BudgetConfig {
        base_rate_per_s: 1e12,
        trusted_rate_per_s: 1e12,
        base_burst: 1e12,
        trusted_burst: 1e12,
        origin_base_rate_per_s: 1e12,
        origin_trusted_rate_per_s: 1e12,
        origin_base_burst: 1e12,
        origin_trusted_burst: 1e12,
        sync_base_rate_per_s: 1e12,
        sync_trusted_rate_per_s: 1e12,
        sync_base_burst: 1e12,
        sync_trusted_burst: 1e12,
    }
}

/// A cheap distinct id for message `n` (the guard does not hash headers itself).
fn synthetic_id(n: u64) -> MessageId {
    let mut out = [0u8; 32];
    let mut z = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for chunk in out.chunks_mut(8) {
        z = (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        chunk.copy_from_slice(&z.to_le_bytes());
    }
    MessageId(out)
}

fn header(n: u64, timestamp_ms: u64) -> Header {
    let mut origin = [0u8; 32];
    origin[0] = (n % 256) as u8;
    Header {
        version: 1,
        network: NetworkId([7; 32]),
        kind: Kind::Gossip,
        origin: PublicKey(origin),
        seq: n,
        timestamp_ms,
        body_len: 0,
        body_hash: Digest([0; 32]),
    }
}

/// Guard and reputation in a steady state of `live` ids: one message arrives every
/// `max_age / live` ms, so the window holds `live` of them.
struct Steady {
    guard: ReplayGuard,
    reputation: Reputation,
    forwarders: Vec<PublicKey>,
    next: u64,
    live: u64,
    max_age: u64,
}

impl Steady {
    fn new(live: u64) -> Self {
        let max_age = ReplayConfig::default().max_age_ms;
        let capacity = (live as usize * 11 / 10).max(1024);
        let guard = ReplayGuard::new(ReplayConfig { capacity, per_origin_capacity: capacity, ..ReplayConfig::default() })
            .expect("guard");
        let reputation =
            Reputation::new(ReputationConfig { budget: unlimited_budget(), ..ReputationConfig::default() }).expect("rep");
        let forwarders = (0..64u8).map(|i| PublicKey([i; 32])).collect();
        let mut steady = Steady { guard, reputation, forwarders, next: 0, live, max_age };
        for _ in 0..live + live / 10 {
            steady.step();
        }
        steady
    }

    fn now(&self) -> u64 {
        T0 + self.next * self.max_age / self.live
    }

    /// One message through the guard and reputation; true if fresh.
    fn step(&mut self) -> bool {
        let n = self.next;
        self.next += 1;
        let now = self.now();
        let id = synthetic_id(n);
        let header = header(n, now);
        let from = self.forwarders[(n % 64) as usize];
        self.guard.expire(now);
        if self.guard.check(&id, &header, now) != byzgossip_reputation::ReplayOutcome::Fresh {
            return false;
        }
        if self.reputation.status(&from, now) != byzgossip_reputation::PeerStatus::Ok || !self.reputation.allow(from, 1.0, now) {
            return false;
        }
        // (the signature would be verified here)
        if self.guard.insert(id, &header, now) != byzgossip_reputation::ReplayOutcome::Fresh {
            return false;
        }
        black_box(self.reputation.record(from, Event::FirstDelivery, now));
        true
    }
}

fn bench_guard_reputation(c: &mut Criterion) {
    let mut group = c.benchmark_group("guard_reputation");
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    for (name, live) in [("10k", 10_000u64), ("1M", 1_000_000u64)] {
        let mut steady = Steady::new(live);
        eprintln!(
            "guard_reputation/{name}: {} ids remembered, guard heap ~{:.1} MiB",
            steady.guard.len(),
            steady.guard.approx_heap_bytes() as f64 / (1 << 20) as f64
        );
        group.bench_with_input(BenchmarkId::from_parameter(name), &live, |b, _| b.iter(|| black_box(steady.step())));
        assert!(steady.guard.len() as u64 <= live + live / 10 + 1024);
    }
    group.finish();
}

criterion_group!(benches, bench_admission, bench_guard_reputation);
criterion_main!(benches);
