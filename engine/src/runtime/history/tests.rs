//! The history module's tests.

/// Share `root` as folder `f`. The tests play a peer's change by writing
/// the file, which must not be taken for an edit here: versions of local
/// edits are off.
fn share_f(store: &mut crate::store::Store, root: &std::path::Path) -> crate::folder::FolderConfig {
    let config = crate::folder::add(store, "f", root).unwrap();
    crate::index::retention::set_keeps_local_edits(store, "f", false).unwrap();
    config
}

mod parsing {
    use super::super::*;

    #[test]
    fn times_read_back_as_the_stamps_write_them() {
        for secs in [0u64, 1_764_700_000, 1_800_000_123] {
            let text = stamp(secs * 1_000_000_000);
            assert_eq!(parse_time(&text), Some(secs * 1_000_000_000), "{text}");
        }
        assert_eq!(parse_time("1764700000"), Some(1_764_700_000_000_000_000));
        assert_eq!(
            parse_time("2025-12-02 18:26"),
            parse_time("20251202-182600")
        );
        assert_eq!(parse_time("2025-13-02 18:26"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn a_pick_names_one_version() {
        let v = |n: usize, kept_ns: u64| Version {
            n,
            kept: String::new(),
            kept_ns,
            modified: String::new(),
            size: 0,
            hash: None,
            device: None,
            why: String::new(),
            at: PathBuf::new(),
            here: true,
            source: None,
        };
        let rows = || vec![v(1, 300), v(2, 200), v(3, 100)];
        assert_eq!(choose(rows(), "a", Pick::Newest).unwrap().n, 1);
        assert_eq!(choose(rows(), "a", Pick::Number(3)).unwrap().n, 3);
        assert!(choose(rows(), "a", Pick::Number(4)).is_err());
        // At 150 the file was the version kept at 200 (kept after it).
        assert_eq!(choose(rows(), "a", Pick::At(150)).unwrap().n, 2);
        assert_eq!(choose(rows(), "a", Pick::At(50)).unwrap().n, 3);
        let err = choose(rows(), "a", Pick::At(300)).unwrap_err();
        assert!(err.to_string().contains("was the file at"), "{err}");
    }
}

mod restoring {
    use std::sync::Arc;

    use super::super::*;
    use crate::core::ManualClock;
    use crate::store::{Store, StoreConfig};
    use crate::wal::MemStorage;

    const ME: NodeId = NodeId([1; 32]);

    /// Nothing the agent was assembling is left in `dir`.
    fn no_temp_files(dir: &Path) {
        let names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with(".softadastra-tmp")),
            "{names:?}"
        );
    }

    /// A folder whose `a.txt` had the version "old", kept in its trash.
    fn with_kept_version() -> (tempfile::TempDir, Store, FolderConfig, Mutex<ChunkIndex>) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::write(root.join("a.txt"), "old").unwrap();
        let (mut store, _) = Store::open(
            StoreConfig::new("/h"),
            Arc::new(MemStorage::new()),
            Arc::new(ManualClock::new()),
        )
        .unwrap();
        let config = super::share_f(&mut store, &root);
        Indexer::new(config.clone(), ME)
            .scan(&mut store, &Default::default())
            .unwrap();
        let old = index::record(&store, "f", "a.txt").unwrap();
        let chunks = Mutex::new(ChunkIndex::default());
        set_aside(
            &mut store,
            &chunks,
            &root,
            "f",
            "a.txt",
            &root.join("a.txt"),
            Some(&old),
            Why::Replaced,
        )
        .unwrap();
        std::fs::write(root.join("a.txt"), "new").unwrap();
        (dir, store, config, chunks)
    }

    #[test]
    fn a_version_comes_back_in_place_and_what_was_there_is_kept() {
        let (_dir, mut store, config, chunks) = with_kept_version();
        let done = restore(
            StoreAccess::Own(&mut store),
            &chunks,
            ME,
            &config,
            "a.txt",
            Pick::Newest,
            None,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(config.path.join("a.txt")).unwrap(),
            "old"
        );
        assert_eq!(
            std::fs::read_to_string(done.replaced.unwrap()).unwrap(),
            "new"
        );
        let rows = versions(&store, &config, "a.txt").unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].why, "restored over");
        // Indexed at once: the index holds the restored bytes.
        let rec = index::record(&store, "f", "a.txt").unwrap();
        assert_eq!(rec.hash, Some(ContentHash::of(b"old")));
        // No temporary file is left beside it.
        no_temp_files(&config.path);
    }

    #[test]
    fn kept_bytes_that_changed_are_refused_and_nothing_is_put_in_place() {
        let (_dir, mut store, config, chunks) = with_kept_version();
        let rows = versions(&store, &config, "a.txt").unwrap();
        std::fs::write(&rows[0].at, "tampered").unwrap();
        let to = config.path.join("copy.txt");
        let err = restore(
            StoreAccess::Own(&mut store),
            &chunks,
            ME,
            &config,
            "a.txt",
            Pick::Number(1),
            Some(&to),
        )
        .unwrap_err();
        assert!(matches!(err, HistoryError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("do not match its hash"), "{err}");
        assert!(!to.exists());
        // In place: refused before anything at the path moves.
        let err = restore(
            StoreAccess::Own(&mut store),
            &chunks,
            ME,
            &config,
            "a.txt",
            Pick::Number(1),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, HistoryError::Damaged { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(config.path.join("a.txt")).unwrap(),
            "new"
        );
        assert_eq!(versions(&store, &config, "a.txt").unwrap().len(), 1);
        no_temp_files(&config.path);
    }

    #[test]
    fn retention_removes_what_the_policy_no_longer_keeps_and_nothing_else() {
        use crate::index::retention::{self, Policy};
        let (_dir, mut store, config, chunks) = with_kept_version();
        // Two more versions of b.txt, kept at the same (manual) time.
        for text in ["b1", "b2"] {
            let b = config.path.join("b.txt");
            std::fs::write(&b, text).unwrap();
            Indexer::new(config.clone(), ME)
                .scan(&mut store, &Default::default())
                .unwrap();
            let rec = index::record(&store, "f", "b.txt").unwrap();
            set_aside(
                &mut store,
                &chunks,
                &config.path,
                "f",
                "b.txt",
                &b,
                Some(&rec),
                Why::Deleted,
            )
            .unwrap();
        }
        let kept_at = kept::all(&store, "f").unwrap()[0].1.kept_at.0;
        let files = |store: &crate::store::Store| {
            kept::all(store, "f")
                .unwrap()
                .iter()
                .map(|(_, k)| crate::runtime::exec::versions::location(&config.path, k))
                .collect::<Vec<_>>()
        };
        let before = files(&store);
        assert_eq!(before.len(), 3);
        let store = Mutex::new(store);
        // Within the default's days: nothing goes.
        assert_eq!(
            apply_retention(&store, &config, 30, kept_at + 1_000).unwrap(),
            0
        );
        // A cap of 3 bytes keeps the newest versions that fit: b2 (2
        // bytes) stays, the oldest go first.
        let capped = Policy::parse("30d", Some("3")).unwrap();
        retention::set(&mut crate::core::lock(&store), "f", &capped).unwrap();
        assert_eq!(
            apply_retention(&store, &config, 30, kept_at + 1_000).unwrap(),
            2
        );
        let left = files(&crate::core::lock(&store));
        assert_eq!(left.len(), 1);
        assert_eq!(std::fs::read_to_string(&left[0]).unwrap(), "b2");
        for gone in before.iter().filter(|p| !left.contains(p)) {
            assert!(!gone.exists(), "{} still there", gone.display());
        }
        // Past the policy's days, the last one goes too.
        let day = 86_400 * 1_000_000_000;
        assert_eq!(
            apply_retention(&store, &config, 30, kept_at + 31 * day).unwrap(),
            1
        );
        assert!(!left[0].exists());
        // The live files were never touched.
        assert_eq!(
            std::fs::read_to_string(config.path.join("a.txt")).unwrap(),
            "new"
        );
    }
}

mod version_store {
    use std::sync::Arc;

    use super::super::*;
    use crate::core::ManualClock;
    use crate::runtime::exec::versions::{set_aside, store_dir};
    use crate::store::{Store, StoreConfig};
    use crate::wal::MemStorage;

    const ME: NodeId = NodeId([1; 32]);

    fn bytes_under(dir: &Path) -> u64 {
        walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum()
    }

    /// A folder `f` with nothing in it, on an in-memory store.
    fn empty_folder() -> (
        tempfile::TempDir,
        PathBuf,
        Store,
        FolderConfig,
        Mutex<ChunkIndex>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let (mut store, _) = Store::open(
            StoreConfig::new("/h"),
            Arc::new(MemStorage::new()),
            Arc::new(ManualClock::new()),
        )
        .unwrap();
        let config = super::share_f(&mut store, &root);
        (dir, root, store, config, Mutex::new(ChunkIndex::default()))
    }

    /// Pseudo-random bytes, the same every run.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn small_edits_of_a_large_file_cost_a_few_chunks_each_and_every_version_comes_back() {
        let (_dir, root, mut store, config, chunks) = empty_folder();
        let big = root.join("big.bin");
        let size = 8 << 20;
        let mut content = noise(size, 7);
        let mut history = Vec::new();
        let edits = 12u64;
        for i in 0..=edits {
            if i > 0 {
                // Keep what is there, then write the edited file.
                let rec = index::record(&store, "f", "big.bin").unwrap();
                set_aside(
                    &mut store,
                    &chunks,
                    &root,
                    "f",
                    "big.bin",
                    &big,
                    Some(&rec),
                    Why::Replaced,
                )
                .unwrap();
                history.push(content.clone());
                let at = (i as usize * 611_953) % size;
                content[at] ^= 0x5a;
            }
            std::fs::write(&big, &content).unwrap();
            Indexer::new(config.clone(), ME)
                .scan(&mut store, &Default::default())
                .unwrap();
        }
        // The first version kept whole, each later one a chunk or two.
        let kept = bytes_under(&store_dir(&root));
        let max_chunk = 256 << 10;
        assert!(
            kept <= size as u64 + edits * 2 * max_chunk,
            "{kept} bytes kept for {edits} edits of {size}"
        );
        assert!(kept < 2 * size as u64, "{kept}");
        let rows = versions(&store, &config, "big.bin").unwrap();
        assert_eq!(rows.len(), edits as usize);
        // Each comes back byte for byte (n = 1 is the newest).
        for (n, want) in history.iter().rev().enumerate() {
            let to = root.join(format!("back-{n}.bin"));
            restore(
                StoreAccess::Own(&mut store),
                &chunks,
                ME,
                &config,
                "big.bin",
                Pick::Number(n + 1),
                Some(&to),
            )
            .unwrap();
            assert!(std::fs::read(&to).unwrap() == *want, "version {}", n + 1);
            std::fs::remove_file(&to).unwrap();
        }
        // Retention keeping only the newest: its bytes stay (the first
        // version's whole file with them, it shares most of it), the rest go.
        let newest = rows[0].kept_ns;
        let st = Mutex::new(store);
        {
            let mut s = crate::core::lock(&st);
            // A cap of one version's size.
            let cap = size.to_string();
            let policy = crate::index::retention::Policy::parse("30d", Some(&cap)).unwrap();
            crate::index::retention::set(&mut s, "f", &policy).unwrap();
        }
        assert_eq!(
            apply_retention(&st, &config, 30, newest + 1).unwrap(),
            edits as usize - 1
        );
        let mut store = st.into_inner().unwrap();
        let left = versions(&store, &config, "big.bin").unwrap();
        assert_eq!(left.len(), 1);
        // The edits add up: the newest holds every changed chunk but the
        // last, so little goes.
        let after = bytes_under(&store_dir(&root));
        assert!(after <= kept, "{after} > {kept}");
        {
            let to = root.join("last.bin");
            restore(
                StoreAccess::Own(&mut store),
                &chunks,
                ME,
                &config,
                "big.bin",
                Pick::Newest,
                Some(&to),
            )
            .unwrap();
            assert!(std::fs::read(&to).unwrap() == *history.last().unwrap());
        }
        // Past the policy's days nothing is kept, and nothing stored.
        let st = Mutex::new(store);
        let day = 86_400 * 1_000_000_000;
        assert_eq!(
            apply_retention(&st, &config, 30, newest + 31 * day).unwrap(),
            1
        );
        assert_eq!(bytes_under(&store_dir(&root)), 0);
    }

    #[test]
    fn bytes_that_are_not_their_record_are_kept_as_they_are_never_dropped() {
        let (_dir, root, mut store, config, chunks) = empty_folder();
        // "same" is kept once, whole, from a.txt.
        for p in ["a.txt", "b.txt"] {
            std::fs::write(root.join(p), "same").unwrap();
        }
        Indexer::new(config.clone(), ME)
            .scan(&mut store, &Default::default())
            .unwrap();
        let a = index::record(&store, "f", "a.txt").unwrap();
        set_aside(
            &mut store,
            &chunks,
            &root,
            "f",
            "a.txt",
            &root.join("a.txt"),
            Some(&a),
            Why::Deleted,
        )
        .unwrap();
        // b.txt is rewritten in place, same length, after it was indexed:
        // its record says "same", its bytes are "diff".
        let b = index::record(&store, "f", "b.txt").unwrap();
        std::fs::write(root.join("b.txt"), "diff").unwrap();
        set_aside(
            &mut store,
            &chunks,
            &root,
            "f",
            "b.txt",
            &root.join("b.txt"),
            Some(&b),
            Why::Replaced,
        )
        .unwrap();
        let rows = versions(&store, &config, "b.txt").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].hash, Some(ContentHash::of(b"diff").to_string()));
        let to = root.join("back.txt");
        restore(
            StoreAccess::Own(&mut store),
            &chunks,
            ME,
            &config,
            "b.txt",
            Pick::Newest,
            Some(&to),
        )
        .unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"diff");
    }

    #[test]
    fn a_damaged_chunk_is_refused_and_nothing_is_placed() {
        let (_dir, root, mut store, config, chunks) = empty_folder();
        let big = root.join("big.bin");
        let mut content = noise(4 << 20, 3);
        for i in 0..3 {
            std::fs::write(&big, &content).unwrap();
            Indexer::new(config.clone(), ME)
                .scan(&mut store, &Default::default())
                .unwrap();
            let rec = index::record(&store, "f", "big.bin").unwrap();
            set_aside(
                &mut store,
                &chunks,
                &root,
                "f",
                "big.bin",
                &big,
                Some(&rec),
                Why::Deleted,
            )
            .unwrap();
            content[(1 << 20) + i * 300_000] ^= 1;
        }
        // The newest is stored as chunks; spoil one of its loose ones.
        let loose: Vec<_> = walkdir::WalkDir::new(store_dir(&root).join("chunks"))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .collect();
        assert!(!loose.is_empty());
        for e in &loose {
            std::fs::write(e.path(), b"spoiled").unwrap();
        }
        let err = restore(
            StoreAccess::Own(&mut store),
            &chunks,
            ME,
            &config,
            "big.bin",
            Pick::Newest,
            None,
        )
        .unwrap_err();
        assert!(matches!(err, HistoryError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("damaged chunk"), "{err}");
        assert!(!big.exists(), "nothing placed");
    }
}

mod whole_folder {
    use std::time::Duration;

    use super::super::*;
    use crate::runtime::exec::versions::set_aside;
    use crate::store::{Store, StoreConfig};

    const ME: NodeId = NodeId([1; 32]);

    fn now_ns() -> u64 {
        crate::core::Clock::wall(&crate::core::SystemClock).as_nanos()
    }

    /// Folder `f` (at the `PathBuf`) on a store on disk, with the system's
    /// clock: a folder restore compares kept times with real moments.
    fn on_disk() -> (
        tempfile::TempDir,
        tempfile::TempDir,
        PathBuf,
        Mutex<Store>,
        FolderConfig,
    ) {
        let home = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let (mut st, _) = Store::open_dir(StoreConfig::new(home.path())).unwrap();
        let config = super::share_f(&mut st, &root);
        (home, dir, root, Mutex::new(st), config)
    }

    fn index(store: &Mutex<Store>, config: &FolderConfig) {
        Indexer::new(config.clone(), ME)
            .scan(StoreAccess::Shared(store), &Default::default())
            .unwrap();
    }

    /// As a peer's change would: keep what is at `path`, then write
    /// `text` (or nothing: a deletion).
    fn replaced(store: &Mutex<Store>, config: &FolderConfig, path: &str, text: Option<&str>) {
        let abs = config.path.join(path);
        let mut st = crate::core::lock(store);
        let rec = index::record(&st, "f", path).unwrap();
        let why = if text.is_some() {
            Why::Replaced
        } else {
            Why::Deleted
        };
        let chunks = Mutex::default();
        set_aside(
            &mut st,
            &chunks,
            &config.path,
            "f",
            path,
            &abs,
            Some(&rec),
            why,
        )
        .unwrap();
        drop(st);
        if let Some(t) = text {
            std::fs::write(&abs, t).unwrap();
        }
        index(store, config);
    }

    #[test]
    fn a_folder_goes_back_to_a_moment_and_a_second_run_changes_nothing() {
        let (_home, _dir, root, store, config) = on_disk();
        for (p, t) in [("a.txt", "a1"), ("sub/b.txt", "b1"), ("d.txt", "d1")] {
            std::fs::create_dir_all(root.join(p).parent().unwrap()).unwrap();
            std::fs::write(root.join(p), t).unwrap();
        }
        index(&store, &config);
        std::thread::sleep(Duration::from_millis(30));
        let moment = now_ns();
        std::thread::sleep(Duration::from_millis(30));
        replaced(&store, &config, "a.txt", Some("a2"));
        replaced(&store, &config, "sub/b.txt", None);
        std::fs::write(root.join("c.txt"), "created since").unwrap();
        // d.txt edited in place: no earlier version is kept here.
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(root.join("d.txt"))
            .and_then(|mut f| f.write_all(b"d2"))
            .unwrap();
        index(&store, &config);

        let chunks = Mutex::default();
        let dry = restore_folder(&store, &chunks, ME, "f", moment, true).unwrap();
        assert!(!dry.carried_out);
        let back: Vec<&str> = dry.bring_back.iter().map(|b| b.path.as_str()).collect();
        assert_eq!(back, ["a.txt", "sub/b.txt"], "{dry:?}");
        assert_eq!(dry.set_aside, ["c.txt"]);
        assert_eq!(dry.left.len(), 1);
        assert_eq!(dry.left[0].path, "d.txt");
        assert_eq!(
            std::fs::read_to_string(root.join("a.txt")).unwrap(),
            "a2",
            "a dry run changes nothing"
        );

        let done = restore_folder(&store, &chunks, ME, "f", moment, false).unwrap();
        assert!(done.carried_out && done.failed.is_empty(), "{done:?}");
        let read = |p: &str| std::fs::read_to_string(root.join(p)).ok();
        assert_eq!(read("a.txt").as_deref(), Some("a1"));
        assert_eq!(read("sub/b.txt").as_deref(), Some("b1"));
        assert_eq!(read("c.txt"), None);
        assert_eq!(read("d.txt").as_deref(), Some("d2"));
        {
            let st = crate::core::lock(&store);
            // Indexed at once, so it syncs; what it replaced is kept.
            let a = index::record(&st, "f", "a.txt").unwrap();
            assert_eq!(a.hash, Some(ContentHash::of(b"a1")));
            let c = index::record(&st, "f", "c.txt").unwrap();
            assert!(c.deleted);
            let rows = versions(&st, &config, "c.txt").unwrap();
            assert_eq!(rows[0].why, "restored over");
            let rows = versions(&st, &config, "a.txt").unwrap();
            assert_eq!(rows[0].why, "restored over");
            assert!(st.list(RESTORE_NS, "").next().is_none(), "job forgotten");
        }

        // Again: nothing left to do.
        let again = restore_folder(&store, &chunks, ME, "f", moment, false).unwrap();
        assert!(again.bring_back.is_empty(), "{again:?}");
        assert!(again.set_aside.is_empty(), "{again:?}");

        // A restore cut short is finished at the next start.
        std::fs::write(root.join("a.txt"), "a3").unwrap();
        index(&store, &config);
        {
            let mut st = crate::core::lock(&store);
            let job = Job { at: moment };
            st.put(RESTORE_NS, "f", job.encode()).unwrap();
        }
        replaced(&store, &config, "a.txt", Some("a4"));
        let resumed = resume(&store, &chunks, ME, "f").unwrap().unwrap();
        assert!(resumed.carried_out);
        assert_eq!(read("a.txt").as_deref(), Some("a1"));
        assert!(resume(&store, &chunks, ME, "f").is_none());
    }

    #[test]
    fn a_version_whose_bytes_are_gone_fails_alone_and_its_file_is_untouched() {
        let (_home, _dir, root, store, config) = on_disk();
        for (p, t) in [("a b é.txt", "a1"), ("b.txt", "b1")] {
            std::fs::write(root.join(p), t).unwrap();
        }
        index(&store, &config);
        std::thread::sleep(Duration::from_millis(30));
        let moment = now_ns();
        std::thread::sleep(Duration::from_millis(30));
        replaced(&store, &config, "a b é.txt", Some("a2"));
        replaced(&store, &config, "b.txt", Some("b2"));
        let blob = crate::runtime::exec::versions::blob_path(&root, &ContentHash::of(b"a1"));
        std::fs::remove_file(&blob).unwrap();
        let chunks = Mutex::default();
        let done = restore_folder(&store, &chunks, ME, "f", moment, false).unwrap();
        assert_eq!(done.failed.len(), 1, "{done:?}");
        assert_eq!(done.failed[0].path, "a b é.txt");
        assert!(done.failed[0].why.contains("cannot be read"), "{done:?}");
        let read = |p: &str| std::fs::read_to_string(root.join(p)).ok();
        assert_eq!(read("a b é.txt").as_deref(), Some("a2"), "untouched");
        assert_eq!(read("b.txt").as_deref(), Some("b1"));
    }
}
