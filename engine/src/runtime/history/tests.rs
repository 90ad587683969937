//! The history module's tests.

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
        let config = crate::folder::add(&mut store, "f", &root).unwrap();
        Indexer::new(config.clone(), ME)
            .scan(&mut store, &Default::default())
            .unwrap();
        let old = index::record(&store, "f", "a.txt").unwrap();
        let chunks = Mutex::new(ChunkIndex::default());
        let at = to_trash(&chunks, &root, "a.txt", &root.join("a.txt"), Some(&old)).unwrap();
        record_kept(&mut store, &root, "f", "a.txt", &at, &old, Why::Replaced).unwrap();
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
        assert_eq!(
            std::fs::read_to_string(config.path.join("a.txt")).unwrap(),
            "new"
        );
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
            let at = to_trash(&chunks, &config.path, "b.txt", &b, Some(&rec)).unwrap();
            record_kept(
                &mut store,
                &config.path,
                "f",
                "b.txt",
                &at,
                &rec,
                Why::Deleted,
            )
            .unwrap();
        }
        let kept_at = kept::all(&store, "f").unwrap()[0].1.kept_at.0;
        let files = |store: &crate::store::Store| {
            kept::all(store, "f")
                .unwrap()
                .iter()
                .map(|(_, k)| match &k.stored {
                    Stored::File(at) => config.path.join(at),
                })
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
