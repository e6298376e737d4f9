//! The state machine with real signatures, input by input: equivocation evidence, exclusion,
//! fetches, certificates, restart safety, windows and retention.

use byzgossip_bracha::{
    Bracha, Certificate, CertificateError, Config, Error, Evidence, EvidenceError, FaultKind, InstanceId, Message,
    MessageError, Step,
};
use byzgossip_crypto::{Committee, Digest, Envelope, Keypair, Kind, NetworkId, VerifiedEnvelope};

struct Net {
    keys: Vec<Keypair>,
    committee: Committee,
    network: NetworkId,
    config: Config,
}

fn net(n: usize) -> Net {
    let keys: Vec<Keypair> = (0..n).map(|i| Keypair::from_secret_bytes(&[i as u8 + 10; 32])).collect();
    let committee = Committee::new(keys.iter().map(Keypair::public).collect(), (n - 1) / 3).expect("committee");
    let config = Config { window: 4, retention_ms: 1_000, max_retained_per_origin: 3, fetch_retry_ms: 100, ..Config::default() };
    Net { keys, committee, network: NetworkId([5; 32]), config }
}

impl Net {
    fn member(&self, i: usize) -> Bracha {
        Bracha::new(self.committee.clone(), self.keys[i].clone(), self.network, self.config.clone()).expect("member")
    }
    fn seal(&self, from: usize, message: Message) -> Envelope {
        message.seal(&self.keys[from], self.network, 7).expect("seal")
    }
    fn verified(&self, envelope: Envelope) -> VerifiedEnvelope {
        envelope.verify(&self.network).expect("valid")
    }
    fn handle(&self, node: &mut Bracha, from: usize, message: Message) -> Step {
        node.handle(&self.verified(self.seal(from, message)), 0)
    }
    fn instance(&self, origin: usize, seq: u64) -> InstanceId {
        InstanceId { origin: self.keys[origin].public(), seq }
    }
}

fn kinds(step: &Step) -> Vec<Kind> {
    step.outgoing.iter().map(|e| e.header().kind).collect()
}

#[test]
fn echoes_only_the_first_send_and_proves_an_equivocating_origin() {
    let net = net(4);
    let mut node = net.member(0);
    let instance = net.instance(1, 0);
    let step = net.handle(&mut node, 1, Message::Send { instance, value: b"one".to_vec() });
    assert_eq!(kinds(&step), vec![Kind::BrachaEcho]);
    let echo = Message::from_envelope(&step.outgoing[0], 1024).expect("echo");
    assert_eq!(echo, Message::Echo { instance, digest: Digest::of(b"one") });
    assert_eq!(step.outgoing[0].header().seq, 0, "header.seq = instance.seq");

    // The same SEND again is a duplicate; a different one is equivocation.
    assert!(net.handle(&mut node, 1, Message::Send { instance, value: b"one".to_vec() }).is_empty());
    let step = net.handle(&mut node, 1, Message::Send { instance, value: b"two".to_vec() });
    assert!(step.outgoing.is_empty(), "the second value is never echoed");
    assert_eq!(step.faults.len(), 1);
    assert_eq!(step.faults[0].kind, FaultKind::Equivocation);
    assert_eq!(step.faults[0].member, net.keys[1].public());
    let evidence = &step.evidence[0];
    assert_eq!(evidence.verify(&net.committee, &net.network), Ok(net.keys[1].public()));

    // The evidence travels as a Kind::Evidence body and names itself the same either way.
    let decoded = Evidence::decode(&evidence.encode(), 1 << 20).expect("decode");
    assert_eq!(&decoded, evidence);
    let swapped = Evidence { first: evidence.second.clone(), second: evidence.first.clone() };
    assert_eq!(swapped.digest(), evidence.digest());
    assert_eq!(evidence.instance(), Some(instance));
    // Further messages of the excluded origin in this instance are ignored.
    assert!(net.handle(&mut node, 1, Message::Send { instance, value: b"three".to_vec() }).is_empty());
}

#[test]
fn evidence_that_proves_nothing_is_refused() {
    let net = net(4);
    let instance = net.instance(1, 0);
    let echo = |from: usize, value: &[u8]| net.seal(from, Message::Echo { instance, digest: Digest::of(value) });
    let check = |first: Envelope, second: Envelope| Evidence { first, second }.verify(&net.committee, &net.network);
    assert_eq!(check(echo(2, b"a"), echo(2, b"b")), Ok(net.keys[2].public()));
    assert_eq!(check(echo(2, b"a"), echo(3, b"b")), Err(EvidenceError::DifferentSigners));
    assert_eq!(check(echo(2, b"a"), echo(2, b"a")), Err(EvidenceError::NoConflict));
    let ready = net.seal(2, Message::Ready { instance, digest: Digest::of(b"b") });
    assert_eq!(check(echo(2, b"a"), ready), Err(EvidenceError::WrongKind));
    let other = net.seal(2, Message::Echo { instance: net.instance(1, 1), digest: Digest::of(b"b") });
    assert_eq!(check(echo(2, b"a"), other), Err(EvidenceError::DifferentInstances));
    // A forged signature: same header, another key's signature.
    let (header, body, _) = echo(2, b"b").into_parts();
    let forged = Envelope::from_parts(header, body, *echo(3, b"b").signature()).expect("parts");
    assert_eq!(check(echo(2, b"a"), forged), Err(EvidenceError::BadSignature));
    // Another network.
    let elsewhere = Message::Echo { instance, digest: Digest::of(b"b") }.seal(&net.keys[2], NetworkId([6; 32]), 0).expect("seal");
    assert_eq!(check(echo(2, b"a"), elsewhere), Err(EvidenceError::BadSignature));
    // A non-member.
    let outsider = Keypair::from_secret_bytes(&[99; 32]);
    let e = |v: &[u8]| Message::Echo { instance, digest: Digest::of(v) }.seal(&outsider, net.network, 0).expect("seal");
    assert_eq!(check(e(b"a"), e(b"b")), Err(EvidenceError::NotAMember));
    assert!(Evidence::decode(&[1, 2, 3], 1 << 20).is_err());
}

#[test]
fn an_equivocating_voter_is_excluded_from_counting_in_that_instance() {
    let net = net(4); // f = 1: READY on 3 ECHOs, deliver on 3 READYs
    let mut node = net.member(0);
    let instance = net.instance(1, 0);
    let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
    assert!(net.handle(&mut node, 2, Message::Echo { instance, digest: a }).faults.is_empty());
    let step = net.handle(&mut node, 2, Message::Echo { instance, digest: b });
    assert_eq!(step.faults[0].kind, FaultKind::Equivocation);
    assert_eq!(step.evidence.len(), 1);
    // Member 2's READY no longer counts: with member 3's, 2 READYs < f+1... amplification
    // needs f+1 = 2 distinct counted members.
    assert!(kinds(&net.handle(&mut node, 2, Message::Ready { instance, digest: b })).is_empty());
    assert_eq!(kinds(&net.handle(&mut node, 3, Message::Ready { instance, digest: b })), Vec::<Kind>::new());
    assert_eq!(kinds(&net.handle(&mut node, 1, Message::Ready { instance, digest: b })), vec![Kind::BrachaReady]);
}

#[test]
fn never_ready_for_two_digests_and_votes_count_once_per_member() {
    let net = net(4);
    let mut node = net.member(0);
    let instance = net.instance(1, 0);
    let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
    for _ in 0..3 {
        assert!(net.handle(&mut node, 1, Message::Ready { instance, digest: a }).is_empty(), "one member is one vote");
    }
    let step = net.handle(&mut node, 2, Message::Ready { instance, digest: a });
    assert_eq!(kinds(&step), vec![Kind::BrachaReady]);
    assert_eq!(Message::from_envelope(&step.outgoing[0], 0), Ok(Message::Ready { instance, digest: a }));
    // Enough READYs and ECHOs for b never make a second READY.
    for from in 1..4 {
        let step = net.handle(&mut node, from, Message::Echo { instance, digest: b });
        assert!(step.outgoing.is_empty());
    }
    let step = net.handle(&mut node, 3, Message::Ready { instance, digest: b });
    assert!(step.outgoing.is_empty());
}

#[test]
fn ready_quorum_without_the_value_fetches_it_from_echoers() {
    let net = net(4);
    let mut node = net.member(0);
    let instance = net.instance(1, 0);
    let value = b"the value".to_vec();
    let digest = Digest::of(&value);
    let _ = net.handle(&mut node, 3, Message::Echo { instance, digest });
    let _ = net.handle(&mut node, 2, Message::Ready { instance, digest });
    let step = net.handle(&mut node, 3, Message::Ready { instance, digest });
    assert_eq!(kinds(&step), vec![Kind::BrachaReady], "f+1 READYs: amplify");
    assert!(step.delivered.is_empty(), "no value held");
    assert_eq!(step.fetches.len(), 1);
    assert_eq!(step.fetches[0].digest, digest);
    assert_eq!(step.fetches[0].from, vec![3, 2], "echoers first, then readiers");
    // Retries rotate the candidates.
    assert!(node.tick(50).fetches.is_empty());
    let retry = node.tick(100);
    assert_eq!(retry.fetches[0].from, vec![2, 3]);
    // A wrong value is ignored; the right one delivers once.
    assert!(node.supply_value(&instance, b"wrong".to_vec(), 120).is_empty());
    let step = node.supply_value(&instance, value.clone(), 130);
    assert_eq!(step.delivered.len(), 1);
    assert_eq!(step.delivered[0].value, value);
    assert!(node.supply_value(&instance, value, 140).is_empty());
    assert!(node.tick(1_000).fetches.is_empty());
}

/// Runs an all-honest n = 4 instance by hand and returns the members and the delivery.
fn deliver_one(net: &Net) -> (Vec<Bracha>, byzgossip_bracha::Delivery) {
    let mut nodes: Vec<Bracha> = (0..4).map(|i| net.member(i)).collect();
    let mut queue: Vec<(usize, Envelope)> = Vec::new();
    let step = nodes[1].broadcast(b"hello".to_vec(), 0).expect("broadcast");
    let mut delivery = None;
    queue.extend(step.outgoing.into_iter().map(|e| (1, e)));
    while let Some((from, envelope)) = queue.pop() {
        for (to, node) in nodes.iter_mut().enumerate() {
            if to == from {
                continue;
            }
            let step = node.handle(&net.verified(envelope.clone()), 0);
            assert!(step.faults.is_empty());
            if let Some(d) = step.delivered.into_iter().next() {
                delivery = Some(d);
            }
            queue.extend(step.outgoing.into_iter().map(|e| (to, e)));
        }
    }
    (nodes, delivery.expect("delivered"))
}

#[test]
fn certificates_verify_alone_and_bad_ones_are_refused() {
    let net = net(4);
    let (nodes, delivery) = deliver_one(&net);
    let cert = delivery.certificate.clone();
    assert_eq!(cert.readys.len(), 3, "2f+1 READYs");
    assert_eq!(nodes[2].retained(&delivery.instance).map(|r| r.digest), Some(cert.digest));
    assert!(nodes[2].certificate(&delivery.instance).is_some());
    cert.clone().verify(&net.committee, &net.network).expect("valid certificate");
    let bytes = cert.encode();
    assert_eq!(Certificate::decode(&bytes, 1 << 20).as_ref(), Ok(&cert));
    assert!(Certificate::decode(&bytes[..bytes.len() - 1], 1 << 20).is_err());
    assert!(Certificate::decode(&bytes, 100).is_err(), "size limit");

    let verify = |c: Certificate| c.verify(&net.committee, &net.network).map(|_| ());
    let mut few = cert.clone();
    few.readys.pop();
    assert_eq!(verify(few), Err(CertificateError::TooFewReadys { got: 2, needed: 3 }));
    let mut duplicate = cert.clone();
    duplicate.readys[2] = duplicate.readys[0].clone();
    assert_eq!(verify(duplicate), Err(CertificateError::DuplicateSigner { index: 2 }));
    let mut wrong_digest = cert.clone();
    wrong_digest.digest = Digest::of(b"other");
    assert_eq!(verify(wrong_digest), Err(CertificateError::WrongVote { index: 0 }));
    let mut wrong_vote = cert.clone();
    let signer = net.committee.index_of(&wrong_vote.readys[1].origin()).expect("member");
    wrong_vote.readys[1] = net.seal(signer, Message::Ready { instance: cert.instance, digest: Digest::of(b"other") });
    assert_eq!(verify(wrong_vote), Err(CertificateError::WrongVote { index: 1 }));
    let mut forged = cert.clone();
    let (header, body, _) = forged.readys[1].clone().into_parts();
    forged.readys[1] = Envelope::from_parts(header, body, *forged.readys[0].signature()).expect("parts");
    assert_eq!(verify(forged), Err(CertificateError::BadSignature { index: 1 }));
    let mut outsider = cert.clone();
    outsider.readys[0] = Message::Ready { instance: cert.instance, digest: cert.digest }
        .seal(&Keypair::from_secret_bytes(&[99; 32]), net.network, 0)
        .expect("seal");
    assert_eq!(verify(outsider), Err(CertificateError::NotAMember { index: 0 }));
    assert_eq!(cert.clone().verify(&net.committee, &NetworkId([0; 32])).map(|_| ()), Err(CertificateError::BadSignature { index: 0 }));

    // A lagging member delivers on the certificate alone, once.
    let mut lagging = net.member(0);
    let verified = cert.clone().verify(&net.committee, &net.network).expect("valid");
    assert!(lagging.handle_certificate(&verified, b"wrong".to_vec(), 0).expect("in window").delivered.is_empty());
    let mut lagging = net.member(0);
    let step = lagging.handle_certificate(&verified, b"hello".to_vec(), 0).expect("in window");
    assert_eq!(step.delivered.len(), 1);
    assert_eq!(step.delivered[0].digest, cert.digest);
    assert!(lagging.handle_certificate(&verified, b"hello".to_vec(), 0).expect("done").is_empty());
    assert_eq!(lagging.value(&cert.instance, &cert.digest), Some(&b"hello"[..]));
    assert_eq!(lagging.delivered_since(&cert.instance.origin, 0).count(), 1);
}

#[test]
fn handle_certificate_beyond_the_window_is_local_misuse() {
    let net = net(4);
    let instance = net.instance(1, 10);
    let digest = Digest::of(b"far");
    let readys = (1..4).map(|from| net.seal(from, Message::Ready { instance, digest })).collect();
    let cert = Certificate { instance, digest, readys }.verify(&net.committee, &net.network).expect("valid");
    let mut node = net.member(0);
    assert_eq!(node.window(&instance.origin), Some(0..4));
    assert_eq!(
        node.handle_certificate(&cert, b"far".to_vec(), 0).err(),
        Some(Error::OutsideWindow { seq: 10, low: 0, end: 4 })
    );
    // Votes beyond the window are weak faults and stored nowhere.
    let step = net.handle(&mut node, 1, Message::Send { instance, value: b"far".to_vec() });
    assert_eq!(step.faults[0].kind, FaultKind::BeyondWindow { seq: 10, window_end: 4 });
    assert!(!step.faults[0].kind.is_provable());
    assert_eq!(node.open_instances().count(), 0, "nothing stored");
    // Once the window reaches it, the certificate delivers.
    node.set_low_watermark(&instance.origin, 8).expect("member");
    assert_eq!(node.handle_certificate(&cert, b"far".to_vec(), 0).expect("in window").delivered.len(), 1);
}

#[test]
fn restored_own_votes_stop_a_restarted_member_from_voting_differently() {
    let net = net(4);
    let instance = net.instance(1, 0);
    let mut before = net.member(0);
    let step = net.handle(&mut before, 1, Message::Send { instance, value: b"first".to_vec() });
    let own_echo = step.outgoing[0].clone();

    let mut after = net.member(0);
    assert!(after.restore_own_vote(&own_echo, 0).expect("own").is_empty());
    // The equivocating origin shows this member another value first this time.
    let step = net.handle(&mut after, 1, Message::Send { instance, value: b"second".to_vec() });
    assert!(step.outgoing.is_empty(), "already echoed before the restart");
    // Not an own message.
    let other = net.seal(2, Message::Echo { instance, digest: Digest::of(b"x") });
    assert!(matches!(after.restore_own_vote(&other, 0), Err(Error::NotOwnMessage(_))));
}

#[test]
fn windows_broadcast_errors_retention_and_low_watermarks() {
    let net = net(4);
    let mut node = net.member(0);
    let me = net.keys[0].public();
    assert!(matches!(node.broadcast(vec![0; 64 * 1024 + 1], 0), Err(Error::ValueTooLarge { .. })));
    for seq in 0..4 {
        assert_eq!(node.next_seq(), seq);
        let _ = node.broadcast(vec![seq as u8], 0).expect("in window");
    }
    assert_eq!(node.broadcast(vec![9], 0).err(), Some(Error::OutsideWindow { seq: 4, low: 0, end: 4 }));
    assert_eq!(node.broadcast_at(2, vec![9], 0).err(), Some(Error::SeqUsed(2)));
    assert_eq!(node.open_instances().count(), 4);
    // The node skips ahead (e.g. restored cursor): instances below are dropped.
    node.set_low_watermark(&me, 3).expect("member");
    assert_eq!(node.open_instances().count(), 1);
    assert_eq!(node.low_watermark(&me), Some(3));
    let _ = node.broadcast_at(6, vec![6], 0).expect("in window [3, 7)");
    assert_eq!(node.next_seq(), 7);
    // Messages below the window are ignored, not faults.
    let old = net.handle(&mut node, 2, Message::Echo { instance: InstanceId { origin: me, seq: 1 }, digest: Digest::of(b"x") });
    assert!(old.is_empty());
    assert!(node.set_low_watermark(&Keypair::from_secret_bytes(&[98; 32]).public(), 1).is_err());
    let outsider = Keypair::from_secret_bytes(&[99; 32]);
    assert!(matches!(
        Bracha::new(net.committee.clone(), outsider, net.network, Config::default()),
        Err(Error::NotAMember(_))
    ));
}

#[test]
fn delivered_instances_are_retained_then_collected() {
    let net = Net { config: Config { window: 8, ..net(1).config }, ..net(1) };
    let mut node = net.member(0);
    let me = net.keys[0].public();
    for seq in 0..5u64 {
        let step = node.broadcast(vec![seq as u8], seq * 100).expect("broadcast");
        assert_eq!(step.delivered.len(), 1, "n = 1 delivers at once");
    }
    // max_retained_per_origin = 3: the oldest were dropped early.
    assert_eq!(node.delivered_since(&me, 0).map(|(i, _)| i.seq).collect::<Vec<_>>(), vec![2, 3, 4]);
    assert_eq!(node.low_watermark(&me), Some(5));
    // Retention (1000 ms) ends for seq 2 (delivered at 200) at 1200.
    let _ = node.tick(1_250);
    assert_eq!(node.delivered_since(&me, 0).map(|(i, _)| i.seq).collect::<Vec<_>>(), vec![3, 4]);
    let _ = node.tick(10_000);
    assert_eq!(node.stats().retained_instances, 0);
    assert!(node.certificate(&InstanceId { origin: me, seq: 4 }).is_none());
}

#[test]
fn malformed_and_foreign_messages_are_faults_of_their_signer() {
    let net = net(4);
    let mut node = net.member(0);
    // A SEND for someone else's instance.
    let step = net.handle(&mut node, 2, Message::Send { instance: net.instance(1, 0), value: b"x".to_vec() });
    assert_eq!(step.faults[0].kind, FaultKind::Malformed(MessageError::SendNotFromOrigin));
    assert_eq!(step.faults[0].member, net.keys[2].public());
    // Garbage in a Bracha envelope.
    let garbage = Envelope::seal(&net.keys[2], net.network, Kind::BrachaEcho, 0, 0, vec![1, 2]).expect("seal");
    let step = node.handle(&net.verified(garbage), 0);
    assert_eq!(step.faults[0].kind, FaultKind::Malformed(MessageError::Undecodable));
    // A non-member signer, and an instance of a non-member origin.
    let outsider = Keypair::from_secret_bytes(&[99; 32]);
    let e = Message::Echo { instance: net.instance(1, 0), digest: Digest::of(b"x") }.seal(&outsider, net.network, 0).expect("seal");
    assert_eq!(node.handle(&net.verified(e), 0).faults[0].kind, FaultKind::NotAMember);
    let foreign = InstanceId { origin: outsider.public(), seq: 0 };
    let step = net.handle(&mut node, 2, Message::Echo { instance: foreign, digest: Digest::of(b"x") });
    assert_eq!(step.faults[0].kind, FaultKind::UnknownOrigin);
    // Other kinds are not Bracha's business.
    let gossip = Envelope::seal(&net.keys[2], net.network, Kind::Gossip, 0, 0, vec![1]).expect("seal");
    assert!(node.handle(&net.verified(gossip), 0).is_empty());
}

#[test]
fn a_message_of_another_network_is_refused_as_a_fault_and_never_counted() {
    let net = net(4);
    let mut node = net.member(0);
    let other = NetworkId([6; 32]);
    // A valid SEND by the instance's own origin, signed for another network.
    let send = Message::Send { instance: net.instance(1, 0), value: b"x".to_vec() }.seal(&net.keys[1], other, 0).expect("seal");
    let step = node.handle(&send.verify(&other).expect("valid there"), 0);
    assert_eq!(step.faults.len(), 1);
    assert_eq!(step.faults[0].kind, FaultKind::WrongNetwork);
    assert!(!step.faults[0].kind.is_provable(), "the signer is not to blame for where it was carried");
    assert!(step.outgoing.is_empty(), "no ECHO for another network's SEND");
    // The same instance on our network is still open: its SEND is echoed.
    let step = net.handle(&mut node, 1, Message::Send { instance: net.instance(1, 0), value: b"y".to_vec() });
    assert_eq!(kinds(&step), vec![Kind::BrachaEcho]);
}
