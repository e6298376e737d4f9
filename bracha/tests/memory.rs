//! Memory stays bounded whatever one member sends (DESIGN.md section 5: bounded memory).

use byzgossip_bracha::message::sim_frame_unsigned;
use byzgossip_bracha::{Bracha, Config, FaultKind, InstanceId, Message};
use byzgossip_crypto::{Committee, Digest, Keypair, NetworkId};

/// A Byzantine member floods a million future instances (its own SENDs and votes on another
/// origin's seqs): the window admits `window` instances per origin, every other message is a
/// fault and stored nowhere, and the state stays under `Config::memory_bound`.
#[test]
fn a_million_future_instances_leave_state_under_the_bound() {
    const FLOOD: u64 = 1_000_000;
    let n = 4;
    let keys: Vec<Keypair> = (0..n).map(|i| Keypair::from_secret_bytes(&[i as u8 + 1; 32])).collect();
    let committee = Committee::new(keys.iter().map(Keypair::public).collect(), 1).expect("committee");
    let network = NetworkId([1; 32]);
    let config = Config { window: 16, max_value_len: 1024, ..Config::default() };
    let mut node = Bracha::new(committee, keys[0].clone(), network, config.clone()).expect("node");
    node.sim_set_unsigned(true);

    let flooder = 3;
    let honest_origin = keys[1].public();
    let value = vec![0xAB; 16];
    let mut beyond = 0u64;
    for seq in 0..FLOOD {
        let message = if seq % 2 == 0 {
            Message::Send { instance: InstanceId { origin: keys[flooder].public(), seq }, value: value.clone() }
        } else {
            Message::Echo { instance: InstanceId { origin: honest_origin, seq }, digest: Digest::of(&seq.to_be_bytes()) }
        };
        let envelope = sim_frame_unsigned(network, keys[flooder].public(), &message, seq);
        let step = node.handle_unverified(&envelope, seq);
        for fault in &step.faults {
            assert_eq!(fault.member, keys[flooder].public(), "only the flooder is blamed");
            assert!(matches!(fault.kind, FaultKind::BeyondWindow { .. }), "{fault:?}");
            beyond += 1;
        }
        if seq % 100_000 == 0 {
            let _ = node.tick(seq);
        }
    }
    let stats = node.stats();
    let bound = config.memory_bound(n);
    eprintln!("after {FLOOD} messages: {stats:?}, bound {bound} bytes");
    assert!(stats.open_instances <= 2 * config.window as usize, "{stats:?}");
    assert_eq!(beyond, FLOOD - stats.open_instances as u64);
    assert!(stats.bytes <= bound, "{} > {bound}", stats.bytes);
    assert_eq!(node.open_instances().count(), stats.open_instances);
}
