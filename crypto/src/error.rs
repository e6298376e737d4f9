//! Error types. Every way decoding or verification fails has its own variant, usable as a
//! metric label through `label()`.

use std::path::PathBuf;
use thiserror::Error;

/// A public key or signature that cannot be used.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// the key is not 64 hex characters
    #[error("public key is not 64 hex characters")]
    BadHex,
    /// the 32 bytes do not decode to a curve point
    #[error("public key is not a curve point")]
    NotAPoint,
    /// the key is a small-order point, which `verify_strict` refuses
    #[error("public key has small order")]
    SmallOrder,
    /// the signature does not verify under `verify_strict`
    #[error("signature does not verify")]
    BadSignature,
}

/// Why bytes did not decode to an [`crate::Envelope`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// more bytes than the decoder's limit; refused before any allocation
    #[error("message of {len} bytes is over the limit of {limit}")]
    TooLarge {
        /// bytes received
        len: usize,
        /// the limit in force
        limit: usize,
    },
    /// the bytes end before the envelope does
    #[error("message is truncated")]
    Truncated,
    /// the bytes do not follow the envelope layout (bad enum tag, bad length, ...)
    #[error("malformed message: {0}")]
    Malformed(String),
    /// bytes left over after a whole envelope
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// a wire version this node does not speak
    #[error("unsupported wire version {0}")]
    UnsupportedVersion(u8),
    /// a message kind this node does not know
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// `header.body_len` differs from the body's length
    #[error("body is {actual} bytes but the header says {declared}")]
    BodyLengthMismatch {
        /// from the header
        declared: u32,
        /// the body's real length
        actual: usize,
    },
    /// `header.body_hash` is not the SHA-256 of the body
    #[error("body hash does not match the header")]
    BodyHashMismatch,
}

impl DecodeError {
    /// A short fixed name for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Truncated => "truncated",
            Self::Malformed(_) => "malformed",
            Self::TrailingBytes(_) => "trailing_bytes",
            Self::UnsupportedVersion(_) => "unsupported_version",
            Self::UnknownKind(_) => "unknown_kind",
            Self::BodyLengthMismatch { .. } => "body_length_mismatch",
            Self::BodyHashMismatch => "body_hash_mismatch",
        }
    }
}

/// Why a decoded envelope is not valid here.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// the envelope failed to decode or its body does not match its header
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// signed for another network (another genesis)
    #[error("envelope is for another network")]
    WrongNetwork,
    /// the origin key is unusable (not a point, small order)
    #[error("origin key: {0}")]
    BadOrigin(KeyError),
    /// `verify_strict` refused the signature
    #[error("signature does not verify")]
    BadSignature,
}

impl VerifyError {
    /// A short fixed name for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Decode(e) => e.label(),
            Self::WrongNetwork => "wrong_network",
            Self::BadOrigin(_) => "bad_origin_key",
            Self::BadSignature => "bad_signature",
        }
    }
}

/// Why an envelope could not be made.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SealError {
    /// the body is longer than a header can describe or the configured limit allows
    #[error("body of {len} bytes is over the limit of {limit}")]
    BodyTooLarge {
        /// body length
        len: usize,
        /// the limit
        limit: usize,
    },
}

/// A key file that cannot be read or written.
#[derive(Debug, Error)]
pub enum KeyFileError {
    /// the file system refused
    #[error("key file {path}: {source}")]
    Io {
        /// the file
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// the file is not a valid key file (the secret is never quoted)
    #[error("key file {path}: {reason}")]
    Invalid {
        /// the file
        path: PathBuf,
        /// what is wrong
        reason: String,
    },
}

/// A genesis that cannot be read, written or used.
#[derive(Debug, Error)]
pub enum GenesisError {
    /// the file system refused
    #[error("genesis file {path}: {source}")]
    Io {
        /// the file
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// the TOML does not parse
    #[error("genesis file {path}: {reason}")]
    Parse {
        /// the file
        path: PathBuf,
        /// what the parser said
        reason: String,
    },
    /// no committee members
    #[error("committee is empty")]
    EmptyCommittee,
    /// the same key listed twice
    #[error("committee lists key {0} twice")]
    DuplicateMember(String),
    /// a member key that cannot verify anything
    #[error("committee member {index}: {error}")]
    BadMember {
        /// position in the committee
        index: usize,
        /// what is wrong with the key
        error: KeyError,
    },
    /// n < 3f + 1
    #[error("committee of {n} cannot tolerate f = {f} faults (needs n >= 3f + 1 = {})", 3 * (*f as u128) + 1)]
    TooManyFaults {
        /// committee size
        n: usize,
        /// requested f
        f: usize,
    },
    /// the network name is empty or too long
    #[error("network name must be 1 to 64 characters")]
    BadName,
}
