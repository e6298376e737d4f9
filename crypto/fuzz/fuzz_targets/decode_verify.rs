//! Envelope decoding and verification on arbitrary bytes: must never panic, and anything that
//! decodes must re-encode to the same bytes.
#![no_main]

use byzgossip_crypto::codec::{self, MAX_ENVELOPE_LEN};
use byzgossip_crypto::{KeyCache, NetworkId, verify_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = codec::decode_envelope(data, MAX_ENVELOPE_LEN) {
        assert_eq!(codec::encode_envelope(&envelope), data);
        let network = envelope.header().network;
        let single = envelope.clone().verify(&network).is_ok();
        let mut keys = KeyCache::new(4);
        let batch = verify_batch(vec![envelope], &network, &mut keys).remove(0).is_ok();
        assert_eq!(single, batch, "batch and single verification disagree");
        let _ = NetworkId::default();
    }
});
