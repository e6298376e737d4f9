//! Bracha reliable broadcast across real nodes on 127.0.0.1.

use byzgossip_e2e::{Committee, bracha_deliveries, init_logs, start_all};
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_deliver_one_broadcast() {
    init_logs();
    let committee = Committee::new(4, 1);
    let nodes = start_all(&committee).await;
    let instance = nodes[0].broadcast(b"hello".to_vec()).await.expect("broadcast");
    for node in &nodes {
        let got = bracha_deliveries(node, 1, Duration::from_secs(20)).await;
        assert_eq!(got.len(), 1, "node {} delivered nothing", node.peer_id());
        assert_eq!(got[0].instance, instance);
        assert_eq!(got[0].value, b"hello");
    }
    let _: BTreeMap<u8, u8> = BTreeMap::new();
    for node in nodes {
        node.shutdown().await;
    }
}
