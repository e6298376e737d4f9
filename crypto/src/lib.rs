//! Keys, the signed envelope (wire format v1), the codec and the committee of byzgossip.
//!
//! # IO contract
//! Pure: no network, no clock, no global RNG. Time (`timestamp_ms`) and randomness (key
//! generation) are arguments. The only file IO is the explicit key and genesis load/save.
//!
//! # Data path
//! `codec::decode_envelope(bytes, limit)` (size limit before allocation, framing, trailing
//! bytes, version, kind, body length and hash) gives an [`Envelope`]; `Envelope::verify` or
//! [`verify_batch`] (network, `verify_strict`) gives a [`VerifiedEnvelope`], the only type the
//! layers above act on. Cheap checks ([`Envelope::id`], [`Envelope::check_network`]) can run
//! before the signature.
//!
//! # Bounds
//! Every decode is capped at [`codec::MAX_ENVELOPE_LEN`] (1 MiB) and by a caller limit; the
//! [`KeyCache`] holds at most its capacity of non-committee keys.

mod batch;
pub mod codec;
mod digest;
mod envelope;
mod error;
mod genesis;
mod keys;

pub use batch::{KeyCache, ParsedKey, verify_batch};
pub use digest::{Digest, MessageId, NetworkId, sha256_parts};
pub use envelope::{Envelope, HEADER_LEN, Header, Kind, SIGNING_DOMAIN, SIGNING_LEN, VerifiedEnvelope, WIRE_VERSION};
pub use error::{DecodeError, GenesisError, KeyError, KeyFileError, SealError, VerifyError};
pub use genesis::{Committee, Genesis, GossipPolicy};
pub use keys::{Keypair, PublicKey, Signature, verify_strict_with};

/// Re-exported so callers name the same dalek types this crate uses.
pub use ed25519_dalek::VerifyingKey;
