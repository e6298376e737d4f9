//! One suite run against both stores, crash tests for [`RedbStore`], and a model-based
//! proptest checking that the two stores answer every operation sequence identically.

use super::*;
use byzgossip_crypto::Digest;
use proptest::prelude::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn key(n: u8) -> PublicKey {
    PublicKey([n; 32])
}

fn delivery(origin: u8, seq: u64, at_ms: u64) -> StoredDelivery {
    let value = format!("value {origin}/{seq}").into_bytes();
    StoredDelivery {
        origin: key(origin),
        seq,
        digest: Digest::of(&value),
        value,
        certificate: vec![origin; 3],
        delivered_at_ms: at_ms,
    }
}

/// Runs `check` against a fresh [`MemoryStore`] and a fresh [`RedbStore`] in a tempdir.
fn each_store(check: fn(&dyn Store)) {
    eprintln!("store: memory");
    check(&MemoryStore::new());
    eprintln!("store: redb");
    let dir = tempfile::tempdir().expect("tempdir");
    check(&RedbStore::open(dir.path()).expect("open"));
}

// ---- The generic suite ----

fn check_a_batch_commits_like_its_items_and_recovers(store: &dyn Store) {
    let own = |seq, body: &[u8]| OwnMessage { instance_origin: key(1), seq, kind: Kind::BrachaEcho, envelope: body.to_vec() };
    let batch = Batch {
        id: 1,
        next_seq: vec![(SeqStream::Broadcast, 3), (SeqStream::Gossip, 1)],
        own: vec![own(0, b"first"), own(0, b"second"), own(1, b"other")],
        deliveries: vec![delivery(1, 0, 10), delivery(1, 0, 10), delivery(2, 5, 11)],
        ..Batch::default()
    };
    let committed = store.commit(&batch).expect("commit");
    assert_eq!(committed.own, vec![None, Some(b"first".to_vec()), None], "the first own message of a slot wins");
    assert_eq!(committed.deliveries, vec![Appended::New(1), Appended::Existing(1), Appended::New(2)]);
    // Seq counters only rise.
    store.commit(&Batch { id: 2, next_seq: vec![(SeqStream::Broadcast, 1)], ..Batch::default() }).expect("commit");
    let recovered = recover(store).expect("recover");
    assert_eq!((recovered.next_broadcast_seq, recovered.next_gossip_seq, recovered.last_cursor), (3, 1, 2));
    assert_eq!(recovered.own.len(), 2);
    assert_eq!(recovered.watermarks.iter().find(|w| w.origin == key(1)).map(|w| w.low), Some(1));
}

#[test]
fn a_batch_commits_like_its_items_and_recovers() {
    each_store(check_a_batch_commits_like_its_items_and_recovers);
}

fn check_bans_exclusions_and_gossip_ids_are_kept_within_their_bounds(store: &dyn Store) {
    let ban = |peer: u8, bans, until_ms| StoredBan { peer: key(peer), bans, until_ms };
    let gossip = |id: u8, expires_at_ms| StoredGossipId { id: [id; 32], origin: key(9), expires_at_ms };
    store
        .commit(&Batch {
            id: 1,
            bans: vec![ban(1, 1, 100), ban(2, 1, 200)],
            exclusions: vec![StoredExclusion { member: key(3), evidence: b"proof".to_vec() }],
            gossip: vec![gossip(1, 1_000), gossip(2, 2_000), gossip(3, 3_000)],
            ..Batch::default()
        })
        .expect("commit");
    // A repeat ban replaces the peer's row; a second proof against a member keeps the first;
    // ids expired before 2_000 are forgotten.
    store
        .commit(&Batch {
            id: 2,
            bans: vec![ban(1, 2, 500)],
            exclusions: vec![StoredExclusion { member: key(3), evidence: b"other".to_vec() }],
            forget_gossip_before_ms: Some(2_000),
            ..Batch::default()
        })
        .expect("commit");
    let r = recover(store).expect("recover");
    assert_eq!(r.bans, vec![ban(1, 2, 500), ban(2, 1, 200)]);
    assert_eq!(r.exclusions, vec![StoredExclusion { member: key(3), evidence: b"proof".to_vec() }]);
    assert_eq!(r.gossip, vec![gossip(2, 2_000), gossip(3, 3_000)]);
    // Evidence is size-checked like every other record.
    let huge = Batch { id: 3, exclusions: vec![StoredExclusion { member: key(4), evidence: vec![0; MAX_EVIDENCE_LEN + 1] }], ..Batch::default() };
    assert!(matches!(store.commit(&huge), Err(StoreError::TooLarge { what: "evidence", .. })));
    // The ban table is bounded: a new peer past the cap replaces the row whose ban ended first.
    let many: Vec<StoredBan> = (0..MAX_STORED_BANS as u32).map(|i| StoredBan { peer: PublicKey({
        let mut b = [0xAA; 32];
        b[..4].copy_from_slice(&i.to_be_bytes());
        b
    }), bans: 1, until_ms: 1_000 + u64::from(i) }).collect();
    store.commit(&Batch { id: 4, bans: many, ..Batch::default() }).expect("commit");
    let r = recover(store).expect("recover");
    assert_eq!(r.bans.len(), MAX_STORED_BANS);
    assert!(!r.bans.iter().any(|b| b.peer == key(2)), "the two earliest-ended rows made room");
    assert!(!r.bans.iter().any(|b| b.peer == key(1)));
}

#[test]
fn bans_exclusions_and_gossip_ids_are_kept_within_their_bounds() {
    each_store(check_bans_exclusions_and_gossip_ids_are_kept_within_their_bounds);
}

/// Kept gossip mirrors the engine's recent-gossip buffer: rows are written, then the batch's
/// forgets remove them (one written and evicted in the same batch is gone after it), and an
/// envelope over the envelope limit is refused.
fn check_kept_gossip_is_written_then_forgotten(store: &dyn Store) {
    let row = |origin: u8, seq: u64| KeptGossip { origin: key(origin), seq, timestamp_ms: 1_000 + seq, envelope: vec![origin; 40] };
    store.commit(&Batch { id: 1, kept_gossip: vec![row(1, 0), row(1, 1), row(2, 0)], ..Batch::default() }).expect("commit");
    store
        .commit(&Batch { id: 2, kept_gossip: vec![row(2, 1)], forget_kept_gossip: vec![(key(1), 0), (key(2), 1)], ..Batch::default() })
        .expect("commit");
    let r = recover(store).expect("recover");
    assert_eq!(r.kept_gossip, vec![row(1, 1), row(2, 0)]);
    let huge = KeptGossip { envelope: vec![0; MAX_ENVELOPE_LEN + 1], ..row(3, 0) };
    let refused = store.commit(&Batch { id: 3, kept_gossip: vec![huge], ..Batch::default() });
    assert!(matches!(refused, Err(StoreError::TooLarge { what: "kept gossip envelope", .. })), "{refused:?}");
}

#[test]
fn kept_gossip_is_written_then_forgotten() {
    each_store(check_kept_gossip_is_written_then_forgotten);
}

#[test]
fn redb_store_keeps_bans_exclusions_and_gossip_ids_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let batch = Batch {
        id: 1,
        bans: vec![StoredBan { peer: key(1), bans: 3, until_ms: 77 }],
        exclusions: vec![StoredExclusion { member: key(2), evidence: b"proof".to_vec() }],
        gossip: vec![StoredGossipId { id: [5; 32], origin: key(3), expires_at_ms: 99 }],
        kept_gossip: vec![KeptGossip { origin: key(3), seq: 7, timestamp_ms: 98, envelope: b"envelope".to_vec() }],
        ..Batch::default()
    };
    let before = {
        let store = RedbStore::open(dir.path()).expect("open");
        store.commit(&batch).expect("commit");
        recover(&store).expect("recover")
    };
    let store = RedbStore::open(dir.path()).expect("reopen");
    let after = recover(&store).expect("recover");
    assert_eq!((after.bans.len(), after.exclusions.len(), after.gossip.len(), after.kept_gossip.len()), (1, 1, 1, 1));
    assert_eq!(before, after);
}

fn check_seqs_are_dense_per_stream(store: &dyn Store) {
    assert_eq!(store.peek_seq(SeqStream::Broadcast).expect("peek"), FIRST_SEQ);
    assert_eq!(store.reserve_seq(SeqStream::Broadcast).expect("seq"), FIRST_SEQ);
    assert_eq!(store.peek_seq(SeqStream::Broadcast).expect("peek"), FIRST_SEQ + 1);
    assert_eq!(store.peek_seq(SeqStream::Broadcast).expect("peek"), FIRST_SEQ + 1, "peeking reserves nothing");
    assert_eq!(store.reserve_seq(SeqStream::Broadcast).expect("seq"), FIRST_SEQ + 1);
    assert_eq!(store.reserve_seq(SeqStream::Gossip).expect("seq"), FIRST_SEQ);
    assert_eq!(store.reserve_seq(SeqStream::Broadcast).expect("seq"), FIRST_SEQ + 2);
    assert_eq!(store.reserve_seq(SeqStream::Gossip).expect("seq"), FIRST_SEQ + 1);
}

#[test]
fn seqs_are_dense_per_stream_and_never_repeat() {
    each_store(check_seqs_are_dense_per_stream);
}

fn check_first_own_message_wins(store: &dyn Store) {
    let a = key(1);
    assert_eq!(store.own_message(a, 7, Kind::BrachaEcho).expect("get"), None);
    assert_eq!(store.record_own_message(a, 7, Kind::BrachaEcho, b"echo d1").expect("record"), None);
    // A conflicting second vote is not stored; the first comes back so the caller can refuse.
    assert_eq!(store.record_own_message(a, 7, Kind::BrachaEcho, b"echo d2").expect("record"), Some(b"echo d1".to_vec()));
    // Re-recording the same bytes is harmless.
    assert_eq!(store.record_own_message(a, 7, Kind::BrachaEcho, b"echo d1").expect("record"), Some(b"echo d1".to_vec()));
    assert_eq!(store.own_message(a, 7, Kind::BrachaEcho).expect("get"), Some(b"echo d1".to_vec()));
    // Other kinds, seqs and origins are other keys.
    assert_eq!(store.record_own_message(a, 7, Kind::BrachaReady, b"ready").expect("record"), None);
    assert_eq!(store.record_own_message(a, 6, Kind::BrachaEcho, b"echo 6").expect("record"), None);
    assert_eq!(store.record_own_message(key(0), 9, Kind::BrachaSend, b"send").expect("record"), None);
    let all = store.own_messages().expect("all");
    let keys: Vec<_> = all.iter().map(|m| (m.instance_origin, m.seq, m.kind)).collect();
    assert_eq!(
        keys,
        vec![
            (key(0), 9, Kind::BrachaSend),
            (a, 6, Kind::BrachaEcho),
            (a, 7, Kind::BrachaEcho),
            (a, 7, Kind::BrachaReady)
        ]
    );
    assert_eq!(all[2].envelope, b"echo d1");
}

#[test]
fn own_messages_first_wins_and_replay_in_order() {
    each_store(check_first_own_message_wins);
}

fn check_prune_own_messages(store: &dyn Store) {
    for seq in 0..4 {
        store.record_own_message(key(1), seq, Kind::BrachaEcho, b"e").expect("record");
        store.record_own_message(key(1), seq, Kind::BrachaReady, b"r").expect("record");
        store.record_own_message(key(2), seq, Kind::BrachaEcho, b"e").expect("record");
    }
    assert_eq!(store.prune_own_messages(key(1), 2).expect("prune"), 4);
    assert_eq!(store.prune_own_messages(key(1), 2).expect("prune"), 0);
    let left: Vec<_> = store.own_messages().expect("all").iter().map(|m| (m.instance_origin, m.seq)).collect();
    assert_eq!(
        left,
        vec![(key(1), 2), (key(1), 2), (key(1), 3), (key(1), 3), (key(2), 0), (key(2), 1), (key(2), 2), (key(2), 3)]
    );
    assert_eq!(store.prune_own_messages(key(2), u64::MAX).expect("prune"), 4);
}

#[test]
fn own_messages_prune_by_instance_origin_and_seq() {
    each_store(check_prune_own_messages);
}

fn check_append_is_idempotent(store: &dyn Store) {
    assert_eq!(store.last_cursor().expect("last"), 0);
    let d1 = delivery(1, 0, 100);
    let d2 = delivery(2, 0, 100);
    assert_eq!(store.insert_delivery(&d1).expect("append"), Appended::New(1));
    assert_eq!(store.append_delivery(&d2).expect("append"), 2);
    // Same (origin, seq) again, even with other content: nothing stored, no double delivery.
    let mut other = d1.clone();
    other.value = b"other".to_vec();
    assert_eq!(store.insert_delivery(&other).expect("append"), Appended::Existing(1));
    assert_eq!(store.append_delivery(&d1).expect("append"), 1);
    assert_eq!(store.last_cursor().expect("last"), 2);
    assert_eq!(store.deliveries_from(0, 10).expect("from"), vec![(1, d1.clone()), (2, d2.clone())]);
    assert_eq!(store.deliveries_from(2, 10).expect("from"), vec![(2, d2.clone())]);
    assert_eq!(store.deliveries_from(3, 10).expect("from"), vec![]);
    assert_eq!(store.deliveries_from(1, 1).expect("from"), vec![(1, d1.clone())]);
    assert_eq!(store.delivery(key(1), 0).expect("get"), Some((1, d1)));
    assert_eq!(store.delivery(key(1), 1).expect("get"), None);
    assert_eq!(store.delivery(key(3), 0).expect("get"), None);
}

#[test]
fn deliveries_are_appended_once_under_dense_cursors() {
    each_store(check_append_is_idempotent);
}

fn check_page_cap(store: &dyn Store) {
    for seq in 0..=MAX_DELIVERIES_PAGE as u64 {
        store.append_delivery(&delivery(1, seq, 5)).expect("append");
    }
    let page = store.deliveries_from(1, usize::MAX).expect("from");
    assert_eq!(page.len(), MAX_DELIVERIES_PAGE);
    assert_eq!(page.last().map(|(c, _)| *c), Some(MAX_DELIVERIES_PAGE as u64));
    let rest = store.deliveries_from(MAX_DELIVERIES_PAGE as u64 + 1, usize::MAX).expect("from");
    assert_eq!(rest.len(), 1);
}

#[test]
fn deliveries_from_is_capped_at_max_deliveries_page() {
    each_store(check_page_cap);
}

fn check_watermarks(store: &dyn Store) {
    assert_eq!(store.high_watermarks().expect("marks"), vec![]);
    for seq in [0, 2, 1, 5] {
        store.append_delivery(&delivery(1, seq, 5)).expect("append");
    }
    store.append_delivery(&delivery(2, 4, 5)).expect("append");
    store.append_delivery(&delivery(2, 4, 5)).expect("duplicate");
    assert_eq!(
        store.high_watermarks().expect("marks"),
        vec![
            Watermark { origin: key(1), low: 3, high: 5, count: 4 },
            Watermark { origin: key(2), low: 0, high: 4, count: 1 }
        ]
    );
}

#[test]
fn watermarks_summarize_each_origin() {
    each_store(check_watermarks);
}

fn check_prune_deliveries(store: &dyn Store) {
    // Origin 1: seqs 0 and 2 delivered early, 3 late; origin 2: seq 0 late.
    let early0 = delivery(1, 0, 10);
    let early2 = delivery(1, 2, 20);
    let late3 = delivery(1, 3, 30);
    let late_b = delivery(2, 0, 30);
    for d in [&early0, &early2, &late3, &late_b] {
        store.append_delivery(d).expect("append");
        store.record_own_message(d.origin, d.seq, Kind::BrachaEcho, b"echo").expect("own");
        store.record_own_message(d.origin, d.seq, Kind::BrachaReady, b"ready").expect("own");
    }
    store.record_own_message(key(1), 1, Kind::BrachaEcho, b"undelivered").expect("own");
    let marks = store.high_watermarks().expect("marks");
    store.set_app_cursor("app", 4).expect("app");

    assert_eq!(store.prune_deliveries(10, usize::MAX).expect("prune"), 0, "strictly before");
    assert_eq!(store.prune_deliveries(25, usize::MAX).expect("prune"), 2);
    assert_eq!(store.prune_deliveries(25, usize::MAX).expect("prune"), 0);
    assert_eq!(store.delivery(key(1), 0).expect("get"), None);
    assert_eq!(store.delivery(key(1), 2).expect("get"), None);
    assert_eq!(store.delivery(key(1), 3).expect("get"), Some((3, late3.clone())));
    assert_eq!(store.deliveries_from(0, 10).expect("from"), vec![(3, late3), (4, late_b)]);
    // Own messages of pruned instances go; others stay.
    let own: Vec<_> = store.own_messages().expect("own").iter().map(|m| (m.instance_origin, m.seq)).collect();
    assert_eq!(own, vec![(key(1), 1), (key(1), 3), (key(1), 3), (key(2), 0), (key(2), 0)]);
    // Pruned still counts as delivered: cursors and watermarks stay, no re-delivery.
    assert_eq!(store.last_cursor().expect("last"), 4);
    assert_eq!(store.high_watermarks().expect("marks"), marks);
    assert_eq!(store.insert_delivery(&early0).expect("again"), Appended::Pruned, "below low");
    assert_eq!(store.append_delivery(&early0).expect("again"), 0);
    assert_eq!(store.insert_delivery(&early2).expect("again"), Appended::Existing(2), "above low");
    // Delivering seq 1 moves low past the pruned seq 2 (forgetting its cursor) and seq 3.
    assert_eq!(store.insert_delivery(&delivery(1, 1, 40)).expect("append"), Appended::New(5));
    assert_eq!(store.insert_delivery(&early2).expect("again"), Appended::Pruned);
    assert_eq!(store.high_watermarks().expect("marks")[0], Watermark { origin: key(1), low: 4, high: 3, count: 4 });
    assert_eq!(store.app_cursor("app").expect("app"), 4);
    assert_eq!(store.prune_deliveries(u64::MAX, usize::MAX).expect("prune"), 3);
    assert_eq!(store.deliveries_from(0, 10).expect("from"), vec![]);
    assert_eq!(store.last_cursor().expect("last"), 5);
    assert_eq!(store.append_delivery(&delivery(3, 0, 50)).expect("append"), 6, "pruned cursors stay unused");
}

#[test]
fn prune_keeps_deliveries_delivered() {
    each_store(check_prune_deliveries);
}

/// A batch prunes at most MAX_PRUNED_PER_BATCH deliveries, oldest first, with the own
/// messages of their instances, so a restart reads only what the retention keeps.
fn check_a_batch_prunes_a_bounded_page(store: &dyn Store) {
    let total = MAX_PRUNED_PER_BATCH + 10;
    let own = (0..total as u64).map(|seq| OwnMessage { instance_origin: key(1), seq, kind: Kind::BrachaEcho, envelope: vec![1] }).collect();
    let deliveries = (0..total as u64).map(|seq| delivery(1, seq, seq)).collect();
    store.commit(&Batch { id: 1, own, deliveries, ..Batch::default() }).expect("commit");
    let prune = |id, before_ms| store.commit(&Batch { id, prune_before_ms: Some(before_ms), ..Batch::default() }).expect("prune").pruned;
    assert_eq!(prune(2, u64::MAX), MAX_PRUNED_PER_BATCH);
    // The oldest went first: the 10 newest are kept, with their own messages.
    let kept: Vec<u64> = store.deliveries_from(0, usize::MAX).expect("read").iter().map(|(_, d)| d.seq).collect();
    assert_eq!(kept, (MAX_PRUNED_PER_BATCH as u64..total as u64).collect::<Vec<_>>());
    assert_eq!(recover(store).expect("recover").own.len(), 10);
    assert_eq!(prune(3, total as u64 - 5), 5, "only those delivered before the time");
    assert_eq!(prune(4, u64::MAX), 5);
    assert_eq!(prune(5, u64::MAX), 0);
    let recovered = recover(store).expect("recover");
    assert!(recovered.own.is_empty());
    assert_eq!(recovered.last_cursor, total as u64, "pruning never lowers the cursor");
}

#[test]
fn a_batch_prunes_a_bounded_page() {
    each_store(check_a_batch_prunes_a_bounded_page);
}

fn check_app_cursor(store: &dyn Store) {
    assert_eq!(store.app_cursor("app").expect("get"), 0);
    assert!(matches!(store.set_app_cursor("app", 1), Err(StoreError::CursorAhead { cursor: 1, last: 0 })));
    store.set_app_cursor("app", 0).expect("zero is fine");
    store.append_delivery(&delivery(1, 0, 1)).expect("append");
    store.append_delivery(&delivery(1, 1, 1)).expect("append");
    store.set_app_cursor("app", 2).expect("set");
    store.set_app_cursor("other", 1).expect("set");
    assert_eq!(store.app_cursor("app").expect("get"), 2);
    assert_eq!(store.app_cursor("other").expect("get"), 1);
    let longest = "n".repeat(MAX_APP_CURSOR_NAME_LEN);
    store.set_app_cursor(&longest, 2).expect("at the limit");
    assert_eq!(store.app_cursor(&longest).expect("get"), 2);
    let too_long = "n".repeat(MAX_APP_CURSOR_NAME_LEN + 1);
    assert!(matches!(store.set_app_cursor(&too_long, 1), Err(StoreError::TooLarge { .. })));
}

#[test]
fn app_cursor_defaults_to_zero_and_never_passes_the_log() {
    each_store(check_app_cursor);
}

fn check_size_bounds(store: &dyn Store) {
    let mut d = delivery(1, 0, 1);
    d.value = vec![7; MAX_VALUE_LEN + 1];
    assert!(matches!(store.insert_delivery(&d), Err(StoreError::TooLarge { what: "value", .. })));
    d.value = vec![7; MAX_VALUE_LEN];
    d.certificate = vec![8; MAX_CERTIFICATE_LEN + 1];
    assert!(matches!(store.insert_delivery(&d), Err(StoreError::TooLarge { what: "certificate", .. })));
    assert_eq!(store.last_cursor().expect("last"), 0, "refused appends take no cursor");
    d.certificate = vec![8; MAX_CERTIFICATE_LEN];
    assert_eq!(store.insert_delivery(&d).expect("at the limits"), Appended::New(1));
    assert_eq!(store.delivery(key(1), 0).expect("get"), Some((1, d)));
    let big = vec![1; MAX_OWN_MESSAGE_LEN + 1];
    assert!(matches!(store.record_own_message(key(1), 0, Kind::BrachaEcho, &big), Err(StoreError::TooLarge { .. })));
    assert_eq!(store.record_own_message(key(1), 0, Kind::BrachaEcho, &big[1..]).expect("at the limit"), None);
}

#[test]
fn size_bounds_are_enforced() {
    each_store(check_size_bounds);
}

// ---- Counter exhaustion (needs each store's internals) ----

fn check_exhausted_counters(store: &dyn Store) {
    assert_eq!(store.reserve_seq(SeqStream::Gossip).expect("last seq"), u64::MAX - 1);
    assert!(matches!(store.reserve_seq(SeqStream::Gossip), Err(StoreError::Exhausted(_))));
    assert!(matches!(store.reserve_seq(SeqStream::Gossip), Err(StoreError::Exhausted(_))));
    assert_eq!(store.reserve_seq(SeqStream::Broadcast).expect("other stream"), FIRST_SEQ);
}

#[test]
fn seq_counter_refuses_to_wrap() {
    let memory = MemoryStore::new();
    memory.lock().expect("lock").next_seq.insert(SeqStream::Gossip, u64::MAX - 1);
    check_exhausted_counters(&memory);

    let dir = tempfile::tempdir().expect("tempdir");
    let redb = RedbStore::open(dir.path()).expect("open");
    let txn = redb.db.begin_write().expect("txn");
    txn.open_table(redb_store::META).expect("meta").insert("next_seq/gossip", u64::MAX - 1).expect("insert");
    txn.commit().expect("commit");
    check_exhausted_counters(&redb);
}

// ---- RedbStore across restarts and crashes ----

fn fill(store: &dyn Store) -> (Vec<u64>, Vec<StoredDelivery>) {
    let seqs: Vec<u64> = (0..3).map(|_| store.reserve_seq(SeqStream::Broadcast).expect("seq")).collect();
    store.reserve_seq(SeqStream::Gossip).expect("seq");
    store.record_own_message(key(1), 0, Kind::BrachaSend, b"first send").expect("own");
    store.record_own_message(key(2), 4, Kind::BrachaReady, b"first ready").expect("own");
    let deliveries = vec![delivery(1, 0, 10), delivery(2, 4, 20)];
    for d in &deliveries {
        store.append_delivery(d).expect("append");
    }
    store.set_app_cursor("app", 2).expect("app");
    (seqs, deliveries)
}

fn check_refilled(store: &dyn Store, seqs: &[u64], deliveries: &[StoredDelivery]) {
    let next = store.reserve_seq(SeqStream::Broadcast).expect("seq");
    assert!(seqs.iter().all(|&s| s < next), "seq {next} was handed out before");
    assert_eq!(store.reserve_seq(SeqStream::Gossip).expect("seq"), FIRST_SEQ + 1);
    assert_eq!(store.record_own_message(key(1), 0, Kind::BrachaSend, b"other send").expect("own"), Some(b"first send".to_vec()));
    assert_eq!(store.own_message(key(2), 4, Kind::BrachaReady).expect("own"), Some(b"first ready".to_vec()));
    assert_eq!(store.own_messages().expect("own").len(), 2);
    let stored: Vec<_> = store.deliveries_from(0, 10).expect("from").into_iter().map(|(_, d)| d).collect();
    assert_eq!(stored, deliveries);
    assert_eq!(store.append_delivery(&deliveries[0]).expect("again"), 1);
    assert_eq!(store.last_cursor().expect("last"), 2);
    assert_eq!(store.app_cursor("app").expect("app"), 2);
    assert_eq!(store.high_watermarks().expect("marks").len(), 2);
}

#[test]
fn redb_store_reopens_with_everything_after_a_plain_drop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(&dir.path().join("nested/data")).expect("open creates the directory");
    assert!(store.path().ends_with(DB_FILE_NAME));
    let (seqs, deliveries) = fill(&store);
    drop(store);
    let store = RedbStore::open(&dir.path().join("nested/data")).expect("reopen");
    check_refilled(&store, &seqs, &deliveries);
}

/// `mem::forget` of a handle keeps redb's exclusive file lock (an `flock` on the still-open
/// descriptor) for the rest of the process, so the file cannot be reopened in-process: a
/// crash is simulated with a killed child process instead (below).
#[test]
fn redb_store_is_exclusive_and_a_forgotten_handle_keeps_the_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(dir.path()).expect("open");
    assert!(matches!(RedbStore::open(dir.path()), Err(StoreError::AlreadyOpen(_))));
    std::mem::forget(store);
    assert!(matches!(RedbStore::open(dir.path()), Err(StoreError::AlreadyOpen(_))));
}

#[test]
fn redb_store_refuses_another_schema_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(dir.path()).expect("open");
    let txn = store.db.begin_write().expect("txn");
    txn.open_table(redb_store::META).expect("meta").insert("schema_version", SCHEMA_VERSION + 1).expect("insert");
    txn.commit().expect("commit");
    drop(store);
    assert!(matches!(RedbStore::open(dir.path()), Err(StoreError::Corrupt(_))));
}

const CRASH_CHILD_ENV: &str = "BYZGOSSIP_STORAGE_CRASH_CHILD";
const CRASH_REPORTS: usize = 25;

/// The child: fills the store, then reserves, delivers and acknowledges forever, printing
/// each step only after the store returned, until the parent kills it (SIGKILL: no
/// destructor, no redb shutdown, possibly mid-transaction).
fn crash_child(dir: &str) {
    use std::io::Write as _;
    let store = RedbStore::open(Path::new(dir)).expect("child open");
    fill(&store);
    let mut out = std::io::stdout().lock();
    for at in 100.. {
        let seq = store.reserve_seq(SeqStream::Broadcast).expect("seq");
        let cursor = store.append_delivery(&delivery(9, seq, at)).expect("append");
        store.set_app_cursor("app", cursor).expect("app");
        writeln!(out, "reported {seq} {cursor}").expect("write");
        out.flush().expect("flush");
    }
}

#[test]
fn redb_store_loses_nothing_reported_when_the_process_is_killed() {
    if let Ok(dir) = std::env::var(CRASH_CHILD_ENV) {
        crash_child(&dir);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let module = module_path!().split_once("::").map_or(module_path!(), |(_, rest)| rest);
    let name = format!("{module}::redb_store_loses_nothing_reported_when_the_process_is_killed");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let mut reported = Vec::new();
    let stdout = child.stdout.take().expect("stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        let Some(rest) = line.strip_prefix("reported ") else { continue };
        let (seq, cursor) = rest.split_once(' ').expect("two numbers");
        reported.push((seq.parse::<u64>().expect("seq"), cursor.parse::<u64>().expect("cursor")));
        if reported.len() == CRASH_REPORTS {
            child.kill().expect("kill");
            break;
        }
    }
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the child was killed");
    assert_eq!(reported.len(), CRASH_REPORTS, "the child reported before dying");

    let store = RedbStore::open(dir.path()).expect("reopen after the crash");
    let next = store.reserve_seq(SeqStream::Broadcast).expect("seq");
    for &(seq, cursor) in &reported {
        assert!(seq < next, "seq {seq} would be reused as {next}");
        let (stored_cursor, d) = store.delivery(key(9), seq).expect("get").expect("reported delivery kept");
        let expected = delivery(9, seq, d.delivered_at_ms);
        assert_eq!((stored_cursor, d), (cursor, expected));
    }
    let (_, last_reported) = reported[CRASH_REPORTS - 1];
    assert!(store.app_cursor("app").expect("app") >= last_reported);
    assert!(store.last_cursor().expect("last") >= last_reported);
    assert_eq!(store.record_own_message(key(1), 0, Kind::BrachaSend, b"conflict").expect("own"), Some(b"first send".to_vec()));
    assert_eq!(store.own_message(key(2), 4, Kind::BrachaReady).expect("own"), Some(b"first ready".to_vec()));
}

// ---- Model-based: MemoryStore and RedbStore agree on every sequence ----

#[derive(Clone, Debug)]
enum Op {
    Reserve(bool),
    Record(u8, u64, u8, u8),
    OwnMessage(u8, u64, u8),
    OwnMessages,
    PruneOwn(u8, u64),
    Append(u8, u64, u8, u64),
    From(u64, usize),
    Delivery(u8, u64),
    LastCursor,
    Watermarks,
    Prune(u64),
    SetApp(u8, u64),
    App(u8),
    /// RedbStore only: drop and reopen (the model keeps its state).
    Reopen,
}

const KINDS: [Kind; 3] = [Kind::BrachaSend, Kind::BrachaEcho, Kind::BrachaReady];

fn op() -> impl Strategy<Value = Op> {
    let origin = 0u8..2;
    let seq = 0u64..4;
    prop_oneof![
        1 => any::<bool>().prop_map(Op::Reserve),
        2 => (origin.clone(), seq.clone(), 0u8..3, 0u8..3).prop_map(|(o, s, k, e)| Op::Record(o, s, k, e)),
        1 => (origin.clone(), seq.clone(), 0u8..3).prop_map(|(o, s, k)| Op::OwnMessage(o, s, k)),
        1 => Just(Op::OwnMessages),
        1 => (origin.clone(), 0u64..5).prop_map(|(o, s)| Op::PruneOwn(o, s)),
        6 => (origin.clone(), seq.clone(), 0u8..3, 0u64..100).prop_map(|(o, s, v, t)| Op::Append(o, s, v, t)),
        1 => (0u64..12, 0usize..6).prop_map(|(c, l)| Op::From(c, l)),
        1 => (origin.clone(), seq).prop_map(|(o, s)| Op::Delivery(o, s)),
        1 => Just(Op::LastCursor),
        1 => Just(Op::Watermarks),
        2 => (0u64..110).prop_map(Op::Prune),
        1 => (0u8..2, 0u64..12).prop_map(|(n, c)| Op::SetApp(n, c)),
        1 => (0u8..2).prop_map(Op::App),
        1 => Just(Op::Reopen),
    ]
}

/// Applies `op` and renders the answer (errors by variant name) for comparison.
fn apply(store: &dyn Store, op: &Op) -> String {
    let stream = |b: bool| if b { SeqStream::Broadcast } else { SeqStream::Gossip };
    let kind = |k: u8| KINDS[usize::from(k)];
    let app = |n: u8| ["app", "other"][usize::from(n)];
    let answer = match *op {
        Op::Reserve(b) => store.reserve_seq(stream(b)).map(|x| format!("{x:?}")),
        Op::Record(o, s, k, e) => store.record_own_message(key(o), s, kind(k), &[e]).map(|x| format!("{x:?}")),
        Op::OwnMessage(o, s, k) => store.own_message(key(o), s, kind(k)).map(|x| format!("{x:?}")),
        Op::OwnMessages => store.own_messages().map(|x| format!("{x:?}")),
        Op::PruneOwn(o, s) => store.prune_own_messages(key(o), s).map(|x| format!("{x:?}")),
        Op::Append(o, s, v, t) => {
            let mut d = delivery(o, s, t);
            d.value.push(v);
            store.insert_delivery(&d).map(|x| format!("{x:?}"))
        }
        Op::From(c, l) => store.deliveries_from(c, l).map(|x| format!("{x:?}")),
        Op::Delivery(o, s) => store.delivery(key(o), s).map(|x| format!("{x:?}")),
        Op::LastCursor => store.last_cursor().map(|x| format!("{x:?}")),
        Op::Watermarks => store.high_watermarks().map(|x| format!("{x:?}")),
        Op::Prune(t) => store.prune_deliveries(t, usize::MAX).map(|x| format!("{x:?}")),
        Op::SetApp(n, c) => store.set_app_cursor(app(n), c).map(|x| format!("{x:?}")),
        Op::App(n) => store.app_cursor(app(n)).map(|x| format!("{x:?}")),
        Op::Reopen => Ok(String::new()),
    };
    answer.unwrap_or_else(|error| match error {
        StoreError::CursorAhead { .. } => "Err(CursorAhead)".into(),
        other => panic!("unexpected error {other}"),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn redb_store_agrees_with_memory_store(ops in prop::collection::vec(op(), 1..50)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let memory = MemoryStore::new();
        let mut redb = Some(RedbStore::open(dir.path()).expect("open"));
        for (i, op) in ops.iter().enumerate() {
            if matches!(op, Op::Reopen) {
                drop(redb.take());
                redb = Some(RedbStore::open(dir.path()).expect("reopen"));
                continue;
            }
            let disk = redb.as_ref().expect("open store");
            let expected = apply(&memory, op);
            let got = apply(disk, op);
            prop_assert_eq!(got, expected, "op {} {:?}", i, op);
        }
    }
}

// ---- Binding to a network and a key ----

fn check_a_store_is_bound_to_its_first_network_and_key(store: &dyn Store) {
    let (net_a, net_b) = (byzgossip_crypto::NetworkId([0xa0; 32]), byzgossip_crypto::NetworkId([0xb0; 32]));
    store.bind(net_a, key(1)).expect("the first bind records the identity");
    store.bind(net_a, key(1)).expect("the same network and key bind again");
    for (network, public) in [(net_b, key(1)), (net_a, key(2)), (net_b, key(2))] {
        match store.bind(network, public) {
            Err(e @ StoreError::BoundToOther { .. }) => {
                let text = e.to_string();
                // The message names both pairs, so an operator sees what the dir belongs to.
                for value in [net_a.to_hex(), key(1).to_hex(), network.to_hex(), public.to_hex()] {
                    assert!(text.contains(&value), "{text} does not name {value}");
                }
            }
            other => panic!("bind for another identity: {other:?}"),
        }
    }
    store.bind(net_a, key(1)).expect("a refused bind changes nothing");
}

#[test]
fn a_store_is_bound_to_its_first_network_and_key() {
    each_store(check_a_store_is_bound_to_its_first_network_and_key);
}

#[test]
fn redb_store_keeps_its_binding_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let network = byzgossip_crypto::NetworkId([7; 32]);
    let store = RedbStore::open(dir.path()).expect("open");
    store.bind(network, key(3)).expect("bind");
    drop(store);
    let store = RedbStore::open(dir.path()).expect("reopen");
    assert!(matches!(store.bind(network, key(4)), Err(StoreError::BoundToOther { stored, .. }) if stored.key == key(3)));
    store.bind(network, key(3)).expect("its own identity");
}
