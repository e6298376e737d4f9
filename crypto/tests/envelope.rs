//! Envelope round trips and every rejection path of decode and verify.

use byzgossip_crypto::codec::{self, MAX_ENVELOPE_LEN};
use byzgossip_crypto::{
    DecodeError, Envelope, Genesis, GossipPolicy, Header, Keypair, Kind, NetworkId, PublicKey, Signature, VerifyError,
};
use proptest::prelude::*;

const NET: NetworkId = NetworkId([7; 32]);

fn keypair(seed: u8) -> Keypair {
    Keypair::from_secret_bytes(&[seed; 32])
}

fn envelope(body: &[u8]) -> Envelope {
    Envelope::seal(&keypair(1), NET, Kind::Gossip, 42, 1_700_000_000_123, body.to_vec()).expect("seal")
}

/// Decode then verify: the path every received message takes.
fn open(bytes: &[u8], network: &NetworkId) -> Result<byzgossip_crypto::VerifiedEnvelope, VerifyError> {
    codec::decode_envelope(bytes, MAX_ENVELOPE_LEN)?.verify(network)
}

#[test]
fn round_trip_every_kind_and_size() {
    for kind in Kind::ALL {
        for len in [0usize, 1, 64, 1024, 65_536] {
            let body: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let e = Envelope::seal(&keypair(2), NET, kind, len as u64, 99, body).expect("seal");
            let bytes = codec::encode_envelope(&e);
            let decoded = codec::decode_envelope(&bytes, MAX_ENVELOPE_LEN).expect("decode");
            assert_eq!(decoded, e);
            let verified = decoded.verify(&NET).expect("verify");
            assert_eq!(verified.id(), e.id());
            assert_eq!(verified.origin(), keypair(2).public());
            assert_eq!(codec::encode_envelope(verified.envelope()), bytes);
        }
    }
}

#[test]
fn id_binds_every_header_field_and_the_body() {
    let base = envelope(b"body");
    let ids: Vec<_> = [
        envelope(b"bodz"),
        Envelope::seal(&keypair(1), NetworkId([8; 32]), Kind::Gossip, 42, 1_700_000_000_123, b"body".to_vec()).expect("seal"),
        Envelope::seal(&keypair(1), NET, Kind::BrachaSend, 42, 1_700_000_000_123, b"body".to_vec()).expect("seal"),
        Envelope::seal(&keypair(9), NET, Kind::Gossip, 42, 1_700_000_000_123, b"body".to_vec()).expect("seal"),
        Envelope::seal(&keypair(1), NET, Kind::Gossip, 43, 1_700_000_000_123, b"body".to_vec()).expect("seal"),
        // One millisecond apart: the seed design hashed whole seconds.
        Envelope::seal(&keypair(1), NET, Kind::Gossip, 42, 1_700_000_000_124, b"body".to_vec()).expect("seal"),
    ]
    .iter()
    .map(Envelope::id)
    .collect();
    for id in ids {
        assert_ne!(id, base.id());
    }
}

#[test]
fn truncated_bytes_are_refused_at_every_length() {
    let bytes = codec::encode_envelope(&envelope(b"hello world"));
    for len in 0..bytes.len() {
        let err = codec::decode_envelope(&bytes[..len], MAX_ENVELOPE_LEN).expect_err("truncated");
        assert!(
            matches!(err, DecodeError::Truncated | DecodeError::Malformed(_) | DecodeError::BodyLengthMismatch { .. } | DecodeError::BodyHashMismatch),
            "len {len}: {err:?}"
        );
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = codec::encode_envelope(&envelope(b"x"));
    bytes.extend_from_slice(&[0, 0, 0]);
    assert_eq!(codec::decode_envelope(&bytes, MAX_ENVELOPE_LEN), Err(DecodeError::TrailingBytes(3)));
}

#[test]
fn oversize_input_and_oversize_length_prefix_are_refused() {
    let bytes = codec::encode_envelope(&envelope(&[1; 1000]));
    assert_eq!(
        codec::decode_envelope(&bytes, 500),
        Err(DecodeError::TooLarge { len: bytes.len(), limit: 500 })
    );
    let too_big = vec![0u8; MAX_ENVELOPE_LEN + 1];
    assert!(matches!(codec::decode_envelope(&too_big, usize::MAX), Err(DecodeError::TooLarge { limit: MAX_ENVELOPE_LEN, .. })));
    // A length prefix claiming more than the input holds.
    let mut bytes = codec::encode_envelope(&envelope(b"abc"));
    bytes[118..126].copy_from_slice(&(u64::MAX).to_be_bytes());
    assert!(codec::decode_envelope(&bytes, MAX_ENVELOPE_LEN).is_err());
    // Sealing refuses a body that could not be framed under the limit.
    let huge = vec![0u8; codec::MAX_BODY_LEN + 1];
    assert!(Envelope::seal(&keypair(1), NET, Kind::Gossip, 0, 0, huge).is_err());
}

#[test]
fn unknown_version_and_kind_are_typed_errors() {
    let e = envelope(b"v");
    let mut bytes = codec::encode_envelope(&e);
    bytes[0] = 2;
    assert_eq!(codec::decode_envelope(&bytes, MAX_ENVELOPE_LEN), Err(DecodeError::UnsupportedVersion(2)));
    let mut bytes = codec::encode_envelope(&e);
    bytes[33] = 200;
    assert_eq!(codec::decode_envelope(&bytes, MAX_ENVELOPE_LEN), Err(DecodeError::UnknownKind(200)));
}

#[test]
fn every_flipped_bit_is_caught() {
    let e = envelope(b"flip me");
    let bytes = codec::encode_envelope(&e);
    for byte in 0..bytes.len() {
        for bit in 0..8 {
            let mut tampered = bytes.clone();
            tampered[byte] ^= 1 << bit;
            // Where the flip lands decides which check catches it.
            let err = open(&tampered, &NET).expect_err("a flipped bit was accepted");
            let expected_ok = match byte {
                0 => matches!(err, VerifyError::Decode(DecodeError::UnsupportedVersion(_))),
                1..=32 => err == VerifyError::WrongNetwork,
                33 => matches!(err, VerifyError::Decode(DecodeError::UnknownKind(_))) || err == VerifyError::BadSignature,
                34..=65 => matches!(err, VerifyError::BadSignature | VerifyError::BadOrigin(_)),
                66..=81 => err == VerifyError::BadSignature,
                82..=85 => matches!(err, VerifyError::Decode(DecodeError::BodyLengthMismatch { .. })),
                86..=117 => err == VerifyError::Decode(DecodeError::BodyHashMismatch),
                118..=125 => matches!(err, VerifyError::Decode(_)),
                b if b < 118 + 8 + 7 => err == VerifyError::Decode(DecodeError::BodyHashMismatch),
                _ => err == VerifyError::BadSignature,
            };
            assert!(expected_ok, "byte {byte} bit {bit}: {err:?}");
        }
    }
}

#[test]
fn wrong_network_is_refused() {
    let bytes = codec::encode_envelope(&envelope(b"net"));
    assert_eq!(open(&bytes, &NetworkId([8; 32])).err(), Some(VerifyError::WrongNetwork));
}

#[test]
fn a_signature_for_one_genesis_fails_on_another() {
    let members: Vec<PublicKey> = (1..=4).map(|s| keypair(s).public()).collect();
    let a = Genesis { name: "net-a".into(), f: None, policy: GossipPolicy::Committee, members: members.clone(), bootstrap: vec![] };
    let b = Genesis { name: "net-b".into(), ..a.clone() };
    let e = Envelope::seal(&keypair(1), a.network_id(), Kind::BrachaSend, 0, 5, b"value".to_vec()).expect("seal");
    let bytes = codec::encode_envelope(&e);
    assert!(open(&bytes, &a.network_id()).is_ok());
    assert_eq!(open(&bytes, &b.network_id()).err(), Some(VerifyError::WrongNetwork));
    // Rewriting the network field to the other genesis breaks the signature instead.
    let (mut header, body, signature) = e.into_parts();
    header.network = b.network_id();
    let moved = Envelope::from_parts(header, body, signature).expect("body still matches");
    assert_eq!(moved.verify(&b.network_id()).err(), Some(VerifyError::BadSignature));
}

#[test]
fn small_order_origin_key_is_refused() {
    // The identity point and y = 0 (order 4) as origins, with an all-zero signature.
    for key in [{ let mut k = [0u8; 32]; k[0] = 1; k }, [0u8; 32]] {
        let e = envelope(b"x");
        let (mut header, body, _) = e.into_parts();
        header.origin = PublicKey(key);
        let forged = Envelope::from_parts(header, body, Signature([0; 64])).expect("parts");
        assert!(matches!(forged.verify(&NET), Err(VerifyError::BadOrigin(_))));
    }
}

#[test]
fn non_canonical_signature_is_refused() {
    // s + l has the same value mod l but is not canonical: verify_strict refuses it.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let e = envelope(b"canonical");
    let mut sig = *e.signature().as_bytes();
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = sig[32 + i] as u16 + L[i] as u16 + carry;
        sig[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "s + l fits in 256 bits");
    let (header, body, _) = e.into_parts();
    let malleated = Envelope::from_parts(header, body, Signature(sig)).expect("parts");
    assert_eq!(malleated.verify(&NET).err(), Some(VerifyError::BadSignature));
}

#[test]
fn from_parts_refuses_a_body_that_does_not_match() {
    let (header, _, signature) = envelope(b"original").into_parts();
    assert_eq!(Envelope::from_parts(header, b"changed!".to_vec(), signature).err(), Some(DecodeError::BodyHashMismatch));
    let mut h: Header = header;
    h.body_len += 1;
    assert!(matches!(Envelope::from_parts(h, b"original".to_vec(), signature), Err(DecodeError::BodyLengthMismatch { .. })));
}

proptest! {
    /// Any byte string either decodes to an envelope that re-encodes to the same bytes, or
    /// fails with an error; it never panics.
    #[test]
    fn arbitrary_bytes_decode_canonically_or_fail(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(e) = codec::decode_envelope(&bytes, MAX_ENVELOPE_LEN) {
            prop_assert_eq!(codec::encode_envelope(&e), bytes);
        }
    }

    /// Mutations of valid envelopes (the inputs that get past the framing) behave the same,
    /// and no mutation is accepted by verify.
    #[test]
    fn mutated_envelopes_decode_canonically_or_fail(
        body in proptest::collection::vec(any::<u8>(), 0..200),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let original = codec::encode_envelope(&envelope(&body));
        let mut bytes = original.clone();
        for (at, value, op) in edits {
            match op {
                0 if !bytes.is_empty() => { let i = at.index(bytes.len()); bytes[i] = value; }
                1 => { let i = at.index(bytes.len() + 1); bytes.insert(i, value); }
                _ if !bytes.is_empty() => { let i = at.index(bytes.len()); bytes.remove(i); }
                _ => {}
            }
        }
        if let Ok(e) = codec::decode_envelope(&bytes, MAX_ENVELOPE_LEN) {
            prop_assert_eq!(codec::encode_envelope(&e), bytes.clone());
            if bytes != original {
                prop_assert!(e.verify(&NET).is_err());
            }
        }
    }
}
