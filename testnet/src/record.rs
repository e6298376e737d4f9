//! What a run records: the input of the invariant checker and of the report. Saved as
//! `run.json` in the output directory, so `byzgossip-testnet report DIR` re-analyses a run
//! without running it again. Keys, digests and ids are lower-case hex; times are milliseconds
//! since the Unix epoch (all nodes share this machine's clock).

use crate::scenario::{Role, Scenario};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One node of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Position in the run (committee index for members; Sybils follow the committee).
    pub index: usize,
    /// Its role.
    pub role: Role,
    /// Public key (hex).
    pub key: String,
    /// libp2p peer id.
    pub peer_id: String,
    /// Committee index, if a member.
    pub member: Option<usize>,
    /// When its attack was armed, if it has one.
    pub armed_at_ms: Option<u64>,
    /// Killed and not restarted when the run ended (excused from liveness checks).
    #[serde(default)]
    pub down_at_end: bool,
}

impl NodeRecord {
    /// Whether the node follows the protocol (its log is checked).
    pub fn correct(&self) -> bool {
        self.role.correct()
    }
}

/// A successful honest broadcast.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BroadcastRecord {
    /// Node index of the origin.
    pub origin: usize,
    /// Instance seq.
    pub seq: u64,
    /// SHA-256 of the value (hex).
    pub digest: String,
    /// When `broadcast` was called.
    pub sent_at_ms: u64,
}

/// A successful honest gossip publish.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublishRecord {
    /// Node index of the origin.
    pub origin: usize,
    /// Message id (hex).
    pub id: String,
    /// When `publish` was called.
    pub sent_at_ms: u64,
}

/// An honest broadcast or publish whose call gave no answer (a timeout, a broken
/// connection): the node may have carried it out or not. Nothing requires it to be delivered,
/// and a delivery of it is no forgery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnconfirmedRecord {
    /// Node index of the origin.
    pub origin: usize,
    /// SHA-256 of the value or payload (hex).
    pub digest: String,
    /// When the call was made.
    pub sent_at_ms: u64,
}

/// One Bracha delivery at one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Node index of the deliverer.
    pub node: usize,
    /// Instance origin key (hex).
    pub origin: String,
    /// Instance seq.
    pub seq: u64,
    /// Digest of the delivered value (hex).
    pub digest: String,
    /// When the node delivered it.
    pub delivered_at_ms: u64,
    /// Position in the node's delivery log.
    pub cursor: u64,
}

/// One gossip message handed to the application of one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GossipRecord {
    /// Node index of the receiver.
    pub node: usize,
    /// Which start of the node (0 first, +1 per restart). Gossip ids are persisted with the
    /// replay window, so a restart is no excuse for a second delivery.
    pub incarnation: u32,
    /// Origin key (hex).
    pub origin: String,
    /// Message id (hex).
    pub id: String,
    /// When the harness received it.
    pub received_at_ms: u64,
    /// Links the copy that reached the node crossed (1: straight from its publisher), where
    /// the runtime knows it (the simulator); `None` for gossip repaired by sync and in the
    /// real runtimes (gossipsub does not count hops).
    #[serde(default)]
    pub hops: Option<u8>,
}

/// One peer as seen by one correct node at one time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerSample {
    /// When.
    pub t_ms: u64,
    /// Node index of the observer.
    pub observer: usize,
    /// Node index of the peer.
    pub peer: usize,
    /// Its score.
    pub score: f64,
    /// Its status label (ok, graylisted, banned, excluded).
    pub status: String,
    /// Bans of the peer so far, as the observer counts them.
    #[serde(default)]
    pub bans: u32,
    /// End of the ban in force (status `banned`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// When the observer was asked (0: at `t_ms`). The snapshot was taken between this and
    /// `t_ms` (when the answer arrived), which bounds event times exactly under load.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub asked_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl PeerSample {
    /// The sample of one peer in an observer's snapshot at `t_ms`.
    pub fn of(t_ms: u64, observer: usize, peer: usize, snapshot: &byzgossip_reputation::PeerSnapshot) -> PeerSample {
        let until_ms = match snapshot.status {
            byzgossip_reputation::PeerStatus::Banned { until_ms } => Some(until_ms),
            _ => None,
        };
        PeerSample {
            t_ms,
            observer,
            peer,
            score: snapshot.score,
            status: snapshot.status.label().to_owned(),
            bans: snapshot.bans,
            until_ms,
            asked_ms: 0,
        }
    }

    /// When the snapshot may have been taken at the earliest.
    pub fn asked_ms(&self) -> u64 {
        if self.asked_ms == 0 { self.t_ms } else { self.asked_ms.min(self.t_ms) }
    }
}

/// Messages and bytes through one node's interceptor (all incarnations).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficRecord {
    /// Node index.
    pub node: usize,
    /// Gossipsub messages received (before admission).
    pub msgs_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Envelopes the node itself published.
    pub msgs_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
}

/// A timeline event (fault, arming, phase).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// When.
    pub t_ms: u64,
    /// What, in words.
    pub what: String,
}

/// Everything one run recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunLog {
    /// The resolved scenario (with its seed).
    pub scenario: Scenario,
    /// Committee size.
    pub n: usize,
    /// Fault bound.
    pub f: usize,
    /// Every node.
    pub nodes: Vec<NodeRecord>,
    /// Start of the run (every node up and connected).
    pub t0_ms: u64,
    /// Attack window start.
    pub attack_start_ms: u64,
    /// Attack window end.
    pub attack_end_ms: u64,
    /// When the workload stopped.
    pub load_end_ms: u64,
    /// When collection stopped.
    pub end_ms: u64,
    /// End of the last disruption (partition, eclipse, kill, pause), or 0.
    pub disrupted_until_ms: u64,
    /// Honest broadcasts that returned an instance.
    pub broadcasts: Vec<BroadcastRecord>,
    /// Honest broadcasts refused or failed (window full, node down).
    pub broadcast_failures: u64,
    /// Honest broadcasts whose outcome is unknown (counted in `broadcast_failures` too).
    #[serde(default)]
    pub unconfirmed_broadcasts: Vec<UnconfirmedRecord>,
    /// Honest gossip publishes.
    pub publishes: Vec<PublishRecord>,
    /// Honest gossip publishes whose outcome is unknown.
    #[serde(default)]
    pub unconfirmed_publishes: Vec<UnconfirmedRecord>,
    /// Bracha deliveries at correct nodes.
    pub deliveries: Vec<DeliveryRecord>,
    /// Gossip deliveries at correct nodes.
    pub gossip: Vec<GossipRecord>,
    /// Peer views sampled from correct nodes.
    pub peer_samples: Vec<PeerSample>,
    /// Traffic per node.
    pub traffic: Vec<TrafficRecord>,
    /// Timeline events.
    pub events: Vec<EventRecord>,
}

impl RunLog {
    /// (origin, value digest) of the broadcasts whose calls gave no answer: each may have been
    /// carried out under a seq the harness never learnt.
    pub fn unconfirmed_broadcast_values(&self) -> std::collections::HashSet<(usize, &str)> {
        self.unconfirmed_broadcasts.iter().map(|x| (x.origin, x.digest.as_str())).collect()
    }

    /// Node index by key (hex).
    pub fn index_by_key(&self) -> HashMap<&str, usize> {
        self.nodes.iter().map(|n| (n.key.as_str(), n.index)).collect()
    }

    /// Indices of correct nodes.
    pub fn correct_nodes(&self) -> Vec<usize> {
        self.nodes.iter().filter(|n| n.correct()).map(|n| n.index).collect()
    }

    /// Indices of honest nodes (role honest: the observers whose views must convict).
    pub fn honest_nodes(&self) -> Vec<usize> {
        self.nodes.iter().filter(|n| n.role == Role::Honest).map(|n| n.index).collect()
    }
}
