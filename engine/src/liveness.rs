//! Liveness an operator can see: per-peer ping round trips with a suspicion state, and the
//! committee's quorum health.
//!
//! The driver reports each ping's outcome ([`crate::Engine::handle_ping`]). A peer whose last
//! [`SUSPECT_AFTER_FAILURES`] pings failed is *suspected*; any message from it, or a ping
//! that succeeds, clears that. Suspicion is not misbehaviour: it never touches reputation,
//! it only stops the peer counting as reachable in [`QuorumHealth`].
//!
//! Bracha needs 2f+1 members to take part for an instance to complete. The engine counts
//! the members it can reach (itself, if a member, and every connected member not suspected)
//! and the instances first seen more than [`STALL_MS`] ago and not delivered; when fewer than
//! 2f+1 members are reachable, no broadcast can complete, and the engine says so once, when
//! it happens (`Metric::Quorum` with `possible: false`; the node logs it at warn), and again
//! when progress is possible again.

use crate::peer::Peer;
use std::collections::BTreeMap;

/// Consecutive failed pings after which a peer is suspected.
pub const SUSPECT_AFTER_FAILURES: u32 = 3;
/// Most peers whose pings are tracked (connections are capped far below).
pub const MAX_TRACKED_PINGS: usize = 1024;
/// An instance seen this long ago and not delivered is stalled.
pub const STALL_MS: u64 = 10_000;

/// One peer's pings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PingState {
    /// The last successful round trip (ms).
    pub rtt_ms: Option<u64>,
    /// Pings failed since the last success or message.
    pub failures: u32,
}

impl PingState {
    /// Whether the peer is suspected (see the module docs).
    pub fn suspected(&self) -> bool {
        self.failures >= SUSPECT_AFTER_FAILURES
    }
}

/// Pings per connected peer, bounded by [`MAX_TRACKED_PINGS`].
#[derive(Debug, Default)]
pub struct Pings {
    peers: BTreeMap<Peer, PingState>,
}

impl Pings {
    /// A ping to `peer` came back after `rtt_ms` (`Some`) or failed (`None`).
    pub fn ping(&mut self, peer: &Peer, rtt_ms: Option<u64>) {
        if !self.peers.contains_key(peer) && self.peers.len() >= MAX_TRACKED_PINGS {
            return;
        }
        let state = self.peers.entry(peer.clone()).or_default();
        match rtt_ms {
            Some(rtt) => *state = PingState { rtt_ms: Some(rtt), failures: 0 },
            None => state.failures = state.failures.saturating_add(1),
        }
    }

    /// A message arrived from `peer`: it is alive, whatever its pings say.
    pub fn traffic(&mut self, peer: &Peer) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.failures = 0;
        }
    }

    /// The peer disconnected.
    pub fn forget(&mut self, peer: &Peer) {
        self.peers.remove(peer);
    }

    /// The ping state of `peer`.
    pub fn get(&self, peer: &Peer) -> PingState {
        self.peers.get(peer).copied().unwrap_or_default()
    }

    /// Peers tracked now.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

/// Whether the committee can make progress, as far as this node can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuorumHealth {
    /// Members reachable: this node if it is one, plus connected members not suspected.
    pub members_reachable: usize,
    /// Members an instance needs to complete (2f+1).
    pub members_needed: usize,
    /// Instances seen more than [`STALL_MS`] ago and not delivered.
    pub stalled_instances: usize,
}

impl QuorumHealth {
    /// Whether enough members are reachable for a broadcast to complete.
    pub fn progress_possible(&self) -> bool {
        self.members_reachable >= self.members_needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(i: u8) -> Peer {
        Peer::Foreign(vec![i])
    }

    #[test]
    fn three_failed_pings_suspect_a_peer_and_traffic_or_a_pong_clears_it() {
        let mut pings = Pings::default();
        pings.ping(&peer(1), Some(12));
        for _ in 0..2 {
            pings.ping(&peer(1), None);
        }
        assert!(!pings.get(&peer(1)).suspected());
        pings.ping(&peer(1), None);
        assert_eq!(pings.get(&peer(1)), PingState { rtt_ms: Some(12), failures: 3 });
        assert!(pings.get(&peer(1)).suspected());
        pings.traffic(&peer(1));
        assert!(!pings.get(&peer(1)).suspected(), "a message clears suspicion");
        for _ in 0..5 {
            pings.ping(&peer(1), None);
        }
        pings.ping(&peer(1), Some(30));
        assert_eq!(pings.get(&peer(1)), PingState { rtt_ms: Some(30), failures: 0 });
        pings.forget(&peer(1));
        assert_eq!(pings.get(&peer(1)), PingState::default());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut pings = Pings::default();
        for i in 0..MAX_TRACKED_PINGS + 10 {
            pings.ping(&Peer::Foreign(i.to_be_bytes().to_vec()), Some(1));
        }
        assert_eq!(pings.len(), MAX_TRACKED_PINGS);
    }
}
