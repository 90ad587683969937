//! Folder membership at the sync engine: a trusted device that is not a
//! member of a folder learns nothing of it and changes nothing in it, and
//! every refusal is counted; removing a member forgets what was read of
//! it; folders a device shares that this node lacks become offers.

mod common;

use std::time::Instant;

use common::{docs_node, open, page, record, share_docs};
use softadastra::core::NodeId;
use softadastra::folder::values::APP_SPACE;
use softadastra::index::members;
use softadastra::store::ns;
use softadastra::sync::{Action, SyncConfig, SyncEngine, SyncMessage};

fn sent(actions: &[Action]) -> Vec<&SyncMessage> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { message, .. } => Some(message),
            _ => None,
        })
        .collect()
}

fn folders_told(actions: &[Action]) -> Vec<String> {
    sent(actions)
        .into_iter()
        .find_map(|m| match m {
            SyncMessage::Folders { ids, .. } => Some(ids.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

#[test]
fn a_device_that_is_not_a_member_learns_and_changes_nothing() {
    let (me, alice, mallory) = (
        NodeId::derive(b"me"),
        NodeId::derive(b"alice"),
        NodeId::derive(b"mallory"),
    );
    let mut store = open(me);
    share_docs(&mut store, &[alice]);
    members::set_member(&mut store, APP_SPACE, alice, true).unwrap();
    let mut engine = SyncEngine::new(me, SyncConfig::default(), 1);
    let now = Instant::now();

    // Each is told only what is shared with it.
    let to_alice = engine.connected(&store, alice, now).unwrap();
    assert_eq!(folders_told(&to_alice), ["@app", "docs"]);
    let to_mallory = engine.connected(&store, mallory, now).unwrap();
    assert!(folders_told(&to_mallory).is_empty());

    // Mallory claims docs: no index request goes to it.
    let asked = engine
        .received(
            &mut store,
            mallory,
            SyncMessage::Folders {
                ids: vec!["docs".into(), APP_SPACE.into()],
                reply: false,
            },
            now,
        )
        .unwrap();
    assert!(
        !sent(&asked)
            .iter()
            .any(|m| matches!(m, SyncMessage::IndexRequest { .. })),
        "{asked:?}"
    );
    let before = engine.refused_requests;
    // It asks for docs' index and the app space's: nothing.
    for folder in ["docs", APP_SPACE] {
        let out = engine
            .received(
                &mut store,
                mallory,
                SyncMessage::IndexRequest {
                    folder: folder.into(),
                    since: 0,
                },
                now,
            )
            .unwrap();
        assert!(sent(&out).is_empty(), "{out:?}");
    }
    // It hints and pushes a page of records: nothing is asked or taken.
    let out = engine
        .received(
            &mut store,
            mallory,
            SyncMessage::IndexHint {
                folder: "docs".into(),
                seq: 99,
            },
            now,
        )
        .unwrap();
    assert!(sent(&out).is_empty());
    let out = engine
        .received(
            &mut store,
            mallory,
            page(vec![("planted.txt".into(), record(mallory))]),
            now,
        )
        .unwrap();
    assert!(out.is_empty());
    assert!(store.get(ns::FILES, "docs/planted.txt").is_none());
    assert!(SyncEngine::needs(&store).is_empty());
    assert_eq!(engine.refused_requests, before + 4);

    // Alice, a member, is answered.
    let out = engine
        .received(
            &mut store,
            alice,
            SyncMessage::IndexRequest {
                folder: "docs".into(),
                since: 0,
            },
            now,
        )
        .unwrap();
    assert!(matches!(
        sent(&out).as_slice(),
        [SyncMessage::IndexPage { .. }]
    ));

    // Paused as a whole, alice is told of nothing and answered nothing.
    members::set_device_paused(&mut store, alice, true).unwrap();
    let told = engine.folders_changed(&store, now).unwrap();
    let to_alice: Vec<_> = told
        .into_iter()
        .filter(|a| matches!(a, Action::Send { peer, .. } if *peer == alice))
        .collect();
    assert!(folders_told(&to_alice).is_empty());
    let out = engine
        .received(
            &mut store,
            alice,
            SyncMessage::IndexRequest {
                folder: "docs".into(),
                since: 0,
            },
            now,
        )
        .unwrap();
    assert!(sent(&out).is_empty());
}

#[test]
fn unsharing_forgets_the_devices_index_and_the_work_only_it_could_supply() {
    let (me, alice) = (NodeId::derive(b"me"), NodeId::derive(b"alice"));
    let (mut store, mut engine) = docs_node(me, alice);
    let now = Instant::now();
    engine
        .received(
            &mut store,
            alice,
            page(vec![("a.txt".into(), record(alice))]),
            now,
        )
        .unwrap();
    assert_eq!(SyncEngine::needs(&store).len(), 1);
    assert!(
        store
            .get("sync.cursor", &format!("{}/docs", alice.to_hex()))
            .is_some()
    );

    members::set_member(&mut store, "docs", alice, false).unwrap();
    assert_eq!(engine.unshared(&mut store, "docs", alice).unwrap(), 1);
    assert!(SyncEngine::needs(&store).is_empty());
    assert!(
        store
            .get("sync.cursor", &format!("{}/docs", alice.to_hex()))
            .is_none(),
        "sharing again exchanges the whole index"
    );
    let told = engine.folders_changed(&store, now).unwrap();
    assert!(folders_told(&told).is_empty());
    // Its hints and pages for docs are refused from now on.
    let before = engine.refused_requests;
    let out = engine
        .received(
            &mut store,
            alice,
            page(vec![("b.txt".into(), record(alice))]),
            now,
        )
        .unwrap();
    assert!(out.is_empty());
    assert!(SyncEngine::needs(&store).is_empty());
    assert_eq!(engine.refused_requests, before + 1);
    // Nothing is handed out for docs any more.
    let tick = engine.tick(&mut store, now).unwrap();
    assert!(
        !tick
            .actions
            .iter()
            .any(|a| matches!(a, Action::Place { .. } | Action::Remove { .. }))
    );
}

#[test]
fn a_folder_this_node_lacks_is_an_offer_while_the_device_is_connected() {
    let (me, alice) = (NodeId::derive(b"me"), NodeId::derive(b"alice"));
    let (mut store, mut engine) = docs_node(me, alice);
    let now = Instant::now();
    engine
        .received(
            &mut store,
            alice,
            SyncMessage::Folders {
                ids: vec!["docs".into(), "photos".into(), "../bad id".into()],
                reply: false,
            },
            now,
        )
        .unwrap();
    let offers: Vec<&String> = engine.offers().keys().collect();
    assert_eq!(offers, ["photos"], "docs is here; a bad id is no offer");
    // A later list without it withdraws it; so does a disconnection.
    engine
        .received(
            &mut store,
            alice,
            SyncMessage::Folders {
                ids: vec!["docs".into()],
                reply: false,
            },
            now,
        )
        .unwrap();
    assert!(engine.offers().is_empty());
    engine
        .received(
            &mut store,
            alice,
            SyncMessage::Folders {
                ids: vec!["photos".into()],
                reply: false,
            },
            now,
        )
        .unwrap();
    engine.disconnected(alice);
    assert!(engine.offers().is_empty());
}

#[test]
fn a_send_only_folder_keeps_remote_changes_aside_and_overrides_them() {
    use softadastra::index::{FolderType, folders};
    let (me, alice) = (NodeId::derive(b"me"), NodeId::derive(b"alice"));
    let (mut store, mut engine) = docs_node(me, alice);
    let mut config = folders::get(&store, "docs").unwrap();
    config.kind = FolderType::SendOnly;
    folders::put(&mut store, &config).unwrap();
    // This node has mine.txt; alice changes it and adds new.txt.
    let mut mine = record(me);
    mine.modified_by = me;
    store
        .put(
            ns::FILES,
            "docs/mine.txt",
            postcard::to_allocvec(&mine).unwrap(),
        )
        .unwrap();
    let mut theirs = record(alice);
    theirs.version = mine.version.clone();
    theirs.version.bump(alice);
    theirs.size = 4;
    theirs.hash = Some(softadastra::core::ContentHash::of(b"abcd"));
    theirs.chunks[0].len = 4;
    theirs.chunks[0].hash = softadastra::core::ContentHash::of(b"abcd");
    let now = Instant::now();
    engine
        .received(
            &mut store,
            alice,
            page(vec![
                ("mine.txt".into(), theirs.clone()),
                ("new.txt".into(), record(alice)),
            ]),
            now,
        )
        .unwrap();
    // Nothing of alice's is applied: no work, the index unchanged.
    assert!(SyncEngine::needs(&store).is_empty());
    assert_eq!(
        softadastra::index::record(&store, "docs", "mine.txt"),
        Some(mine.clone())
    );
    assert!(softadastra::index::record(&store, "docs", "new.txt").is_none());
    assert_eq!(SyncEngine::remote_differs(&mut store, "docs").items, 2);
    let differing: Vec<String> = SyncEngine::differing(&store, "docs")
        .into_iter()
        .map(|(p, by, _)| {
            assert_eq!(by, alice);
            p
        })
        .collect();
    assert_eq!(differing, ["mine.txt", "new.txt"]);

    // Override: this node's state wins over both, by version.
    assert_eq!(engine.override_remote(&mut store, "docs").unwrap(), 2);
    assert_eq!(SyncEngine::remote_differs(&mut store, "docs").items, 0);
    let kept = softadastra::index::record(&store, "docs", "mine.txt").unwrap();
    assert_eq!(kept.hash, mine.hash, "same content");
    assert_eq!(
        kept.version.compare(&theirs.version),
        softadastra::core::Causality::After
    );
    let gone = softadastra::index::record(&store, "docs", "new.txt").unwrap();
    assert!(gone.deleted, "a path only the peer has becomes a deletion");
    assert_eq!(
        gone.version.compare(&record(alice).version),
        softadastra::core::Causality::After
    );
}

#[test]
fn a_receive_only_folder_withholds_its_own_changes_until_reverted() {
    use softadastra::index::FolderType;
    let (me, alice) = (NodeId::derive(b"me"), NodeId::derive(b"alice"));
    let (mut store, mut engine) = docs_node(me, alice);
    let now = Instant::now();
    // Alice's file arrives and is recorded as taken (as a completed need).
    store
        .put(
            ns::FILES,
            "docs/theirs.txt",
            postcard::to_allocvec(&record(alice)).unwrap(),
        )
        .unwrap();
    engine
        .retype(&mut store, "docs", FolderType::ReceiveOnly)
        .unwrap();
    assert_eq!(engine.locally_changed(&store, "docs"), 0);
    // This node edits theirs.txt and makes mine.txt.
    for path in ["theirs.txt", "mine.txt"] {
        let mut rec = record(me);
        rec.modified_by = me;
        rec.version = record(alice).version;
        rec.version.bump(me);
        store
            .put(
                ns::FILES,
                &format!("docs/{path}"),
                postcard::to_allocvec(&rec).unwrap(),
            )
            .unwrap();
    }
    assert_eq!(engine.locally_changed(&store, "docs"), 2);
    // Alice asks for the index: neither goes out.
    let out = engine
        .received(
            &mut store,
            alice,
            SyncMessage::IndexRequest {
                folder: "docs".into(),
                since: 0,
            },
            now,
        )
        .unwrap();
    let pages: Vec<_> = sent(&out)
        .into_iter()
        .filter_map(|m| match m {
            SyncMessage::IndexPage { records, .. } => Some(records.len()),
            _ => None,
        })
        .collect();
    assert_eq!(pages, [0], "{out:?}");
    // Revert: the records are forgotten and alice's cursor too, so her
    // whole index comes back.
    let paths: Vec<String> = engine
        .revert_paths(&store, "docs")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(paths, ["mine.txt", "theirs.txt"]);
    let told = engine.reverted(&mut store, "docs", &paths, now).unwrap();
    assert!(matches!(
        sent(&told).as_slice(),
        [SyncMessage::Folders { reply: true, .. }]
    ));
    assert_eq!(engine.locally_changed(&store, "docs"), 0);
    assert!(store.get(ns::FILES, "docs/mine.txt").is_none());
    assert!(
        store
            .get("sync.cursor", &format!("{}/docs", alice.to_hex()))
            .is_none()
    );
    // Leaving receive-only publishes what was withheld.
    let mut rec = record(me);
    rec.modified_by = me;
    store
        .put(
            ns::FILES,
            "docs/kept.txt",
            postcard::to_allocvec(&rec).unwrap(),
        )
        .unwrap();
    let before = store.last_seq();
    engine
        .retype(&mut store, "docs", FolderType::SendReceive)
        .unwrap();
    let page = engine
        .received(
            &mut store,
            alice,
            SyncMessage::IndexRequest {
                folder: "docs".into(),
                since: before.0,
            },
            now,
        )
        .unwrap();
    assert!(
        sent(&page).iter().any(|m| matches!(m,
            SyncMessage::IndexPage { records, .. } if records.iter().any(|(p, _)| p == "kept.txt"))),
        "{page:?}"
    );
}
