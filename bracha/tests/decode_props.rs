//! The Bracha decoders under property tests (issue 11, point 8): SEND/ECHO/READY bodies
//! (`Message::from_envelope`), delivery certificates (`Certificate::decode`, which sync
//! carries) and equivocation evidence (`Evidence::decode`, gossiped as `Kind::Evidence`).
//!
//! Valid values of every shape are generated (messages of the three kinds, certificates of
//! 2f+1 to n signed READYs in committees of 1 to 10, evidence of conflicting SENDs, ECHOs and
//! READYs), encoded, then mutated (`crypto/tests/support/mutation.rs`: bit flips, truncation,
//! insertions, duplicated ranges, splices from another valid encoding, length prefixes
//! inflated to huge values). Whatever decodes re-encodes to the same bytes (all three codecs
//! are canonical), verification never panics, and anything that still verifies is made only
//! of envelopes a member really signed. A child process checks that small inputs claiming
//! huge lengths never grow the heap beyond the documented bounds (`support/probe.rs`).
//!
//! Case counts keep a debug `cargo test` of this file to a few seconds; the long run is
//! `PROPTEST_CASES=100000 cargo test --release -p byzgossip-bracha --test decode_props`.

use byzgossip_bracha::{Certificate, Evidence, InstanceId, MAX_VALUE_LEN, Message};
use byzgossip_crypto::codec::{self, MAX_ENVELOPE_LEN};
use byzgossip_crypto::{Committee, Digest, Envelope, Keypair, Kind, NetworkId};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use std::sync::OnceLock;

#[path = "../../crypto/tests/support/mutation.rs"]
mod mutation;
#[path = "../../crypto/tests/support/probe.rs"]
mod probe;

/// Proptest settings: `default` cases unless `PROPTEST_CASES` says otherwise.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

const NET: NetworkId = NetworkId([5; 32]);
/// Committee sizes under test: f = 0, 1, 2, 3.
const SIZES: [usize; 4] = [1, 4, 7, 10];

struct Fixture {
    keys: Vec<Keypair>,
    committee: Committee,
}

/// The committee of `n` members (keys shared across sizes, so a smaller committee's READYs
/// appear in a larger one's certificates too).
fn fixture(n: usize) -> &'static Fixture {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    let all = FIXTURES.get_or_init(|| {
        SIZES
            .iter()
            .map(|&n| {
                let keys: Vec<Keypair> = (0..n).map(|i| Keypair::from_secret_bytes(&[i as u8 + 10; 32])).collect();
                let committee = Committee::new(keys.iter().map(Keypair::public).collect(), (n - 1) / 3).expect("committee");
                Fixture { keys, committee }
            })
            .collect()
    });
    &all[SIZES.iter().position(|s| *s == n).expect("a size under test")]
}

fn size() -> impl Strategy<Value = usize> {
    select(SIZES.to_vec())
}

fn instance(n: usize) -> impl Strategy<Value = InstanceId> {
    (0..n, prop_oneof![0u64..8, any::<u64>()]).prop_map(move |(o, seq)| InstanceId { origin: fixture(n).keys[o].public(), seq })
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..128)
}

/// A message of any kind, and who signs it (the origin for a SEND, any member for a vote).
fn message() -> impl Strategy<Value = (usize, usize, Message)> {
    size().prop_flat_map(|n| {
        (instance(n), value(), 0..n, 0u8..3).prop_map(move |(instance, value, voter, kind)| {
            let digest = Digest::of(&value);
            let origin = fixture(n).keys.iter().position(|k| k.public() == instance.origin).expect("member");
            match kind {
                0 => (n, origin, Message::Send { instance, value }),
                1 => (n, voter, Message::Echo { instance, digest }),
                _ => (n, voter, Message::Ready { instance, digest }),
            }
        })
    })
}

fn seal(n: usize, signer: usize, message: &Message) -> Envelope {
    message.seal(&fixture(n).keys[signer], NET, 1_700_000_000_000).expect("seal")
}

/// What must hold for any envelope handed to the message decoder: no panic, and an accepted
/// message is the canonical encoding of its body, follows the seq convention, keeps the value
/// limit, and a SEND comes from its origin.
fn check_message(envelope: &Envelope, max_value_len: usize) -> Result<(), TestCaseError> {
    let Ok(message) = Message::from_envelope(envelope, max_value_len) else { return Ok(()) };
    prop_assert_eq!(message.encode_body(), envelope.body(), "not the canonical body");
    prop_assert_eq!(message.kind(), envelope.header().kind);
    prop_assert_eq!(message.instance().seq, envelope.header().seq);
    if let Message::Send { instance, value } = &message {
        prop_assert!(value.len() <= max_value_len);
        prop_assert_eq!(instance.origin, envelope.origin());
    }
    Ok(())
}

fn bracha_kind() -> impl Strategy<Value = Kind> {
    select(vec![Kind::BrachaSend, Kind::BrachaEcho, Kind::BrachaReady])
}

proptest! {
    #![proptest_config(cases(512))]

    /// Arbitrary bodies in envelopes of every kind (Bracha kinds mostly).
    #[test]
    fn message_decoder_survives_arbitrary_bodies(
        kind in prop_oneof![4 => bracha_kind(), 1 => select(Kind::ALL.to_vec())],
        seq in prop_oneof![0u64..4, any::<u64>()],
        body in vec(any::<u8>(), 0..256),
        max_value_len in prop_oneof![Just(MAX_VALUE_LEN), 0usize..300],
    ) {
        let envelope = Envelope::seal(&fixture(4).keys[0], NET, kind, seq, 0, body).expect("seal");
        check_message(&envelope, max_value_len)?;
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn messages_of_every_kind_round_trip((n, signer, message) in message()) {
        let envelope = seal(n, signer, &message);
        prop_assert_eq!(Message::from_envelope(&envelope, MAX_VALUE_LEN), Ok(message));
        let bytes = codec::encode_envelope(&envelope);
        let decoded = codec::decode_envelope(&bytes, MAX_ENVELOPE_LEN).expect("decodes");
        check_message(&decoded, MAX_VALUE_LEN)?;
    }

    /// Edited bodies, re-signed so the envelope itself is valid: only the body decoder stands
    /// between them and the state machine.
    #[test]
    fn edited_message_bodies_never_panic(
        (n, signer, message) in message(),
        (_, _, donor) in message(),
        edits in mutation::edits(),
        max_value_len in prop_oneof![Just(MAX_VALUE_LEN), 0usize..200],
    ) {
        let body = mutation::apply(&message.encode_body(), &edits, &donor.encode_body());
        let header = seal(n, signer, &message);
        let header = header.header();
        let envelope = Envelope::seal(&fixture(n).keys[signer], NET, header.kind, header.seq, 0, body).expect("seal");
        check_message(&envelope, max_value_len)?;
    }

    /// Edited envelope bytes: decode, then the message decoder; nothing that was edited
    /// verifies.
    #[test]
    fn edited_message_envelopes_never_panic((n, signer, message) in message(), (dn, ds, donor) in message(), edits in mutation::edits()) {
        let original = codec::encode_envelope(&seal(n, signer, &message));
        let donor = codec::encode_envelope(&seal(dn, ds, &donor));
        let edited = mutation::apply(&original, &edits, &donor);
        if let Ok(envelope) = codec::decode_envelope(&edited, MAX_ENVELOPE_LEN) {
            check_message(&envelope, MAX_VALUE_LEN)?;
            if envelope.clone().verify(&NET).is_ok() {
                prop_assert!(edited == original || edited == donor, "an edited envelope verifies");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Certificates.

/// A valid certificate: 2f+1 to n READYs of distinct members, in any order.
fn certificate() -> impl Strategy<Value = (usize, Certificate)> {
    size().prop_flat_map(|n| {
        let quorum = 2 * ((n - 1) / 3) + 1;
        let signers = proptest::sample::subsequence((0..n).collect::<Vec<_>>(), quorum..=n).prop_shuffle();
        (instance(n), value(), signers, vec(any::<u64>(), n)).prop_map(move |(instance, value, signers, times)| {
            let digest = Digest::of(&value);
            let readys = signers
                .iter()
                .map(|&i| Message::Ready { instance, digest }.seal(&fixture(n).keys[i], NET, times[i]).expect("seal"))
                .collect();
            (n, Certificate { instance, digest, readys })
        })
    })
}

/// What must hold for any bytes handed to the certificate decoder: no panic; a decoded
/// certificate re-encodes to the input; verifying it against every committee never panics,
/// and a certificate that verifies has at least 2f+1 READYs, every one of them among the
/// `signed` ones, for its instance and digest.
fn check_certificate_bytes(bytes: &[u8], signed: &[&Certificate]) -> Result<(), TestCaseError> {
    check_certificate_bytes_in(bytes, signed, &SIZES)
}

/// [`check_certificate_bytes`] with the committees of the given sizes only.
fn check_certificate_bytes_in(bytes: &[u8], signed: &[&Certificate], sizes: &[usize]) -> Result<(), TestCaseError> {
    let Ok(certificate) = Certificate::decode(bytes, MAX_ENVELOPE_LEN) else { return Ok(()) };
    prop_assert_eq!(certificate.encode(), bytes, "decode then encode changed the bytes");
    for &n in sizes {
        let committee = &fixture(n).committee;
        if let Ok(verified) = certificate.clone().verify(committee, &NET) {
            prop_assert!(verified.readys.len() > 2 * committee.f());
            for ready in &verified.readys {
                prop_assert!(
                    signed.iter().any(|c| c.readys.contains(ready)),
                    "a READY nobody signed is in a verified certificate"
                );
                let vote = Message::from_envelope(ready, 0);
                prop_assert_eq!(vote, Ok(Message::Ready { instance: verified.instance, digest: verified.digest }));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn certificate_decoder_survives_arbitrary_bytes(bytes in vec(any::<u8>(), 0..1024)) {
        check_certificate_bytes(&bytes, &[])?;
    }
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn certificates_round_trip_and_verify((n, certificate) in certificate()) {
        let bytes = certificate.encode();
        prop_assert_eq!(&Certificate::decode(&bytes, MAX_ENVELOPE_LEN).expect("decodes"), &certificate);
        prop_assert!(certificate.clone().verify(&fixture(n).committee, &NET).is_ok());
        check_certificate_bytes(&bytes, &[&certificate])?;
    }

    #[test]
    fn edited_certificates_never_panic_and_never_verify_with_forged_readys(
        (_, certificate) in certificate(),
        (_, donor) in certificate(),
        edits in mutation::edits(),
    ) {
        let edited = mutation::apply(&certificate.encode(), &edits, &donor.encode());
        check_certificate_bytes(&edited, &[&certificate, &donor])?;
    }

    /// The READY list edited as values (dropped, repeated, swapped for another certificate's,
    /// or one READY's bytes edited): verification refuses what is not a quorum of genuine,
    /// distinct READYs for the instance and digest.
    #[test]
    fn certificates_with_edited_ready_lists_verify_only_when_still_a_quorum(
        (n, certificate) in certificate(),
        (_, donor) in certificate(),
        drop in any::<Index>(),
        repeat in any::<Index>(),
        take in any::<Index>(),
        edits in mutation::edits(),
        choice in 0u8..4,
    ) {
        let mut edited = certificate.clone();
        let len = edited.readys.len();
        match choice {
            0 => { edited.readys.remove(drop.index(len)); }
            1 => { let r = edited.readys[repeat.index(len)].clone(); edited.readys.push(r); }
            2 => { edited.readys[drop.index(len)] = donor.readys[take.index(donor.readys.len())].clone(); }
            _ => {
                let at = drop.index(len);
                let bytes = mutation::apply(&codec::encode_envelope(&edited.readys[at]), &edits, &[]);
                match codec::decode_envelope(&bytes, MAX_ENVELOPE_LEN) {
                    Ok(e) => edited.readys[at] = e,
                    Err(_) => return Ok(()),
                }
            }
        }
        let committee = &fixture(n).committee;
        let quorum = 2 * committee.f() + 1;
        let genuine = edited.readys.iter().all(|r| certificate.readys.contains(r));
        let mut signers: Vec<_> = edited.readys.iter().map(Envelope::origin).collect();
        signers.sort();
        signers.dedup();
        let expected = genuine && signers.len() == edited.readys.len() && edited.readys.len() >= quorum;
        prop_assert_eq!(edited.clone().verify(committee, &NET).is_ok(), expected);
        check_certificate_bytes(&edited.encode(), &[&certificate, &donor])?;
    }
}

/// One small certificate per committee size.
fn sample_certificates() -> Vec<Certificate> {
    SIZES
        .iter()
        .map(|&n| {
            let instance = InstanceId { origin: fixture(n).keys[0].public(), seq: 3 };
            let digest = Digest::of(b"v");
            let quorum = 2 * ((n - 1) / 3) + 1;
            let readys = (0..quorum)
                .map(|i| Message::Ready { instance, digest }.seal(&fixture(n).keys[i], NET, 9).expect("seal"))
                .collect();
            Certificate { instance, digest, readys }
        })
        .collect()
}

#[test]
fn every_strict_prefix_of_a_certificate_is_refused() {
    for certificate in sample_certificates() {
        let bytes = certificate.encode();
        for cut in 0..bytes.len() {
            assert!(Certificate::decode(&bytes[..cut], MAX_ENVELOPE_LEN).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Certificate::decode(&longer, MAX_ENVELOPE_LEN).is_err(), "trailing byte");
        assert!(Certificate::decode(&bytes, bytes.len() - 1).is_err(), "over the caller's limit");
    }
}

#[test]
fn a_huge_value_at_every_offset_of_a_certificate_is_refused_or_re_encodes() {
    let certificates = sample_certificates();
    let signed: Vec<&Certificate> = certificates.iter().collect();
    // n = 1 and n = 4: one and three READYs. Decoding only: verification of edited
    // certificates is the proptests' job.
    for certificate in &certificates[..2] {
        let bytes = certificate.encode();
        for edited in mutation::inflated_everywhere(&bytes) {
            if let Err(e) = check_certificate_bytes_in(&edited, &signed, &[]) {
                panic!("{e}");
            }
        }
    }
}

/// Serde pre-sizes a sequence from its length prefix (capped at 1 MiB whatever the prefix
/// claims), on top of the byte fields that the codec lets claim up to `MAX_ENVELOPE_LEN`; so
/// a tiny input may briefly cost up to twice `MAX_ENVELOPE_LEN`, never more.
const SEQUENCE_DECODE_BOUND: usize = 2 * MAX_ENVELOPE_LEN;

/// Small certificates with a huge value at every offset, and edited ones, stay within four
/// times the input plus [`SEQUENCE_DECODE_BOUND`].
#[test]
fn certificate_decode_allocates_within_its_bound() {
    probe::run(
        "certificate_decode_allocates_within_its_bound",
        || {
            let mut corpus = Vec::new();
            for certificate in &sample_certificates()[..2] {
                let bytes = certificate.encode();
                corpus.extend(mutation::inflated_everywhere(&bytes));
                corpus.extend(mutation::inflated_pairs(&bytes));
                corpus.push(bytes);
            }
            let strategy = (certificate(), certificate(), mutation::edits());
            corpus.extend(
                mutation::generate(&strategy, 500)
                    .into_iter()
                    .map(|((_, c), (_, d), edits)| mutation::apply(&c.encode(), &edits, &d.encode())),
            );
            corpus
        },
        |max_input| 4 * max_input + SEQUENCE_DECODE_BOUND,
        |bytes| {
            let _ = std::hint::black_box(Certificate::decode(bytes, MAX_ENVELOPE_LEN));
        },
    );
}

// ---------------------------------------------------------------------------------------
// Evidence.

/// Valid evidence: two conflicting signed messages of one member for one instance.
fn evidence() -> impl Strategy<Value = (usize, Evidence)> {
    size().prop_flat_map(|n| {
        (instance(n), value(), value(), 0..n, 0u8..3, any::<bool>()).prop_filter_map(
            "values must differ",
            move |(instance, a, b, voter, kind, swap)| {
                if a == b {
                    return None;
                }
                let origin = fixture(n).keys.iter().position(|k| k.public() == instance.origin).expect("member");
                let (signer, first, second) = match kind {
                    0 => (origin, Message::Send { instance, value: a }, Message::Send { instance, value: b }),
                    1 => (voter, Message::Echo { instance, digest: Digest::of(&a) }, Message::Echo { instance, digest: Digest::of(&b) }),
                    _ => (voter, Message::Ready { instance, digest: Digest::of(&a) }, Message::Ready { instance, digest: Digest::of(&b) }),
                };
                let (first, second) = (seal(n, signer, &first), seal(n, signer, &second));
                let (first, second) = if swap { (second, first) } else { (first, second) };
                Some((n, Evidence { first, second }))
            },
        )
    })
}

/// What must hold for any bytes handed to the evidence decoder: no panic; decoded evidence
/// re-encodes to the input; verification never panics, and evidence that verifies is made of
/// two `signed` envelopes of its offender that really conflict.
fn check_evidence_bytes(bytes: &[u8], signed: &[&Evidence]) -> Result<(), TestCaseError> {
    check_evidence_bytes_in(bytes, signed, &SIZES)
}

/// [`check_evidence_bytes`] with the committees of the given sizes only.
fn check_evidence_bytes_in(bytes: &[u8], signed: &[&Evidence], sizes: &[usize]) -> Result<(), TestCaseError> {
    let Ok(evidence) = Evidence::decode(bytes, MAX_ENVELOPE_LEN) else { return Ok(()) };
    prop_assert_eq!(evidence.encode(), bytes, "decode then encode changed the bytes");
    let _ = (evidence.instance(), evidence.digest(), evidence.offender());
    for &n in sizes {
        if let Ok(offender) = evidence.verify(&fixture(n).committee, &NET) {
            prop_assert_eq!(offender, evidence.first.origin());
            let genuine = |e: &Envelope| signed.iter().any(|s| s.first == *e || s.second == *e);
            prop_assert!(genuine(&evidence.first) && genuine(&evidence.second), "verified evidence with an envelope nobody signed");
            prop_assert_ne!(&evidence.first, &evidence.second);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn evidence_decoder_survives_arbitrary_bytes(bytes in vec(any::<u8>(), 0..1024)) {
        check_evidence_bytes(&bytes, &[])?;
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn evidence_of_every_kind_round_trips_and_verifies((n, evidence) in evidence()) {
        let bytes = evidence.encode();
        prop_assert_eq!(&Evidence::decode(&bytes, MAX_ENVELOPE_LEN).expect("decodes"), &evidence);
        prop_assert_eq!(evidence.verify(&fixture(n).committee, &NET), Ok(evidence.first.origin()));
        check_evidence_bytes(&bytes, &[&evidence])?;
    }

    #[test]
    fn edited_evidence_never_panics_and_never_verifies_with_forged_messages(
        (_, evidence) in evidence(),
        (_, donor) in evidence(),
        edits in mutation::edits(),
    ) {
        let edited = mutation::apply(&evidence.encode(), &edits, &donor.encode());
        check_evidence_bytes(&edited, &[&evidence, &donor])?;
    }
}

#[test]
fn every_strict_prefix_of_evidence_is_refused_and_a_huge_value_anywhere_is_safe() {
    for (_, sample) in mutation::generate(&evidence(), 2) {
        let bytes = sample.encode();
        for cut in 0..bytes.len() {
            assert!(Evidence::decode(&bytes[..cut], MAX_ENVELOPE_LEN).is_err(), "cut at {cut}");
        }
        for edited in mutation::inflated_everywhere(&bytes) {
            // Decoding only: verification of edited evidence is the proptests' job.
            if let Err(e) = check_evidence_bytes_in(&edited, &[&sample], &[]) {
                panic!("{e}");
            }
        }
    }
}

/// Small evidence with a huge value at every offset, and edited evidence, stays within four
/// times the input plus `MAX_ENVELOPE_LEN` (the codec's documented bound for byte fields; the
/// evidence body has no sequence).
#[test]
fn evidence_decode_allocates_within_its_bound() {
    probe::run(
        "evidence_decode_allocates_within_its_bound",
        || {
            let samples = mutation::generate(&evidence(), 3);
            let mut corpus = Vec::new();
            for (_, evidence) in &samples {
                let bytes = evidence.encode();
                corpus.extend(mutation::inflated_everywhere(&bytes));
                corpus.extend(mutation::inflated_pairs(&bytes));
                corpus.push(bytes);
            }
            let strategy = (evidence(), evidence(), mutation::edits());
            corpus.extend(
                mutation::generate(&strategy, 1000)
                    .into_iter()
                    .map(|((_, e), (_, d), edits)| mutation::apply(&e.encode(), &edits, &d.encode())),
            );
            corpus
        },
        |max_input| 4 * max_input + MAX_ENVELOPE_LEN,
        |bytes| {
            let _ = std::hint::black_box(Evidence::decode(bytes, MAX_ENVELOPE_LEN));
        },
    );
}
