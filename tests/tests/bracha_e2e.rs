//! Bracha reliable broadcast across real nodes on 127.0.0.1: agreement and totality at 4 and
//! 7 nodes, a late node and a healed partition catching up through sync.

use byzgossip_e2e::{Committee, assert_agreement, bracha_deliveries, broadcast_many, init_logs, start, start_all};
use futures::future::join_all;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

async fn hundred_values(n: usize, seed: u64) {
    init_logs();
    let committee = Committee::new(n, seed);
    let nodes = start_all(&committee).await;
    let origins: Vec<usize> = (0..n).collect();
    let sent = broadcast_many(&nodes, &origins, 100).await;
    let logs = join_all(nodes.iter().map(|node| bracha_deliveries(node, 100, DEADLINE))).await;
    assert_agreement(&logs, &sent);
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_deliver_100_values_with_agreement() {
    hundred_values(4, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_nodes_deliver_100_values_with_agreement() {
    hundred_values(7, 7).await;
}

/// n = 4, f = 1: three nodes deliver on their own; the fourth, started afterwards, gets every
/// value through sync (certificates), not through the votes it never saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_late_catches_up_through_sync() {
    init_logs();
    let committee = Committee::new(4, 11);
    let mut nodes = Vec::new();
    for i in 0..3 {
        let peers: Vec<_> = nodes.iter().flat_map(|n: &byzgossip_node::NodeHandle| n.listen_addrs()).collect();
        nodes.push(start(committee.config(i), &peers).await);
    }
    let sent = broadcast_many(&nodes, &[0, 1, 2], 20).await;
    let early = join_all(nodes.iter().map(|node| bracha_deliveries(node, 20, DEADLINE))).await;
    assert_agreement(&early, &sent);

    let peers: Vec<_> = nodes.iter().flat_map(|n| n.listen_addrs()).collect();
    let late = start(committee.config(3), &peers).await;
    let log = bracha_deliveries(&late, 20, DEADLINE).await;
    let mut all = early;
    all.push(log);
    assert_agreement(&all, &sent);
    nodes.push(late);
    for node in nodes {
        node.shutdown().await;
    }
}

/// n = 7, f = 2: nodes 5 and 6 are cut off; the five others still deliver (2f + 1 = 5); after
/// the partition heals, 5 and 6 end with every value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_of_two_heals_and_they_catch_up() {
    init_logs();
    let committee = Committee::new(7, 21);
    let nodes = start_all(&committee).await;
    let (majority, minority) = nodes.split_at(5);
    for a in majority {
        for b in minority {
            a.disconnect(b.peer_id(), true).await.expect("block");
            b.disconnect(a.peer_id(), true).await.expect("block");
        }
    }
    let sent = broadcast_many(majority, &[0, 1, 2, 3, 4], 30).await;
    let during = join_all(majority.iter().map(|node| bracha_deliveries(node, 30, DEADLINE))).await;
    assert_agreement(&during, &sent);
    // The cut-off nodes delivered nothing: they saw none of it.
    for node in minority {
        assert!(bracha_deliveries(node, 1, Duration::from_millis(200)).await.is_empty());
    }

    for a in majority {
        for b in minority {
            a.disconnect(b.peer_id(), false).await.expect("unblock");
            b.disconnect(a.peer_id(), false).await.expect("unblock");
        }
    }
    for b in minority {
        for addr in majority.iter().flat_map(|a| a.listen_addrs()) {
            let _ = b.dial(addr).await;
        }
    }
    let all = join_all(nodes.iter().map(|node| bracha_deliveries(node, 30, DEADLINE))).await;
    assert_agreement(&all, &sent);
    for node in nodes {
        node.shutdown().await;
    }
}
