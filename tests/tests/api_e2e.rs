//! The HTTP API of a running node, over a real socket on 127.0.0.1.

use byzgossip_e2e::{Committee, eventually, init_logs, start};
use byzgossip_node::NodeConfig;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// An HTTP answer: status, header lines (names lower-cased) and body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The JSON error body's `code`, checking that the answer is JSON `{"error", "code"}`
    /// with a message.
    fn error_code(&self) -> String {
        assert!(self.header("content-type").is_some_and(|t| t.starts_with("application/json")), "{:?}", self.headers);
        let body = self.body.trim();
        assert!(body.starts_with("{\"") && body.ends_with('}'), "not a JSON object: {body}");
        assert!(body.contains("\"error\":\"") && !body.contains("\"error\":\"\""), "no message: {body}");
        let code = body.split("\"code\":\"").nth(1).and_then(|rest| rest.split('"').next());
        code.unwrap_or_else(|| panic!("no code: {body}")).to_owned()
    }
}

/// A minimal HTTP/1.1 exchange (enough for our JSON endpoints), with extra header lines.
async fn http_with(addr: std::net::SocketAddr, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let head = format!("{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n", body.len());
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("read");
    parse_reply(&text)
}

fn parse_reply(text: &str) -> Reply {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply { status, headers, body: body.to_owned() }
}

/// A call without credentials.
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> Reply {
    http_with(addr, method, path, &[], body).await
}

/// A call with the node's bearer token.
async fn authed(addr: std::net::SocketAddr, config: &NodeConfig, method: &str, path: &str, body: &[u8]) -> Reply {
    let auth = format!("authorization: Bearer {}", config.api_token.as_str());
    http_with(addr, method, path, &[&auth], body).await
}

fn with_api(mut config: NodeConfig) -> NodeConfig {
    config.api_listen = Some("127.0.0.1:0".parse().expect("addr"));
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_status_broadcast_publish_deliveries_and_metrics() {
    init_logs();
    // n = 1, f = 0: a single member delivers its own broadcasts.
    let committee = Committee::new(1, 61);
    let config = with_api(committee.config(0));
    let node = start(config.clone(), &[]).await;
    let api = node.api_addr().expect("api");

    let r = http(api, "GET", "/status", b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(&node.public_key().to_hex()), "{}", r.body);

    let r = authed(api, &config, "POST", "/broadcast", b"via http").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"seq\":0"), "{}", r.body);

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

    let r = authed(api, &config, "POST", "/publish/bad%2Ftopic", b"x").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error_code(), "refused");
    let r = authed(api, &config, "POST", "/publish/news", b"x").await;
    assert_eq!(r.status, 200, "{}", r.body);

    let r = http(api, "GET", "/metrics", b"").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("byzgossip_bracha_deliveries_total 1"), "{}", r.body);
    assert!(r.body.contains("byzgossip_published_total"), "{}", r.body);
    node.shutdown().await;
}

/// Every call that changes something needs `Authorization: Bearer <token>`: without it or
/// with a wrong one, 401 with a JSON error and `WWW-Authenticate: Bearer`, and nothing
/// happens; reads need no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_calls_need_the_bearer_token_and_reads_stay_open() {
    init_logs();
    let committee = Committee::new(1, 63);
    let config = with_api(committee.config(0));
    let node = start(config.clone(), &[]).await;
    let api = node.api_addr().expect("api");
    let stranger = libp2p::PeerId::random();
    let mutating = [
        "/broadcast".to_owned(),
        "/publish/news".to_owned(),
        format!("/peers/{stranger}/block"),
        format!("/peers/{stranger}/unblock"),
    ];
    let wrong = format!("authorization: Bearer {}", byzgossip_node::api::ApiToken::generate().as_str());
    let basic = format!("authorization: Basic {}", config.api_token.as_str());
    for path in &mutating {
        for headers in [&[][..], &[wrong.as_str()][..], &[basic.as_str()][..]] {
            let r = http_with(api, "POST", path, headers, b"x").await;
            assert_eq!(r.status, 401, "{path} {headers:?}: {}", r.body);
            assert_eq!(r.error_code(), "unauthorized", "{path}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{path}");
        }
    }
    for path in ["/status", "/peers", "/metrics"] {
        let r = http(api, "GET", path, b"").await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    for path in &mutating {
        let r = authed(api, &config, "POST", path, b"x").await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        if path == "/broadcast" {
            // Seq 0: none of the refused calls reserved a seq.
            assert!(r.body.contains("\"seq\":0"), "{}", r.body);
        }
    }
    // The scheme is case-insensitive.
    let lower = format!("authorization: bearer {}", config.api_token.as_str());
    let r = http_with(api, "POST", "/broadcast", &[&lower], b"y").await;
    assert_eq!(r.status, 200, "{}", r.body);
    node.shutdown().await;
}

/// Backpressure is 429 with `Retry-After`, not a 400: a full Bracha window (one open
/// instance allowed, and the other members are not running, so it never completes) and a
/// publish rate over the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_answers_429_with_retry_after() {
    init_logs();
    let committee = Committee::new(4, 64);
    let mut config = with_api(committee.config(0));
    config.bracha.window = 1;
    // 0.9 x 2 = 1.8 tokens: one publish, then the budget is empty for minutes.
    config.admission.reputation.budget.origin_base_burst = 2.0;
    config.admission.reputation.budget.origin_base_rate_per_s = 0.001;
    let node = start(config.clone(), &[]).await;
    let api = node.api_addr().expect("api");

    let r = authed(api, &config, "POST", "/broadcast", b"first").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = authed(api, &config, "POST", "/broadcast", b"second").await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.error_code(), "busy");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.body.contains("still being delivered"), "{}", r.body);

    let r = authed(api, &config, "POST", "/publish/news", b"first").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = authed(api, &config, "POST", "/publish/news", b"second").await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.error_code(), "busy");
    assert_eq!(r.header("retry-after"), Some("1"));
    // The embedding API names it too.
    assert!(matches!(node.broadcast(b"third".to_vec()).await, Err(byzgossip_node::NodeError::Busy(_))));
    node.shutdown().await;
}

/// At most `api_max_subscribers` `/deliveries` streams: one more is 503 with `Retry-After`
/// and a JSON error; when a client goes, its slot is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_streams_are_capped_with_503_and_retry_after() {
    init_logs();
    let committee = Committee::new(1, 65);
    let mut config = with_api(committee.config(0));
    config.api_max_subscribers = 2;
    let node = start(config, &[]).await;
    let api = node.api_addr().expect("api");

    /// Opens an event stream and reads its head; the connection stays open while held.
    async fn subscribe(api: std::net::SocketAddr) -> (u16, BufReader<tokio::net::TcpStream>) {
        let mut stream = tokio::net::TcpStream::connect(api).await.expect("connect");
        stream.write_all(b"GET /deliveries HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line)).await.expect("in time").expect("read");
        (line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0), reader)
    }
    let (first, held_1) = subscribe(api).await;
    let (second, held_2) = subscribe(api).await;
    assert_eq!((first, second), (200, 200));

    let r = http(api, "GET", "/deliveries", b"").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.error_code(), "too_many_subscribers");
    assert_eq!(r.header("retry-after"), Some(byzgossip_node::api::SUBSCRIBERS_RETRY_AFTER_S.to_string().as_str()));
    // Other reads are not affected.
    assert_eq!(http(api, "GET", "/status", b"").await.status, 200);

    drop(held_1);
    let freed = eventually(Duration::from_secs(20), || async move {
        let (status, _stream) = subscribe(api).await;
        status == 200
    })
    .await;
    assert!(freed, "a closed stream never gave its slot back");
    drop(held_2);
    node.shutdown().await;
}

/// Every error, ours or axum's (unknown path, wrong method, malformed query), is
/// `{"error", "code"}` JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_with_a_code() {
    init_logs();
    let committee = Committee::new(1, 66);
    let config = with_api(committee.config(0));
    let node = start(config.clone(), &[]).await;
    let api = node.api_addr().expect("api");

    let r = http(api, "GET", "/no-such-thing", b"").await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"), "{}", r.body);
    let r = http(api, "GET", "/broadcast", b"").await;
    assert_eq!((r.status, r.error_code().as_str()), (405, "method_not_allowed"), "{}", r.body);
    assert!(r.header("allow").is_some_and(|a| a.contains("POST")), "{:?}", r.headers);
    let r = http(api, "GET", "/deliveries?cursor=abc", b"").await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "bad_request"), "{}", r.body);
    let r = authed(api, &config, "POST", "/peers/not-a-peer-id/block", b"").await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "bad_peer_id"), "{}", r.body);
    let r = authed(api, &config, "POST", &format!("/peers/{}/block", node.peer_id()), b"").await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "refused"), "{}", r.body);
    let r = http(api, "POST", "/broadcast", b"").await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "unauthorized"), "{}", r.body);
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
    let config = with_api(committee.config(0));
    let a = start(config.clone(), &b.listen_addrs()).await;
    let api = a.api_addr().expect("api");
    let connected = |node: &byzgossip_node::NodeHandle, want: usize| {
        let node = node.clone();
        async move { node.status().await.is_ok_and(|s| s.connected_peers == want) }
    };
    let deadline = Duration::from_secs(10);
    assert!(eventually(deadline, || connected(&a, 1)).await, "a and b never connected");

    let r = authed(api, &config, "POST", &format!("/peers/{}/block", b.peer_id()), b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"blocked\":true"), "{}", r.body);
    assert!(eventually(deadline, || connected(&a, 0)).await, "blocking did not drop the connection at a");
    assert!(eventually(deadline, || connected(&b, 0)).await, "blocking did not drop the connection at b");
    let r = authed(api, &config, "POST", &format!("/peers/{}/unblock", b.peer_id()), b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"blocked\":false"), "{}", r.body);
    assert!(eventually(deadline, || connected(&a, 1)).await, "unblocking did not let the peer back");
    assert!(eventually(deadline, || connected(&b, 1)).await, "b did not see the connection come back");

    // A malformed peer id and the node's own id are refused.
    let r = authed(api, &config, "POST", "/peers/not-a-peer-id/block", b"").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = authed(api, &config, "POST", &format!("/peers/{}/block", a.peer_id()), b"").await;
    assert_eq!(r.status, 400, "{}", r.body);
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
