//! Batch verification accepts exactly what single `verify_strict` accepts, including the
//! edge cases where ed25519-dalek's raw batch check and `verify_strict` disagree.

use byzgossip_crypto::{
    Envelope, Header, KeyCache, Keypair, Kind, NetworkId, PublicKey, Signature, VerifyError, verify_batch,
};
use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION};
use curve25519_dalek::{EdwardsPoint, Scalar};
use sha2::{Digest as _, Sha512};

const NET: NetworkId = NetworkId([3; 32]);

fn honest(seed: u8, body: &[u8]) -> Envelope {
    Envelope::seal(&Keypair::from_secret_bytes(&[seed; 32]), NET, Kind::BrachaEcho, seed as u64, 1000, body.to_vec())
        .expect("seal")
}

/// A signature made "by hand" from a raw secret scalar `a` and nonce point `R = rB + t`, so
/// that `R` can carry a torsion component `t`: `s = r + H(R || A || M) a`.
fn raw_sign(a: Scalar, a_point: EdwardsPoint, r: Scalar, torsion: EdwardsPoint, message: &[u8]) -> Signature {
    let big_r = r * B + torsion;
    let mut h = Sha512::new();
    h.update(big_r.compress().as_bytes());
    h.update(a_point.compress().as_bytes());
    h.update(message);
    let h = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let s = r + h * a;
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(big_r.compress().as_bytes());
    out[32..].copy_from_slice(s.as_bytes());
    Signature(out)
}

/// An envelope whose origin is `a_point` and whose signature is `raw_sign(...)`.
fn crafted(a: Scalar, a_point: EdwardsPoint, r: Scalar, torsion: EdwardsPoint, body: &[u8]) -> Envelope {
    let template = honest(1, body);
    let (mut header, body, _) = template.into_parts();
    header.origin = PublicKey(a_point.compress().0);
    let signature = raw_sign(a, a_point, r, torsion, &header.signing_bytes());
    Envelope::from_parts(header, body, signature).expect("parts")
}

fn single(envelopes: &[Envelope]) -> Vec<bool> {
    envelopes.iter().map(|e| e.clone().verify(&NET).is_ok()).collect()
}

fn batched(envelopes: &[Envelope]) -> Vec<bool> {
    let mut keys = KeyCache::new(64);
    verify_batch(envelopes.to_vec(), &NET, &mut keys).into_iter().map(|r| r.is_ok()).collect()
}

#[test]
fn all_valid_batch_is_accepted_and_ids_match() {
    let envelopes: Vec<Envelope> = (1..=64).map(|i| honest(i, &[i; 100])).collect();
    let mut keys = KeyCache::new(64);
    let results = verify_batch(envelopes.clone(), &NET, &mut keys);
    for (e, r) in envelopes.iter().zip(results) {
        assert_eq!(r.expect("valid").id(), e.id());
    }
}

#[test]
fn one_bad_signature_is_named_and_the_rest_accepted() {
    let mut envelopes: Vec<Envelope> = (1..=16).map(|i| honest(i, b"v")).collect();
    let (header, body, mut sig) = envelopes[5].clone().into_parts();
    sig.0[40] ^= 1;
    envelopes[5] = Envelope::from_parts(header, body, sig).expect("parts");
    let mut wrong_net = honest(30, b"w").into_parts();
    wrong_net.0.network = NetworkId([4; 32]);
    envelopes.push(Envelope::from_parts(wrong_net.0, wrong_net.1, wrong_net.2).expect("parts"));
    let mut keys = KeyCache::new(64);
    let results = verify_batch(envelopes, &NET, &mut keys);
    for (i, r) in results.iter().enumerate() {
        match i {
            5 => assert_eq!(r.as_ref().err(), Some(&VerifyError::BadSignature)),
            16 => assert_eq!(r.as_ref().err(), Some(&VerifyError::WrongNetwork)),
            _ => assert!(r.is_ok(), "{i}"),
        }
    }
}

/// A mixed-order `R` (prime-order part plus an 8-torsion point) from a signer who knows its
/// key: `verify_strict` refuses it, and raw dalek batch verification accepts it whenever the
/// transcript's random coefficient kills the torsion (about 1 in 8 messages). Ours refuses it
/// always.
#[test]
fn mixed_order_nonce_is_refused_by_batch_exactly_like_verify_strict() {
    let a = Scalar::from(123_456_789u64);
    let a_point = a * B;
    let t = EIGHT_TORSION[1]; // order 8
    let mut raw_batch_accepted = 0;
    for i in 0..64u64 {
        let body = i.to_be_bytes();
        let e = crafted(a, a_point, Scalar::from(1000 + i), t, &body);
        let set = vec![honest(2, b"x"), e.clone(), honest(3, b"y")];
        assert_eq!(single(&set), vec![true, false, true]);
        assert_eq!(batched(&set), single(&set), "message {i}");

        // The raw dalek batch, for contrast.
        let msg = e.header().signing_bytes();
        let sig = ed25519_dalek::Signature::from_bytes(e.signature().as_bytes());
        let key = ed25519_dalek::VerifyingKey::from_bytes(e.origin().as_bytes()).expect("key");
        if ed25519_dalek::verify_batch(&[&msg[..]], &[sig], &[key]).is_ok() {
            raw_batch_accepted += 1;
        }
    }
    assert!(raw_batch_accepted > 0, "the raw batch check should accept some mixed-order nonces");
}

/// A key with a torsion component, signing so that the torsion cancels exactly: both rules
/// accept it, and a failed cancellation is refused by both.
#[test]
fn mixed_order_key_gets_the_same_verdict_both_ways() {
    let a = Scalar::from(987_654_321u64);
    let t = EIGHT_TORSION[1];
    let a_point = a * B + t;
    let mut accepted = 0;
    for i in 0..64u64 {
        for nonce_torsion in EIGHT_TORSION {
            let body = i.to_be_bytes();
            // A = aB + t, so the residual is t_R + h t; with s = r + h a it is zero for one
            // t_R out of eight.
            let e = crafted(a, a_point, Scalar::from(5000 + i), nonce_torsion, &body);
            let set = vec![e, honest(4, b"z")];
            let s = single(&set);
            assert_eq!(batched(&set), s, "message {i}");
            accepted += s[0] as usize;
        }
    }
    assert!(accepted > 0, "some cancelling signatures should be valid under verify_strict");
}

#[test]
fn small_order_nonce_and_non_canonical_s_agree() {
    let good = honest(5, b"n");
    let (header, body, sig) = good.clone().into_parts();
    // R = identity (small order), s = 0: with the identity as key this is the classic
    // "valid for every message" signature; with a real key it must simply fail.
    let mut small_r = [0u8; 64];
    small_r[0] = 1;
    let mut big_s = sig.0;
    big_s[63] |= 0xf0; // s >= 2^252 > l: not canonical
    // R encoded non-canonically as y = p + 1 (the identity again).
    let mut non_canonical_r = sig.0;
    non_canonical_r[..32].copy_from_slice(&[0xff; 32]);
    non_canonical_r[0] = 0xee;
    non_canonical_r[31] = 0x7f;
    let set = vec![
        Envelope::from_parts(header, body.clone(), Signature(non_canonical_r)).expect("parts"),
        Envelope::from_parts(header, body.clone(), Signature(small_r)).expect("parts"),
        Envelope::from_parts(header, body, Signature(big_s)).expect("parts"),
        good,
    ];
    assert_eq!(single(&set), vec![false, false, false, true]);
    assert_eq!(batched(&set), single(&set));
}

#[test]
fn identity_key_with_identity_signature_is_refused() {
    let (mut header, body, _) = honest(6, b"i").into_parts();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    header.origin = PublicKey(identity);
    let mut sig = [0u8; 64];
    sig[0] = 1;
    let set = vec![Envelope::from_parts(header, body, Signature(sig)).expect("parts")];
    assert_eq!(single(&set), vec![false]);
    assert_eq!(batched(&set), vec![false]);
    let _ = Header::id; // the header type is part of the public API used above
}
