//! A generic extension point between a driver (the node, the simulator) and the wire.
//!
//! An [`Interceptor`] sees every envelope the node is about to publish and every message it
//! received before admission (gossipsub messages, and sync responses), and may replace, add,
//! drop or delay them. The production binary installs none. The testnet crate builds its
//! adversaries and its network faults on it (a silent node drops everything, a censor drops
//! chosen origins, an equivocating voter replaces its votes, a degraded link drops and delays
//! what arrives), so no attack or fault code lives in the node.
//!
//! # Bounds
//! Messages held by [`Inbound::Delay`] wait in a set of at most [`MAX_PARKED`] messages and
//! [`MAX_PARKED_BYTES`] bytes. Beyond either, a delayed message is dropped as with
//! [`Inbound::Drop`] (a gossipsub message is answered `Ignore`, as when the verification queue
//! is full): processing it at once would silently undo the delay asked for, and gossip,
//! retransmission or sync bring an honest message back.

use byzgossip_crypto::Envelope;
use crate::Peer;
use std::time::Duration;

/// Most received messages held at once for [`Inbound::Delay`]. A delay of a few seconds at a
/// testnet's message rate (hundreds a second per node) holds far fewer; past it the node is
/// being asked to buffer without bound, and refuses.
pub const MAX_PARKED: usize = 4096;

/// Most bytes of received messages held at once for [`Inbound::Delay`] (a gossipsub message
/// may be 256 KiB and a sync response 1 MiB, so the count alone would allow gigabytes).
pub const MAX_PARKED_BYTES: usize = 32 * 1024 * 1024;

/// What to do with one received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Admit it as usual.
    Process,
    /// Drop it without processing: reported to gossipsub as `Ignore`, so it is not forwarded.
    Drop,
    /// Hold it for this long, then admit it as usual (the interceptor is not asked again).
    /// The node's event loop is not blocked; gossipsub waits for the verdict meanwhile (a
    /// message held longer than gossipsub's message cache keeps it is still admitted here,
    /// but no longer forwarded). Held messages are bounded ([`MAX_PARKED`],
    /// [`MAX_PARKED_BYTES`]); beyond, the message is dropped as with [`Inbound::Drop`].
    Delay(Duration),
}

/// Sees messages on their way out and in.
pub trait Interceptor: Send + 'static {
    /// Called with each envelope the node signed and is about to publish. Returns the encoded
    /// messages to publish instead (default: the envelope itself).
    fn outgoing(&mut self, envelope: &Envelope) -> Vec<Vec<u8>> {
        vec![byzgossip_crypto::codec::encode_envelope(envelope)]
    }

    /// Called with each received gossipsub message before admission.
    fn inbound(&mut self, _from: &Peer, _bytes: &[u8]) -> Inbound {
        Inbound::Process
    }

    /// Called with each response to this node's sync requests (catch-up certificates and
    /// envelopes, or a value fetched by digest) from `from`, before any of it is applied.
    /// [`Inbound::Drop`] discards the whole response; [`Inbound::Delay`] holds it like a
    /// gossipsub message. Requests this node serves are not intercepted.
    fn sync_response(&mut self, _from: &Peer) -> Inbound {
        Inbound::Process
    }
}
