//! A node's data directory and listen address, end to end (issue #11, point 6): a data dir
//! belongs to one network and one key and refuses any other with an error naming both; a
//! node that lost its data dir recovers its next seq from the network and broadcasts again;
//! a p2p port in use is an error with its reason.

use byzgossip_e2e::{Committee, bracha_deliveries, init_logs, start};
use byzgossip_node::storage::StoreError;
use byzgossip_node::{NodeError, NodeHandle};
use byzgossip_reputation::PeerStatus;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

/// Starts member `i` of `committee` on `dir`, dialling `peers`. The database of a node that
/// was shut down is released when its last handle drops; an open that still finds it held
/// is retried for a while, any other outcome is returned.
async fn spawn_on(committee: &Committee, i: usize, dir: &std::path::Path, peers: &[libp2p::Multiaddr]) -> Result<NodeHandle, NodeError> {
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut config = committee.config(i);
        config.data_dir = Some(dir.to_owned());
        config.bootstrap = peers.to_vec();
        match byzgossip_node::NodeBuilder::new(config).spawn().await {
            Err(NodeError::Storage(StoreError::AlreadyOpen(_))) if tokio::time::Instant::now() < end => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_belongs_to_one_network_and_one_key() {
    init_logs();
    let ours = Committee::new(2, 71);
    let theirs = Committee::new(2, 72);
    let dir = tempfile::tempdir().expect("tempdir");
    let node = spawn_on(&ours, 0, dir.path(), &[]).await.expect("first start binds the dir");
    node.shutdown().await;
    drop(node);

    let stored_network = ours.genesis.network_id();
    let stored_key = ours.keys[0].public();
    // Another network, same position: refused, naming both networks and both keys.
    match spawn_on(&theirs, 0, dir.path(), &[]).await {
        Err(NodeError::Storage(e @ StoreError::BoundToOther { .. })) => {
            let text = e.to_string();
            for value in [stored_network.to_hex(), stored_key.to_hex(), theirs.genesis.network_id().to_hex(), theirs.keys[0].public().to_hex()] {
                assert!(text.contains(&value), "{text} does not name {value}");
            }
        }
        other => panic!("another network's node opened the dir: {:?}", other.map(|n| n.public_key())),
    }
    // The same network, another member's key: refused.
    match spawn_on(&ours, 1, dir.path(), &[]).await {
        Err(NodeError::Storage(StoreError::BoundToOther { stored, opened })) => {
            assert_eq!((stored.key, opened.key), (stored_key, ours.keys[1].public()));
            assert_eq!((stored.network, opened.network), (stored_network, stored_network));
        }
        other => panic!("another key opened the dir: {:?}", other.map(|n| n.public_key())),
    }
    // Its owner still can.
    let node = spawn_on(&ours, 0, dir.path(), &[]).await.expect("the owner reopens its dir");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p2p_port_in_use_is_an_error_with_its_reason() {
    init_logs();
    let committee = Committee::new(2, 73);
    let first = start(committee.config(0), &[]).await;
    let port = first
        .listen_addrs()
        .iter()
        .flat_map(|a| a.iter())
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a tcp port");
    let mut config = committee.config(1);
    config.listen = vec![format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr")];
    // libp2p listens with SO_REUSEPORT: without the check the second node would share the
    // port with the first and the kernel would split incoming connections between them.
    match byzgossip_node::NodeBuilder::new(config).spawn().await {
        Err(e @ NodeError::Listen { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&port.to_string()) && text.contains("in use"), "{text}");
        }
        other => panic!("a second node bound the port in use: {:?}", other.map(|n| n.listen_addrs())),
    }
    first.status().await.expect("the first node runs on");
    first.shutdown().await;
}

/// Broadcasts `value` from `node`, retrying while it answers busy (its window, or the wait
/// while it recovers its next seq); returns the seq.
async fn broadcast_retrying(node: &NodeHandle, value: &[u8]) -> u64 {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        match node.broadcast(value.to_vec()).await {
            Ok(instance) => return instance.seq,
            Err(NodeError::Busy(_)) if tokio::time::Instant::now() < end => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("broadcast failed: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_data_dir_recovers_its_next_seq_and_broadcasts_again() {
    init_logs();
    let committee = Committee::new(4, 74);
    let mut nodes = Vec::new();
    for i in 0..3 {
        let peers: Vec<_> = nodes.iter().flat_map(|n: &NodeHandle| n.listen_addrs()).collect();
        nodes.push(start(committee.config(i), &peers).await);
    }
    let peers: Vec<_> = nodes.iter().flat_map(|n| n.listen_addrs()).collect();
    let first_dir = tempfile::tempdir().expect("tempdir");
    let victim = spawn_on(&committee, 3, first_dir.path(), &peers).await.expect("victim starts");
    let victim_key = victim.public_key();
    for k in 0..5u64 {
        assert_eq!(broadcast_retrying(&victim, format!("old-{k}").as_bytes()).await, k);
    }
    let delivered = bracha_deliveries(&nodes[0], 5, DEADLINE).await;
    assert_eq!(delivered.len(), 5, "node 0 delivered the victim's first five");
    victim.shutdown().await;
    drop(victim);
    drop(first_dir);

    // The data dir is gone: a new, empty one.
    let second_dir = tempfile::tempdir().expect("tempdir");
    let restarted = tokio::time::Instant::now();
    let victim = spawn_on(&committee, 3, second_dir.path(), &peers).await.expect("victim restarts");
    let seq = broadcast_retrying(&victim, b"after the loss").await;
    let took = restarted.elapsed();
    eprintln!("recovered next seq {seq} {took:?} after the restart");
    assert_eq!(seq, 5, "the next seq after the five delivered ones");
    // From the peers' answers, not by the 10 s default timeout.
    assert!(took < Duration::from_secs(5), "{took:?}");
    let delivered = bracha_deliveries(&nodes[0], 6, DEADLINE).await;
    let last = delivered.iter().find(|d| d.instance.origin == victim_key && d.instance.seq == 5).expect("seq 5 delivered");
    assert_eq!(last.value, b"after the loss");
    // Nobody saw a second SEND for an old seq.
    for node in &nodes {
        for peer in node.peers().await.expect("peers") {
            if peer.reputation.peer == victim_key {
                assert!(
                    !matches!(peer.reputation.status, PeerStatus::Excluded { .. } | PeerStatus::Banned { .. }),
                    "the recovered node was punished: {:?}",
                    peer.reputation.status
                );
            }
        }
    }
    victim.shutdown().await;
    for node in nodes {
        node.shutdown().await;
    }
}

/// A minimal HTTP/1.1 POST with the bearer token: (status, head, body).
async fn post(addr: std::net::SocketAddr, token: &str, path: &str, body: &[u8]) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\nauthorization: Bearer {token}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("read");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// While a fresh member waits for its peers, a broadcast is backpressure (HTTP 429 with
/// `Retry-After`, `NodeError::Busy` in the embedding API), and the wait is bounded: with
/// every bootstrap peer unreachable, the node broadcasts from seq 0 once
/// `seq_recovery_timeout` has passed, and not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_member_whose_peers_never_answer_is_busy_until_its_recovery_timeout() {
    init_logs();
    let committee = Committee::new(4, 75);
    let mut config = committee.config(0);
    config.api_listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.seq_recovery_timeout = Duration::from_millis(1_500);
    // A bootstrap peer (member 1) where nothing listens: the node expects peers, none answers.
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = nobody.local_addr().expect("addr").port();
    drop(nobody);
    let member_1 = byzgossip_node::identity::peer_id(&committee.keys[1].public()).expect("peer id");
    let started = tokio::time::Instant::now();
    let node = start(config.clone(), &[format!("/ip4/127.0.0.1/tcp/{port}/p2p/{member_1}").parse().expect("addr")]).await;

    let (status, head, body) = post(node.api_addr().expect("api"), config.api_token.as_str(), "/broadcast", b"early").await;
    assert_eq!(status, 429, "{body}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(body.contains("\"code\":\"busy\"") && body.contains("recovering"), "{body}");
    assert!(matches!(node.broadcast(b"early".to_vec()).await, Err(NodeError::Busy(m)) if m.contains("recovering")));

    let seq = broadcast_retrying(&node, b"after the wait").await;
    let waited = started.elapsed();
    assert_eq!(seq, 0, "nobody knew of an earlier seq");
    assert!(waited >= Duration::from_millis(1_500), "broadcast taken after {waited:?}, before the timeout");
    assert!(waited < Duration::from_secs(15), "the wait is bounded: {waited:?}");
    node.shutdown().await;
}
