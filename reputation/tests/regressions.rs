//! Regression tests, one per flaw of the seed design (DESIGN.md section 4).

mod common;

use byzgossip_crypto::{GossipPolicy, Kind};
use byzgossip_reputation::{Acceptance, AdmissionConfig, Blame, IgnoreReason, PeerStatus, RejectReason, Verdict};
use common::*;

#[test]
fn duplicates_do_not_lower_an_honest_senders_score() {
    let net = Net::new(4);
    let mut adm = net.admission(AdmissionConfig::default(), GossipPolicy::Committee);
    let honest = net.key(1);
    let bytes = net.gossip(net.member(0), 1, T0);
    assert_eq!(adm.admit(net.key(2), &bytes, T0).acceptance(), Acceptance::Accept);
    let before = adm.reputation().score(&honest, T0);
    for i in 0..1000 {
        assert_eq!(adm.admit(honest, &bytes, T0 + i), Verdict::Ignore(IgnoreReason::Duplicate));
    }
    assert_eq!(adm.reputation().score(&honest, T0), before);
    assert_eq!(adm.reputation().status(&honest, T0 + 1000), PeerStatus::Ok);
}

#[test]
fn five_forgeries_claiming_an_honest_origin_do_not_touch_it() {
    let net = Net::new(4);
    let mut adm = net.admission(AdmissionConfig::default(), GossipPolicy::Committee);
    let victim = net.member(0);
    // Five forgeries, each relayed by a different forwarder, so each reaches the signature.
    let attackers: Vec<_> = (0..5).map(|i| keypair(700 + i).public()).collect();
    for (seq, attacker) in attackers.iter().enumerate() {
        let forged = forge_claiming(&net, victim, net.member(3), seq as u64, T0);
        assert_eq!(adm.admit(*attacker, &forged, T0), Verdict::Reject(RejectReason::BadSignature, Blame::Forwarder(*attacker)));
    }
    assert_eq!(adm.reputation().score(&victim.public(), T0), 0.0);
    assert_eq!(adm.reputation().status(&victim.public(), T0), PeerStatus::Ok);
    assert!(!adm.reputation().is_tracked(&victim.public()), "the claimed origin is never even looked at");
    // The victim's real messages (same seqs!) are still admitted, by anyone, and the victim
    // itself is still a welcome forwarder.
    for seq in 0..5 {
        let real = net.gossip(victim, seq, T0);
        assert_eq!(adm.admit(net.key(1), &real, T0).acceptance(), Acceptance::Accept);
    }
    assert_eq!(adm.admit(victim.public(), &net.gossip(net.member(1), 9, T0), T0).acceptance(), Acceptance::Accept);
    for attacker in &attackers {
        assert_eq!(adm.reputation().score(attacker, T0), -10.0, "the forwarders pay");
    }
}

#[test]
fn a_forged_copy_cannot_poison_the_seen_set() {
    let net = Net::new(4);
    let mut adm = net.admission(AdmissionConfig::default(), GossipPolicy::Committee);
    let real = net.envelope(net.member(0), Kind::Gossip, 1, T0, b"real");
    let forged = forge(&real);
    assert_eq!(adm.admit(net.key(3), &forged, T0).label(), "bad_signature");
    let bytes = byzgossip_crypto::codec::encode_envelope(&real);
    assert_eq!(adm.admit(net.key(1), &bytes, T0).acceptance(), Acceptance::Accept);
}

#[test]
fn an_unknown_key_can_still_be_admitted() {
    let net = Net::new(4);
    let mut adm = net.admission(AdmissionConfig::default(), GossipPolicy::Open);
    let stranger_forwarder = keypair(9_999).public();
    let stranger_origin = keypair(8_888);
    assert_eq!(adm.reputation().status(&stranger_forwarder, T0), PeerStatus::Ok);
    assert!(adm.reputation().trust(&stranger_forwarder, T0) > 0.0);
    let bytes = net.gossip(&stranger_origin, 1, T0);
    assert_eq!(adm.admit(stranger_forwarder, &bytes, T0).acceptance(), Acceptance::Accept);
    let bytes = net.gossip(net.member(0), 1, T0);
    assert_eq!(adm.admit(stranger_forwarder, &bytes, T0).acceptance(), Acceptance::Accept);
}

#[test]
fn a_timestamp_in_the_far_future_is_refused() {
    let net = Net::new(4);
    let mut adm = net.admission(AdmissionConfig::default(), GossipPolicy::Committee);
    for timestamp in [T0 + 2 * SECOND + 1, T0 + HOUR, T0 + 365 * 24 * HOUR, u64::MAX] {
        let bytes = net.gossip(net.member(0), timestamp % 1000, timestamp);
        let v = adm.admit(net.key(1), &bytes, T0);
        assert!(matches!(v, Verdict::Ignore(IgnoreReason::TooNew { .. })), "{timestamp}: {v:?}");
        // Not remembered either: once its time comes, it is admitted.
        if timestamp == T0 + HOUR {
            assert_eq!(adm.admit(net.key(2), &bytes, T0 + HOUR).acceptance(), Acceptance::Accept);
        }
    }
}

#[test]
fn a_replay_after_the_window_is_ignored_not_accepted() {
    let net = Net::new(4);
    let mut adm = net.admission(AdmissionConfig::default(), GossipPolicy::Committee);
    let bytes = net.gossip(net.member(0), 1, T0);
    assert_eq!(adm.admit(net.key(1), &bytes, T0).acceptance(), Acceptance::Accept);
    for now in [T0 + MINUTE, T0 + 5 * MINUTE, T0 + 5 * MINUTE + 1, T0 + HOUR, T0 + 100 * HOUR] {
        assert_eq!(adm.admit(net.key(2), &bytes, now).acceptance(), Acceptance::Ignore, "{now}");
    }
    assert!(adm.replay_guard().is_empty(), "expired ids are forgotten");
    assert_eq!(adm.reputation().status(&net.key(2), T0 + 100 * HOUR), PeerStatus::Ok);
}
