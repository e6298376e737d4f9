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
use byzgossip_crypto::{NetworkId, sha256_parts};
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

/// Gossipsub topic names for one network.
#[derive(Clone, Debug)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Topics of the network `network` (its id is part of every name, so two testnets on one
    /// machine never mix).
    pub fn new(network: &NetworkId) -> Self {
        Self { prefix: format!("byzgossip/{}", &network.to_hex()[..16]) }
    }

    /// The Bracha topic (SEND, ECHO, READY, evidence).
    pub fn bracha(&self) -> gossipsub::IdentTopic {
        gossipsub::IdentTopic::new(format!("{}/bracha", self.prefix))
    }

    /// The topic of an application gossip topic.
    pub fn gossip(&self, topic: &str) -> gossipsub::IdentTopic {
        gossipsub::IdentTopic::new(format!("{}/gossip/{topic}", self.prefix))
    }

    /// The application topic name of a gossipsub topic hash, if it is one of ours.
    pub fn app_topic<'a>(&self, hash: &'a str) -> Option<&'a str> {
        hash.strip_prefix(&self.prefix)?.strip_prefix("/gossip/")
    }
}

/// Longest application topic name.
pub const MAX_TOPIC_LEN: usize = 64;

/// Topic names: 1 to 64 characters of `[A-Za-z0-9._-]`.
pub fn check_topic_name(topic: &str) -> Result<(), String> {
    let ok = !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && topic.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok { Ok(()) } else { Err(format!("topic {topic:?} must be 1-{MAX_TOPIC_LEN} characters of A-Z a-z 0-9 . _ -")) }
}

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

/// How many committee members forward a message that reached them straight from its signer.
///
/// Every member publishes its own messages to all its peers at once (`flood_publish`), and
/// committee members keep a connection to each other, so almost every copy gossipsub would
/// forward from the signer's direct recipients is a duplicate: at n = 16 we counted about 89
/// transmissions per message, 97% of them duplicates, and the send path (Noise, Yamux, a
/// syscall and a hash per copy) cost more CPU than the signature checks. So a message that
/// arrives straight from its signer is forwarded only by the signer's next
/// `DIRECT_RELAYS` members in committee order (a repair path for links that are down);
/// everyone else answers gossipsub `Ignore` after processing it. Messages that arrive
/// through a relay are forwarded as usual, and sync covers what relays miss.
pub const DIRECT_RELAYS: usize = 2;

/// Whether member `me` forwards a message it received straight from member `signer` in a
/// committee of `n`: it is one of the `DIRECT_RELAYS` members after `signer`, cyclically.
/// Indices outside the committee relay as usual.
pub fn relays_direct(n: usize, signer: usize, me: usize) -> bool {
    if signer >= n || me >= n {
        return true;
    }
    let distance = (me + n - signer) % n;
    (1..=DIRECT_RELAYS).contains(&distance)
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
        .max_transmit_size(max_message_len + 1024)
        .duplicate_cache_time(Duration::from_secs(120))
        .flood_publish(true)
        .build()
        .map_err(|e| e.to_string())
}

/// Builds the swarm: TCP + Noise + Yamux and QUIC, with the composed behaviour.
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

    /// Each signer's direct messages are relayed by exactly `DIRECT_RELAYS` other members
    /// (all of them in smaller committees), never by the signer, and relay duty is spread
    /// evenly: every member relays for the same number of signers.
    #[test]
    fn direct_relays_are_the_next_members() {
        for n in 1..=64usize {
            let mut duty = vec![0usize; n];
            for signer in 0..n {
                let relays: Vec<usize> = (0..n).filter(|&me| relays_direct(n, signer, me)).collect();
                assert_eq!(relays.len(), DIRECT_RELAYS.min(n - 1), "n = {n}, signer = {signer}");
                assert!(!relays.contains(&signer));
                for me in relays {
                    duty[me] += 1;
                }
            }
            assert!(duty.iter().all(|&d| d == DIRECT_RELAYS.min(n - 1)), "n = {n}: {duty:?}");
        }
        assert!(relays_direct(4, 9, 1), "a non-member signer's messages are relayed as usual");
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

    #[test]
    fn topic_names_are_checked_and_mapped_back() {
        let topics = Topics::new(&NetworkId([1; 32]));
        assert!(check_topic_name("chat.v1").is_ok());
        assert!(check_topic_name("").is_err());
        assert!(check_topic_name("a/b").is_err());
        assert!(check_topic_name(&"x".repeat(65)).is_err());
        let hash = topics.gossip("chat").hash();
        assert_eq!(topics.app_topic(hash.as_str()), Some("chat"));
        assert_eq!(topics.app_topic(topics.bracha().hash().as_str()), None);
    }
}
