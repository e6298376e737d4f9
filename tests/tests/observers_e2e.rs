//! Certified delivery to observers with real nodes (issue #12 point 1): 4 members and 3
//! observers, one of them attached only to another observer. Every observer delivers every
//! broadcast on a certificate it verified (its store holds the certificate, which checks
//! against the committee here too); a forged certificate published by a stock gossipsub peer
//! (2f READYs, or one READY with a bad signature) is rejected, never delivered, and costs
//! that peer.

use byzgossip_bracha::{Certificate, InstanceId, Message};
use byzgossip_crypto::{Digest, Envelope, Keypair, Kind, NetworkId, codec};
use byzgossip_e2e::foreign::{drive_until, foreign_swarm};
use byzgossip_e2e::{Committee, bracha_deliveries, broadcast_many, eventually, init_logs, start, start_all};
use byzgossip_node::{NodeConfig, NodeHandle};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, gossipsub};
use rand::SeedableRng;
use std::time::Duration;

fn observer_config(committee: &Committee, key: Keypair) -> NodeConfig {
    let mut config = NodeConfig::new(committee.genesis.clone(), key);
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")];
    config.sync_interval = Duration::from_millis(300);
    config.tick_interval = Duration::from_millis(100);
    config
}

fn addrs(nodes: &[&NodeHandle]) -> Vec<Multiaddr> {
    nodes.iter().flat_map(|n| n.listen_addrs()).collect()
}

/// A Certified envelope signed by member 0 whose certificate proves nothing: `readys` READYs
/// for a value nobody broadcast, at a `seq` inside the observers' window of member 0 (beyond
/// it, an observer ignores the announcement without looking at it).
fn forged(committee: &Committee, readys: &[(usize, NetworkId)], seq: u64) -> Vec<u8> {
    let network = committee.genesis.network_id();
    let value = format!("forged {seq}").into_bytes();
    let digest = Digest::of(&value);
    let instance = InstanceId { origin: committee.keys[0].public(), seq };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    let readys = readys
        .iter()
        .map(|(i, net)| Message::Ready { instance, digest }.seal(&committee.keys[*i], *net, now).expect("seal"))
        .collect();
    let certificate = Certificate { instance, digest, readys };
    let body = byzgossip_node::observer::CertifiedBody { certificate: certificate.encode(), value };
    codec::encode_envelope(&Envelope::seal(&committee.keys[0], network, Kind::Certified, seq, now, body.encode()).expect("seal"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_deliver_every_broadcast_on_verified_certificates_and_reject_forgeries() {
    init_logs();
    let committee = Committee::new(4, 91);
    let members = start_all(&committee).await;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(92);
    let keys: Vec<Keypair> = (0..3).map(|_| Keypair::generate(&mut rng)).collect();
    // Observer A attached to members 0 and 1; B to members 2 and 3 and to A; C only to A.
    let a = start(observer_config(&committee, keys[0].clone()), &addrs(&[&members[0], &members[1]])).await;
    let b = start(observer_config(&committee, keys[1].clone()), &addrs(&[&members[2], &members[3], &a])).await;
    let c = start(observer_config(&committee, keys[2].clone()), &addrs(&[&a])).await;
    let observers = [&a, &b, &c];

    let mut sent: Vec<Vec<u8>> = broadcast_many(&members, &[0, 1, 2, 3], 8).await.into_iter().map(|(_, v)| v).collect();
    sent.sort();
    let network = committee.genesis.network_id();
    let genesis_committee = committee.genesis.committee().expect("committee");
    for (name, observer) in ["A", "B", "C"].iter().zip(observers) {
        let delivered = bracha_deliveries(observer, sent.len(), Duration::from_secs(30)).await;
        let mut values: Vec<Vec<u8>> = delivered.iter().map(|d| d.value.clone()).collect();
        values.sort();
        assert_eq!(values, sent, "observer {name} delivered every broadcast");
        let cursors: Vec<u64> = delivered.iter().map(|d| d.cursor).collect();
        assert_eq!(cursors, (1..=sent.len() as u64).collect::<Vec<_>>(), "observer {name}: dense cursors");
        for d in &delivered {
            let certificate = Certificate::decode(&d.certificate, codec::MAX_ENVELOPE_LEN).expect("certificate");
            assert_eq!(certificate.digest, Digest::of(&d.value));
            certificate.verify(&genesis_committee, &network).expect("a certificate that proves the delivery");
        }
    }
    // C reached the committee only through A.
    let c_peers = c.peers().await.expect("peers");
    assert!(
        c_peers.iter().filter(|p| p.connected).all(|p| p.member.is_none()),
        "observer C must not be connected to a member: {c_peers:?}"
    );

    // Forgeries from a stock gossipsub peer attached to A.
    let topic = gossipsub::IdentTopic::new(format!("byzgossip/{}/certified", &network.to_hex()[..16]));
    let mut foreign = foreign_swarm();
    foreign.behaviour_mut().subscribe(&topic).expect("subscribe");
    foreign.dial(a.listen_addrs()[0].clone()).expect("dial");
    let a_peer: PeerId = a.peer_id();
    let joined = drive_until(&mut foreign, Duration::from_secs(20), |e| {
        matches!(e, SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, topic: t }) if *peer_id == a_peer && *t == topic.hash())
    })
    .await;
    assert!(joined, "observer A never showed its certified subscription");
    let foreign_id = foreign.local_peer_id().to_string();
    let score = |peers: &[byzgossip_node::PeerInfo]| peers.iter().find(|p| p.peer_id == foreign_id).map(|p| p.reputation.score);
    let before = score(&a.peers().await.expect("peers")).unwrap_or(0.0);
    let other = NetworkId([0xee; 32]);
    let forgeries = [
        forged(&committee, &[(0, network), (1, network)], 20),
        forged(&committee, &[(0, network), (1, network), (2, other)], 21),
    ];
    for bytes in forgeries {
        foreign.behaviour_mut().publish(topic.clone(), bytes).expect("publish");
        let _ = drive_until(&mut foreign, Duration::from_millis(300), |_| false).await;
    }
    let penalised = eventually(Duration::from_secs(10), || async {
        score(&a.peers().await.expect("peers")).is_some_and(|s| s < before)
    })
    .await;
    assert!(penalised, "observer A did not penalise the peer that forwarded forged certificates");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (name, observer) in ["A", "B", "C"].iter().zip(observers) {
        let delivered = bracha_deliveries(observer, sent.len() + 1, Duration::from_millis(200)).await;
        assert_eq!(delivered.len(), sent.len(), "observer {name} delivered a forged value");
    }
    for node in members.into_iter().chain([a, b, c]) {
        node.shutdown().await;
    }
}
