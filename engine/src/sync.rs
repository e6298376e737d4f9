//! Anti-entropy sync messages and the engine's serving plans (DESIGN.md section 6).
//!
//! Every sync interval the engine sends a random connected peer a [`SyncRequest::Digest`]:
//! per origin, the lowest Bracha seq it has not delivered and one past the highest gossip seq
//! it holds. The peer answers with what it has beyond those marks: delivery certificates
//! with their values, and recent gossip envelopes. Everything received is re-admitted exactly
//! like gossip (certificates and envelopes are verified as jobs off the event loop), so a
//! lying peer gains nothing. The engine also asks for a single Bracha value by digest when it
//! holds 2f+1 READYs but never saw the SEND ([`SyncRequest::Value`]), and, while it recovers
//! its next broadcast seq after losing its store, for the highest delivered instance of its
//! own ([`SyncRequest::Latest`], see `crate::recovery`).
//!
//! Serving reads stored deliveries, which is IO: the engine decides *what* to serve and under
//! which bounds and hands the driver a [`ServePlan`]; the driver runs [`ServePlan::execute`]
//! against its store off the event loop and sends the response.
//!
//! Bounds: a frame is at most [`MAX_SYNC_FRAME`] bytes (checked before allocating), a
//! response carries at most [`MAX_SYNC_ITEMS`] items and stops adding items at
//! [`SYNC_RESPONSE_BUDGET`] bytes, a digest names at most [`MAX_DIGEST_ORIGINS`] origins, and
//! one plan reads at most [`MAX_SYNC_LOOKUPS`] stored deliveries.

use crate::store::DeliveryLog;
use byzgossip_crypto::codec::MAX_ENVELOPE_LEN;
use byzgossip_crypto::{Digest, PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Largest request or response frame: the codec's ceiling, so one frame is one decode.
pub const MAX_SYNC_FRAME: usize = MAX_ENVELOPE_LEN;
/// Responses stop growing past this many bytes of items (leaves room for framing).
pub const SYNC_RESPONSE_BUDGET: usize = MAX_SYNC_FRAME - 64 * 1024;
/// Most items (deliveries plus envelopes) in one response.
pub const MAX_SYNC_ITEMS: usize = 256;
/// Most origins named in one digest (the committee plus recent gossip origins).
pub const MAX_DIGEST_ORIGINS: usize = 4096;
/// Most gossip gaps named in one digest, over all origins.
pub const MAX_DIGEST_GAPS: usize = 1024;
/// Most equivocation proofs in one catch-up response (each about two envelopes). A node
/// keeps one proof per excluded member and offers them all when they fit, so a node that
/// was down while a member was convicted learns of it at its next sync.
pub const MAX_SYNC_EVIDENCE: usize = 32;
/// Most stored deliveries looked up to answer one digest: a requester claiming seq 0 against
/// a long, mostly pruned history must not cost a million reads.
pub const MAX_SYNC_LOOKUPS: usize = 4 * MAX_SYNC_ITEMS;

/// Per-origin progress marks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginMark {
    /// The origin.
    pub origin: PublicKey,
    /// Bracha: the lowest seq not yet delivered. Gossip: one past the highest seq held.
    pub next: u64,
}

/// Per-origin gossip marks: one past the highest seq held, and the gaps below it (at most
/// [`crate::gossip::MAX_GAPS_PER_ORIGIN`]) that the requester lacks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipMark {
    /// The origin.
    pub origin: PublicKey,
    /// One past the highest seq held.
    pub next: u64,
    /// Seqs below `next` not held (gossip repair, `crate::gossip::HeldSeqs`).
    pub gaps: Vec<u64>,
}

/// A sync request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// "Here is what I have; send me what I lack."
    Digest {
        /// Bracha delivery marks per origin (origins not named: send from seq 0).
        bracha: Vec<OriginMark>,
        /// Gossip marks per origin (origins not named: the responder sends whatever recent
        /// gossip of theirs it holds).
        gossip: Vec<GossipMark>,
    },
    /// The value of one Bracha instance, by digest.
    Value {
        /// Instance origin.
        origin: PublicKey,
        /// Instance seq.
        seq: u64,
        /// The value's digest.
        digest: Digest,
    },
    /// The highest delivered instance of `origin` the peer holds, with its certificate (a
    /// member recovering its next broadcast seq asks this about itself).
    Latest {
        /// The origin.
        origin: PublicKey,
    },
}

impl SyncRequest {
    /// Whether the request is within the protocol's bounds (a digest names at most
    /// [`MAX_DIGEST_ORIGINS`] origins). Decoders refuse requests that are not.
    pub fn within_bounds(&self) -> bool {
        match self {
            SyncRequest::Digest { bracha, gossip } => {
                bracha.len() + gossip.len() <= MAX_DIGEST_ORIGINS
                    && gossip.iter().all(|m| m.gaps.len() <= crate::gossip::MAX_GAPS_PER_ORIGIN)
                    && gossip.iter().map(|m| m.gaps.len()).sum::<usize>() <= MAX_DIGEST_GAPS
            }
            SyncRequest::Value { .. } | SyncRequest::Latest { .. } => true,
        }
    }
}

/// A delivered instance as sync carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncedDelivery {
    /// The encoded certificate (`byzgossip_bracha::Certificate`).
    #[serde(with = "serde_bytes")]
    pub certificate: Vec<u8>,
    /// The value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// A sync response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// Answer to a digest.
    Catchup {
        /// Delivered instances the requester lacks.
        deliveries: Vec<SyncedDelivery>,
        /// Encoded gossip envelopes the requester lacks.
        gossip: Vec<serde_bytes::ByteBuf>,
        /// Equivocation evidence (`byzgossip_bracha::Evidence` bodies) the responder verified,
        /// at most [`MAX_SYNC_EVIDENCE`]; the requester verifies it again, as a job.
        evidence: Vec<serde_bytes::ByteBuf>,
    },
    /// Answer to a value request (`None`: not held).
    Value(Option<serde_bytes::ByteBuf>),
    /// Answer to [`SyncRequest::Latest`] (`None`: nothing of that origin held).
    Latest(Option<SyncedDelivery>),
}

impl SyncResponse {
    /// Whether the response is within the protocol's bounds (at most [`MAX_SYNC_ITEMS`]
    /// items). Decoders refuse responses that are not.
    pub fn within_bounds(&self) -> bool {
        match self {
            SyncResponse::Catchup { deliveries, gossip, evidence } => {
                deliveries.len() + gossip.len() + evidence.len() <= MAX_SYNC_ITEMS && evidence.len() <= MAX_SYNC_EVIDENCE
            }
            SyncResponse::Value(_) | SyncResponse::Latest(_) => true,
        }
    }

    /// Bytes of payload the response carries (certificates, values, envelopes).
    pub fn payload_len(&self) -> usize {
        match self {
            SyncResponse::Catchup { deliveries, gossip, evidence } => {
                deliveries.iter().map(|d| d.certificate.len() + d.value.len()).sum::<usize>()
                    + gossip.iter().map(|g| g.len()).sum::<usize>()
                    + evidence.iter().map(|e| e.len()).sum::<usize>()
            }
            SyncResponse::Value(value) => value.as_ref().map_or(0, |v| v.len()),
            SyncResponse::Latest(delivery) => delivery.as_ref().map_or(0, |d| d.certificate.len() + d.value.len()),
        }
    }
}

/// Fills a response up to the item and byte budgets, in the order given.
#[derive(Default)]
pub struct ResponseBuilder {
    deliveries: Vec<SyncedDelivery>,
    gossip: Vec<serde_bytes::ByteBuf>,
    evidence: Vec<serde_bytes::ByteBuf>,
    bytes: usize,
}

impl ResponseBuilder {
    fn has_room(&self, len: usize) -> bool {
        self.deliveries.len() + self.gossip.len() + self.evidence.len() < MAX_SYNC_ITEMS && self.bytes + len + 16 <= SYNC_RESPONSE_BUDGET
    }

    /// Adds an evidence body if it fits (at most [`MAX_SYNC_EVIDENCE`]); false when full.
    pub fn push_evidence(&mut self, evidence: Vec<u8>) -> bool {
        if self.evidence.len() >= MAX_SYNC_EVIDENCE || !self.has_room(evidence.len()) {
            return false;
        }
        self.bytes += evidence.len() + 16;
        self.evidence.push(serde_bytes::ByteBuf::from(evidence));
        true
    }

    /// Adds a delivery if it fits; false when the response is full.
    pub fn push_delivery(&mut self, certificate: Vec<u8>, value: Vec<u8>) -> bool {
        let len = certificate.len() + value.len();
        if !self.has_room(len) {
            return false;
        }
        self.bytes += len + 16;
        self.deliveries.push(SyncedDelivery { certificate, value });
        true
    }

    /// Adds an encoded envelope if it fits; false when the response is full.
    pub fn push_gossip(&mut self, envelope: Vec<u8>) -> bool {
        if !self.has_room(envelope.len()) {
            return false;
        }
        self.bytes += envelope.len() + 16;
        self.gossip.push(serde_bytes::ByteBuf::from(envelope));
        true
    }

    /// The response.
    pub fn finish(self) -> SyncResponse {
        SyncResponse::Catchup { deliveries: self.deliveries, gossip: self.gossip, evidence: self.evidence }
    }
}

/// What to answer one sync request with, decided by the engine; [`ServePlan::execute`] reads
/// the store (the driver runs it off its event loop).
#[derive(Clone, Debug)]
pub struct ServePlan {
    kind: PlanKind,
}

#[derive(Clone, Debug)]
enum PlanKind {
    /// A value the engine already holds in memory, or the stored value of an instance if its
    /// digest matches.
    Value { origin: PublicKey, seq: u64, digest: Digest, held: Option<Vec<u8>> },
    /// Stored deliveries of `members` above the requester's marks, then the recent gossip
    /// envelopes the engine picked.
    Catchup { theirs: HashMap<PublicKey, u64>, members: Vec<PublicKey>, gossip: Vec<Vec<u8>>, evidence: Vec<Vec<u8>> },
    /// The stored delivery of `origin` with the highest seq, else the one held in memory.
    Latest { origin: PublicKey, held: Option<(u64, SyncedDelivery)> },
}

impl ServePlan {
    pub(crate) fn value(origin: PublicKey, seq: u64, digest: Digest, held: Option<Vec<u8>>) -> Self {
        ServePlan { kind: PlanKind::Value { origin, seq, digest, held } }
    }

    pub(crate) fn catchup(theirs: HashMap<PublicKey, u64>, members: Vec<PublicKey>, gossip: Vec<Vec<u8>>, evidence: Vec<Vec<u8>>) -> Self {
        ServePlan { kind: PlanKind::Catchup { theirs, members, gossip, evidence } }
    }

    pub(crate) fn latest(origin: PublicKey, held: Option<(u64, SyncedDelivery)>) -> Self {
        ServePlan { kind: PlanKind::Latest { origin, held } }
    }

    /// Builds the response, reading at most [`MAX_SYNC_LOOKUPS`] stored deliveries.
    pub fn execute(self, log: &dyn DeliveryLog) -> SyncResponse {
        match self.kind {
            PlanKind::Latest { origin, held } => {
                // One watermark read and one lookup: the highest seq delivered here.
                let stored = log
                    .watermarks()
                    .into_iter()
                    .find(|m| m.origin == origin)
                    .and_then(|m| log.delivery(&origin, m.high).map(|d| (m.high, d)))
                    .map(|(seq, d)| (seq, SyncedDelivery { certificate: d.certificate, value: d.value }));
                let best = match (stored, held) {
                    (Some(s), Some(h)) => Some(if h.0 > s.0 { h } else { s }),
                    (s, h) => s.or(h),
                };
                SyncResponse::Latest(best.map(|(_, d)| d))
            }
            PlanKind::Value { held: Some(value), .. } => SyncResponse::Value(Some(serde_bytes::ByteBuf::from(value))),
            PlanKind::Value { origin, seq, digest, held: None } => {
                let stored = log.delivery(&origin, seq).filter(|d| d.digest == digest);
                SyncResponse::Value(stored.map(|d| serde_bytes::ByteBuf::from(d.value)))
            }
            PlanKind::Catchup { theirs, members, gossip, evidence } => {
                let mut response = ResponseBuilder::default();
                // Evidence first: a few small proofs that exclude a member everywhere.
                for proof in evidence {
                    if !response.push_evidence(proof) {
                        break;
                    }
                }
                let marks = log.watermarks();
                let mut lookups = 0usize;
                'origins: for origin in members {
                    let Some(mine) = marks.iter().find(|m| m.origin == origin) else { continue };
                    let from = theirs.get(&origin).copied().unwrap_or(0);
                    for seq in from..=mine.high {
                        lookups += 1;
                        if lookups > MAX_SYNC_LOOKUPS {
                            break 'origins;
                        }
                        if let Some(d) = log.delivery(&origin, seq)
                            && !response.push_delivery(d.certificate, d.value)
                        {
                            break 'origins;
                        }
                    }
                }
                for bytes in gossip {
                    if !response.push_gossip(bytes) {
                        break;
                    }
                }
                response.finish()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StoredDelivery, Watermark};
    use byzgossip_crypto::codec;
    use std::cell::Cell;

    #[test]
    fn response_builder_respects_item_and_byte_budgets() {
        let mut b = ResponseBuilder::default();
        let mut n = 0;
        while b.push_gossip(vec![0; 10]) {
            n += 1;
        }
        assert_eq!(n, MAX_SYNC_ITEMS);
        let mut b = ResponseBuilder::default();
        let mut n = 0;
        while b.push_delivery(vec![0; 100_000], vec![1; 100_000]) {
            n += 1;
        }
        assert_eq!(n, SYNC_RESPONSE_BUDGET / 200_016);
        let encoded = codec::encode(&b.finish());
        assert!(encoded.len() <= MAX_SYNC_FRAME, "{}", encoded.len());
        let mut b = ResponseBuilder::default();
        let mut n = 0;
        while b.push_evidence(vec![0; 10]) {
            n += 1;
        }
        assert_eq!(n, MAX_SYNC_EVIDENCE, "evidence per response is bounded");
        assert!(b.finish().within_bounds());
    }

    /// A log claiming a huge history of which nothing is kept: every lookup misses.
    struct Pruned {
        lookups: Cell<usize>,
    }

    impl DeliveryLog for Pruned {
        fn delivery(&self, _origin: &PublicKey, _seq: u64) -> Option<StoredDelivery> {
            self.lookups.set(self.lookups.get() + 1);
            None
        }
        fn watermarks(&self) -> Vec<Watermark> {
            vec![Watermark { origin: PublicKey([1; 32]), low: 1 << 40, high: 1 << 40, count: 1 << 40 }]
        }
    }

    #[test]
    fn a_catchup_plan_reads_a_bounded_number_of_deliveries() {
        let log = Pruned { lookups: Cell::new(0) };
        let plan = ServePlan::catchup(HashMap::new(), vec![PublicKey([1; 32])], vec![], vec![]);
        let response = plan.execute(&log);
        assert_eq!(log.lookups.get(), MAX_SYNC_LOOKUPS, "a claim of seq 0 must not cost 2^40 reads");
        assert!(response.within_bounds());
    }
}
