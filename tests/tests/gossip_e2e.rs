//! Best-effort signed gossip across real nodes on 127.0.0.1.

use byzgossip_e2e::{Committee, init_logs, start_all};
use byzgossip_node::DeliveryEvent;
use futures::StreamExt;
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_reaches_every_subscribed_node() {
    init_logs();
    let committee = Committee::new(5, 31);
    let nodes = start_all(&committee).await;
    for node in &nodes {
        node.subscribe("chat").await.expect("subscribe");
    }
    let streams: Vec<_> = nodes.iter().map(|n| Box::pin(n.deliveries(1))).collect();
    // Let subscriptions propagate; messages published before a peer subscribed are caught
    // up by sync anyway.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut expected = HashSet::new();
    for (i, node) in nodes.iter().enumerate() {
        let payload = format!("hello from {i}").into_bytes();
        node.publish("chat", payload.clone()).await.expect("publish");
        expected.insert((node.public_key(), payload));
    }
    for (i, mut stream) in streams.into_iter().enumerate() {
        let mut got = HashSet::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), async {
            // Every node sees the others' messages (its own is not delivered back to it).
            while got.len() < expected.len() - 1 {
                if let Some(DeliveryEvent::Gossip(m)) = stream.next().await {
                    assert_eq!(m.topic, "chat");
                    got.insert((m.origin, m.payload));
                }
            }
        })
        .await;
        let missing: Vec<_> = expected.iter().filter(|e| !got.contains(*e) && e.0 != nodes[i].public_key()).collect();
        assert!(missing.is_empty(), "node {i} is missing {missing:?}");
        assert!(got.is_subset(&expected), "node {i} got a message nobody published");
    }
    for node in nodes {
        node.shutdown().await;
    }
}
