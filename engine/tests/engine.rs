//! Deterministic tests of the engine in virtual time: no sleeps, no sockets. Each test is
//! named after the property it checks. A small virtual network ([`Net`]) delivers every
//! published envelope to every other engine after a fixed latency, commits batches at once
//! into an in-memory log, and runs verification jobs inline.

use byzgossip_bracha::InstanceId;
use byzgossip_crypto::codec;
use byzgossip_crypto::{Envelope, Genesis, GossipPolicy, Keypair, Kind, PublicKey};
use byzgossip_engine::{
    Appended, Batch, Committed, DeliveryLog, Engine, EngineConfig, MAX_BATCHES_IN_FLIGHT, MAX_PRUNED_PER_BATCH, MAX_SYNC_SERVING, Metric,
    Output, PRUNE_INTERVAL_MS, Peer, PeerAction, Recovered, SeqStream, StoredDelivery, SyncRequest, Watermark,
};
use byzgossip_reputation::{Acceptance, AdmissionConfig};
use proptest::prelude::*;
use std::collections::BTreeMap;

const T0: u64 = 1_700_000_000_000;
const LATENCY: u64 = 5;

fn key(i: usize) -> Keypair {
    Keypair::from_secret_bytes(&[i as u8 + 1; 32])
}

fn genesis(n: usize) -> Genesis {
    Genesis {
        name: "engine-tests".into(),
        f: None,
        policy: GossipPolicy::Committee,
        members: (0..n).map(|i| key(i).public()).collect(),
        bootstrap: vec![],
    }
}

fn config(n: usize, i: usize) -> EngineConfig {
    EngineConfig {
        genesis: genesis(n),
        keypair: key(i),
        admission: AdmissionConfig::default(),
        bracha: byzgossip_bracha::Config { window: 8, ..Default::default() },
        topics: vec!["load".into()],
        tick_interval_ms: 100,
        sync_interval_ms: 300,
        validation_queue: 64,
        redial_backoff_ms: 500,
        bootstrap: (0..n).filter(|&j| j != i).map(|j| Peer::Key(key(j).public())).collect(),
        seed: i as u64,
        retention_ms: 0,
        // Fresh stores here are a new network: no recovery wait (tests of it set their own).
        seq_recovery_timeout_ms: 0,
    }
}

/// The in-memory delivery log and own-message record of one node (the node crate's
/// `MemoryStore` semantics, reduced to what these tests need).
#[derive(Default, Clone)]
struct Log {
    next_seq: BTreeMap<SeqStream, u64>,
    own: BTreeMap<(PublicKey, u64, u8), Vec<u8>>,
    deliveries: BTreeMap<u64, StoredDelivery>,
    index: BTreeMap<(PublicKey, u64), u64>,
    sanctions: byzgossip_engine::KeptSanctions,
}

impl Log {
    fn commit(&mut self, batch: &Batch) -> Committed {
        for (stream, next) in &batch.next_seq {
            let entry = self.next_seq.entry(*stream).or_default();
            *entry = (*entry).max(*next);
        }
        let mut committed = Committed::default();
        for own in &batch.own {
            let slot = (own.instance_origin, own.seq, own.kind as u8);
            committed.own.push(self.own.get(&slot).cloned());
            self.own.entry(slot).or_insert_with(|| own.envelope.clone());
        }
        for d in &batch.deliveries {
            if let Some(cursor) = self.index.get(&(d.origin, d.seq)) {
                committed.deliveries.push(Appended::Existing(*cursor));
                continue;
            }
            let cursor = self.deliveries.len() as u64 + 1;
            self.deliveries.insert(cursor, d.clone());
            self.index.insert((d.origin, d.seq), cursor);
            committed.deliveries.push(Appended::New(cursor));
        }
        self.sanctions.apply(batch);
        committed
    }

    fn recovered(&self) -> Recovered {
        let mut watermarks: BTreeMap<PublicKey, Watermark> = BTreeMap::new();
        for (origin, seq) in self.index.keys() {
            let mark = watermarks.entry(*origin).or_insert(Watermark { origin: *origin, low: 0, high: 0, count: 0 });
            mark.count += 1;
            mark.high = mark.high.max(*seq);
        }
        for mark in watermarks.values_mut() {
            while self.index.contains_key(&(mark.origin, mark.low)) {
                mark.low += 1;
            }
        }
        let mut recovered = Recovered {
            next_broadcast_seq: self.next_seq.get(&SeqStream::Broadcast).copied().unwrap_or(0),
            next_gossip_seq: self.next_seq.get(&SeqStream::Gossip).copied().unwrap_or(0),
            own: self
                .own
                .iter()
                .map(|((origin, seq, kind), envelope)| byzgossip_engine::OwnMessage {
                    instance_origin: *origin,
                    seq: *seq,
                    kind: Kind::from_u8(*kind).expect("kind"),
                    envelope: envelope.clone(),
                })
                .collect(),
            watermarks: watermarks.into_values().collect(),
            last_cursor: self.deliveries.len() as u64,
            ..Recovered::default()
        };
        self.sanctions.recover_into(&mut recovered);
        recovered
    }
}

impl DeliveryLog for Log {
    fn delivery(&self, origin: &PublicKey, seq: u64) -> Option<StoredDelivery> {
        self.index.get(&(*origin, seq)).and_then(|c| self.deliveries.get(c)).cloned()
    }
    fn watermarks(&self) -> Vec<Watermark> {
        self.recovered().watermarks
    }
}

/// One node of the virtual network.
struct Node {
    engine: Engine,
    log: Log,
    delivered: Vec<(u64, InstanceId, Vec<u8>)>,
    published: Vec<Envelope>,
    actions: Vec<PeerAction>,
    verdicts: BTreeMap<u64, Acceptance>,
    /// Ids of gossip handed to the application.
    gossip: Vec<byzgossip_crypto::MessageId>,
    up: bool,
    /// Wire topics subscribed (gossipsub's subscription exchange): the certified topic is
    /// carried only to its subscribers.
    subscribed: std::collections::BTreeSet<String>,
    /// Received certified (and, with observers, gossip) messages by token, relayed on
    /// `Accept` (gossipsub forwarding), and the digests of every such message seen
    /// (gossipsub's duplicate cache).
    relay: BTreeMap<u64, (String, Vec<u8>, usize)>,
    seen_certified: std::collections::BTreeSet<byzgossip_crypto::Digest>,
}

/// A message in flight.
enum Event {
    Message { to: usize, from: usize, topic: String, bytes: Vec<u8> },
    SyncRequest { to: usize, from: usize, request_id: u64, request: byzgossip_engine::SyncRequest },
    SyncResponse { to: usize, from: usize, request_id: u64, response: byzgossip_engine::SyncResponse },
}

struct Net {
    now: u64,
    /// Nodes `0..members` are the committee; the rest are observers.
    members: usize,
    /// Whether gossip is relayed on `Accept` like certified messages (nets with observers,
    /// which are not linked to every node; the full-mesh tests count verdicts without it).
    relay_gossip: bool,
    nodes: Vec<Node>,
    /// Events by (due time, arrival order).
    queue: BTreeMap<(u64, u64), Event>,
    arrivals: u64,
    next_token: u64,
    /// Links cut in both directions.
    cut: Vec<(usize, usize)>,
    /// Seeded link conditions: extra latency up to `jitter` ms and a loss probability in
    /// percent for gossip messages (sync is request-response over a reliable stream).
    rng: Option<(rand_chacha::ChaCha20Rng, u64, u32)>,
}

impl Net {
    fn new(n: usize) -> Net {
        Net::with_observers(n, 0, |_, _| true)
    }

    /// `n` members and `m` observers (nodes `n..n + m`, keys outside the committee);
    /// `linked(a, b)` says which pairs have a connection (the others are cut).
    fn with_observers(n: usize, m: usize, linked: impl Fn(usize, usize) -> bool) -> Net {
        let nodes = (0..n + m)
            .map(|i| Node {
                engine: Engine::new(config(n, i), Recovered::default(), T0).expect("engine"),
                log: Log::default(),
                delivered: Vec::new(),
                published: Vec::new(),
                actions: Vec::new(),
                verdicts: BTreeMap::new(),
                gossip: Vec::new(),
                up: true,
                subscribed: Default::default(),
                relay: BTreeMap::new(),
                seen_certified: Default::default(),
            })
            .collect();
        let mut net = Net { now: T0, members: n, relay_gossip: m > 0, nodes, queue: BTreeMap::new(), arrivals: 0, next_token: 0, cut: Vec::new(), rng: None };
        for i in 0..n + m {
            for j in 0..n + m {
                if i != j && linked(i.min(j), i.max(j)) {
                    net.nodes[i].engine.handle_connected(T0, Peer::Key(key(j).public()));
                } else if i < j {
                    net.cut.push((i, j));
                }
            }
        }
        net.drain_all();
        net
    }

    /// Queues `event` after the link latency (and, with seeded conditions, jitter); `None`
    /// when a lossy link drops it.
    fn send(&mut self, event: Event, lossy: bool) {
        let mut at = self.now + LATENCY;
        if let Some((rng, jitter, loss)) = self.rng.as_mut() {
            use rand_core::Rng;
            if lossy && (rng.next_u32() % 100) < *loss {
                return;
            }
            at += rng.next_u64() % (*jitter + 1);
        }
        self.arrivals += 1;
        self.queue.insert((at, self.arrivals), event);
    }

    fn push(&mut self, at: u64, event: Event) {
        self.arrivals += 1;
        self.queue.insert((at, self.arrivals), event);
    }

    fn index_of(&self, peer: &Peer) -> Option<usize> {
        let key = peer.key()?;
        (0..self.nodes.len()).find(|&i| self.nodes[i].engine.public_key() == key)
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        !self.cut.contains(&(a, b)) && !self.cut.contains(&(b, a))
    }

    /// Carries out every output of node `i`.
    fn drain(&mut self, i: usize) {
        while let Some(output) = self.nodes[i].engine.poll() {
            let now = self.now;
            match output {
                Output::Publish { topic, envelope } => {
                    let bytes = codec::encode_envelope(&envelope);
                    self.nodes[i].published.push(envelope);
                    self.flood(i, None, &topic, &bytes);
                }
                Output::Verify(job) => {
                    let done = job.run();
                    self.nodes[i].engine.handle_verified(now, done);
                }
                Output::Persist(batch) => {
                    let committed = self.nodes[i].log.commit(&batch);
                    self.nodes[i].engine.handle_committed(now, batch.id, Ok(committed));
                }
                Output::Deliver(d) => self.nodes[i].delivered.push((d.cursor, d.instance, d.value)),
                Output::Validation { token, acceptance } => {
                    self.nodes[i].verdicts.insert(token, acceptance);
                    if let Some((topic, bytes, from)) = self.nodes[i].relay.remove(&token)
                        && acceptance == Acceptance::Accept
                    {
                        self.flood(i, Some(from), &topic, &bytes);
                    }
                }
                Output::Peer(action) => self.nodes[i].actions.push(action),
                Output::Gossip(m) => self.nodes[i].gossip.push(m.id),
                Output::SyncRequest { peer, request_id, request } => match self.index_of(&peer) {
                    Some(to) if self.linked(i, to) => self.send(Event::SyncRequest { to, from: i, request_id, request }, false),
                    _ => self.nodes[i].engine.handle_sync_response(now, peer, request_id, None),
                },
                Output::SyncServe { token, plan } => {
                    // Tokens of sync requests encode (requester, request id).
                    let (from, request_id) = ((token >> 32) as usize, token & 0xffff_ffff);
                    let response = plan.execute(&self.nodes[i].log);
                    self.nodes[i].engine.handle_sync_served(now, token);
                    self.send(Event::SyncResponse { to: from, from: i, request_id, response }, false);
                }
                Output::Subscribe { topic } => {
                    self.nodes[i].subscribed.insert(topic);
                }
                Output::SyncRefuse { .. }
                | Output::Broadcast { .. }
                | Output::AppScore { .. }
                | Output::Metric(_) => {}
            }
        }
    }

    /// Sends a message of node `i` to its linked peers but `except` (the certified topic
    /// only to its subscribers).
    fn flood(&mut self, i: usize, except: Option<usize>, topic: &str, bytes: &[u8]) {
        let certified = topic.ends_with("/certified");
        for to in 0..self.nodes.len() {
            if to != i && Some(to) != except && self.linked(i, to) && (!certified || self.nodes[to].subscribed.contains(topic)) {
                self.send(Event::Message { to, from: i, topic: topic.to_string(), bytes: bytes.to_vec() }, true);
            }
        }
    }

    fn drain_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].up {
                self.drain(i);
            }
        }
    }

    /// Runs the network until `until` (virtual ms): messages in order, timers every tick.
    fn run_until(&mut self, until: u64) {
        while self.now < until {
            let next_timer = self.nodes.iter().filter(|n| n.up).filter_map(|n| n.engine.poll_timeout()).min().unwrap_or(until);
            let next_message = self.queue.keys().next().map(|(at, _)| *at).unwrap_or(u64::MAX);
            let at = next_timer.min(next_message).min(until).max(self.now);
            self.now = at;
            if next_message <= at {
                let (_, event) = self.queue.pop_first().expect("event");
                self.deliver(event);
            } else {
                for i in 0..self.nodes.len() {
                    if self.nodes[i].up && self.nodes[i].engine.poll_timeout().is_some_and(|t| t <= at) {
                        self.nodes[i].engine.handle_timeout(at);
                    }
                }
            }
            self.drain_all();
            if at == until && next_message > until {
                break;
            }
        }
    }

    fn deliver(&mut self, event: Event) {
        let now = self.now;
        match event {
            Event::Message { to, from, topic, bytes } => {
                if !self.nodes[to].up || !self.linked(from, to) {
                    return;
                }
                self.next_token += 1;
                let token = self.next_token;
                let peer = Peer::Key(key(from).public());
                if topic.ends_with("/certified") || (self.relay_gossip && topic.contains("/gossip/")) {
                    if !self.nodes[to].seen_certified.insert(byzgossip_crypto::Digest::of(&bytes)) {
                        return;
                    }
                    self.nodes[to].relay.insert(token, (topic.clone(), bytes.clone(), from));
                }
                self.nodes[to].engine.handle_message(now, peer, token, &topic, &bytes);
            }
            Event::SyncRequest { to, from, request_id, request } => {
                if !self.nodes[to].up {
                    return;
                }
                let token = ((from as u64) << 32) | request_id;
                self.nodes[to].engine.handle_sync_request(now, Peer::Key(key(from).public()), token, request);
            }
            Event::SyncResponse { to, from, request_id, response } => {
                if self.nodes[to].up {
                    self.nodes[to].engine.handle_sync_response(now, Peer::Key(key(from).public()), request_id, Some(response));
                }
            }
        }
    }

    fn restart(&mut self, i: usize) {
        let recovered = self.nodes[i].log.recovered();
        self.nodes[i].engine = Engine::new(config(self.members, i), recovered, self.now).expect("engine");
        self.nodes[i].up = true;
        for j in 0..self.nodes.len() {
            if j != i && self.linked(i, j) {
                self.nodes[i].engine.handle_connected(self.now, Peer::Key(key(j).public()));
            }
        }
        self.drain(i);
    }
}

fn delivered_instances(node: &Node) -> Vec<InstanceId> {
    let mut v: Vec<InstanceId> = node.delivered.iter().map(|(_, i, _)| *i).collect();
    v.sort();
    v
}

#[test]
fn every_member_delivers_every_broadcast_with_dense_cursors() {
    let mut net = Net::new(4);
    let mut sent = Vec::new();
    for round in 0..3u8 {
        for i in 0..4 {
            let instance = net.nodes[i].engine.broadcast(net.now, vec![round, i as u8]).expect("broadcast");
            sent.push(instance);
            net.drain(i);
        }
    }
    net.run_until(T0 + 2_000);
    sent.sort();
    for (i, node) in net.nodes.iter().enumerate() {
        assert_eq!(delivered_instances(node), sent, "node {i}");
        let cursors: Vec<u64> = node.delivered.iter().map(|(c, _, _)| *c).collect();
        assert_eq!(cursors, (1..=sent.len() as u64).collect::<Vec<_>>(), "node {i}: dense cursors from 1");
    }
}

#[test]
fn own_messages_are_published_only_after_their_batch_is_committed() {
    let mut engine = Engine::new(config(4, 0), Recovered::default(), T0).expect("engine");
    while engine.poll().is_some() {}
    engine.broadcast(T0, b"v".to_vec()).expect("broadcast");
    let mut outputs = Vec::new();
    while let Some(output) = engine.poll() {
        outputs.push(output);
    }
    let batch = outputs
        .iter()
        .find_map(|o| match o {
            Output::Persist(batch) => Some(batch.clone()),
            _ => None,
        })
        .expect("a batch");
    assert!(outputs.iter().all(|o| !matches!(o, Output::Publish { .. })), "nothing is published before the commit");
    assert_eq!(batch.next_seq, vec![(SeqStream::Broadcast, 1)], "the seq is reserved in the batch of its SEND");
    // The SEND and this member's own ECHO of it.
    let kinds: Vec<Kind> = batch.own.iter().map(|o| o.kind).collect();
    assert_eq!(kinds, vec![Kind::BrachaSend, Kind::BrachaEcho]);
    engine.handle_committed(T0 + 1, batch.id, Ok(Committed { own: vec![None, None], deliveries: vec![], pruned: 0 }));
    let published: Vec<Kind> = std::iter::from_fn(|| engine.poll())
        .filter_map(|o| match o {
            Output::Publish { envelope, .. } => Some(envelope.header().kind),
            _ => None,
        })
        .collect();
    assert_eq!(published, vec![Kind::BrachaSend, Kind::BrachaEcho]);
}

#[test]
fn a_broadcast_is_acknowledged_only_once_its_batch_is_durable() {
    let mut engine = Engine::new(config(4, 0), Recovered::default(), T0).expect("engine");
    while engine.poll().is_some() {}
    let instance = engine.broadcast(T0, b"v".to_vec()).expect("broadcast");
    let outputs: Vec<Output> = std::iter::from_fn(|| engine.poll()).collect();
    assert!(!outputs.iter().any(|o| matches!(o, Output::Broadcast { .. })));
    let id = outputs.iter().find_map(|o| if let Output::Persist(b) = o { Some(b.id) } else { None }).expect("batch");
    engine.handle_committed(T0 + 1, id, Ok(Committed { own: vec![None, None], deliveries: vec![], pruned: 0 }));
    assert!(std::iter::from_fn(|| engine.poll()).any(|o| matches!(o, Output::Broadcast { instance: i } if i == instance)));
}

#[test]
fn a_slow_store_never_holds_more_than_the_bound_of_batches_and_loses_no_write() {
    let mut engine = Engine::new(config(4, 0), Recovered::default(), T0).expect("engine");
    while engine.poll().is_some() {}
    let mut log = Log::default();
    let mut pending: Vec<Batch> = Vec::new();
    let mut published = 0usize;
    // The store never answers while 50 gossip messages are published, one poll round each.
    for i in 0..50u64 {
        engine.publish(T0 + 20 * i, "load", vec![i as u8]).expect("publish");
        while let Some(output) = engine.poll() {
            match output {
                Output::Persist(batch) => pending.push(batch),
                Output::Publish { .. } => published += 1,
                _ => {}
            }
        }
        assert!(pending.len() <= MAX_BATCHES_IN_FLIGHT, "{} batches in flight", pending.len());
    }
    assert_eq!(pending.len(), MAX_BATCHES_IN_FLIGHT);
    assert_eq!(published, 0, "nothing gated leaves before its commit");
    // The store catches up: every commit lets the writes collected meanwhile out as one batch.
    let mut batches = 0;
    while !pending.is_empty() {
        let batch = pending.remove(0);
        batches += 1;
        let committed = log.commit(&batch);
        engine.handle_committed(T0 + 2_000, batch.id, Ok(committed));
        while let Some(output) = engine.poll() {
            match output {
                Output::Persist(batch) => pending.push(batch),
                Output::Publish { .. } => published += 1,
                _ => {}
            }
        }
        assert!(pending.len() <= MAX_BATCHES_IN_FLIGHT);
    }
    assert_eq!(published, 50, "every message is published once its seq is durable");
    assert_eq!(log.next_seq.get(&SeqStream::Gossip), Some(&50), "every seq reserved");
    assert_eq!(batches, MAX_BATCHES_IN_FLIGHT + 1, "the writes made while the store was slow left as one batch");
}

#[test]
fn a_failed_commit_publishes_nothing_it_gated() {
    let mut engine = Engine::new(config(4, 0), Recovered::default(), T0).expect("engine");
    while engine.poll().is_some() {}
    engine.broadcast(T0, b"v".to_vec()).expect("broadcast");
    let batch = std::iter::from_fn(|| engine.poll())
        .find_map(|o| match o {
            Output::Persist(batch) => Some(batch),
            _ => None,
        })
        .expect("batch");
    engine.handle_committed(T0 + 1, batch.id, Err("disk full".into()));
    let outputs: Vec<Output> = std::iter::from_fn(|| engine.poll()).collect();
    assert!(outputs.iter().all(|o| !matches!(o, Output::Publish { .. })));
    assert!(outputs.iter().any(|o| matches!(o, Output::Metric(Metric::PersistFailed { .. }))));
}

#[test]
fn a_restarted_node_publishes_its_stored_vote_never_a_different_one() {
    let mut engine = Engine::new(config(4, 0), Recovered::default(), T0).expect("engine");
    while engine.poll().is_some() {}
    engine.broadcast(T0, b"new".to_vec()).expect("broadcast");
    let batch = std::iter::from_fn(|| engine.poll())
        .find_map(|o| match o {
            Output::Persist(batch) => Some(batch),
            _ => None,
        })
        .expect("batch");
    // The store already holds another SEND for this slot (signed before a crash).
    let first = Envelope::seal(&key(0), genesis(4).network_id(), Kind::BrachaSend, 0, T0 - 10, b"old body".to_vec()).expect("seal");
    let stored = codec::encode_envelope(&first);
    engine.handle_committed(T0 + 1, batch.id, Ok(Committed { own: vec![Some(stored.clone()), None], deliveries: vec![], pruned: 0 }));
    let published: Vec<Vec<u8>> = std::iter::from_fn(|| engine.poll())
        .filter_map(|o| match o {
            Output::Publish { envelope, .. } => Some(codec::encode_envelope(&envelope)),
            _ => None,
        })
        .collect();
    assert_eq!(published.first(), Some(&stored), "the stored SEND, not the new one");
    assert_eq!(published.len(), 2, "and the ECHO");
}

#[test]
fn retransmission_resends_undelivered_own_messages_with_a_doubling_interval() {
    // Node 0 alone: its SEND can never be delivered, so it is retransmitted.
    let mut net = Net::new(4);
    for i in 1..4 {
        net.nodes[i].up = false;
    }
    net.nodes[0].engine.broadcast(net.now, b"v".to_vec()).expect("broadcast");
    net.drain(0);
    net.run_until(T0 + 16_000);
    let sends: Vec<u64> =
        net.nodes[0].published.iter().filter(|e| e.header().kind == Kind::BrachaSend).map(|e| e.header().timestamp_ms - T0).collect();
    assert!(sends.len() >= 4, "{sends:?}");
    assert_eq!(sends[0], 0, "published at once");
    let gaps: Vec<u64> = sends.windows(2).map(|w| w[1] - w[0]).collect();
    // First after 2 s, then 4 s, then 8 s (timers run every 100 ms).
    assert!((2_000..2_200).contains(&gaps[0]), "{gaps:?}");
    assert!((4_000..4_200).contains(&gaps[1]), "{gaps:?}");
    assert!((8_000..8_200).contains(&gaps[2]), "{gaps:?}");
    let bodies: std::collections::BTreeSet<_> =
        net.nodes[0].published.iter().filter(|e| e.header().kind == Kind::BrachaSend).map(|e| e.header().body_hash).collect();
    assert_eq!(bodies.len(), 1, "the same SEND, re-signed");
}

/// How the links across a cut behave: closed while it lasts and redialled after, or stalled
/// (packets dropped, connections open) and reset when it heals.
#[derive(Clone, Copy, PartialEq)]
enum CutLinks {
    Closed,
    Stalled,
}

/// A 3 | 4 cut of a 7-member committee (no side has 2f + 1) that outlasts the retransmission
/// backoff: once it heals, the instance it stalled must be delivered everywhere within 500 ms,
/// not after the backoff grown during the cut (up to 8 s, longer than the totality deadline).
fn a_31_s_cut_heals_and_resends_at_once(links: CutLinks) {
    let mut net = Net::new(7);
    let sides = |a: usize, b: usize| (a < 3) != (b < 3);
    let pairs: Vec<(usize, usize)> = (0..7).flat_map(|a| (0..7).map(move |b| (a, b))).filter(|&(a, b)| a < b && sides(a, b)).collect();
    // Each direction of each cut pair: disconnected (`false`) or connected (`true`).
    let set = |net: &mut Net, up: bool| {
        for &(a, b) in &pairs {
            for (x, y) in [(a, b), (b, a)] {
                let peer = Peer::Key(key(y).public());
                if up {
                    net.nodes[x].engine.handle_connected(net.now, peer);
                } else {
                    net.nodes[x].engine.handle_disconnected(net.now, peer);
                }
            }
        }
        net.drain_all();
    };
    net.cut = pairs.clone();
    if links == CutLinks::Closed {
        set(&mut net, false);
    }
    let instance = net.nodes[0].engine.broadcast(net.now, b"stalled".to_vec()).expect("broadcast");
    net.drain(0);
    net.run_until(net.now + 31_000);
    assert!(net.nodes.iter().all(|n| n.delivered.is_empty()), "no side has a quorum");
    net.cut.clear();
    if links == CutLinks::Stalled {
        // The heal resets the stalled connections: a disconnect, then a redial at once.
        set(&mut net, false);
    }
    set(&mut net, true);
    let healed = net.now;
    net.run_until(healed + 500);
    for (i, node) in net.nodes.iter().enumerate() {
        assert_eq!(delivered_instances(node), vec![instance], "node {i}, 500 ms after the heal");
    }
}

/// The cut closes the links (the `--netns` 30 s partition lost instances before this).
#[test]
fn a_healed_partition_resends_stalled_messages_at_once() {
    a_31_s_cut_heals_and_resends_at_once(CutLinks::Closed);
}

/// The same cut made the way `--netns` makes it: nftables drops every packet, so the links
/// stall without closing, and the heal resets them. The members were silent for the whole
/// cut, so the reconnect still resends what it stalled at once: silence, not time
/// disconnected, is what counts.
#[test]
fn a_cut_that_stalls_links_without_closing_them_resends_at_once_after_the_reset() {
    a_31_s_cut_heals_and_resends_at_once(CutLinks::Stalled);
}

/// A member heard from just before its connection dropped and came back (a slow peer
/// dropped and redialled under load) is no cut: nothing is resent early, the retransmission
/// backoff goes on as it was.
#[test]
fn a_quick_reconnect_of_a_member_heard_just_before_resends_nothing_early() {
    let mut net = Net::new(7);
    // Members 4..7 are unreachable: no quorum, node 0's SEND stays open and is retransmitted.
    net.cut = (0..4).flat_map(|a| (4..7).map(move |b| (a, b))).collect();
    net.nodes[0].engine.broadcast(net.now, b"open".to_vec()).expect("broadcast");
    net.drain(0);
    net.run_until(net.now + 10_000);
    let sends = |net: &Net| net.nodes[0].published.iter().filter(|e| e.header().kind == Kind::BrachaSend).count();
    let before = sends(&net);
    assert!(before >= 2, "the open SEND was retransmitted during the cut ({before} sends)");
    // Member 1 has been talking all along (its votes arrive); its link drops and comes back.
    let peer = Peer::Key(key(1).public());
    net.nodes[0].engine.handle_disconnected(net.now, peer.clone());
    net.now += 100;
    net.nodes[0].engine.handle_connected(net.now, peer);
    net.drain_all();
    // The backoff has grown to 8 s (sends at 0, 2 and 6 s): the next is due at 14 s.
    net.run_until(net.now + 2_000);
    assert_eq!(sends(&net), before, "a quick reconnect of a member heard just before resends nothing");
}

#[test]
fn retransmission_stops_once_the_instance_is_delivered() {
    let mut net = Net::new(4);
    net.nodes[0].engine.broadcast(net.now, b"v".to_vec()).expect("broadcast");
    net.drain(0);
    net.run_until(T0 + 20_000);
    let sends = net.nodes[0].published.iter().filter(|e| e.header().kind == Kind::BrachaSend).count();
    assert_eq!(sends, 1, "delivered within milliseconds: never retransmitted");
    assert_eq!(net.nodes[0].engine.status().retransmitting, 0);
}

#[test]
fn a_lagging_member_catches_up_through_certificates_served_by_sync() {
    let mut net = Net::new(4);
    net.nodes[3].up = false;
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(net.nodes[i].engine.broadcast(net.now, vec![i as u8; 8]).expect("broadcast"));
        net.drain(i);
    }
    net.run_until(T0 + 1_000);
    assert!(net.nodes[3].delivered.is_empty());
    net.nodes[3].up = true;
    // Node 3 missed every message; only sync (digest -> certificates) can close the gap.
    net.run_until(T0 + 5_000);
    sent.sort();
    assert_eq!(delivered_instances(&net.nodes[3]), sent);
}

/// Gossip repair: member 3 is cut off while member 0 publishes seqs 0..3; once the cut
/// heals it receives seq 3 live, so it holds the origin's highest seq, and the gap below it
/// is named in its next digest and filled from a peer's recent gossip (marks alone, "one
/// past the highest", never asked for it). Each message reaches the application once. With
/// `restart_holders`, every node holding the messages restarts from its store before the
/// cut heals: they serve the gap from the gossip their stores kept.
fn gossip_gap_below_the_highest_seq_is_repaired(restart_holders: bool) {
    let mut net = Net::new(4);
    net.cut = vec![(0, 3), (1, 3), (2, 3)];
    let mut ids = Vec::new();
    for k in 0..3u8 {
        ids.push(net.nodes[0].engine.publish(net.now, "load", vec![k]).expect("publish"));
        net.drain(0);
        net.run_until(net.now + 20);
    }
    net.run_until(net.now + 1_000);
    assert!(net.nodes[3].gossip.is_empty(), "cut off: nothing arrived");
    assert!(ids.iter().all(|id| net.nodes[1].gossip.contains(id)));
    if restart_holders {
        for i in 0..3 {
            net.restart(i);
        }
        net.run_until(net.now + 100);
    }
    net.cut.clear();
    if restart_holders {
        // Restarted while cut off, they connect to node 3 only now.
        for i in 0..3 {
            for (a, b) in [(i, 3), (3, i)] {
                net.nodes[a].engine.handle_connected(net.now, Peer::Key(key(b).public()));
            }
        }
        net.drain_all();
    }
    ids.push(net.nodes[0].engine.publish(net.now, "load", vec![3]).expect("publish"));
    net.drain(0);
    net.run_until(net.now + 2 * LATENCY + 1);
    assert_eq!(net.nodes[3].gossip, vec![ids[3]], "the newest arrived live; the gap is still open");
    net.run_until(net.now + 4 * 300);
    let mut got = net.nodes[3].gossip.clone();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want, "sync filled the gap, each message once");
}

#[test]
fn gossip_missed_below_the_origins_highest_seq_is_repaired_by_sync() {
    gossip_gap_below_the_highest_seq_is_repaired(false);
}

/// Repair from storage: the restarted holders serve what they admitted before the restart.
#[test]
fn a_restarted_node_serves_gossip_it_admitted_before_its_restart() {
    gossip_gap_below_the_highest_seq_is_repaired(true);
}

/// `peers()` (the HTTP `/peers`) lists a connected peer that has sent nothing scored yet, as
/// a newcomer (initial trust, ok); it used to list scored keys only.
#[test]
fn a_connected_peer_nothing_has_scored_yet_is_listed() {
    let mut engine = Engine::new(config(4, 0), Recovered::default(), T0).expect("engine");
    let quiet = Keypair::from_secret_bytes(&[77; 32]).public();
    assert!(engine.peers(T0).iter().all(|p| p.peer != Peer::Key(quiet)));
    engine.handle_connected(T0, Peer::Key(quiet));
    let peers = engine.peers(T0 + 1);
    let view = peers.iter().find(|p| p.peer == Peer::Key(quiet)).expect("the connected peer is listed");
    assert!(view.connected);
    assert_eq!(view.member, None);
    assert_eq!(view.reputation.status, byzgossip_reputation::PeerStatus::Ok);
    assert_eq!(view.reputation.trust, AdmissionConfig::default().reputation.initial_trust);
    assert_eq!(peers.iter().filter(|p| p.peer == Peer::Key(quiet)).count(), 1, "listed once");
}

#[test]
fn messages_straight_from_their_signer_are_relayed_only_by_its_designated_relays() {
    let mut net = Net::new(7);
    net.nodes[0].engine.broadcast(net.now, b"v".to_vec()).expect("broadcast");
    net.drain(0);
    net.run_until(T0 + 6);
    // Node 0's SEND reached every other member straight from its signer: relays are 1 and 2.
    for i in 1..7 {
        let verdict = net.nodes[i].verdicts.values().next().copied();
        let expected = if i <= 2 { Acceptance::Accept } else { Acceptance::Ignore };
        assert_eq!(verdict, Some(expected), "node {i}");
    }
}

/// Issue #12 point 2: a member with a subscriber outside the committee connected (an
/// observer, a foreign gossipsub peer) may be that subscriber's only path, so it forwards
/// direct gossip too; Bracha messages keep the relay rule (only members take that topic);
/// once the outsider leaves, the relay rule applies to gossip again.
#[test]
fn a_member_with_an_outside_subscriber_forwards_direct_gossip_but_not_direct_votes() {
    let mut net = Net::new(7);
    let outsider = Peer::Key(key(50).public());
    net.nodes[5].engine.handle_connected(net.now, outsider.clone());
    // Nodes 4 and 5 are not node 0's designated relays (1 and 2 are).
    let verdicts_after = |net: &mut Net, act: &dyn Fn(&mut Net)| -> Vec<(usize, Vec<Acceptance>)> {
        for i in [4, 5] {
            net.nodes[i].verdicts.clear();
        }
        act(net);
        net.drain(0);
        let until = net.now + 6;
        net.run_until(until);
        [4, 5]
            .into_iter()
            .map(|i| {
                let mut v: Vec<Acceptance> = net.nodes[i].verdicts.values().copied().collect();
                v.dedup();
                (i, v)
            })
            .collect()
    };
    let gossip = |net: &mut Net| {
        net.nodes[0].engine.publish(net.now, "load", b"g".to_vec()).expect("publish");
    };
    let vote = |net: &mut Net| {
        net.nodes[0].engine.broadcast(net.now, b"v".to_vec()).expect("broadcast");
    };
    assert_eq!(
        verdicts_after(&mut net, &gossip),
        vec![(4, vec![Acceptance::Ignore]), (5, vec![Acceptance::Accept])],
        "node 5 relays gossip for its outsider, node 4 has none"
    );
    assert_eq!(
        verdicts_after(&mut net, &vote),
        vec![(4, vec![Acceptance::Ignore]), (5, vec![Acceptance::Ignore])],
        "direct Bracha messages follow the relay rule even with an outsider connected"
    );
    let quiet = net.now + 2_000;
    net.run_until(quiet);
    net.nodes[5].engine.handle_disconnected(net.now, outsider);
    assert_eq!(verdicts_after(&mut net, &gossip)[1], (5, vec![Acceptance::Ignore]), "back to the relay rule");
}

#[test]
fn a_full_verification_line_answers_ignore_at_once() {
    let n = 4;
    let mut cfg = config(n, 0);
    cfg.validation_queue = 2;
    cfg.genesis.policy = GossipPolicy::Committee;
    let mut engine = Engine::new(cfg, Recovered::default(), T0).expect("engine");
    while engine.poll().is_some() {}
    let network = genesis(n).network_id();
    let topic = engine.topics().gossip("load");
    let mut verify = 0;
    let mut ignored = 0;
    for seq in 0..5u64 {
        let body = byzgossip_engine::gossip::GossipBody { topic: "load".into(), payload: vec![seq as u8] }.encode();
        let envelope = Envelope::seal(&key(1), network, Kind::Gossip, seq, T0, body).expect("seal");
        engine.handle_message(T0, Peer::Key(key(2).public()), seq, &topic, &codec::encode_envelope(&envelope));
        while let Some(output) = engine.poll() {
            match output {
                Output::Verify(_) => verify += 1,
                Output::Validation { acceptance: Acceptance::Ignore, .. } => ignored += 1,
                _ => {}
            }
        }
    }
    assert_eq!((verify, ignored), (2, 3), "two jobs queued, the rest refused without verifying");
}

/// Sends garbage from `attacker` to node 0 until it is blocked; returns the block time.
fn ban(engine: &mut Engine, attacker: &Peer, now: &mut u64, token: &mut u64) -> u64 {
    let topic = engine.topics().bracha();
    for _ in 0..1000 {
        *token += 1;
        *now += 1;
        engine.handle_message(*now, attacker.clone(), *token, &topic, b"garbage");
        while let Some(output) = engine.poll() {
            if let Output::Peer(PeerAction::Block(p)) = output
                && p == *attacker
            {
                return *now;
            }
        }
    }
    panic!("never banned");
}

/// Ticks `engine` every 100 ms until it unblocks `peer`; returns when.
fn unblocked_at(engine: &mut Engine, peer: &Peer, now: &mut u64, limit: u64) -> u64 {
    while *now < limit {
        *now += 100;
        engine.handle_timeout(*now);
        while let Some(output) = engine.poll() {
            if let Output::Peer(PeerAction::Unblock(p)) = output
                && p == *peer
            {
                return *now;
            }
        }
    }
    panic!("never unblocked before {limit}");
}

#[test]
fn an_expired_ban_unblocks_the_peer_and_a_repeat_ban_lasts_twice_as_long() {
    let mut cfg = config(4, 0);
    cfg.admission.reputation.ban_base_ms = 10_000;
    let mut engine = Engine::new(cfg, Recovered::default(), T0).expect("engine");
    while engine.poll().is_some() {}
    let attacker = Peer::Key(key(9).public());
    engine.handle_connected(T0, attacker.clone());
    let (mut now, mut token) = (T0, 0);
    let first_ban = ban(&mut engine, &attacker, &mut now, &mut token);
    let first_lift = unblocked_at(&mut engine, &attacker, &mut now, first_ban + 60_000);
    let first = first_lift - first_ban;
    assert!((10_000..10_200).contains(&first), "first ban lasted {first} ms");
    let second_ban = ban(&mut engine, &attacker, &mut now, &mut token);
    let second_lift = unblocked_at(&mut engine, &attacker, &mut now, second_ban + 120_000);
    let second = second_lift - second_ban;
    assert!((20_000..20_200).contains(&second), "second ban lasted {second} ms");
}

#[test]
fn a_block_by_hand_outlives_an_expired_ban_and_lifting_it_keeps_a_ban() {
    let mut cfg = config(4, 0);
    cfg.admission.reputation.ban_base_ms = 10_000;
    let mut engine = Engine::new(cfg, Recovered::default(), T0).expect("engine");
    while engine.poll().is_some() {}
    let peer = Peer::Key(key(9).public());
    let (mut now, mut token) = (T0, 0);
    ban(&mut engine, &peer, &mut now, &mut token);
    engine.block(now, peer.clone()).expect("block");
    engine.unblock(now, peer.clone());
    let actions: Vec<Output> = std::iter::from_fn(|| engine.poll()).collect();
    assert!(!actions.iter().any(|o| matches!(o, Output::Peer(PeerAction::Unblock(_)))), "the ban still holds");
    engine.block(now, peer.clone()).expect("block");
    // Well past the ban: the block by hand still holds.
    for _ in 0..300 {
        now += 100;
        engine.handle_timeout(now);
        while let Some(output) = engine.poll() {
            assert!(!matches!(output, Output::Peer(PeerAction::Unblock(_))), "unblocked while blocked by hand");
        }
    }
    engine.unblock(now, peer.clone());
    assert!(std::iter::from_fn(|| engine.poll()).any(|o| matches!(o, Output::Peer(PeerAction::Unblock(ref p)) if *p == peer)));
}

#[test]
fn a_peer_without_an_ed25519_identity_is_blocked_on_connect() {
    let mut engine = Engine::new(config(4, 0), Recovered::default(), T0).expect("engine");
    while engine.poll().is_some() {}
    let foreign = Peer::Foreign(vec![0, 1, 2]);
    engine.handle_connected(T0, foreign.clone());
    assert!(std::iter::from_fn(|| engine.poll()).any(|o| matches!(o, Output::Peer(PeerAction::Block(ref p)) if *p == foreign)));
}

#[test]
fn an_equivocating_origin_is_excluded_by_every_honest_member() {
    let mut net = Net::new(4);
    let network = genesis(4).network_id();
    // Member 3 signs two different SENDs for its seq 0 and sends one to each half.
    let send = |value: &[u8]| {
        byzgossip_bracha::Message::Send { instance: InstanceId { origin: key(3).public(), seq: 0 }, value: value.to_vec() }
            .seal(&key(3), network, T0)
            .expect("seal")
    };
    let (a, b) = (codec::encode_envelope(&send(b"a")), codec::encode_envelope(&send(b"b")));
    let topic = net.nodes[0].engine.topics().bracha();
    for (to, bytes) in [(0, &a), (1, &b), (2, &a), (0, &b)] {
        net.push(T0 + 1, Event::Message { to, from: 3, topic: topic.clone(), bytes: bytes.clone() });
    }
    net.run_until(T0 + 2_000);
    for i in 0..3 {
        let excluded = net.nodes[i].engine.blocked().any(|p| *p == Peer::Key(key(3).public()));
        assert!(excluded, "node {i} does not exclude the equivocator");
    }
}

#[test]
fn a_seq_reserved_before_a_crash_without_its_send_is_filled_with_an_empty_value() {
    let mut net = Net::new(4);
    // Node 0's store says seq 0 was reserved, but no SEND was stored (an old data dir).
    net.nodes[0].log.next_seq.insert(SeqStream::Broadcast, 1);
    net.restart(0);
    net.run_until(T0 + 2_000);
    for i in 0..4 {
        let values: Vec<&Vec<u8>> = net.nodes[i].delivered.iter().map(|(_, _, v)| v).collect();
        assert_eq!(values, vec![&Vec::<u8>::new()], "node {i}");
    }
    // And the next broadcast gets seq 1.
    let next = net.nodes[0].engine.broadcast(net.now, b"after".to_vec()).expect("broadcast");
    assert_eq!(next.seq, 1);
}

#[test]
fn a_restarted_member_keeps_its_votes_and_delivers_nothing_twice() {
    let mut net = Net::new(4);
    net.nodes[0].engine.broadcast(net.now, b"x".to_vec()).expect("broadcast");
    net.drain(0);
    net.run_until(T0 + 1_000);
    assert_eq!(net.nodes[1].delivered.len(), 1);
    net.restart(1);
    net.nodes[2].engine.broadcast(net.now, b"y".to_vec()).expect("broadcast");
    net.drain(2);
    net.run_until(T0 + 5_000);
    // Node 1 delivered x before the restart and y after: each once, cursors 1 and 2.
    let cursors: Vec<u64> = net.nodes[1].delivered.iter().map(|(c, _, _)| *c).collect();
    assert_eq!(cursors, vec![1, 2]);
}

#[test]
fn the_same_inputs_give_the_same_outputs() {
    let run = || {
        let mut net = Net::new(4);
        for i in 0..4 {
            net.nodes[i].engine.broadcast(net.now, vec![i as u8]).expect("broadcast");
            net.drain(i);
        }
        net.run_until(T0 + 3_000);
        net.nodes.iter().map(|n| (n.delivered.clone(), n.published.len())).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn synced_envelopes_beyond_a_full_verification_line_are_dropped_unverified() {
    let mut cfg = config(4, 0);
    cfg.validation_queue = 2;
    let mut engine = Engine::new(cfg, Recovered::default(), T0).expect("engine");
    let peer = Peer::Key(key(1).public());
    engine.handle_connected(T0, peer.clone());
    while engine.poll().is_some() {}
    // Ask a peer for a digest (the sync timer), then answer with ten fresh gossip envelopes.
    engine.handle_timeout(T0 + 300);
    let request_id = std::iter::from_fn(|| engine.poll())
        .find_map(|o| if let Output::SyncRequest { request_id, .. } = o { Some(request_id) } else { None })
        .expect("a digest request");
    let network = genesis(4).network_id();
    let gossip = (0..10u64)
        .map(|seq| {
            let body = byzgossip_engine::gossip::GossipBody { topic: "load".into(), payload: vec![seq as u8] }.encode();
            let envelope = Envelope::seal(&key(2), network, Kind::Gossip, seq, T0, body).expect("seal");
            serde_bytes::ByteBuf::from(codec::encode_envelope(&envelope))
        })
        .collect();
    let response = byzgossip_engine::SyncResponse::Catchup { deliveries: vec![], gossip, evidence: vec![] };
    engine.handle_sync_response(T0 + 310, peer, request_id, Some(response));
    let jobs = std::iter::from_fn(|| engine.poll()).filter(|o| matches!(o, Output::Verify(_))).count();
    assert_eq!(jobs, 2, "the gossip line holds two jobs; the rest wait for the next sync");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// Under seeded jitter and gossip loss, every member delivers every broadcast (gossip,
    /// retransmission and sync close the gaps) and no two members deliver different values
    /// for one instance. A failing case prints its seed.
    #[test]
    fn seeded_lossy_schedules_keep_agreement_and_validity(seed in any::<u64>(), n in 4usize..=7, loss in 0u32..=30, jitter in 0u64..=40) {
        use rand_core::SeedableRng;
        let mut net = Net::new(n);
        net.rng = Some((rand_chacha::ChaCha20Rng::seed_from_u64(seed), jitter, loss));
        let mut sent = Vec::new();
        for round in 0..2u8 {
            for i in 0..n {
                sent.push(net.nodes[i].engine.broadcast(net.now, vec![round, i as u8]).expect("broadcast"));
                net.drain(i);
            }
            let until = net.now + 50;
            net.run_until(until);
        }
        net.run_until(T0 + 30_000);
        sent.sort();
        let mut values: BTreeMap<InstanceId, Vec<u8>> = BTreeMap::new();
        for (i, node) in net.nodes.iter().enumerate() {
            prop_assert_eq!(delivered_instances(node), sent.clone(), "seed {} node {}", seed, i);
            for (_, instance, value) in &node.delivered {
                let first = values.entry(*instance).or_insert_with(|| value.clone());
                prop_assert_eq!(&*first, value, "seed {}: agreement broken at {:?}", seed, instance);
            }
        }
    }
}

#[test]
fn an_origin_flooding_its_own_gossip_is_convicted_before_its_messages_are_verified() {
    let mut engine = Engine::new(config(4, 0), Recovered::default(), T0).expect("engine");
    while engine.poll().is_some() {}
    let flooder = key(1);
    let peer = Peer::Key(flooder.public());
    engine.handle_connected(T0, peer.clone());
    let network = genesis(4).network_id();
    let topic = engine.topics().gossip("load");
    let mut convicted_at = None;
    // 2,000 messages a second straight from their signer, far over any origin budget; the
    // verification jobs are never run (a node whose verifiers cannot keep up).
    for i in 0..4_000u64 {
        let now = T0 + i / 2;
        let body = byzgossip_engine::gossip::GossipBody { topic: "load".into(), payload: i.to_be_bytes().to_vec() }.encode();
        let envelope = Envelope::seal(&flooder, network, Kind::Gossip, i, now, body).expect("seal");
        engine.handle_message(now, peer.clone(), i, &topic, &codec::encode_envelope(&envelope));
        if i % 50 == 0 {
            engine.handle_timeout(now);
        }
        while let Some(output) = engine.poll() {
            if let Output::Metric(Metric::StatusChange(change)) = output
                && change.peer == flooder.public()
                && convicted_at.is_none()
                && !matches!(change.to, byzgossip_reputation::PeerStatus::Ok)
            {
                convicted_at = Some(now - T0);
            }
        }
    }
    let at = convicted_at.expect("the flooder was never graylisted or banned");
    assert!(at < 2_000, "convicted after {at} ms");
}

#[test]
fn a_peer_whose_send_queue_stays_full_is_disconnected_once_and_never_penalised() {
    let mut engine = Engine::new(config(4, 0), Recovered::default(), T0).expect("engine");
    let peer = Peer::Key(key(1).public());
    engine.handle_connected(T0, peer.clone());
    while engine.poll().is_some() {}
    // A peer that has sent nothing has no reputation entry yet; a penalty would create one.
    let score = |engine: &Engine, now| engine.peers(now).into_iter().find(|v| v.peer == peer).map(|v| v.reputation.score);
    let before = score(&engine, T0);
    let mut disconnects = Vec::new();
    // Gossipsub reports the peer slow at every 500 ms heartbeat for 6 s.
    for t in (0..=6_000).step_by(500) {
        engine.handle_slow_peer(T0 + t, peer.clone());
        while let Some(output) = engine.poll() {
            if let Output::Peer(PeerAction::Disconnect(p)) = output {
                disconnects.push((t, p));
            }
        }
    }
    assert_eq!(disconnects, vec![(byzgossip_engine::slow::SLOW_PEER_STREAK_MS, peer.clone())], "dropped once, after a whole streak");
    assert_eq!(score(&engine, T0 + 6_000), before, "being slow is not misbehaviour");
    // A short burst of slowness on a fresh connection drops nothing.
    engine.handle_disconnected(T0 + 6_100, peer.clone());
    engine.handle_connected(T0 + 6_200, peer.clone());
    for t in (7_000..=9_000).step_by(500) {
        engine.handle_slow_peer(T0 + t, peer.clone());
    }
    assert!(std::iter::from_fn(|| engine.poll()).all(|o| !matches!(o, Output::Peer(PeerAction::Disconnect(_)))));
}

/// Issue #11 point 3: sync requests are charged to the requester's sync budget before
/// anything is planned; a peer asking for everything 100 times a second is refused over its
/// budget, penalised until graylisted, and then refused outright, while a peer syncing at the
/// honest rate (one digest a second) is always served.
#[test]
fn a_peer_flooding_sync_requests_is_refused_over_its_budget_and_graylisted() {
    let mut engine = Engine::new(config(4, 0), Recovered::default(), T0).expect("engine");
    let (flooder, honest) = (Peer::Key(key(1).public()), Peer::Key(key(2).public()));
    engine.handle_connected(T0, flooder.clone());
    engine.handle_connected(T0, honest.clone());
    while engine.poll().is_some() {}
    let everything = || SyncRequest::Digest { bracha: vec![], gossip: vec![] };
    let (mut served, mut refused, mut honest_refused) = (0, 0, 0);
    let mut graylisted_at = None;
    for i in 0..300u64 {
        let now = T0 + i * 10;
        engine.handle_sync_request(now, flooder.clone(), 2 * i, everything());
        if i % 100 == 0 {
            engine.handle_sync_request(now, honest.clone(), 2 * i + 1, everything());
        }
        while let Some(output) = engine.poll() {
            match output {
                Output::SyncServe { token, .. } => {
                    if token % 2 == 0 {
                        served += 1;
                    }
                    engine.handle_sync_served(now, token);
                }
                Output::SyncRefuse { token } if token % 2 == 0 => refused += 1,
                Output::SyncRefuse { .. } => honest_refused += 1,
                Output::Metric(Metric::StatusChange(change))
                    if change.peer == key(1).public() && change.to != byzgossip_reputation::PeerStatus::Ok =>
                {
                    graylisted_at.get_or_insert(now - T0);
                }
                _ => {}
            }
        }
    }
    // A new key's sync bucket: 24 requests of burst, refilled at 6.5/s (trust 0.1).
    assert!((24..=24 + 20).contains(&served), "served {served} of 300 in 3 s");
    assert_eq!(served + refused, 300);
    let at = graylisted_at.expect("the flooder was never graylisted");
    assert!(at < 1_000, "graylisted after {at} ms");
    assert_eq!(honest_refused, 0, "the honest peer was refused");
    assert!(engine.peers(T0 + 3_000).iter().filter(|v| v.peer == honest).all(|v| v.reputation.status == byzgossip_reputation::PeerStatus::Ok));
}

/// At most MAX_SYNC_SERVING plans run at once, whatever the number of requesters; a slot
/// frees when the driver reports its plan done.
#[test]
fn no_more_than_the_bound_of_serving_plans_run_at_once() {
    let mut engine = Engine::new(config(4, 0), Recovered::default(), T0).expect("engine");
    let mut planned = Vec::new();
    let mut busy = 0;
    for i in 0..3 * MAX_SYNC_SERVING as u64 {
        let peer = Peer::Key(key(100 + i as usize).public());
        engine.handle_connected(T0, peer.clone());
        engine.handle_sync_request(T0, peer, i, SyncRequest::Digest { bracha: vec![], gossip: vec![] });
        while let Some(output) = engine.poll() {
            match output {
                Output::SyncServe { token, .. } => planned.push(token),
                Output::SyncRefuse { .. } => busy += 1,
                _ => {}
            }
        }
    }
    assert_eq!((planned.len(), busy, engine.sync_serving()), (MAX_SYNC_SERVING, 2 * MAX_SYNC_SERVING, MAX_SYNC_SERVING));
    engine.handle_sync_served(T0 + 1, planned[0]);
    let peer = Peer::Key(key(3).public());
    engine.handle_sync_request(T0 + 1, peer, 999, SyncRequest::Digest { bracha: vec![], gossip: vec![] });
    assert!(std::iter::from_fn(|| engine.poll()).any(|o| matches!(o, Output::SyncServe { token: 999, .. })));
}

/// Issue #11 point 5: with a retention, the engine asks the store every PRUNE_INTERVAL_MS to
/// forget deliveries older than it, asks again at once while a commit reports a full page,
/// and never without a retention.
#[test]
fn deliveries_older_than_the_retention_are_pruned_a_page_at_a_time() {
    let prunes = |retention_ms: u64, pages: &[usize]| {
        let mut engine = Engine::new(EngineConfig { retention_ms, ..config(4, 0) }, Recovered::default(), T0).expect("engine");
        let mut asked = Vec::new();
        let mut pages = pages.iter().copied();
        for step in 0..400u64 {
            let now = T0 + step * 100;
            engine.handle_timeout(now);
            while let Some(output) = engine.poll() {
                if let Output::Persist(batch) = output {
                    let pruned = match batch.prune_before_ms {
                        Some(before) => {
                            asked.push((now - T0, now - before));
                            pages.next().unwrap_or(0)
                        }
                        None => 0,
                    };
                    let committed = Committed { own: vec![None; batch.own.len()], deliveries: vec![], pruned };
                    engine.handle_committed(now, batch.id, Ok(committed));
                }
            }
        }
        asked
    };
    assert!(prunes(0, &[]).is_empty(), "no retention, no pruning");
    let asked = prunes(60_000, &[MAX_PRUNED_PER_BATCH, MAX_PRUNED_PER_BATCH, 3]);
    assert!(asked.iter().all(|(_, age)| *age == 60_000), "always the retention's age: {asked:?}");
    let times: Vec<u64> = asked.iter().map(|(t, _)| *t).collect();
    // Two full pages: asked again at the next timer (100 ms); then every 10 s.
    assert_eq!(&times[..4], &[0, 100, 200, 200 + PRUNE_INTERVAL_MS], "{times:?}");
    assert_eq!(times.len(), 3 + (40_000 - 200 - 1) as usize / PRUNE_INTERVAL_MS as usize);
}

// ---- Recovery of the next broadcast seq after a lost store (issue #11, point 6) ----

/// `config(n, i)` with a recovery wait of `timeout_ms`.
fn recovering_config(n: usize, i: usize, timeout_ms: u64) -> EngineConfig {
    EngineConfig { seq_recovery_timeout_ms: timeout_ms, ..config(n, i) }
}

impl Net {
    /// Node `i` loses its store and starts again, empty, with `config`, connected to every
    /// other node.
    fn lose_store(&mut self, i: usize, config: EngineConfig) {
        self.nodes[i].log = Log::default();
        self.nodes[i].delivered.clear();
        self.nodes[i].engine = Engine::new(config, Recovered::default(), self.now).expect("engine");
        self.nodes[i].up = true;
        for j in 0..self.nodes.len() {
            if j != i {
                self.nodes[i].engine.handle_connected(self.now, Peer::Key(key(j).public()));
            }
        }
        self.drain(i);
    }

    /// Broadcasts from node `i` once the engine takes it, trying every 10 virtual ms until
    /// `limit`; returns the instance and when it was taken.
    fn broadcast_when_taken(&mut self, i: usize, value: &[u8], limit: u64) -> (InstanceId, u64) {
        loop {
            match self.nodes[i].engine.broadcast(self.now, value.to_vec()) {
                Ok(instance) => {
                    self.drain(i);
                    return (instance, self.now);
                }
                Err(byzgossip_engine::EngineError::RecoveringSeq | byzgossip_engine::EngineError::Busy(_)) if self.now < limit => {
                    let next = self.now + 10;
                    self.run_until(next);
                }
                Err(e) => panic!("broadcast from node {i} at {}: {e}", self.now - T0),
            }
        }
    }

    /// Node 0 broadcasts `count` values, each delivered everywhere before the next.
    fn deliver_from_node_0(&mut self, count: usize) {
        for k in 0..count {
            let limit = self.now + 5_000;
            let (instance, _) = self.broadcast_when_taken(0, format!("old-{k}").as_bytes(), limit);
            assert_eq!(instance.seq, k as u64);
            let until = self.now + 500;
            self.run_until(until);
        }
    }
}

fn holds(net: &Net, node: usize, instance: InstanceId) -> Option<Vec<u8>> {
    net.nodes[node].delivered.iter().find(|(_, i, _)| *i == instance).map(|(_, _, v)| v.clone())
}

/// The bug measured before: a member that lost its store could never broadcast again (its
/// seq counter restarted at 0, below its own window, and the window check refused it as
/// "still being delivered"), or, worse, would sign a second SEND for a delivered seq. Now it
/// asks its peers, takes the highest certified own seq + 1, and its next broadcast is
/// delivered everywhere under that seq, with nobody convicting it of equivocation.
#[test]
fn a_member_that_lost_its_store_recovers_its_next_seq_from_its_peers_and_broadcasts_again() {
    let mut net = Net::new(4);
    net.deliver_from_node_0(10);
    let lost_at = net.now;
    net.lose_store(0, recovering_config(4, 0, 60_000));
    // Until its peers answered, the node hands out no seq.
    assert_eq!(net.nodes[0].engine.broadcast(net.now, b"too early".to_vec()), Err(byzgossip_engine::EngineError::RecoveringSeq));
    let (instance, taken_at) = net.broadcast_when_taken(0, b"after the loss", lost_at + 60_000);
    assert_eq!(instance.seq, 10, "the highest delivered own seq was 9");
    assert!(taken_at - lost_at < 2_000, "recovered from answers, not by the 60 s timeout: {} ms", taken_at - lost_at);
    net.run_until(net.now + 2_000);
    for i in 0..4 {
        assert_eq!(holds(&net, i, instance).as_deref(), Some(&b"after the loss"[..]), "node {i}");
        // Seq 9 is still its first value everywhere, node 0 included (it learned it from the
        // certificate its peers answered with).
        assert_eq!(holds(&net, i, InstanceId { origin: key(0).public(), seq: 9 }).as_deref(), Some(&b"old-9"[..]), "node {i}");
        let status = net.nodes[i].engine.admission().reputation().status(&key(0).public(), net.now);
        assert!(matches!(status, byzgossip_reputation::PeerStatus::Ok), "node {i} sees node 0 as {status:?}");
    }
}

/// The window check no longer fires below the window: a member whose counter is behind its
/// own low watermark (it learned its delivered instances through ordinary sync, here with
/// the recovery wait off) broadcasts at the low watermark instead of answering "busy" for
/// ever.
#[test]
fn a_counter_below_the_own_window_moves_up_to_it_instead_of_refusing() {
    let mut net = Net::new(4);
    net.deliver_from_node_0(3);
    net.lose_store(0, recovering_config(4, 0, 0));
    net.run_until(net.now + 3_000);
    assert_eq!(net.nodes[0].engine.bracha().and_then(|b| b.low_watermark(&key(0).public())), Some(3), "sync brought seqs 0..3");
    let instance = net.nodes[0].engine.broadcast(net.now, b"next".to_vec()).expect("not refused below the window");
    assert_eq!(instance.seq, 3);
}

/// The wait is bounded: a fresh member whose peers never answer starts from what it knows
/// when `seq_recovery_timeout_ms` has passed (and not a millisecond earlier), and its
/// `poll_timeout` wakes the driver for it.
#[test]
fn a_fresh_member_nobody_answers_starts_from_its_store_at_the_timeout() {
    let mut engine = Engine::new(recovering_config(4, 0, 2_000), Recovered::default(), T0).expect("engine");
    for j in 1..4 {
        engine.handle_connected(T0, Peer::Key(key(j).public()));
    }
    let mut asked = Vec::new();
    while let Some(output) = engine.poll() {
        if let Output::SyncRequest { peer, request: byzgossip_engine::SyncRequest::Latest { origin }, .. } = output {
            assert_eq!(origin, key(0).public());
            asked.push(peer);
        }
    }
    assert_eq!(asked.len(), 3, "every connected member is asked once");
    assert!(engine.poll_timeout().is_some_and(|t| t <= T0 + 2_000));
    assert_eq!(engine.broadcast(T0 + 1_999, b"v".to_vec()), Err(byzgossip_engine::EngineError::RecoveringSeq));
    let instance = engine.broadcast(T0 + 2_000, b"v".to_vec()).expect("the wait ended");
    assert_eq!(instance.seq, 0);
}

/// A brand-new committee (every store fresh, every member with bootstrap peers and the wait
/// on) waits only for its members' first answers, one round trip; a member without
/// bootstrap peers, or with the wait at 0, never waits; a store that is not fresh never
/// waits.
#[test]
fn a_brand_new_committee_waits_only_for_its_members_first_answers() {
    let mut net = Net::new(4);
    for i in 0..4 {
        net.lose_store(i, recovering_config(4, i, 10_000));
    }
    let start = net.now;
    assert_eq!(net.nodes[1].engine.broadcast(net.now, b"x".to_vec()), Err(byzgossip_engine::EngineError::RecoveringSeq));
    // Request and answer: two link latencies (`run_until` stops before events due at its end).
    net.run_until(start + 2 * LATENCY + 1);
    for i in 0..4 {
        let instance = net.nodes[i].engine.broadcast(net.now, vec![i as u8]).expect("answered: nothing of yours");
        assert_eq!(instance.seq, 0);
        net.drain(i);
    }
    // No bootstrap peers: nobody to ask at start.
    let alone = EngineConfig { bootstrap: Vec::new(), ..recovering_config(4, 0, 10_000) };
    let mut engine = Engine::new(alone, Recovered::default(), T0).expect("engine");
    assert!(engine.broadcast(T0, b"v".to_vec()).is_ok());
    // The wait switched off.
    let mut engine = Engine::new(recovering_config(4, 0, 0), Recovered::default(), T0).expect("engine");
    assert!(engine.broadcast(T0, b"v".to_vec()).is_ok());
    // A store with a reserved seq is not fresh.
    let used = Recovered { next_broadcast_seq: 1, ..Recovered::default() };
    let mut engine = Engine::new(recovering_config(4, 0, 10_000), used, T0).expect("engine");
    assert!(engine.broadcast(T0, b"v".to_vec()).is_ok());
}

/// What counts is checked: an answer carrying a certificate of another origin's instance is
/// the peer's fault (it is penalised and its answer does not count), and a certificate whose
/// signatures do not verify moves no seq.
#[test]
fn recovery_counts_only_verified_certificates_of_its_own_instances() {
    let mut net = Net::new(4);
    net.deliver_from_node_0(2);
    // Node 1's delivery of its own instance, and a tampered one of node 0's.
    let (instance, _) = net.broadcast_when_taken(1, b"of node 1", net.now + 1_000);
    net.run_until(net.now + 500);
    let foreign = net.nodes[2].log.delivery(&instance.origin, instance.seq).expect("delivered");
    let mut forged = net.nodes[2].log.delivery(&key(0).public(), 1).expect("delivered");
    let mut certificate = byzgossip_bracha::Certificate::decode(&forged.certificate, 1 << 20).expect("certificate");
    certificate.instance.seq = 1_000;
    forged.certificate = certificate.encode();

    let mut engine = Engine::new(recovering_config(4, 0, 60_000), Recovered::default(), net.now).expect("engine");
    let now = net.now;
    for j in 1..4 {
        engine.handle_connected(now, Peer::Key(key(j).public()));
    }
    let mut requests = BTreeMap::new();
    while let Some(output) = engine.poll() {
        if let Output::SyncRequest { peer, request_id, .. } = output {
            requests.insert(peer.key().expect("key"), request_id);
        }
    }
    let answer = |d: &StoredDelivery| {
        byzgossip_engine::SyncResponse::Latest(Some(byzgossip_engine::sync::SyncedDelivery {
            certificate: d.certificate.clone(),
            value: d.value.clone(),
        }))
    };
    let before = engine.admission().reputation().app_score(&key(1).public(), now);
    engine.handle_sync_response(now, Peer::Key(key(1).public()), requests[&key(1).public()], Some(answer(&foreign)));
    engine.handle_sync_response(now, Peer::Key(key(2).public()), requests[&key(2).public()], Some(answer(&forged)));
    let mut jobs = Vec::new();
    while let Some(output) = engine.poll() {
        if let Output::Verify(job) = output {
            jobs.push(job);
        }
    }
    assert!(engine.admission().reputation().app_score(&key(1).public(), now) < before, "another origin's certificate costs the peer");
    assert_eq!(jobs.len(), 1, "the forged certificate is checked as a job");
    for job in jobs {
        let done = job.run();
        engine.handle_verified(now, done);
    }
    // One answer counted (node 2's, whose certificate failed), one needed more: still waiting.
    assert_eq!(engine.broadcast(now, b"v".to_vec()), Err(byzgossip_engine::EngineError::RecoveringSeq));
    engine.handle_sync_response(now, Peer::Key(key(3).public()), requests[&key(3).public()], Some(byzgossip_engine::SyncResponse::Latest(None)));
    let instance = engine.broadcast(now, b"v".to_vec()).expect("two answers");
    assert_eq!(instance.seq, 0, "a certificate that failed its check moves no seq");
}

/// A recovery survives restarts: restarted before its first new broadcast, or after it, the
/// member neither fills its former life's seqs with empty SENDs nor takes one again, and its
/// broadcasts go on at the next seq, delivered everywhere, with nobody convicting it.
#[test]
fn a_recovered_member_that_restarts_keeps_its_recovered_seq() {
    let mut net = Net::new(4);
    net.deliver_from_node_0(10);
    net.lose_store(0, recovering_config(4, 0, 60_000));
    net.run_until(net.now + 2_000);
    // Restarted before broadcasting: the store holds re-signed SENDs of what it delivered.
    net.restart(0);
    let limit = net.now + 5_000;
    let (first, _) = net.broadcast_when_taken(0, b"first after the loss", limit);
    assert_eq!(first.seq, 10);
    net.run_until(net.now + 1_000);
    // And restarted after it.
    net.restart(0);
    let limit = net.now + 5_000;
    let (second, _) = net.broadcast_when_taken(0, b"second after the loss", limit);
    assert_eq!(second.seq, 11);
    net.run_until(net.now + 2_000);
    for i in 0..4 {
        assert_eq!(holds(&net, i, first).as_deref(), Some(&b"first after the loss"[..]), "node {i}");
        assert_eq!(holds(&net, i, second).as_deref(), Some(&b"second after the loss"[..]), "node {i}");
        // Every instance of node 0 holds one value everywhere: no empty fill, no second SEND.
        for (_, instance, value) in &net.nodes[i].delivered {
            if instance.origin == key(0).public() && instance.seq < 10 {
                assert_eq!(value, format!("old-{}", instance.seq).as_bytes(), "node {i} seq {}", instance.seq);
            }
        }
        let status = net.nodes[i].engine.admission().reputation().status(&key(0).public(), net.now);
        assert!(matches!(status, byzgossip_reputation::PeerStatus::Ok), "node {i} sees node 0 as {status:?}");
    }
    let published_empty = net.nodes[0].published.iter().any(|e| {
        e.header().kind == Kind::BrachaSend && e.header().origin == key(0).public() && e.header().seq < 10 && e.body().len() < 16
    });
    assert!(!published_empty, "a seq of the former life was filled with an empty value");
}

/// Issue #12 point 4: quorum health in virtual time. A member of four (f = 1) that reaches two
/// others has 3 = 2f+1 members; three failed pings suspect one of them, progress becomes
/// impossible and the engine says so once; a message from the suspect clears it.
#[test]
fn suspected_members_do_not_count_towards_the_quorum_and_traffic_clears_suspicion() {
    let mut engine = Engine::new(config(4, 0), Recovered::default(), T0).expect("engine");
    let (one, two) = (Peer::Key(key(1).public()), Peer::Key(key(2).public()));
    engine.handle_connected(T0, one.clone());
    engine.handle_connected(T0, two.clone());
    let mut now = T0;
    let tick = |engine: &mut Engine, now: &mut u64| {
        *now += 250;
        engine.handle_timeout(*now);
        std::iter::from_fn(|| engine.poll())
            .filter_map(|o| match o {
                Output::Metric(Metric::Quorum { health, was_possible }) => Some((health.progress_possible(), was_possible)),
                _ => None,
            })
            .last()
    };
    assert_eq!(tick(&mut engine, &mut now), Some((true, None)));
    assert_eq!((engine.status().quorum.members_reachable, engine.status().quorum.members_needed), (3, 3));
    for rtt in [Some(3), None, None] {
        engine.handle_ping(now, two.clone(), rtt);
    }
    assert_eq!(tick(&mut engine, &mut now), Some((true, Some(true))), "two failures do not suspect");
    engine.handle_ping(now, two.clone(), None);
    let view = engine.peers(now).into_iter().find(|v| v.peer == two);
    assert!(view.is_none_or(|v| v.suspected && v.ping_failures == 3 && v.ping_rtt_ms == Some(3)));
    assert_eq!(tick(&mut engine, &mut now), Some((false, Some(true))), "progress impossible, said once");
    assert_eq!(tick(&mut engine, &mut now), Some((false, Some(false))));
    assert_eq!(engine.status().quorum.members_reachable, 2);
    // Any message from the suspect clears it, even one admission refuses.
    let topic = engine.topics().gossip("load");
    engine.handle_message(now, two.clone(), 1, &topic, b"junk");
    assert_eq!(tick(&mut engine, &mut now), Some((true, Some(false))), "possible again");
    // A disconnected member does not count either.
    engine.handle_disconnected(now, one);
    assert_eq!(tick(&mut engine, &mut now), Some((false, Some(true))));
}

/// An instance seen and not delivered for longer than STALL_MS counts as stalled.
#[test]
fn an_instance_open_longer_than_the_stall_deadline_is_reported_stalled() {
    let mut engine = Engine::new(config(4, 0), Recovered::default(), T0).expect("engine");
    for i in 1..4 {
        engine.handle_connected(T0, Peer::Key(key(i).public()));
    }
    engine.broadcast(T0, b"nobody answers".to_vec()).expect("broadcast");
    while let Some(output) = engine.poll() {
        if let Output::Persist(batch) = output {
            engine.handle_committed(T0, batch.id, Ok(Committed { own: vec![None; batch.own.len()], deliveries: vec![], pruned: 0 }));
        }
    }
    let stalled_at = |engine: &Engine, now: u64| engine.quorum_health(now).stalled_instances;
    assert_eq!(stalled_at(&engine, T0 + byzgossip_engine::liveness::STALL_MS), 0);
    assert_eq!(stalled_at(&engine, T0 + byzgossip_engine::liveness::STALL_MS + 1), 1);
}

// ---- bans, exclusions and gossip ids across restarts (issue #11 point 4) ----

/// Polls every output of `engine`, committing batches into `log`; returns the rest.
fn pump(engine: &mut Engine, log: &mut Log, now: u64) -> Vec<Output> {
    let mut rest = Vec::new();
    while let Some(output) = engine.poll() {
        match output {
            Output::Persist(batch) => {
                let committed = log.commit(&batch);
                engine.handle_committed(now, batch.id, Ok(committed));
            }
            Output::Verify(job) => engine.handle_verified(now, job.run()),
            other => rest.push(other),
        }
    }
    rest
}

/// Sends garbage from `attacker` until it is blocked, committing every batch; returns when.
fn ban_committed(engine: &mut Engine, log: &mut Log, attacker: &Peer, now: &mut u64, token: &mut u64) -> u64 {
    let topic = engine.topics().bracha();
    for _ in 0..1000 {
        *token += 1;
        *now += 1;
        engine.handle_message(*now, attacker.clone(), *token, &topic, b"garbage");
        if pump(engine, log, *now).iter().any(|o| matches!(o, Output::Peer(PeerAction::Block(p)) if p == attacker)) {
            return *now;
        }
    }
    panic!("never banned");
}

/// Ticks every 100 ms, committing batches, until `peer` is unblocked; returns when.
fn unblocked_committed(engine: &mut Engine, log: &mut Log, peer: &Peer, now: &mut u64, limit: u64) -> u64 {
    while *now < limit {
        *now += 100;
        engine.handle_timeout(*now);
        if pump(engine, log, *now).iter().any(|o| matches!(o, Output::Peer(PeerAction::Unblock(p)) if p == peer)) {
            return *now;
        }
    }
    panic!("never unblocked before {limit}");
}

#[test]
fn a_ban_survives_a_restart_blocks_at_start_ends_on_time_and_a_repeat_doubles() {
    let mut cfg = config(4, 0);
    cfg.admission.reputation.ban_base_ms = 10_000;
    let mut log = Log::default();
    let mut engine = Engine::new(cfg.clone(), Recovered::default(), T0).expect("engine");
    pump(&mut engine, &mut log, T0);
    let attacker = Peer::Key(key(9).public());
    engine.handle_connected(T0, attacker.clone());
    let (mut now, mut token) = (T0, 0);
    let first_ban = ban_committed(&mut engine, &mut log, &attacker, &mut now, &mut token);
    assert_eq!(log.sanctions.len().0, 1, "the ban is in the store");
    // A crash 3 s into the ban: the restarted engine blocks the attacker before any
    // connection is up, and lifts the ban when it was due, not 10 s after the restart.
    now += 3_000;
    let mut engine = Engine::new(cfg, log.recovered(), now).expect("engine");
    let started = pump(&mut engine, &mut log, now);
    assert!(started.iter().any(|o| matches!(o, Output::Peer(PeerAction::Block(p)) if *p == attacker)), "blocked at start");
    let lift = unblocked_committed(&mut engine, &mut log, &attacker, &mut now, first_ban + 60_000);
    assert!((10_000..10_200).contains(&(lift - first_ban)), "the first ban lasted {} ms", lift - first_ban);
    // The second offence after the restart: twice as long (the ban count survived).
    let second_ban = ban_committed(&mut engine, &mut log, &attacker, &mut now, &mut token);
    let second_lift = unblocked_committed(&mut engine, &mut log, &attacker, &mut now, second_ban + 120_000);
    assert!((20_000..20_200).contains(&(second_lift - second_ban)), "the second ban lasted {} ms", second_lift - second_ban);
}

/// Node 2 is down while member 3 equivocates and is excluded by nodes 0 and 1.
fn equivocation_while_node_2_is_down() -> Net {
    let mut net = Net::new(4);
    net.nodes[2].up = false;
    let network = genesis(4).network_id();
    let send = |value: &[u8]| {
        byzgossip_bracha::Message::Send { instance: InstanceId { origin: key(3).public(), seq: 0 }, value: value.to_vec() }
            .seal(&key(3), network, T0)
            .expect("seal")
    };
    let (a, b) = (codec::encode_envelope(&send(b"a")), codec::encode_envelope(&send(b"b")));
    let topic = net.nodes[0].engine.topics().bracha();
    for (to, bytes) in [(0, &a), (1, &b), (0, &b), (1, &a)] {
        net.push(T0 + 1, Event::Message { to, from: 3, topic: topic.clone(), bytes: bytes.clone() });
    }
    net.run_until(T0 + 1_000);
    for i in 0..2 {
        assert!(net.nodes[i].engine.blocked().any(|p| *p == Peer::Key(key(3).public())), "node {i} excludes the equivocator");
    }
    net
}

#[test]
fn a_member_down_while_an_equivocator_was_convicted_excludes_it_after_catching_up_through_sync() {
    let mut net = equivocation_while_node_2_is_down();
    let equivocator = key(3).public();
    // Node 2 comes back: nothing of the equivocation reaches it but sync.
    net.restart(2);
    assert!(!matches!(net.nodes[2].engine.admission().reputation().status(&equivocator, net.now), byzgossip_reputation::PeerStatus::Excluded { .. }));
    let back = net.now;
    net.run_until(back + 2_000);
    let status = net.nodes[2].engine.admission().reputation().status(&equivocator, net.now);
    assert!(matches!(status, byzgossip_reputation::PeerStatus::Excluded { .. }), "node 2 rates the equivocator {status:?}");
    assert!(net.nodes[2].engine.blocked().any(|p| *p == Peer::Key(equivocator)));
    assert_eq!(net.nodes[2].log.sanctions.len().1, 1, "the evidence it learned is stored");
}

#[test]
fn an_exclusion_and_its_evidence_survive_a_restart() {
    let mut net = equivocation_while_node_2_is_down();
    let equivocator = Peer::Key(key(3).public());
    net.nodes[0].up = false;
    net.restart(0);
    assert!(net.nodes[0].engine.blocked().any(|p| *p == equivocator), "excluded again at start, from its store");
    // And it still offers the evidence: node 2, back after node 0's restart, learns it.
    net.nodes[1].up = false;
    net.restart(2);
    net.run_until(net.now + 3_000);
    assert!(net.nodes[2].engine.blocked().any(|p| *p == equivocator));
}

/// Sends a catch-up response carrying `evidence` from node 1 to engine 0; returns node 1's
/// score at engine 0 after it was handled, and the sync metrics it caused.
fn serve_evidence(evidence: Vec<u8>) -> (f64, Vec<&'static str>) {
    let mut log = Log::default();
    let mut engine = Engine::new(config(4, 0), Recovered::default(), T0).expect("engine");
    let peer = Peer::Key(key(1).public());
    engine.handle_connected(T0, peer.clone());
    pump(&mut engine, &mut log, T0);
    engine.handle_timeout(T0 + 300);
    let request_id = pump(&mut engine, &mut log, T0 + 300)
        .into_iter()
        .find_map(|o| if let Output::SyncRequest { request_id, .. } = o { Some(request_id) } else { None })
        .expect("a digest request");
    let response = byzgossip_engine::SyncResponse::Catchup {
        deliveries: vec![],
        gossip: vec![],
        evidence: vec![serde_bytes::ByteBuf::from(evidence)],
    };
    engine.handle_sync_response(T0 + 310, peer, request_id, Some(response));
    let metrics = pump(&mut engine, &mut log, T0 + 310)
        .into_iter()
        .filter_map(|o| if let Output::Metric(Metric::Sync { kind }) = o { Some(kind) } else { None })
        .collect();
    (engine.admission().reputation().score(&key(1).public(), T0 + 310), metrics)
}

#[test]
fn bad_evidence_in_sync_costs_the_peer_that_served_it_and_never_panics() {
    // Bytes that are no evidence at all.
    let (score, metrics) = serve_evidence(b"not evidence".to_vec());
    assert!(score < 0.0, "score {score}");
    assert!(metrics.contains(&"evidence_malformed"), "{metrics:?}");
    // Well-formed, but the two messages are signed by different members.
    let network = genesis(4).network_id();
    let send = |signer: usize, value: &[u8]| {
        byzgossip_bracha::Message::Send { instance: InstanceId { origin: key(3).public(), seq: 0 }, value: value.to_vec() }
            .seal(&key(signer), network, T0)
            .expect("seal")
    };
    let framed = byzgossip_bracha::Evidence { first: send(3, b"a"), second: send(2, b"b") }.encode();
    let (score, metrics) = serve_evidence(framed);
    assert!(score < 0.0, "score {score}");
    assert!(metrics.contains(&"evidence_invalid"), "{metrics:?}");
    // Valid evidence is applied and costs nothing.
    let valid = byzgossip_bracha::Evidence { first: send(3, b"a"), second: send(3, b"b") }.encode();
    let (score, metrics) = serve_evidence(valid);
    assert!(score >= 0.0, "score {score}");
    assert!(metrics.contains(&"evidence_applied"), "{metrics:?}");
}

#[test]
fn gossip_delivered_before_a_restart_is_not_delivered_again_when_replayed_within_the_window() {
    let mut net = Net::new(4);
    let id = net.nodes[0].engine.publish(net.now, "load", b"once".to_vec()).expect("publish");
    net.drain(0);
    net.run_until(T0 + 500);
    assert_eq!(net.nodes[1].gossip, vec![id]);
    let replay = codec::encode_envelope(net.nodes[0].published.iter().find(|e| e.id() == id).expect("published"));
    // Node 1 restarts; node 3 replays the envelope a minute later (well within the window),
    // and sync offers it again too.
    net.nodes[1].up = false;
    net.restart(1);
    let topic = net.nodes[1].engine.topics().gossip("load");
    net.push(T0 + 60_000, Event::Message { to: 1, from: 3, topic, bytes: replay });
    net.run_until(T0 + 61_000);
    assert_eq!(net.nodes[1].gossip, vec![id], "delivered once across the restart");
    // The stored id leaves the store with the window: a later gossip batch forgets it.
    assert_eq!(net.nodes[1].log.sanctions.len().2, 1);
    let window = AdmissionConfig::default().replay.max_age_ms + AdmissionConfig::default().replay.max_future_ms;
    net.run_until(T0 + window + 1_000);
    net.nodes[2].engine.publish(net.now, "load", b"later".to_vec()).expect("publish");
    net.drain(2);
    net.run_until(net.now + 500);
    let mut r = Recovered::default();
    net.nodes[1].log.sanctions.recover_into(&mut r);
    assert!(!r.gossip.is_empty());
    assert!(r.gossip.iter().all(|g| g.expires_at_ms > T0 + window), "the expired id was forgotten: {:?}", r.gossip);
}

#[test]
fn gossip_is_delivered_once_its_id_is_durable_with_at_most_one_id_only_commit_in_flight() {
    let mut net = Net::new(4);
    let network = genesis(4).network_id();
    let topic = net.nodes[1].engine.topics().gossip("load");
    let mut batches = Vec::new();
    let mut delivered = 0;
    for seq in 0..20u64 {
        let body = byzgossip_engine::gossip::GossipBody { topic: "load".into(), payload: vec![seq as u8] }.encode();
        let envelope = Envelope::seal(&key(0), network, Kind::Gossip, 100 + seq, net.now, body).expect("seal");
        net.next_token += 1;
        let token = net.next_token;
        net.nodes[1].engine.handle_message(net.now, Peer::Key(key(0).public()), token, &topic, &codec::encode_envelope(&envelope));
        while let Some(output) = net.nodes[1].engine.poll() {
            match output {
                Output::Verify(job) => net.nodes[1].engine.handle_verified(net.now, job.run()),
                Output::Persist(b) => batches.push(b),
                Output::Gossip(_) => delivered += 1,
                _ => {}
            }
        }
    }
    // The first id left at once; the other 19 wait for its commit, and nothing is delivered
    // before its id is durable.
    assert_eq!(batches.len(), 1, "one id-only batch in flight");
    assert_eq!(batches[0].gossip.len(), 1);
    assert_eq!(delivered, 0);
    let first = batches.remove(0);
    let committed = net.nodes[1].log.commit(&first);
    net.nodes[1].engine.handle_committed(net.now, first.id, Ok(committed));
    let mut rest = Vec::new();
    while let Some(output) = net.nodes[1].engine.poll() {
        match output {
            Output::Persist(b) => rest.push(b),
            Output::Gossip(_) => delivered += 1,
            _ => {}
        }
    }
    assert_eq!(delivered, 1);
    assert_eq!(rest.len(), 1, "the 19 held ids leave as one batch");
    assert_eq!(rest[0].gossip.len(), 19);
    let committed = net.nodes[1].log.commit(&rest[0]);
    net.nodes[1].engine.handle_committed(net.now, rest[0].id, Ok(committed));
    delivered += std::iter::from_fn(|| net.nodes[1].engine.poll()).filter(|o| matches!(o, Output::Gossip(_))).count();
    assert_eq!(delivered, 20);
}

// ---- observers (issue #12 point 1) ----

/// 4 members and 3 observers: observer 4 attached to members 0 and 1, observer 5 to members 2
/// and 3 and to observer 4, observer 6 only to observer 4 (two hops from the committee).
fn observer_net() -> Net {
    Net::with_observers(4, 3, |a, b| match (a, b) {
        (a, b) if b < 4 => a != b,
        (0 | 1, 4) | (2 | 3, 5) | (4, 5) | (4, 6) => true,
        _ => false,
    })
}

#[test]
fn observers_deliver_every_broadcast_on_certificates_pushed_to_them_also_two_hops_from_the_committee() {
    let mut net = observer_net();
    let mut sent = Vec::new();
    for i in 0..4 {
        sent.push(net.nodes[i].engine.broadcast(net.now, vec![i as u8; 16]).expect("broadcast"));
        net.drain(i);
    }
    sent.sort();
    // Before the first sync round (300 ms): only pushed certificates can have done it.
    net.run_until(T0 + 250);
    for o in 4..7 {
        assert_eq!(delivered_instances(&net.nodes[o]), sent, "observer {o}");
        let cursors: Vec<u64> = net.nodes[o].delivered.iter().map(|(c, _, _)| *c).collect();
        assert_eq!(cursors, (1..=4).collect::<Vec<u64>>(), "observer {o}: dense cursors from 1");
        for (_, instance, value) in &net.nodes[o].delivered {
            let member = &net.nodes[0].delivered.iter().find(|(_, i, _)| i == instance).expect("member delivered").2;
            assert_eq!(value, member, "observer {o} delivered what the members did");
        }
        assert!(
            net.nodes[o].published.iter().all(|e| e.header().kind != Kind::BrachaEcho && e.header().kind != Kind::BrachaReady),
            "observer {o} never votes"
        );
        assert!(net.nodes[o].log.deliveries.values().all(|d| !d.certificate.is_empty()), "stored with its certificate");
    }
    // Members do not take certified announcements; each observer delivered each instance once.
    net.run_until(T0 + 3_000);
    for o in 4..7 {
        assert_eq!(net.nodes[o].delivered.len(), 4, "observer {o} delivered nothing twice");
    }
}

#[test]
fn an_observer_that_missed_the_announcements_catches_up_through_sync_and_a_restart_delivers_nothing_again() {
    let mut net = observer_net();
    net.nodes[6].up = false;
    let mut sent = Vec::new();
    for round in 0..3u8 {
        for i in 0..4 {
            sent.push(net.nodes[i].engine.broadcast(net.now, vec![round, i as u8]).expect("broadcast"));
            net.drain(i);
        }
        let until = net.now + 200;
        net.run_until(until);
    }
    sent.sort();
    assert!(net.nodes[6].delivered.is_empty());
    net.nodes[6].up = true;
    // Observer 6 syncs with its only peer, observer 4, which serves from its store.
    let until = net.now + 5_000;
    net.run_until(until);
    assert_eq!(delivered_instances(&net.nodes[6]), sent);
    let before = net.nodes[6].delivered.len();
    net.restart(6);
    let until = net.now + 2_000;
    net.run_until(until);
    assert_eq!(net.nodes[6].delivered.len(), before, "a restarted observer delivers nothing again");
    // And it goes on delivering new broadcasts.
    let next = net.nodes[1].engine.broadcast(net.now, b"after".to_vec()).expect("broadcast");
    net.drain(1);
    let until = net.now + 1_000;
    net.run_until(until);
    assert!(delivered_instances(&net.nodes[6]).contains(&next));
}

/// A READY of member `i` for `instance` and `digest`, sealed for `network`.
fn ready(i: usize, instance: InstanceId, digest: byzgossip_crypto::Digest, network: byzgossip_crypto::NetworkId) -> Envelope {
    byzgossip_bracha::Message::Ready { instance, digest }.seal(&key(i), network, T0).expect("seal")
}

#[test]
fn a_forged_certificate_is_rejected_never_delivered_and_costs_its_forwarder() {
    let n = 4;
    let network = genesis(n).network_id();
    let value = b"forged".to_vec();
    let digest = byzgossip_crypto::Digest::of(&value);
    let instance = InstanceId { origin: key(0).public(), seq: 0 };
    let other_network = byzgossip_crypto::NetworkId([9; 32]);
    // f = 1: 2f+1 = 3 READYs needed.
    let forgeries = [
        ("2f signatures", vec![ready(0, instance, digest, network), ready(1, instance, digest, network)]),
        (
            "one bad signature",
            vec![ready(0, instance, digest, network), ready(1, instance, digest, network), ready(2, instance, digest, other_network)],
        ),
    ];
    for (what, readys) in forgeries {
        let mut observer = Engine::new(config(n, 10), Recovered::default(), T0).expect("engine");
        let forwarder = key(3).public();
        observer.handle_connected(T0, Peer::Key(forwarder));
        while observer.poll().is_some() {}
        let certificate = byzgossip_bracha::Certificate { instance, digest, readys };
        let body = byzgossip_engine::observer::CertifiedBody { certificate: certificate.encode(), value: value.clone() };
        let envelope = Envelope::seal(&key(3), network, Kind::Certified, 0, T0, body.encode()).expect("seal");
        let score_before = observer.admission().reputation().score(&forwarder, T0);
        observer.handle_message(T0, Peer::Key(forwarder), 1, &observer.topics().certified(), &codec::encode_envelope(&envelope));
        let mut verdict = None;
        let mut delivered = false;
        while let Some(output) = observer.poll() {
            match output {
                Output::Verify(job) => observer.handle_verified(T0, job.run()),
                Output::Persist(batch) => observer.handle_committed(T0, batch.id, Ok(Log::default().commit(&batch))),
                Output::Validation { token: 1, acceptance } => verdict = Some(acceptance),
                Output::Deliver(_) => delivered = true,
                _ => {}
            }
        }
        assert_eq!(verdict, Some(Acceptance::Reject), "{what}: rejected, never forwarded");
        assert!(!delivered, "{what}: never delivered");
        assert!(observer.admission().reputation().score(&forwarder, T0) < score_before, "{what}: the forwarder pays");
    }
}

/// Issue #12 point 2: under the `open` policy an observer publishes under its own budget, and
/// gossip reaches every subscriber whatever it is attached to: observer 6's message (attached
/// only to observer 4) reaches every member and observer, and a member's reaches observer 6.
#[test]
fn open_gossip_from_an_observer_two_hops_out_reaches_everyone_and_back() {
    let mut net = observer_net();
    let open = Genesis { policy: GossipPolicy::Open, ..genesis(4) };
    for i in 0..7 {
        let config = EngineConfig { genesis: open.clone(), ..config(4, i) };
        net.nodes[i].engine = Engine::new(config, Recovered::default(), net.now).expect("engine");
    }
    for i in 0..7 {
        for j in 0..7 {
            if i != j && net.linked(i, j) {
                net.nodes[i].engine.handle_connected(net.now, Peer::Key(key(j).public()));
            }
        }
    }
    net.drain_all();
    let from_observer = net.nodes[6].engine.publish(net.now, "load", b"from the edge".to_vec()).expect("an observer publishes");
    net.drain(6);
    let from_member = net.nodes[2].engine.publish(net.now, "load", b"from the committee".to_vec()).expect("publish");
    net.drain(2);
    net.run_until(T0 + 200);
    for i in 0..7 {
        if i != 6 {
            assert!(net.nodes[i].gossip.contains(&from_observer), "node {i} missed observer 6's gossip");
        }
        if i != 2 {
            assert!(net.nodes[i].gossip.contains(&from_member), "node {i} missed member 2's gossip");
        }
    }
}
