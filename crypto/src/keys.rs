//! ed25519 keys and signatures, and key files.
//!
//! A [`PublicKey`] is the 32 compressed bytes; it is cheap to copy, hash and compare, and is
//! only decompressed (about 5 us) when a signature is checked. Use a
//! [`crate::VerifyingKeyCache`] or [`crate::Committee`] to decompress each key once.
//!
//! The acceptance rule for a signature is `verify_strict` of ed25519-dalek: canonical `s`,
//! no small-order public key, no small-order `R`. Every path in byzgossip (single or batch)
//! accepts exactly what this rule accepts.

use crate::error::{KeyError, KeyFileError};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use zeroize::Zeroizing;

/// An ed25519 public key (32 compressed bytes). Validity is checked when it is used.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::digest::serialize_32(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::digest::deserialize_32(deserializer).map(Self)
    }
}

impl PublicKey {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut out).map_err(|_| KeyError::BadHex)?;
        Ok(Self(out))
    }

    /// Decompresses the key, refusing encodings that are not points and small-order points
    /// (a small-order key admits signatures that verify for many messages).
    pub fn to_verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::NotAPoint)?;
        if key.is_weak() {
            return Err(KeyError::SmallOrder);
        }
        Ok(key)
    }

    /// `verify_strict` of `signature` over `message`. Decompresses the key each call; prefer a
    /// cached [`VerifyingKey`] on hot paths.
    pub fn verify_strict(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
        let key = self.to_verifying_key()?;
        verify_strict_with(&key, message, signature)
    }
}

/// `verify_strict` with an already decompressed key: the one acceptance rule.
pub fn verify_strict_with(
    key: &VerifyingKey,
    message: &[u8],
    signature: &Signature,
) -> Result<(), KeyError> {
    let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(message, &signature)
        .map_err(|_| KeyError::BadSignature)
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}..)", &self.to_hex()[..16])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An ed25519 signature (64 bytes: `R || s`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// The raw 64 bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// The `R` half (a compressed curve point).
    pub fn r_bytes(&self) -> &[u8; 32] {
        self.0[..32].try_into().expect("64 = 32 + 32")
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", hex::encode(&self.0[..8]))
    }
}

// serde supports arrays up to 32 elements; a signature is written as a fixed 64-tuple, which
// bincode encodes as exactly 64 raw bytes with no length prefix (canonical, nothing to check).
impl Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut tuple = serializer.serialize_tuple(64)?;
        for byte in &self.0 {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SignatureVisitor;
        impl<'de> serde::de::Visitor<'de> for SignatureVisitor {
            type Value = Signature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Signature, A::Error> {
                let mut out = [0u8; 64];
                for (i, byte) in out.iter_mut().enumerate() {
                    *byte = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(Signature(out))
            }
        }
        deserializer.deserialize_tuple(64, SignatureVisitor)
    }
}

/// A node's ed25519 keypair. The secret is zeroed on drop and never printed or logged.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// A new random keypair from the caller's cryptographic RNG (pure crates take no global RNG).
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::from_secret_bytes(&seed)
    }

    /// The keypair for a 32-byte secret seed.
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        Self { signing: SigningKey::from_bytes(secret) }
    }

    /// The 32-byte secret seed, for deriving the libp2p identity of the same key
    /// (`libp2p::identity::Keypair::ed25519_from_bytes`) in the node crate.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// Signs `message` (deterministic ed25519).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }

    /// Writes the key file: TOML with the hex secret and, for checking, the public key.
    /// Created with mode 0600 on Unix; an existing file is not overwritten.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        use std::io::Write;
        let text = Zeroizing::new(format!(
            "# byzgossip node key. Keep it secret: anyone holding it can sign as this node.\n\
             public = \"{}\"\nsecret = \"{}\"\n",
            self.public().to_hex(),
            hex::encode(self.signing.to_bytes()),
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let io = |source| KeyFileError::Io { path: path.to_owned(), source };
        let mut file = options.open(path).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Reads a key file written by [`Keypair::save`], checking that the stored public key is
    /// the one the secret derives (so a corrupted file is an error, not a different identity).
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct KeyFile {
            public: String,
            secret: Zeroizing<String>,
        }
        let bad = |reason: &str| KeyFileError::Invalid { path: path.to_owned(), reason: reason.into() };
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|source| KeyFileError::Io { path: path.to_owned(), source })?,
        );
        // The TOML error text may quote the secret line, so it is not passed on.
        let file: KeyFile = toml::from_str(&text).map_err(|_| bad("not a byzgossip key file (expected `public` and `secret` hex strings)"))?;
        let mut secret = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(file.secret.trim(), secret.as_mut())
            .map_err(|_| bad("`secret` is not 64 hex characters"))?;
        let keypair = Self::from_secret_bytes(&secret);
        let public = PublicKey::from_hex(&file.public).map_err(|_| bad("`public` is not 64 hex characters"))?;
        if public != keypair.public() {
            return Err(bad("`public` does not match `secret` (the file is corrupted)"));
        }
        Ok(keypair)
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("Keypair").field("public", &self.public()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair(seed: u8) -> Keypair {
        Keypair::from_secret_bytes(&[seed; 32])
    }

    #[test]
    fn sign_then_verify_strict() {
        let k = keypair(1);
        let sig = k.sign(b"hello");
        k.public().verify_strict(b"hello", &sig).expect("valid");
        assert_eq!(k.public().verify_strict(b"hellp", &sig), Err(KeyError::BadSignature));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = keypair(0xab);
        let text = format!("{k:?}");
        assert!(!text.contains(&hex::encode([0xabu8; 32])), "{text}");
    }

    #[test]
    fn small_order_and_non_point_keys_are_refused() {
        // The identity point (y = 1) has order 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey(identity).to_verifying_key().err(), Some(KeyError::SmallOrder));
        // y = 2 is not on the curve.
        let mut not_point = [0u8; 32];
        not_point[0] = 2;
        assert_eq!(PublicKey(not_point).to_verifying_key().err(), Some(KeyError::NotAPoint));
    }

    #[test]
    fn key_file_round_trip_mode_and_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        let k = keypair(7);
        k.save(&path).expect("save");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(Keypair::load(&path).expect("load").public(), k.public());
        // Saving twice does not overwrite a key.
        assert!(matches!(k.save(&path), Err(KeyFileError::Io { .. })));

        // Flip one hex digit of the secret: the public check catches it, and the error text
        // does not quote the secret.
        let text = std::fs::read_to_string(&path).expect("read");
        let secret_hex = hex::encode([7u8; 32]);
        let corrupted = text.replace(&secret_hex, &format!("08{}", &secret_hex[2..]));
        std::fs::write(&path, corrupted).expect("write");
        let err = Keypair::load(&path).expect_err("corrupted").to_string();
        assert!(err.contains("does not match"), "{err}");
        assert!(!err.contains(&secret_hex[2..]), "{err}");

        std::fs::write(&path, "garbage {{").expect("write");
        assert!(matches!(Keypair::load(&path), Err(KeyFileError::Invalid { .. })));
        assert!(matches!(Keypair::load(&dir.path().join("missing")), Err(KeyFileError::Io { .. })));
    }
}
