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
