//! The indexer's unit tests.

use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::core::ManualClock;
use crate::core::VersionVector;
use crate::index::guard::{self, Direction};
use crate::store::StoreConfig;
use crate::wal::MemStorage;

const ME: NodeId = NodeId([1; 32]);
const PEER: NodeId = NodeId([2; 32]);

/// Sync records files while a shared-store reconcile walks the disk
/// without the lock: a file placed (and recorded) after the index was
/// read but before the disk was looked at is not taken for a local
/// addition, and a file sync removed meanwhile is not taken for a
/// local deletion — both keep the peer's version.
#[test]
fn what_sync_recorded_while_the_disk_was_read_is_looked_at_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::write(root.join("gone.txt"), b"old").unwrap();
    std::fs::write(root.join("mine.txt"), b"mine").unwrap();
    let (mut store, _) = Store::open(
        StoreConfig::new("/idx"),
        Arc::new(MemStorage::new()),
        Arc::new(ManualClock::new()),
    )
    .unwrap();
    let config = add(&mut store, "f", &root).unwrap();
    let mut ix = Indexer::new(config, ME);
    ix.scan(&mut store, &ScanProgress::default()).unwrap();

    let (known, read_at) = ix.known(&store, &[Scope::All]).unwrap();
    // Meanwhile sync places `new.txt` and carries out the peer's
    // deletion of `gone.txt`, recording both as the peer's versions.
    std::fs::write(root.join("new.txt"), b"from the peer").unwrap();
    let mut placed = record(&store, "f", "mine.txt").unwrap();
    placed.size = 13;
    placed.hash = Some(ContentHash::of(b"from the peer"));
    placed.chunks.clear();
    placed.version = VersionVector::default();
    placed.version.bump(PEER);
    placed.modified_by = PEER;
    ix.record_local_write(&mut store, "new.txt", placed.clone())
        .unwrap();
    let mut deleted = record(&store, "f", "gone.txt").unwrap();
    deleted.deleted = true;
    deleted.version.bump(PEER);
    deleted.modified_by = PEER;
    std::fs::remove_file(root.join("gone.txt")).unwrap();
    let op = ix.put_op("gone.txt", &deleted, &store);
    store.apply(op).unwrap();
    // And the user edits `mine.txt`, which the walk must still record.
    std::fs::write(root.join("mine.txt"), b"mine, edited").unwrap();

    let progress = ScanProgress::default();
    let obs = ix.observe(&[Scope::All], &known, &progress);
    let report = ix
        .settle(
            &mut store,
            &[Scope::All],
            known,
            read_at,
            obs,
            &progress,
            Instant::now(),
        )
        .unwrap();
    assert_eq!((report.added, report.deleted, report.modified), (0, 0, 1));
    assert_eq!(
        record(&store, "f", "new.txt").unwrap().version,
        placed.version
    );
    assert_eq!(
        record(&store, "f", "gone.txt").unwrap().version,
        deleted.version
    );
    let mine = record(&store, "f", "mine.txt").unwrap();
    assert_eq!(mine.hash, Some(ContentHash::of(b"mine, edited")));
}

/// A folder at a new directory holding `files` (folder path, content),
/// indexed once by another indexer — as the agent's catch-up scan is, so
/// the returned indexer has added nothing lately (what it added would
/// offset what it finds deleted) — with that indexer.
fn indexed_folder(files: &[(String, String)]) -> (tempfile::TempDir, PathBuf, Store, Indexer) {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    for (path, text) in files {
        let at = root.join(path);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(at, text).unwrap();
    }
    let (mut store, _) = Store::open(
        StoreConfig::new("/idx"),
        Arc::new(MemStorage::new()),
        Arc::new(ManualClock::new()),
    )
    .unwrap();
    let config = add(&mut store, "f", &root).unwrap();
    Indexer::new(config.clone(), ME)
        .scan(&mut store, &ScanProgress::default())
        .unwrap();
    (dir, root, store, Indexer::new(config, ME))
}

/// `n` files `<prefix>NNN` holding their number.
fn numbered(prefix: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("{prefix}{i:03}"), format!("{i}")))
        .collect()
}

/// The deletion guard, this node's side: a scan that finds most of a
/// folder gone records no deletion and holds them; a part of the folder
/// looked at while held adds to the hold; accepted, the next scan records
/// them; a folder whose marker goes is stopped and records nothing.
#[test]
fn most_of_a_folder_gone_is_held_and_a_missing_marker_stops_it() {
    let (_dir, root, mut store, mut ix) = indexed_folder(&numbered("f", 200));
    let live = |store: &Store| {
        crate::index::records(store, "f")
            .filter(|r| r.as_ref().is_ok_and(|(_, r)| !r.deleted))
            .count()
    };
    assert_eq!(live(&store), 200);

    // 40 gone: recorded (not most of the folder).
    for i in 0..40 {
        std::fs::remove_file(root.join(format!("f{i:03}"))).unwrap();
    }
    let r = ix.scan(&mut store, &ScanProgress::default()).unwrap();
    assert_eq!((r.deleted, r.held), (40, 0));
    // 120 more gone, 160 of the 200 there were within a minute: held,
    // nothing recorded.
    for i in 40..160 {
        std::fs::remove_file(root.join(format!("f{i:03}"))).unwrap();
    }
    let r = ix.scan(&mut store, &ScanProgress::default()).unwrap();
    assert_eq!((r.deleted, r.held), (0, 120));
    assert_eq!(live(&store), 160);
    let held = guard::held(&store, "f", Direction::Local).unwrap();
    assert_eq!((held.paths, held.of_files), (120, 200));
    // While held, one more deletion seen by the watcher joins the hold.
    std::fs::remove_file(root.join("f170")).unwrap();
    let batch = crate::fs::watch::Batch {
        paths: vec!["f170".into()],
        rescan_all: false,
    };
    let r = ix.apply(&mut store, &batch).unwrap();
    assert_eq!((r.deleted, r.held), (0, 1));
    assert_eq!(live(&store), 160);

    // Accepted: the next scan records every one, and the hold is over.
    guard::decide(&mut store, "f", Direction::Local, true).unwrap();
    let r = ix.scan(&mut store, &ScanProgress::default()).unwrap();
    assert_eq!((r.deleted, r.held), (121, 0));
    assert_eq!(live(&store), 39);
    assert!(!guard::is_accepted(&store, "f", Direction::Local));

    // The marker goes: the scan fails and records nothing, even with
    // every file gone.
    std::fs::remove_dir_all(root.join(crate::fs::ignore::META_DIR)).unwrap();
    for i in 160..200 {
        let _ = std::fs::remove_file(root.join(format!("f{i:03}")));
    }
    let err = ix.scan(&mut store, &ScanProgress::default()).unwrap_err();
    assert!(matches!(err, FolderError::MarkerMissing { .. }), "{err}");
    assert_eq!(live(&store), 39);
}

/// A folder emptied in many small watcher batches trips the guard once
/// what was deleted lately is most of it: each batch alone never is.
#[test]
fn deletions_spread_over_batches_add_up_for_the_guard() {
    let (_dir, root, mut store, mut ix) = indexed_folder(&numbered("f", 300));
    let mut batch = |from: usize| {
        let paths: Vec<String> = (from..from + 60).map(|i| format!("f{i:03}")).collect();
        for p in &paths {
            std::fs::remove_file(root.join(p)).unwrap();
        }
        let batch = crate::fs::watch::Batch {
            paths,
            rescan_all: false,
        };
        let r = ix.apply(&mut store, &batch).unwrap();
        (r.deleted, r.held)
    };
    assert_eq!(batch(0), (60, 0));
    assert_eq!(batch(60), (60, 0));
    assert_eq!(batch(120), (0, 60), "180 of 300 within a minute");
    assert_eq!(batch(180), (0, 60), "held: the rest joins the hold");
    let held = guard::held(&store, "f", Direction::Local).unwrap();
    assert_eq!(held.paths, 120);
}

/// Files moved inside the folder, or made and removed again lately, are
/// not lost: however many, the guard lets their deletion through.
#[test]
fn a_tree_moved_or_made_and_cleaned_is_not_a_loss() {
    let (_dir, root, mut store, mut ix) = indexed_folder(&numbered("tree/f", 200));
    let apply = |ix: &mut Indexer, store: &mut Store, paths: &[&str]| {
        let batch = crate::fs::watch::Batch {
            paths: paths.iter().map(|p| p.to_string()).collect(),
            rescan_all: false,
        };
        let r = ix.apply(store, &batch).unwrap();
        (r.deleted, r.held)
    };
    // All 200 moved elsewhere in the folder: nothing held.
    std::fs::rename(root.join("tree"), root.join("moved")).unwrap();
    assert_eq!(apply(&mut ix, &mut store, &["tree", "moved"]), (201, 0));
    // A build made (300 files) then cleaned: nothing held either.
    std::fs::create_dir(root.join("build")).unwrap();
    for i in 0..300 {
        std::fs::write(root.join(format!("build/o{i:03}")), "o").unwrap();
    }
    apply(&mut ix, &mut store, &["build"]);
    std::fs::remove_dir_all(root.join("build")).unwrap();
    assert_eq!(apply(&mut ix, &mut store, &["build"]), (301, 0));
    assert!(guard::held(&store, "f", Direction::Local).is_none());
}

/// A record over what one log record holds is refused with a reason (the
/// reconcile makes it a scan issue for that file alone); an ordinary long
/// list fits.
#[test]
fn a_chunk_list_over_a_log_record_is_told_apart() {
    let record = |chunks: u64| FileRecord {
        kind: EntryKind::File,
        size: chunks * 262_144,
        mtime_ns: 1,
        mode: 0o644,
        inode: 1,
        hash: Some(ContentHash([9; 32])),
        chunks: (0..chunks)
            .map(|i| crate::index::Chunk {
                offset: i * 262_144,
                len: 262_144,
                hash: ContentHash([(i % 251) as u8; 32]),
            })
            .collect(),
        link_target: None,
        version: VersionVector::default(),
        modified_by: ME,
        deleted: false,
    };
    assert!(super::record::fits_a_record(&record(1_000)).is_ok());
    assert!(super::record::fits_a_record(&record(400_000)).is_ok());
    let refused = super::record::fits_a_record(&record(2_000_000)).unwrap_err();
    assert!(refused.contains("2000000 chunks"), "{refused}");
}
