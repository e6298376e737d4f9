//! The replay guard: a time window plus a bounded seen-set of message ids (DESIGN.md section 4).
//!
//! # Rule
//! A gossip envelope is inside the window when
//! `now - max_age <= timestamp <= now + max_future`. An id admitted at `now` is remembered
//! until at least `timestamp + max_age + max_future`; after that, the window alone refuses the
//! envelope (it is then older than `max_age` at any clock within `max_future` of ours). So every
//! replay is caught either by the window or by the set.
//!
//! Sync (anti-entropy) envelopes skip the `max_age` side of the window (an old but certified
//! Bracha message must stay fetchable) and are remembered until
//! `max(timestamp, now) + max_age + max_future`, so the same sync answer repeated within that
//! time is a duplicate. The future side applies to both.
//!
//! # Only verified ids enter
//! [`ReplayGuard::check`] is read-only and runs before the signature, to drop duplicates
//! cheaply; [`ReplayGuard::insert`] runs only after the signature verified, so a forged copy
//! that shares an honest header's id can never make the honest envelope look like a duplicate.
//!
//! # Two pools
//! Ids of committee members' envelopes and ids of everyone else's live in separate pools, so
//! no amount of open traffic can crowd out the committee:
//! - the **committee pool** holds `committee_capacity` ids, split evenly: each of the n
//!   members owns `committee_capacity / n` of it and no member can take more. A member's
//!   gossip may use at most half of its share, so its Bracha votes (what every delivery needs)
//!   always find room, whatever it gossips;
//! - the **open pool** holds `capacity` ids of origins outside the committee (the `open`
//!   gossip policy), at most `per_origin_capacity` each. Many Sybil keys, each under its
//!   budget, can fill the open pool: they then crowd out only other non-members.
//!
//! Nothing is ever evicted before its expiry (which would re-open a replay): a full share
//! refuses new ids ([`ReplayOutcome::OverCapacity`]) and frees as its ids expire. A guard made
//! with [`ReplayGuard::new`] knows no committee and puts every origin in the open pool.
//!
//! # Bounds and cost
//! At most `capacity + committee_capacity` ids in all. Ids expire through a queue of time buckets of
//! `bucket_ms` each, ordered by expiry: each id is pushed once and popped once, so expiry is
//! amortised O(1) per id and never scans the set. The queue holds at most
//! `(max_age + 2 max_future) / bucket_ms + 2` buckets.

use crate::error::ConfigError;
use crate::hash::{SeededMap, SeededState};
use byzgossip_crypto::{Header, Kind, MessageId, PublicKey, VerifiedEnvelope};
use std::collections::VecDeque;

/// Default oldest accepted age: 5 minutes (DESIGN.md section 4). Long enough for gossip to
/// cross a large mesh with retries, short enough to bound the seen-set.
pub const DEFAULT_MAX_AGE_MS: u64 = 5 * 60 * 1000;
/// Default tolerated clock lead of the signer: 2 seconds (NTP-synchronised hosts).
pub const DEFAULT_MAX_FUTURE_MS: u64 = 2_000;
/// Default seen-set capacity: 2^18 ids, at most about 30 MiB (about 117 bytes per id). At the
/// n = 16 testnet's ceiling of about 80 deliveries/s with 2n + 1 envelopes each, five minutes
/// hold about 800k ids; nodes on such loads raise it (1M ids: 112 MiB steady, 140 MiB peak
/// while the table doubles).
pub const DEFAULT_SEEN_CAPACITY: usize = 1 << 18;
/// Default per-origin share of the open pool: 2^15 ids (1/8 of the default capacity), i.e.
/// about 100 envelopes/s sustained over the 5-minute window.
pub const DEFAULT_PER_ORIGIN_CAPACITY: usize = 1 << 15;
/// Default committee pool: 2^19 ids (at most about 60 MiB), so each member of a 16-member
/// committee owns 2^15 ids (about 100 envelopes/s over the window, well above an honest
/// member's signing rate at the n = 16 throughput ceiling), 7 members about 75k each. Large
/// committees under heavy load raise it: a member signs about two votes per delivery.
pub const DEFAULT_COMMITTEE_CAPACITY: usize = 1 << 19;
/// Default expiry bucket width: 1 s. Ids live at most one bucket (1 s) past their expiry.
pub const DEFAULT_BUCKET_MS: u64 = 1_000;
/// Most expiry buckets a configuration may need: bounds the queue's length (and the cost of
/// one `expire` call on a clock jump) whatever the window and bucket width.
pub const MAX_BUCKETS: u64 = 1 << 16;

/// Window and seen-set limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayConfig {
    /// Oldest accepted timestamp, relative to `now` (ms).
    pub max_age_ms: u64,
    /// Newest accepted timestamp, ahead of `now` (ms).
    pub max_future_ms: u64,
    /// Hard cap on remembered ids of origins outside the committee (the open pool).
    pub capacity: usize,
    /// Hard cap on remembered ids of one origin outside the committee.
    pub per_origin_capacity: usize,
    /// Ids reserved for committee members, split evenly among them (module docs).
    pub committee_capacity: usize,
    /// Width of an expiry bucket (ms).
    pub bucket_ms: u64,
    /// Seed of the set's hasher (the node passes a random value).
    pub hash_seed: u64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            max_age_ms: DEFAULT_MAX_AGE_MS,
            max_future_ms: DEFAULT_MAX_FUTURE_MS,
            capacity: DEFAULT_SEEN_CAPACITY,
            per_origin_capacity: DEFAULT_PER_ORIGIN_CAPACITY,
            committee_capacity: DEFAULT_COMMITTEE_CAPACITY,
            bucket_ms: DEFAULT_BUCKET_MS,
            hash_seed: 0,
        }
    }
}

impl ReplayConfig {
    /// Checks cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_age_ms == 0 {
            return Err(ConfigError::invalid("max_age_ms", "must be positive"));
        }
        if self.bucket_ms == 0 {
            return Err(ConfigError::invalid("bucket_ms", "must be positive"));
        }
        if self.capacity == 0 || self.capacity > u32::MAX as usize {
            return Err(ConfigError::invalid("capacity", "must be in 1..=u32::MAX"));
        }
        if self.per_origin_capacity == 0 || self.per_origin_capacity > self.capacity {
            return Err(ConfigError::invalid("per_origin_capacity", "must be in 1..=capacity"));
        }
        if self.committee_capacity == 0 || self.capacity.saturating_add(self.committee_capacity) > u32::MAX as usize {
            return Err(ConfigError::invalid("committee_capacity", "must be positive, and capacity + committee_capacity at most u32::MAX"));
        }
        let span = self.max_age_ms.checked_add(self.max_future_ms.saturating_mul(2));
        match span {
            Some(span) if span / self.bucket_ms <= MAX_BUCKETS => Ok(()),
            _ => Err(ConfigError::invalid("bucket_ms", "(max_age + 2 max_future) / bucket_ms exceeds MAX_BUCKETS")),
        }
    }

    /// How long an id admitted with `timestamp` at `now` must be remembered, as an absolute
    /// time.
    fn expiry(&self, timestamp_ms: u64, now_ms: u64, mode: WindowMode) -> u64 {
        let base = match mode {
            WindowMode::Gossip => timestamp_ms,
            WindowMode::Sync => timestamp_ms.max(now_ms),
        };
        base.saturating_add(self.max_age_ms).saturating_add(self.max_future_ms)
    }
}

/// Which window applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WindowMode {
    /// Live gossip: both sides of the window.
    Gossip,
    /// Anti-entropy: no `max_age` limit, the future limit stays (module docs).
    Sync,
}

/// What the guard says about an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Inside the window and not seen (after `insert`: now remembered).
    Fresh,
    /// Already remembered.
    Duplicate,
    /// Older than the window.
    TooOld {
        /// how far before the window's start the timestamp is
        by_ms: u64,
    },
    /// Newer than the window.
    TooNew {
        /// how far past the window's end the timestamp is
        by_ms: u64,
    },
    /// The set, or this origin's share of it, is full.
    OverCapacity(PublicKey),
}

impl ReplayOutcome {
    /// A short fixed name for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::Duplicate => "duplicate",
            Self::TooOld { .. } => "too_old",
            Self::TooNew { .. } => "too_new",
            Self::OverCapacity(_) => "seen_set_full",
        }
    }
}

/// Ids whose expiry lies in `((index - 1) * bucket_ms, index * bucket_ms]`.
#[derive(Debug)]
struct Bucket {
    index: u64,
    ids: Vec<MessageId>,
}

/// An interned origin and how many of its ids are remembered.
#[derive(Debug)]
struct OriginSlot {
    key: PublicKey,
    count: u32,
    /// Of `count`, ids of gossip envelopes (limited for members, module docs).
    gossip: u32,
}

/// A remembered id: its origin's slot and whether it is gossip.
#[derive(Clone, Copy, Debug)]
struct Entry {
    slot: u32,
    gossip: bool,
}

/// Empty bucket vectors kept for reuse, so steady traffic does not allocate.
const SPARE_BUCKETS: usize = 8;

/// Time window plus bounded seen-set (module docs).
#[derive(Debug)]
pub struct ReplayGuard {
    config: ReplayConfig,
    /// id -> its origin's index into `origins`.
    seen: SeededMap<MessageId, Entry>,
    /// Committee members, whose ids go to the committee pool.
    members: SeededMap<PublicKey, ()>,
    /// Each member's share of the committee pool (0 without a committee).
    member_share: usize,
    /// Ids in the open pool.
    open_len: usize,
    origins: Vec<OriginSlot>,
    origin_index: SeededMap<PublicKey, u32>,
    free_origins: Vec<u32>,
    buckets: VecDeque<Bucket>,
    spare: Vec<Vec<MessageId>>,
}

impl ReplayGuard {
    /// An empty guard that knows no committee: every origin is in the open pool.
    pub fn new(config: ReplayConfig) -> Result<Self, ConfigError> {
        Self::with_committee(config, [])
    }

    /// An empty guard whose `members` share the committee pool (module docs). Refused if a
    /// member's share would hold fewer than two ids (one for gossip, one for votes).
    pub fn with_committee(config: ReplayConfig, members: impl IntoIterator<Item = PublicKey>) -> Result<Self, ConfigError> {
        config.validate()?;
        let state = SeededState::new(config.hash_seed);
        let mut member_set = SeededMap::with_hasher(SeededState::new(config.hash_seed.rotate_left(31)));
        member_set.extend(members.into_iter().map(|key| (key, ())));
        let member_share = config.committee_capacity.checked_div(member_set.len()).unwrap_or(0);
        if !member_set.is_empty() && member_share < 2 {
            return Err(ConfigError::invalid("committee_capacity", "must hold at least two ids per committee member"));
        }
        Ok(Self {
            seen: SeededMap::with_hasher(state),
            members: member_set,
            member_share,
            open_len: 0,
            origins: Vec::new(),
            origin_index: SeededMap::with_hasher(SeededState::new(config.hash_seed.rotate_left(17))),
            free_origins: Vec::new(),
            buckets: VecDeque::new(),
            spare: Vec::new(),
            config,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ReplayConfig {
        &self.config
    }

    /// Read-only check of a gossip envelope, before its signature is verified. Call
    /// [`ReplayGuard::expire`] first so that capacity counts only live ids.
    pub fn check(&self, id: &MessageId, header: &Header, now_ms: u64) -> ReplayOutcome {
        self.check_mode(id, header, now_ms, WindowMode::Gossip)
    }

    /// Read-only check of an envelope fetched by sync (no `max_age` limit, module docs).
    pub fn check_sync(&self, id: &MessageId, header: &Header, now_ms: u64) -> ReplayOutcome {
        self.check_mode(id, header, now_ms, WindowMode::Sync)
    }

    /// Read-only check under `mode`.
    pub fn check_mode(&self, id: &MessageId, header: &Header, now_ms: u64, mode: WindowMode) -> ReplayOutcome {
        let timestamp = header.timestamp_ms;
        let newest = now_ms.saturating_add(self.config.max_future_ms);
        if timestamp > newest {
            return ReplayOutcome::TooNew { by_ms: timestamp - newest };
        }
        if mode == WindowMode::Gossip {
            let oldest = now_ms.saturating_sub(self.config.max_age_ms);
            if timestamp < oldest {
                return ReplayOutcome::TooOld { by_ms: oldest - timestamp };
            }
        }
        if self.seen.contains_key(id) {
            return ReplayOutcome::Duplicate;
        }
        if self.share_full(header) {
            return ReplayOutcome::OverCapacity(header.origin);
        }
        ReplayOutcome::Fresh
    }

    /// Remembers the id of an envelope whose signature has verified (gossip window). Expires
    /// old ids first, then re-checks; returns [`ReplayOutcome::Fresh`] only if it inserted.
    pub fn insert(&mut self, id: MessageId, header: &Header, now_ms: u64) -> ReplayOutcome {
        self.insert_mode(id, header, now_ms, WindowMode::Gossip)
    }

    /// [`ReplayGuard::insert`] for an envelope fetched by sync.
    pub fn insert_sync(&mut self, id: MessageId, header: &Header, now_ms: u64) -> ReplayOutcome {
        self.insert_mode(id, header, now_ms, WindowMode::Sync)
    }

    /// [`ReplayGuard::insert`] taking the verified envelope itself, so only verified ids can
    /// enter by construction.
    pub fn insert_verified(&mut self, envelope: &VerifiedEnvelope, now_ms: u64, mode: WindowMode) -> ReplayOutcome {
        self.insert_mode(envelope.id(), envelope.header(), now_ms, mode)
    }

    /// Inserts under `mode` (see [`ReplayGuard::insert`]).
    pub fn insert_mode(&mut self, id: MessageId, header: &Header, now_ms: u64, mode: WindowMode) -> ReplayOutcome {
        self.expire(now_ms);
        let outcome = self.check_mode(&id, header, now_ms, mode);
        if outcome != ReplayOutcome::Fresh {
            return outcome;
        }
        let expiry = self.config.expiry(header.timestamp_ms, now_ms, mode);
        if !self.insert_entry(id, header.origin, header.kind == Kind::Gossip, expiry) {
            // Unreachable by the window arithmetic (module docs); refused rather than kept
            // too briefly.
            return ReplayOutcome::TooNew { by_ms: 0 };
        }
        ReplayOutcome::Fresh
    }

    /// The expiry [`ReplayGuard::insert_mode`] gives an id of an envelope with this
    /// timestamp admitted at `now_ms` (what a node persists to [`ReplayGuard::restore`] it
    /// after a restart).
    pub fn expiry_of(&self, timestamp_ms: u64, now_ms: u64, mode: WindowMode) -> u64 {
        self.config.expiry(timestamp_ms, now_ms, mode)
    }

    /// Remembers the id of a gossip envelope of `origin` admitted before a restart, until
    /// `expires_at_ms` (as stored): a replay of it after the restart is a duplicate, as it
    /// would have been before. The pools' bounds hold as for [`ReplayGuard::insert`]: an id
    /// that finds its share full, or that already expired, is not restored (false).
    pub fn restore(&mut self, id: MessageId, origin: PublicKey, expires_at_ms: u64, now_ms: u64) -> bool {
        self.expire(now_ms);
        if expires_at_ms <= now_ms || self.seen.contains_key(&id) || self.share_full_for(&origin, true) {
            return false;
        }
        // Never kept longer than a window from now (a store written with a longer window).
        let longest = now_ms.saturating_add(self.config.max_age_ms).saturating_add(self.config.max_future_ms);
        self.insert_entry(id, origin, true, expires_at_ms.min(longest))
    }

    /// Inserts an id that passed the checks; false if its expiry does not fit the buckets.
    fn insert_entry(&mut self, id: MessageId, origin_key: PublicKey, gossip: bool, expiry: u64) -> bool {
        if !self.push_expiry(id, expiry) {
            return false;
        }
        let slot = self.intern(origin_key);
        if let Some(origin) = self.origins.get_mut(slot as usize) {
            origin.count = origin.count.saturating_add(1);
            origin.gossip = origin.gossip.saturating_add(u32::from(gossip));
        }
        if !self.is_member(&origin_key) {
            self.open_len += 1;
        }
        self.seen.insert(id, Entry { slot, gossip });
        true
    }

    /// Forgets every id whose expiry is at or before `now_ms`; returns how many. Amortised
    /// O(1) per id: whole buckets are popped from the front of the queue.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut removed = 0;
        while let Some(front) = self.buckets.front() {
            if front.index.saturating_mul(self.config.bucket_ms) > now_ms {
                break;
            }
            let Some(mut bucket) = self.buckets.pop_front() else { break };
            for id in bucket.ids.drain(..) {
                if let Some(entry) = self.seen.remove(&id) {
                    self.release(entry);
                    removed += 1;
                }
            }
            if self.spare.len() < SPARE_BUCKETS {
                self.spare.push(bucket.ids);
            }
        }
        removed
    }

    /// Remembered ids (live or awaiting expiry).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.seen.contains_key(id)
    }

    /// Remembered ids of `origin`.
    pub fn origin_len(&self, origin: &PublicKey) -> usize {
        self.origin_slot(origin).map_or(0, |o| o.count as usize)
    }

    /// Remembered gossip ids of `origin`.
    pub fn origin_gossip_len(&self, origin: &PublicKey) -> usize {
        self.origin_slot(origin).map_or(0, |o| o.gossip as usize)
    }

    /// Ids in the open pool (origins outside the committee).
    pub fn open_len(&self) -> usize {
        self.open_len
    }

    /// Ids in the committee pool.
    pub fn committee_len(&self) -> usize {
        self.seen.len() - self.open_len
    }

    /// Each committee member's share of the committee pool (0 without a committee).
    pub fn member_share(&self) -> usize {
        self.member_share
    }

    /// Whether `origin` is a committee member (its ids go to the committee pool).
    pub fn is_member(&self, origin: &PublicKey) -> bool {
        self.members.contains_key(origin)
    }

    fn origin_slot(&self, origin: &PublicKey) -> Option<&OriginSlot> {
        self.origin_index.get(origin).and_then(|slot| self.origins.get(*slot as usize))
    }

    /// Whether a new id of `header`'s origin and kind would exceed its pool or its share.
    fn share_full(&self, header: &Header) -> bool {
        self.share_full_for(&header.origin, header.kind == Kind::Gossip)
    }

    fn share_full_for(&self, origin: &PublicKey, is_gossip: bool) -> bool {
        let (count, gossip) = self.origin_slot(origin).map_or((0, 0), |o| (o.count as usize, o.gossip as usize));
        if self.is_member(origin) {
            count >= self.member_share || (is_gossip && gossip >= self.member_share / 2)
        } else {
            self.open_len >= self.config.capacity || count >= self.config.per_origin_capacity
        }
    }

    /// Origins with at least one remembered id.
    pub fn origin_count(&self) -> usize {
        self.origin_index.len()
    }

    /// Expiry buckets in the queue (bounded, module docs).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Heap bytes held by the guard's tables, from their capacities (hash tables: one control
    /// byte plus the entry per slot, slots = capacity * 8 / 7 rounded up to a power of two).
    pub fn approx_heap_bytes(&self) -> usize {
        fn table<K, V>(capacity: usize) -> usize {
            if capacity == 0 {
                return 0;
            }
            let slots = (capacity * 8 / 7).next_power_of_two();
            slots * (std::mem::size_of::<(K, V)>() + 1)
        }
        let id = std::mem::size_of::<MessageId>();
        table::<MessageId, Entry>(self.seen.capacity())
            + table::<PublicKey, ()>(self.members.capacity())
            + table::<PublicKey, u32>(self.origin_index.capacity())
            + self.origins.capacity() * std::mem::size_of::<OriginSlot>()
            + self.buckets.iter().map(|b| b.ids.capacity() * id).sum::<usize>()
            + self.buckets.capacity() * std::mem::size_of::<Bucket>()
            + self.spare.iter().map(|v| v.capacity() * id).sum::<usize>()
    }

    /// Files `id` in the bucket that covers `expiry`. False only if the bucket would lie past
    /// the queue's bound.
    fn push_expiry(&mut self, id: MessageId, expiry: u64) -> bool {
        let index = expiry.div_ceil(self.config.bucket_ms);
        let front = match self.buckets.front() {
            Some(front) => front.index,
            None => {
                let ids = self.take_spare();
                self.buckets.push_back(Bucket { index, ids });
                index
            }
        };
        // An expiry before the front bucket is kept until the front bucket expires: later
        // than needed, which is safe.
        let offset = index.saturating_sub(front);
        if offset > MAX_BUCKETS + 2 {
            return false;
        }
        let offset = offset as usize;
        while self.buckets.len() <= offset {
            let next = front + self.buckets.len() as u64;
            let ids = self.take_spare();
            self.buckets.push_back(Bucket { index: next, ids });
        }
        match self.buckets.get_mut(offset) {
            Some(bucket) => {
                bucket.ids.push(id);
                true
            }
            None => false,
        }
    }

    fn take_spare(&mut self) -> Vec<MessageId> {
        self.spare.pop().unwrap_or_default()
    }

    fn intern(&mut self, origin: PublicKey) -> u32 {
        if let Some(slot) = self.origin_index.get(&origin) {
            return *slot;
        }
        let slot = match self.free_origins.pop() {
            Some(slot) => {
                if let Some(entry) = self.origins.get_mut(slot as usize) {
                    *entry = OriginSlot { key: origin, count: 0, gossip: 0 };
                }
                slot
            }
            None => {
                self.origins.push(OriginSlot { key: origin, count: 0, gossip: 0 });
                // Fits: origins never outnumber ids, and capacity <= u32::MAX (validate).
                (self.origins.len() - 1) as u32
            }
        };
        self.origin_index.insert(origin, slot);
        slot
    }

    fn release(&mut self, entry: Entry) {
        let Some(origin) = self.origins.get_mut(entry.slot as usize) else { return };
        if !self.members.contains_key(&origin.key) {
            self.open_len = self.open_len.saturating_sub(1);
        }
        origin.count = origin.count.saturating_sub(1);
        origin.gossip = origin.gossip.saturating_sub(u32::from(entry.gossip));
        let slot = entry.slot;
        if origin.count == 0 {
            let key = origin.key;
            self.origin_index.remove(&key);
            self.free_origins.push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzgossip_crypto::{Digest, Kind, NetworkId};

    fn header(origin: u8, seq: u64, timestamp_ms: u64) -> Header {
        Header {
            version: 1,
            network: NetworkId([1; 32]),
            kind: Kind::Gossip,
            origin: PublicKey([origin; 32]),
            seq,
            timestamp_ms,
            body_len: 0,
            body_hash: Digest([0; 32]),
        }
    }

    fn guard(capacity: usize, per_origin: usize) -> ReplayGuard {
        ReplayGuard::new(ReplayConfig { capacity, per_origin_capacity: per_origin, ..ReplayConfig::default() })
            .expect("valid config")
    }

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn restored_ids_are_duplicates_until_their_stored_expiry_and_respect_the_pools() {
        let mut g = guard(3, 2);
        let (a, b, c) = (header(1, 0, NOW), header(1, 1, NOW), header(1, 2, NOW));
        let expiry = g.expiry_of(NOW, NOW, WindowMode::Gossip);
        assert!(g.restore(a.id(), a.origin, expiry, NOW + 1_000));
        assert_eq!(g.check_sync(&a.id(), &a, NOW + 1_000), ReplayOutcome::Duplicate, "a replay after a restart is a duplicate");
        assert!(!g.restore(a.id(), a.origin, expiry, NOW + 1_000), "restored once");
        assert!(!g.restore(c.id(), c.origin, NOW + 500, NOW + 1_000), "an id already expired is not restored");
        assert!(g.restore(b.id(), b.origin, expiry, NOW + 1_000));
        assert!(!g.restore(c.id(), c.origin, expiry, NOW + 1_000), "the origin's share (2) is full");
        // At the stored expiry the id goes, as if it had never left the set.
        g.expire(expiry);
        assert!(!g.contains(&a.id()));
        // An expiry beyond a window from now (another configuration) is cut to one window.
        let mut g = guard(16, 16);
        assert!(g.restore(a.id(), a.origin, u64::MAX, NOW));
        g.expire(g.expiry_of(NOW, NOW, WindowMode::Gossip));
        assert!(!g.contains(&a.id()));
    }

    #[test]
    fn window_bounds_are_inclusive_and_report_distance() {
        let g = guard(16, 16);
        let age = DEFAULT_MAX_AGE_MS;
        let fut = DEFAULT_MAX_FUTURE_MS;
        let check = |ts| {
            let h = header(1, 0, ts);
            g.check(&h.id(), &h, NOW)
        };
        assert_eq!(check(NOW - age), ReplayOutcome::Fresh);
        assert_eq!(check(NOW + fut), ReplayOutcome::Fresh);
        assert_eq!(check(NOW - age - 1), ReplayOutcome::TooOld { by_ms: 1 });
        assert_eq!(check(NOW + fut + 500), ReplayOutcome::TooNew { by_ms: 500 });
        assert_eq!(check(u64::MAX), ReplayOutcome::TooNew { by_ms: u64::MAX - NOW - fut });
        // Early clock: no underflow.
        let h = header(1, 0, 0);
        assert_eq!(g.check(&h.id(), &h, 10), ReplayOutcome::Fresh);
    }

    #[test]
    fn check_is_read_only_and_insert_remembers() {
        let mut g = guard(16, 16);
        let h = header(1, 0, NOW);
        assert_eq!(g.check(&h.id(), &h, NOW), ReplayOutcome::Fresh);
        assert_eq!(g.check(&h.id(), &h, NOW), ReplayOutcome::Fresh);
        assert_eq!(g.insert(h.id(), &h, NOW), ReplayOutcome::Fresh);
        assert_eq!(g.check(&h.id(), &h, NOW), ReplayOutcome::Duplicate);
        assert_eq!(g.insert(h.id(), &h, NOW), ReplayOutcome::Duplicate);
        assert_eq!(g.len(), 1);
        assert_eq!(g.origin_len(&h.origin), 1);
    }

    #[test]
    fn id_is_kept_until_window_refuses_it_then_expires() {
        let mut g = guard(16, 16);
        let h = header(1, 0, NOW + DEFAULT_MAX_FUTURE_MS);
        assert_eq!(g.insert(h.id(), &h, NOW), ReplayOutcome::Fresh);
        // At every instant of the window, a replay is caught by the set.
        let last = h.timestamp_ms + DEFAULT_MAX_AGE_MS;
        for now in (NOW..=last).step_by(7_001).chain([last]) {
            g.expire(now);
            assert_eq!(g.check(&h.id(), &h, now), ReplayOutcome::Duplicate, "at {now}");
        }
        // Past the window it is refused as too old, and soon forgotten.
        assert!(matches!(g.check(&h.id(), &h, last + 1), ReplayOutcome::TooOld { .. }));
        g.expire(last + DEFAULT_MAX_FUTURE_MS + DEFAULT_BUCKET_MS);
        assert!(g.is_empty());
        assert_eq!(g.origin_count(), 0);
        assert_eq!(g.bucket_count(), 0);
    }

    #[test]
    fn capacity_bound_refuses_without_evicting() {
        let mut g = guard(8, 8);
        for seq in 0..8 {
            let h = header(seq as u8, seq, NOW);
            assert_eq!(g.insert(h.id(), &h, NOW), ReplayOutcome::Fresh);
        }
        let h = header(100, 99, NOW);
        assert_eq!(g.insert(h.id(), &h, NOW), ReplayOutcome::OverCapacity(h.origin));
        assert_eq!(g.len(), 8);
        // Every earlier id is still a duplicate.
        for seq in 0..8 {
            let h = header(seq as u8, seq, NOW);
            assert_eq!(g.check(&h.id(), &h, NOW), ReplayOutcome::Duplicate);
        }
    }

    #[test]
    fn per_origin_share_stops_one_flooder_and_spares_others() {
        let mut g = guard(10, 3);
        for seq in 0..3 {
            let h = header(9, seq, NOW);
            assert_eq!(g.insert(h.id(), &h, NOW), ReplayOutcome::Fresh);
        }
        for seq in 3..100 {
            let h = header(9, seq, NOW);
            assert_eq!(g.insert(h.id(), &h, NOW), ReplayOutcome::OverCapacity(h.origin));
        }
        assert_eq!(g.len(), 3);
        let honest = header(1, 0, NOW);
        assert_eq!(g.insert(honest.id(), &honest, NOW), ReplayOutcome::Fresh);
        // The flooder's share frees as its ids expire.
        g.expire(NOW + DEFAULT_MAX_AGE_MS + DEFAULT_MAX_FUTURE_MS + DEFAULT_BUCKET_MS);
        let later = header(9, 500, NOW + DEFAULT_MAX_AGE_MS + 10_000);
        assert_eq!(g.insert(later.id(), &later, later.timestamp_ms), ReplayOutcome::Fresh);
    }

    /// A guard with members 1..=4 sharing a committee pool of 40 (10 ids each) and an open
    /// pool of 12 (at most 4 per origin).
    fn committee_guard() -> ReplayGuard {
        let config = ReplayConfig { capacity: 12, per_origin_capacity: 4, committee_capacity: 40, ..ReplayConfig::default() };
        ReplayGuard::with_committee(config, (1..=4).map(|i| PublicKey([i; 32]))).expect("valid config")
    }

    fn vote(origin: u8, seq: u64) -> Header {
        Header { kind: Kind::BrachaEcho, ..header(origin, seq, NOW) }
    }

    #[test]
    fn open_traffic_cannot_take_the_committee_pool() {
        let mut g = committee_guard();
        assert_eq!(g.member_share(), 10);
        // Three Sybil keys fill the open pool (4 each).
        for origin in 100..103u8 {
            for seq in 0..10 {
                let h = header(origin, seq, NOW);
                let expected = if seq < 4 { ReplayOutcome::Fresh } else { ReplayOutcome::OverCapacity(h.origin) };
                assert_eq!(g.insert(h.id(), &h, NOW), expected);
            }
        }
        let other = header(103, 0, NOW);
        assert_eq!(g.insert(other.id(), &other, NOW), ReplayOutcome::OverCapacity(other.origin), "the open pool is full");
        assert_eq!((g.open_len(), g.committee_len()), (12, 0));
        // Every member still has its whole share.
        for member in 1..=4u8 {
            for seq in 0..10 {
                let h = vote(member, seq);
                assert_eq!(g.insert(h.id(), &h, NOW), ReplayOutcome::Fresh, "member {member} vote {seq}");
            }
        }
        assert_eq!((g.open_len(), g.committee_len(), g.len()), (12, 40, 52));
    }

    #[test]
    fn a_members_gossip_takes_at_most_half_its_share_and_never_anothers() {
        let mut g = committee_guard();
        for seq in 0..20 {
            let h = header(1, seq, NOW);
            let expected = if seq < 5 { ReplayOutcome::Fresh } else { ReplayOutcome::OverCapacity(h.origin) };
            assert_eq!(g.insert(h.id(), &h, NOW), expected, "gossip {seq}");
        }
        assert_eq!(g.origin_gossip_len(&PublicKey([1; 32])), 5);
        // Its votes get the other half, then the share is full for everything it signs.
        for seq in 100..105 {
            let h = vote(1, seq);
            assert_eq!(g.insert(h.id(), &h, NOW), ReplayOutcome::Fresh);
        }
        let over = vote(1, 105);
        assert_eq!(g.insert(over.id(), &over, NOW), ReplayOutcome::OverCapacity(over.origin));
        // Another member is untouched.
        let h = header(2, 0, NOW);
        assert_eq!(g.insert(h.id(), &h, NOW), ReplayOutcome::Fresh);
        // Expiry frees the share and the gossip count together.
        g.expire(NOW + DEFAULT_MAX_AGE_MS + DEFAULT_MAX_FUTURE_MS + DEFAULT_BUCKET_MS);
        assert_eq!((g.len(), g.origin_gossip_len(&PublicKey([1; 32])), g.open_len()), (0, 0, 0));
    }

    #[test]
    fn a_committee_pool_too_small_for_two_ids_per_member_is_refused() {
        let config = ReplayConfig { committee_capacity: 7, ..ReplayConfig::default() };
        assert!(ReplayGuard::with_committee(config.clone(), (1..=4).map(|i| PublicKey([i; 32]))).is_err());
        assert!(ReplayGuard::with_committee(config, (1..=3).map(|i| PublicKey([i; 32]))).is_ok());
    }

    #[test]
    fn sync_mode_skips_max_age_but_not_future_and_remembers() {
        let mut g = guard(16, 16);
        let old = header(1, 0, NOW - 10 * DEFAULT_MAX_AGE_MS);
        assert!(matches!(g.check(&old.id(), &old, NOW), ReplayOutcome::TooOld { .. }));
        assert_eq!(g.check_sync(&old.id(), &old, NOW), ReplayOutcome::Fresh);
        assert_eq!(g.insert_sync(old.id(), &old, NOW), ReplayOutcome::Fresh);
        assert_eq!(g.check_sync(&old.id(), &old, NOW + DEFAULT_MAX_AGE_MS), ReplayOutcome::Duplicate);
        let future = header(1, 1, NOW + DEFAULT_MAX_FUTURE_MS + 1);
        assert_eq!(g.check_sync(&future.id(), &future, NOW), ReplayOutcome::TooNew { by_ms: 1 });
    }

    #[test]
    fn bucket_queue_stays_bounded_and_clock_going_back_is_safe() {
        let mut g = guard(1 << 16, 1 << 16);
        let mut now = NOW;
        for seq in 0..20_000u64 {
            now += 97;
            let h = header((seq % 7) as u8, seq, now - (seq % 300) * 1000);
            let _ = g.insert(h.id(), &h, now);
            let bound = (DEFAULT_MAX_AGE_MS + 2 * DEFAULT_MAX_FUTURE_MS) / DEFAULT_BUCKET_MS + 2;
            assert!(g.bucket_count() as u64 <= bound, "{} buckets", g.bucket_count());
        }
        // The clock jumps back an hour: inserts land in the front bucket, nothing panics.
        let h = header(1, 1 << 40, now - 3_600_000);
        assert_eq!(g.insert(h.id(), &h, now - 3_600_000), ReplayOutcome::Fresh);
        assert!(g.contains(&h.id()));
        g.expire(u64::MAX);
        assert!(g.is_empty());
    }

    #[test]
    fn config_validation() {
        assert!(ReplayConfig::default().validate().is_ok());
        let bad = [
            ReplayConfig { max_age_ms: 0, ..Default::default() },
            ReplayConfig { bucket_ms: 0, ..Default::default() },
            ReplayConfig { capacity: 0, ..Default::default() },
            ReplayConfig { per_origin_capacity: 0, ..Default::default() },
            ReplayConfig { capacity: 4, per_origin_capacity: 5, ..Default::default() },
            ReplayConfig { committee_capacity: 0, ..Default::default() },
            ReplayConfig { capacity: u32::MAX as usize, committee_capacity: 1, ..Default::default() },
            ReplayConfig { bucket_ms: 1, max_age_ms: MAX_BUCKETS * 2, ..Default::default() },
            ReplayConfig { max_age_ms: u64::MAX, ..Default::default() },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
            assert!(ReplayGuard::new(config).is_err());
        }
    }
}
