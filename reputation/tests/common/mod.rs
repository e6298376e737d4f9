//! Shared fixtures: a committee, its network id, envelope builders.
#![allow(dead_code)]

use byzgossip_crypto::codec::{encode_envelope, encode_raw};
use byzgossip_crypto::{Committee, Envelope, GossipPolicy, Keypair, Kind, NetworkId, PublicKey, Signature};
use byzgossip_reputation::{Admission, AdmissionConfig};

/// A fixed start time (ms since the epoch).
pub const T0: u64 = 1_700_000_000_000;
pub const SECOND: u64 = 1000;
pub const MINUTE: u64 = 60 * SECOND;
pub const HOUR: u64 = 60 * MINUTE;

pub struct Net {
    pub members: Vec<Keypair>,
    pub committee: Committee,
    pub network: NetworkId,
}

pub fn keypair(seed: u32) -> Keypair {
    let mut secret = [0x5au8; 32];
    secret[..4].copy_from_slice(&seed.to_be_bytes());
    Keypair::from_secret_bytes(&secret)
}

impl Net {
    /// A committee of `n` members (keys 0..n) on a fixed network.
    pub fn new(n: u32) -> Net {
        let members: Vec<Keypair> = (0..n).map(keypair).collect();
        let committee = Committee::new(members.iter().map(|k| k.public()).collect(), (n as usize - 1) / 3).expect("committee");
        Net { members, committee, network: NetworkId([0x42; 32]) }
    }

    pub fn member(&self, i: usize) -> &Keypair {
        &self.members[i]
    }

    pub fn key(&self, i: usize) -> PublicKey {
        self.members[i].public()
    }

    pub fn admission(&self, config: AdmissionConfig, policy: GossipPolicy) -> Admission {
        Admission::new(config, self.network, self.committee.clone(), policy).expect("admission")
    }

    pub fn envelope(&self, signer: &Keypair, kind: Kind, seq: u64, timestamp_ms: u64, body: &[u8]) -> Envelope {
        Envelope::seal(signer, self.network, kind, seq, timestamp_ms, body.to_vec()).expect("seal")
    }

    /// Encoded gossip from `signer`.
    pub fn gossip(&self, signer: &Keypair, seq: u64, timestamp_ms: u64) -> Vec<u8> {
        encode_envelope(&self.envelope(signer, Kind::Gossip, seq, timestamp_ms, &seq.to_be_bytes()))
    }
}

/// `bytes` with the signature corrupted (a forgery claiming the same origin and header).
pub fn forge(envelope: &Envelope) -> Vec<u8> {
    let mut signature = envelope.signature().0;
    signature[40] ^= 0x01;
    encode_raw(envelope.header(), envelope.body(), &Signature(signature))
}

/// A forgery with a fresh header (new seq) claiming `origin`, signed by someone else.
pub fn forge_claiming(net: &Net, origin: &Keypair, forger: &Keypair, seq: u64, timestamp_ms: u64) -> Vec<u8> {
    let real = net.envelope(origin, Kind::Gossip, seq, timestamp_ms, b"framed");
    let fake_signature = forger.sign(&real.header().signing_bytes());
    encode_raw(real.header(), real.body(), &fake_signature)
}
