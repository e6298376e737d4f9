//! The peers that must be blocked at the transport, computed level-triggered.
//!
//! At every tick the engine computes the set of peers it *wants* blocked (banned or excluded
//! by reputation, blocked by hand, identities that are not ed25519) and emits the difference
//! with what it told the driver before: [`PeerAction::Block`] for new members,
//! [`PeerAction::Unblock`] for those no longer wanted. A ban that expires therefore unblocks
//! at the next tick even though the banned peer, being blocked, never sends anything that
//! would be scored again (the edge-triggered design it replaces never unblocked it).

use crate::output::PeerAction;
use crate::peer::Peer;
use std::collections::{BTreeSet, VecDeque};

/// Most peers an operator (or the testnet) may block by hand at once.
pub const MAX_OPERATOR_BLOCKS: usize = 4096;
/// Most peers without an ed25519 identity remembered as blocked; beyond, the oldest is
/// forgotten (and unblocked: if it comes back it is refused again on connect).
pub const MAX_FOREIGN_BLOCKS: usize = 1024;

/// Blocks by hand, foreign identities, and what the driver was told.
#[derive(Default)]
pub(crate) struct Blocks {
    by_hand: BTreeSet<Peer>,
    foreign: VecDeque<Peer>,
    applied: BTreeSet<Peer>,
}

impl Blocks {
    /// Blocks `peer` by hand; refuses beyond [`MAX_OPERATOR_BLOCKS`].
    pub(crate) fn block_by_hand(&mut self, peer: Peer) -> Result<(), String> {
        if !self.by_hand.contains(&peer) && self.by_hand.len() >= MAX_OPERATOR_BLOCKS {
            return Err(format!("at most {MAX_OPERATOR_BLOCKS} peers can be blocked by hand"));
        }
        self.by_hand.insert(peer);
        Ok(())
    }

    /// Lifts a block by hand; whether there was one.
    pub(crate) fn unblock_by_hand(&mut self, peer: &Peer) -> bool {
        self.by_hand.remove(peer)
    }

    /// Remembers a peer without an ed25519 identity (bounded, oldest forgotten first).
    pub(crate) fn foreign(&mut self, peer: Peer) {
        if self.foreign.contains(&peer) {
            return;
        }
        if self.foreign.len() >= MAX_FOREIGN_BLOCKS {
            self.foreign.pop_front();
        }
        self.foreign.push_back(peer);
    }

    /// The action (if any) that brings one peer's transport block in line with what is wanted
    /// of it (`banned`: reputation bans or excludes it), without recomputing the whole set:
    /// an operator blocking thousands of peers one by one costs one step each.
    pub(crate) fn reconcile_one(&mut self, peer: &Peer, banned: bool) -> Option<PeerAction> {
        let wanted = banned || self.by_hand.contains(peer) || self.foreign.contains(peer);
        match (wanted, self.applied.contains(peer)) {
            (true, false) => {
                self.applied.insert(peer.clone());
                Some(PeerAction::Block(peer.clone()))
            }
            (false, true) => {
                self.applied.remove(peer);
                Some(PeerAction::Unblock(peer.clone()))
            }
            _ => None,
        }
    }

    /// The actions that take the transport from what it was told to `wanted` (the
    /// reputation's banned and excluded peers) plus blocks by hand and foreign peers.
    pub(crate) fn reconcile(&mut self, banned: impl IntoIterator<Item = Peer>) -> Vec<PeerAction> {
        let mut wanted: BTreeSet<Peer> = banned.into_iter().collect();
        wanted.extend(self.by_hand.iter().cloned());
        wanted.extend(self.foreign.iter().cloned());
        let mut actions: Vec<PeerAction> = wanted.difference(&self.applied).cloned().map(PeerAction::Block).collect();
        actions.extend(self.applied.difference(&wanted).cloned().map(PeerAction::Unblock));
        self.applied = wanted;
        actions
    }

    /// Peers blocked at the transport now.
    pub(crate) fn applied(&self) -> &BTreeSet<Peer> {
        &self.applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzgossip_crypto::PublicKey;

    fn key(b: u8) -> Peer {
        Peer::Key(PublicKey([b; 32]))
    }

    #[test]
    fn reconcile_emits_only_the_difference() {
        let mut blocks = Blocks::default();
        assert_eq!(blocks.reconcile([key(1)]), vec![PeerAction::Block(key(1))]);
        assert!(blocks.reconcile([key(1)]).is_empty(), "level-triggered: nothing new, nothing emitted");
        blocks.block_by_hand(key(2)).expect("room");
        assert_eq!(blocks.reconcile([key(1)]), vec![PeerAction::Block(key(2))]);
        // The ban on 1 expired; 2 stays blocked by hand.
        assert_eq!(blocks.reconcile([]), vec![PeerAction::Unblock(key(1))]);
        // A ban on a peer blocked by hand: lifting the hand block keeps the ban.
        assert!(blocks.reconcile([key(2)]).is_empty());
        assert!(blocks.unblock_by_hand(&key(2)));
        assert!(blocks.reconcile([key(2)]).is_empty());
        assert_eq!(blocks.reconcile([]), vec![PeerAction::Unblock(key(2))]);
    }

    #[test]
    fn blocks_by_hand_and_foreign_peers_are_bounded() {
        let mut blocks = Blocks::default();
        for i in 0..MAX_OPERATOR_BLOCKS as u32 {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&i.to_be_bytes());
            blocks.block_by_hand(Peer::Key(PublicKey(bytes))).expect("room");
        }
        assert!(blocks.block_by_hand(key(0xff)).is_err());
        for i in 0..(MAX_FOREIGN_BLOCKS + 10) as u32 {
            blocks.foreign(Peer::Foreign(i.to_be_bytes().to_vec()));
        }
        assert_eq!(blocks.foreign.len(), MAX_FOREIGN_BLOCKS);
        assert_eq!(blocks.foreign.front(), Some(&Peer::Foreign(10u32.to_be_bytes().to_vec())), "oldest forgotten first");
    }
}
