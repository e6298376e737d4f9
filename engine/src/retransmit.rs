//! Retransmission of own Bracha messages until their instance is delivered here.
//!
//! A vote published before the gossipsub mesh formed (or lost otherwise) would stall an
//! instance, and gossipsub refuses to publish identical bytes twice. So until an instance is
//! delivered here, the engine re-signs its own SEND/ECHO/READY with a fresh timestamp and
//! publishes it again, with a doubling interval. Same digest, so peers count it once; a fresh
//! header, so gossipsub does not drop it as a duplicate of the first copy.

use byzgossip_bracha::InstanceId;
use byzgossip_crypto::{Envelope, Kind};
use std::collections::HashMap;

/// Shortest first retransmission delay (ms); doubles up to [`RETRANSMIT_MAX_MS`]. The first
/// delay is [`RETRANSMIT_LATENCY_FACTOR`] times the recent delivery latency when that is
/// longer: under load every instance is slow, nothing was lost, and a retransmission would
/// only be one more signature for every peer to check.
pub const RETRANSMIT_FIRST_MS: u64 = 2000;
/// The first retransmission waits at least this many times the smoothed delivery latency.
pub const RETRANSMIT_LATENCY_FACTOR: u64 = 3;
/// Longest retransmission interval (ms): an instance stalled by a burst of loss resumes
/// within this long after the loss ends.
pub const RETRANSMIT_MAX_MS: u64 = 8000;
/// Most own messages retransmitted per tick.
pub const MAX_RETRANSMIT_PER_TICK: usize = 8;
/// No retransmission while this many Bracha messages wait for verification here: a long
/// line means the committee is overloaded, not that messages were lost, and retransmitting
/// then only adds signatures for everyone to check (congestion collapse).
pub const RETRANSMIT_BACKOFF_QUEUE: usize = 64;

struct Entry {
    envelope: Envelope,
    next_at_ms: u64,
    interval_ms: u64,
}

/// Own messages of open instances, with their next retransmission time.
#[derive(Default)]
pub(crate) struct Retransmit {
    entries: HashMap<(InstanceId, Kind), Entry>,
}

impl Retransmit {
    /// The first delay for a smoothed delivery latency of `latency_ms`.
    pub(crate) fn first_delay(latency_ms: u64) -> u64 {
        latency_ms.saturating_mul(RETRANSMIT_LATENCY_FACTOR).clamp(RETRANSMIT_FIRST_MS, RETRANSMIT_MAX_MS)
    }

    /// Tracks an own message, first due `delay_ms` after `now_ms`.
    pub(crate) fn insert(&mut self, instance: InstanceId, kind: Kind, envelope: Envelope, now_ms: u64, delay_ms: u64) {
        self.entries.insert((instance, kind), Entry { envelope, next_at_ms: now_ms + delay_ms, interval_ms: delay_ms });
    }

    /// Forgets every message of an instance.
    pub(crate) fn remove_instance(&mut self, instance: &InstanceId) {
        self.entries.retain(|(i, _), _| i != instance);
    }

    /// Keeps only the messages of instances `open` says are still open.
    pub(crate) fn retain_open(&mut self, open: impl Fn(&InstanceId) -> bool) {
        self.entries.retain(|(instance, _), _| open(instance));
    }

    /// The messages due at `now_ms`, longest overdue first, at most
    /// [`MAX_RETRANSMIT_PER_TICK`]; each one's interval doubles (up to the maximum).
    pub(crate) fn due(&mut self, now_ms: u64) -> Vec<Envelope> {
        let mut due: Vec<((InstanceId, Kind), u64)> =
            self.entries.iter().filter(|(_, e)| e.next_at_ms <= now_ms).map(|(k, e)| (*k, e.next_at_ms)).collect();
        // Ties broken by instance and kind, so a replay of the same inputs retransmits the
        // same messages (the simulator's state hash depends on it).
        due.sort_by_key(|((instance, kind), at)| (*at, instance.origin, instance.seq, kind.label()));
        due.truncate(MAX_RETRANSMIT_PER_TICK);
        let mut out = Vec::new();
        for (key, _) in due {
            let Some(entry) = self.entries.get_mut(&key) else { continue };
            entry.interval_ms = (entry.interval_ms * 2).min(RETRANSMIT_MAX_MS);
            entry.next_at_ms = now_ms + entry.interval_ms;
            out.push(entry.envelope.clone());
        }
        out
    }

    /// A committee member's connection came (back) up: every tracked message is due at
    /// `now_ms` again, its interval back to `first_ms`. After a partition heals, the
    /// messages it stalled would otherwise wait out a backoff that grew during the cut (up to
    /// [`RETRANSMIT_MAX_MS`]), longer than a totality deadline; [`MAX_RETRANSMIT_PER_TICK`]
    /// still paces them.
    pub(crate) fn hurry(&mut self, now_ms: u64, first_ms: u64) {
        for entry in self.entries.values_mut() {
            if entry.next_at_ms > now_ms {
                entry.next_at_ms = now_ms;
                entry.interval_ms = first_ms / 2;
            }
        }
    }

    /// Messages tracked.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
