//! Scenario: an hour of simulated traffic. Four honest peers relay the same valid messages
//! (one wins the first delivery, three send duplicates); none is ever graylisted. A fifth
//! peer relays the same traffic but 1% of what it sends (every 100th message) carries a bad
//! signature: it is graylisted by its 2nd bad signature (and banned later), i.e. within
//! [`BAD_PEER_GRAYLIST_BOUND`] = 200 messages (default config: bad signature 10, reward cap
//! 5, graylist at -10, penalty half-life 30 min; holds whenever the peer sends at least one
//! message every 18 s, so that two bad signatures fall within one half-life).

mod common;

use byzgossip_crypto::{GossipPolicy, Kind};
use byzgossip_reputation::{AdmissionConfig, IgnoreReason, PeerStatus, Verdict};
use common::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Messages a 1%-bad-signature peer sends before it is graylisted, at most.
const BAD_PEER_GRAYLIST_BOUND: usize = 200;
/// Simulated duration.
const DURATION_MS: u64 = HOUR;
/// One new message every this many ms (2 per second).
const INTERVAL_MS: u64 = 500;

#[test]
fn honest_relays_never_graylisted_one_percent_bad_signatures_graylisted_fast() {
    let net = Net::new(4);
    let mut adm = net.admission(AdmissionConfig::default(), GossipPolicy::Committee);
    let honest: Vec<_> = (0..4).map(|i| keypair(100 + i).public()).collect();
    let bad = keypair(666).public();
    let mut rng = ChaCha8Rng::seed_from_u64(7);

    let mut bad_sent = 0usize;
    let mut bad_graylisted_after: Option<usize> = None;
    let mut accepted = 0u64;
    let mut seq = 0u64;
    let mut now = T0;
    while now < T0 + DURATION_MS {
        let origin = net.member((seq % 4) as usize);
        let envelope = net.envelope(origin, Kind::Gossip, seq, now, &seq.to_be_bytes());
        let bytes = byzgossip_crypto::codec::encode_envelope(&envelope);
        // Relays arrive in a random order, a few ms apart, up to 3 s late (within the window).
        let mut relays: Vec<_> = honest.iter().copied().chain([bad]).collect();
        relays.shuffle(&mut rng);
        let mut seen_accept = false;
        for (k, from) in relays.into_iter().enumerate() {
            let at = now + 3 * k as u64;
            let verdict = if from == bad {
                bad_sent += 1;
                if bad_sent.is_multiple_of(100) {
                    // A bad signature on a fresh header.
                    let fake = net.envelope(origin, Kind::Gossip, seq | 1 << 40, now, b"bad");
                    adm.admit(bad, &forge(&fake), at)
                } else {
                    adm.admit(bad, &bytes, at)
                }
            } else {
                adm.admit(from, &bytes, at)
            };
            if from != bad || !bad_sent.is_multiple_of(100) {
                match verdict {
                    Verdict::Accept(_) => {
                        assert!(!seen_accept, "accepted twice");
                        seen_accept = true;
                        accepted += 1;
                    }
                    Verdict::Ignore(IgnoreReason::Duplicate) => {}
                    // Graylisted, it still relays good copies, which are checked (ignoring
                    // them would let it front-run honest copies); its next bad signatures are
                    // then checked too, and end in a ban.
                    Verdict::Ignore(IgnoreReason::Graylisted | IgnoreReason::Banned) if from == bad => {}
                    other => panic!("honest copy from {from:?} got {other:?}"),
                }
            }
            if from == bad && bad_graylisted_after.is_none() && adm.reputation().status(&bad, at) == PeerStatus::Graylisted {
                bad_graylisted_after = Some(bad_sent);
            }
            if from != bad {
                assert_eq!(adm.reputation().status(&from, at), PeerStatus::Ok, "honest peer graylisted at {at}");
            }
        }
        assert!(seen_accept, "every honest message is delivered once");
        seq += 1;
        now += INTERVAL_MS;
    }
    // Every status change was about the bad peer.
    while let Some(change) = adm.poll_status_change() {
        assert_eq!(change.peer, bad, "{change:?}");
    }
    let after = bad_graylisted_after.expect("the bad peer is graylisted");
    assert!(after <= BAD_PEER_GRAYLIST_BOUND, "graylisted after {after} messages");
    assert_eq!(accepted, DURATION_MS / INTERVAL_MS);
    for peer in &honest {
        assert_eq!(adm.reputation().status(peer, now), PeerStatus::Ok);
        assert!(adm.reputation().score(peer, now) > 0.0);
        assert!(adm.reputation().trust(peer, now) > 0.5, "an hour in good standing earns trust");
        assert!(adm.reputation().app_score(peer, now) > adm.reputation().app_score(&bad, now));
    }
    assert_ne!(adm.reputation().status(&bad, now), PeerStatus::Ok);
    eprintln!("bad peer graylisted after {after} messages; accepted {accepted}");
}
