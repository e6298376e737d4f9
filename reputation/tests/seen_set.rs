//! Property: the seen-set's committee pool cannot be crowded out. For random interleavings of
//! members' votes and gossip, Sybil keys filling the open pool and time passing:
//! - a member's fresh vote is refused only when that member's own share is full (never
//!   because of anyone else's traffic), and a member's gossip only when its half is full;
//! - every pool and share stays under its cap, and the counters agree with a model.
//!
//! A failing case prints its seed and the shrunk operation list (proptest), so it can be
//! replayed.

use byzgossip_crypto::{Digest, Header, Kind, NetworkId, PublicKey};
use byzgossip_reputation::{ReplayConfig, ReplayGuard, ReplayOutcome};
use proptest::prelude::*;
use std::collections::HashMap;

const MEMBERS: u8 = 4;
const COMMITTEE_CAPACITY: usize = 80;
const OPEN_CAPACITY: usize = 30;
const PER_ORIGIN: usize = 8;
const NOW: u64 = 1_700_000_000_000;
const MAX_AGE_MS: u64 = 60_000;

#[derive(Clone, Debug)]
enum Op {
    /// Member `member` signs `count` votes.
    Votes { member: u8, count: usize },
    /// Member `member` gossips `count` messages.
    Gossip { member: u8, count: usize },
    /// Sybil key `key` (outside the committee) gossips `count` messages.
    Sybil { key: u8, count: usize },
    /// Time passes.
    Advance { ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..MEMBERS, 1..12usize).prop_map(|(member, count)| Op::Votes { member, count }),
        2 => (0..MEMBERS, 1..30usize).prop_map(|(member, count)| Op::Gossip { member, count }),
        4 => (0..40u8, 1..30usize).prop_map(|(key, count)| Op::Sybil { key, count }),
        1 => (0..2 * MAX_AGE_MS).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn member_key(i: u8) -> PublicKey {
    PublicKey([i + 1; 32])
}

fn sybil_key(i: u8) -> PublicKey {
    PublicKey([100 + i; 32])
}

fn header(origin: PublicKey, kind: Kind, seq: u64, timestamp_ms: u64) -> Header {
    Header {
        version: 1,
        network: NetworkId([7; 32]),
        kind,
        origin,
        seq,
        timestamp_ms,
        body_len: 0,
        body_hash: Digest([0; 32]),
    }
}

fn guard() -> ReplayGuard {
    let config = ReplayConfig {
        max_age_ms: MAX_AGE_MS,
        capacity: OPEN_CAPACITY,
        per_origin_capacity: PER_ORIGIN,
        committee_capacity: COMMITTEE_CAPACITY,
        ..ReplayConfig::default()
    };
    ReplayGuard::with_committee(config, (0..MEMBERS).map(member_key)).expect("valid config")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn members_are_refused_only_for_their_own_share(ops in prop::collection::vec(op(), 1..80)) {
        let mut g = guard();
        let share = COMMITTEE_CAPACITY / MEMBERS as usize;
        let mut now = NOW;
        let mut seq = 0u64;
        for op in ops {
            let (origin, kind, count) = match op {
                Op::Votes { member, count } => (member_key(member), Kind::BrachaEcho, count),
                Op::Gossip { member, count } => (member_key(member), Kind::Gossip, count),
                Op::Sybil { key, count } => (sybil_key(key), Kind::Gossip, count),
                Op::Advance { ms } => {
                    now += ms;
                    g.expire(now);
                    continue;
                }
            };
            for _ in 0..count {
                seq += 1;
                let h = header(origin, kind, seq, now);
                let (before, gossip_before) = (g.origin_len(&origin), g.origin_gossip_len(&origin));
                let open_before = g.open_len();
                let outcome = g.insert(h.id(), &h, now);
                // After the insert's own expiry pass, the counts it decided on.
                let full = if g.is_member(&origin) {
                    before >= share || (kind == Kind::Gossip && gossip_before >= share / 2)
                } else {
                    open_before >= OPEN_CAPACITY || before >= PER_ORIGIN
                };
                if full {
                    prop_assert_eq!(outcome, ReplayOutcome::OverCapacity(origin), "{:?} {:?} seq {}", origin, kind, seq);
                } else {
                    prop_assert_eq!(outcome, ReplayOutcome::Fresh, "{:?} {:?} seq {}: refused with room in its share", origin, kind, seq);
                }
            }
            // Caps and model agreement.
            prop_assert!(g.open_len() <= OPEN_CAPACITY);
            prop_assert!(g.committee_len() <= COMMITTEE_CAPACITY);
            prop_assert_eq!(g.open_len() + g.committee_len(), g.len());
            let mut member_total = 0;
            for m in 0..MEMBERS {
                let key = member_key(m);
                prop_assert!(g.origin_len(&key) <= share);
                prop_assert!(g.origin_gossip_len(&key) <= share / 2);
                member_total += g.origin_len(&key);
            }
            prop_assert_eq!(member_total, g.committee_len());
            let sybils: HashMap<u8, usize> = (0..40u8).map(|k| (k, g.origin_len(&sybil_key(k)))).collect();
            prop_assert!(sybils.values().all(|c| *c <= PER_ORIGIN));
            prop_assert_eq!(sybils.values().sum::<usize>(), g.open_len());
        }
    }
}
