//! Equivocation evidence: two conflicting signed messages from one member for one instance.

use crate::config::MAX_VALUE_LEN;
use crate::message::{InstanceId, Message};
use byzgossip_crypto::{
    Committee, DecodeError, Digest, Envelope, Kind, NetworkId, PublicKey, codec, sha256_parts, verify_batch,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Domain separation of [`Evidence::digest`].
const EVIDENCE_DOMAIN: &[u8] = b"byzgossip/v1/evidence";

/// Two signed SENDs, ECHOs or READYs of one member for one instance that conflict (different
/// values or digests). Anyone can check it alone with [`Evidence::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The message seen first.
    pub first: Envelope,
    /// The conflicting one.
    pub second: Envelope,
}

/// Why evidence does not prove equivocation.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum EvidenceError {
    /// the two envelopes are signed by different keys
    #[error("the two messages have different signers")]
    DifferentSigners,
    /// the signer is not a committee member
    #[error("the signer is not a committee member")]
    NotAMember,
    /// a signature does not verify, or an envelope is for another network
    #[error("a signature does not verify")]
    BadSignature,
    /// not two Bracha messages of the same kind
    #[error("the messages are not two Bracha messages of the same kind")]
    WrongKind,
    /// a body is not a well-formed Bracha message
    #[error("a message is malformed")]
    Malformed,
    /// the messages are for different instances
    #[error("the messages are for different instances")]
    DifferentInstances,
    /// the messages say the same thing
    #[error("the messages do not conflict")]
    NoConflict,
    /// the evidence body does not decode
    #[error("evidence does not decode: {0}")]
    Decode(#[from] DecodeError),
}

#[derive(Serialize, Deserialize)]
struct EvidenceBody {
    #[serde(with = "serde_bytes")]
    first: Vec<u8>,
    #[serde(with = "serde_bytes")]
    second: Vec<u8>,
}

impl Evidence {
    /// The accused signer (as claimed; [`Evidence::verify`] proves it).
    pub fn offender(&self) -> PublicKey {
        self.first.origin()
    }

    /// The instance both messages claim (from the first one's body), if it decodes.
    pub fn instance(&self) -> Option<InstanceId> {
        Message::from_envelope(&self.first, MAX_VALUE_LEN).ok().map(|m| *m.instance())
    }

    /// Checks that both envelopes are validly signed for `network` by the same committee
    /// member, are Bracha messages of the same kind for the same instance, and conflict.
    /// Returns the offender.
    pub fn verify(&self, committee: &Committee, network: &NetworkId) -> Result<PublicKey, EvidenceError> {
        let signer = self.first.origin();
        if self.second.origin() != signer {
            return Err(EvidenceError::DifferentSigners);
        }
        if !committee.contains(&signer) {
            return Err(EvidenceError::NotAMember);
        }
        let kind = self.first.header().kind;
        if kind != self.second.header().kind || !matches!(kind, Kind::BrachaSend | Kind::BrachaEcho | Kind::BrachaReady) {
            return Err(EvidenceError::WrongKind);
        }
        let decode = |e: &Envelope| Message::from_envelope(e, MAX_VALUE_LEN).map_err(|_| EvidenceError::Malformed);
        let (a, b) = (decode(&self.first)?, decode(&self.second)?);
        if a.instance() != b.instance() {
            return Err(EvidenceError::DifferentInstances);
        }
        let conflict = match (&a, &b) {
            (Message::Send { value: x, .. }, Message::Send { value: y, .. }) => x != y,
            (Message::Echo { digest: x, .. }, Message::Echo { digest: y, .. })
            | (Message::Ready { digest: x, .. }, Message::Ready { digest: y, .. }) => x != y,
            _ => false,
        };
        if !conflict {
            return Err(EvidenceError::NoConflict);
        }
        // Signatures last: the checks above are cheap.
        let mut keys = committee.key_cache(0);
        let results = verify_batch(vec![self.first.clone(), self.second.clone()], network, &mut keys);
        if results.iter().any(Result::is_err) {
            return Err(EvidenceError::BadSignature);
        }
        Ok(signer)
    }

    /// A digest naming this evidence, the same whichever message is `first` (reputation uses
    /// it as the exclusion reason, and it dedups gossip of the same proof).
    pub fn digest(&self) -> Digest {
        let (a, b) = (self.first.id(), self.second.id());
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        Digest(sha256_parts(&[EVIDENCE_DOMAIN, lo.as_bytes(), hi.as_bytes()]))
    }

    /// The body of a `Kind::Evidence` envelope: both envelopes framed with
    /// `codec::encode_envelope`.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(&EvidenceBody {
            first: codec::encode_envelope(&self.first),
            second: codec::encode_envelope(&self.second),
        })
    }

    /// Decodes a body made by [`Evidence::encode`], refusing more than `max_len` bytes. Does
    /// not verify (call [`Evidence::verify`]).
    pub fn decode(body: &[u8], max_len: usize) -> Result<Evidence, EvidenceError> {
        let body: EvidenceBody = codec::decode(body, max_len)?;
        Ok(Evidence {
            first: codec::decode_envelope(&body.first, max_len)?,
            second: codec::decode_envelope(&body.second, max_len)?,
        })
    }
}
