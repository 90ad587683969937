//! Peers learn only what the log has made durable. The executor records
//! a batch with the log's fsync deferred and runs the fsync after letting
//! go of the store; meanwhile the batch's records are in the index but
//! must reach no peer — neither in an index page nor as a hint's
//! sequence — or a crash could take back a sequence a peer already holds
//! (and this node would hand it out again for something else).

mod common;

use std::time::Instant;

use common::{docs_node, page, record};
use softadastra::core::NodeId;
use softadastra::folder;
use softadastra::store::{Store, ns};
use softadastra::sync::{Action, Completed, SyncEngine, SyncMessage};
use softadastra::wal::PendingSync;

/// What an index request from the start gets: (paths, upto).
fn asked(engine: &mut SyncEngine, store: &mut Store, peer: NodeId) -> (Vec<String>, u64) {
    let ask = SyncMessage::IndexRequest {
        folder: "docs".into(),
        since: 0,
    };
    let out = engine.received(store, peer, ask, Instant::now()).unwrap();
    match out.as_slice() {
        [
            Action::Send {
                message: SyncMessage::IndexPage { records, upto, .. },
                ..
            },
        ] => (records.iter().map(|(p, _)| p.clone()).collect(), *upto),
        other => panic!("expected one index page, got {other:?}"),
    }
}

/// The sequences hinted to peers among `actions`.
fn hinted(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                message: SyncMessage::IndexHint { seq, .. },
                ..
            } => Some(*seq),
            _ => None,
        })
        .collect()
}

fn finish(store: &mut Store, mut pending: PendingSync) {
    let outcome = pending.sync();
    store.synced(pending, outcome).unwrap();
}

#[test]
fn an_index_page_holds_only_durable_records() {
    let me = NodeId::derive(b"me");
    let peer = NodeId::derive(b"peer");
    let (mut store, mut engine) = docs_node(me, peer);
    let durable = store.durable_seq().0;
    let value = postcard::to_allocvec(&record(me)).unwrap();
    let ((), pending) = store
        .hold_deferred(|s| {
            s.put(ns::FILES, &folder::file_key("docs", "a.txt"), value)
                .unwrap();
        })
        .unwrap();
    let pending = pending.expect("the record waits for its fsync");
    assert!(store.last_seq().0 > durable);

    let (paths, upto) = asked(&mut engine, &mut store, peer);
    assert!(
        paths.is_empty(),
        "a record not yet durable was sent: {paths:?}"
    );
    assert_eq!(
        upto, durable,
        "the page's end names no sequence past the log's durable one"
    );
    assert_eq!(hinted(&engine.local_changed(&store, "docs")), vec![durable]);

    finish(&mut store, pending);
    let (paths, upto) = asked(&mut engine, &mut store, peer);
    assert_eq!(paths, vec!["a.txt".to_string()]);
    assert_eq!(upto, store.last_seq().0);
    assert_eq!(
        hinted(&engine.local_changed(&store, "docs")),
        vec![store.last_seq().0]
    );
}

#[test]
fn completed_work_is_hinted_once_durable() {
    let me = NodeId::derive(b"me");
    let peer = NodeId::derive(b"peer");
    let (mut store, mut engine) = docs_node(me, peer);
    let now = Instant::now();
    let actions = engine
        .received(
            &mut store,
            peer,
            page(vec![("a.txt".into(), record(peer))]),
            now,
        )
        .unwrap();
    let need = actions
        .iter()
        .find_map(|a| match a {
            Action::Place { need, .. } => Some(need.clone()),
            _ => None,
        })
        .expect("the new file is handed out");
    let done = Completed {
        folder: "docs".into(),
        path: "a.txt".into(),
        record: need.record.clone(),
        done: need,
        conflict_copy: None,
    };
    let (recorded, pending) = store
        .hold_deferred(|s| engine.completed_all(s, vec![done], now))
        .unwrap();
    recorded.unwrap();
    let pending = pending.expect("the record waits for its fsync");

    // Not durable yet: no hint goes out, however often the engine ticks.
    for _ in 0..3 {
        let report = engine.tick(&mut store, now).unwrap();
        assert!(hinted(&report.actions).is_empty(), "{:?}", report.actions);
    }
    finish(&mut store, pending);
    let report = engine.tick(&mut store, now).unwrap();
    assert_eq!(hinted(&report.actions), vec![store.last_seq().0]);
    // Once.
    let report = engine.tick(&mut store, now).unwrap();
    assert!(hinted(&report.actions).is_empty());
}

/// A page that brings nothing new and leaves the cursor where it was
/// changes nothing in the store: no sequence, no log record. Polls come
/// every minute per folder and peer, at rest too.
#[test]
fn an_empty_page_at_the_same_cursor_writes_nothing() {
    let me = NodeId([1; 32]);
    let peer = NodeId([2; 32]);
    let (mut store, mut engine) = docs_node(me, peer);
    let now = Instant::now();
    // The answer to the first request: the cursor moves to 10.
    engine
        .received(&mut store, peer, page(vec![]), now)
        .unwrap();
    let at_10 = store.last_seq();
    // Asked again from 10, the peer has nothing newer: a page from 10 to
    // 10, as a poll's answer is.
    let answer = |since: u64, upto: u64| SyncMessage::IndexPage {
        folder: "docs".into(),
        since,
        upto,
        records: vec![],
        more: false,
        values: vec![],
    };
    let hint = SyncMessage::IndexHint {
        folder: "docs".into(),
        seq: 11,
    };
    for _ in 0..3 {
        let asked = engine
            .received(&mut store, peer, hint.clone(), now)
            .unwrap();
        assert!(
            asked.iter().any(|a| matches!(
                a,
                Action::Send {
                    message: SyncMessage::IndexRequest { since: 10, .. },
                    ..
                }
            )),
            "{asked:?}"
        );
        engine
            .received(&mut store, peer, answer(10, 10), now)
            .unwrap();
    }
    assert_eq!(store.last_seq(), at_10, "nothing new: nothing written");
    // A page moving the cursor on is still recorded.
    engine.received(&mut store, peer, hint, now).unwrap();
    engine
        .received(&mut store, peer, answer(10, 12), now)
        .unwrap();
    assert!(store.last_seq() > at_10);
}
