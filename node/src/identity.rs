//! One key, two names: the node's ed25519 [`Keypair`] and its libp2p identity.
//!
//! The libp2p `PeerId` of an ed25519 key embeds the key itself (identity multihash), so the
//! peer that forwards a message and the key that signs one are compared without a lookup
//! table (DESIGN.md section 2).

use byzgossip_crypto::{Keypair, PublicKey};
use libp2p::PeerId;
use libp2p::identity;

/// The libp2p keypair for the node's key.
pub fn libp2p_keypair(keypair: &Keypair) -> identity::Keypair {
    let mut secret = keypair.secret_bytes();
    identity::Keypair::ed25519_from_bytes(secret.as_mut()).expect("32 bytes are always a valid ed25519 secret")
}

/// The `PeerId` of a public key.
pub fn peer_id(key: &PublicKey) -> Option<PeerId> {
    let public = identity::ed25519::PublicKey::try_from_bytes(key.as_bytes()).ok()?;
    Some(identity::PublicKey::from(public).to_peer_id())
}

/// The protobuf prefix of an ed25519 key inside an identity `PeerId`: field 1 (key type)
/// = 1 (Ed25519), then field 2 (data) of 32 bytes.
const ED25519_PEER_ID_PREFIX: [u8; 4] = [0x08, 0x01, 0x12, 0x20];

/// The ed25519 key inside a `PeerId`, if it is one (peers with other key types have none, and
/// are treated as untrusted strangers).
///
/// Called for every received message, so the canonical form (the one `to_peer_id` writes,
/// and the only one a Noise handshake yields) is read directly: libp2p's decoder would
/// decompress the curve point each time, which cost more CPU than anything but the signature
/// checks. The key is not validated here; the handshake did that for connected peers, and a
/// bad key simply matches no committee member. Other encodings take the full decoder.
pub fn public_key(peer: &PeerId) -> Option<PublicKey> {
    let multihash = peer.as_ref();
    if multihash.code() != 0 {
        return None; // not an identity multihash: the key is not inlined
    }
    let digest = multihash.digest();
    if let Some(bytes) = digest.strip_prefix(&ED25519_PEER_ID_PREFIX[..])
        && let Ok(bytes) = <[u8; 32]>::try_from(bytes)
    {
        return Some(PublicKey(bytes));
    }
    let key = identity::PublicKey::try_decode_protobuf(digest).ok()?;
    let ed = key.try_into_ed25519().ok()?;
    Some(PublicKey(ed.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_and_key_map_both_ways() {
        let k = Keypair::from_secret_bytes(&[4; 32]);
        let from_libp2p = libp2p_keypair(&k).public().to_peer_id();
        assert_eq!(peer_id(&k.public()), Some(from_libp2p));
        assert_eq!(public_key(&from_libp2p), Some(k.public()));
        assert_eq!(public_key(&PeerId::random()), None);
        // The fast path agrees with libp2p's decoder on many keys.
        for seed in 0..64u8 {
            let k = Keypair::from_secret_bytes(&[seed; 32]);
            let peer = libp2p_keypair(&k).public().to_peer_id();
            let full = identity::PublicKey::try_decode_protobuf(peer.as_ref().digest()).ok().and_then(|p| p.try_into_ed25519().ok());
            assert_eq!(full.map(|e| PublicKey(e.to_bytes())), public_key(&peer));
        }
    }
}
