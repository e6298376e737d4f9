//! Property: for random interleavings of honest traffic and attacks (replays of old ids,
//! future and stale timestamps, floods from one origin, forgeries, Sybil forwarders), no
//! fresh honest message is ever refused, no id is ever accepted twice, honest relays are never
//! graylisted, and every table stays under its cap.

mod common;

use byzgossip_crypto::{GossipPolicy, Keypair, Kind, MessageId, PublicKey};
use byzgossip_reputation::{AdmissionConfig, IgnoreReason, PeerStatus, ReplayConfig, ReputationConfig, Verdict};
use common::*;
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Clone, Debug)]
enum Op {
    /// An honest member publishes; `relays` honest peers forward it.
    Honest { origin: usize, relays: usize },
    /// An attacker re-sends a message seen earlier.
    Replay { pick: usize, attacker: usize },
    /// The attacker's own key signs a message dated `ahead_ms` past the window.
    Future { ahead_ms: u64, attacker: usize },
    /// The attacker's own key signs a message dated `age_ms` before the window.
    Stale { age_ms: u64, attacker: usize },
    /// The attacker's own key signs `count` fresh messages.
    Flood { count: usize, attacker: usize },
    /// A forgery claiming an honest member.
    Forge { origin: usize, attacker: usize },
    /// A never-seen forwarder relays a captured message.
    Sybil { pick: usize },
    /// Simulated time passes.
    Advance { ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4usize, 1..=4usize).prop_map(|(origin, relays)| Op::Honest { origin, relays }),
        3 => (any::<usize>(), 0..3usize).prop_map(|(pick, attacker)| Op::Replay { pick, attacker }),
        1 => (1..10_000_000u64, 0..3usize).prop_map(|(ahead_ms, attacker)| Op::Future { ahead_ms, attacker }),
        1 => (1..10_000_000u64, 0..3usize).prop_map(|(age_ms, attacker)| Op::Stale { age_ms, attacker }),
        1 => (1..200usize, 0..3usize).prop_map(|(count, attacker)| Op::Flood { count, attacker }),
        1 => (0..4usize, 0..3usize).prop_map(|(origin, attacker)| Op::Forge { origin, attacker }),
        2 => any::<usize>().prop_map(|pick| Op::Sybil { pick }),
        2 => (0..8 * MINUTE).prop_map(|ms| Op::Advance { ms }),
    ]
}

const CAPACITY: usize = 600;
const PER_ORIGIN: usize = 150;
const MAX_PEERS: usize = 12;

fn config() -> AdmissionConfig {
    AdmissionConfig {
        replay: ReplayConfig { capacity: CAPACITY, per_origin_capacity: PER_ORIGIN, ..ReplayConfig::default() },
        reputation: ReputationConfig { max_peers: MAX_PEERS, ..ReputationConfig::default() },
        ..AdmissionConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn honest_traffic_survives_attacks_and_memory_is_bounded(ops in prop::collection::vec(op(), 1..40)) {
        let net = Net::new(4);
        let mut adm = net.admission(config(), GossipPolicy::Open);
        let honest: Vec<PublicKey> = (0..4).map(|i| keypair(100 + i).public()).collect();
        let attackers: Vec<Keypair> = (0..3).map(|i| keypair(900 + i)).collect();
        let mut captured: Vec<Vec<u8>> = Vec::new();
        let mut accepted: HashMap<MessageId, u32> = HashMap::new();
        let mut now = T0;
        let mut seq = 0u64;
        let mut sybil = 0u32;

        let note = |v: &Verdict, accepted: &mut HashMap<MessageId, u32>| {
            if let Verdict::Accept(e) = v {
                let n = accepted.entry(e.id()).or_default();
                *n += 1;
                assert_eq!(*n, 1, "id accepted twice");
            }
        };

        for op in ops {
            seq += 1;
            match op {
                Op::Honest { origin, relays } => {
                    let bytes = net.gossip(net.member(origin), seq, now);
                    for (k, from) in honest.iter().take(relays).enumerate() {
                        let v = adm.admit(*from, &bytes, now + k as u64);
                        note(&v, &mut accepted);
                        if k == 0 {
                            prop_assert!(v.accepted().is_some(), "fresh honest message refused: {:?}", v);
                        } else {
                            prop_assert_eq!(v, Verdict::Ignore(IgnoreReason::Duplicate));
                        }
                    }
                    captured.push(bytes);
                }
                Op::Replay { pick, attacker } => {
                    if !captured.is_empty() {
                        let bytes = &captured[pick % captured.len()];
                        let v = adm.admit(attackers[attacker].public(), bytes, now);
                        note(&v, &mut accepted);
                    }
                }
                Op::Future { ahead_ms, attacker } => {
                    let a = &attackers[attacker];
                    let bytes = net.gossip(a, seq, now + 2 * SECOND + ahead_ms);
                    let v = adm.admit(a.public(), &bytes, now);
                    prop_assert!(matches!(v, Verdict::Ignore(IgnoreReason::TooNew { .. } | IgnoreReason::Graylisted | IgnoreReason::Banned)), "{:?}", v);
                    captured.push(bytes);
                }
                Op::Stale { age_ms, attacker } => {
                    let a = &attackers[attacker];
                    let bytes = net.gossip(a, seq, (now - 5 * MINUTE).saturating_sub(age_ms));
                    let v = adm.admit(a.public(), &bytes, now);
                    prop_assert!(matches!(v, Verdict::Ignore(IgnoreReason::TooOld { .. } | IgnoreReason::Graylisted | IgnoreReason::Banned)), "{:?}", v);
                    captured.push(bytes);
                }
                Op::Flood { count, attacker } => {
                    let a = &attackers[attacker];
                    for i in 0..count as u64 {
                        let bytes = net.gossip(a, (seq << 20) + i, now);
                        let v = adm.admit(a.public(), &bytes, now);
                        note(&v, &mut accepted);
                        if i == 0 {
                            captured.push(bytes);
                        }
                    }
                }
                Op::Forge { origin, attacker } => {
                    let bytes = forge(&net.envelope(net.member(origin), Kind::Gossip, seq, now, b"forged"));
                    let v = adm.admit(attackers[attacker].public(), &bytes, now);
                    prop_assert!(v.accepted().is_none());
                    prop_assert_eq!(adm.reputation().status(&net.key(origin), now), PeerStatus::Ok);
                }
                Op::Sybil { pick } => {
                    if !captured.is_empty() {
                        sybil += 1;
                        let mut key = [0xeeu8; 32];
                        key[..4].copy_from_slice(&sybil.to_be_bytes());
                        let v = adm.admit(PublicKey(key), &captured[pick % captured.len()], now);
                        note(&v, &mut accepted);
                    }
                }
                Op::Advance { ms } => now += ms,
            }
            // Bounds and honest standing after every step.
            let guard = adm.replay_guard();
            prop_assert!(guard.len() <= CAPACITY);
            for k in net.members.iter().map(|k| k.public()).chain(attackers.iter().map(|a| a.public())) {
                prop_assert!(guard.origin_len(&k) <= PER_ORIGIN);
            }
            prop_assert!(adm.reputation().len() <= MAX_PEERS);
            for h in &honest {
                prop_assert_eq!(adm.reputation().status(h, now), PeerStatus::Ok);
            }
        }
        // Every honest or flooded envelope that was encoded and accepted was accepted once.
        prop_assert!(accepted.values().all(|n| *n == 1));
    }
}
