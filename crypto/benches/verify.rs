//! Signature and envelope costs, side by side in one run so ratios can be read:
//! raw `verify_strict` (the baseline), sign, SHA-256, decode alone, full decode + verify at
//! 64 B / 1 KiB / 64 KiB bodies, and batch verification of 64 envelopes (reported per batch;
//! divide by 64 for the per-envelope cost).

use byzgossip_crypto::codec::{self, MAX_ENVELOPE_LEN};
use byzgossip_crypto::{Digest, Envelope, KeyCache, Keypair, Kind, NetworkId, verify_batch, verify_strict_with};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const NET: NetworkId = NetworkId([1; 32]);

fn envelope(seed: u8, len: usize) -> Envelope {
    let keypair = Keypair::from_secret_bytes(&[seed; 32]);
    Envelope::seal(&keypair, NET, Kind::Gossip, seed as u64, 1_700_000_000_000, vec![seed; len]).expect("seal")
}

fn baseline(c: &mut Criterion) {
    let keypair = Keypair::from_secret_bytes(&[9; 32]);
    let message = [7u8; 139];
    let signature = keypair.sign(&message);
    let key = keypair.public().to_verifying_key().expect("key");
    let mut group = c.benchmark_group("baseline");
    group.bench_function("ed25519_verify_strict", |b| {
        b.iter(|| verify_strict_with(&key, black_box(&message), black_box(&signature)))
    });
    group.bench_function("ed25519_sign", |b| b.iter(|| keypair.sign(black_box(&message))));
    group.bench_function("sha256_256B", |b| b.iter(|| Digest::of(black_box(&[5u8; 256]))));
    group.bench_function("key_decompress", |b| b.iter(|| keypair.public().to_verifying_key()));
    // The per-signature checks that make batch verification agree with verify_strict.
    let r = curve25519_dalek::edwards::CompressedEdwardsY(signature.as_bytes()[..32].try_into().expect("32"));
    let point = r.decompress().expect("point");
    group.bench_function("r_decompress", |b| b.iter(|| black_box(r).decompress()));
    group.bench_function("r_compress", |b| b.iter(|| black_box(point).compress()));
    group.bench_function("r_is_torsion_free", |b| b.iter(|| black_box(point).is_torsion_free()));
    group.finish();
}

fn envelope_paths(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope");
    for (name, len) in [("64B", 64usize), ("1KiB", 1024), ("64KiB", 65_536)] {
        let bytes = codec::encode_envelope(&envelope(3, len));
        let key = envelope(3, 0).origin().to_verifying_key().expect("key");
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("decode_{name}"), |b| {
            b.iter(|| codec::decode_envelope(black_box(&bytes), MAX_ENVELOPE_LEN))
        });
        group.bench_function(format!("decode_verify_{name}"), |b| {
            b.iter(|| {
                codec::decode_envelope(black_box(&bytes), MAX_ENVELOPE_LEN)
                    .expect("decode")
                    .verify_with_key(&NET, &key)
                    .expect("verify")
            })
        });
    }
    let e = envelope(3, 1024);
    group.bench_function("encode_1KiB", |b| b.iter(|| codec::encode_envelope(black_box(&e))));
    group.finish();
}

fn batch(c: &mut Criterion) {
    let envelopes: Vec<Envelope> = (0..64).map(|i| envelope(i, 1024)).collect();
    let mut keys = KeyCache::new(128);
    let mut group = c.benchmark_group("batch64");
    group.throughput(Throughput::Elements(64));
    group.bench_function("verify_batch_64x1KiB", |b| {
        b.iter_batched(
            || envelopes.clone(),
            |set| verify_batch(set, &NET, &mut keys),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("single_verify_64x1KiB", |b| {
        b.iter_batched(
            || envelopes.clone(),
            |set| {
                set.into_iter()
                    .map(|e| {
                        let key = keys.get(&e.origin()).expect("key").verifying;
                        e.verify_with_key(&NET, &key)
                    })
                    .collect::<Vec<_>>()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = baseline, envelope_paths, batch
}
}
criterion_main!(group::benches);
