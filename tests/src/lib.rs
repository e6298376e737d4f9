//! Helpers for end-to-end tests: a cluster of real nodes on 127.0.0.1 with OS-chosen ports,
//! and bounded waits (every wait has a deadline, so no test hangs).

use byzgossip_crypto::{Genesis, GossipPolicy, Keypair};
use byzgossip_node::{DeliveryEvent, NodeBuilder, NodeConfig, NodeHandle};
use futures::StreamExt;
use rand::SeedableRng;
use std::time::Duration;

/// A committee's keys and genesis, made from a seed.
pub struct Committee {
    /// Member keys in committee order.
    pub keys: Vec<Keypair>,
    /// The genesis.
    pub genesis: Genesis,
}

impl Committee {
    /// `n` members with default f, keys from `seed`.
    pub fn new(n: usize, seed: u64) -> Committee {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let keys: Vec<Keypair> = (0..n).map(|_| Keypair::generate(&mut rng)).collect();
        let genesis = Genesis {
            name: format!("e2e-{seed}"),
            f: None,
            policy: GossipPolicy::Committee,
            members: keys.iter().map(Keypair::public).collect(),
            bootstrap: vec![],
        };
        Committee { keys, genesis }
    }

    /// A node config for member `i` listening on 127.0.0.1 TCP only.
    pub fn config(&self, i: usize) -> NodeConfig {
        let mut config = NodeConfig::new(self.genesis.clone(), self.keys[i].clone());
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")];
        config.sync_interval = Duration::from_millis(300);
        config.tick_interval = Duration::from_millis(100);
        config
    }
}

/// Starts member `i` and dials every address in `peers`.
pub async fn start(config: NodeConfig, peers: &[libp2p::Multiaddr]) -> NodeHandle {
    let mut config = config;
    config.bootstrap = peers.to_vec();
    NodeBuilder::new(config).spawn().await.expect("node starts")
}

/// Starts all members of `committee`, each dialling those started before it.
pub async fn start_all(committee: &Committee) -> Vec<NodeHandle> {
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for i in 0..committee.keys.len() {
        let peers: Vec<_> = nodes.iter().flat_map(|n| n.listen_addrs()).collect();
        nodes.push(start(committee.config(i), &peers).await);
    }
    nodes
}

/// Waits until `node` yields `count` Bracha deliveries (from cursor 1), or the deadline.
pub async fn bracha_deliveries(node: &NodeHandle, count: usize, deadline: Duration) -> Vec<byzgossip_node::Delivered> {
    let stream = node.deliveries(1).filter_map(|e| async move {
        match e {
            DeliveryEvent::Bracha(d) => Some(d),
            DeliveryEvent::Gossip(_) => None,
        }
    });
    let mut out = Vec::new();
    let mut stream = Box::pin(stream);
    let _ = tokio::time::timeout(deadline, async {
        while out.len() < count {
            match stream.next().await {
                Some(d) => out.push(d),
                None => break,
            }
        }
    })
    .await;
    out
}

/// Polls `check` every 50 ms until it is true or `deadline` passes; returns whether it held.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Logs to stderr when `RUST_LOG` is set.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
}

/// Broadcasts `count` values round-robin from `origins`, retrying while an origin's window
/// is full; returns (origin index, value) in order. Values are `"<origin>-<i>"`.
pub async fn broadcast_many(nodes: &[NodeHandle], origins: &[usize], count: usize) -> Vec<(usize, Vec<u8>)> {
    let mut sent = Vec::new();
    for i in 0..count {
        let origin = origins[i % origins.len()];
        let value = format!("{origin}-{i}").into_bytes();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match nodes[origin].broadcast(value.clone()).await {
                Ok(_) => break,
                Err(byzgossip_node::NodeError::Busy(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("broadcast from {origin} failed: {e}"),
            }
        }
        sent.push((origin, value));
    }
    sent
}

/// Checks agreement and completeness: every node delivered exactly the values in `sent`
/// (as a multiset per instance), and for every instance all nodes hold the same value.
pub fn assert_agreement(logs: &[Vec<byzgossip_node::Delivered>], sent: &[(usize, Vec<u8>)]) {
    use std::collections::BTreeMap;
    let mut by_instance: BTreeMap<(byzgossip_crypto::PublicKey, u64), Vec<u8>> = BTreeMap::new();
    for (node, log) in logs.iter().enumerate() {
        let mut seen = std::collections::HashSet::new();
        for d in log {
            let key = (d.instance.origin, d.instance.seq);
            assert!(seen.insert(key), "node {node} delivered {key:?} twice");
            match by_instance.get(&key) {
                Some(value) => assert_eq!(value, &d.value, "agreement broken for {key:?} at node {node}"),
                None => {
                    by_instance.insert(key, d.value.clone());
                }
            }
        }
        assert_eq!(log.len(), sent.len(), "node {node} delivered {} of {}", log.len(), sent.len());
    }
    let mut delivered: Vec<Vec<u8>> = by_instance.into_values().collect();
    let mut expected: Vec<Vec<u8>> = sent.iter().map(|(_, v)| v.clone()).collect();
    delivered.sort();
    expected.sort();
    assert_eq!(delivered, expected, "delivered values are not the broadcast ones");
}

/// A stock rust-libp2p gossipsub peer (no byzgossip code in its swarm), for tests of what a
/// foreign peer can do (README, "A foreign libp2p peer").
pub mod foreign {
    use futures::StreamExt;
    use libp2p::swarm::SwarmEvent;
    use libp2p::{Swarm, SwarmBuilder, gossipsub, identity, noise, tcp, yamux};
    use std::time::Duration;

    /// The foreign peer: TCP, Noise, Yamux and a default gossipsub apart from anonymity.
    pub fn foreign_swarm() -> Swarm<gossipsub::Behaviour> {
        let config = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Anonymous)
            // Anonymous messages carry no source and no sequence number, so gossipsub's default
            // id (source + seqno) is the same for all of them: every message after the first
            // would be dropped as a duplicate (measured: 1 of 20 received). Any content hash works.
            .message_id_fn(|message: &gossipsub::Message| {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                message.data.hash(&mut hasher);
                message.topic.hash(&mut hasher);
                gossipsub::MessageId::from(hasher.finish().to_be_bytes().to_vec())
            })
            .max_transmit_size(1 << 20)
            .build()
            .expect("gossipsub config");
        SwarmBuilder::with_existing_identity(identity::Keypair::generate_ed25519())
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .expect("tcp")
            .with_behaviour(|_| gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config).expect("gossipsub"))
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build()
    }

    /// Drives `swarm` until `done` says so or `deadline` passes; returns whether `done` held.
    pub async fn drive_until(
        swarm: &mut Swarm<gossipsub::Behaviour>,
        deadline: Duration,
        mut done: impl FnMut(&SwarmEvent<gossipsub::Event>) -> bool,
    ) -> bool {
        tokio::time::timeout(deadline, async {
            loop {
                let event = swarm.select_next_some().await;
                if done(&event) {
                    return;
                }
            }
        })
        .await
        .is_ok()
    }
}
