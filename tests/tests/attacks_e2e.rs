//! A raw libp2p peer (our gossipsub settings, none of our admission) sends garbage bytes and
//! envelopes forged in an honest member's name: it is rejected and banned, the framed member
//! keeps its standing, and honest traffic goes on.

use byzgossip_crypto::codec::encode_raw;
use byzgossip_crypto::{Keypair, Kind, Signature};
use byzgossip_e2e::{Committee, assert_agreement, bracha_deliveries, broadcast_many, eventually, init_logs, start_all};
use byzgossip_node::network::{BehaviourEvent, Topics, build_swarm};
use byzgossip_reputation::PeerStatus;
use futures::StreamExt;
use futures::future::join_all;
use libp2p::gossipsub;
use libp2p::swarm::SwarmEvent;
use rand::{Rng, RngExt, SeedableRng};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_forgeries_get_the_sender_banned_while_honest_traffic_continues() {
    init_logs();
    let committee = Committee::new(4, 51);
    let nodes = start_all(&committee).await;
    let network = committee.genesis.network_id();

    let attacker_key = Keypair::from_secret_bytes(&[0xa7; 32]);
    let mut swarm = build_swarm(byzgossip_node::identity::libp2p_keypair(&attacker_key), 4, 1 << 20, 16, 2).expect("swarm");
    let topic = libp2p::gossipsub::IdentTopic::new(Topics::new(&network).bracha());
    swarm.behaviour_mut().gossipsub.subscribe(&topic).expect("subscribe");
    swarm.dial(nodes[0].listen_addrs()[0].clone()).expect("dial");

    let framed = committee.keys[1].public();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(51);
    let attack = async {
        // Wait until node 0 is subscribed to the topic, then send 40 bad messages.
        loop {
            if let SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { .. })) = swarm.select_next_some().await {
                break;
            }
        }
        // Send up to 40 bad messages; node 0 bans the sender and drops the connection long
        // before that, after which publishing has nowhere to go.
        let mut sent = 0u64;
        let mut disconnected = false;
        while sent < 40 && !disconnected {
            let bytes = if sent.is_multiple_of(2) {
                // Garbage of random length.
                let len = rng.random_range(1..400);
                (0..len).map(|_| rng.random()).collect::<Vec<u8>>()
            } else {
                // A well-formed envelope "from" member 1 with a made-up signature.
                let honest = byzgossip_crypto::Envelope::seal(&attacker_key, network, Kind::BrachaSend, sent, byzgossip_node::now_ms(), vec![sent as u8; 32])
                    .expect("seal");
                let mut header = *honest.header();
                header.origin = framed;
                let mut sig = [0u8; 64];
                rng.fill_bytes(&mut sig);
                encode_raw(&header, honest.body(), &Signature(sig))
            };
            let _ = swarm.behaviour_mut().gossipsub.publish(topic.clone(), bytes);
            sent += 1;
            // Keep driving the swarm between publishes.
            let _ = tokio::time::timeout(Duration::from_millis(20), async {
                loop {
                    if let SwarmEvent::ConnectionClosed { num_established: 0, .. } = swarm.select_next_some().await {
                        disconnected = true;
                        break;
                    }
                }
            })
            .await;
        }
        // Drive until node 0 drops the connection (the ban) or a deadline.
        if !disconnected {
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    if let SwarmEvent::ConnectionClosed { num_established: 0, .. } = swarm.select_next_some().await {
                        break;
                    }
                }
            })
            .await;
        }
        sent
    };
    let sent = tokio::time::timeout(Duration::from_secs(30), attack).await.expect("attack finished");
    assert!(sent < 40, "node 0 never dropped the attacker (sent all {sent} messages)");

    let banned = eventually(Duration::from_secs(10), || async {
        nodes[0].peers().await.expect("peers").iter().any(|p| {
            p.reputation.peer == attacker_key.public() && matches!(p.reputation.status, PeerStatus::Banned { .. })
        })
    })
    .await;
    assert!(banned, "the attacker was not banned by node 0");
    for peer in nodes[0].peers().await.expect("peers") {
        if peer.reputation.peer == framed {
            assert_eq!(peer.reputation.status, PeerStatus::Ok, "the framed member lost its standing");
            assert!(peer.reputation.score >= 0.0, "the framed member's score fell to {}", peer.reputation.score);
        }
    }

    // Honest traffic continues.
    let sent = broadcast_many(&nodes, &[0, 1, 2, 3], 12).await;
    let logs = join_all(nodes.iter().map(|node| bracha_deliveries(node, 12, Duration::from_secs(60)))).await;
    assert_agreement(&logs, &sent);
    for node in nodes {
        node.shutdown().await;
    }
}
