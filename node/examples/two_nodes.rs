//! Embedding byzgossip: two nodes in one program, one reliable broadcast and one gossip
//! message. A committee of two tolerates no Byzantine member (f = 0, since n >= 3f + 1);
//! with four keys the same program tolerates one.
//!
//! Run with `cargo run -p byzgossip-node --example two_nodes`.

use byzgossip_crypto::{Genesis, GossipPolicy, Keypair};
use byzgossip_node::{DeliveryEvent, NodeBuilder, NodeConfig, NodeHandle};
use futures::StreamExt;
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A committee of two fresh keys.
    let keys: Vec<Keypair> = (0..2).map(|_| Keypair::generate(&mut rand::rng())).collect();
    let genesis = Genesis {
        name: "embedded-example".into(),
        f: None,
        policy: GossipPolicy::Committee,
        members: keys.iter().map(Keypair::public).collect(),
        bootstrap: vec![],
    };

    // Start the nodes on 127.0.0.1 with OS-chosen ports; each dials those started before it.
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for key in &keys {
        let mut config = NodeConfig::new(genesis.clone(), key.clone());
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
        config.bootstrap = nodes.iter().flat_map(NodeHandle::listen_addrs).collect();
        config.topics = vec!["news".into()];
        nodes.push(NodeBuilder::new(config).spawn().await?);
    }
    let mut alice = Box::pin(nodes[0].deliveries(1));
    let mut bob = Box::pin(nodes[1].deliveries(1));
    tokio::time::sleep(Duration::from_millis(500)).await; // let the gossip mesh form

    let instance = nodes[0].broadcast(b"the agreed value".to_vec()).await?;
    println!("node 0 broadcast instance {instance:?}");
    nodes[1].publish("news", b"best-effort hello".to_vec()).await?;

    // Node 0 sees the broadcast and node 1's gossip; node 1 sees the broadcast (a node's own
    // gossip is not delivered back to it).
    for (name, stream, expected) in [("node 0", &mut alice, 2), ("node 1", &mut bob, 1)] {
        let mut seen = 0;
        while seen < expected {
            let event = tokio::time::timeout(Duration::from_secs(10), stream.next()).await?;
            match event {
                Some(DeliveryEvent::Bracha(d)) => {
                    println!("{name}: delivered {:?} = {:?}", d.instance, String::from_utf8_lossy(&d.value));
                    seen += 1;
                }
                Some(DeliveryEvent::Gossip(m)) => {
                    println!("{name}: gossip on {}: {:?}", m.topic, String::from_utf8_lossy(&m.payload));
                    seen += 1;
                }
                None => break,
            }
        }
    }
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}
