//! Deliveries per second of the full Bracha protocol in the virtual network, for n = 4, 16
//! and 64, with every envelope signed and verified and without signatures (zero signatures,
//! no verification), side by side in one run so the signature share is visible.
//!
//! One iteration = one instance broadcast by one member and delivered by all n members, all
//! on this one core; the reported throughput (elements/s) is member-deliveries per second,
//! i.e. what one core sustains per member. Messages and verifications per delivery are
//! printed before each group.

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use byzgossip_bracha::Config;
use byzgossip_bracha::sim::{Schedule, SimConfig, Strategy, VirtualNet};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;

fn network(n: usize, signatures: bool) -> VirtualNet {
    let mut config = SimConfig::new(n, Strategy::Silent, 7);
    config.byzantine = 0;
    config.schedule = Schedule::Random;
    config.signatures = signatures;
    config.honest_broadcasters = 0;
    config.bracha = Config { retention_ms: 1_000, ..Config::default() };
    VirtualNet::new(config).expect("network")
}

fn one_instance(net: &mut VirtualNet, round: &mut usize) {
    let n = net.config.n;
    let origin = *round % n;
    *round += 1;
    net.broadcast_from(origin, vec![origin as u8; 256]);
    net.drain().expect("settles");
    net.advance(0); // collection, as a node's timer would
}

fn bench(c: &mut Criterion) {
    for n in [4usize, 16, 64] {
        let mut group = c.benchmark_group(format!("rbc/n={n}"));
        group.throughput(Throughput::Elements(n as u64));
        group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
        for signatures in [true, false] {
            let mut net = network(n, signatures);
            let mut round = 0;
            // Counts for one instance.
            let before = net.counters;
            one_instance(&mut net, &mut round);
            let c = net.counters;
            let deliveries = (c.deliveries - before.deliveries) as f64;
            eprintln!(
                "n={n} signatures={signatures}: per member-delivery {:.1} messages, {:.1} verifications ({} messages, {} verifications per instance)",
                (c.messages - before.messages) as f64 / deliveries,
                (c.verifications - before.verifications) as f64 / deliveries,
                c.messages - before.messages,
                c.verifications - before.verifications,
            );
            let name = if signatures { "signed" } else { "unsigned" };
            group.bench_function(name, |b| b.iter(|| one_instance(&mut net, &mut round)));
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
