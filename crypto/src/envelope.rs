//! The signed envelope, wire format v1 (DESIGN.md section 3).
//!
//! # Header layout (`header_bytes`, 118 bytes, integers big-endian)
//!
//! | offset | len | field          |
//! |-------:|----:|----------------|
//! |      0 |   1 | `version` (1)  |
//! |      1 |  32 | `network`      |
//! |     33 |   1 | `kind`         |
//! |     34 |  32 | `origin`       |
//! |     66 |   8 | `seq`          |
//! |     74 |   8 | `timestamp_ms` |
//! |     82 |   4 | `body_len`     |
//! |     86 |  32 | `body_hash`    |
//!
//! The signature covers `b"byzgossip/v1/envelope" || header_bytes`, and the [`MessageId`] is
//! `sha256(header_bytes)`. Both bind the body through `body_hash` and neither depends on the
//! codec, so the framing can change without invalidating a single signature.
//!
//! An [`Envelope`] value always has a body that matches its header (length and hash): the only
//! ways to make one are [`Envelope::seal`], [`Envelope::from_parts`] and the codec, and all
//! three check it. Its signature may still be anything; a [`VerifiedEnvelope`] is one whose
//! signature passed `verify_strict` for a given network.

use crate::digest::{Digest, MessageId, NetworkId, sha256_parts};
use crate::error::{DecodeError, SealError, VerifyError};
use crate::keys::{Keypair, PublicKey, Signature, verify_strict_with};
use ed25519_dalek::VerifyingKey;

/// The wire version this code speaks.
pub const WIRE_VERSION: u8 = 1;
/// Domain separation prefix of every envelope signature.
pub const SIGNING_DOMAIN: &[u8; 21] = b"byzgossip/v1/envelope";
/// Length of [`Header::to_bytes`].
pub const HEADER_LEN: usize = 118;
/// Length of the signed bytes: domain then header.
pub const SIGNING_LEN: usize = SIGNING_DOMAIN.len() + HEADER_LEN;

/// What an envelope's body is. The numbers are part of the wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    /// Best-effort gossip: the body names a topic and carries the application's bytes.
    Gossip = 1,
    /// Bracha SEND: the origin proposes a value for an instance.
    BrachaSend = 2,
    /// Bracha ECHO of a value's digest.
    BrachaEcho = 3,
    /// Bracha READY for a value's digest.
    BrachaReady = 4,
    /// Proof that a member signed two conflicting messages.
    Evidence = 5,
    /// A delivery certificate and its value, announced by a member to the nodes outside the
    /// committee (observers), which deliver on the certificate alone.
    Certified = 6,
}

impl Kind {
    /// Every kind, for exhaustive tests and metric label sets.
    pub const ALL: [Kind; 6] =
        [Kind::Gossip, Kind::BrachaSend, Kind::BrachaEcho, Kind::BrachaReady, Kind::Evidence, Kind::Certified];

    /// The kind for a wire byte.
    pub fn from_u8(byte: u8) -> Option<Kind> {
        Self::ALL.into_iter().find(|kind| *kind as u8 == byte)
    }

    /// A short fixed name for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Gossip => "gossip",
            Kind::BrachaSend => "send",
            Kind::BrachaEcho => "echo",
            Kind::BrachaReady => "ready",
            Kind::Evidence => "evidence",
            Kind::Certified => "certified",
        }
    }
}

/// The signed header. Every field is covered by the signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Wire version, [`WIRE_VERSION`].
    pub version: u8,
    /// The genesis digest of the network this was signed for.
    pub network: NetworkId,
    /// What the body is.
    pub kind: Kind,
    /// The signer.
    pub origin: PublicKey,
    /// The signer's sequence number (meaning depends on `kind`).
    pub seq: u64,
    /// When the signer made it, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Length of the body in bytes.
    pub body_len: u32,
    /// SHA-256 of the body.
    pub body_hash: Digest,
}

impl Header {
    /// The fixed 118-byte layout documented in the module docs.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = self.version;
        out[1..33].copy_from_slice(self.network.as_bytes());
        out[33] = self.kind as u8;
        out[34..66].copy_from_slice(self.origin.as_bytes());
        out[66..74].copy_from_slice(&self.seq.to_be_bytes());
        out[74..82].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        out[82..86].copy_from_slice(&self.body_len.to_be_bytes());
        out[86..118].copy_from_slice(self.body_hash.as_bytes());
        out
    }

    /// The bytes the origin signs: domain then header.
    pub fn signing_bytes(&self) -> [u8; SIGNING_LEN] {
        let mut out = [0u8; SIGNING_LEN];
        out[..SIGNING_DOMAIN.len()].copy_from_slice(SIGNING_DOMAIN);
        out[SIGNING_DOMAIN.len()..].copy_from_slice(&self.to_bytes());
        out
    }

    /// The message id: SHA-256 of the header bytes.
    pub fn id(&self) -> MessageId {
        MessageId(sha256_parts(&[&self.to_bytes()]))
    }
}

/// A header, a body that matches it, and a signature that may or may not be valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    header: Header,
    body: Vec<u8>,
    signature: Signature,
}

impl Envelope {
    /// Builds the header for `body`, signs it and returns the envelope.
    pub fn seal(
        keypair: &Keypair,
        network: NetworkId,
        kind: Kind,
        seq: u64,
        timestamp_ms: u64,
        body: Vec<u8>,
    ) -> Result<Envelope, SealError> {
        let limit = crate::codec::MAX_BODY_LEN;
        if body.len() > limit {
            return Err(SealError::BodyTooLarge { len: body.len(), limit });
        }
        let header = Header {
            version: WIRE_VERSION,
            network,
            kind,
            origin: keypair.public(),
            seq,
            timestamp_ms,
            body_len: body.len() as u32, // fits: MAX_BODY_LEN < u32::MAX
            body_hash: Digest::of(&body),
        };
        let signature = keypair.sign(&header.signing_bytes());
        Ok(Envelope { header, body, signature })
    }

    /// Assembles an envelope from parts, checking that the body matches the header. The
    /// signature is not checked (adversary tooling and tests build forgeries this way).
    pub fn from_parts(header: Header, body: Vec<u8>, signature: Signature) -> Result<Envelope, DecodeError> {
        check_body(&header, &body)?;
        Ok(Envelope { header, body, signature })
    }

    /// The signed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The signature as received.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The signer claimed by the header.
    pub fn origin(&self) -> PublicKey {
        self.header.origin
    }

    /// The message id (SHA-256 of the header bytes; about 0.3 us).
    pub fn id(&self) -> MessageId {
        self.header.id()
    }

    /// Checks network and signature, decompressing the origin key (about 5 us extra).
    pub fn verify(self, network: &NetworkId) -> Result<VerifiedEnvelope, VerifyError> {
        let key = self.header.origin.to_verifying_key().map_err(VerifyError::BadOrigin)?;
        self.verify_with_key(network, &key)
    }

    /// Checks network and signature with the origin's decompressed key (from a
    /// [`crate::Committee`] or [`crate::KeyCache`]).
    ///
    /// # Panics
    /// In debug builds, if `key` is not the header's origin: that is a caller bug.
    pub fn verify_with_key(self, network: &NetworkId, key: &VerifyingKey) -> Result<VerifiedEnvelope, VerifyError> {
        debug_assert_eq!(key.as_bytes(), self.header.origin.as_bytes(), "key is not the origin's");
        self.check_network(network)?;
        verify_strict_with(key, &self.header.signing_bytes(), &self.signature)
            .map_err(|_| VerifyError::BadSignature)?;
        Ok(VerifiedEnvelope::assume_valid(self))
    }

    /// The stateless network check, cheap enough to run before any signature work.
    pub fn check_network(&self, network: &NetworkId) -> Result<(), VerifyError> {
        if self.header.network != *network {
            return Err(VerifyError::WrongNetwork);
        }
        Ok(())
    }

    /// Splits into parts.
    pub fn into_parts(self) -> (Header, Vec<u8>, Signature) {
        (self.header, self.body, self.signature)
    }
}

/// The body checks shared by decoding and [`Envelope::from_parts`].
pub(crate) fn check_body(header: &Header, body: &[u8]) -> Result<(), DecodeError> {
    if header.version != WIRE_VERSION {
        return Err(DecodeError::UnsupportedVersion(header.version));
    }
    if header.body_len as usize != body.len() {
        return Err(DecodeError::BodyLengthMismatch { declared: header.body_len, actual: body.len() });
    }
    if Digest::of(body) != header.body_hash {
        return Err(DecodeError::BodyHashMismatch);
    }
    Ok(())
}

/// An envelope whose signature passed `verify_strict` for the network it was checked against.
/// Only verification makes one, so holding one is proof of the check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEnvelope {
    envelope: Envelope,
    id: MessageId,
}

impl VerifiedEnvelope {
    /// Only for code paths that have just verified the signature.
    pub(crate) fn assume_valid(envelope: Envelope) -> Self {
        let id = envelope.id();
        Self { envelope, id }
    }

    /// The message id, computed once.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// The envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The signed header.
    pub fn header(&self) -> &Header {
        &self.envelope.header
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.envelope.body
    }

    /// The verified signer.
    pub fn origin(&self) -> PublicKey {
        self.envelope.header.origin
    }

    /// Gives back the plain envelope (for re-encoding and forwarding).
    pub fn into_envelope(self) -> Envelope {
        self.envelope
    }
}

impl std::ops::Deref for VerifiedEnvelope {
    type Target = Envelope;
    fn deref(&self) -> &Envelope {
        &self.envelope
    }
}
