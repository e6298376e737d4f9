//! The READY and deliver thresholds (DESIGN.md section 5), as a table over every committee
//! size from 1 to 128, both as numbers and as behaviour of the state machine.

use byzgossip_bracha::message::sim_frame_unsigned;
use byzgossip_bracha::{Bracha, Config, Error, InstanceId, Message, Thresholds};
use byzgossip_crypto::{Committee, Digest, Keypair, Kind, NetworkId};

#[test]
fn design_table_for_small_committees() {
    for (n, ready_on_echo) in [(4, 3), (5, 4), (6, 4), (7, 5), (8, 6)] {
        let t = Thresholds::new(n, (n - 1) / 3).expect("valid");
        assert_eq!(t.ready_on_echo, ready_on_echo, "n = {n}");
    }
}

#[test]
fn thresholds_for_every_n_up_to_128_and_refusal_of_n_below_3f_plus_1() {
    for n in 1..=128usize {
        for f in 0..=n / 3 + 1 {
            let result = Thresholds::new(n, f);
            if n < 3 * f + 1 {
                assert_eq!(result, Err(Error::TooManyFaults { n, f }), "n = {n}, f = {f}");
                continue;
            }
            let t = result.expect("valid");
            assert_eq!((t.ready_on_echo, t.ready_on_ready, t.deliver), ((n + f) / 2 + 1, f + 1, 2 * f + 1));
            // Safety: two ECHO quorums share more than f members, so an honest one.
            assert!(2 * t.ready_on_echo > n + f, "n = {n}, f = {f}");
            // Liveness: the honest members alone reach every threshold.
            assert!(t.ready_on_echo <= n - f && t.deliver <= n - f, "n = {n}, f = {f}");
            // Amplification and totality: f+1 READYs include an honest one; 2f+1 include f+1.
            assert!(t.ready_on_ready > f && t.deliver - f > f, "n = {n}, f = {f}");
        }
    }
    assert!(matches!(Thresholds::new(0, 0), Err(Error::CommitteeSize { .. })));
}

struct Net {
    keys: Vec<Keypair>,
    committee: Committee,
    network: NetworkId,
}

fn net(n: usize) -> Net {
    let keys: Vec<Keypair> = (0..n).map(|i| Keypair::from_secret_bytes(&[i as u8 + 1; 32])).collect();
    let committee = Committee::new(keys.iter().map(Keypair::public).collect(), (n - 1) / 3).expect("committee");
    Net { keys, committee, network: NetworkId([42; 32]) }
}

fn member(net: &Net, index: usize) -> Bracha {
    let mut node = Bracha::new(net.committee.clone(), net.keys[index].clone(), net.network, Config::default()).expect("node");
    node.sim_set_unsigned(true);
    node
}

fn own_kinds(step: &byzgossip_bracha::Step) -> Vec<Kind> {
    step.outgoing.iter().map(|e| e.header().kind).collect()
}

/// The machine sends READY exactly at `floor((n+f)/2)+1` distinct ECHOs, and exactly at
/// f+1 distinct READYs; it delivers exactly at 2f+1 distinct READYs (its own included).
#[test]
fn the_machine_readies_and_delivers_exactly_at_the_thresholds_for_every_n_up_to_128() {
    for n in 1..=128usize {
        let net = net(n);
        let t = Thresholds::new(n, (n - 1) / 3).expect("valid");
        let value = b"value".to_vec();
        let digest = Digest::of(&value);
        if n == 1 {
            let mut node = member(&net, 0);
            let step = node.broadcast(value, 0).expect("broadcast");
            assert_eq!(own_kinds(&step), vec![Kind::BrachaSend, Kind::BrachaEcho, Kind::BrachaReady]);
            assert_eq!(step.delivered.len(), 1);
            continue;
        }
        let origin = net.keys[1].public();
        let instance = InstanceId { origin, seq: 0 };
        let frame = |from: usize, message: Message| sim_frame_unsigned(net.network, net.keys[from].public(), &message, 0);

        // READY on echoes: ECHOs from members 1, 2, ... (none from this member).
        let mut node = member(&net, 0);
        let mut readied_at = None;
        for (count, from) in (1..n).enumerate() {
            let step = node.handle_unverified(&frame(from, Message::Echo { instance, digest }), 0);
            // A repeated ECHO never counts twice.
            let again = node.handle_unverified(&frame(from, Message::Echo { instance, digest }), 1);
            assert!(again.is_empty(), "n = {n}");
            if own_kinds(&step).contains(&Kind::BrachaReady) {
                readied_at = Some(count + 1);
                break;
            }
        }
        if t.ready_on_echo < n {
            assert_eq!(readied_at, Some(t.ready_on_echo), "READY-on-echo threshold, n = {n}");
        }

        // READY on READYs, then deliver: the SEND first (own ECHO counts 1, below every
        // echo threshold for n >= 2), then READYs from members 2, 3, ...
        let mut node = member(&net, 0);
        let step = node.handle_unverified(&frame(1, Message::Send { instance, value: value.clone() }), 0);
        assert_eq!(own_kinds(&step), vec![Kind::BrachaEcho], "n = {n}");
        let (mut readied_at, mut delivered_at) = (None, None);
        for (count, from) in (1..n).enumerate() {
            let step = node.handle_unverified(&frame(from, Message::Ready { instance, digest }), 0);
            if own_kinds(&step).contains(&Kind::BrachaReady) {
                assert!(readied_at.is_none(), "READY twice, n = {n}");
                readied_at = Some(count + 1);
            }
            if !step.delivered.is_empty() {
                delivered_at = Some(count + 1);
                break;
            }
        }
        assert_eq!(readied_at, Some(t.ready_on_ready), "READY-on-READY threshold, n = {n}");
        // Own READY counts: 2f+1 in total means max(f+1, 2f) from others.
        assert_eq!(delivered_at, Some(t.ready_on_ready.max(t.deliver - 1)), "deliver threshold, n = {n}");
    }
}
