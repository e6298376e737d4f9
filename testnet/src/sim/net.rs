//! The simulated network: links with latency, jitter, loss and bandwidth, connections that
//! blocks and crashes close, and a gossipsub model.
//!
//! # Gossipsub model
//! Like the node's gossipsub configuration (`byzgossip_node::network`): message id = SHA-256
//! of the whole message bytes, a duplicate cache that drops every id seen in the last
//! [`DUPLICATE_CACHE_MS`] before anything else looks at it, own publishes flooded to every
//! connected peer (`flood_publish`), a received message forwarded only after the engine
//! answered `Accept` (`validate_messages`), to the node's mesh peers on that topic except
//! the one it came from; `Ignore` and `Reject` are not forwarded. Each node's mesh per topic
//! is a fixed random set of D = clamp(n - 1, 2, 8) peers drawn from the seed (links are
//! symmetric, as GRAFTs are); when fewer than D_low = 2D/3 mesh peers are connected, the
//! node grafts connected peers in a fixed random order of its own until it has D (the
//! heartbeat's top-up). Not modelled: IHAVE/IWANT lazy gossip (sync repairs what a mesh
//! misses), gossipsub's own peer scoring (the engine's reputation gates admission).

use crate::scenario::Links;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeSet;

/// How long a message id stays in the duplicate cache (the node's `duplicate_cache_time`).
pub const DUPLICATE_CACHE_MS: u64 = 120_000;

/// Timeout of a sync request whose request or answer was lost (libp2p request-response's
/// timeout in the node).
pub const SYNC_TIMEOUT_US: u64 = 10_000_000;

/// Per directed link: fixed extra latency and the time the link is busy until (bandwidth)
/// and the last arrival (FIFO).
#[derive(Clone, Copy, Default)]
struct Link {
    extra_us: u64,
    busy_until_us: u64,
    last_arrival_us: u64,
}

/// The links between `n` nodes.
pub struct Net {
    n: usize,
    links: Vec<Link>,
    base_us: u64,
    jitter_us: u64,
    loss: f64,
    /// Microseconds per byte (0: unlimited).
    us_per_byte: f64,
    rng: ChaCha20Rng,
}

fn us(ms: f64) -> u64 {
    (ms * 1000.0).round().max(0.0) as u64
}

impl Net {
    /// Links for `n` nodes with `config`, per-link latencies drawn from `seed`.
    pub fn new(n: usize, config: &Links, seed: u64) -> Net {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let spread = us(config.latency_spread_ms);
        let links = (0..n * n)
            .map(|_| Link { extra_us: if spread == 0 { 0 } else { rng.random_range(0..=spread) }, ..Link::default() })
            .collect();
        let us_per_byte = if config.bandwidth_mbps > 0.0 { 8.0 / config.bandwidth_mbps } else { 0.0 };
        Net { n, links, base_us: us(config.latency_ms), jitter_us: us(config.jitter_ms), loss: config.loss, us_per_byte, rng }
    }

    /// One-way latency of `from -> to` without jitter or queueing (µs).
    pub fn latency_us(&self, from: usize, to: usize) -> u64 {
        self.base_us + self.links[from * self.n + to].extra_us
    }

    /// When `len` bytes sent now on `from -> to` arrive, or `None` if lost (when `lossy`).
    pub fn send(&mut self, now_us: u64, from: usize, to: usize, len: usize, lossy: bool) -> Option<u64> {
        if lossy && self.loss > 0.0 && self.rng.random_bool(self.loss) {
            return None;
        }
        let jitter = if self.jitter_us == 0 { 0 } else { self.rng.random_range(0..=self.jitter_us) };
        let latency = self.latency_us(from, to);
        let link = &mut self.links[from * self.n + to];
        let start = now_us.max(link.busy_until_us);
        let transmit = (len as f64 * self.us_per_byte) as u64;
        link.busy_until_us = start + transmit;
        let arrival = (start + transmit + latency + jitter).max(link.last_arrival_us);
        link.last_arrival_us = arrival;
        Some(arrival)
    }
}

/// The fixed random mesh of one topic.
pub struct Mesh {
    /// Mesh peers of each node.
    peers: Vec<BTreeSet<usize>>,
    /// Each node's fixed order of candidates for grafting.
    order: Vec<Vec<usize>>,
    d: usize,
    d_low: usize,
}

impl Mesh {
    /// A mesh of `n` nodes drawn from `seed`.
    pub fn new(n: usize, seed: u64) -> Mesh {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let d = n.saturating_sub(1).clamp(2, 8);
        let d_low = (d * 2 / 3).max(1);
        let mut peers = vec![BTreeSet::new(); n];
        let mut order = Vec::with_capacity(n);
        for i in 0..n {
            let mut others: Vec<usize> = (0..n).filter(|j| *j != i).collect();
            // Fisher-Yates with the seeded rng.
            for k in (1..others.len()).rev() {
                let j = rng.random_range(0..=k);
                others.swap(k, j);
            }
            order.push(others);
        }
        for i in 0..n {
            for &j in order[i].iter() {
                if peers[i].len() >= d {
                    break;
                }
                if peers[j].len() < 2 * d {
                    peers[i].insert(j);
                    peers[j].insert(i);
                }
            }
        }
        Mesh { peers, order, d, d_low }
    }

    /// Where node `i` forwards a message that came from `source`: its connected mesh peers,
    /// topped up to D from its graft order when fewer than D_low are connected.
    pub fn targets(&self, i: usize, source: Option<usize>, connected: impl Fn(usize) -> bool) -> Vec<usize> {
        let mut out: Vec<usize> = self.peers[i].iter().copied().filter(|j| connected(*j)).collect();
        if out.len() < self.d_low {
            for &j in &self.order[i] {
                if out.len() >= self.d {
                    break;
                }
                if connected(j) && !out.contains(&j) {
                    out.push(j);
                }
            }
        }
        out.retain(|j| Some(*j) != source);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_degree_is_between_d_and_2d_and_links_are_fifo() {
        let mesh = Mesh::new(40, 3);
        for i in 0..40 {
            let t = mesh.targets(i, None, |_| true);
            assert!(t.len() >= 8 && t.len() <= 16, "{i}: {}", t.len());
        }
        let small = Mesh::new(4, 3);
        assert_eq!(small.targets(0, Some(1), |_| true), vec![2, 3], "n - 1 <= D: everyone but the source");
        let mut net = Net::new(2, &Links { jitter_ms: 50.0, ..Links::default() }, 1);
        let mut last = 0;
        for k in 0..100 {
            let at = net.send(k, 0, 1, 100, true).expect("no loss");
            assert!(at >= last, "FIFO");
            last = at;
        }
    }
}
