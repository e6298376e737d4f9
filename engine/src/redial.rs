//! Redialling bootstrap peers that dropped, with a doubling backoff.

use crate::peer::Peer;
use std::collections::BTreeMap;

/// Longest redial backoff (ms).
pub const MAX_REDIAL_BACKOFF_MS: u64 = 30_000;

/// Bootstrap peers not connected now, with when to dial each next and its current backoff.
pub(crate) struct Redial {
    base_ms: u64,
    bootstrap: Vec<Peer>,
    due: BTreeMap<Peer, (u64, u64)>,
}

impl Redial {
    pub(crate) fn new(bootstrap: Vec<Peer>, base_ms: u64) -> Self {
        Redial { base_ms: base_ms.max(1), bootstrap, due: BTreeMap::new() }
    }

    fn is_bootstrap(&self, peer: &Peer) -> bool {
        self.bootstrap.contains(peer)
    }

    /// A connection to `peer` is up: nothing to redial.
    pub(crate) fn connected(&mut self, peer: &Peer) {
        self.due.remove(peer);
    }

    /// The last connection to `peer` closed: redial a bootstrap peer after the base delay.
    pub(crate) fn disconnected(&mut self, peer: &Peer, now_ms: u64) {
        if self.is_bootstrap(peer) {
            let base = self.base_ms;
            self.due.entry(peer.clone()).or_insert((now_ms + base, base));
        }
    }

    /// A dial to `peer` failed: back off (doubling, at most [`MAX_REDIAL_BACKOFF_MS`]).
    pub(crate) fn failed(&mut self, peer: &Peer, now_ms: u64) {
        if !self.is_bootstrap(peer) {
            return;
        }
        let entry = self.due.entry(peer.clone()).or_insert((now_ms, self.base_ms));
        entry.1 = (entry.1 * 2).min(MAX_REDIAL_BACKOFF_MS);
        entry.0 = now_ms + entry.1;
    }

    /// Redial `peer` at the next tick (a block by hand was lifted).
    pub(crate) fn soon(&mut self, peer: &Peer, now_ms: u64) {
        if self.is_bootstrap(peer) {
            self.due.insert(peer.clone(), (now_ms, self.base_ms));
        }
    }

    /// Peers due for a dial at `now_ms` that `skip` does not exclude (blocked ones keep their
    /// backoff); each one's backoff doubles.
    pub(crate) fn due(&mut self, now_ms: u64, skip: impl Fn(&Peer) -> bool) -> Vec<Peer> {
        let mut out = Vec::new();
        for (peer, (at, backoff)) in self.due.iter_mut() {
            if *at <= now_ms && !skip(peer) {
                out.push(peer.clone());
                *backoff = (*backoff * 2).min(MAX_REDIAL_BACKOFF_MS);
                *at = now_ms + *backoff;
            }
        }
        out
    }
}
