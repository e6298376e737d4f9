//! 32-byte newtypes: content digests, message ids and network ids.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;

macro_rules! hash_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 32]);

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serialize_32(&self.0, serializer)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserialize_32(deserializer).map(Self)
            }
        }

        impl $name {
            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Lower-case hex of the 32 bytes.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses 64 hex characters.
            pub fn from_hex(text: &str) -> Option<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(text, &mut out).ok()?;
                Some(Self(out))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Eight bytes are enough to tell ids apart in logs.
                write!(f, "{}({}..)", stringify!($name), &self.to_hex()[..16])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

hash_newtype!(
    /// SHA-256 of some content (a body, a Bracha value, a genesis file).
    Digest
);
hash_newtype!(
    /// The id of an envelope: SHA-256 of its fixed-layout header (DESIGN.md section 3).
    /// It binds the body through the header's `body_hash`, and never depends on the codec.
    MessageId
);
hash_newtype!(
    /// The id of a network: the digest of its genesis. Signed into every header, so a message
    /// from one testnet is invalid on another.
    NetworkId
);

impl Digest {
    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

/// Serializes 32 bytes as hex text in human formats (TOML, JSON) and as 32 raw bytes in
/// binary ones (the codec).
pub(crate) fn serialize_32<S: serde::Serializer>(bytes: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.serialize_str(&hex::encode(bytes))
    } else {
        bytes.serialize(serializer)
    }
}

/// The inverse of [`serialize_32`].
pub(crate) fn deserialize_32<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
    if deserializer.is_human_readable() {
        let text = String::deserialize(deserializer)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut out)
            .map_err(|_| serde::de::Error::custom("expected 64 hex characters"))?;
        Ok(out)
    } else {
        <[u8; 32]>::deserialize(deserializer)
    }
}

/// SHA-256 over several parts, in order, without separators: callers pass fixed-length parts
/// or length-prefix variable ones themselves.
pub fn sha256_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_is_the_sha256_test_vector() {
        assert_eq!(
            Digest::of(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hex_round_trip_and_rejects_bad_text() {
        let d = Digest::of(b"abc");
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("zz"), None);
        assert_eq!(Digest::from_hex(&d.to_hex()[..62]), None);
    }
}
