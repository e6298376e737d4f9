//! Open gossip that reaches every listener, with real nodes (issue #12 point 2): under the
//! `open` policy, 4 members and 4 observers: C attached only to observer A, D only to member
//! 3 (which is not a designated relay of member 0's messages). A member, an observer next to
//! the committee and the observer two hops out each publish; every other node, member or
//! observer, receives every message exactly once, whatever node it is attached to. The
//! observers' sync rounds are a minute apart, so what they receive here came by push: the
//! relay rule, not sync, must get it to them.

use byzgossip_crypto::{GossipPolicy, Keypair, MessageId};
use byzgossip_e2e::{Committee, eventually, init_logs, start};
use byzgossip_node::{DeliveryEvent, NodeConfig, NodeHandle};
use futures::StreamExt;
use libp2p::Multiaddr;
use rand::SeedableRng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOPIC: &str = "chat";

fn with_topic(mut config: NodeConfig) -> NodeConfig {
    config.topics = vec![TOPIC.to_owned()];
    config
}

fn addrs(nodes: &[&NodeHandle]) -> Vec<Multiaddr> {
    nodes.iter().flat_map(|n| n.listen_addrs()).collect()
}

/// Counts, per message id, how often `node` handed it to the application.
fn collect(node: &NodeHandle) -> (Arc<Mutex<HashMap<MessageId, usize>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let stream = node.deliveries(u64::MAX);
    let sink = seen.clone();
    let task = tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        while let Some(event) = stream.next().await {
            if let DeliveryEvent::Gossip(m) = event
                && let Ok(mut seen) = sink.lock()
            {
                *seen.entry(m.id).or_insert(0) += 1;
            }
        }
    });
    (seen, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_open_policy_every_member_and_observer_receives_what_anyone_publishes() {
    init_logs();
    let mut committee = Committee::new(4, 101);
    committee.genesis.policy = GossipPolicy::Open;
    let mut members: Vec<NodeHandle> = Vec::new();
    for i in 0..4 {
        let peers = addrs(&members.iter().collect::<Vec<_>>());
        members.push(start(with_topic(committee.config(i)), &peers).await);
    }
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(102);
    let keys: Vec<Keypair> = (0..4).map(|_| Keypair::generate(&mut rng)).collect();
    let observer = |key: &Keypair| {
        let mut config = with_topic(NodeConfig::new(committee.genesis.clone(), key.clone()));
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")];
        config.sync_interval = Duration::from_secs(60);
        config.tick_interval = Duration::from_millis(100);
        config
    };
    // A attached to members 0 and 1; B to members 2 and 3 and to A; C only to A; D only to
    // member 3.
    let a = start(observer(&keys[0]), &addrs(&[&members[0], &members[1]])).await;
    let b = start(observer(&keys[1]), &addrs(&[&members[2], &members[3], &a])).await;
    let c = start(observer(&keys[2]), &addrs(&[&a])).await;
    let d = start(observer(&keys[3]), &addrs(&[&members[3]])).await;
    let nodes: Vec<&NodeHandle> = members.iter().chain([&a, &b, &c, &d]).collect();
    let names = ["member 0", "member 1", "member 2", "member 3", "observer A", "observer B", "observer C", "observer D"];
    let collectors: Vec<_> = nodes.iter().map(|n| collect(n)).collect();

    let linked = |node: &NodeHandle, to: &NodeHandle| {
        let (node, to) = (node.clone(), to.peer_id().to_string());
        async move { node.peers().await.expect("peers").iter().any(|p| p.connected && p.peer_id == to) }
    };
    let connected = eventually(Duration::from_secs(20), || async { linked(&c, &a).await && linked(&d, &members[3]).await }).await;
    assert!(
        connected,
        "observers C and D never connected to A and member 3: C sees {:?}, D sees {:?}",
        c.peers().await.expect("peers"),
        d.peers().await.expect("peers")
    );
    // Gossipsub learns the peers' subscriptions when they connect; give the meshes a
    // heartbeat (500 ms) to form before publishing.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Publishers: member 0, observer B (next to the committee), observer C (two hops out).
    let mut published: Vec<(usize, MessageId)> = Vec::new();
    for round in 0..5u8 {
        for publisher in [0usize, 5, 6] {
            let id = nodes[publisher].publish(TOPIC, vec![publisher as u8, round]).await.expect("publish under the open policy");
            published.push((publisher, id));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let missing = |i: usize| -> Vec<usize> {
        let seen = collectors[i].0.lock().expect("lock");
        published.iter().filter(|(p, id)| *p != i && !seen.contains_key(id)).map(|(p, _)| *p).collect()
    };
    eventually(Duration::from_secs(20), || async { (0..nodes.len()).all(|i| missing(i).is_empty()) }).await;
    for (i, (seen, _)) in collectors.iter().enumerate() {
        assert_eq!(missing(i), Vec::<usize>::new(), "{} misses messages of these publishers", names[i]);
        let seen = seen.lock().expect("lock");
        assert!(seen.values().all(|&n| n == 1), "{} received a message twice: {seen:?}", names[i]);
    }
    // C reached everyone only through A, D only through member 3.
    let c_peers = c.peers().await.expect("peers");
    assert!(
        c_peers.iter().filter(|p| p.connected).all(|p| p.member.is_none()),
        "observer C must not be connected to a member: {c_peers:?}"
    );
    let d_peers = d.peers().await.expect("peers");
    assert!(
        d_peers.iter().filter(|p| p.connected).all(|p| p.member == Some(3) || p.member.is_none() && p.peer_id != a.peer_id().to_string()),
        "observer D must be attached to member 3 only: {d_peers:?}"
    );
    for (_, task) in collectors {
        task.abort();
    }
    for node in nodes {
        node.shutdown().await;
    }
}
