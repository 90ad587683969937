//! Issue 21: a damaged store is repaired into one that opens, whatever
//! region the damage is in — a WAL segment's header, any record, the last
//! record, the on-disk index — and keeps every value whose last change is
//! still readable somewhere. Each case damages a fresh copy of one store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use softadastra::core::Seq;
use softadastra::store::{Store, StoreConfig, ns, repair};
use softadastra::wal::Durability;

fn config(dir: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.durability = Durability::None;
    c.segment_bytes = 2048; // several segments
    c
}

/// Every key's value and the sequence of its last change (`None`: removed).
type Model = BTreeMap<String, (Option<Vec<u8>>, Seq)>;

/// A store with 300 operations (puts, overwrites, removes) and a
/// checkpoint after the first 150 (which compacts the log before it), so
/// the damage can hit the index or the log.
fn build(dir: &Path) -> (Model, Seq) {
    let (mut store, _) = Store::open_dir(config(dir)).unwrap();
    let mut model = Model::new();
    let mut rng = fastrand::Rng::with_seed(21);
    for i in 0..300 {
        let key = format!("k{}", rng.usize(0..60));
        if i % 7 == 3 {
            if let Some(seq) = store.remove(ns::APP, &key).unwrap() {
                model.insert(key, (None, seq));
            }
        } else {
            let value = format!("value {i} of {key}").into_bytes();
            let seq = store.put(ns::APP, &key, value.clone()).unwrap();
            model.insert(key, (Some(value), seq));
        }
        if i == 150 {
            store.checkpoint().unwrap();
        }
    }
    let last = store.last_seq();
    (model, last)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The files damage may hit: each WAL segment and the index.
fn damageable(dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![StoreConfig::new(dir).index_path()];
    for e in std::fs::read_dir(dir.join("wal")).unwrap().flatten() {
        files.push(e.path());
    }
    files.sort();
    files
}

/// Open, or the reason not to: a damaged index may make the database
/// library panic in a debug build rather than fail, which counts as a
/// refusal too.
fn try_open(dir: &Path) -> Option<Store> {
    std::panic::catch_unwind(|| Store::open_dir(config(dir)).ok().map(|(s, _)| s))
        .ok()
        .flatten()
}

#[test]
fn repair_keeps_every_readable_change_wherever_the_damage_is() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let (model, last) = build(&pristine);
    let files = damageable(&pristine);
    assert!(files.len() >= 4, "{files:?}");
    let mut cases = 0;
    let mut refused = 0;
    for file in &files {
        let len = std::fs::metadata(file).unwrap().len() as usize;
        // The header, the first record, the middle, the last record.
        for at in [2, 30, len / 2, len.saturating_sub(3)] {
            cases += 1;
            let case = tmp.path().join(format!("case{cases}"));
            copy_dir(&pristine, &case);
            let target = case.join(file.strip_prefix(&pristine).unwrap());
            let mut bytes = std::fs::read(&target).unwrap();
            bytes[at] ^= 0x5a;
            std::fs::write(&target, &bytes).unwrap();
            let what = format!("{} byte {at}", target.display());

            // Damage in the last record reads as a write cut short: opening
            // cuts it (it was never acknowledged) rather than refusing.
            let issued = match try_open(&case) {
                Some(store) => store.last_seq(),
                None => {
                    refused += 1;
                    last
                }
            };
            let report = repair(&config(&case), tmp.path()).unwrap();
            assert!(report.kept_copy.join("wal").is_dir(), "{what}");
            let (mut store, _) = Store::open_dir(config(&case))
                .unwrap_or_else(|e| panic!("{what}: the repaired store does not open: {e}"));
            let lost = |seq: Seq| report.lost.iter().any(|(a, b)| *a <= seq && seq <= *b);
            for (key, (value, seq)) in &model {
                let now = store.get(ns::APP, key).and_then(|e| e.value.clone());
                if !lost(*seq) && *seq <= issued {
                    assert_eq!(&now, value, "{what}: {key} (last changed at {seq})");
                }
            }
            // Nothing is numbered twice: new changes come after all old ones.
            assert!(report.next_seq > issued, "{what}: {report:?}");
            let seq = store.put(ns::APP, "after", b"repair".to_vec()).unwrap();
            assert!(seq > issued);
            drop(store);
            let (store, _) = Store::open_dir(config(&case)).unwrap();
            assert_eq!(
                store.get(ns::APP, "after").and_then(|e| e.value.clone()),
                Some(b"repair".to_vec()),
                "{what}"
            );
        }
    }
    assert!(
        refused > cases / 3,
        "most damage makes opening fail: {refused} of {cases}"
    );
}

/// Damage in the middle of the log, in records the index does not hold
/// yet (the power went out after its first checkpoint), loses exactly the
/// damaged record, and the records after it are kept.
#[test]
fn repair_loses_only_the_damaged_record_and_reports_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let (mut store, _) = Store::open_dir(config(&dir)).unwrap();
    let index = config(&dir).index_path();
    let at_checkpoint = std::fs::read(&index).unwrap();
    for i in 0..40 {
        store
            .put(ns::APP, &format!("k{i:02}"), vec![b'x'; 100])
            .unwrap();
    }
    drop(store);
    // The index as the power cut would have left it: at its checkpoint.
    std::fs::write(&index, at_checkpoint).unwrap();
    // The newest segment's second record: its payload's first byte.
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    segments.sort();
    let seg = segments.last().unwrap().clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    let base = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
    let record_len = (bytes.len() - 24) / (40 - base as usize + 1);
    bytes[24 + record_len + 17] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    let err = Store::open_dir(config(&dir)).unwrap_err();
    assert!(err.to_string().contains("corruption"), "{err}");

    let report = repair(&config(&dir), tmp.path()).unwrap();
    assert_eq!(
        report.lost,
        vec![(Seq(base + 1), Seq(base + 1))],
        "{report:?}"
    );
    assert_eq!(report.lost_records(), 1);
    assert_eq!(report.unreadable_tail_bytes, 0);
    assert_eq!(report.next_seq, Seq(41));
    let (store, _) = Store::open_dir(config(&dir)).unwrap();
    assert_eq!(store.len(ns::APP), 39);
    assert!(!store.contains(ns::APP, &format!("k{:02}", base)));
    // The damaged files are kept as they were.
    let kept = report.kept_copy.join("wal").join(seg.file_name().unwrap());
    assert_eq!(std::fs::read(kept).unwrap(), bytes);
}

/// A store at rest — checkpointed, its log compacted to one empty
/// segment — whose index is damaged: every change lived only in the
/// index. The repair says they are lost (all of them, by sequence),
/// brings back the node's setup from the copy each checkpoint keeps
/// aside, and numbers new changes after them, never from 1 again: peers
/// remember how far they read this node's log.
#[test]
fn a_lost_index_over_an_empty_log_is_reported_whole_and_sequences_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    // One segment, large enough (over 1 MiB) that the checkpoint closes
    // and removes it, as a store at rest after much work does.
    let config = |dir: &Path| {
        let mut c = config(dir);
        c.segment_bytes = 16 << 20;
        c
    };
    let (mut store, _) = Store::open_dir(config(&dir)).unwrap();
    // How the node is set up (namespaces kept aside), then values.
    store
        .put("folders", "docs", b"folder docs".to_vec())
        .unwrap();
    store.put("peers", "P1", b"peer one".to_vec()).unwrap();
    store.put("peers", "P2", b"peer two".to_vec()).unwrap();
    store.remove("peers", "P2").unwrap();
    store.checkpoint().unwrap();
    let aside = dir.join(softadastra::store::aside::FILE_NAME);
    let kept = std::fs::read(&aside).unwrap();
    for i in 0..50 {
        store
            .put(ns::APP, &format!("k{i:02}"), vec![b'x'; 32 << 10])
            .unwrap();
    }
    let last = store.last_seq();
    store.checkpoint().unwrap();
    drop(store);
    // Written again only when what it keeps changed.
    assert_eq!(std::fs::read(&aside).unwrap(), kept);
    let segments: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert!(std::fs::metadata(&segments[0]).unwrap().len() <= 64);
    // Damage all through the index's pages (its header left alone).
    let index = config(&dir).index_path();
    let mut bytes = std::fs::read(&index).unwrap();
    for b in bytes.iter_mut().skip(4096) {
        *b ^= 0x5a;
    }
    std::fs::write(&index, &bytes).unwrap();

    let report = repair(&config(&dir), tmp.path()).unwrap();
    assert!(!report.unusable.is_empty(), "{report:?}");
    assert_eq!(report.lost, vec![(Seq(1), last)], "{report:?}");
    assert!(report.lost_anything());
    assert_eq!(report.next_seq, last.next(), "{report:?}");
    assert_eq!(report.kept_aside, Some((Seq(4), 3)), "{report:?}");
    assert!(
        report
            .kept_copy
            .join(softadastra::store::aside::FILE_NAME)
            .is_file()
    );
    let (mut store, _) = Store::open_dir(config(&dir)).unwrap();
    // The values lived only in the index: gone, and said so above. The
    // setup came back from the copy kept aside, tombstone included.
    assert_eq!(store.len(ns::APP), 0);
    assert_eq!(
        store.get("folders", "docs").and_then(|e| e.value.clone()),
        Some(b"folder docs".to_vec())
    );
    assert!(store.contains("peers", "P1"));
    assert!(store.entry("peers", "P2").is_some_and(|e| e.is_tombstone()));
    let seq = store.put(ns::APP, "after", b"repair".to_vec()).unwrap();
    assert!(seq > last, "{seq:?} after {last:?}");
}
