//! The node's HTTP API as the process runtime reads it: typed mirrors of exactly what
//! `byzgossip_node::api` serialises, and a small client. Every field is required: a field the
//! node leaves out, misspells or gives the wrong type is an error ([`CallError::Protocol`]),
//! never a default such as `"ok"`, `0` or the local clock. Optional values (`member`) must
//! be present as `null` to mean "none". Structs without a flattened part also refuse fields
//! they do not know, so a field the node adds breaks the round-trip test here rather than
//! being ignored. `PeerInfo` flattens the reputation crate's [`PeerSnapshot`] (serde cannot
//! refuse unknown fields through a flatten), so it checks presence and types only.
//!
//! The node's own types are reused where they can be read back: [`PublicKey`], [`Digest`],
//! [`MessageId`], [`InstanceId`], [`PeerSnapshot`] and its tagged [`PeerStatus`](byzgossip_reputation::PeerStatus). The rest
//! (`Status`, `PeerInfo`, the delivery-stream events, the answers of the POSTs) only
//! serialise in the node and are mirrored here; the tests parse a real node's JSON with them,
//! so a rename in the node fails a test.
//!
//! # Bounds
//! Every call has a timeout ([`CALL_TIMEOUT`]); bodies quoted in errors are cut to
//! [`QUOTE_LEN`] characters.

use crate::harness::CALL_TIMEOUT;
use byzgossip_bracha::InstanceId;
use byzgossip_crypto::{Digest, MessageId, PublicKey};
use byzgossip_reputation::PeerSnapshot;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;

/// Longest piece of a body quoted in an error.
pub const QUOTE_LEN: usize = 200;

/// Why a call to a node's API gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// the call did not complete (refused connection, timeout, cut stream)
    #[error("transport: {0}")]
    Transport(String),
    /// the node answered with an error status and a well-formed error body
    #[error("HTTP {status} {code}: {message}")]
    Refused {
        /// the HTTP status
        status: u16,
        /// the error's machine-readable code
        code: String,
        /// the error's message
        message: String,
    },
    /// the node answered something the API does not promise: a missing, unknown or malformed
    /// field, a body that is not JSON, or an answer about something else than was asked
    #[error("protocol: {0}")]
    Protocol(String),
}

/// `GET /status`: `byzgossip_node::Status`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// This node's key.
    pub public_key: PublicKey,
    /// libp2p id.
    pub peer_id: String,
    /// Committee index (`null` if not a member).
    #[serde(deserialize_with = "present")]
    pub member: Option<usize>,
    /// Network id (genesis digest, hex).
    pub network: String,
    /// Committee size.
    pub n: usize,
    /// Fault bound.
    pub f: usize,
    /// Addresses the node listens on.
    pub listen: Vec<String>,
    /// Open connections.
    pub connected_peers: usize,
    /// Last delivery cursor.
    pub last_cursor: u64,
    /// Bracha instances open now.
    pub open_instances: usize,
    /// Messages waiting for verification.
    pub validation_queue: usize,
    /// Members reachable (this node if a member, plus connected members not suspected).
    pub members_reachable: usize,
    /// Members a broadcast needs (2f+1).
    pub members_needed: usize,
    /// Whether enough members are reachable for a broadcast to complete.
    pub progress_possible: bool,
    /// Instances seen more than 10 s ago and not delivered.
    pub stalled_instances: usize,
}

/// One element of `GET /peers`: `byzgossip_node::PeerInfo`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct PeerInfo {
    /// libp2p id.
    pub peer_id: String,
    /// Reputation state (score, trust, status), flattened into the object.
    #[serde(flatten)]
    pub reputation: PeerSnapshot,
    /// Whether a connection is open now.
    pub connected: bool,
    /// Committee index (`null` if not a member).
    #[serde(deserialize_with = "present")]
    pub member: Option<usize>,
    /// The last successful ping round trip (ms; `null` before one).
    #[serde(deserialize_with = "present")]
    pub ping_rtt_ms: Option<u64>,
    /// Pings failed since the last success or message.
    pub ping_failures: u32,
    /// Whether the peer is suspected (3 failed pings in a row).
    pub suspected: bool,
}

/// One `data:` line of `GET /deliveries`: `byzgossip_node::DeliveryEvent`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeliveryEvent {
    /// A reliable-broadcast delivery.
    Bracha(Delivered),
    /// A gossip message on a subscribed topic.
    Gossip(GossipMessage),
}

/// `byzgossip_engine::Delivered`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivered {
    /// Position in the node's delivery log.
    pub cursor: u64,
    /// Which broadcast.
    pub instance: InstanceId,
    /// The delivered value (hex in JSON).
    #[serde(deserialize_with = "hex_bytes")]
    pub value: Vec<u8>,
    /// SHA-256 of the value.
    pub digest: Digest,
    /// The encoded delivery certificate (hex in JSON).
    #[serde(deserialize_with = "hex_bytes")]
    pub certificate: Vec<u8>,
    /// When the node delivered it (ms since the Unix epoch).
    pub delivered_at_ms: u64,
}

/// `byzgossip_engine::GossipMessage`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GossipMessage {
    /// The topic named in the signed body.
    pub topic: String,
    /// The signer.
    pub origin: PublicKey,
    /// The signer's sequence number.
    pub seq: u64,
    /// The signer's timestamp (ms).
    pub timestamp_ms: u64,
    /// The message id.
    pub id: MessageId,
    /// The application bytes (hex in JSON).
    #[serde(deserialize_with = "hex_bytes")]
    pub payload: Vec<u8>,
}

/// The answer of `POST /broadcast`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Broadcast {
    /// The broadcasting node's key.
    pub origin: PublicKey,
    /// The broadcast's sequence number.
    pub seq: u64,
}

/// The answer of `POST /publish/{topic}`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    /// The message id.
    pub id: MessageId,
}

/// The answer of `POST /peers/{id}/block` and `/unblock`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blocked {
    /// The peer, as the node parsed it.
    pub peer_id: String,
    /// Whether it is blocked now.
    pub blocked: bool,
}

/// Every error answer's body.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorBody {
    error: String,
    code: String,
}

/// An `Option` field that must be present (as `null` for none). serde's derive reads a
/// missing `Option` field as `None`; with `deserialize_with` a missing field is an error.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

fn hex_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    hex::decode(&text).map_err(serde::de::Error::custom)
}

fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(QUOTE_LEN) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.into_owned(),
    }
}

/// Parses `body` as `T`, failing closed: what `path` answered is quoted in the error.
pub fn parse<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, CallError> {
    serde_json::from_slice(body).map_err(|e| CallError::Protocol(format!("{path}: {e} in {}", quote(body))))
}

/// One line of the `/deliveries` event stream: `None` for the lines that carry no event
/// (blank separators, `:` keep-alive comments), the parsed event for a `data:` line, and a
/// protocol error for anything else (a field this client does not know, or bad JSON).
pub fn parse_stream_line(line: &[u8]) -> Option<Result<DeliveryEvent, CallError>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() || line.starts_with(b":") {
        return None;
    }
    Some(match line.strip_prefix(b"data:") {
        // SSE: one optional space after the colon.
        Some(data) => parse("/deliveries", data.strip_prefix(b" ").unwrap_or(data)),
        None => Err(CallError::Protocol(format!("/deliveries: not an SSE data line: {}", quote(line)))),
    })
}

/// A node's HTTP API. The `reqwest::Client` carries the bearer token (a default header).
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    addr: SocketAddr,
}

impl Client {
    /// The API at `addr`, called through `http`.
    pub fn new(http: reqwest::Client, addr: SocketAddr) -> Client {
        Client { http, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends `request`, then reads a success as `T` and an error status as
    /// [`CallError::Refused`] (a body that is not an error body is a protocol error).
    async fn call<T: DeserializeOwned>(&self, path: &str, request: reqwest::RequestBuilder) -> Result<T, CallError> {
        let transport = |e: reqwest::Error| CallError::Transport(format!("{path}: {e}"));
        let response = request.timeout(CALL_TIMEOUT).send().await.map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            return parse(path, &body);
        }
        let ErrorBody { error, code } = parse(&format!("{path} (HTTP {status})"), &body)?;
        Err(CallError::Refused { status: status.as_u16(), code, message: error })
    }

    /// `GET /status`.
    pub async fn status(&self) -> Result<Status, CallError> {
        self.call("/status", self.http.get(self.url("/status"))).await
    }

    /// `GET /peers`.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, CallError> {
        self.call("/peers", self.http.get(self.url("/peers"))).await
    }

    /// `POST /broadcast` of `value`; an answer naming another origin than `origin` (this
    /// node's key) is a protocol error.
    pub async fn broadcast(&self, origin: &PublicKey, value: Vec<u8>) -> Result<Broadcast, CallError> {
        let answer: Broadcast = self.call("/broadcast", self.http.post(self.url("/broadcast")).body(value)).await?;
        if answer.origin != *origin {
            return Err(CallError::Protocol(format!("/broadcast: answered for origin {}, not {}", answer.origin.to_hex(), origin.to_hex())));
        }
        Ok(answer)
    }

    /// `POST /publish/{topic}` of `payload`.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<Published, CallError> {
        let path = format!("/publish/{topic}");
        self.call(&path, self.http.post(self.url(&path)).body(payload)).await
    }

    /// `POST /peers/{peer}/block` (or `/unblock`); an answer about another peer or another
    /// state is a protocol error.
    pub async fn set_blocked(&self, peer: &libp2p::PeerId, block: bool) -> Result<Blocked, CallError> {
        let path = format!("/peers/{peer}/{}", if block { "block" } else { "unblock" });
        let answer: Blocked = self.call(&path, self.http.post(self.url(&path))).await?;
        if answer.peer_id != peer.to_string() || answer.blocked != block {
            return Err(CallError::Protocol(format!("{path}: answered {answer:?}")));
        }
        Ok(answer)
    }

    /// `GET /metrics` (Prometheus text).
    pub async fn metrics(&self) -> Result<String, CallError> {
        let transport = |e: reqwest::Error| CallError::Transport(format!("/metrics: {e}"));
        let response = self.http.get(self.url("/metrics")).timeout(CALL_TIMEOUT).send().await.map_err(transport)?;
        let response = response.error_for_status().map_err(transport)?;
        response.text().await.map_err(transport)
    }

    /// Opens `GET /deliveries?cursor=N` (no timeout: the stream lives as long as the node);
    /// read it line by line with [`parse_stream_line`].
    pub async fn deliveries(&self, cursor: u64) -> Result<reqwest::Response, CallError> {
        let path = format!("/deliveries?cursor={cursor}");
        let response = self.http.get(self.url(&path)).send().await.map_err(|e| CallError::Transport(format!("{path}: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.map_err(|e| CallError::Transport(format!("{path}: {e}")))?;
        let ErrorBody { error, code } = parse(&format!("{path} (HTTP {status})"), &body)?;
        Err(CallError::Refused { status: status.as_u16(), code, message: error })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzgossip_crypto::{Genesis, GossipPolicy, Keypair};
    use byzgossip_reputation::PeerStatus;
    use rand::SeedableRng;
    use serde_json::{Value, json};

    fn key(seed: u64) -> PublicKey {
        Keypair::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(seed)).public()
    }

    fn snapshot(status: PeerStatus) -> PeerSnapshot {
        PeerSnapshot {
            peer: key(2),
            score: -1.5,
            trust: 0.25,
            app_score: -3.0,
            status,
            bans: 1,
            penalties: 7,
            rewards: 3,
            first_seen_ms: 1_700_000_000_000,
        }
    }

    /// The node's own types, serialised as the API serialises them, parse back into the
    /// mirrors with every value intact.
    #[test]
    fn the_nodes_types_round_trip_through_the_mirrors() {
        let status = byzgossip_node::Status {
            public_key: key(1),
            peer_id: "12D3KooW".into(),
            member: Some(3),
            network: "ab".repeat(32),
            n: 7,
            f: 2,
            listen: vec!["/ip4/127.0.0.1/tcp/1".into()],
            connected_peers: 6,
            last_cursor: 42,
            open_instances: 1,
            validation_queue: 0,
            members_reachable: 4,
            members_needed: 5,
            progress_possible: false,
            stalled_instances: 3,
        };
        let back: Status = parse("/status", &serde_json::to_vec(&status).expect("json")).expect("parses");
        assert_eq!((back.public_key, back.member, back.n, back.f), (status.public_key, status.member, 7, 2));
        assert_eq!((back.members_reachable, back.members_needed, back.progress_possible, back.stalled_instances), (4, 5, false, 3));
        assert_eq!((back.connected_peers, back.last_cursor, back.listen), (6, 42, status.listen.clone()));

        let statuses = [
            PeerStatus::Ok,
            PeerStatus::Graylisted,
            PeerStatus::Banned { until_ms: 99 },
            PeerStatus::Excluded { evidence: Digest::of(b"evidence") },
        ];
        for s in statuses {
            let info = byzgossip_node::PeerInfo {
                peer_id: "12D3KooX".into(),
                reputation: snapshot(s),
                connected: true,
                member: None,
                ping_rtt_ms: Some(7),
                ping_failures: 1,
                suspected: false,
            };
            let back: PeerInfo = parse("/peers", &serde_json::to_vec(&vec![info.clone()]).expect("json"))
                .map(|mut v: Vec<PeerInfo>| v.remove(0))
                .expect("parses");
            assert_eq!(back.reputation, info.reputation);
            assert_eq!((back.peer_id, back.connected, back.member), (info.peer_id, true, None));
            assert_eq!((back.ping_rtt_ms, back.ping_failures, back.suspected), (Some(7), 1, false));
        }

        let instance = InstanceId { origin: key(1), seq: 5 };
        let delivered = byzgossip_node::Delivered {
            cursor: 9,
            instance,
            value: b"value".to_vec(),
            digest: Digest::of(b"value"),
            certificate: vec![1, 2, 3],
            delivered_at_ms: 1234,
        };
        let line = format!("data: {}\n", serde_json::to_string(&byzgossip_node::DeliveryEvent::Bracha(delivered.clone())).expect("json"));
        let Some(Ok(DeliveryEvent::Bracha(back))) = parse_stream_line(line.as_bytes()) else { panic!("{line}") };
        assert_eq!((back.cursor, back.instance, back.value, back.digest), (9, instance, delivered.value, delivered.digest));
        assert_eq!((back.certificate, back.delivered_at_ms), (vec![1, 2, 3], 1234));

        let gossip = byzgossip_node::GossipMessage {
            topic: "load".into(),
            origin: key(3),
            seq: 4,
            timestamp_ms: 77,
            id: MessageId([7; 32]),
            payload: vec![0xff, 0],
        };
        let line = format!("data:{}", serde_json::to_string(&byzgossip_node::DeliveryEvent::Gossip(gossip.clone())).expect("json"));
        let Some(Ok(DeliveryEvent::Gossip(back))) = parse_stream_line(line.as_bytes()) else { panic!("{line}") };
        assert_eq!((back.topic, back.origin, back.seq, back.timestamp_ms), (gossip.topic, gossip.origin, 4, 77));
        assert_eq!((back.id, back.payload), (gossip.id, gossip.payload));
    }

    /// A missing field, a renamed one, a wrong type, an unknown status or event type, and an
    /// absent `member` are errors, never a default.
    #[test]
    fn missing_or_malformed_fields_fail_closed() {
        let info = byzgossip_node::PeerInfo {
            peer_id: "12D3KooX".into(),
            reputation: snapshot(PeerStatus::Ok),
            connected: true,
            member: Some(1),
            ping_rtt_ms: None,
            ping_failures: 0,
            suspected: false,
        };
        let good = serde_json::to_value(&info).expect("json");
        assert!(serde_json::from_value::<PeerInfo>(good.clone()).is_ok());
        let broken = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut v = good.clone();
            f(v.as_object_mut().expect("object"));
            parse::<PeerInfo>("/peers", &serde_json::to_vec(&v).expect("json"))
        };
        for field in ["status", "score", "peer", "member", "connected", "first_seen_ms", "ping_rtt_ms", "suspected"] {
            let r = broken(&|o| {
                o.remove(field);
            });
            assert!(matches!(&r, Err(CallError::Protocol(m)) if m.contains(field)), "without {field}: {r:?}");
        }
        // The old reader's fallbacks: a bare status string, an unknown status, a string score.
        assert!(broken(&|o| drop(o.insert("status".into(), json!("ok")))).is_err());
        assert!(broken(&|o| drop(o.insert("status".into(), json!({"status": "suspicious"})))).is_err());
        assert!(broken(&|o| drop(o.insert("score".into(), json!("1.0")))).is_err());
        assert!(broken(&|o| drop(o.insert("status".into(), json!({"status": "banned"})))).is_err(), "until_ms required");

        // Delivery events: no delivered_at_ms, no cursor, an unknown type, an unknown field.
        let event = json!({"type": "bracha", "cursor": 1, "instance": {"origin": key(1), "seq": 0},
            "value": "00", "digest": Digest::of(b"x"), "certificate": "", "delivered_at_ms": 5});
        let line = |v: &Value| format!("data: {v}");
        assert!(matches!(parse_stream_line(line(&event).as_bytes()), Some(Ok(DeliveryEvent::Bracha(_)))));
        for field in ["delivered_at_ms", "cursor", "instance", "digest"] {
            let mut v = event.clone();
            v.as_object_mut().expect("object").remove(field);
            let r = parse_stream_line(line(&v).as_bytes());
            assert!(matches!(&r, Some(Err(CallError::Protocol(m))) if m.contains(field)), "without {field}: {r:?}");
        }
        let mut v = event.clone();
        v["type"] = json!("telemetry");
        assert!(matches!(parse_stream_line(line(&v).as_bytes()), Some(Err(CallError::Protocol(_)))));
        let mut v = event.clone();
        v["extra"] = json!(1);
        assert!(matches!(parse_stream_line(line(&v).as_bytes()), Some(Err(CallError::Protocol(_)))));
        let mut v = event;
        v["value"] = json!("not hex");
        assert!(matches!(parse_stream_line(line(&v).as_bytes()), Some(Err(CallError::Protocol(_)))));
        assert!(matches!(parse_stream_line(b"data: not json"), Some(Err(CallError::Protocol(_)))));
        assert!(matches!(parse_stream_line(b"event: x"), Some(Err(CallError::Protocol(_)))));
        assert!(parse_stream_line(b": keep-alive\n").is_none() && parse_stream_line(b"\r\n").is_none());

        // Answers: a broadcast without seq, a publish without id, a status without member.
        assert!(parse::<Broadcast>("/broadcast", format!(r#"{{"origin":"{}"}}"#, key(1).to_hex()).as_bytes()).is_err());
        assert!(parse::<Published>("/publish/x", b"{}").is_err());
        let mut status = serde_json::to_value(byzgossip_node::Status {
            public_key: key(1),
            peer_id: "p".into(),
            member: None,
            network: "n".into(),
            n: 1,
            f: 0,
            listen: vec![],
            connected_peers: 0,
            last_cursor: 0,
            open_instances: 0,
            validation_queue: 0,
            members_reachable: 1,
            members_needed: 1,
            progress_possible: true,
            stalled_instances: 0,
        })
        .expect("json");
        assert!(serde_json::from_value::<Status>(status.clone()).is_ok());
        status.as_object_mut().expect("object").remove("member");
        assert!(serde_json::from_value::<Status>(status).is_err());
    }

    /// A real node's API, over a socket: status, broadcast, publish, the event stream, a block
    /// and its error answers all parse with the mirrors; a second member gives `/peers` a row.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_real_nodes_api_parses_with_the_mirrors() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(77);
        let keys: Vec<Keypair> = (0..2).map(|_| Keypair::generate(&mut rng)).collect();
        // f = 0: each member delivers its own broadcast alone.
        let genesis = Genesis {
            name: "api-mirror".into(),
            f: Some(0),
            policy: GossipPolicy::Committee,
            members: keys.iter().map(Keypair::public).collect(),
            bootstrap: vec![],
        };
        let config = |k: &Keypair, bootstrap: Vec<libp2p::Multiaddr>| {
            let mut c = byzgossip_node::NodeConfig::new(genesis.clone(), k.clone());
            c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")];
            c.api_listen = Some("127.0.0.1:0".parse().expect("addr"));
            c.bootstrap = bootstrap;
            c.use_genesis_bootstrap = false;
            c
        };
        let a_config = config(&keys[0], vec![]);
        let a = byzgossip_node::NodeBuilder::new(a_config.clone()).spawn().await.expect("a starts");
        let b = byzgossip_node::NodeBuilder::new(config(&keys[1], a.listen_addrs())).spawn().await.expect("b starts");
        let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", a_config.api_token.as_str())).expect("header");
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .default_headers(reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, auth)]))
            .build()
            .expect("client");
        let api = Client::new(http, a.api_addr().expect("api"));

        let status = api.status().await.expect("status");
        assert_eq!((status.public_key, status.member, status.n, status.f), (keys[0].public(), Some(0), 2, 0));
        let answer = api.broadcast(&keys[0].public(), b"typed".to_vec()).await.expect("broadcast");
        assert_eq!(answer.seq, 0);
        assert!(matches!(api.broadcast(&keys[1].public(), b"x".to_vec()).await, Err(CallError::Protocol(_))), "another origin");
        api.publish(crate::adversary::LOAD_TOPIC, b"gossip".to_vec()).await.expect("publish");
        let refused = api.publish("bad%2Ftopic", b"x".to_vec()).await;
        assert!(matches!(&refused, Err(CallError::Refused { status: 400, code, .. }) if code == "refused"), "{refused:?}");
        let blocked = api.set_blocked(&libp2p::PeerId::random(), true).await.expect("block");
        assert!(blocked.blocked);

        // The delivery arrives on the stream, typed.
        let mut stream = futures::StreamExt::boxed(api.deliveries(1).await.expect("stream").bytes_stream());
        let delivered = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            let mut buffer = Vec::new();
            while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
                buffer.extend_from_slice(&chunk.expect("chunk"));
                while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=pos).collect();
                    // Seq 0 ("typed") and seq 1 ("x", the broadcast refused client-side
                    // above) are independent instances and may be delivered in either order.
                    if let Some(event) = parse_stream_line(&line)
                        && let DeliveryEvent::Bracha(d) = event.expect("well-formed event")
                        && d.instance.seq == 0
                    {
                        return d;
                    }
                }
            }
            panic!("stream ended");
        })
        .await
        .expect("in time");
        assert_eq!((delivered.instance.seq, delivered.value.as_slice()), (0, &b"typed"[..]));
        assert!((1..=2).contains(&delivered.cursor), "cursor {}", delivered.cursor);

        // b connects: /peers has b, typed.
        let peers = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                let peers = api.peers().await.expect("peers");
                if peers.iter().any(|p| p.reputation.peer == keys[1].public()) {
                    return peers;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("b shows up");
        let row = peers.iter().find(|p| p.reputation.peer == keys[1].public()).expect("row");
        assert_eq!(row.member, Some(1));
        b.shutdown().await;
        a.shutdown().await;
    }
}
