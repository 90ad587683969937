//! Unit tests for the store: values, tombstones, checkpoints, recovery and
//! the migration of a home from before the on-disk index.

use std::path::{Path, PathBuf};

use super::*;
use crate::core::{ErrorContext, ManualClock, NodeId};
use crate::wal::{Durability, MemStorage, WalConfig};

pub(super) fn config() -> StoreConfig {
    StoreConfig::new("/node")
}

pub(super) fn open(
    storage: &MemStorage,
    config: StoreConfig,
) -> Result<(Store, StoreRecovery), StoreError> {
    Store::open(
        config,
        Arc::new(storage.clone()),
        Arc::new(ManualClock::new()),
    )
}

#[test]
fn put_get_remove_list_and_versions() {
    let s = MemStorage::new();
    let (mut store, _) = open(&s, config()).unwrap();
    let v1 = store.put(ns::APP, "user:1", b"Gaspard".to_vec()).unwrap();
    let v2 = store
        .put(ns::APP, "user:1", b"Softadastra".to_vec())
        .unwrap();
    store.put(ns::APP, "user:2", b"B".to_vec()).unwrap();
    store.put(ns::APP, "zzz", b"Z".to_vec()).unwrap();
    assert!(v2 > v1);
    assert_eq!(store.get(ns::APP, "user:1").unwrap().version, v2);
    let keys: Vec<_> = store.list(ns::APP, "user:").map(|(k, _)| k).collect();
    assert_eq!(keys, vec!["user:1", "user:2"]);
    assert_eq!(store.len(ns::APP), 3);
    assert!(store.remove(ns::APP, "user:1").unwrap().is_some());
    assert!(
        store.remove(ns::APP, "user:1").unwrap().is_none(),
        "second remove logs nothing"
    );
    assert!(store.entry(ns::APP, "user:1").unwrap().is_tombstone());
    assert!(!store.contains(ns::APP, "user:1"));
    assert_eq!(store.len(ns::APP), 2);
    assert!(store.is_empty(ns::FILES));
}

#[test]
fn invalid_keys_are_refused_and_log_nothing() {
    let s = MemStorage::new();
    let (mut store, _) = open(&s, config()).unwrap();
    assert!(matches!(
        store.put(ns::APP, "", vec![]),
        Err(StoreError::InvalidKey { .. })
    ));
    assert!(matches!(
        store.put("", "k", vec![]),
        Err(StoreError::InvalidKey { .. })
    ));
    assert_eq!(store.last_seq(), Seq(0));
}

#[test]
fn tombstones_are_purged_by_a_logged_operation() {
    let s = MemStorage::new();
    let clock = ManualClock::new();
    let (mut store, _) =
        Store::open(config(), Arc::new(s.clone()), Arc::new(clock.clone())).unwrap();
    store.put(ns::APP, "a", b"1".to_vec()).unwrap();
    store.remove(ns::APP, "a").unwrap();
    clock.advance(std::time::Duration::from_secs(10));
    store.put(ns::APP, "b", b"1".to_vec()).unwrap();
    store.remove(ns::APP, "b").unwrap();
    store
        .purge_tombstones(ns::APP, Timestamp(clock.wall().0 - 1))
        .unwrap();
    assert!(store.entry(ns::APP, "a").is_none());
    assert!(store.entry(ns::APP, "b").is_some());
    drop(store);
    let (store, _) = open(&s, config()).unwrap();
    assert!(store.entry(ns::APP, "a").is_none());
    assert!(store.entry(ns::APP, "b").is_some());
}

/// Power is cut with the store open: nothing of it closes, and writes
/// never synced are lost (some torn, as `seed` picks).
pub(super) fn cut_power(store: Store, s: &MemStorage, seed: u64) {
    std::mem::forget(store);
    s.crash(seed);
}

#[test]
fn recovery_uses_checkpoint_plus_wal_tail() {
    for seed in 0..8 {
        let s = MemStorage::new();
        let (mut store, _) = open(&s, config()).unwrap();
        for i in 0..50 {
            store.put(ns::APP, &format!("k{i}"), vec![i as u8]).unwrap();
        }
        let info = store.checkpoint().unwrap();
        assert_eq!(info.seq, Seq(50));
        assert_eq!(info.entries, 50);
        for i in 50..60 {
            store.put(ns::APP, &format!("k{i}"), vec![i as u8]).unwrap();
        }
        store.remove(ns::APP, "k3").unwrap();
        cut_power(store, &s, seed);
        let (store, rec) = open(&s, config()).unwrap();
        assert_eq!(rec.checkpoint, Some(Seq(50)), "seed {seed}");
        assert_eq!(rec.wal.replayed, 11);
        assert_eq!(store.len(ns::APP), 59);
        assert!(!store.contains(ns::APP, "k3"));
        assert_eq!(store.last_seq(), Seq(61));
    }
}

#[test]
fn a_clean_close_leaves_nothing_to_replay() {
    let s = MemStorage::new();
    let (mut store, _) = open(&s, config()).unwrap();
    for i in 0..20 {
        store.put(ns::APP, &format!("k{i}"), vec![i as u8]).unwrap();
    }
    drop(store);
    let (store, rec) = open(&s, config()).unwrap();
    assert_eq!(rec.checkpoint, Some(Seq(20)));
    assert_eq!(rec.wal.replayed, 0);
    assert_eq!(store.len(ns::APP), 20);
}

/// The WAL's segment files in the store at `config`.
fn segments(s: &MemStorage, config: &StoreConfig) -> Vec<String> {
    s.list(&config.wal_dir()).unwrap()
}

#[test]
fn a_bulk_change_closed_cleanly_leaves_the_log_at_the_next_open() {
    // Small segments, so a bulk change of ~3 MiB closes several.
    let config = StoreConfig {
        segment_bytes: 1 << 20,
        ..config()
    };
    let s = MemStorage::new();
    let (mut store, _) = open(&s, config.clone()).unwrap();
    for i in 0..3_000u32 {
        store.put(ns::APP, &format!("k{i}"), vec![7; 1000]).unwrap();
    }
    drop(store);
    assert!(
        segments(&s, &config).len() >= 3,
        "{:?}",
        segments(&s, &config)
    );
    for seed in 0..4 {
        let (mut store, rec) = open(&s, config.clone()).unwrap();
        assert_eq!(rec.wal.replayed, 0);
        assert_eq!(store.len(ns::APP), 3_000 + usize::from(seed));
        assert_eq!(
            segments(&s, &config).len(),
            1,
            "the index holds every record: one empty segment stays"
        );
        store
            .put(ns::APP, &format!("after{seed}"), vec![seed])
            .unwrap();
        // The covered log was given back durably: a power cut now loses
        // nothing the index had.
        cut_power(store, &s, u64::from(seed));
        let (store, _) = open(&s, config.clone()).unwrap();
        assert_eq!(store.len(ns::APP), 3_001 + usize::from(seed));
        assert!(store.get(ns::APP, "k2999").is_some());
        drop(store);
    }
}

/// Keys in no order, then most of them removed: a file mostly waste.
pub(super) fn fill_and_thin(store: &mut Store) -> CheckpointInfo {
    let mut rng = fastrand::Rng::with_seed(5);
    for i in 0..6_000u32 {
        let key = format!("{:016x}-{i}", rng.u64(..));
        store.put(ns::APP, &key, vec![1; 300]).unwrap();
        if i % 1000 == 999 {
            store.checkpoint().unwrap();
        }
    }
    let keys: Vec<String> = store.list(ns::APP, "").map(|(k, _)| k).collect();
    for k in keys.iter().skip(500) {
        store.remove(ns::APP, k).unwrap();
    }
    store
        .purge_tombstones(ns::APP, Timestamp(u64::MAX))
        .unwrap();
    store.checkpoint().unwrap()
}

#[test]
fn an_index_that_is_mostly_waste_is_compacted_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let never = StoreConfig {
        compact_from_bytes: u64::MAX,
        durability: Durability::None,
        ..StoreConfig::new(dir.path().join("never"))
    };
    let (mut store, _) = Store::open_dir(never.clone()).unwrap();
    fill_and_thin(&mut store);
    drop(store);
    let size = |c: &StoreConfig| std::fs::metadata(c.index_path()).unwrap().len();
    let kept = size(&never);

    let always = StoreConfig {
        compact_from_bytes: 0,
        durability: Durability::None,
        ..StoreConfig::new(dir.path().join("always"))
    };
    let (mut store, _) = Store::open_dir(always.clone()).unwrap();
    fill_and_thin(&mut store);
    let want: Vec<(String, Entry)> = store.list(ns::APP, "").collect();
    assert_eq!(want.len(), 500);
    drop(store);
    let compacted = size(&always);
    assert!(compacted * 2 < kept, "{compacted} bytes against {kept}");
    let (store, _) = Store::open_dir(always).unwrap();
    let got: Vec<(String, Entry)> = store.list(ns::APP, "").collect();
    assert_eq!(got, want);
}

#[test]
fn a_power_cut_after_a_compaction_loses_nothing() {
    for seed in 0..4 {
        let always = StoreConfig {
            compact_from_bytes: 0,
            ..config()
        };
        let s = MemStorage::new();
        let (mut store, _) = open(&s, always.clone()).unwrap();
        fill_and_thin(&mut store);
        let want: Vec<(String, Entry)> = store.list(ns::APP, "").collect();
        store.put(ns::APP, "after", vec![2]).unwrap();
        cut_power(store, &s, seed);
        let (store, _) = open(&s, always).unwrap();
        let got: Vec<(String, Entry)> = store
            .list(ns::APP, "")
            .filter(|(k, _)| k != "after")
            .collect();
        assert_eq!(got, want, "seed {seed}");
        assert!(store.get(ns::APP, "after").is_some());
    }
}

/// A home from before the index: snapshots and a WAL after them.
fn old_home(s: &MemStorage, rows: &[(&str, &str, &[u8])], at: Seq) {
    let dir = Path::new("/node/snapshots");
    s.create_dir_all(dir).unwrap();
    let entries: Vec<(String, String, Entry)> = rows
        .iter()
        .enumerate()
        .map(|(i, (n, k, v))| {
            let entry = Entry {
                value: Some(v.to_vec()),
                version: Seq(i as u64 + 1),
                timestamp: Timestamp(1),
                origin: NodeId::LOCAL,
            };
            (n.to_string(), k.to_string(), entry)
        })
        .collect();
    let bytes = snapshot::encode(
        at,
        entries.len() as u64,
        entries.iter().map(|(n, k, e)| (n.as_str(), k.as_str(), e)),
    );
    snapshot::write_file(s, dir, at, &bytes).unwrap();
}

#[test]
fn an_older_home_is_migrated_from_its_snapshot_and_wal() {
    let s = MemStorage::new();
    old_home(&s, &[("app", "a", b"1"), ("app", "b", b"2")], Seq(1));
    old_home(
        &s,
        &[
            ("app", "a", b"1"),
            ("app", "b", b"2"),
            ("files", "f/x", b"r"),
        ],
        Seq(3),
    );
    // The newest is damaged: the migration falls back and says so.
    let newest = PathBuf::from("/node/snapshots").join(snapshot::file_name(Seq(3)));
    let mut bytes = s.read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    s.set_contents(&newest, bytes);
    s.set_contents(
        Path::new("/node/snapshots/snap-00000000000000000009.snap.tmp"),
        b"half a snapshot".to_vec(),
    );
    // The log still holds what the older snapshot lacks, and more.
    {
        let wal_config = WalConfig {
            dir: PathBuf::from("/node/wal"),
            durability: Durability::EveryAppend,
            segment_bytes: 64 << 20,
        };
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
        let (mut wal, _) =
            Wal::open(Arc::new(s.clone()), wal_config, clock, Seq(2), |_| Ok(())).unwrap();
        for (key, value) in [("b", &b"22"[..]), ("c", b"3")] {
            let op = Op::Put {
                ns: "app".into(),
                key: key.into(),
                value: value.to_vec(),
                origin: NodeId::LOCAL,
                timestamp: Timestamp(2),
            };
            wal.append(OP_RECORD_KIND, &postcard::to_allocvec(&op).unwrap())
                .unwrap();
        }
    }
    let (mut store, rec) = open(&s, config()).unwrap();
    assert_eq!(rec.migrated_snapshot, Some(Seq(1)));
    assert_eq!(
        rec.snapshot_fallbacks.len(),
        1,
        "{:?}",
        rec.snapshot_fallbacks
    );
    assert!(rec.snapshot_fallbacks[0].contains("checksum"));
    assert_eq!(rec.wal.replayed, 2);
    assert_eq!(store.value(ns::APP, "a"), Some(b"1".to_vec()));
    assert_eq!(store.value(ns::APP, "b"), Some(b"22".to_vec()));
    assert_eq!(store.value(ns::APP, "c"), Some(b"3".to_vec()));
    assert!(
        s.list(Path::new("/node/snapshots")).unwrap().is_empty(),
        "snapshots removed once the index holds them"
    );
    assert_eq!(store.put(ns::APP, "d", vec![]).unwrap(), Seq(4));
    drop(store);
    let (store, rec) = open(&s, config()).unwrap();
    assert_eq!(rec.migrated_snapshot, None);
    assert_eq!(store.len(ns::APP), 4);
}

#[test]
fn unrecoverable_gap_is_corruption_not_silence() {
    let s = MemStorage::new();
    // Tiny segments, so that a checkpoint can compact some away.
    let small = StoreConfig {
        segment_bytes: 64,
        ..config()
    };
    let (mut store, _) = open(&s, small.clone()).unwrap();
    for i in 0..4 {
        store.put(ns::APP, &format!("k{i}"), vec![]).unwrap();
    }
    assert!(store.checkpoint().unwrap().compacted_segments > 0);
    store.put(ns::APP, "k9", vec![]).unwrap();
    drop(store);
    // The index is gone, and the log no longer starts at 1.
    s.remove(&small.index_path()).unwrap();
    match open(&s, small) {
        Err(e) if e.is_corruption() => assert!(
            e.to_string().contains("neither the index nor the WAL"),
            "{e}"
        ),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn a_damaged_index_is_refused_not_rebuilt_silently() {
    let s = MemStorage::new();
    let (mut store, _) = open(&s, config()).unwrap();
    store.put(ns::APP, "a", b"1".to_vec()).unwrap();
    drop(store);
    s.set_contents(&config().index_path(), vec![0x5a; 8192]);
    let e = open(&s, config()).expect_err("a damaged index does not open");
    assert!(e.to_string().contains("index"), "{e}");
}

#[test]
fn batch_is_one_durable_unit() {
    let s = MemStorage::new();
    let (mut store, _) = open(&s, config()).unwrap();
    let ops = (0..10)
        .map(|i| Op::Put {
            ns: ns::FILES.into(),
            key: format!("dir/f{i}"),
            value: vec![i],
            origin: NodeId::LOCAL,
            timestamp: Timestamp(1),
        })
        .collect();
    let seqs = store.apply_batch(ops).unwrap();
    assert_eq!(seqs.len(), 10);
    assert_eq!(store.durable_seq(), Seq(10));
    s.crash(9);
    drop(store);
    let (store, _) = open(&s, config()).unwrap();
    assert_eq!(store.len(ns::FILES), 10);
}

#[test]
fn second_open_of_a_directory_is_refused_while_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open_dir(StoreConfig::new(dir.path())).unwrap();
    assert!(matches!(
        Store::open_dir(StoreConfig::new(dir.path())),
        Err(StoreError::Locked { .. })
    ));
    drop(store);
    assert!(Store::open_dir(StoreConfig::new(dir.path())).is_ok());
}

/// What changed after a sequence comes from the by-version index, oldest
/// first, through every kind of operation and a snapshot reopen.
#[test]
fn changes_after_a_sequence_are_listed_oldest_first() {
    let s = MemStorage::new();
    let (mut store, _) = open(&s, config()).unwrap();
    let changed = |store: &Store, since: u64| -> Vec<(String, u64)> {
        store
            .changed_since(ns::APP, Seq(since))
            .map(|(k, e)| (k.to_string(), e.version.0))
            .collect()
    };
    store.put(ns::APP, "b", b"1".to_vec()).unwrap(); // 1
    store.put(ns::APP, "a", b"1".to_vec()).unwrap(); // 2
    store.put(ns::APP, "dir/x", b"1".to_vec()).unwrap(); // 3
    store.put(ns::APP, "dir/y", b"1".to_vec()).unwrap(); // 4
    store.put(ns::APP, "b", b"2".to_vec()).unwrap(); // 5: b moves to the end
    store.remove(ns::APP, "a").unwrap(); // 6: a tombstone, still a change
    store.put("other", "b", b"elsewhere".to_vec()).unwrap(); // 7
    assert_eq!(
        changed(&store, 0),
        [("dir/x", 3), ("dir/y", 4), ("b", 5), ("a", 6)].map(|(k, v)| (k.to_string(), v))
    );
    assert_eq!(
        changed(&store, 4),
        [("b".to_string(), 5), ("a".to_string(), 6)]
    );
    assert!(changed(&store, 6).is_empty());

    store
        .apply(Op::Forget {
            ns: ns::APP.into(),
            key: "dir/x".into(),
        })
        .unwrap();
    store
        .apply(Op::DropPrefix {
            ns: ns::APP.into(),
            prefix: "dir/".into(),
        })
        .unwrap();
    assert_eq!(
        changed(&store, 0),
        [("b".to_string(), 5), ("a".to_string(), 6)]
    );
    let later = Timestamp(store.wall_time().0 + 1);
    store.purge_tombstones(ns::APP, later).unwrap();
    assert_eq!(changed(&store, 0), [("b".to_string(), 5)]);

    // The same from a checkpoint and from the log.
    store.put(ns::APP, "c", b"1".to_vec()).unwrap();
    let expect = changed(&store, 0);
    store.checkpoint().unwrap();
    store.put(ns::APP, "d", b"1".to_vec()).unwrap();
    let mut expect_after = expect.clone();
    expect_after.push(("d".to_string(), store.last_seq().0));
    cut_power(store, &s, 1);
    let (store, _) = open(&s, config()).unwrap();
    assert_eq!(changed(&store, 0), expect_after);
    assert!(store.changed_since("nothing here", Seq(0)).next().is_none());
}

/// The index's cache is given back only when nothing reads the state: a
/// scan under way makes it wait (and checkpoint nothing), and once given
/// back every entry reads as before and writes go on.
#[test]
fn the_cache_is_given_back_only_with_no_scan_and_loses_nothing() {
    let s = MemStorage::new();
    let (mut store, _) = open(&s, config()).unwrap();
    for i in 0..50 {
        store.put(ns::APP, &format!("k{i}"), vec![i as u8]).unwrap();
    }
    let want: Vec<(String, Entry)> = store.list(ns::APP, "").collect();
    let checkpointed = store.checkpoint_seq();
    assert!(checkpointed < store.last_seq());
    let scan = store.list(ns::APP, "");
    assert!(!store.release_cache().unwrap(), "a scan holds the state");
    assert_eq!(
        store.checkpoint_seq(),
        checkpointed,
        "no checkpoint was made"
    );
    drop(scan);
    assert!(store.release_cache().unwrap());
    assert_eq!(store.checkpoint_seq(), store.last_seq());
    let got: Vec<(String, Entry)> = store.list(ns::APP, "").collect();
    assert_eq!(got, want);
    store.put(ns::APP, "after", vec![9]).unwrap();
    cut_power(store, &s, 7);
    let (store, _) = open(&s, config()).unwrap();
    let got: Vec<(String, Entry)> = store
        .list(ns::APP, "")
        .filter(|(k, _)| k != "after")
        .collect();
    assert_eq!(
        got, want,
        "everything before the release survives a power cut"
    );
}

/// A peer's id inside values is kept as its number once the store knows
/// the device; every value reads back as written, after a clean close
/// and after a power cut, whatever was committed when.
#[test]
fn values_naming_known_devices_read_back_after_a_close_and_a_power_cut() {
    let peer = NodeId([0xAB; 32]);
    let value = |i: u8| [vec![i], peer.0.to_vec(), vec![i; 3], peer.0.to_vec()].concat();
    for seed in 0..4 {
        let s = MemStorage::new();
        let (mut store, _) = open(&s, config()).unwrap();
        store.put(ns::APP, "before", value(0)).unwrap();
        store.know_devices(&[peer]).unwrap();
        store.know_devices(&[peer]).unwrap();
        store.put(ns::APP, "a", value(1)).unwrap();
        store.flush().unwrap();
        drop(store);
        let (mut store, _) = open(&s, config()).unwrap();
        assert_eq!(store.value(ns::APP, "a"), Some(value(1)));
        assert_eq!(store.value(ns::APP, "before"), Some(value(0)));
        // Numbered again after a power cut took the numbering back: the
        // log's replay writes the value again, as it was.
        store.know_devices(&[NodeId([0xCD; 32])]).unwrap();
        store.put(ns::APP, "b", value(2)).unwrap();
        store.flush().unwrap();
        cut_power(store, &s, seed);
        let (store, _) = open(&s, config()).unwrap();
        for (k, i) in [("before", 0), ("a", 1), ("b", 2)] {
            assert_eq!(store.value(ns::APP, k), Some(value(i)), "{k}, seed {seed}");
        }
    }
}
