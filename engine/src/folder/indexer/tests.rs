//! The indexer's unit tests.

use std::sync::Arc;

use super::*;
use crate::core::ManualClock;
use crate::core::VersionVector;
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
