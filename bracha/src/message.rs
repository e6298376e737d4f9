//! The three Bracha messages and how they travel in signed envelopes.
//!
//! # Conventions
//! - Each message is the body of an envelope of the matching [`Kind`] (`BrachaSend`,
//!   `BrachaEcho`, `BrachaReady`), encoded with `codec::encode`.
//! - The [`InstanceId`] `(origin, seq)` is inside every body, so every signature binds it.
//! - `header.seq == instance.seq`; `header.origin` is the signer: the instance origin for a
//!   SEND, the voter for an ECHO or READY. A SEND signed by anyone but the instance origin is
//!   a fault of its signer.
//! - ECHO and READY carry `Digest::of(value)`, never the value.

use crate::error::Error;
use byzgossip_crypto::{
    Digest, Envelope, Header, Keypair, Kind, NetworkId, PublicKey, Signature, WIRE_VERSION, codec,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One broadcast instance: the origin's `seq`-th broadcast.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceId {
    /// The committee member that broadcasts the value.
    pub origin: PublicKey,
    /// The origin's sequence number for this broadcast.
    pub seq: u64,
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", &self.origin.to_hex()[..8], self.seq)
    }
}

/// Bytes a SEND body adds around its value: instance (32 + 8) and the value's length (8).
pub const SEND_BODY_OVERHEAD: usize = 48;
/// Exact length of an ECHO or READY body: instance (40) and digest (32).
pub const VOTE_BODY_LEN: usize = 72;

#[derive(Serialize, Deserialize)]
struct SendBody {
    instance: InstanceId,
    #[serde(with = "serde_bytes")]
    value: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct VoteBody {
    instance: InstanceId,
    digest: Digest,
}

/// A decoded Bracha message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// The origin proposes `value` for `instance`.
    Send {
        /// The instance.
        instance: InstanceId,
        /// The proposed value.
        value: Vec<u8>,
    },
    /// The signer saw the origin's first SEND of `instance`, whose value has `digest`.
    Echo {
        /// The instance.
        instance: InstanceId,
        /// `Digest::of(value)`.
        digest: Digest,
    },
    /// The signer is ready to deliver the value with `digest` in `instance`.
    Ready {
        /// The instance.
        instance: InstanceId,
        /// `Digest::of(value)`.
        digest: Digest,
    },
}

/// Why an envelope is not a well-formed Bracha message. Each is a fault of the signer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageError {
    /// The kind is not SEND, ECHO or READY.
    WrongKind,
    /// The body does not decode, has trailing bytes, or is not the canonical encoding.
    Undecodable,
    /// A SEND value is over the limit.
    ValueTooLarge,
    /// `header.seq` differs from the body's `instance.seq`.
    SeqMismatch,
    /// A SEND signed by someone other than the instance's origin.
    SendNotFromOrigin,
}

impl Message {
    /// The instance the message belongs to.
    pub fn instance(&self) -> &InstanceId {
        match self {
            Message::Send { instance, .. } | Message::Echo { instance, .. } | Message::Ready { instance, .. } => instance,
        }
    }

    /// The envelope kind that carries this message.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Send { .. } => Kind::BrachaSend,
            Message::Echo { .. } => Kind::BrachaEcho,
            Message::Ready { .. } => Kind::BrachaReady,
        }
    }

    /// The body bytes (`codec::encode` of the message's fields).
    pub fn encode_body(&self) -> Vec<u8> {
        match self {
            Message::Send { instance, value } => {
                codec::encode(&SendBody { instance: *instance, value: value.clone() })
            }
            Message::Echo { instance, digest } | Message::Ready { instance, digest } => {
                vote_body(instance, digest)
            }
        }
    }

    /// Signs the message into an envelope with `header.seq = instance.seq`.
    pub fn seal(&self, keypair: &Keypair, network: NetworkId, timestamp_ms: u64) -> Result<Envelope, Error> {
        Ok(Envelope::seal(keypair, network, self.kind(), self.instance().seq, timestamp_ms, self.encode_body())?)
    }

    /// Decodes and checks the message in `envelope` (kind, body with `max_value_len`, the seq
    /// convention, SEND signer). The signature is the caller's business.
    pub fn from_envelope(envelope: &Envelope, max_value_len: usize) -> Result<Message, MessageError> {
        let header = envelope.header();
        let message = match header.kind {
            Kind::BrachaSend => {
                let limit = max_value_len.saturating_add(SEND_BODY_OVERHEAD);
                if envelope.body().len() > limit {
                    return Err(MessageError::ValueTooLarge);
                }
                let body: SendBody =
                    codec::decode(envelope.body(), limit).map_err(|_| MessageError::Undecodable)?;
                if envelope.body().len() != SEND_BODY_OVERHEAD + body.value.len() {
                    return Err(MessageError::Undecodable);
                }
                if body.instance.origin != header.origin {
                    return Err(MessageError::SendNotFromOrigin);
                }
                Message::Send { instance: body.instance, value: body.value }
            }
            Kind::BrachaEcho | Kind::BrachaReady => {
                let body: VoteBody =
                    codec::decode(envelope.body(), VOTE_BODY_LEN).map_err(|_| MessageError::Undecodable)?;
                // Votes are stored compactly and rebuilt for certificates and evidence, which
                // needs the body to be the one canonical encoding (the codec's fixed-width
                // integers guarantee it; this keeps the guarantee local).
                if envelope.body().len() != VOTE_BODY_LEN {
                    return Err(MessageError::Undecodable);
                }
                if header.kind == Kind::BrachaEcho {
                    Message::Echo { instance: body.instance, digest: body.digest }
                } else {
                    Message::Ready { instance: body.instance, digest: body.digest }
                }
            }
            Kind::Gossip | Kind::Evidence | Kind::Certified => return Err(MessageError::WrongKind),
        };
        if message.instance().seq != header.seq {
            return Err(MessageError::SeqMismatch);
        }
        Ok(message)
    }
}

/// Frames `message` as if signed by `signer`, with a zero signature: the simulator's
/// unsigned mode (the no-signature benchmark). Such envelopes never verify.
pub(crate) fn frame_unsigned(network: NetworkId, signer: PublicKey, message: &Message, timestamp_ms: u64) -> Envelope {
    let body = message.encode_body();
    let header = Header {
        version: WIRE_VERSION,
        network,
        kind: message.kind(),
        origin: signer,
        seq: message.instance().seq,
        timestamp_ms,
        body_len: body.len() as u32,
        body_hash: Digest::of(&body),
    };
    Envelope::from_parts(header, body, Signature([0; 64])).unwrap_or_else(|_| unreachable!("body matches header"))
}

/// Unsigned framing for the simulator's Byzantine members.
#[cfg(feature = "sim")]
#[doc(hidden)]
pub fn sim_frame_unsigned(network: NetworkId, signer: PublicKey, message: &Message, timestamp_ms: u64) -> Envelope {
    frame_unsigned(network, signer, message, timestamp_ms)
}

/// The body of an ECHO or READY.
pub(crate) fn vote_body(instance: &InstanceId, digest: &Digest) -> Vec<u8> {
    codec::encode(&VoteBody { instance: *instance, digest: *digest })
}

/// Rebuilds the exact envelope of a vote from its compact record (every header field is
/// determined by the vote, the signer, the timestamp and the network).
pub(crate) fn rebuild_vote(
    network: NetworkId,
    kind: Kind,
    signer: PublicKey,
    instance: &InstanceId,
    digest: &Digest,
    timestamp_ms: u64,
    signature: Signature,
) -> Envelope {
    let body = vote_body(instance, digest);
    let header = Header {
        version: WIRE_VERSION,
        network,
        kind,
        origin: signer,
        seq: instance.seq,
        timestamp_ms,
        body_len: body.len() as u32,
        body_hash: Digest::of(&body),
    };
    // The body matches the header by construction, so this cannot fail.
    Envelope::from_parts(header, body, signature).unwrap_or_else(|_| unreachable!("vote body matches its header"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair(i: u8) -> Keypair {
        Keypair::from_secret_bytes(&[i; 32])
    }

    #[test]
    fn bodies_round_trip_and_bind_the_instance() {
        let k = keypair(1);
        let instance = InstanceId { origin: k.public(), seq: 9 };
        let net = NetworkId([7; 32]);
        for message in [
            Message::Send { instance, value: b"hello".to_vec() },
            Message::Echo { instance, digest: Digest::of(b"hello") },
            Message::Ready { instance, digest: Digest::of(b"hello") },
        ] {
            let envelope = message.seal(&k, net, 5).expect("seal");
            assert_eq!(envelope.header().seq, 9);
            assert_eq!(envelope.header().kind, message.kind());
            assert_eq!(Message::from_envelope(&envelope, 100), Ok(message.clone()));
            if let Message::Echo { digest, .. } | Message::Ready { digest, .. } = &message {
                let rebuilt = rebuild_vote(net, message.kind(), k.public(), &instance, digest, 5, *envelope.signature());
                assert_eq!(rebuilt, envelope);
            }
        }
        assert_eq!(
            SEND_BODY_OVERHEAD,
            Message::Send { instance, value: vec![] }.encode_body().len()
        );
    }

    #[test]
    fn malformed_messages_are_refused() {
        let k = keypair(1);
        let other = keypair(2).public();
        let net = NetworkId([7; 32]);
        let instance = InstanceId { origin: k.public(), seq: 9 };
        let send = |instance, value: &[u8]| Message::Send { instance, value: value.to_vec() };
        // Too large a value.
        let e = send(instance, &[0; 101]).seal(&k, net, 0).expect("seal");
        assert_eq!(Message::from_envelope(&e, 100), Err(MessageError::ValueTooLarge));
        // SEND for someone else's instance.
        let e = send(InstanceId { origin: other, seq: 9 }, b"x").seal(&k, net, 0).expect("seal");
        assert_eq!(Message::from_envelope(&e, 100), Err(MessageError::SendNotFromOrigin));
        // header.seq differs from instance.seq.
        let body = Message::Echo { instance, digest: Digest::of(b"x") }.encode_body();
        let e = Envelope::seal(&k, net, Kind::BrachaEcho, 10, 0, body.clone()).expect("seal");
        assert_eq!(Message::from_envelope(&e, 100), Err(MessageError::SeqMismatch));
        // Trailing bytes, garbage, wrong kind.
        let mut long = body.clone();
        long.push(0);
        let e = Envelope::seal(&k, net, Kind::BrachaEcho, 9, 0, long).expect("seal");
        assert_eq!(Message::from_envelope(&e, 100), Err(MessageError::Undecodable));
        let e = Envelope::seal(&k, net, Kind::BrachaReady, 9, 0, vec![1, 2, 3]).expect("seal");
        assert_eq!(Message::from_envelope(&e, 100), Err(MessageError::Undecodable));
        let e = Envelope::seal(&k, net, Kind::Gossip, 9, 0, body).expect("seal");
        assert_eq!(Message::from_envelope(&e, 100), Err(MessageError::WrongKind));
    }
}
