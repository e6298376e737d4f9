//! The HTTP API of a running node, over a real socket on 127.0.0.1.

use byzgossip_e2e::{Committee, init_logs, start};
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

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
