//! The libp2p side: the composed behaviour, topics, the swarm, and our checks of gossipsub's
//! parameters (DESIGN.md section 6).
//!
//! Gossipsub runs anonymous (`MessageAuthenticity::Anonymous`, `ValidationMode::Anonymous`):
//! authenticity comes from our envelopes, so gossipsub adds no signature of its own and never
//! verifies a copy. Every message waits for our admission (`validate_messages`).
//!
//! Gossipsub's message id is SHA-256 of the whole message bytes, not our header-only
//! `MessageId`. Gossipsub remembers ids *before* validation, so with a header-only id a
//! Byzantine peer racing a copy with the honest header and a tampered body or signature would
//! make every later honest copy look like a duplicate and be dropped. With a full-bytes id
//! the tampered copy is simply a different message; our own seen-set, keyed by `MessageId`,
//! records ids only after a valid signature and catches true replays.

use crate::sync::{PROTOCOL, SyncCodec};
use byzgossip_crypto::sha256_parts;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    Swarm, SwarmBuilder, allow_block_list, connection_limits, gossipsub, identify, identity, noise, ping,
    request_response, tcp, yamux,
};
use std::time::Duration;

pub use behaviour::{Behaviour, BehaviourEvent};

mod behaviour {
    #![allow(missing_docs)] // the derive generates an undocumented event enum
    use super::*;

/// The composed behaviour. Field order is the order events are polled.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Connection caps.
    pub limits: connection_limits::Behaviour,
    /// Peers we banned are refused and disconnected here.
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Gossip of envelopes.
    pub gossipsub: gossipsub::Behaviour,
    /// Anti-entropy sync.
    pub sync: request_response::Behaviour<SyncCodec>,
    /// Peer addresses and protocols.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
}
}

/// Topic names and the relay rule are the engine's: re-exported where they always were.
pub use byzgossip_engine::relay::{DIRECT_RELAYS, relays_direct};
pub use byzgossip_engine::topics::{MAX_TOPIC_LEN, Topics, check_topic_name};

/// Mesh parameters, checked by us (gossipsub's builder does not check the default topic's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeshParams {
    /// D: target mesh degree.
    pub mesh_n: usize,
    /// D_lo.
    pub mesh_n_low: usize,
    /// D_hi.
    pub mesh_n_high: usize,
    /// D_out.
    pub mesh_outbound_min: usize,
    /// D_lazy.
    pub gossip_lazy: usize,
}

impl MeshParams {
    /// Parameters for a network of `n` nodes, 4 to 200 and beyond: D is at most `n - 1` (a
    /// node cannot have more mesh peers than peers), at most 8, and at least 2.
    pub fn for_network(n: usize) -> MeshParams {
        let mesh_n = n.saturating_sub(1).clamp(2, 8);
        let mesh_n_low = (mesh_n * 2 / 3).max(1);
        let mesh_outbound_min = (mesh_n / 2).clamp(1, 2);
        MeshParams { mesh_n, mesh_n_low, mesh_n_high: mesh_n * 2, mesh_outbound_min, gossip_lazy: mesh_n }
    }

    /// The invariants gossipsub needs: `D_out <= D_lo <= D <= D_hi`, `2 D_out <= D`, `D >= 1`.
    pub fn validate(&self) -> Result<(), String> {
        let MeshParams { mesh_n, mesh_n_low, mesh_n_high, mesh_outbound_min, .. } = *self;
        if mesh_n == 0 {
            return Err("mesh_n must be positive".into());
        }
        if !(mesh_outbound_min <= mesh_n_low && mesh_n_low <= mesh_n && mesh_n <= mesh_n_high) {
            return Err(format!("mesh parameters must satisfy D_out <= D_lo <= D <= D_hi: {self:?}"));
        }
        if mesh_outbound_min * 2 > mesh_n {
            return Err(format!("mesh_outbound_min * 2 must be <= mesh_n: {self:?}"));
        }
        Ok(())
    }
}

/// Gossipsub's score thresholds. Our application score (P5, weight 1) ranges over
/// `byzgossip_reputation`'s scale, so a peer we graylist crosses `graylist_threshold` and one
/// we ban is far below it.
pub fn score_thresholds() -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 3.0,
    }
}

/// Broken IWANT promises (decaying) tolerated before gossipsub's behaviour penalty starts.
pub const BEHAVIOUR_PENALTY_THRESHOLD: f64 = 10.0;

/// Gossipsub peer-score parameters: application score at weight 1, IP colocation off (every
/// testnet node is on 127.0.0.1), behaviour penalty on.
pub fn score_params() -> gossipsub::PeerScoreParams {
    gossipsub::PeerScoreParams {
        app_specific_weight: 1.0,
        ip_colocation_factor_weight: 0.0,
        behaviour_penalty_weight: -1.0,
        behaviour_penalty_decay: 0.9,
        // Broken IWANT promises are penalised only beyond this many (decaying): under load an
        // honest peer answers late, and squaring the count graylisted whole committees.
        behaviour_penalty_threshold: BEHAVIOUR_PENALTY_THRESHOLD,
        // No penalty for being slow to consume what we send: it measures our own send queue,
        // so under local overload it marked every honest peer and gossipsub then dropped their
        // messages. Misbehaviour is scored by our own reputation layer (P5).
        slow_peer_weight: 0.0,
        ..Default::default()
    }
}

/// Largest control part (IHAVE, IWANT, IDONTWANT, GRAFT, PRUNE, subscriptions) of one RPC a
/// peer accepts: gossipsub's default, kept explicit so a stock peer and we agree. A received
/// RPC over it fails the whole inbound stream ("rpc control size exceeds max control message
/// size"), and every message behind it on that stream is lost.
pub const MAX_CONTROL_MESSAGE_SIZE: usize = 16 * 1024;

/// Bytes one message id takes in an IHAVE or IWANT: our ids are SHA-256 (32 bytes) plus a
/// protobuf tag and length byte.
const ID_WIRE_LEN: usize = 32 + 2;

/// Room kept for the topic name and framing of one control message (our longest topic is
/// `byzgossip/<16 hex>/gossip/<64 characters>`, under 100 bytes).
const CONTROL_OVERHEAD: usize = 256;

/// Most message ids we put in one IHAVE (and ask for in IWANTs per heartbeat), chosen so that
/// what we send always fits what a peer of ours accepts ([`MAX_CONTROL_MESSAGE_SIZE`]).
///
/// Gossipsub's default is 5,000 ids, about 170 KB with 32-byte ids, against a 16 KiB receive
/// limit: at n = 16 under load an IHAVE carried more than 480 ids, the receiver failed the
/// inbound stream, and every vote queued behind it on that stream was lost (the honest
/// broadcasts lost at n = 16) or the link stalled for good (the wedged links of long runs).
pub const MAX_IDS_PER_CONTROL: usize = (MAX_CONTROL_MESSAGE_SIZE - CONTROL_OVERHEAD) / ID_WIRE_LEN;

/// Bytes of one RPC beyond its message and control parts: the topic, protobuf tags and
/// lengths.
const RPC_FRAMING: usize = 1024;

/// Largest RPC we accept (gossipsub's `max_transmit_size`, checked against the whole encoded
/// RPC when reading): one message of up to `max_message_len` bytes plus a full control part
/// ([`MAX_CONTROL_MESSAGE_SIZE`]) riding along with it, plus framing. Gossipsub checks what it
/// publishes against the same number but counts only the message's data, so with the old
/// limit (`max_message_len + 1024`) a message near the limit with an IHAVE piggybacked came to
/// 263,361 bytes against a 263,168-byte limit: the receiver failed the whole inbound stream
/// and never read another message of that peer (in the `malformed` preset, the oversize
/// garbage blinded honest nodes to its sender, which they then could not convict). What we
/// publish ourselves is capped at `max_message_len` by the engine before gossipsub sees it.
pub fn max_rpc_len(max_message_len: usize) -> usize {
    max_message_len + MAX_CONTROL_MESSAGE_SIZE + RPC_FRAMING
}

/// The gossipsub config for a network of `n` nodes and messages up to `max_message_len`.
pub fn gossipsub_config(n: usize, max_message_len: usize) -> Result<gossipsub::Config, String> {
    let mesh = MeshParams::for_network(n);
    mesh.validate()?;
    gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(|message: &gossipsub::Message| {
            gossipsub::MessageId::from(sha256_parts(&[&message.data]).to_vec())
        })
        .mesh_n(mesh.mesh_n)
        .mesh_n_low(mesh.mesh_n_low)
        .mesh_n_high(mesh.mesh_n_high)
        .mesh_outbound_min(mesh.mesh_outbound_min)
        .gossip_lazy(mesh.gossip_lazy)
        .heartbeat_interval(Duration::from_millis(500))
        .max_transmit_size(max_rpc_len(max_message_len))
        .max_control_message_size(MAX_CONTROL_MESSAGE_SIZE)
        .max_control_messages_sent(MAX_IDS_PER_CONTROL)
        .duplicate_cache_time(Duration::from_secs(120))
        .flood_publish(true)
        .build()
        .map_err(|e| e.to_string())
}

/// Builds the swarm: TCP + Noise + Yamux and QUIC, DNS names in dialled addresses, with the
/// composed behaviour.
pub fn build_swarm(
    key: identity::Keypair,
    n: usize,
    max_message_len: usize,
    max_connections: u32,
    max_connections_per_peer: u32,
) -> Result<Swarm<Behaviour>, String> {
    let gossip_config = gossipsub_config(n, max_message_len)?;
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| e.to_string())?
        .with_quic()
        // Bootstrap addresses may name hosts (`/dns4/byzgossip-0.byzgossip.ns.svc.cluster.local/...`):
        // a StatefulSet's pods keep their DNS names across restarts, not their IPs. The resolver
        // reads /etc/resolv.conf once here and is asked only when dialling a `/dns*` address.
        .with_dns()
        .map_err(|e| format!("cannot set up DNS resolution from the system configuration (/etc/resolv.conf): {e}"))?
        .with_behaviour(|key| {
            let mut gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip_config)?;
            gossipsub.with_peer_score(score_params(), score_thresholds())?;
            let limits = connection_limits::ConnectionLimits::default()
                .with_max_established(Some(max_connections))
                .with_max_established_per_peer(Some(max_connections_per_peer))
                .with_max_pending_incoming(Some(64));
            let sync = request_response::Behaviour::with_codec(
                SyncCodec,
                [(PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(10))
                    .with_max_concurrent_streams(32),
            );
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                blocked: allow_block_list::Behaviour::default(),
                gossipsub,
                sync,
                identify: identify::Behaviour::new(identify::Config::new("/byzgossip/1".into(), key.public())),
                ping: ping::Behaviour::new(ping::Config::new()),
            })
        })
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    Ok(swarm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_params_are_valid_for_every_network_size() {
        for n in 1..=500 {
            let p = MeshParams::for_network(n);
            p.validate().unwrap_or_else(|e| panic!("n = {n}: {e}"));
            assert!(gossipsub_config(n, 1 << 20).is_ok(), "n = {n}");
            if n >= 3 {
                assert!(p.mesh_n < n, "n = {n}: D must be below the peer count");
            }
        }
        assert!(MeshParams { mesh_n: 4, mesh_n_low: 5, mesh_n_high: 8, mesh_outbound_min: 1, gossip_lazy: 4 }.validate().is_err());
        assert!(MeshParams { mesh_n: 4, mesh_n_low: 3, mesh_n_high: 8, mesh_outbound_min: 3, gossip_lazy: 4 }.validate().is_err());
    }

    /// Our application score must move a peer across gossipsub's thresholds: a graylisted
    /// peer stops receiving gossip, a banned one is graylisted by gossipsub too.
    #[test]
    fn app_scores_cross_gossipsub_thresholds() {
        use byzgossip_reputation::{Event, PeerStatus, Reputation, ReputationConfig};
        let thresholds = score_thresholds();
        let mut reputation = Reputation::new(ReputationConfig::default()).expect("config");
        let peer = byzgossip_crypto::PublicKey([9; 32]);
        let now = 1_000_000;
        assert!(reputation.app_score(&peer, now) > thresholds.gossip_threshold, "a newcomer must get gossip");
        let mut saw_graylist = false;
        for i in 0..10 {
            reputation.record(peer, Event::BadSignature, now + i);
            match reputation.status(&peer, now + i) {
                PeerStatus::Graylisted => {
                    saw_graylist = true;
                    assert!(reputation.app_score(&peer, now + i) <= thresholds.gossip_threshold);
                }
                PeerStatus::Banned { .. } => {
                    assert!(saw_graylist, "graylisting comes before a ban");
                    assert!(reputation.app_score(&peer, now + i) < thresholds.graylist_threshold);
                    return;
                }
                _ => {}
            }
        }
        panic!("ten bad signatures never led to a ban");
    }

    /// An IHAVE or IWANT at its id cap, on our longest topic, fits the control limit every
    /// peer of ours applies; gossipsub's default cap (5,000 ids) did not.
    #[test]
    fn control_messages_we_send_fit_what_peers_accept() {
        let topics = Topics::new(&byzgossip_crypto::NetworkId([7; 32]));
        let longest = topics.gossip(&"x".repeat(MAX_TOPIC_LEN));
        // protobuf: ControlIHave { topic (tag, len, bytes), ids (tag, len, 32 bytes) each },
        // inside ControlMessage inside the RPC (a tag and a varint length of up to 3 bytes each).
        let ihave = (1 + 2 + longest.len()) + MAX_IDS_PER_CONTROL * ID_WIRE_LEN + 2 * (1 + 3);
        assert!(ihave <= MAX_CONTROL_MESSAGE_SIZE, "{ihave} > {MAX_CONTROL_MESSAGE_SIZE}");
        assert!(5000 * ID_WIRE_LEN > MAX_CONTROL_MESSAGE_SIZE, "the default cap would not fit");
        let config = gossipsub_config(16, 1 << 20).expect("config");
        assert_eq!(config.max_control_messages_sent(), MAX_IDS_PER_CONTROL);
        assert_eq!(config.max_control_message_size(), MAX_CONTROL_MESSAGE_SIZE);
        assert!(MAX_IDS_PER_CONTROL >= 400, "enough ids for gossip repair: {MAX_IDS_PER_CONTROL}");
    }
}
