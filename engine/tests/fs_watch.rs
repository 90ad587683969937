//! Watcher integration tests on real temporary directories. Each scenario
//! changes the disk, lets the watcher settle, and checks that the index
//! equals a fresh scan of the disk — every time.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use softadastra::core::{ContentHash, ManualClock, NodeId};
use softadastra::folder::{self, FileRecord, FolderConfig, Indexer};
use softadastra::fs::ignore::IgnoreRules;
use softadastra::fs::scan::{EntryKind, ScanProgress};
use softadastra::fs::watch::{WatchConfig, Watcher};
use softadastra::store::{Store, StoreConfig};
use softadastra::wal::{Durability, MemStorage};

const NODE: NodeId = NodeId([9; 32]);

struct Rig {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    store: Store,
    indexer: Indexer,
    watcher: Watcher,
    renames: u64,
}

fn mem_store() -> Store {
    let mut c = StoreConfig::new("/idx");
    c.durability = Durability::GROUP_DEFAULT;
    Store::open(c, Arc::new(MemStorage::new()), Arc::new(ManualClock::new()))
        .unwrap()
        .0
}

impl Rig {
    fn new(prepare: impl FnOnce(&Path)) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("shared");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        prepare(&root);
        let root = fs::canonicalize(&root).unwrap();
        let mut store = mem_store();
        let config = folder::add(&mut store, "f", &root).unwrap();
        let mut indexer = Indexer::new(config, NODE);
        indexer.scan(&mut store, &ScanProgress::default()).unwrap();
        let watcher =
            Watcher::new(&root, IgnoreRules::load(&root).0, WatchConfig::default()).unwrap();
        Rig {
            _dir: dir,
            root,
            outside,
            store,
            indexer,
            watcher,
            renames: 0,
        }
    }

    /// Apply batches until the watcher has been quiet for 400 ms.
    fn settle(&mut self) {
        while let Some(batch) = self.watcher.next_batch(Duration::from_millis(400)) {
            let report = self.indexer.apply(&mut self.store, &batch).unwrap();
            self.renames += report.renamed;
        }
        assert!(self.watcher.take_errors().is_empty());
    }

    fn index(&self) -> BTreeMap<String, Summary> {
        live(&self.store)
    }

    fn assert_matches_disk(&mut self) {
        self.settle();
        let mut fresh = mem_store();
        let config = FolderConfig::new("f", self.root.clone());
        softadastra::index::folders::put(&mut fresh, &config).unwrap();
        Indexer::new(config, NODE)
            .scan(&mut fresh, &ScanProgress::default())
            .unwrap();
        let (watched, scanned) = (self.index(), live(&fresh));
        if watched != scanned {
            let only_w: Vec<_> = watched
                .iter()
                .filter(|(k, v)| scanned.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            let only_s: Vec<_> = scanned
                .iter()
                .filter(|(k, v)| watched.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            panic!(
                "index differs from disk: index-only/different {only_w:?}, disk-only/different {only_s:?}"
            );
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Summary {
    kind: EntryKind,
    size: u64,
    mtime_ns: i64,
    mode: u32,
    hash: Option<ContentHash>,
    link: Option<String>,
}

fn live(store: &Store) -> BTreeMap<String, Summary> {
    folder::records(store, "f")
        .map(Result::unwrap)
        .filter(|(_, r)| !r.deleted)
        .map(|(p, r): (String, FileRecord)| {
            (
                p,
                Summary {
                    kind: r.kind,
                    size: r.size,
                    mtime_ns: r.mtime_ns,
                    mode: r.mode,
                    hash: r.hash,
                    link: r.link_target,
                },
            )
        })
        .collect()
}

fn write(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, data).unwrap();
}

#[test]
fn create_modify_delete_and_rename_a_file() {
    let mut rig = Rig::new(|_| {});
    write(&rig.root.join("a.txt"), b"hello");
    rig.assert_matches_disk();
    assert!(rig.index().contains_key("a.txt"));
    write(&rig.root.join("a.txt"), b"hello, world");
    rig.assert_matches_disk();
    assert_eq!(rig.index()["a.txt"].size, 12);
    fs::rename(rig.root.join("a.txt"), rig.root.join("b.txt")).unwrap();
    rig.assert_matches_disk();
    assert!(rig.renames >= 1, "rename detected by content hash");
    let deleted = folder::records(&rig.store, "f")
        .map(Result::unwrap)
        .find(|(p, _)| *p == "a.txt")
        .unwrap()
        .1;
    assert!(deleted.deleted, "old path is a tombstone with a version");
    assert!(!deleted.version.is_empty());
    fs::remove_file(rig.root.join("b.txt")).unwrap();
    rig.assert_matches_disk();
    assert!(rig.index().is_empty());
}

#[test]
fn rename_a_directory_with_contents() {
    let mut rig = Rig::new(|r| {
        for i in 0..20 {
            write(
                &r.join(format!("docs/sub/f{i}.txt")),
                format!("file {i}").as_bytes(),
            );
        }
    });
    fs::rename(rig.root.join("docs"), rig.root.join("papers")).unwrap();
    rig.assert_matches_disk();
    let idx = rig.index();
    assert!(idx.contains_key("papers/sub/f7.txt"));
    assert!(!idx.contains_key("docs"));
    assert_eq!(rig.renames, 20);
}

#[test]
fn mkdir_p_a_deep_tree_with_files_racing_the_watch() {
    let mut rig = Rig::new(|_| {});
    let deep = rig.root.join("a/b/c/d/e/f/g/h");
    fs::create_dir_all(&deep).unwrap();
    // Files created immediately, before the watcher can add watches below.
    write(&deep.join("leaf.txt"), b"leaf");
    write(&rig.root.join("a/b/mid.txt"), b"mid");
    rig.assert_matches_disk();
    assert!(rig.index().contains_key("a/b/c/d/e/f/g/h/leaf.txt"));
}

#[test]
fn move_a_tree_in_from_outside_and_out_again() {
    let mut rig = Rig::new(|_| {});
    for i in 0..30 {
        write(
            &rig.outside.join(format!("tree/x{}/f{i}.bin", i % 3)),
            &[i as u8; 100],
        );
    }
    fs::rename(rig.outside.join("tree"), rig.root.join("tree")).unwrap();
    rig.assert_matches_disk();
    assert_eq!(
        rig.index()
            .keys()
            .filter(|k| k.starts_with("tree/"))
            .count(),
        33
    );
    fs::rename(rig.root.join("tree"), rig.outside.join("tree-back")).unwrap();
    rig.assert_matches_disk();
    assert!(rig.index().is_empty());
}

#[test]
fn a_large_file_written_slowly_is_recorded_once_complete() {
    let mut rig = Rig::new(|_| {});
    let path = rig.root.join("big.bin");
    let mut f = fs::File::create(&path).unwrap();
    let piece = vec![7u8; 256 << 10];
    for _ in 0..24 {
        use std::io::Write;
        f.write_all(&piece).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(f);
    rig.assert_matches_disk();
    assert_eq!(rig.index()["big.bin"].size, 24 * (256 << 10));
}

#[test]
fn editor_style_save_replaces_through_a_temp_file() {
    let mut rig = Rig::new(|r| write(&r.join("notes.md"), b"draft 1"));
    for n in 2..5 {
        let tmp = rig.root.join(".notes.md.swp");
        write(&tmp, format!("draft {n}").as_bytes());
        fs::rename(&tmp, rig.root.join("notes.md")).unwrap();
    }
    rig.assert_matches_disk();
    let idx = rig.index();
    assert_eq!(idx["notes.md"].hash, Some(ContentHash::of(b"draft 4")));
    assert!(!idx.contains_key(".notes.md.swp"));
}

#[test]
fn a_burst_of_10000_files() {
    let mut rig = Rig::new(|_| {});
    for i in 0..10_000 {
        write(
            &rig.root.join(format!("burst/d{:02}/f{i:05}.txt", i % 50)),
            format!("content {i}").as_bytes(),
        );
    }
    rig.assert_matches_disk();
    assert_eq!(rig.index().len(), 10_000 + 50 + 1);
}

#[test]
fn ignored_paths_never_enter_the_index() {
    let mut rig = Rig::new(|r| write(&r.join(".softadastraignore"), b"*.tmp\ncache/\n"));
    write(&rig.root.join("keep.txt"), b"k");
    write(&rig.root.join("junk.tmp"), b"j");
    write(&rig.root.join("cache/big.dat"), b"c");
    write(&rig.root.join(".softadastra/trash/old.txt"), b"agent's own");
    write(
        &rig.root.join("docs/.softadastra-tmp-1-x.txt"),
        b"partial download",
    );
    rig.assert_matches_disk();
    let idx = rig.index();
    assert!(idx.contains_key("keep.txt"));
    assert!(idx.contains_key(".softadastraignore"));
    assert!(
        !idx.keys()
            .any(|k| k.contains("tmp") || k.starts_with("cache") || k.starts_with(".softadastra/")),
        "{idx:?}"
    );
    // Un-ignoring brings files in; ignoring drops them without tombstones.
    write(&rig.root.join(".softadastraignore"), b"keep.txt\n");
    rig.assert_matches_disk();
    let idx = rig.index();
    assert!(idx.contains_key("junk.tmp") && idx.contains_key("cache/big.dat"));
    assert!(!idx.contains_key("keep.txt"));
    let keep = folder::records(&rig.store, "f")
        .map(Result::unwrap)
        .find(|(p, _)| *p == "keep.txt");
    assert!(keep.is_none(), "an ignored path is forgotten, not deleted");
}

#[test]
fn symlinks_are_recorded_not_followed_and_loops_are_safe() {
    let mut rig = Rig::new(|_| {});
    write(&rig.outside.join("secret.txt"), b"outside the folder");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&rig.outside, rig.root.join("escape")).unwrap();
        std::os::unix::fs::symlink(".", rig.root.join("loop")).unwrap();
        std::os::unix::fs::symlink("a.txt", rig.root.join("link-to-a")).unwrap();
    }
    write(&rig.root.join("a.txt"), b"a");
    rig.assert_matches_disk();
    let idx = rig.index();
    assert_eq!(idx["escape"].kind, EntryKind::Symlink);
    assert_eq!(idx["loop"].link.as_deref(), Some("."));
    assert!(
        !idx.keys().any(|k| k.contains("secret")),
        "the walk never follows a link: {idx:?}"
    );
}

#[test]
fn permission_and_mode_changes_are_recorded() {
    let mut rig = Rig::new(|r| write(&r.join("script.sh"), b"#!/bin/sh\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(
            rig.root.join("script.sh"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        rig.assert_matches_disk();
        assert_eq!(rig.index()["script.sh"].mode, 0o755);
    }
}

#[test]
fn case_only_collisions_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("Report.txt"), b"1");
    write(&dir.path().join("report.txt"), b"2");
    let mut store = mem_store();
    let config = folder::add(&mut store, "c", dir.path()).unwrap();
    let report = Indexer::new(config, NODE)
        .scan(&mut store, &ScanProgress::default())
        .unwrap();
    assert!(
        report
            .issues
            .iter()
            .any(|i| i.kind == softadastra::fs::scan::IssueKind::CaseCollision),
        "{:?}",
        report.issues
    );
    assert_eq!(report.added, 2, "both files are still indexed");
}

/// The hook for sync: a file the agent writes and records itself must not
/// come back from the watcher as a new local change (no echo to peers).
#[test]
fn agent_writes_recorded_through_the_hook_do_not_echo() {
    let mut rig = Rig::new(|_| {});
    let path = rig.root.join("from-peer.txt");
    write(&path, b"content that arrived from a peer");
    let peer = NodeId([3; 32]);
    let mut version = softadastra::core::VersionVector::default();
    version.bump(peer);
    let content = softadastra::fs::chunk::chunk_bytes(
        b"content that arrived from a peer",
        Default::default(),
    );
    let meta = fs::symlink_metadata(&path).unwrap();
    let stat = softadastra::fs::scan::FileStat::from_metadata(&meta);
    let record = FileRecord {
        kind: EntryKind::File,
        size: content.size,
        mtime_ns: 0,
        mode: stat.mode,
        inode: 0,
        hash: Some(content.hash),
        chunks: content.chunks,
        link_target: None,
        version: version.clone(),
        modified_by: peer,
        deleted: false,
    };
    rig.indexer
        .record_local_write(&mut rig.store, "from-peer.txt", record)
        .unwrap();
    let before = rig.store.last_seq();
    rig.settle();
    assert_eq!(
        rig.store.last_seq(),
        before,
        "the watcher recorded the agent's own write as a change"
    );
    let (_, stored) = folder::records(&rig.store, "f")
        .map(Result::unwrap)
        .find(|(p, _)| *p == "from-peer.txt")
        .unwrap();
    assert_eq!(stored.version, version, "the peer's version stands");
    assert_eq!(stored.modified_by, peer);
    rig.assert_matches_disk();
}

/// Reading files is no change: a folder read through (a peer's chunk
/// requests served, a scan) releases no batch, and the kernel is not even
/// asked for opens; a write right after is seen.
#[test]
fn reads_release_nothing_and_a_write_after_them_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    for i in 0..50 {
        write(&root.join(format!("f{i}.txt")), b"some content");
    }
    let mut watcher = Watcher::new(&root, IgnoreRules::builtin(), WatchConfig::default()).unwrap();
    // Whatever the set-up left (the writes above, racing the watch).
    while watcher.next_batch(Duration::from_millis(300)).is_some() {}
    for _ in 0..3 {
        for i in 0..50 {
            let _ = fs::read(root.join(format!("f{i}.txt"))).unwrap();
        }
    }
    assert_eq!(watcher.next_batch(Duration::from_millis(500)), None);
    // The kernel is not asked for opens at all (inotify's IN_OPEN, 0x20):
    // each watch's mask is in the inotify descriptor's fdinfo.
    #[cfg(target_os = "linux")]
    {
        let masks: Vec<u32> = fs::read_dir("/proc/self/fdinfo")
            .unwrap()
            .flatten()
            .filter_map(|e| fs::read_to_string(e.path()).ok())
            .flat_map(|info| {
                info.lines()
                    .filter(|l| l.starts_with("inotify wd:"))
                    .filter_map(|l| l.split(" mask:").nth(1))
                    .filter_map(|m| u32::from_str_radix(m.split_whitespace().next()?, 16).ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(!masks.is_empty(), "the watches are listed");
        assert!(masks.iter().all(|m| m & 0x20 == 0), "{masks:x?}");
    }
    write(&root.join("f7.txt"), b"changed");
    let batch = watcher.next_batch(Duration::from_secs(5)).expect("a batch");
    assert_eq!(batch.paths, vec!["f7.txt".to_string()]);
}
