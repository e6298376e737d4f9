//! Peers that cannot take what we send.
//!
//! Gossipsub reports a peer as slow at a heartbeat when its send queue to that peer was full
//! since the last one (messages to it were dropped). A peer that stays slow for
//! [`SLOW_PEER_STREAK_MS`] is most likely a wedged link (a stalled connection that
//! `/peers` still shows as connected): the engine asks the driver to drop the connection, and
//! the redial logic connects again on a fresh one. A gap of more than [`SLOW_PEER_GAP_MS`]
//! between reports ends a streak: a burst of load is not a wedge.
//!
//! Being slow is not misbehaviour (it measures our own send queue as much as the peer), so
//! it never touches reputation.

use crate::peer::Peer;
use std::collections::BTreeMap;

/// How long a peer must stay slow, report after report, before its connection is dropped.
pub const SLOW_PEER_STREAK_MS: u64 = 5_000;
/// A report later than this after the previous one starts a new streak.
pub const SLOW_PEER_GAP_MS: u64 = 2_000;
/// Most peers tracked at once (connections are bounded far below; beyond, new reports are
/// ignored until streaks end).
pub const MAX_SLOW_PEERS: usize = 1024;

/// Streaks of slow reports per peer: (first report, last report), ms.
#[derive(Debug, Default)]
pub struct SlowPeers {
    streaks: BTreeMap<Peer, (u64, u64)>,
}

impl SlowPeers {
    /// A slow report for `peer` at `now_ms`; true if its connection should be dropped now
    /// (the streak then starts over).
    pub fn report(&mut self, peer: &Peer, now_ms: u64) -> bool {
        if let Some((first, last)) = self.streaks.get_mut(peer) {
            if now_ms.saturating_sub(*last) > SLOW_PEER_GAP_MS {
                *first = now_ms;
            }
            *last = now_ms;
            if now_ms.saturating_sub(*first) >= SLOW_PEER_STREAK_MS {
                self.streaks.remove(peer);
                return true;
            }
            return false;
        }
        if self.streaks.len() >= MAX_SLOW_PEERS {
            self.expire(now_ms);
        }
        if self.streaks.len() < MAX_SLOW_PEERS {
            self.streaks.insert(peer.clone(), (now_ms, now_ms));
        }
        false
    }

    /// The peer disconnected: its streak ends.
    pub fn forget(&mut self, peer: &Peer) {
        self.streaks.remove(peer);
    }

    /// Drops streaks whose last report is older than [`SLOW_PEER_GAP_MS`].
    pub fn expire(&mut self, now_ms: u64) {
        self.streaks.retain(|_, (_, last)| now_ms.saturating_sub(*last) <= SLOW_PEER_GAP_MS);
    }

    /// Peers tracked now.
    pub fn len(&self) -> usize {
        self.streaks.len()
    }

    /// Whether no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.streaks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(i: u8) -> Peer {
        Peer::Foreign(vec![i])
    }

    #[test]
    fn a_peer_slow_for_the_whole_streak_is_dropped_once() {
        let mut slow = SlowPeers::default();
        let mut dropped = Vec::new();
        for t in (0..=12_000).step_by(500) {
            if slow.report(&peer(1), t) {
                dropped.push(t);
            }
        }
        // 0..5,000 is one streak, the next starts at 5,500 and ends at 10,500.
        assert_eq!(dropped, vec![5_000, 10_500]);
    }

    #[test]
    fn a_gap_between_reports_starts_a_new_streak() {
        let mut slow = SlowPeers::default();
        for t in [0, 500, 1_000, 1_500, 2_000, 2_500, 3_000, 3_500, 4_000, 4_500] {
            assert!(!slow.report(&peer(1), t));
        }
        // 2.5 s of quiet: the burst is over, and a new streak starts at 7,000.
        for t in (7_000..12_000).step_by(500) {
            assert!(!slow.report(&peer(1), t), "{t}");
        }
        assert!(slow.report(&peer(1), 12_000));
    }

    #[test]
    fn the_table_never_holds_more_than_its_bound() {
        let mut slow = SlowPeers::default();
        for i in 0..(MAX_SLOW_PEERS + 100) {
            slow.report(&Peer::Foreign((i as u32).to_be_bytes().to_vec()), 1_000);
        }
        assert_eq!(slow.len(), MAX_SLOW_PEERS);
        // Once their streaks are over, new peers are tracked again.
        assert!(!slow.report(&peer(7), 1_000 + SLOW_PEER_GAP_MS + 1));
        assert_eq!(slow.len(), 1);
    }
}
