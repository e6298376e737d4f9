//! The admission pipeline: every verdict, its label, its blame, and the split API.

mod common;

use byzgossip_crypto::codec::{encode_envelope, encode_raw};
use byzgossip_crypto::{DecodeError, Envelope, GossipPolicy, Kind, NetworkId};
use byzgossip_reputation::{
    Acceptance, AdmissionConfig, Blame, Event, IgnoreReason, PeerStatus, RejectReason, ReplayConfig, ReputationConfig,
    Verdict, WindowMode,
};
use common::*;

fn ignore(v: &Verdict) -> Option<IgnoreReason> {
    match v {
        Verdict::Ignore(r) => Some(*r),
        _ => None,
    }
}

#[test]
fn fresh_is_accepted_copies_are_duplicates_and_cost_nothing() {
    let net = Net::new(4);
    let mut adm = net.admission(AdmissionConfig::default(), GossipPolicy::Committee);
    let bytes = net.gossip(net.member(0), 1, T0);
    let v = adm.admit(net.key(1), &bytes, T0);
    assert_eq!(v.acceptance(), Acceptance::Accept);
    assert_eq!(v.label(), "accept");
    assert_eq!(v.accepted().map(|e| e.origin()), Some(net.key(0)));
    let score = adm.reputation().score(&net.key(2), T0);
    for from in 1..4 {
        let v = adm.admit(net.key(from), &bytes, T0 + 10);
        assert_eq!(ignore(&v), Some(IgnoreReason::Duplicate));
        assert_eq!(v.label(), "duplicate");
    }
    assert_eq!(adm.reputation().score(&net.key(2), T0 + 10), score);
    assert!(adm.reputation().score(&net.key(1), T0) > 0.0, "first delivery is rewarded");
}

#[test]
fn decode_failures_reject_and_blame_the_forwarder() {
    let net = Net::new(4);
    let config = AdmissionConfig { max_message_len: 1024, ..AdmissionConfig::default() };
    let mut adm = net.admission(config, GossipPolicy::Committee);
    let forwarder = net.key(3);
    let good = net.envelope(net.member(0), Kind::Gossip, 1, T0, b"body");
    let (header, body, signature) = good.clone().into_parts();

    let mut tampered = body.clone();
    tampered[0] ^= 1;
    let cases: Vec<(Vec<u8>, &str, Event)> = vec![
        (vec![1, 2, 3], "truncated", Event::Malformed),
        ([encode_envelope(&good), vec![0]].concat(), "trailing_bytes", Event::Malformed),
        (vec![0; 2000], "too_large", Event::Malformed),
        (encode_raw(&header, &tampered, &signature), "body_hash_mismatch", Event::BadHash),
    ];
    for (bytes, label, event) in cases {
        let v = adm.admit(forwarder, &bytes, T0);
        match &v {
            Verdict::Reject(reason, Blame::Forwarder(who)) => {
                assert_eq!(*who, forwarder);
                assert_eq!(reason.label(), label);
                assert_eq!(reason.event(), event);
            }
            other => panic!("{label}: {other:?}"),
        }
        assert_eq!(v.acceptance(), Acceptance::Reject);
    }
    assert_eq!(RejectReason::Decode(DecodeError::UnknownKind(9)).label(), "unknown_kind");
    assert!(adm.reputation().score(&forwarder, T0) < -30.0);
    // The origin, whose header was abused, is untouched.
    assert_eq!(adm.reputation().score(&net.key(0), T0), 0.0);
}

#[test]
fn stateless_checks_network_and_committee_membership() {
    let net = Net::new(4);
    let outsider = keypair(1000);
    let mut adm = net.admission(AdmissionConfig::default(), GossipPolicy::Committee);

    let other = Envelope::seal(net.member(0), NetworkId([7; 32]), Kind::Gossip, 1, T0, vec![1]).expect("seal");
    let v = adm.admit(net.key(1), &encode_envelope(&other), T0);
    assert!(matches!(v, Verdict::Reject(RejectReason::WrongNetwork, Blame::Forwarder(_))), "{v:?}");
    assert_eq!(v.label(), "wrong_network");

    for kind in [Kind::BrachaSend, Kind::BrachaEcho, Kind::BrachaReady, Kind::Evidence, Kind::Gossip] {
        let bytes = encode_envelope(&net.envelope(&outsider, kind, 1, T0, b"x"));
        let v = adm.admit(net.key(2), &bytes, T0);
        assert_eq!(v, Verdict::Reject(RejectReason::NotCommitteeOrigin(kind), Blame::Forwarder(net.key(2))));
        assert_eq!(v.label(), "not_committee_origin");
    }
    for kind in [Kind::BrachaSend, Kind::BrachaEcho, Kind::BrachaReady, Kind::Evidence] {
        let bytes = encode_envelope(&net.envelope(net.member(1), kind, 1, T0, b"x"));
        assert_eq!(adm.admit(net.key(3), &bytes, T0).acceptance(), Acceptance::Accept, "{kind:?}");
    }

    // Open policy: gossip from any key, Bracha still committee-only.
    let mut open = net.admission(AdmissionConfig::default(), GossipPolicy::Open);
    let gossip = encode_envelope(&net.envelope(&outsider, Kind::Gossip, 1, T0, b"x"));
    assert_eq!(open.admit(net.key(1), &gossip, T0).acceptance(), Acceptance::Accept);
    let send = encode_envelope(&net.envelope(&outsider, Kind::BrachaSend, 2, T0, b"x"));
    assert_eq!(open.admit(net.key(1), &send, T0).label(), "not_committee_origin");
}

#[test]
fn window_ignores_and_grades_the_penalty() {
    let net = Net::new(4);
    let mut adm = net.admission(AdmissionConfig::default(), GossipPolicy::Committee);
    let from = net.key(1);
    let slightly_old = net.gossip(net.member(0), 1, T0 - 5 * MINUTE - 2 * SECOND);
    let v = adm.admit(from, &slightly_old, T0);
    assert_eq!(ignore(&v), Some(IgnoreReason::TooOld { by_ms: 2 * SECOND }));
    assert_eq!(v.acceptance(), Acceptance::Ignore);
    assert_eq!(adm.reputation().score(&from, T0), 0.0, "within the grace: free");

    let far_future = net.gossip(net.member(0), 2, T0 + 20 * MINUTE);
    let v = adm.admit(from, &far_future, T0);
    assert!(matches!(ignore(&v), Some(IgnoreReason::TooNew { .. })));
    assert_eq!(v.label(), "too_new");
    assert!((adm.reputation().score(&from, T0) + 5.0).abs() < 1e-9, "far outside: full penalty");
}

#[test]
fn reputation_gate_graylisted_banned_excluded_and_rate_limited() {
    let net = Net::new(4);
    let mut adm = net.admission(AdmissionConfig::default(), GossipPolicy::Committee);
    let bad = net.key(3);
    let junk = vec![0u8; 3];
    adm.admit(bad, &junk, T0);
    adm.admit(bad, &junk, T0);
    let change = adm.poll_status_change().expect("graylisted");
    assert_eq!((change.peer, change.to, change.event), (bad, PeerStatus::Graylisted, Event::Malformed));
    assert_eq!(adm.poll_status_change(), None);
    // A graylisted forwarder's own messages are ignored; a copy it relays of a member in good
    // standing is checked and admitted (ignored, it would stay in gossipsub's duplicate cache
    // and every honest copy after it would be dropped: a front-running relay could censor).
    let own = net.gossip(net.member(3), 1, T0);
    assert_eq!(ignore(&adm.admit(bad, &own, T0)), Some(IgnoreReason::Graylisted));
    let relayed = net.gossip(net.member(0), 9, T0);
    assert_eq!(adm.admit(bad, &relayed, T0).acceptance(), Acceptance::Accept);
    let valid = net.gossip(net.member(0), 1, T0);
    // (The relayed copy earned it a first-delivery reward: a few more junk messages.)
    let banned = (0..10).find_map(|_| {
        adm.admit(bad, &junk, T0);
        adm.poll_status_change()
    });
    assert!(matches!(banned.expect("banned").to, PeerStatus::Banned { .. }));
    assert_eq!(ignore(&adm.admit(bad, &valid, T0)), Some(IgnoreReason::Banned));
    // The message itself is fine when another peer relays it.
    assert_eq!(adm.admit(net.key(1), &valid, T0).acceptance(), Acceptance::Accept);

    // Exclusion: the equivocating origin's messages and the key as a forwarder are ignored.
    let evidence = byzgossip_crypto::Digest([9; 32]);
    let change = adm.record(net.key(2), Event::Equivocation { evidence }, T0).expect("excluded");
    assert_eq!(change.to, PeerStatus::Excluded { evidence });
    let from_excluded = net.gossip(net.member(2), 5, T0);
    assert_eq!(ignore(&adm.admit(net.key(1), &from_excluded, T0)), Some(IgnoreReason::OriginExcluded));
    let relayed_by_excluded = net.gossip(net.member(0), 6, T0);
    assert_eq!(ignore(&adm.admit(net.key(2), &relayed_by_excluded, T0)), Some(IgnoreReason::ForwarderExcluded));

    // Rate budget: a tiny budget, then Flood events.
    let config = AdmissionConfig {
        reputation: ReputationConfig {
            budget: byzgossip_reputation::BudgetConfig {
                base_rate_per_s: 1.0,
                trusted_rate_per_s: 1.0,
                base_burst: 3.0,
                trusted_burst: 3.0,
                ..byzgossip_reputation::BudgetConfig::default()
            },
            ..ReputationConfig::default()
        },
        ..AdmissionConfig::default()
    };
    let mut adm = net.admission(config, GossipPolicy::Committee);
    let verdicts: Vec<Verdict> = (0..5).map(|s| adm.admit(net.key(1), &net.gossip(net.member(0), s, T0), T0)).collect();
    assert_eq!(verdicts.iter().filter(|v| v.acceptance() == Acceptance::Accept).count(), 3);
    assert_eq!(ignore(&verdicts[4]), Some(IgnoreReason::RateLimited));
    assert_eq!(verdicts[4].label(), "rate_limited");
    assert!(adm.reputation().score(&net.key(1), T0) < 0.5, "floods cost");
}

/// Admission with an origin gossip budget of 3 messages (refilled at 1/s, whatever the trust).
fn origin_budget_of_three() -> AdmissionConfig {
    AdmissionConfig {
        reputation: ReputationConfig {
            budget: byzgossip_reputation::BudgetConfig {
                origin_base_rate_per_s: 1.0,
                origin_trusted_rate_per_s: 1.0,
                origin_base_burst: 3.0,
                origin_trusted_burst: 3.0,
                ..byzgossip_reputation::BudgetConfig::default()
            },
            ..ReputationConfig::default()
        },
        ..AdmissionConfig::default()
    }
}

/// An origin's own gossip budget: charged to the verified origin whoever relays it, never to
/// honest relays, never by forgeries in an honest origin's name.
#[test]
fn origin_budget_blames_the_flooding_origin_not_its_relays() {
    let net = Net::new(4);
    let config = origin_budget_of_three();
    let mut adm = net.admission(config, GossipPolicy::Committee);
    // Forgeries in member 2's name first: they must not spend member 2's budget.
    let forger = byzgossip_crypto::PublicKey([77; 32]);
    for seq in 0..5 {
        let forged = forge(&net.envelope(net.member(2), Kind::Gossip, seq, T0, b"f"));
        assert_ne!(adm.admit(forger, &forged, T0).acceptance(), Acceptance::Accept);
    }
    // Member 0 signs 8 messages in one instant, relayed by members 1, 2 and 3 in turn.
    let verdicts: Vec<Verdict> =
        (0..8).map(|s| adm.admit(net.key(1 + (s as usize % 3)), &net.gossip(net.member(0), s, T0), T0)).collect();
    assert_eq!(verdicts.iter().filter(|v| v.acceptance() == Acceptance::Accept).count(), 3);
    for v in &verdicts[3..] {
        assert_eq!(ignore(v), Some(IgnoreReason::OriginRateLimited));
    }
    for relay in [1, 2] {
        assert!(adm.reputation().score(&net.key(relay), T0) >= 0.0, "relay {relay} paid for the flood");
    }
    assert!(adm.reputation().score(&net.key(0), T0) < 0.0, "the flooding origin pays");
    // Member 2's own (genuine) gossip still has its whole budget.
    let own: Vec<Verdict> = (10..13).map(|s| adm.admit(net.key(1), &net.gossip(net.member(2), s, T0), T0)).collect();
    assert!(own.iter().all(|v| v.acceptance() == Acceptance::Accept));
    // A copy of an over-budget message arriving again is a cheap duplicate.
    assert_eq!(ignore(&adm.admit(net.key(3), &net.gossip(net.member(0), 7, T0), T0)), Some(IgnoreReason::Duplicate));
}

/// Gossip straight from its origin is charged at precheck, before any signature work (a
/// flood faster than verification is still charged and convicted), and exactly once.
#[test]
fn direct_gossip_is_charged_to_its_origin_before_verification_and_once() {
    let net = Net::new(4);
    let config = origin_budget_of_three();
    let mut adm = net.admission(config.clone(), GossipPolicy::Committee);
    let origin = net.key(0);
    let prechecks: Vec<bool> =
        (0..8).map(|s| adm.precheck(origin, &net.gossip(net.member(0), s, T0), T0).is_ok()).collect();
    assert_eq!(prechecks, [true, true, true, false, false, false, false, false], "over budget before any verification");
    assert!(adm.reputation().score(&origin, T0) < 0.0, "the flooding origin pays");
    // Full admission of direct gossip: the budget of 3 admits 3 (a double charge would admit 1).
    let mut adm = net.admission(config, GossipPolicy::Committee);
    let accepted = (0..8).filter(|&s| adm.admit(origin, &net.gossip(net.member(0), s, T0), T0).acceptance() == Acceptance::Accept).count();
    assert_eq!(accepted, 3);
}

/// Gossip of an origin convicted here (graylisted or banned) is dropped before its signature
/// is checked, whoever relays it, so no node forwards a convicted flooder's messages; while
/// the origin floods directly it goes on paying.
#[test]
fn gossip_of_a_convicted_origin_is_dropped_unverified_and_never_forwarded() {
    let net = Net::new(4);
    let mut adm = net.admission(origin_budget_of_three(), GossipPolicy::Committee);
    let flooder = net.key(0);
    let mut seq = 0;
    while adm.reputation().status(&flooder, T0) == PeerStatus::Ok {
        assert!(seq < 1000, "the flooding origin was never graylisted");
        let _ = adm.admit(net.key(1), &net.gossip(net.member(0), seq, T0), T0);
        seq += 1;
    }
    // Relayed by an honest member: ignored at precheck, with no cost to the relay.
    let relay_score = adm.reputation().score(&net.key(2), T0);
    match adm.precheck(net.key(2), &net.gossip(net.member(0), seq, T0), T0) {
        Err(v) => assert_eq!(ignore(&v), Some(IgnoreReason::OriginConvicted)),
        Ok(_) => panic!("a convicted origin's gossip reached verification"),
    }
    assert!(adm.reputation().score(&net.key(2), T0) >= relay_score, "the relay paid");
    // Straight from the flooder: still charged, so it goes on to a ban.
    let before = adm.reputation().score(&flooder, T0);
    let _ = adm.precheck(flooder, &net.gossip(net.member(0), seq + 1, T0), T0);
    assert!(adm.reputation().score(&flooder, T0) < before, "the direct flooder stopped paying");
    // Bracha messages of the same member are not affected (its votes still count).
    let vote = encode_envelope(&net.envelope(net.member(0), Kind::BrachaEcho, 0, T0, b"v"));
    assert!(adm.precheck(net.key(2), &vote, T0).map_or_else(|v| ignore(&v) != Some(IgnoreReason::OriginConvicted), |_| true));
}

/// A forwarder that keeps flooding after being graylisted goes on paying and is banned.
#[test]
fn a_graylisted_flooder_escalates_to_a_ban() {
    let net = Net::new(4);
    let config = AdmissionConfig {
        reputation: ReputationConfig {
            budget: byzgossip_reputation::BudgetConfig {
                base_rate_per_s: 1.0,
                trusted_rate_per_s: 1.0,
                base_burst: 2.0,
                trusted_burst: 2.0,
                ..byzgossip_reputation::BudgetConfig::default()
            },
            ..ReputationConfig::default()
        },
        ..AdmissionConfig::default()
    };
    let mut adm = net.admission(config, GossipPolicy::Committee);
    let mut saw_graylisted = false;
    for seq in 0..1000u64 {
        let verdict = adm.admit(net.key(1), &net.gossip(net.member(0), seq, T0), T0);
        saw_graylisted |= ignore(&verdict) == Some(IgnoreReason::Graylisted);
        if matches!(adm.reputation().status(&net.key(1), T0), PeerStatus::Banned { .. }) {
            assert!(seq < 200, "banned only after {seq} messages");
            return;
        }
    }
    panic!("a flooder was never banned (graylisted seen: {saw_graylisted})");
}

#[test]
fn precheck_then_batch_verify_then_complete() {
    let net = Net::new(4);
    let mut adm = net.admission(AdmissionConfig::default(), GossipPolicy::Committee);
    let mut pending = Vec::new();
    for seq in 0..10 {
        let bytes = if seq == 4 {
            forge(&net.envelope(net.member(1), Kind::Gossip, seq, T0, b"f"))
        } else {
            net.gossip(net.member((seq % 4) as usize), seq, T0)
        };
        pending.push(adm.precheck(net.key(3), &bytes, T0).expect("prechecked"));
    }
    assert!(pending.iter().all(|p| p.mode() == WindowMode::Gossip && p.from() == net.key(3)));
    // Verified elsewhere, with a worker's own key cache.
    let mut keys = net.committee.key_cache(16);
    let results = byzgossip_reputation::verify_pending(&pending, &net.network, &mut keys);
    let verdicts: Vec<Verdict> = pending.into_iter().zip(results).map(|(p, r)| adm.complete(p, r, T0)).collect();
    for (seq, v) in verdicts.iter().enumerate() {
        if seq == 4 {
            assert_eq!(*v, Verdict::Reject(RejectReason::BadSignature, Blame::Forwarder(net.key(3))));
        } else {
            assert_eq!(v.acceptance(), Acceptance::Accept, "{seq}");
        }
    }
    // Completing with another envelope's result is refused, not trusted.
    let a = adm.precheck(net.key(1), &net.gossip(net.member(0), 100, T0), T0).expect("a");
    let b = adm.precheck(net.key(1), &net.gossip(net.member(0), 101, T0), T0).expect("b");
    let vb = b.verify();
    assert_eq!(ignore(&adm.complete(a, vb, T0)), Some(IgnoreReason::VerificationMismatch));
    // Two copies prechecked before either completes: only one is accepted.
    let bytes = net.gossip(net.member(0), 200, T0);
    let p1 = adm.precheck(net.key(1), &bytes, T0).expect("p1");
    let p2 = adm.precheck(net.key(2), &bytes, T0).expect("p2");
    let (r1, r2) = (p1.verify(), p2.verify());
    assert_eq!(adm.complete(p1, r1, T0).acceptance(), Acceptance::Accept);
    assert_eq!(ignore(&adm.complete(p2, r2, T0)), Some(IgnoreReason::Duplicate));
}

#[test]
fn admit_batch_matches_single_admission() {
    let net = Net::new(4);
    let config = AdmissionConfig { max_batch: 3, ..AdmissionConfig::default() };
    let mut batch_adm = net.admission(config, GossipPolicy::Committee);
    let mut single_adm = net.admission(AdmissionConfig::default(), GossipPolicy::Committee);
    let mut messages: Vec<(byzgossip_crypto::PublicKey, Vec<u8>)> = Vec::new();
    for seq in 0..12u64 {
        let from = net.key((seq % 3) as usize + 1);
        let bytes = match seq {
            3 | 7 => forge(&net.envelope(net.member(0), Kind::Gossip, seq, T0, b"f")),
            5 => vec![9; 10],
            _ => net.gossip(net.member((seq % 4) as usize), seq, T0),
        };
        messages.push((from, bytes));
    }
    let copy = messages[1].clone();
    messages.push(copy);
    let refs: Vec<(byzgossip_crypto::PublicKey, &[u8])> = messages.iter().map(|(k, b)| (*k, b.as_slice())).collect();
    let batched = batch_adm.admit_batch(&refs, T0);
    let single: Vec<Verdict> = refs.iter().map(|(k, b)| single_adm.admit(*k, b, T0)).collect();
    assert_eq!(batched, single);
    assert_eq!(batched.iter().filter(|v| v.acceptance() == Acceptance::Accept).count(), 9);
    assert_eq!(ignore(&batched[12]), Some(IgnoreReason::Duplicate));
}

#[test]
fn sync_admits_old_certified_messages_but_keeps_other_checks() {
    let net = Net::new(4);
    let mut adm = net.admission(AdmissionConfig::default(), GossipPolicy::Committee);
    let old = encode_envelope(&net.envelope(net.member(0), Kind::BrachaReady, 1, T0 - 3 * HOUR, b"d"));
    assert!(matches!(ignore(&adm.admit(net.key(1), &old, T0)), Some(IgnoreReason::TooOld { .. })));
    let v = adm.admit_sync(net.key(1), &old, T0);
    assert_eq!(v.acceptance(), Acceptance::Accept);
    assert_eq!(ignore(&adm.admit_sync(net.key(2), &old, T0 + MINUTE)), Some(IgnoreReason::Duplicate));
    let p = adm.precheck_sync(net.key(1), &net.gossip(net.member(0), 9, T0 - HOUR), T0).expect("sync");
    assert_eq!(p.mode(), WindowMode::Sync);
    let future = net.gossip(net.member(0), 2, T0 + 10 * SECOND);
    assert!(matches!(ignore(&adm.admit_sync(net.key(1), &future, T0)), Some(IgnoreReason::TooNew { .. })));
    let forged = forge(&net.envelope(net.member(0), Kind::BrachaReady, 3, T0 - 3 * HOUR, b"d"));
    assert_eq!(adm.admit_sync(net.key(1), &forged, T0).label(), "bad_signature");
}

#[test]
fn status_outbox_is_bounded() {
    let net = Net::new(4);
    let config = AdmissionConfig { status_outbox_capacity: 2, ..AdmissionConfig::default() };
    let mut adm = net.admission(config, GossipPolicy::Committee);
    for i in 0..5 {
        let peer = keypair(500 + i).public();
        adm.admit(peer, &[1], T0);
        adm.admit(peer, &[1], T0); // graylisted: one change each
    }
    assert_eq!(adm.dropped_status_changes(), 3);
    assert!(adm.poll_status_change().is_some());
    assert!(adm.poll_status_change().is_some());
    assert!(adm.poll_status_change().is_none());
}

#[test]
fn config_validation() {
    let net = Net::new(4);
    let bad = [
        AdmissionConfig { max_message_len: 0, ..AdmissionConfig::default() },
        AdmissionConfig { max_message_len: (1 << 20) + 1, ..AdmissionConfig::default() },
        AdmissionConfig { max_batch: 0, ..AdmissionConfig::default() },
        AdmissionConfig { message_cost: f64::INFINITY, ..AdmissionConfig::default() },
        AdmissionConfig { status_outbox_capacity: 0, ..AdmissionConfig::default() },
        AdmissionConfig { replay: ReplayConfig { capacity: 0, ..ReplayConfig::default() }, ..AdmissionConfig::default() },
    ];
    for config in bad {
        assert!(config.validate().is_err());
        assert!(byzgossip_reputation::Admission::new(config, net.network, net.committee.clone(), GossipPolicy::Open).is_err());
    }
}
