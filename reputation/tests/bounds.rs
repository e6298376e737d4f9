//! Each bound of the crate, hit through the admission pipeline: seen-set capacity, per-origin
//! share, tracked-peer cap (with banned peers kept), key cache, decode limit.

mod common;

use byzgossip_crypto::{GossipPolicy, Kind, codec};
use byzgossip_reputation::{
    Acceptance, AdmissionConfig, IgnoreReason, PeerStatus, ReplayConfig, ReputationConfig, Verdict,
};
use common::*;

#[test]
fn seen_set_capacity_refuses_new_ids_and_keeps_old_ones() {
    let net = Net::new(4);
    // A committee pool of 80: 20 ids per member, at most 10 of them gossip.
    let config = AdmissionConfig {
        replay: ReplayConfig { capacity: 40, per_origin_capacity: 40, committee_capacity: 80, ..ReplayConfig::default() },
        ..AdmissionConfig::default()
    };
    let mut adm = net.admission(config, GossipPolicy::Committee);
    for seq in 0..40 {
        assert_eq!(adm.admit(net.key(1), &net.gossip(net.member((seq % 4) as usize), seq, T0), T0).acceptance(), Acceptance::Accept);
    }
    let v = adm.admit(net.key(1), &net.gossip(net.member(0), 40, T0), T0);
    assert_eq!(v, Verdict::Ignore(IgnoreReason::SeenSetFull));
    assert_eq!(v.label(), "seen_set_full");
    assert_eq!((adm.replay_guard().len(), adm.replay_guard().committee_len()), (40, 40));
    // Not punished: a full set is our limit, not the forwarder's fault.
    assert_eq!(adm.reputation().status(&net.key(1), T0), PeerStatus::Ok);
    // The member's votes still have the other half of its share.
    for seq in 0..10 {
        let vote = codec::encode_envelope(&net.envelope(net.member(0), Kind::BrachaEcho, seq, T0, &[seq as u8; 40]));
        assert_eq!(adm.admit(net.key(1), &vote, T0).acceptance(), Acceptance::Accept, "vote {seq}");
    }
    let vote = codec::encode_envelope(&net.envelope(net.member(0), Kind::BrachaEcho, 10, T0, &[10; 40]));
    assert_eq!(adm.admit(net.key(1), &vote, T0), Verdict::Ignore(IgnoreReason::SeenSetFull));
    // Old ids are still refused as duplicates (nothing was evicted).
    assert_eq!(adm.admit(net.key(2), &net.gossip(net.member(0), 0, T0), T0), Verdict::Ignore(IgnoreReason::Duplicate));
    // Room returns once ids expire.
    let later = T0 + 5 * MINUTE + 3 * SECOND;
    assert_eq!(adm.admit(net.key(1), &net.gossip(net.member(0), 41, later), later).acceptance(), Acceptance::Accept);
}

#[test]
fn per_origin_share_limits_a_flooding_origin_only() {
    let net = Net::new(4);
    let config = AdmissionConfig {
        replay: ReplayConfig { capacity: 100, per_origin_capacity: 25, ..ReplayConfig::default() },
        ..AdmissionConfig::default()
    };
    let mut adm = net.admission(config, GossipPolicy::Open);
    let flooder = keypair(31337);
    let mut accepted = 0;
    for seq in 0..200 {
        // Relayed by many distinct peers, so no rate budget stops it first.
        let from = keypair(2000 + seq as u32).public();
        if adm.admit(from, &net.gossip(&flooder, seq, T0), T0).acceptance() == Acceptance::Accept {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 25);
    assert_eq!(adm.replay_guard().origin_len(&flooder.public()), 25);
    for origin in 0..4 {
        for seq in 0..10 {
            let v = adm.admit(net.key(1), &net.gossip(net.member(origin), seq, T0), T0);
            assert_eq!(v.acceptance(), Acceptance::Accept, "origin {origin} seq {seq}");
        }
    }
}

#[test]
fn tracked_peer_cap_never_evicts_banned_peers() {
    let net = Net::new(4);
    let config = AdmissionConfig {
        reputation: ReputationConfig { max_peers: 10, ..ReputationConfig::default() },
        ..AdmissionConfig::default()
    };
    let mut adm = net.admission(config, GossipPolicy::Committee);
    let banned: Vec<_> = (0..3).map(|i| keypair(3000 + i).public()).collect();
    for peer in &banned {
        for _ in 0..4 {
            adm.admit(*peer, &[0xff], T0);
        }
        assert!(matches!(adm.reputation().status(peer, T0), PeerStatus::Banned { .. }));
    }
    for i in 0..100u64 {
        let from = keypair(4000 + i as u32).public();
        let v = adm.admit(from, &net.gossip(net.member(0), i, T0), T0);
        assert_eq!(v.acceptance(), Acceptance::Accept, "newcomer {i}");
        assert!(adm.reputation().len() <= 10);
    }
    for peer in &banned {
        assert!(adm.reputation().is_tracked(peer));
        assert_eq!(adm.admit(*peer, &net.gossip(net.member(1), 1, T0), T0), Verdict::Ignore(IgnoreReason::Banned));
    }
}

#[test]
fn decode_limit_is_enforced() {
    let net = Net::new(4);
    let config = AdmissionConfig { max_message_len: 300, ..AdmissionConfig::default() };
    let mut adm = net.admission(config, GossipPolicy::Committee);
    let fits = byzgossip_crypto::codec::encode_envelope(&net.envelope(net.member(0), byzgossip_crypto::Kind::Gossip, 1, T0, &[0; 110]));
    assert_eq!(fits.len(), 300);
    assert_eq!(adm.admit(net.key(1), &fits, T0).acceptance(), Acceptance::Accept);
    let over = byzgossip_crypto::codec::encode_envelope(&net.envelope(net.member(0), byzgossip_crypto::Kind::Gossip, 2, T0, &[0; 111]));
    assert_eq!(adm.admit(net.key(1), &over, T0).label(), "too_large");
}

#[test]
fn key_cache_serves_open_gossip_from_many_origins() {
    let net = Net::new(4);
    let config = AdmissionConfig { key_cache_capacity: 4, ..AdmissionConfig::default() };
    let mut adm = net.admission(config, GossipPolicy::Open);
    for i in 0..20u32 {
        let origin = keypair(5000 + i);
        assert_eq!(adm.admit(net.key(1), &net.gossip(&origin, 1, T0), T0).acceptance(), Acceptance::Accept);
    }
}
