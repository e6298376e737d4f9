//! The Bracha state machine of one committee member.

use crate::bitset::BitSet;
use crate::certificate::{Certificate, VerifiedCertificate};
use crate::config::{Config, Thresholds};
use crate::error::Error;
use crate::evidence::Evidence;
use crate::message::{InstanceId, Message, rebuild_vote};
use crate::step::{Delivery, Fault, FaultKind, Fetch, Step};
use byzgossip_crypto::{
    Committee, Digest, Envelope, Header, Keypair, Kind, NetworkId, PublicKey, Signature, VerifiedEnvelope,
    WIRE_VERSION,
};
use std::collections::BTreeMap;
use std::ops::Range;

/// A vote kept compactly: the digest slot, and what is needed to rebuild the exact signed
/// envelope (for certificates and evidence).
#[derive(Clone, Copy, Debug)]
pub(crate) struct VoteRecord {
    slot: u16,
    timestamp_ms: u64,
    signature: Signature,
}

/// Per digest seen in an instance: who ECHOed and who READYed it.
#[derive(Clone, Debug)]
struct Tally {
    digest: Digest,
    echoes: BitSet,
    readys: BitSet,
}

/// A fetch in progress.
#[derive(Clone, Copy, Debug)]
struct PendingFetch {
    digest: Digest,
    next_at_ms: u64,
    rotation: usize,
}

/// One open instance.
///
/// Bounds: `echo` and `ready` hold one record per member; each member adds at most one ECHO
/// digest and one READY digest before a conflicting one excludes it, so `tallies` holds at
/// most `2n + 2` digests (the +2 for the origin's SENDs); `values` holds at most three (the
/// first SEND's, a conflicting SEND's, one supplied for the READY quorum).
#[derive(Debug)]
struct Open {
    instance: InstanceId,
    /// The origin's first SEND: its digest, timestamp and signature (the value is in `values`).
    send: Option<(Digest, u64, Signature)>,
    values: Vec<(Digest, Vec<u8>)>,
    tallies: Vec<Tally>,
    echo: Vec<Option<VoteRecord>>,
    ready: Vec<Option<VoteRecord>>,
    excluded: BitSet,
    echoed: bool,
    readied: bool,
    /// The digest with 2f+1 READYs, once there is one.
    quorum: Option<Digest>,
    fetch: Option<PendingFetch>,
    /// Set when the instance delivered; the caller moves it to the retained set.
    done: Option<Retained>,
}

/// A delivered instance, kept for sync until its retention ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retained {
    /// `Digest::of(value)`.
    pub digest: Digest,
    /// The delivered value.
    pub value: Vec<u8>,
    /// 2f+1 signed READYs for it.
    pub certificate: Certificate,
    /// The `now_ms` of the delivery.
    pub delivered_at_ms: u64,
}

/// Per-origin state: the window's low edge, open instances in the window, delivered ones.
#[derive(Debug, Default)]
struct OriginState {
    low: u64,
    open: BTreeMap<u64, Box<Open>>,
    retained: BTreeMap<u64, Retained>,
}

/// Where a seq falls for one origin.
enum Position {
    /// Below the low watermark: finished and possibly collected.
    Below,
    /// Delivered and still retained.
    Retained,
    /// In the window.
    Open,
    /// At or past `window_end`.
    Beyond(u64),
}

/// Everything fixed at construction.
struct Ctx {
    committee: Committee,
    keypair: Keypair,
    me: usize,
    network: NetworkId,
    config: Config,
    thresholds: Thresholds,
    /// Simulator only: own envelopes carry a zero signature and certificates are not checked.
    unsigned: bool,
}

/// Counts of what the machine holds, to check memory bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open instances (all origins).
    pub open_instances: usize,
    /// Delivered instances still retained.
    pub retained_instances: usize,
    /// Votes recorded in open instances.
    pub vote_records: usize,
    /// Bytes of values held (open and retained).
    pub value_bytes: usize,
    /// An estimate of all protocol state in bytes (values, vote state, certificates), to
    /// compare with [`Config::memory_bound`].
    pub bytes: usize,
}

/// The Bracha reliable broadcast state machine of one committee member (crate docs).
pub struct Bracha {
    ctx: Ctx,
    origins: Vec<OriginState>,
    next_seq: u64,
}

impl std::fmt::Debug for Bracha {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bracha")
            .field("me", &self.ctx.me)
            .field("n", &self.ctx.committee.n())
            .field("next_seq", &self.next_seq)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Ctx {
    fn n(&self) -> usize {
        self.committee.n()
    }

    /// Signs own messages (or, in the simulator's unsigned mode, frames them unsigned).
    fn seal(&self, message: &Message, now_ms: u64) -> Envelope {
        if self.unsigned {
            return crate::message::frame_unsigned(self.network, self.keypair.public(), message, now_ms);
        }
        // Values are checked against max_value_len <= MAX_VALUE_LEN first, so sealing fits.
        message.seal(&self.keypair, self.network, now_ms).unwrap_or_else(|_| unreachable!("bounded body"))
    }

    fn vote_envelope(&self, kind: Kind, member: usize, instance: &InstanceId, digest: &Digest, record: &VoteRecord) -> Envelope {
        let signer = *self.committee.member(member).unwrap_or_else(|| unreachable!("member index"));
        rebuild_vote(self.network, kind, signer, instance, digest, record.timestamp_ms, record.signature)
    }

    fn send_envelope(&self, instance: &InstanceId, value: &[u8], timestamp_ms: u64, signature: Signature) -> Envelope {
        let body = Message::Send { instance: *instance, value: value.to_vec() }.encode_body();
        let header = Header {
            version: WIRE_VERSION,
            network: self.network,
            kind: Kind::BrachaSend,
            origin: instance.origin,
            seq: instance.seq,
            timestamp_ms,
            body_len: body.len() as u32,
            body_hash: Digest::of(&body),
        };
        Envelope::from_parts(header, body, signature).unwrap_or_else(|_| unreachable!("body matches header"))
    }
}

impl Open {
    fn new(instance: InstanceId, n: usize) -> Self {
        Open {
            instance,
            send: None,
            values: Vec::new(),
            tallies: Vec::new(),
            echo: vec![None; n],
            ready: vec![None; n],
            excluded: BitSet::new(n),
            echoed: false,
            readied: false,
            quorum: None,
            fetch: None,
            done: None,
        }
    }

    fn slot(&mut self, digest: &Digest, n: usize) -> usize {
        if let Some(i) = self.tallies.iter().position(|t| t.digest == *digest) {
            return i;
        }
        self.tallies.push(Tally { digest: *digest, echoes: BitSet::new(n), readys: BitSet::new(n) });
        self.tallies.len() - 1
    }

    fn add_value(&mut self, digest: Digest, value: Vec<u8>) {
        if !self.values.iter().any(|(d, _)| *d == digest) {
            self.values.push((digest, value));
        }
    }

    fn exclude(&mut self, ctx: &Ctx, member: usize, first: Envelope, second: Envelope, step: &mut Step) {
        self.excluded.insert(member);
        step.evidence.push(Evidence { first, second });
        let member = *ctx.committee.member(member).unwrap_or_else(|| unreachable!("member index"));
        step.faults.push(Fault { member, kind: FaultKind::Equivocation });
    }

    /// A SEND from the origin (`from` is the origin's index).
    fn on_send(&mut self, ctx: &Ctx, from: usize, value: Vec<u8>, envelope: &Envelope, now_ms: u64, step: &mut Step) {
        if self.excluded.contains(from) {
            return;
        }
        let digest = Digest::of(&value);
        match self.send {
            Some((first, _, _)) if first == digest => {}
            Some((first, timestamp_ms, signature)) => {
                // Equivocating origin: keep both as evidence, never echo the second value.
                let first_value = self.values.iter().find(|(d, _)| *d == first).map(|(_, v)| v.as_slice()).unwrap_or(&[]);
                let first_envelope = ctx.send_envelope(&self.instance, first_value, timestamp_ms, signature);
                self.exclude(ctx, from, first_envelope, envelope.clone(), step);
                // The value is still a candidate: the READY quorum may be for it.
                self.add_value(digest, value);
                self.try_deliver(ctx, now_ms, step);
            }
            None => {
                self.send = Some((digest, envelope.header().timestamp_ms, *envelope.signature()));
                self.add_value(digest, value);
                if !self.echoed {
                    // Outgoing in causal order: this ECHO before any READY it triggers.
                    let echo = ctx.seal(&Message::Echo { instance: self.instance, digest }, now_ms);
                    step.outgoing.push(echo.clone());
                    self.on_vote(ctx, Kind::BrachaEcho, ctx.me, digest, &echo, now_ms, step);
                }
                self.try_deliver(ctx, now_ms, step);
            }
        }
    }

    /// An ECHO or READY for `digest` signed by member `from` (possibly this member).
    #[allow(clippy::too_many_arguments)]
    fn on_vote(&mut self, ctx: &Ctx, kind: Kind, from: usize, digest: Digest, envelope: &Envelope, now_ms: u64, step: &mut Step) {
        if self.excluded.contains(from) {
            return;
        }
        let is_echo = kind == Kind::BrachaEcho;
        let existing = if is_echo { self.echo[from] } else { self.ready[from] };
        if let Some(record) = existing {
            let first_digest = self.tallies[record.slot as usize].digest;
            if first_digest != digest && from != ctx.me {
                let first = ctx.vote_envelope(kind, from, &self.instance, &first_digest, &record);
                self.exclude(ctx, from, first, envelope.clone(), step);
            }
            // A duplicate (or a conflicting copy of an own vote, which this member never
            // counts twice) changes nothing.
            return;
        }
        let n = ctx.n();
        let slot = self.slot(&digest, n);
        let record = VoteRecord {
            slot: slot as u16,
            timestamp_ms: envelope.header().timestamp_ms,
            signature: *envelope.signature(),
        };
        let t = &ctx.thresholds;
        if is_echo {
            self.echo[from] = Some(record);
            self.tallies[slot].echoes.insert(from);
            if from == ctx.me {
                self.echoed = true;
            }
            if self.tallies[slot].echoes.len() >= t.ready_on_echo {
                self.send_ready(ctx, digest, now_ms, step);
            }
        } else {
            self.ready[from] = Some(record);
            self.tallies[slot].readys.insert(from);
            if from == ctx.me {
                self.readied = true;
            }
            let readys = self.tallies[slot].readys.len();
            if readys >= t.ready_on_ready {
                self.send_ready(ctx, digest, now_ms, step);
            }
            if readys >= t.deliver && self.quorum.is_none() {
                self.quorum = Some(digest);
                self.try_deliver(ctx, now_ms, step);
            }
        }
    }

    /// READY(digest), once per instance.
    fn send_ready(&mut self, ctx: &Ctx, digest: Digest, now_ms: u64, step: &mut Step) {
        if self.readied {
            return;
        }
        let ready = ctx.seal(&Message::Ready { instance: self.instance, digest }, now_ms);
        step.outgoing.push(ready.clone());
        self.on_vote(ctx, Kind::BrachaReady, ctx.me, digest, &ready, now_ms, step);
    }

    /// Delivers once there is a READY quorum and its value; otherwise starts a fetch.
    fn try_deliver(&mut self, ctx: &Ctx, now_ms: u64, step: &mut Step) {
        let Some(digest) = self.quorum else { return };
        if self.done.is_some() {
            return;
        }
        let Some(position) = self.values.iter().position(|(d, _)| *d == digest) else {
            if self.fetch.is_none() {
                self.fetch = Some(PendingFetch { digest, next_at_ms: now_ms.saturating_add(ctx.config.fetch_retry_ms), rotation: 0 });
                step.fetches.push(self.fetch_request(ctx, digest, 0));
            }
            return;
        };
        let value = self.values.swap_remove(position).1;
        let certificate = self.certificate(ctx, digest);
        self.finish(digest, value, certificate, now_ms, step);
    }

    fn finish(&mut self, digest: Digest, value: Vec<u8>, certificate: Certificate, now_ms: u64, step: &mut Step) {
        step.delivered.push(Delivery { instance: self.instance, value: value.clone(), digest, certificate: certificate.clone() });
        self.done = Some(Retained { digest, value, certificate, delivered_at_ms: now_ms });
    }

    /// The first 2f+1 READYs for `digest`, in committee order.
    fn certificate(&self, ctx: &Ctx, digest: Digest) -> Certificate {
        let readys = self
            .tallies
            .iter()
            .find(|t| t.digest == digest)
            .map(|tally| {
                tally
                    .readys
                    .iter()
                    .filter_map(|m| self.ready[m].map(|r| ctx.vote_envelope(Kind::BrachaReady, m, &self.instance, &digest, &r)))
                    .take(ctx.thresholds.deliver)
                    .collect()
            })
            .unwrap_or_default();
        Certificate { instance: self.instance, digest, readys }
    }

    /// Members to ask for the value: echoers of `digest`, then readiers, rotated.
    fn fetch_request(&self, ctx: &Ctx, digest: Digest, rotation: usize) -> Fetch {
        let mut from = Vec::new();
        if let Some(tally) = self.tallies.iter().find(|t| t.digest == digest) {
            from.extend(tally.echoes.iter().filter(|&m| m != ctx.me));
            from.extend(tally.readys.iter().filter(|&m| m != ctx.me && !tally.echoes.contains(m)));
        }
        if !from.is_empty() {
            let r = rotation % from.len();
            from.rotate_left(r);
        }
        Fetch { instance: self.instance, digest, from }
    }

    fn heap_bytes(&self) -> usize {
        let values: usize = self.values.iter().map(|(_, v)| v.len() + 32 + 24).sum();
        let tallies: usize =
            self.tallies.iter().map(|t| std::mem::size_of::<Tally>() + t.echoes.heap_bytes() + t.readys.heap_bytes()).sum();
        std::mem::size_of::<Open>()
            + values
            + tallies
            + 2 * self.echo.len() * std::mem::size_of::<Option<VoteRecord>>()
            + self.excluded.heap_bytes()
    }
}

fn retained_bytes(r: &Retained) -> usize {
    let readys: usize = r.certificate.readys.iter().map(|e| std::mem::size_of::<Envelope>() + e.body().len()).sum();
    std::mem::size_of::<Retained>() + r.value.len() + readys
}

/// Bytes of one open instance's fixed vote state for a committee of `n`, for
/// [`Config::memory_bound`].
pub(crate) fn open_fixed_bytes(n: usize) -> usize {
    let bits = n.div_ceil(64) * 8;
    std::mem::size_of::<Open>()
        + 2 * n * std::mem::size_of::<Option<VoteRecord>>()
        + bits
        + (2 * n + 2) * (std::mem::size_of::<Tally>() + 2 * bits)
}

/// Bytes of one retained certificate READY, for [`Config::memory_bound`].
pub(crate) fn retained_ready_bytes() -> usize {
    std::mem::size_of::<Envelope>() + crate::message::VOTE_BODY_LEN
}

/// Bytes of one retained instance besides its value and certificate.
pub(crate) fn retained_fixed_bytes() -> usize {
    std::mem::size_of::<Retained>()
}

impl Bracha {
    /// A member of `committee` signing with `keypair`, for `network`. Errors: an invalid
    /// config, a committee over [`crate::MAX_COMMITTEE`], or a key that is not a member.
    pub fn new(committee: Committee, keypair: Keypair, network: NetworkId, config: Config) -> Result<Bracha, Error> {
        config.validate()?;
        let thresholds = Thresholds::new(committee.n(), committee.f())?;
        let me = committee.index_of(&keypair.public()).ok_or(Error::NotAMember(keypair.public()))?;
        let origins = (0..committee.n()).map(|_| OriginState::default()).collect();
        Ok(Bracha {
            ctx: Ctx { committee, keypair, me, network, config, thresholds, unsigned: false },
            origins,
            next_seq: 0,
        })
    }

    /// This member's key.
    pub fn public_key(&self) -> PublicKey {
        self.ctx.keypair.public()
    }

    /// This member's committee index.
    pub fn index(&self) -> usize {
        self.ctx.me
    }

    /// The committee.
    pub fn committee(&self) -> &Committee {
        &self.ctx.committee
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.ctx.config
    }

    /// The thresholds in force.
    pub fn thresholds(&self) -> &Thresholds {
        &self.ctx.thresholds
    }

    /// The seq the next [`Bracha::broadcast`] uses.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Broadcasts `value` as this member's next instance ([`Bracha::next_seq`]). The SEND and
    /// this member's ECHO are in `outgoing`.
    pub fn broadcast(&mut self, value: Vec<u8>, now_ms: u64) -> Result<Step, Error> {
        self.broadcast_at(self.next_seq, value, now_ms)
    }

    /// Broadcasts `value` as instance `seq` of this member: for a node that persists its next
    /// seq before signing. Errors: value over `max_value_len`, `seq` already used (below
    /// [`Bracha::next_seq`]), or outside this member's own window (wait for earlier instances
    /// to deliver).
    pub fn broadcast_at(&mut self, seq: u64, value: Vec<u8>, now_ms: u64) -> Result<Step, Error> {
        let limit = self.ctx.config.max_value_len;
        if value.len() > limit {
            return Err(Error::ValueTooLarge { len: value.len(), limit });
        }
        let me = self.ctx.me;
        if seq < self.next_seq {
            return Err(Error::SeqUsed(seq));
        }
        match self.position(me, seq) {
            Position::Below | Position::Retained => return Err(Error::SeqUsed(seq)),
            Position::Beyond(end) => return Err(Error::OutsideWindow { seq, low: self.origins[me].low, end }),
            Position::Open => {}
        }
        self.next_seq = seq + 1;
        let instance = InstanceId { origin: self.ctx.keypair.public(), seq };
        let send = self.ctx.seal(&Message::Send { instance, value: value.clone() }, now_ms);
        let mut step = Step { outgoing: vec![send.clone()], ..Step::default() };
        self.with_open(me, seq, &mut step, |ctx, open, step| open.on_send(ctx, me, value, &send, now_ms, step));
        Ok(step)
    }

    /// Handles a verified envelope from the network (the signer is the sender). Other kinds
    /// than SEND/ECHO/READY are ignored; misbehaviour is reported in `Step::faults`.
    pub fn handle(&mut self, envelope: &VerifiedEnvelope, now_ms: u64) -> Step {
        self.handle_envelope(envelope.envelope(), now_ms)
    }

    /// Simulator only: handles an envelope whose signature was not checked (unsigned mode).
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn handle_unverified(&mut self, envelope: &Envelope, now_ms: u64) -> Step {
        self.handle_envelope(envelope, now_ms)
    }

    /// Simulator only: replaces the thresholds (to run the seed design's broken rule).
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn sim_set_thresholds(&mut self, thresholds: Thresholds) {
        self.ctx.thresholds = thresholds;
    }

    /// Simulator only: own envelopes carry zero signatures (the no-signature benchmark).
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn sim_set_unsigned(&mut self, unsigned: bool) {
        self.ctx.unsigned = unsigned;
    }

    fn handle_envelope(&mut self, envelope: &Envelope, now_ms: u64) -> Step {
        let mut step = Step::default();
        let signer = envelope.origin();
        if !matches!(envelope.header().kind, Kind::BrachaSend | Kind::BrachaEcho | Kind::BrachaReady) {
            return step;
        }
        if envelope.header().network != self.ctx.network {
            step.faults.push(Fault { member: signer, kind: FaultKind::WrongNetwork });
            return step;
        }
        let Some(from) = self.ctx.committee.index_of(&signer) else {
            step.faults.push(Fault { member: signer, kind: FaultKind::NotAMember });
            return step;
        };
        let message = match Message::from_envelope(envelope, self.ctx.config.max_value_len) {
            Ok(message) => message,
            Err(e) => {
                step.faults.push(Fault { member: signer, kind: FaultKind::Malformed(e) });
                return step;
            }
        };
        let instance = *message.instance();
        let Some(origin) = self.ctx.committee.index_of(&instance.origin) else {
            step.faults.push(Fault { member: signer, kind: FaultKind::UnknownOrigin });
            return step;
        };
        match self.position(origin, instance.seq) {
            Position::Below | Position::Retained => return step,
            Position::Beyond(window_end) => {
                step.faults.push(Fault { member: signer, kind: FaultKind::BeyondWindow { seq: instance.seq, window_end } });
                return step;
            }
            Position::Open => {}
        }
        if from == self.ctx.me && matches!(message, Message::Send { .. }) {
            self.next_seq = self.next_seq.max(instance.seq + 1);
        }
        self.with_open(origin, instance.seq, &mut step, |ctx, open, step| match message {
            Message::Send { value, .. } => open.on_send(ctx, from, value, envelope, now_ms, step),
            Message::Echo { digest, .. } => open.on_vote(ctx, Kind::BrachaEcho, from, digest, envelope, now_ms, step),
            Message::Ready { digest, .. } => open.on_vote(ctx, Kind::BrachaReady, from, digest, envelope, now_ms, step),
        });
        step
    }

    /// Replays one of this member's own SEND/ECHO/READY envelopes after a restart (the node
    /// persists each before sending it), so the machine never votes differently: a restored
    /// ECHO or READY stops it from echoing or readying again in that instance. Call it after
    /// [`Bracha::set_low_watermark`] and before handling network input. The step may hold
    /// new votes the restored ones complete.
    pub fn restore_own_vote(&mut self, envelope: &Envelope, now_ms: u64) -> Result<Step, Error> {
        if envelope.origin() != self.ctx.keypair.public() {
            return Err(Error::NotOwnMessage("signed by another key"));
        }
        let message = Message::from_envelope(envelope, self.ctx.config.max_value_len)
            .map_err(|_| Error::NotOwnMessage("not a well-formed Bracha message"))?;
        let instance = *message.instance();
        let origin = self.ctx.committee.index_of(&instance.origin).ok_or(Error::UnknownOrigin(instance.origin))?;
        match self.position(origin, instance.seq) {
            Position::Below | Position::Retained => return Ok(Step::default()),
            Position::Beyond(end) => {
                return Err(Error::OutsideWindow { seq: instance.seq, low: self.origins[origin].low, end });
            }
            Position::Open => {}
        }
        Ok(self.handle_envelope(envelope, now_ms))
    }

    /// Accepts the value of `instance` obtained for a [`Fetch`]. Ignored unless the instance
    /// is open with a READY quorum for `Digest::of(value)`.
    pub fn supply_value(&mut self, instance: &InstanceId, value: Vec<u8>, now_ms: u64) -> Step {
        let mut step = Step::default();
        let Some(origin) = self.ctx.committee.index_of(&instance.origin) else { return step };
        let digest = Digest::of(&value);
        let wanted = self.origins[origin].open.get(&instance.seq).is_some_and(|o| o.quorum == Some(digest));
        if wanted {
            self.with_open(origin, instance.seq, &mut step, |ctx, open, step| {
                open.add_value(digest, value);
                open.try_deliver(ctx, now_ms, step);
            });
        }
        step
    }

    /// Delivers on a verified certificate and its value, without waiting for votes (a lagging
    /// member syncing). The certificate's READYs count as received votes. A value that does
    /// not match the digest is ignored and a [`Fetch`] is emitted. Already delivered or
    /// collected instances give an empty step; an instance beyond the origin's window is
    /// [`Error::OutsideWindow`] (sync in seq order, or move the window first).
    pub fn handle_certificate(&mut self, certificate: &VerifiedCertificate, value: Vec<u8>, now_ms: u64) -> Result<Step, Error> {
        let instance = certificate.instance;
        let origin = self.ctx.committee.index_of(&instance.origin).ok_or(Error::UnknownOrigin(instance.origin))?;
        let mut step = Step::default();
        match self.position(origin, instance.seq) {
            Position::Below | Position::Retained => return Ok(step),
            Position::Beyond(end) => {
                return Err(Error::OutsideWindow { seq: instance.seq, low: self.origins[origin].low, end });
            }
            Position::Open => {}
        }
        let max_value_len = self.ctx.config.max_value_len;
        self.with_open(origin, instance.seq, &mut step, |ctx, open, step| {
            for ready in &certificate.readys {
                if let (Some(from), Ok(Message::Ready { digest, .. })) =
                    (ctx.committee.index_of(&ready.origin()), Message::from_envelope(ready, max_value_len))
                {
                    open.on_vote(ctx, Kind::BrachaReady, from, digest, ready, now_ms, step);
                }
            }
            if open.done.is_some() {
                return;
            }
            let digest = certificate.digest;
            if Digest::of(&value) == digest {
                // The certificate proves delivery even if some of its signers are excluded here.
                open.quorum = Some(digest);
                open.finish(digest, value, (**certificate).clone(), now_ms, step);
            } else {
                open.quorum = Some(digest);
                open.try_deliver(ctx, now_ms, step);
            }
        });
        Ok(step)
    }

    /// Garbage collection and re-requests: drops delivered instances below the low watermark
    /// whose retention ended, and re-emits fetches not answered within `fetch_retry_ms`.
    pub fn tick(&mut self, now_ms: u64) -> Step {
        let mut step = Step::default();
        let Bracha { ctx, origins, .. } = self;
        for state in origins.iter_mut() {
            let low = state.low;
            let retention = ctx.config.retention_ms;
            state.retained.retain(|&seq, r| seq >= low || now_ms < r.delivered_at_ms.saturating_add(retention));
            for open in state.open.values_mut() {
                if let Some(fetch) = &mut open.fetch
                    && now_ms >= fetch.next_at_ms
                {
                    fetch.rotation += 1;
                    fetch.next_at_ms = now_ms.saturating_add(ctx.config.fetch_retry_ms);
                    let (digest, rotation) = (fetch.digest, fetch.rotation);
                    step.fetches.push(open.fetch_request(ctx, digest, rotation));
                }
            }
        }
        step
    }

    /// Moves `origin`'s window up to start at `seq` (a node restoring its delivery cursor, or
    /// skipping an origin's stalled instance): open instances below it are dropped. Never
    /// moves a window down.
    pub fn set_low_watermark(&mut self, origin: &PublicKey, seq: u64) -> Result<(), Error> {
        let o = self.ctx.committee.index_of(origin).ok_or(Error::UnknownOrigin(*origin))?;
        let state = &mut self.origins[o];
        if seq > state.low {
            state.low = seq;
            state.open = state.open.split_off(&seq);
            Self::advance(state, self.ctx.config.max_retained_per_origin);
        }
        if o == self.ctx.me {
            self.next_seq = self.next_seq.max(self.origins[o].low);
        }
        Ok(())
    }

    /// The low watermark of `origin` (its lowest seq not yet delivered here).
    pub fn low_watermark(&self, origin: &PublicKey) -> Option<u64> {
        self.ctx.committee.index_of(origin).map(|o| self.origins[o].low)
    }

    /// The seqs of `origin` this member holds open (or will open): `[low, low + window)`.
    pub fn window(&self, origin: &PublicKey) -> Option<Range<u64>> {
        self.ctx.committee.index_of(origin).map(|o| {
            let low = self.origins[o].low;
            low..low.saturating_add(self.ctx.config.window)
        })
    }

    /// The certificate of a delivered, retained instance.
    pub fn certificate(&self, instance: &InstanceId) -> Option<&Certificate> {
        self.retained(instance).map(|r| &r.certificate)
    }

    /// A delivered, retained instance.
    pub fn retained(&self, instance: &InstanceId) -> Option<&Retained> {
        let o = self.ctx.committee.index_of(&instance.origin)?;
        self.origins[o].retained.get(&instance.seq)
    }

    /// The value with `digest` of `instance`, if held (delivered, or from a SEND), to answer
    /// a peer's fetch.
    pub fn value(&self, instance: &InstanceId, digest: &Digest) -> Option<&[u8]> {
        let o = self.ctx.committee.index_of(&instance.origin)?;
        let state = &self.origins[o];
        if let Some(r) = state.retained.get(&instance.seq) {
            return (r.digest == *digest).then_some(r.value.as_slice());
        }
        let open = state.open.get(&instance.seq)?;
        open.values.iter().find(|(d, _)| d == digest).map(|(_, v)| v.as_slice())
    }

    /// Retained deliveries of `origin` with seq at or above `from_seq`, in seq order (to
    /// serve sync).
    pub fn delivered_since(&self, origin: &PublicKey, from_seq: u64) -> impl Iterator<Item = (InstanceId, &Retained)> + '_ {
        let origin = *origin;
        self.ctx
            .committee
            .index_of(&origin)
            .into_iter()
            .flat_map(move |o| self.origins[o].retained.range(from_seq..))
            .map(move |(&seq, r)| (InstanceId { origin, seq }, r))
    }

    /// Every open (undelivered) instance.
    pub fn open_instances(&self) -> impl Iterator<Item = InstanceId> + '_ {
        self.origins.iter().flat_map(|state| state.open.values().map(|open| open.instance))
    }

    /// What the machine holds.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        for state in &self.origins {
            for open in state.open.values() {
                stats.open_instances += 1;
                stats.vote_records += open.echo.iter().chain(&open.ready).filter(|r| r.is_some()).count();
                stats.value_bytes += open.values.iter().map(|(_, v)| v.len()).sum::<usize>();
                stats.bytes += open.heap_bytes();
            }
            for r in state.retained.values() {
                stats.retained_instances += 1;
                stats.value_bytes += r.value.len();
                stats.bytes += retained_bytes(r);
            }
        }
        stats
    }

    fn position(&self, origin: usize, seq: u64) -> Position {
        let state = &self.origins[origin];
        let end = state.low.saturating_add(self.ctx.config.window);
        if seq < state.low {
            Position::Below
        } else if state.retained.contains_key(&seq) {
            Position::Retained
        } else if seq >= end {
            Position::Beyond(end)
        } else {
            Position::Open
        }
    }

    /// Runs `f` on the open instance (created if needed; the caller checked the position),
    /// then retires it if it delivered.
    fn with_open(&mut self, origin: usize, seq: u64, step: &mut Step, f: impl FnOnce(&Ctx, &mut Open, &mut Step)) {
        let Bracha { ctx, origins, .. } = self;
        let state = &mut origins[origin];
        let origin_key = *ctx.committee.member(origin).unwrap_or_else(|| unreachable!("member index"));
        let n = ctx.n();
        let open = state.open.entry(seq).or_insert_with(|| Box::new(Open::new(InstanceId { origin: origin_key, seq }, n)));
        f(ctx, open, step);
        if let Some(done) = open.done.take() {
            state.open.remove(&seq);
            state.retained.insert(seq, done);
            Self::advance(state, ctx.config.max_retained_per_origin);
        }
    }

    /// Moves the low watermark over delivered instances and enforces the retention cap on
    /// those below it.
    fn advance(state: &mut OriginState, max_retained: usize) {
        while state.retained.contains_key(&state.low) {
            state.low += 1;
        }
        while state.retained.len() > max_retained {
            match state.retained.first_key_value() {
                Some((&seq, _)) if seq < state.low => {
                    state.retained.pop_first();
                }
                _ => break,
            }
        }
    }
}
