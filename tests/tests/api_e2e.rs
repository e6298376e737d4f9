//! The HTTP API of a running node, over a real socket on 127.0.0.1.

use byzgossip_e2e::{Committee, eventually, init_logs, start};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A minimal HTTP/1.1 exchange (enough for our JSON endpoints).
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!("{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write");
    let mut text = String::new();
    let mut reader = BufReader::new(stream);
    while reader.read_line(&mut text).await.expect("read") > 0 {}
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_status_broadcast_publish_deliveries_and_metrics() {
    init_logs();
    // n = 1, f = 0: a single member delivers its own broadcasts.
    let committee = Committee::new(1, 61);
    let mut config = committee.config(0);
    config.api_listen = Some("127.0.0.1:0".parse().expect("addr"));
    let node = start(config, &[]).await;
    let api = node.api_addr().expect("api");

    let (status, body) = http(api, "GET", "/status", b"").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&node.public_key().to_hex()), "{body}");

    let (status, body) = http(api, "POST", "/broadcast", b"via http").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"seq\":0"), "{body}");

    // The delivery arrives on the event stream, with the value in hex.
    let mut stream = tokio::net::TcpStream::connect(api).await.expect("connect");
    stream.write_all(b"GET /deliveries?cursor=1 HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let mut reader = BufReader::new(stream);
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await.expect("read") == 0 {
                return false;
            }
            if line.starts_with("data: ") && line.contains(&hex_of(b"via http")) {
                return true;
            }
        }
    })
    .await
    .expect("in time");
    assert!(found);

    let (status, body) = http(api, "POST", "/publish/bad%2Ftopic", b"x").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = http(api, "POST", "/publish/news", b"x").await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = http(api, "GET", "/metrics", b"").await;
    assert_eq!(status, 200);
    assert!(body.contains("byzgossip_bracha_deliveries_total 1"), "{body}");
    assert!(body.contains("byzgossip_published_total"), "{body}");
    node.shutdown().await;
}

/// An operator's block by hand: `POST /peers/{id}/block` drops the connection (both ends see
/// it go); `/unblock` lets the node's redialling of its bootstrap peer bring it back. Waits are bounded conditions on the nodes' status, never
/// fixed sleeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_block_drops_a_peer_and_unblock_lets_it_back() {
    init_logs();
    let committee = Committee::new(2, 62);
    let b = start(committee.config(1), &[]).await;
    // `a` has `b` as its bootstrap peer, so it redials `b` whenever the link drops.
    let mut config = committee.config(0);
    config.api_listen = Some("127.0.0.1:0".parse().expect("addr"));
    let a = start(config, &b.listen_addrs()).await;
    let api = a.api_addr().expect("api");
    let connected = |node: &byzgossip_node::NodeHandle, want: usize| {
        let node = node.clone();
        async move { node.status().await.is_ok_and(|s| s.connected_peers == want) }
    };
    let deadline = Duration::from_secs(10);
    assert!(eventually(deadline, || connected(&a, 1)).await, "a and b never connected");

    let (status, body) = http(api, "POST", &format!("/peers/{}/block", b.peer_id()), b"").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"blocked\":true"), "{body}");
    assert!(eventually(deadline, || connected(&a, 0)).await, "blocking did not drop the connection at a");
    assert!(eventually(deadline, || connected(&b, 0)).await, "blocking did not drop the connection at b");
    let (status, body) = http(api, "POST", &format!("/peers/{}/unblock", b.peer_id()), b"").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"blocked\":false"), "{body}");
    assert!(eventually(deadline, || connected(&a, 1)).await, "unblocking did not let the peer back");
    assert!(eventually(deadline, || connected(&b, 1)).await, "b did not see the connection come back");

    // A malformed peer id and the node's own id are refused.
    let (status, body) = http(api, "POST", "/peers/not-a-peer-id/block", b"").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = http(api, "POST", &format!("/peers/{}/block", a.peer_id()), b"").await;
    assert_eq!(status, 400, "{body}");
    // The bound on blocks by hand: MAX_OPERATOR_BLOCKS peers, then refused; blocking one
    // already blocked is still fine.
    let mut blocked = Vec::new();
    for _ in 0..byzgossip_node::MAX_OPERATOR_BLOCKS {
        let peer = libp2p::PeerId::random();
        a.disconnect(peer, true).await.expect("under the bound");
        blocked.push(peer);
    }
    assert!(matches!(a.disconnect(libp2p::PeerId::random(), true).await, Err(byzgossip_node::NodeError::Refused(_))));
    a.disconnect(blocked[0], true).await.expect("already blocked");
    a.disconnect(blocked[0], false).await.expect("unblock");
    a.disconnect(libp2p::PeerId::random(), true).await.expect("room again");
    a.shutdown().await;
    b.shutdown().await;
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
