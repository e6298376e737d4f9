//! The codec: the only module that names bincode (pinned `=2.0.1`).
//!
//! It frames envelopes and encodes bodies; signatures and ids never cover its output (they
//! cover [`Header::to_bytes`]), so the format can be swapped without re-signing anything.
//!
//! Configuration: fixed-width big-endian integers, so every value has exactly one encoding
//! (decode then encode gives back the same bytes) and the header frames as exactly its 118
//! signed bytes. Every decode takes a size limit that is checked before any work, and refuses
//! trailing bytes. The envelope body is borrowed from the input while decoding, so a forged
//! length prefix never makes the decoder allocate more than the input's own size.
//!
//! Envelope frame: `header (118) || body_len_u64 (8) || body || signature (64)`, i.e. 190
//! bytes of overhead.

use crate::digest::{Digest, NetworkId};
use crate::envelope::{Envelope, Header, Kind, check_body};
use crate::error::DecodeError;
use crate::keys::{PublicKey, Signature};
use bincode::config::{BigEndian, Configuration, Fixint, Limit};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Hard ceiling for any decode: 1 MiB. Gossip messages and Bracha values are far smaller; a
/// larger limit would let one peer make us hash and hold megabytes per message.
pub const MAX_ENVELOPE_LEN: usize = 1 << 20;
/// Bytes an envelope adds around its body.
pub const ENVELOPE_OVERHEAD: usize = 190;
/// The largest body that fits in [`MAX_ENVELOPE_LEN`].
pub const MAX_BODY_LEN: usize = MAX_ENVELOPE_LEN - ENVELOPE_OVERHEAD;

type Config = Configuration<BigEndian, Fixint, Limit<MAX_ENVELOPE_LEN>>;

fn config() -> Config {
    bincode::config::standard()
        .with_big_endian()
        .with_fixed_int_encoding()
        .with_limit::<MAX_ENVELOPE_LEN>()
}

/// The header as framed: kind and version as raw bytes, so unknown values become typed errors.
#[derive(Serialize, Deserialize)]
struct WireHeader {
    version: u8,
    network: [u8; 32],
    kind: u8,
    origin: [u8; 32],
    seq: u64,
    timestamp_ms: u64,
    body_len: u32,
    body_hash: [u8; 32],
}

#[derive(Serialize)]
struct WireEnvelopeOut<'a> {
    header: WireHeader,
    #[serde(with = "serde_bytes")]
    body: &'a [u8],
    signature: Signature,
}

#[derive(Deserialize)]
struct WireEnvelopeIn<'a> {
    header: WireHeader,
    #[serde(borrow, with = "serde_bytes")]
    body: &'a [u8],
    signature: Signature,
}

impl From<&Header> for WireHeader {
    fn from(h: &Header) -> Self {
        WireHeader {
            version: h.version,
            network: h.network.0,
            kind: h.kind as u8,
            origin: h.origin.0,
            seq: h.seq,
            timestamp_ms: h.timestamp_ms,
            body_len: h.body_len,
            body_hash: h.body_hash.0,
        }
    }
}

/// Frames an envelope.
pub fn encode_envelope(envelope: &Envelope) -> Vec<u8> {
    encode_raw(envelope.header(), envelope.body(), envelope.signature())
}

/// Frames arbitrary parts without checking that they agree: for adversary tooling and tests
/// that need tampered bytes on the wire. Honest code uses [`encode_envelope`].
pub fn encode_raw(header: &Header, body: &[u8], signature: &Signature) -> Vec<u8> {
    let wire = WireEnvelopeOut { header: header.into(), body, signature: *signature };
    // Encoding into a Vec cannot fail for these plain types within the limit.
    bincode::serde::encode_to_vec(&wire, config()).unwrap_or_default()
}

/// Decodes one envelope from exactly `bytes`: size limit first (`max_len`, capped at
/// [`MAX_ENVELOPE_LEN`]), then framing, trailing bytes, version, kind, body length and hash.
/// The signature is not checked here.
pub fn decode_envelope(bytes: &[u8], max_len: usize) -> Result<Envelope, DecodeError> {
    let limit = max_len.min(MAX_ENVELOPE_LEN);
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge { len: bytes.len(), limit });
    }
    let (wire, used): (WireEnvelopeIn<'_>, usize) =
        bincode::serde::borrow_decode_from_slice(bytes, config()).map_err(map_error)?;
    if used != bytes.len() {
        return Err(DecodeError::TrailingBytes(bytes.len() - used));
    }
    let h = wire.header;
    let kind = Kind::from_u8(h.kind).ok_or(DecodeError::UnknownKind(h.kind))?;
    let header = Header {
        version: h.version,
        network: NetworkId(h.network),
        kind,
        origin: PublicKey(h.origin),
        seq: h.seq,
        timestamp_ms: h.timestamp_ms,
        body_len: h.body_len,
        body_hash: Digest(h.body_hash),
    };
    check_body(&header, wire.body)?;
    Envelope::from_parts(header, wire.body.to_vec(), wire.signature)
}

/// Encodes a body value (Bracha messages, gossip payloads, evidence).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, config()).unwrap_or_default()
}

/// Decodes a body value from exactly `bytes`, refusing more than `max_len` bytes up front and
/// trailing bytes after. Owned byte fields inside `T` may allocate what their length prefixes
/// claim, at most [`MAX_ENVELOPE_LEN`] together, and serde reserves up to 1 MiB for a
/// sequence from its count prefix (per level of nesting; no wire type nests sequences): one
/// decode briefly allocates at most about twice [`MAX_ENVELOPE_LEN`] beyond its input,
/// whatever the prefixes claim (the decoder property tests check this bound).
pub fn decode<T: DeserializeOwned>(bytes: &[u8], max_len: usize) -> Result<T, DecodeError> {
    let limit = max_len.min(MAX_ENVELOPE_LEN);
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge { len: bytes.len(), limit });
    }
    let (value, used): (T, usize) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(map_error)?;
    if used != bytes.len() {
        return Err(DecodeError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}

fn map_error(error: bincode::error::DecodeError) -> DecodeError {
    use bincode::error::DecodeError as B;
    match error {
        B::UnexpectedEnd { .. } => DecodeError::Truncated,
        B::LimitExceeded => DecodeError::Malformed("a length prefix is over the size limit".into()),
        other => DecodeError::Malformed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    fn sample(body: &[u8]) -> Envelope {
        let k = Keypair::from_secret_bytes(&[3; 32]);
        Envelope::seal(&k, NetworkId([9; 32]), Kind::Gossip, 7, 1_700_000_000_123, body.to_vec()).expect("seal")
    }

    #[test]
    fn frame_is_header_bytes_then_length_body_signature() {
        let e = sample(b"abc");
        let bytes = encode_envelope(&e);
        assert_eq!(bytes.len(), ENVELOPE_OVERHEAD + 3);
        assert_eq!(&bytes[..118], &e.header().to_bytes());
        assert_eq!(&bytes[118..126], &3u64.to_be_bytes());
        assert_eq!(&bytes[126..129], b"abc");
        assert_eq!(&bytes[129..], e.signature().as_bytes());
    }

    #[test]
    fn huge_length_prefix_is_refused_without_allocating() {
        let mut bytes = encode_envelope(&sample(b"abc"));
        // Claim a body of 2^62 bytes; the decoder borrows from the 193-byte input instead.
        bytes[118..126].copy_from_slice(&(1u64 << 62).to_be_bytes());
        assert!(matches!(decode_envelope(&bytes, MAX_ENVELOPE_LEN), Err(DecodeError::Malformed(_) | DecodeError::Truncated)));
    }

    #[test]
    fn body_values_round_trip_and_refuse_trailing_bytes() {
        let value: (u32, String) = (5, "topic".into());
        let mut bytes = encode(&value);
        assert_eq!(decode::<(u32, String)>(&bytes, 1024), Ok(value));
        bytes.push(0);
        assert_eq!(decode::<(u32, String)>(&bytes, 1024), Err(DecodeError::TrailingBytes(1)));
        assert!(matches!(decode::<(u32, String)>(&bytes, 4), Err(DecodeError::TooLarge { .. })));
    }
}
