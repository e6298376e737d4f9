//! The crypto crate's decoders of network and file input under property tests (issue 11,
//! point 8): the envelope codec, genesis TOML and key files.
//!
//! For each decoder: arbitrary input never panics; valid values of every shape are generated,
//! encoded, then mutated (bit flips, byte writes, truncation, insertions, removals, duplicated
//! ranges, splices from another valid encoding, length prefixes inflated to huge values, and
//! line edits for the TOML files) and whatever still decodes must re-encode to the same bytes
//! (the envelope codec is canonical) or pass the same validation again. Every strict prefix of
//! an envelope is refused, a huge value is written at every offset, and a child process
//! checks that decoding small inputs that claim huge lengths never grows the heap beyond four
//! times the input (`support/probe.rs`).
//!
//! Case counts keep a debug `cargo test` of this file to a few seconds; the long run is
//! `PROPTEST_CASES=100000 cargo test --release -p byzgossip-crypto --test decode_props`.

use byzgossip_crypto::codec::{self, ENVELOPE_OVERHEAD, MAX_ENVELOPE_LEN};
use byzgossip_crypto::{
    DecodeError, Envelope, Genesis, GenesisError, GossipPolicy, KeyCache, Keypair, Kind, NetworkId, PublicKey,
    verify_batch,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use std::path::Path;
use std::sync::OnceLock;

/// Proptest settings: `default` cases unless `PROPTEST_CASES` says otherwise.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

#[path = "support/mutation.rs"]
mod mutation;
#[path = "support/probe.rs"]
mod probe;

// ---------------------------------------------------------------------------------------
// Envelopes.

const KEYS: usize = 8;

fn keys() -> &'static [Keypair] {
    static KEYS_: OnceLock<Vec<Keypair>> = OnceLock::new();
    KEYS_.get_or_init(|| (0..KEYS as u8).map(|i| Keypair::from_secret_bytes(&[i + 1; 32])).collect())
}

fn network() -> impl Strategy<Value = NetworkId> {
    prop_oneof![Just(NetworkId([7; 32])), any::<[u8; 32]>().prop_map(NetworkId)]
}

/// A validly signed envelope of any kind with a body of up to `max_body` bytes.
fn envelope(max_body: usize) -> impl Strategy<Value = Envelope> {
    (0..KEYS, network(), select(Kind::ALL.to_vec()), any::<u64>(), any::<u64>(), vec(any::<u8>(), 0..=max_body))
        .prop_map(|(k, net, kind, seq, ts, body)| Envelope::seal(&keys()[k], net, kind, seq, ts, body).expect("seal"))
}

/// What must hold for any bytes handed to the envelope decoder: no panic; a decoded envelope
/// re-encodes to exactly the input; single and batch verification agree; and anything that
/// verifies is one of the `signed` encodings (nothing else can be made to verify by editing).
fn check_envelope_bytes(bytes: &[u8], signed: &[&[u8]]) -> Result<(), TestCaseError> {
    check_envelope_bytes_with(bytes, signed, true)
}

/// [`check_envelope_bytes`], comparing with batch verification only when `batch` is set.
fn check_envelope_bytes_with(bytes: &[u8], signed: &[&[u8]], batch: bool) -> Result<(), TestCaseError> {
    let Ok(envelope) = codec::decode_envelope(bytes, MAX_ENVELOPE_LEN) else { return Ok(()) };
    prop_assert_eq!(codec::encode_envelope(&envelope), bytes, "decode then encode changed the bytes");
    prop_assert_eq!(envelope.body().len(), bytes.len() - ENVELOPE_OVERHEAD);
    let network = envelope.header().network;
    let single = envelope.clone().verify(&network).is_ok();
    if batch {
        let batch = verify_batch(vec![envelope], &network, &mut KeyCache::new(4)).remove(0).is_ok();
        prop_assert_eq!(single, batch, "batch and single verification disagree");
    }
    if single {
        prop_assert!(signed.contains(&bytes), "an edited envelope verifies");
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn envelope_decoder_survives_arbitrary_bytes(bytes in vec(any::<u8>(), 0..1024)) {
        check_envelope_bytes(&bytes, &[])?;
    }

    /// A genuine header (so decoding gets past the first checks) followed by arbitrary bytes.
    #[test]
    fn envelope_decoder_survives_a_valid_header_then_arbitrary_bytes(e in envelope(64), rest in vec(any::<u8>(), 0..512)) {
        let mut bytes = codec::encode_envelope(&e)[..118].to_vec();
        bytes.extend_from_slice(&rest);
        check_envelope_bytes(&bytes, &[])?;
    }

    #[test]
    fn envelope_limit_is_checked_before_anything_else(bytes in vec(any::<u8>(), 0..512), limit in 0usize..600) {
        let result = codec::decode_envelope(&bytes, limit);
        if bytes.len() > limit {
            prop_assert_eq!(result, Err(DecodeError::TooLarge { len: bytes.len(), limit }));
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn envelopes_of_every_kind_round_trip_and_verify(e in envelope(512)) {
        let bytes = codec::encode_envelope(&e);
        let decoded = codec::decode_envelope(&bytes, MAX_ENVELOPE_LEN).expect("valid envelope decodes");
        prop_assert_eq!(&decoded, &e);
        prop_assert!(decoded.verify(&e.header().network).is_ok());
        check_envelope_bytes(&bytes, &[&bytes])?;
    }

    #[test]
    fn edited_envelopes_never_panic_and_never_verify(e in envelope(256), donor in envelope(256), edits in mutation::edits()) {
        let original = codec::encode_envelope(&e);
        let donor = codec::encode_envelope(&donor);
        let edited = mutation::apply(&original, &edits, &donor);
        check_envelope_bytes(&edited, &[&original, &donor])?;
    }

    /// Two envelopes back to back, or one with its pieces repeated: trailing and duplicated
    /// fields are refused.
    #[test]
    fn concatenated_envelopes_are_refused(a in envelope(64), b in envelope(64)) {
        let mut bytes = codec::encode_envelope(&a);
        bytes.extend_from_slice(&codec::encode_envelope(&b));
        prop_assert!(matches!(codec::decode_envelope(&bytes, MAX_ENVELOPE_LEN), Err(DecodeError::TrailingBytes(_))));
    }
}

/// One envelope of every kind with bodies of 0, 1 and 40 bytes.
fn samples() -> Vec<Envelope> {
    let mut out = Vec::new();
    for kind in Kind::ALL {
        for len in [0usize, 1, 40] {
            let body = (0..len).map(|i| i as u8).collect();
            out.push(Envelope::seal(&keys()[len % KEYS], NetworkId([7; 32]), kind, 3, 1_700_000_000_000, body).expect("seal"));
        }
    }
    out
}

#[test]
fn every_strict_prefix_of_an_envelope_is_refused() {
    for e in samples() {
        let bytes = codec::encode_envelope(&e);
        for cut in 0..bytes.len() {
            assert!(codec::decode_envelope(&bytes[..cut], MAX_ENVELOPE_LEN).is_err(), "{:?} cut at {cut}", e.header().kind);
        }
    }
}

/// Every offset of one envelope of every kind (with a 1-byte body) gets every huge value.
#[test]
fn a_huge_value_at_every_offset_is_refused_or_re_encodes() {
    let mut inputs = 0;
    for e in samples().into_iter().filter(|e| e.body().len() == 1) {
        let bytes = codec::encode_envelope(&e);
        for edited in mutation::inflated_everywhere(&bytes) {
            inputs += 1;
            if let Err(e) = check_envelope_bytes_with(&edited, &[&bytes], false) {
                panic!("{e}");
            }
        }
        // The body length prefix in particular: every huge claim is refused.
        for v in mutation::HUGE {
            let mut edited = bytes.clone();
            edited[118..126].copy_from_slice(&v.to_be_bytes());
            assert!(codec::decode_envelope(&edited, MAX_ENVELOPE_LEN).is_err(), "body length {v} accepted");
        }
    }
    assert!(inputs > 10_000, "{inputs}");
}

/// Small inputs (every sample with a huge value written at every offset, plus edited ones)
/// never make the envelope decoder grow the heap by more than 4 times the input: the body is
/// borrowed from the input while decoding, whatever the length prefix claims.
#[test]
fn envelope_decode_allocates_at_most_four_times_its_input() {
    probe::run(
        "envelope_decode_allocates_at_most_four_times_its_input",
        || {
            let mut corpus = Vec::new();
            for e in samples() {
                let bytes = codec::encode_envelope(&e);
                corpus.extend(mutation::inflated_everywhere(&bytes));
                corpus.push(bytes);
            }
            corpus.extend(mutation::generate(&(envelope(128), envelope(128), mutation::edits()), 4000).into_iter().map(
                |(e, d, edits)| mutation::apply(&codec::encode_envelope(&e), &edits, &codec::encode_envelope(&d)),
            ));
            corpus
        },
        |max_input| 4 * max_input,
        |bytes| {
            let _ = std::hint::black_box(codec::decode_envelope(bytes, MAX_ENVELOPE_LEN));
        },
    );
}

/// The probe is not vacuous: a decoder that allocates past its budget kills the child.
#[test]
fn allocation_probe_catches_an_allocation_over_budget() {
    const NAME: &str = "allocation_probe_catches_an_allocation_over_budget";
    if std::env::var(probe::ENV).as_deref() == Ok(NAME) {
        probe::run(NAME, || vec![vec![0; 100]], |max| 4 * max, |_| {
            let v = vec![1u8; 4 * probe::SLACK];
            std::hint::black_box(&v);
        });
        return;
    }
    let failure = probe::spawn(NAME).expect_err("an over-budget allocation must fail the probe");
    assert!(failure.contains("memory allocation of"), "{failure}");
}


// ---------------------------------------------------------------------------------------
// Text files: line-level edits on top of the byte-level ones.

/// Values and lines that stress a TOML decoder: integers past every width, floats that are
/// not numbers, wrong types, deep nesting, duplicated keys.
fn hostile_values() -> Vec<String> {
    let deep_array = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let deep_table = format!("{}1{}", "{a=".repeat(2000), "}".repeat(2000));
    vec![
        "18446744073709551615".into(),
        "9223372036854775807".into(),
        "6148914691236517206".into(),
        "6148914691236517205".into(),
        "4611686018427387904".into(),
        "-1".into(),
        "-9223372036854775808".into(),
        "1e400".into(),
        "nan".into(),
        "-inf".into(),
        "0.5".into(),
        "true".into(),
        "\"\"".into(),
        format!("\"{}\"", "x".repeat(65)),
        format!("\"{}\"", "é".repeat(64)),
        format!("\"{}\"", "0".repeat(64)),
        format!("\"0100{}\"", "0".repeat(60)),
        format!("\"{}\"", "ff".repeat(32)),
        "[]".into(),
        "{}".into(),
        "\"open\"".into(),
        "\"committee\"".into(),
        "1979-05-27T07:32:00Z".into(),
        deep_array,
        deep_table,
    ]
}

fn hostile_lines() -> Vec<String> {
    let mut lines: Vec<String> = hostile_values().into_iter().map(|v| format!("f = {v}")).collect();
    lines.extend(
        [
            "[extra]",
            "[[members]]",
            "name = \"again\"",
            "members = []",
            "policy = \"open\"",
            "bootstrap = [\"/ip4/127.0.0.1/tcp/1\"]",
            "a.b.c.d.e.f.g = 1",
            "secret = \"\"",
            "public = \"\"",
            "\"\" = 1",
            "x = \"\"\"unterminated",
            "[",
            "=",
        ]
        .map(String::from),
    );
    lines.push(format!("x = {}", "[".repeat(5000)));
    lines.push(format!("{} = 1", "a.".repeat(3000) + "a"));
    lines
}

/// A line-level edit of a TOML text.
#[derive(Clone, Debug)]
enum LineEdit {
    /// Repeat a line (a duplicated key or array element).
    Duplicate(Index),
    /// Drop a line.
    Delete(Index),
    /// Exchange two lines.
    Swap(Index, Index),
    /// Replace what follows the `=` of a line (or the whole line) with a hostile value.
    Value(Index, Index),
    /// Insert a hostile line.
    Insert(Index, Index),
    /// Byte-level edits of the whole text (invalid UTF-8 is replaced, as a reader would).
    Bytes(Vec<mutation::Edit>),
}

fn line_edits() -> impl Strategy<Value = Vec<LineEdit>> {
    let edit = prop_oneof![
        1 => any::<Index>().prop_map(LineEdit::Duplicate),
        1 => any::<Index>().prop_map(LineEdit::Delete),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| LineEdit::Swap(a, b)),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| LineEdit::Value(a, b)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| LineEdit::Insert(a, b)),
        3 => mutation::edits().prop_map(LineEdit::Bytes),
    ];
    vec(edit, 1..=3)
}

fn apply_lines(text: &str, edits: &[LineEdit], donor: &str) -> String {
    let values = hostile_values();
    let hostile = hostile_lines();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for edit in edits {
        let n = lines.len();
        match edit {
            LineEdit::Duplicate(i) if n > 0 => {
                let at = i.index(n);
                lines.insert(at, lines[at].clone());
            }
            LineEdit::Delete(i) if n > 0 => {
                lines.remove(i.index(n));
            }
            LineEdit::Swap(a, b) if n > 0 => lines.swap(a.index(n), b.index(n)),
            LineEdit::Value(i, v) if n > 0 => {
                let at = i.index(n);
                let value = &values[v.index(values.len())];
                lines[at] = match lines[at].split_once('=') {
                    Some((key, _)) => format!("{key}= {value}"),
                    None => format!("    {value},"),
                };
            }
            LineEdit::Insert(i, l) => lines.insert(i.index(n + 1), hostile[l.index(hostile.len())].clone()),
            LineEdit::Bytes(edits) => {
                let joined = lines.join("\n");
                let edited = mutation::apply(joined.as_bytes(), edits, donor.as_bytes());
                lines = String::from_utf8_lossy(&edited).lines().map(String::from).collect();
            }
            _ => {}
        }
    }
    lines.join("\n")
}

// ---------------------------------------------------------------------------------------
// Genesis.

fn genesis() -> impl Strategy<Value = Genesis> {
    let name = prop_oneof!["[a-zA-Z0-9 _.-]{1,64}", "\\PC{1,64}"];
    let members = proptest::sample::subsequence((0..KEYS).collect::<Vec<_>>(), 1..=KEYS).prop_shuffle();
    let bootstrap = vec(prop_oneof!["/ip4/127\\.0\\.0\\.1/tcp/[0-9]{1,5}", "\\PC{0,40}"], 0..4);
    (name, members, any::<Option<Index>>(), any::<bool>(), bootstrap).prop_map(|(name, members, f, open, bootstrap)| {
        let n = members.len();
        Genesis {
            name,
            f: f.map(|f| f.index((n - 1) / 3 + 1)),
            policy: if open { GossipPolicy::Open } else { GossipPolicy::Committee },
            members: members.into_iter().map(|i| keys()[i].public()).collect(),
            bootstrap,
        }
    })
}

/// What must hold for any genesis text: no panic, and an accepted genesis really is usable
/// (n >= 3f + 1 in exact arithmetic, a name of 1 to 64 characters) and survives a round trip
/// with the same network id.
fn check_genesis_text(text: &str) -> Result<(), TestCaseError> {
    let Ok(genesis) = Genesis::from_toml(text, Path::new("genesis.toml")) else { return Ok(()) };
    let committee = genesis.committee().expect("from_toml checked the committee");
    let (n, f) = (committee.n() as u128, committee.f() as u128);
    prop_assert!(n >= 3 * f + 1, "accepted n = {n} with f = {f}");
    prop_assert!((1..=64).contains(&genesis.name.chars().count()));
    let again = Genesis::from_toml(&genesis.to_toml(), Path::new("again.toml"));
    prop_assert!(again.is_ok(), "an accepted genesis does not load again: {:?}", again.err());
    let again = again.expect("checked");
    prop_assert_eq!(again.network_id(), genesis.network_id());
    prop_assert_eq!(again, genesis);
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn genesis_decoder_survives_arbitrary_text(text in "\\PC{0,300}") {
        check_genesis_text(&text)?;
    }

    #[test]
    fn genesis_round_trips(g in genesis()) {
        let text = g.to_toml();
        let parsed = Genesis::from_toml(&text, Path::new("g.toml")).expect("valid genesis loads");
        prop_assert_eq!(parsed.network_id(), g.network_id());
        prop_assert_eq!(&parsed, &g);
        check_genesis_text(&text)?;
    }

    #[test]
    fn edited_genesis_never_panics_and_what_loads_is_valid(g in genesis(), donor in genesis(), edits in line_edits()) {
        let text = apply_lines(&g.to_toml(), &edits, &donor.to_toml());
        check_genesis_text(&text)?;
    }
}

/// f so large that 3f + 1 overflows: refused as too many faults, and the error prints.
#[test]
fn genesis_with_an_overflowing_f_is_refused() {
    let members: Vec<String> = keys()[..4].iter().map(|k| format!("\"{}\"", k.public().to_hex())).collect();
    for f in ["6148914691236517205", "6148914691236517206", "9223372036854775807"] {
        let text = format!("name = \"n\"\nf = {f}\nmembers = [{}]\n", members.join(", "));
        match Genesis::from_toml(&text, Path::new("g.toml")) {
            Err(e @ GenesisError::TooManyFaults { .. }) => assert!(e.to_string().contains("cannot tolerate"), "{e}"),
            other => panic!("f = {f}: {other:?}"),
        }
    }
}

/// Deeply nested values in an unknown or a known key are refused without overflowing the stack.
#[test]
fn deeply_nested_genesis_is_refused() {
    for line in hostile_lines() {
        let text = format!("name = \"n\"\nmembers = [\"{}\"]\n{line}\n", keys()[0].public().to_hex());
        if let Err(e) = check_genesis_text(&text) {
            panic!("{e}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Key files.

/// The text `Keypair::save` writes (checked against it in `key_file_template_is_what_save_writes`).
fn key_file_text(keypair: &Keypair) -> String {
    format!(
        "# byzgossip node key. Keep it secret: anyone holding it can sign as this node.\n\
         public = \"{}\"\nsecret = \"{}\"\n",
        keypair.public().to_hex(),
        hex::encode(*keypair.secret_bytes()),
    )
}

#[test]
fn key_file_template_is_what_save_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("k.key");
    keys()[0].save(&path).expect("save");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), key_file_text(&keys()[0]));
}

/// What must hold for any key file: no panic; a loaded key is the one both fields name; an
/// error never quotes any 16 hex digits of the secret.
fn check_key_file(path: &Path, bytes: &[u8], secret_hex: &str) -> Result<(), TestCaseError> {
    std::fs::write(path, bytes).expect("write key file");
    match Keypair::load(path) {
        Ok(keypair) => {
            let table: toml::Table = toml::from_str(std::str::from_utf8(bytes).expect("loaded, so UTF-8")).expect("loaded, so TOML");
            let field = |name: &str| table.get(name).and_then(|v| v.as_str()).map(str::trim).map(String::from);
            prop_assert_eq!(field("public").map(|s| s.to_lowercase()), Some(keypair.public().to_hex()));
            prop_assert_eq!(field("secret").map(|s| s.to_lowercase()), Some(hex::encode(*keypair.secret_bytes())));
        }
        Err(e) => {
            let message = e.to_string();
            for window in 0..=secret_hex.len() - 16 {
                prop_assert!(!message.contains(&secret_hex[window..window + 16]), "error quotes the secret: {}", message);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn key_file_loader_survives_arbitrary_bytes(bytes in vec(any::<u8>(), 0..300), seed in any::<[u8; 32]>()) {
        let dir = tempfile::tempdir().expect("tempdir");
        check_key_file(&dir.path().join("k.key"), &bytes, &hex::encode(seed))?;
    }

    #[test]
    fn edited_key_files_never_panic_never_leak_and_what_loads_matches(seed in any::<[u8; 32]>(), donor in any::<[u8; 32]>(), edits in line_edits()) {
        let keypair = Keypair::from_secret_bytes(&seed);
        let text = key_file_text(&keypair);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        check_key_file(&path, text.as_bytes(), &hex::encode(seed))?;
        prop_assert_eq!(Keypair::load(&path).expect("valid key file").public(), keypair.public());
        let edited = apply_lines(&text, &edits, &key_file_text(&Keypair::from_secret_bytes(&donor)));
        check_key_file(&path, edited.as_bytes(), &hex::encode(seed))?;
    }
}

#[test]
fn public_key_hex_parsing_never_panics_on_any_length() {
    for len in 0..200 {
        for text in ["0".repeat(len), "é".repeat(len), "0".repeat(len) + " "] {
            let parsed = PublicKey::from_hex(&text);
            assert_eq!(parsed.is_ok(), text.trim().len() == 64 && text.trim().chars().all(|c| c.is_ascii_hexdigit()), "{text:?}");
        }
    }
}
