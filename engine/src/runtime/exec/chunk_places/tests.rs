//! Tests of the chunk places' file: its format, packing, flushing.

use super::*;

fn golden(format: u64) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../data/golden/chunks-v{format}.redb"))
}

fn stamp() -> Stamp {
    Stamp {
        size: 70_000,
        mtime_ns: 1_700_000_000_123_456_789,
        inode: 42,
    }
}

/// The hash numbered `i` (random-looking, as content hashes are).
fn hash(i: u32) -> ContentHash {
    ContentHash(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

/// The place numbered `i` under `/r`.
fn place(i: u32) -> Place {
    (
        PathBuf::from(format!("/r/d{}/f{i}.txt", i % 97)),
        0,
        100,
        stamp(),
    )
}

/// A table at `path` holding places 0..`n` under `/r`, flushed, at
/// sequence 1.
fn filled(path: &Path, n: u32) -> PlaceTable {
    let mut t = PlaceTable::open(path);
    for i in 0..n {
        t.put(Path::new("/r"), &hash(i), place(i));
    }
    t.reached(1);
    t.flush();
    t
}

/// The file's format 2, pinned: every later release reads the places
/// this one wrote (or, at a new format, builds them again — never
/// misreads them). `SOFTADASTRA_BLESS=1` writes the file anew, for a
/// deliberate new format only.
#[test]
fn chunks_v2_golden() {
    let root = Path::new("/home/ada/docs");
    if std::env::var_os("SOFTADASTRA_BLESS").is_some() {
        let _ = std::fs::remove_file(golden(FORMAT));
        let mut t = PlaceTable::open_file(&golden(FORMAT)).unwrap();
        t.put(
            root,
            &ContentHash([6; 32]),
            (root.join("a/report.txt"), 65_536, 4_464, stamp()),
        );
        t.put(
            Path::new(""),
            &ContentHash([7; 32]),
            (PathBuf::from("/elsewhere/x"), 0, 10, stamp()),
        );
        t.reached(9);
        t.flush();
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(FILE_NAME);
    std::fs::copy(golden(FORMAT), &copy).unwrap();
    let mut t = PlaceTable::open_file(&copy).unwrap();
    assert_eq!(t.at_seq(), Some(9));
    assert_eq!(
        t.get(root, &ContentHash([6; 32])),
        Some((root.join("a/report.txt"), 65_536, 4_464, stamp()))
    );
    assert_eq!(
        t.get(Path::new(""), &ContentHash([7; 32])),
        Some((PathBuf::from("/elsewhere/x"), 0, 10, stamp()))
    );
    assert_eq!(t.get(root, &ContentHash([7; 32])), None);
}

/// The places an earlier release wrote (format 1, the whole hash as
/// key) are not read as this format's: the file is made again, and
/// the places found again from the store.
#[test]
fn the_places_of_format_1_are_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(FILE_NAME);
    std::fs::copy(golden(1), &copy).unwrap();
    assert!(PlaceTable::open_file(&copy).is_err());
    let mut t = PlaceTable::open(&copy);
    assert_eq!(t.at_seq(), None, "a whole build is due");
    assert_eq!(
        t.get(Path::new("/home/ada/docs"), &ContentHash([6; 32])),
        None
    );
}

/// At rest, a file of places entered in no order is packed: smaller,
/// every place kept; and not again until it changes.
#[test]
fn at_rest_the_places_are_packed_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let root = Path::new("/r");
    // As a sync enters them: a flush at a time, in no order.
    let mut t = filled(&path, 120_000);
    let before = std::fs::metadata(&path).unwrap().len();
    t.pack_at_rest();
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(
        after * 10 < before * 8,
        "{after} bytes after, {before} before"
    );
    assert!(!t.changed_since_pack);
    // The sequence reached moving on, as it does at rest, is no change
    // worth packing for.
    t.reached(2);
    t.flush();
    assert!(!t.changed_since_pack);
    // (Its commit grew the file by a region, mostly a hole: a pack would
    // shrink it back.)
    let grown = std::fs::metadata(&path).unwrap().len();
    t.pack_at_rest();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        grown,
        "no place changed: not packed again"
    );
    for i in (0..120_000).step_by(101) {
        assert_eq!(t.get(root, &hash(i)), Some(place(i)), "place {i}");
    }
    t.put(root, &hash(999_999), place(7));
    t.pack_at_rest();
    drop(t);
    let mut t = PlaceTable::open(&path);
    assert_eq!(t.at_seq(), Some(2));
    assert_eq!(t.get(root, &hash(999_999)), Some(place(7)));
    assert_eq!(t.get(root, &hash(5)), Some(place(5)));
}

/// A file of another format is not read as this one: it is made again.
#[test]
fn another_format_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    {
        let mut t = PlaceTable::open(&path);
        t.put(
            Path::new("/r"),
            &ContentHash([1; 32]),
            (PathBuf::from("/r/f"), 0, 1, stamp()),
        );
        t.reached(3);
        t.flush();
        let txn = t.db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("format", FORMAT + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let mut t = PlaceTable::open(&path);
    assert_eq!(t.at_seq(), None);
    assert_eq!(t.get(Path::new("/r"), &ContentHash([1; 32])), None);
}

/// A whole build frees every page at once and random hashes leave the
/// rest half empty: the file is compacted, and every place stays.
#[test]
fn a_file_mostly_waste_is_compacted_and_keeps_every_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let root = Path::new("/r");
    let mut t = filled(&path, 150_000);
    let full = std::fs::metadata(&path).unwrap().len();
    // A whole build of a folder that shrank.
    t.clear();
    for i in 0..15_000 {
        t.put(root, &hash(i), place(i));
    }
    t.reached(2);
    t.flush();
    // Not while the build fills it: once, when it settles.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), full);
    t.settle();
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(after * 4 < full, "{after} bytes after, {full} before");
    drop(t);
    let mut t = PlaceTable::open(&path);
    assert_eq!(t.at_seq(), Some(2));
    for i in (0..15_000).step_by(7) {
        assert_eq!(t.get(root, &hash(i)), Some(place(i)), "place {i}");
    }
    assert_eq!(t.get(root, &hash(20_000)), None);
}

/// Places wait in memory while changes come, and go to disk once they
/// pause, without a change to carry them.
#[test]
fn pending_places_go_to_disk_once_changes_pause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let root = Path::new("/r");
    let mut t = PlaceTable::open(&path);
    t.reached(1);
    t.put(root, &ContentHash([3; 32]), (root.join("f"), 0, 1, stamp()));
    t.flush_when_quiet();
    assert_eq!(t.pending.len(), 1, "written a moment ago: it waits");
    std::thread::sleep(QUIET + std::time::Duration::from_millis(100));
    t.flush_when_quiet();
    assert!(t.pending.is_empty());
    // Nothing pending: read from the file.
    assert_eq!(
        t.get(root, &ContentHash([3; 32])),
        Some((root.join("f"), 0, 1, stamp()))
    );
}
