//! The node's decoders of network input under property tests (issue 11, point 8): sync
//! requests and responses read through `SyncCodec` exactly as libp2p hands it a stream (a
//! u32 length prefix, then the codec-encoded frame), the items a response carries
//! (certificates and gossip envelopes, decoded as the runtime decodes them), and gossip
//! bodies (`GossipBody::decode`).
//!
//! Valid requests and responses are generated, framed, then mutated (the frame and its
//! payload separately: `crypto/tests/support/mutation.rs`). Whatever decodes re-encodes to
//! the same frame (the codec is canonical) and respects the item and origin limits; a child
//! process checks that small streams claiming huge lengths never grow the heap beyond the
//! documented bounds (`support/probe.rs`).
//!
//! Case counts keep a debug `cargo test` of this file to a few seconds; the long run is
//! `PROPTEST_CASES=100000 cargo test --release -p byzgossip-node --test decode_props`.

use byzgossip_bracha::{Certificate, InstanceId, Message};
use byzgossip_crypto::codec::{self, MAX_ENVELOPE_LEN};
use byzgossip_crypto::{Digest, Envelope, Keypair, Kind, NetworkId, PublicKey};
use byzgossip_node::gossip::GossipBody;
use byzgossip_node::sync::{
    GossipMark, MAX_DIGEST_ORIGINS, MAX_SYNC_FRAME, MAX_SYNC_ITEMS, OriginMark, PROTOCOL, SyncCodec, SyncRequest, SyncResponse,
    SyncedDelivery,
};
use libp2p::request_response::Codec as _;
use proptest::collection::vec;
use proptest::prelude::*;
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

fn keys() -> &'static [Keypair] {
    static KEYS: OnceLock<Vec<Keypair>> = OnceLock::new();
    KEYS.get_or_init(|| (0..4u8).map(|i| Keypair::from_secret_bytes(&[i + 20; 32])).collect())
}

// ---------------------------------------------------------------------------------------
// The sync codec, driven the way libp2p drives it.

fn read_request(stream: &[u8]) -> std::io::Result<SyncRequest> {
    futures::executor::block_on(SyncCodec::default().read_request(&PROTOCOL, &mut futures::io::Cursor::new(stream)))
}

fn read_response(stream: &[u8]) -> std::io::Result<SyncResponse> {
    futures::executor::block_on(SyncCodec::default().read_response(&PROTOCOL, &mut futures::io::Cursor::new(stream)))
}

fn write_request(request: SyncRequest) -> Vec<u8> {
    let mut out = Vec::new();
    futures::executor::block_on(SyncCodec::default().write_request(&PROTOCOL, &mut futures::io::Cursor::new(&mut out), request))
        .expect("write request");
    out
}

fn write_response(response: SyncResponse) -> Vec<u8> {
    let mut out = Vec::new();
    futures::executor::block_on(SyncCodec::default().write_response(&PROTOCOL, &mut futures::io::Cursor::new(&mut out), response))
        .expect("write response");
    out
}

/// A stream made of a length prefix and `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// The frame a successful read consumed: the prefix and the length it names.
fn consumed(stream: &[u8]) -> &[u8] {
    let len = u32::from_be_bytes(stream[..4].try_into().expect("4 bytes")) as usize;
    &stream[..4 + len]
}

// ---------------------------------------------------------------------------------------
// Generators.

fn public_key() -> impl Strategy<Value = PublicKey> {
    prop_oneof![(0..4usize).prop_map(|i| keys()[i].public()), any::<[u8; 32]>().prop_map(PublicKey)]
}

fn mark() -> impl Strategy<Value = OriginMark> {
    (public_key(), prop_oneof![0u64..16, any::<u64>()]).prop_map(|(origin, next)| OriginMark { origin, next })
}

fn gossip_mark() -> impl Strategy<Value = GossipMark> {
    (public_key(), prop_oneof![0u64..16, any::<u64>()], vec(any::<u64>(), 0..=byzgossip_engine::gossip::MAX_GAPS_PER_ORIGIN))
        .prop_map(|(origin, next, gaps)| GossipMark { origin, next, gaps })
}

fn request() -> impl Strategy<Value = SyncRequest> {
    prop_oneof![
        (vec(mark(), 0..24), vec(gossip_mark(), 0..24)).prop_map(|(bracha, gossip)| SyncRequest::Digest { bracha, gossip }),
        (public_key(), any::<u64>(), any::<[u8; 32]>())
            .prop_map(|(origin, seq, digest)| SyncRequest::Value { origin, seq, digest: Digest(digest) }),
    ]
}

/// A certificate of 3 READYs (n = 4) for `value`, encoded as sync carries it.
fn delivery() -> impl Strategy<Value = SyncedDelivery> {
    (0..4usize, 0u64..8, vec(any::<u8>(), 0..64)).prop_map(|(origin, seq, value)| {
        let instance = InstanceId { origin: keys()[origin].public(), seq };
        let digest = Digest::of(&value);
        let readys = (0..3).map(|i| Message::Ready { instance, digest }.seal(&keys()[i], NET, 11).expect("seal")).collect();
        SyncedDelivery { certificate: Certificate { instance, digest, readys }.encode(), value }
    })
}

fn gossip_body() -> impl Strategy<Value = GossipBody> {
    (prop_oneof!["[a-z]{0,12}", "\\PC{0,16}"], vec(any::<u8>(), 0..96)).prop_map(|(topic, payload)| GossipBody { topic, payload })
}

/// A gossip envelope, encoded.
fn gossip_envelope() -> impl Strategy<Value = Vec<u8>> {
    (0..4usize, any::<u64>(), gossip_body()).prop_map(|(k, seq, body)| {
        codec::encode_envelope(&Envelope::seal(&keys()[k], NET, Kind::Gossip, seq, 5, body.encode()).expect("seal"))
    })
}

fn response() -> impl Strategy<Value = SyncResponse> {
    prop_oneof![
        3 => (vec(delivery(), 0..3), vec(gossip_envelope(), 0..4)).prop_map(|(deliveries, gossip)| SyncResponse::Catchup {
            deliveries,
            gossip: gossip.into_iter().map(serde_bytes::ByteBuf::from).collect(),
            evidence: vec![],
        }),
        1 => proptest::option::of(vec(any::<u8>(), 0..128))
            .prop_map(|value| SyncResponse::Value(value.map(serde_bytes::ByteBuf::from))),
    ]
}

// ---------------------------------------------------------------------------------------
// What must hold.

/// Any stream handed to the request reader: no panic, and an accepted request re-encodes to
/// the frame that was read and names at most `MAX_DIGEST_ORIGINS` origins.
fn check_request_stream(stream: &[u8]) -> Result<(), TestCaseError> {
    let Ok(request) = read_request(stream) else { return Ok(()) };
    if let SyncRequest::Digest { bracha, gossip } = &request {
        prop_assert!(bracha.len() + gossip.len() <= MAX_DIGEST_ORIGINS);
    }
    prop_assert_eq!(write_request(request), consumed(stream), "decode then encode changed the frame");
    Ok(())
}

/// Any stream handed to the response reader: no panic; an accepted response re-encodes to
/// the frame that was read and carries at most `MAX_SYNC_ITEMS` items; and every item decodes
/// as the runtime decodes it (certificates, gossip envelopes, their bodies) without panic and
/// canonically.
fn check_response_stream(stream: &[u8]) -> Result<(), TestCaseError> {
    let Ok(response) = read_response(stream) else { return Ok(()) };
    prop_assert_eq!(write_response(response.clone()), consumed(stream), "decode then encode changed the frame");
    if let SyncResponse::Catchup { deliveries, gossip, evidence } = response {
        prop_assert!(deliveries.len() + gossip.len() + evidence.len() <= MAX_SYNC_ITEMS);
        for delivery in deliveries {
            if let Ok(certificate) = Certificate::decode(&delivery.certificate, MAX_ENVELOPE_LEN) {
                prop_assert_eq!(certificate.encode(), delivery.certificate);
            }
        }
        for bytes in gossip {
            if let Ok(envelope) = codec::decode_envelope(&bytes, MAX_ENVELOPE_LEN) {
                prop_assert_eq!(&codec::encode_envelope(&envelope), &*bytes);
                check_gossip_body(envelope.body(), MAX_ENVELOPE_LEN)?;
            }
        }
    }
    Ok(())
}

/// Any gossip body: no panic; an accepted body is within `max_len` and re-encodes to itself.
fn check_gossip_body(bytes: &[u8], max_len: usize) -> Result<(), TestCaseError> {
    if let Some(body) = GossipBody::decode(bytes, max_len) {
        prop_assert!(bytes.len() <= max_len);
        prop_assert_eq!(body.encode(), bytes, "decode then encode changed the body");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn sync_readers_survive_arbitrary_streams(stream in vec(any::<u8>(), 0..1024)) {
        check_request_stream(&stream)?;
        check_response_stream(&stream)?;
    }

    /// A correct length prefix around arbitrary bytes, so decoding reaches the payload.
    #[test]
    fn sync_readers_survive_arbitrary_frames(payload in vec(any::<u8>(), 0..1024)) {
        let stream = frame(&payload);
        check_request_stream(&stream)?;
        check_response_stream(&stream)?;
    }

    #[test]
    fn gossip_body_decoder_survives_arbitrary_bytes(bytes in vec(any::<u8>(), 0..512), max_len in prop_oneof![Just(MAX_ENVELOPE_LEN), 0usize..600]) {
        check_gossip_body(&bytes, max_len)?;
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn sync_requests_round_trip(request in request()) {
        let stream = write_request(request.clone());
        prop_assert_eq!(read_request(&stream).expect("valid request reads"), request);
        check_request_stream(&stream)?;
    }

    #[test]
    fn sync_responses_round_trip(response in response()) {
        let stream = write_response(response.clone());
        prop_assert_eq!(read_response(&stream).expect("valid response reads"), response);
        check_response_stream(&stream)?;
    }

    #[test]
    fn gossip_bodies_round_trip(body in gossip_body()) {
        let bytes = body.encode();
        prop_assert_eq!(GossipBody::decode(&bytes, MAX_ENVELOPE_LEN), Some(body));
        prop_assert_eq!(GossipBody::decode(&bytes, bytes.len().saturating_sub(1)), None);
        check_gossip_body(&bytes, MAX_ENVELOPE_LEN)?;
    }

    /// Edits of the payload inside a correct length prefix, and of the whole stream.
    #[test]
    fn edited_sync_requests_never_panic(request in request(), donor in request(), edits in mutation::edits(), whole in any::<bool>()) {
        let stream = write_request(request);
        let donor = write_request(donor);
        let edited = if whole {
            mutation::apply(&stream, &edits, &donor)
        } else {
            frame(&mutation::apply(&stream[4..], &edits, &donor[4..]))
        };
        check_request_stream(&edited)?;
    }

    #[test]
    fn edited_sync_responses_never_panic(response in response(), donor in response(), edits in mutation::edits(), whole in any::<bool>()) {
        let stream = write_response(response);
        let donor = write_response(donor);
        let edited = if whole {
            mutation::apply(&stream, &edits, &donor)
        } else {
            frame(&mutation::apply(&stream[4..], &edits, &donor[4..]))
        };
        check_response_stream(&edited)?;
    }

    #[test]
    fn edited_gossip_bodies_never_panic(body in gossip_body(), donor in gossip_body(), edits in mutation::edits(), max_len in prop_oneof![Just(MAX_ENVELOPE_LEN), 0usize..200]) {
        let bytes = mutation::apply(&body.encode(), &edits, &donor.encode());
        check_gossip_body(&bytes, max_len)?;
    }
}

/// Small valid streams: a digest of a few marks and a value request; a response with one
/// delivery and two gossip envelopes, and a value answer.
fn sample_streams() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let marks = |k: u64| (0..3).map(|i| OriginMark { origin: keys()[i].public(), next: k + i as u64 }).collect();
    let requests = vec![
        write_request(SyncRequest::Digest {
            bracha: marks(1),
            gossip: (0..3).map(|i| GossipMark { origin: keys()[i].public(), next: 7 + i as u64, gaps: vec![i as u64] }).collect(),
        }),
        write_request(SyncRequest::Value { origin: keys()[1].public(), seq: 2, digest: Digest::of(b"v") }),
    ];
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let delivery = proptest::strategy::ValueTree::current(&delivery().new_tree(&mut runner).expect("delivery"));
    let gossip = mutation::generate(&gossip_envelope(), 2).into_iter().map(serde_bytes::ByteBuf::from).collect();
    let responses = vec![
        write_response(SyncResponse::Catchup { deliveries: vec![delivery], gossip, evidence: vec![] }),
        write_response(SyncResponse::Value(Some(serde_bytes::ByteBuf::from(b"value".to_vec())))),
    ];
    (requests, responses)
}

#[test]
fn every_strict_prefix_of_a_sync_frame_is_refused() {
    let (requests, responses) = sample_streams();
    for stream in &requests {
        for cut in 0..stream.len() {
            assert!(read_request(&stream[..cut]).is_err(), "request cut at {cut}");
        }
    }
    for stream in &responses {
        for cut in 0..stream.len() {
            assert!(read_response(&stream[..cut]).is_err(), "response cut at {cut}");
        }
    }
}

#[test]
fn a_huge_value_at_every_offset_of_a_sync_frame_is_refused_or_re_encodes() {
    let (requests, responses) = sample_streams();
    for stream in &requests {
        for edited in mutation::inflated_everywhere(stream) {
            if let Err(e) = check_request_stream(&edited) {
                panic!("{e}");
            }
        }
    }
    for stream in &responses {
        for edited in mutation::inflated_everywhere(stream) {
            if let Err(e) = check_response_stream(&edited) {
                panic!("{e}");
            }
        }
    }
}

/// The frame limit holds at the boundary: a frame of exactly `MAX_SYNC_FRAME` bytes is read
/// (and refused by the decoder if it is garbage), one byte more is refused before reading.
#[test]
fn frame_limit_is_exact() {
    let mut stream = (MAX_SYNC_FRAME as u32).to_be_bytes().to_vec();
    stream.resize(4 + MAX_SYNC_FRAME, 0xff);
    assert!(read_response(&stream).is_err());
    let mut stream = (MAX_SYNC_FRAME as u32 + 1).to_be_bytes().to_vec();
    stream.extend_from_slice(&[0; 16]);
    let error = read_response(&stream).expect_err("over the frame limit");
    assert!(error.to_string().contains("over the limit"), "{error}");
}

/// Serde pre-sizes a sequence from its count prefix (at most 1 MiB whatever the prefix
/// claims), on top of the byte strings the codec lets claim up to `MAX_ENVELOPE_LEN`; so one
/// decode may briefly cost up to twice `MAX_ENVELOPE_LEN` beyond its input. The frame buffer
/// (at most `MAX_SYNC_FRAME`, allocated before its bytes arrive) is freed by a failed read
/// before any decoding starts.
const SYNC_DECODE_BOUND: usize = 2 * MAX_ENVELOPE_LEN;

/// Edited and inflated streams built from `samples`, plus frames claiming huge lengths.
fn stream_corpus(samples: &[Vec<u8>], edited: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut corpus = Vec::new();
    for stream in samples {
        corpus.extend(mutation::inflated_everywhere(stream));
        corpus.extend(mutation::inflated_pairs(stream));
        corpus.extend(mutation::inflated_pairs(&stream[4..]).into_iter().map(|p| frame(&p)));
        corpus.push(stream.clone());
    }
    for len in [MAX_SYNC_FRAME as u32, MAX_SYNC_FRAME as u32 + 1, u32::MAX] {
        corpus.push(len.to_be_bytes().to_vec());
    }
    corpus.extend(edited);
    corpus
}

/// Small sync responses with huge values anywhere (one or two at a time) stay within four
/// times the input plus [`SYNC_DECODE_BOUND`], including decoding the certificates and gossip
/// envelopes they carry.
#[test]
fn sync_response_read_allocates_within_its_bound() {
    probe::run(
        "sync_response_read_allocates_within_its_bound",
        || {
            let (_, responses) = sample_streams();
            let strategy = (response(), response(), mutation::edits());
            let edited = mutation::generate(&strategy, 500)
                .into_iter()
                .map(|(r, d, edits)| frame(&mutation::apply(&write_response(r)[4..], &edits, &write_response(d)[4..])))
                .collect();
            stream_corpus(&responses, edited)
        },
        |max_input| 4 * max_input + MAX_SYNC_FRAME.max(SYNC_DECODE_BOUND),
        |stream| {
            if let Ok(SyncResponse::Catchup { deliveries, gossip, .. }) = read_response(stream) {
                for delivery in deliveries {
                    let _ = std::hint::black_box(Certificate::decode(&delivery.certificate, MAX_ENVELOPE_LEN));
                }
                for bytes in gossip {
                    if let Ok(envelope) = codec::decode_envelope(&bytes, MAX_ENVELOPE_LEN) {
                        let _ = std::hint::black_box(GossipBody::decode(envelope.body(), MAX_ENVELOPE_LEN));
                    }
                }
            }
        },
    );
}

/// The same for sync requests.
#[test]
fn sync_request_read_allocates_within_its_bound() {
    probe::run(
        "sync_request_read_allocates_within_its_bound",
        || {
            let (requests, _) = sample_streams();
            let strategy = (request(), request(), mutation::edits());
            let edited = mutation::generate(&strategy, 500)
                .into_iter()
                .map(|(r, d, edits)| frame(&mutation::apply(&write_request(r)[4..], &edits, &write_request(d)[4..])))
                .collect();
            stream_corpus(&requests, edited)
        },
        |max_input| 4 * max_input + MAX_SYNC_FRAME.max(SYNC_DECODE_BOUND),
        |stream| {
            let _ = std::hint::black_box(read_request(stream));
        },
    );
}

/// Gossip bodies have no sequence: four times the input plus the codec's documented
/// `MAX_ENVELOPE_LEN` for byte strings.
#[test]
fn gossip_body_decode_allocates_within_its_bound() {
    probe::run(
        "gossip_body_decode_allocates_within_its_bound",
        || {
            let mut corpus = Vec::new();
            for body in mutation::generate(&gossip_body(), 4) {
                let bytes = body.encode();
                corpus.extend(mutation::inflated_everywhere(&bytes));
                corpus.extend(mutation::inflated_pairs(&bytes));
                corpus.push(bytes);
            }
            let strategy = (gossip_body(), gossip_body(), mutation::edits());
            corpus.extend(
                mutation::generate(&strategy, 1000)
                    .into_iter()
                    .map(|(b, d, edits)| mutation::apply(&b.encode(), &edits, &d.encode())),
            );
            corpus
        },
        |max_input| 4 * max_input + MAX_ENVELOPE_LEN,
        |bytes| {
            let _ = std::hint::black_box(GossipBody::decode(bytes, MAX_ENVELOPE_LEN));
        },
    );
}
