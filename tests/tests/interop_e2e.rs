//! A stock rust-libp2p gossipsub peer joins a byzgossip node (issue #14 point 5).
//!
//! The foreign peer below is built from libp2p alone (no byzgossip code in its swarm) with
//! gossipsub's defaults except what a foreign peer must set to speak to us (README, "A foreign
//! libp2p peer"): `MessageAuthenticity::Anonymous` and `ValidationMode::Anonymous`, because
//! byzgossip signs its envelopes and gossipsub carries them unsigned; a message id computed
//! from the content (the default id, source plus sequence number, is the same for every
//! anonymous message); and a `max_transmit_size` at least as large as the messages it wants. It subscribes to a node's gossip topic
//! (`byzgossip/<first 16 hex digits of the network id>/gossip/<topic>`), receives the
//! node's envelopes (also those other members published), then publishes junk: the node rejects every piece, bans the peer and
//! disconnects it, while the committee goes on delivering.

use byzgossip_crypto::codec;
use byzgossip_e2e::foreign::{drive_until, foreign_swarm};
use byzgossip_e2e::{Committee, bracha_deliveries, eventually, init_logs, start_all};
use byzgossip_reputation::PeerStatus;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, gossipsub};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_gossipsub_peer_receives_our_envelopes_and_is_banned_for_junk() {
    init_logs();
    let committee = Committee::new(4, 77);
    let nodes = start_all(&committee).await;
    for node in &nodes {
        node.subscribe("chat").await.expect("subscribe");
    }
    let network = committee.genesis.network_id();
    let topic = gossipsub::IdentTopic::new(format!("byzgossip/{}/gossip/chat", &network.to_hex()[..16]));

    let mut foreign = foreign_swarm();
    foreign.behaviour_mut().subscribe(&topic).expect("subscribe");
    let node0: Multiaddr = nodes[0].listen_addrs()[0].clone();
    foreign.dial(node0).expect("dial");
    let node0_peer: PeerId = nodes[0].peer_id();
    // Joined once node 0 is subscribed to the topic as seen from here.
    let joined = drive_until(&mut foreign, Duration::from_secs(20), |e| {
        matches!(e, SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, topic: t }) if *peer_id == node0_peer && *t == topic.hash())
    })
    .await;
    assert!(joined, "node 0 never showed its subscription to the foreign peer");

    // Node 0 publishes; the foreign peer receives the signed envelopes (in the mesh or by
    // flood publishing) and can check them with nothing but the wire format.
    let mut received = 0;
    for round in 0..20u32 {
        let payload = format!("hello {round}").into_bytes();
        nodes[0].publish("chat", payload).await.expect("publish");
        let _ = drive_until(&mut foreign, Duration::from_millis(250), |e| {
            if let SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) = e {
                let envelope = codec::decode_envelope(&message.data, codec::MAX_ENVELOPE_LEN).expect("a byzgossip envelope");
                assert_eq!(envelope.origin(), nodes[0].public_key());
                envelope.verify(&network).expect("signed by node 0");
                received += 1;
            }
            false
        })
        .await;
        if received >= 5 {
            break;
        }
    }
    assert!(received >= 5, "the foreign peer received {received} envelopes of node 0");

    // Messages the other members publish reach it through node 0 (a member with a subscriber
    // outside the committee forwards what it gets straight from a signer; before, 14 of 20).
    let mut wanted: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    for round in 0..12u32 {
        let payload = format!("from the others {round}").into_bytes();
        nodes[1 + round as usize % 3].publish("chat", payload.clone()).await.expect("publish");
        wanted.insert(payload);
    }
    let all = drive_until(&mut foreign, Duration::from_secs(10), |e| {
        if let SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) = e
            && let Ok(envelope) = codec::decode_envelope(&message.data, codec::MAX_ENVELOPE_LEN)
            && let Some(body) = byzgossip_node::gossip::GossipBody::decode(envelope.body(), codec::MAX_ENVELOPE_LEN)
        {
            wanted.remove(&body.payload);
        }
        wanted.is_empty()
    })
    .await;
    assert!(all, "{} of 12 messages published by nodes 1-3 never reached the foreign peer", wanted.len());

    // Junk from the foreign peer: rejected by admission, punished until banned; the ban
    // blocks the peer at the swarm and closes the connection.
    let foreign_id = foreign.local_peer_id().to_string();
    let mut closed = false;
    for i in 0..200u32 {
        let junk = format!("not an envelope {i}").into_bytes();
        let _ = foreign.behaviour_mut().publish(topic.clone(), junk);
        closed |= drive_until(&mut foreign, Duration::from_millis(20), |e| {
            matches!(e, SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } if *peer_id == node0_peer)
        })
        .await;
        if closed {
            break;
        }
    }
    let banned = eventually(Duration::from_secs(10), || async {
        nodes[0].peers().await.expect("peers").iter().any(|p| {
            p.peer_id == foreign_id && matches!(p.reputation.status, PeerStatus::Banned { .. }) && !p.connected
        })
    })
    .await;
    assert!(banned, "node 0 did not ban and drop the junk-publishing peer");

    // The committee is untouched: a broadcast is delivered at every member.
    nodes[1].broadcast(b"after the junk".to_vec()).await.expect("broadcast");
    for (i, node) in nodes.iter().enumerate() {
        let delivered = bracha_deliveries(node, 1, Duration::from_secs(20)).await;
        assert!(delivered.iter().any(|d| d.value == b"after the junk"), "node {i} did not deliver");
    }
    for node in nodes {
        node.shutdown().await;
    }
}
