//! What one call into the machine produces.

use crate::certificate::Certificate;
use crate::evidence::Evidence;
use crate::message::{InstanceId, MessageError};
use byzgossip_crypto::{Digest, Envelope, PublicKey};

/// The output of one input: messages to send, values to fetch, deliveries, evidence and
/// faults. The caller must act on every field (STYLE.md: hbbft).
#[must_use = "a Step carries messages to send and deliveries to hand on"]
#[derive(Clone, Debug, Default)]
pub struct Step {
    /// This member's own signed SEND/ECHO/READY envelopes, to persist (ECHO/READY, see
    /// [`crate::Bracha::restore_own_vote`]) and then broadcast to the committee.
    pub outgoing: Vec<Envelope>,
    /// Values this member needs: 2f+1 READYs for a digest whose value it does not hold.
    pub fetches: Vec<Fetch>,
    /// Instances delivered by this call, each exactly once.
    pub delivered: Vec<Delivery>,
    /// Proofs of equivocation, to gossip (as `Kind::Evidence`) and to ban the offender.
    pub evidence: Vec<Evidence>,
    /// Misbehaviour of members, for the reputation layer. Never an `Err`.
    pub faults: Vec<Fault>,
}

impl Step {
    /// True when there is nothing to act on.
    pub fn is_empty(&self) -> bool {
        self.outgoing.is_empty()
            && self.fetches.is_empty()
            && self.delivered.is_empty()
            && self.evidence.is_empty()
            && self.faults.is_empty()
    }

    /// Appends `other` to `self`.
    pub fn extend(&mut self, other: Step) {
        self.outgoing.extend(other.outgoing);
        self.fetches.extend(other.fetches);
        self.delivered.extend(other.delivered);
        self.evidence.extend(other.evidence);
        self.faults.extend(other.faults);
    }
}

/// A request to obtain the value with `digest` of `instance` (by sync, from the members in
/// `from`, best candidates first) and hand it to [`crate::Bracha::supply_value`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// The instance.
    pub instance: InstanceId,
    /// The digest 2f+1 members are READY for.
    pub digest: Digest,
    /// Committee indices that ECHOed the digest (each held the value; any f+1 of them include
    /// an honest one), then those that only READYed it. Rotated by one on every retry, so
    /// asking `from[0]` each time walks through all of them.
    pub from: Vec<usize>,
}

/// A delivered instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The instance.
    pub instance: InstanceId,
    /// The value.
    pub value: Vec<u8>,
    /// `Digest::of(value)`.
    pub digest: Digest,
    /// 2f+1 signed READYs for `(instance, digest)`: proof for lagging members.
    pub certificate: Certificate,
}

/// A member misbehaved. `member` is the signer of the offending envelope (always a key whose
/// signature the caller verified, so a forger can never get an honest key blamed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The signer to blame.
    pub member: PublicKey,
    /// What it did.
    pub kind: FaultKind,
}

/// Kinds of misbehaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The signer is not a committee member (Bracha is committee-only).
    NotAMember,
    /// The body is not a well-formed message (signed, so provable).
    Malformed(MessageError),
    /// The instance's origin is not a committee member.
    UnknownOrigin,
    /// Two conflicting signed messages for one instance; the proof is in `Step::evidence`.
    Equivocation,
    /// The envelope was signed for another network: refused, never counted. Admission
    /// checks the network first, so only a caller that skips it can hand one in; the signer
    /// is not to blame for where a message was carried (not provable misbehaviour).
    WrongNetwork,
    /// The instance is beyond the origin's open window (`seq >= low_watermark + window`):
    /// not stored. An honest member far ahead of this one can cause it, so it is weak
    /// evidence (see [`FaultKind::is_provable`]).
    BeyondWindow {
        /// The instance's seq.
        seq: u64,
        /// The first seq beyond this node's window for that origin.
        window_end: u64,
    },
}

impl FaultKind {
    /// Whether the signed message alone proves misbehaviour to anyone (as opposed to being
    /// suspicious from this node's point of view only).
    pub fn is_provable(&self) -> bool {
        !matches!(self, FaultKind::BeyondWindow { .. } | FaultKind::WrongNetwork)
    }

    /// A short fixed name for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            FaultKind::NotAMember => "not_a_member",
            FaultKind::Malformed(MessageError::WrongKind) => "wrong_kind",
            FaultKind::Malformed(MessageError::Undecodable) => "undecodable",
            FaultKind::Malformed(MessageError::ValueTooLarge) => "value_too_large",
            FaultKind::Malformed(MessageError::SeqMismatch) => "seq_mismatch",
            FaultKind::Malformed(MessageError::SendNotFromOrigin) => "send_not_from_origin",
            FaultKind::UnknownOrigin => "unknown_origin",
            FaultKind::Equivocation => "equivocation",
            FaultKind::BeyondWindow { .. } => "beyond_window",
            FaultKind::WrongNetwork => "wrong_network",
        }
    }
}
