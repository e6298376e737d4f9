//! A generic extension point between the node and the wire.
//!
//! An [`Interceptor`] sees every envelope the node is about to publish and every message it
//! received before admission, and may replace, add or drop them. The production binary
//! installs none. The testnet crate builds its adversaries on it (a silent node drops
//! everything, a censor drops chosen origins, an equivocating voter replaces its votes), so
//! no attack code lives in the node.

use byzgossip_crypto::Envelope;
use libp2p::PeerId;

/// What to do with one received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Admit it as usual.
    Process,
    /// Drop it without processing: reported to gossipsub as `Ignore`, so it is not forwarded.
    Drop,
}

/// Sees messages on their way out and in.
pub trait Interceptor: Send + 'static {
    /// Called with each envelope the node signed and is about to publish. Returns the encoded
    /// messages to publish instead (default: the envelope itself).
    fn outgoing(&mut self, envelope: &Envelope) -> Vec<Vec<u8>> {
        vec![byzgossip_crypto::codec::encode_envelope(envelope)]
    }

    /// Called with each received gossipsub message before admission.
    fn inbound(&mut self, _from: &PeerId, _bytes: &[u8]) -> Inbound {
        Inbound::Process
    }
}
