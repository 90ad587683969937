//! The deletion guard at the sync engine: a peer's changes that would
//! remove most of a folder here are held back (no removal is handed out,
//! the rest still syncs) until a person accepts them — then they go — or
//! restores — then this node's version wins back; small deletions and a
//! folder with the guard off are never held; a halted folder hands out
//! nothing.

mod common;

use std::time::{Duration, Instant};

/// How long a peer's removal settles (`sync::guard::REMOVAL_SETTLE`).
const SETTLE: Duration = Duration::from_secs(2);

use common::{docs_node, docs_node_with, page, record};
use softadastra::core::{Causality, NodeId};
use softadastra::folder::FileRecord;
use softadastra::index::guard::{self, Direction};
use softadastra::runtime::guard as decide;
use softadastra::store::{Store, ns};
use softadastra::sync::{Action, SyncConfig, SyncEngine, SyncMessage};

/// `n` files `f000`… that this node and `peer` both have as `peer` made them.
fn in_sync(store: &mut Store, peer: NodeId, n: usize) -> Vec<(String, FileRecord)> {
    (0..n)
        .map(|i| {
            let path = format!("f{i:03}");
            let rec = record(peer);
            store
                .put(
                    ns::FILES,
                    &format!("docs/{path}"),
                    postcard::to_allocvec(&rec).unwrap(),
                )
                .unwrap();
            (path, rec)
        })
        .collect()
}

/// `peer`'s deletion of each of `files`.
fn deleted(peer: NodeId, files: &[(String, FileRecord)]) -> Vec<(String, FileRecord)> {
    files
        .iter()
        .map(|(p, r)| {
            let mut gone = r.clone();
            gone.deleted = true;
            gone.version.bump(peer);
            (p.clone(), gone)
        })
        .collect()
}

fn removals(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Remove { .. }))
        .count()
}

fn places(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Place { .. }))
        .count()
}

/// Hand out work until none comes, reporting each piece done (as the
/// executor would): how many removals went.
fn drain(engine: &mut SyncEngine, store: &mut Store, mut actions: Vec<Action>) -> usize {
    let mut removed = 0;
    for _ in 0..100 {
        removed += removals(&actions);
        let mut next = Vec::new();
        for a in actions {
            if let Action::Remove {
                folder, path, need, ..
            } = a
            {
                let rec = need.record.clone();
                next.extend(
                    engine
                        .completed(store, &folder, &path, &need, rec, None, Instant::now())
                        .unwrap(),
                );
            }
        }
        if next.is_empty() {
            break;
        }
        actions = next;
    }
    removed
}

/// `peer` hints that its index moved on, then sends `records` as the page
/// after its first one (sequences 10 to 20), received at `at`: what the
/// engine hands out.
fn second_page(
    engine: &mut SyncEngine,
    store: &mut Store,
    peer: NodeId,
    records: Vec<(String, FileRecord)>,
    at: Instant,
) -> Vec<Action> {
    // The engine asks from where it stands.
    engine
        .received(
            store,
            peer,
            SyncMessage::IndexHint {
                folder: "docs".into(),
                seq: 20,
            },
            at,
        )
        .unwrap();
    let mut second = page(records);
    if let SyncMessage::IndexPage { since, upto, .. } = &mut second {
        (*since, *upto) = (10, 20);
    }
    engine.received(store, peer, second, at).unwrap()
}

#[test]
fn most_of_a_folder_deleted_by_a_peer_waits_and_the_rest_syncs() {
    let (me, alice) = (NodeId::derive(b"me"), NodeId::derive(b"alice"));
    let (mut store, mut engine) = docs_node(me, alice);
    let files = in_sync(&mut store, alice, 200);
    let now = Instant::now();

    // 150 of 200 deleted, and one new file, in one page.
    let mut records = deleted(alice, &files[..150]);
    records.push(("new.txt".into(), record(alice)));
    let out = engine
        .received(&mut store, alice, page(records), now)
        .unwrap();
    assert_eq!(removals(&out), 0, "no removal is handed out: {out:?}");
    assert_eq!(places(&out), 1, "the new file still comes");
    let held = guard::held(&store, "docs", Direction::Remote).expect("held");
    assert_eq!((held.paths, held.of_files), (150, 200));
    assert_eq!(SyncEngine::deletions_pending(&mut store, "docs"), 150);
    // Later ticks hand out nothing either.
    let later = engine.tick(&mut store, now).unwrap().actions;
    assert_eq!(removals(&later), 0);

    // Accepted: every removal goes, and the hold ends with the last.
    let (decided, actions) = decide::accept(&mut engine, &mut store, "docs").unwrap();
    assert_eq!((decided.local, decided.remote), (0, 150));
    assert_eq!(drain(&mut engine, &mut store, actions), 150);
    assert_eq!(SyncEngine::deletions_pending(&mut store, "docs"), 0);
    engine.tick(&mut store, Instant::now()).unwrap();
    assert!(guard::held(&store, "docs", Direction::Remote).is_none());
    assert!(!guard::is_accepted(&store, "docs", Direction::Remote));
}

/// Issue 21: with far more held removals than the window of work kept in
/// memory, the files that sort after them still come: a held removal
/// waits for a person, not for room in the window.
#[test]
fn held_removals_do_not_fill_the_window_of_work() {
    let (me, alice) = (NodeId::derive(b"me"), NodeId::derive(b"alice"));
    let config = SyncConfig {
        work_window: 8,
        ..SyncConfig::default()
    };
    let (mut store, mut engine) = docs_node_with(me, alice, config);
    let files = in_sync(&mut store, alice, 200);
    let now = Instant::now();
    let mut records = deleted(alice, &files[..150]);
    records.extend((0..20).map(|i| (format!("new{i:02}.txt"), record(alice))));
    let mut out = engine
        .received(&mut store, alice, page(records), now)
        .unwrap();
    let mut placed = 0;
    for step in 1..40 {
        let t = now + SETTLE * step;
        // What was handed out is done (and what that hands out next).
        while !out.is_empty() {
            assert_eq!(removals(&out), 0, "held");
            placed += places(&out);
            let mut next = Vec::new();
            for a in &out {
                if let Action::Place {
                    folder, path, need, ..
                } = a
                {
                    let rec = need.record.clone();
                    next.extend(
                        engine
                            .completed(&mut store, folder, path, need, rec, None, t)
                            .unwrap(),
                    );
                }
            }
            out = next;
        }
        out = engine.tick(&mut store, t).unwrap().actions;
    }
    assert_eq!(
        placed, 20,
        "every new file came while 150 removals are held"
    );
    assert_eq!(SyncEngine::deletions_pending(&mut store, "docs"), 150);
}

#[test]
fn restoring_held_deletions_makes_this_nodes_version_win() {
    let (me, alice) = (NodeId::derive(b"me"), NodeId::derive(b"alice"));
    let (mut store, mut engine) = docs_node(me, alice);
    let files = in_sync(&mut store, alice, 120);
    let gone = deleted(alice, &files);
    let out = engine
        .received(&mut store, alice, page(gone.clone()), Instant::now())
        .unwrap();
    assert_eq!(removals(&out), 0);
    assert!(decide::accept(&mut engine, &mut store, "other").is_err());

    let (decided, _) = decide::restore(&mut engine, &mut store, "docs").unwrap();
    assert_eq!(decided.remote, 120);
    assert!(SyncEngine::needs(&store).is_empty());
    assert!(guard::held(&store, "docs", Direction::Remote).is_none());
    for (path, theirs) in &gone {
        let mine = softadastra::index::record(&store, "docs", path).unwrap();
        assert!(!mine.deleted);
        assert_eq!(mine.version.compare(&theirs.version), Causality::After);
    }
    // Nothing is held any more: a second answer is refused, clearly.
    let err = decide::restore(&mut engine, &mut store, "docs").unwrap_err();
    assert!(err.to_string().contains("holds back no deletions"), "{err}");
}

#[test]
fn small_deletions_and_a_guard_switched_off_are_never_held() {
    let (me, alice) = (NodeId::derive(b"me"), NodeId::derive(b"alice"));
    let (mut store, mut engine) = docs_node(me, alice);
    let files = in_sync(&mut store, alice, 400);
    // 150 of 400 is not most: carried out once settled.
    let now = Instant::now();
    let out = engine
        .received(&mut store, alice, page(deleted(alice, &files[..150])), now)
        .unwrap();
    assert_eq!(removals(&out), 0, "a removal settles first");
    let out = engine.tick(&mut store, now + SETTLE).unwrap().actions;
    assert_eq!(drain(&mut engine, &mut store, out), 150);
    assert!(guard::held(&store, "docs", Direction::Remote).is_none());

    // 250 left; 200 deleted trips — unless the guard is off.
    decide::switch(&mut engine, &mut store, "docs", false).unwrap();
    let more = deleted(alice, &files[150..350]);
    let out = second_page(&mut engine, &mut store, alice, more, Instant::now());
    assert_eq!(drain(&mut engine, &mut store, out), 200);
    assert!(guard::held(&store, "docs", Direction::Remote).is_none());
}

#[test]
fn a_halted_folder_hands_out_no_work_until_it_is_back() {
    let (me, alice) = (NodeId::derive(b"me"), NodeId::derive(b"alice"));
    let (mut store, mut engine) = docs_node(me, alice);
    engine.halt("docs");
    let out = engine
        .received(
            &mut store,
            alice,
            page(vec![("a.txt".into(), record(alice))]),
            Instant::now(),
        )
        .unwrap();
    assert_eq!(places(&out), 0, "{out:?}");
    engine.unhalt("docs", Instant::now());
    let out = engine.tick(&mut store, Instant::now()).unwrap().actions;
    assert_eq!(places(&out), 1, "{out:?}");
}

#[test]
fn a_mass_deletion_arriving_in_pieces_is_held_whole() {
    let (me, alice) = (NodeId::derive(b"me"), NodeId::derive(b"alice"));
    let (mut store, mut engine) = docs_node(me, alice);
    let files = in_sync(&mut store, alice, 200);
    let now = Instant::now();
    // 47 first: not most of the folder, but not carried out at once.
    let out = engine
        .received(&mut store, alice, page(deleted(alice, &files[..47])), now)
        .unwrap();
    assert_eq!(removals(&out), 0);
    assert!(guard::held(&store, "docs", Direction::Remote).is_none());
    // Then 103 more, before the first settled: 150 of 200, held whole.
    let more = deleted(alice, &files[47..150]);
    let out = second_page(
        &mut engine,
        &mut store,
        alice,
        more,
        now + Duration::from_millis(500),
    );
    assert_eq!(removals(&out), 0);
    let later = engine.tick(&mut store, now + SETTLE * 3).unwrap().actions;
    assert_eq!(removals(&later), 0, "nothing removed: {later:?}");
    let held = guard::held(&store, "docs", Direction::Remote).expect("held");
    assert_eq!((held.paths, held.of_files), (150, 200));
}
