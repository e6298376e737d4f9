//! Everything the engine asks its driver to do. The driver acts on each [`Output`] and makes
//! no protocol decision of its own; this enum is the complete list of what a node can do.

use crate::peer::Peer;
use crate::store::Batch;
use crate::sync::{ServePlan, SyncRequest};
use crate::verify::Job;
use byzgossip_bracha::InstanceId;
use byzgossip_crypto::{Digest, Envelope, MessageId, PublicKey};
use byzgossip_reputation::{Acceptance, StatusChange};

/// One action for the driver.
#[derive(Debug)]
pub enum Output {
    /// Subscribe to a wire topic (gossipsub).
    Subscribe {
        /// Wire topic name.
        topic: String,
    },
    /// Answer gossipsub's validation of the message handed in with `token`
    /// ([`crate::Engine::handle_message`]). Every token gets exactly one answer.
    Validation {
        /// The driver's token.
        token: u64,
        /// Accept (process and forward), Ignore (drop quietly) or Reject (drop and penalise
        /// the forwarder in gossipsub's score).
        acceptance: Acceptance,
    },
    /// Publish an own envelope on a wire topic (encode it, or hand it to an interceptor).
    Publish {
        /// Wire topic name.
        topic: String,
        /// The signed envelope.
        envelope: Envelope,
    },
    /// Check a signature off the event loop; hand the result to
    /// [`crate::Engine::handle_verified`].
    Verify(Job),
    /// Commit these writes in one transaction, in order, then call
    /// [`crate::Engine::handle_committed`].
    Persist(Batch),
    /// The broadcast of `instance` ([`crate::Engine::broadcast`]) is durable: its seq is
    /// never reused and its SEND is published. Answer the application now.
    Broadcast {
        /// The instance.
        instance: InstanceId,
    },
    /// A Bracha delivery, durable in the delivery log: hand it to the application.
    Deliver(Delivered),
    /// A gossip message on a subscribed topic: hand it to the application (live only).
    Gossip(GossipMessage),
    /// Connection management.
    Peer(PeerAction),
    /// Send a sync request; hand the answer (or the failure) to
    /// [`crate::Engine::handle_sync_response`] with `request_id`.
    SyncRequest {
        /// To whom.
        peer: Peer,
        /// The engine's id of the request.
        request_id: u64,
        /// The request.
        request: SyncRequest,
    },
    /// Answer the sync request handed in with `token`: run the plan against the store (off
    /// the event loop) and send the response.
    SyncServe {
        /// The driver's token of the inbound request.
        token: u64,
        /// What to answer.
        plan: ServePlan,
    },
    /// Answer nothing to the sync request handed in with `token` (drop its channel).
    SyncRefuse {
        /// The driver's token.
        token: u64,
    },
    /// Set a peer's gossipsub application score (P5).
    AppScore {
        /// The peer.
        peer: Peer,
        /// Its score.
        score: f64,
    },
    /// Something to count or log.
    Metric(Metric),
}

/// Connection management.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerAction {
    /// Close every connection to the peer and refuse new ones.
    Block(Peer),
    /// Lift [`PeerAction::Block`].
    Unblock(Peer),
    /// Dial the peer (a bootstrap peer that dropped).
    Dial(Peer),
    /// Close every connection to the peer without blocking it (a link that stayed wedged,
    /// see [`crate::slow`]); the redial logic connects again.
    Disconnect(Peer),
}

/// A Bracha delivery with its cursor in the node's delivery log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Delivered {
    /// Position in the delivery log (dense, from 1).
    pub cursor: u64,
    /// Which broadcast.
    pub instance: InstanceId,
    /// The delivered value.
    #[serde(with = "hex_bytes")]
    pub value: Vec<u8>,
    /// SHA-256 of the value.
    pub digest: Digest,
    /// The encoded delivery certificate (2f+1 signed READYs).
    #[serde(with = "hex_bytes")]
    pub certificate: Vec<u8>,
    /// When this node delivered it (ms since the Unix epoch).
    pub delivered_at_ms: u64,
}

/// A best-effort gossip message that passed admission.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
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
    /// The application bytes.
    #[serde(with = "hex_bytes")]
    pub payload: Vec<u8>,
}

/// Bytes as a hex string in JSON (the HTTP API's delivery stream).
mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(bytes))
    }
}

/// Something to count (and, for some, log). Labels are fixed strings, so metric cardinality
/// stays bounded whatever peers send.
#[derive(Clone, Debug, PartialEq)]
pub enum Metric {
    /// A received message's admission outcome, by kind (`gossip`, `bracha_echo`, ...,
    /// `sync`, `unknown`) and outcome (`accept`, a reject or ignore reason, `overloaded`, ...).
    Message {
        /// Message kind label.
        kind: &'static str,
        /// Outcome label.
        outcome: &'static str,
    },
    /// A rejection, by reason (also logged at debug).
    Rejected {
        /// Reason label.
        reason: &'static str,
    },
    /// Milliseconds from a message's arrival to its verdict.
    AdmissionLatency {
        /// Milliseconds.
        ms: u64,
    },
    /// An accepted message this node processed but does not forward (designated relays).
    RelaySkipped,
    /// A Bracha delivery; the latency from first sight of the instance here, if tracked.
    Delivered {
        /// Milliseconds from first sight to delivery.
        latency_ms: Option<u64>,
    },
    /// An own envelope published, by kind label (`retransmit` for retransmissions).
    Published {
        /// Kind label.
        kind: &'static str,
    },
    /// A sync event by label (`digest_sent`, `digest_served`, `certificate_applied`, ...).
    Sync {
        /// Event label.
        kind: &'static str,
    },
    /// A Bracha fault, by kind label.
    Fault {
        /// Fault label.
        kind: &'static str,
    },
    /// A reputation status change (the driver logs bans at warn).
    StatusChange(StatusChange),
    /// The depth of a bounded queue.
    QueueDepth {
        /// Queue label (`validation_bracha`, `validation_gossip`).
        queue: &'static str,
        /// Items in it.
        depth: usize,
    },
    /// Peers by reputation status.
    PeersByStatus {
        /// In good standing.
        ok: usize,
        /// Graylisted.
        graylisted: usize,
        /// Banned.
        banned: usize,
        /// Excluded for equivocation.
        excluded: usize,
    },
    /// Gossipsub reported a peer slow (`outcome`: `reported`), or the engine dropped the
    /// connection of a peer slow for a whole streak (`disconnected`).
    SlowPeer {
        /// Outcome label.
        outcome: &'static str,
    },
    /// Quorum health at a tick ([`crate::liveness`]); `was_possible` is the previous tick's
    /// verdict (`None` at the first), so the driver can log the moment progress becomes
    /// impossible, and again when it is possible.
    Quorum {
        /// Members reachable, needed, stalled instances.
        health: crate::liveness::QuorumHealth,
        /// Whether progress was possible at the previous tick.
        was_possible: Option<bool>,
    },
    /// Deliveries older than the retention were pruned from the store.
    Pruned {
        /// How many.
        deliveries: usize,
    },
    /// A persistence batch failed: what it gated (publishes, deliveries) was dropped.
    PersistFailed {
        /// The batch.
        batch: u64,
    },
    /// A broadcast seq was reserved before a crash but its SEND never stored: it is filled
    /// with an empty value so the origin's window never stalls.
    FilledLostBroadcast {
        /// The seq.
        seq: u64,
    },
}
