use super::*;

/// The record of a file holding `bytes`, chunked as the scanner would.
pub(super) fn file_record(bytes: &[u8]) -> FileRecord {
    let content = crate::fs::chunk::chunk_bytes(bytes, Default::default());
    FileRecord {
        kind: EntryKind::File,
        size: content.size,
        mtime_ns: 1,
        mode: 0o644,
        inode: 7,
        hash: Some(content.hash),
        chunks: content.chunks,
        link_target: None,
        version: VersionVector::default(),
        modified_by: NodeId::LOCAL,
        deleted: false,
    }
}

/// A one-chunk file is taken as checked only when its chunk is the
/// whole announced file; any other record is hashed, so a record whose
/// chunks do not make its hash is caught.
#[test]
fn a_small_file_is_hashed_unless_its_one_chunk_is_the_file() {
    let bytes = b"one small file".to_vec();
    let mut record = file_record(&bytes);
    let hash = ContentHash::of(&bytes);
    assert_eq!(record.chunks.len(), 1);
    assert_eq!(small_file_hash(&record, &bytes), hash);
    // A peer announcing a file hash its only chunk does not have.
    let other = ContentHash::of(b"something else");
    record.hash = Some(other);
    assert_eq!(small_file_hash(&record, &bytes), hash);
    assert!(finish_file(&tempfile::tempfile().unwrap(), hash, &record).is_err());
}

/// Resuming keeps the chunks at the start of the earlier attempt's
/// file whose bytes check out, up to the first that does not, and the
/// whole-file hash comes out right when the rest is written after
/// them. A file of the wrong size, or none, starts afresh.
#[test]
fn a_resumed_assembly_keeps_only_the_checked_chunks_at_the_start() {
    let mut rng = fastrand::Rng::with_seed(3);
    let bytes: Vec<u8> = (0..1 << 20).map(|_| rng.u8(..)).collect();
    let record = file_record(&bytes);
    assert!(record.chunks.len() > 4, "{} chunks", record.chunks.len());
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("partial");
    // Chunks 0 and 1 written, chunk 2 damaged, chunk 3 right again.
    let mut partial = vec![0u8; bytes.len()];
    let end = |i: usize| (record.chunks[i].offset + u64::from(record.chunks[i].len)) as usize;
    partial[..end(1)].copy_from_slice(&bytes[..end(1)]);
    partial[end(2)..end(3)].copy_from_slice(&bytes[end(2)..end(3)]);
    std::fs::write(&tmp, &partial).unwrap();
    let (mut f, mut hasher, kept, at) = open_assembly(&tmp, &record, true).unwrap();
    assert_eq!((kept, at), (2, end(1) as u64));
    f.write_all(&bytes[end(1)..]).unwrap();
    hasher.update(&bytes[end(1)..]);
    assert_eq!(
        ContentHash::from(hasher.finalize()),
        ContentHash::of(&bytes)
    );
    drop(f);
    assert_eq!(std::fs::read(&tmp).unwrap(), bytes);
    // Not resuming, or a file of another size: a new, empty file.
    for (resume, len) in [(false, bytes.len()), (true, 10)] {
        std::fs::write(&tmp, &bytes[..len]).unwrap();
        let (_, _, kept, at) = open_assembly(&tmp, &record, resume).unwrap();
        assert_eq!((kept, at), (0, 0));
        assert_eq!(std::fs::read(&tmp).unwrap(), vec![0u8; bytes.len()]);
    }
}

/// An unfinished download is handed back only for the content it was
/// for; otherwise, when replaced, or when left alone too long, its
/// file is deleted.
#[test]
fn unfinished_downloads_are_kept_for_their_content_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, b"partial").unwrap();
        p
    };
    let (h1, h2) = (Some(ContentHash::of(b"one")), Some(ContentHash::of(b"two")));
    let now = Instant::now();
    let partials = Partials::default();
    let a = file("a");
    partials.keep("docs", "f", a.clone(), h1, now);
    assert_eq!(partials.take("docs", "f", h2), None);
    assert!(!a.exists(), "kept for other content: deleted");
    let (b, c) = (file("b"), file("c"));
    partials.keep("docs", "f", b.clone(), h1, now);
    partials.keep("docs", "f", c.clone(), h1, now);
    assert!(!b.exists(), "replaced: deleted");
    assert_eq!(partials.take("docs", "f", h1), Some(c.clone()));
    assert_eq!(partials.take("docs", "f", h1), None, "handed out once");
    partials.keep("docs", "f", c.clone(), h1, now);
    let hour = Duration::from_secs(3600);
    assert_eq!(partials.prune(now + hour / 2, hour), 0);
    assert_eq!(partials.prune(now + hour, hour), 1);
    assert!(!c.exists(), "left alone an hour: deleted");
}

/// A destination's parents are refused when one is a symlink (or the
/// destination is outside the root), made only when missing.
#[cfg(unix)]
#[test]
fn parents_are_looked_at_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    std::fs::write(root.join("file"), b"").unwrap();
    assert_eq!(parents(&root, &root.join("a/b/f")), Parents::Real);
    assert_eq!(parents(&root, &root.join("f")), Parents::Real);
    assert_eq!(parents(&root, &root.join("a/new/f")), Parents::Missing);
    assert_eq!(parents(&root, &root.join("file/f")), Parents::Missing);
    assert_eq!(parents(&root, &root.join("link/f")), Parents::Refused);
    // A symlinked ancestor, the parent itself real behind it.
    std::fs::create_dir_all(outside.join("inner")).unwrap();
    assert_eq!(parents(&root, &root.join("link/inner/f")), Parents::Refused);
    assert_eq!(parents(&root, &outside.join("f")), Parents::Refused);
    let dest = |rel: &str| Dest {
        root: root.clone(),
        abs: root.join(rel),
        tmp: root.join("unused"),
    };
    dest("a/new/deeper/f")
        .prepare("docs", "a/new/deeper/f")
        .unwrap();
    assert!(root.join("a/new/deeper").is_dir());
    assert!(
        dest("link/inner/f")
            .prepare("docs", "link/inner/f")
            .is_err()
    );
    assert!(dest("file/f").prepare("docs", "file/f").is_err());
}

/// Every job handed to the writers runs once and its result comes back
/// to its own caller, however many wait at once.
#[test]
fn writers_run_every_job_and_answer_its_caller() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let writers = Arc::new(Writers::new(3));
    let results = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..500u32 {
            let w = writers.clone();
            tasks.spawn(async move {
                let got = w
                    .run(move || {
                        if i % 7 == 0 {
                            Err(WorkError::new(Cause::Io, format!("no {i}")))
                        } else {
                            Ok(i * 2)
                        }
                    })
                    .await;
                (i, got)
            });
        }
        tasks.join_all().await
    });
    assert_eq!(results.len(), 500);
    // A job that panics fails its caller; the threads keep working.
    let after = rt.block_on(async {
        // More panics than threads: a thread a panic ended would leave
        // none to run the jobs after.
        let mut failed = Vec::new();
        for _ in 0..4 {
            let bug = || -> Result<u32, WorkError> { panic!("a bug") };
            failed.push(writers.run(bug).await);
        }
        let mut fine = Vec::new();
        for i in 0..6 {
            fine.push(writers.run(move || Ok(i)).await);
        }
        (failed, fine)
    });
    let failed = Err(WorkError::new(
        Cause::Io,
        "writing the file failed unexpectedly",
    ));
    assert!(after.0.iter().all(|r| *r == failed), "{:?}", after.0);
    assert_eq!(
        after.1,
        (0..6).map(Ok).collect::<Vec<Result<u32, WorkError>>>()
    );
    for (i, got) in results {
        if i % 7 == 0 {
            assert_eq!(got, Err(WorkError::new(Cause::Io, format!("no {i}"))));
        } else {
            assert_eq!(got, Ok(i * 2));
        }
    }
}

#[test]
fn a_batch_chunk_reply_answers_once_even_when_dropped() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    drop(batch_reply(tx.clone(), 3, 7));
    let (n, i, answer) = rx.try_recv().unwrap();
    assert_eq!((n, i), (3, 7));
    assert_eq!(
        answer.unwrap_err(),
        WorkError::transfer("the fetch was dropped")
    );
    batch_reply(tx, 4, 1)(Ok(None));
    let (n, i, answer) = rx.try_recv().unwrap();
    assert_eq!((n, i), (4, 1));
    assert!(matches!(answer, Ok(None)));
    assert!(rx.try_recv().is_err(), "each reply answers once");
}

#[test]
fn a_new_file_never_replaces_one_created_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let (tmp, dest) = (dir.path().join("tmp"), dir.path().join("dest"));
    std::fs::write(&tmp, b"received").unwrap();
    std::fs::write(&dest, b"the user's").unwrap();
    let e = rename_new(&tmp, &dest).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&dest).unwrap(), b"the user's");
    assert_eq!(std::fs::read(&tmp).unwrap(), b"received");
    std::fs::remove_file(&dest).unwrap();
    rename_new(&tmp, &dest).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"received");
    assert!(!tmp.exists());
}

/// A file moving to the trash is findable at one of its two places
/// throughout (a rename seen as a deletion and an addition copies its
/// chunks from wherever the file is, fetching none), and only at the
/// one it ended up at afterwards.
#[test]
fn a_file_moving_to_the_trash_is_never_at_neither_place() {
    let record = file_record(b"the same bytes under a new name");
    let hash = record.chunks[0].hash;
    let (from, to) = (
        Path::new("/f/a.bin"),
        Path::new("/f/.softadastra/trash/1/a.bin"),
    );
    let paths = |ix: &mut ChunkIndex| -> Vec<PathBuf> {
        ix.places(&hash).into_iter().map(|p| p.0).collect()
    };
    for moved in [true, false] {
        let mut ix = ChunkIndex::default();
        ix.insert(from, &record);
        ix.trashing(to, &record);
        assert_eq!(paths(&mut ix), [from, to], "old place first while it moves");
        ix.trashed(from, to, &record, moved);
        let end = if moved { to } else { from };
        assert_eq!(paths(&mut ix), [end]);
    }
}

/// Issue 19: versions of one path kept in the same second each keep
/// a name of their own; nothing in the trash is ever replaced.
#[test]
fn versions_kept_in_one_second_never_replace_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("sub")).unwrap();
    let chunks = std::sync::Mutex::new(ChunkIndex::default());
    let abs = root.join("sub/x.txt");
    let mut kept = Vec::new();
    for i in 0..12 {
        std::fs::write(&abs, format!("version {i}")).unwrap();
        let record = file_record(format!("version {i}").as_bytes());
        kept.push(to_trash(&chunks, root, "sub/x.txt", &abs, Some(&record)).unwrap());
        assert!(!abs.exists());
    }
    let mut distinct = kept.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 12, "{kept:?}");
    for (i, p) in kept.iter().enumerate() {
        assert_eq!(std::fs::read_to_string(p).unwrap(), format!("version {i}"));
        assert!(p.starts_with(root.join(META_DIR).join(TRASH_DIR)));
    }
    // A name as long as a name can be still gets numbered copies that fit.
    let long = "n".repeat(255);
    for i in 0..3 {
        std::fs::write(root.join(&long), format!("long {i}")).unwrap();
        let p = to_trash(&chunks, root, &long, &root.join(&long), None).unwrap();
        assert!(p.file_name().unwrap().len() <= 255);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("long {i}"));
    }
}

/// Issue 19: a download of a file whose name is as long as a name may
/// be is assembled under a name that fits too.
#[test]
fn temporary_names_fit_whatever_the_name_length() {
    for len in [1, 200, 229, 230, 255] {
        let abs = Path::new("/f/d").join("é".repeat(len / 2) + &"x".repeat(len % 2));
        let tmp = temp_path(&abs);
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert!(
            name.len() <= crate::fs::path::NAME_MAX,
            "{len}: {}",
            name.len()
        );
        assert!(name.starts_with(TEMP_PREFIX));
        assert_eq!(tmp.parent(), abs.parent());
    }
}

#[test]
fn old_trash_batches_go_and_recent_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let trash = dir.path().join(META_DIR).join(TRASH_DIR);
    for (name, file) in [
        ("1000", "a.txt"),
        ("5000", "sub/b.txt"),
        ("notes", "keep.txt"),
    ] {
        let p = trash.join(name).join(file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"x").unwrap();
    }
    let keep = Duration::from_secs(2000);
    assert_eq!(prune_trash(dir.path(), keep, 4000).unwrap(), 1);
    assert!(!trash.join("1000").exists());
    assert!(trash.join("5000/sub/b.txt").exists());
    assert!(
        trash.join("notes/keep.txt").exists(),
        "not a time: left alone"
    );
    assert_eq!(prune_trash(dir.path(), keep, 4000).unwrap(), 0);
    assert_eq!(prune_trash(dir.path(), keep, 1_000_000).unwrap(), 1);
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        prune_trash(empty.path(), keep, 1).unwrap(),
        0,
        "no trash yet"
    );
}

/// A store on disk (under the returned directory) sharing folder `docs`
/// at `<dir>/docs`, and that folder's root.
pub(super) fn store_sharing_docs() -> (tempfile::TempDir, Store, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) =
        Store::open_dir(crate::store::StoreConfig::new(dir.path().join("store"))).unwrap();
    let root = dir.path().join("docs");
    std::fs::create_dir(&root).unwrap();
    folder::add(&mut store, "docs", &root).unwrap();
    (dir, store, root)
}

/// Record `record` at `rel` in folder `docs`.
pub(super) fn put(store: &mut Store, rel: &str, record: &FileRecord) {
    let value = postcard::to_allocvec(record).unwrap();
    store
        .put(
            crate::store::ns::FILES,
            &folder::file_key("docs", rel),
            value,
        )
        .unwrap();
}

/// Issue 21: a peer asking for the chunks of a file just indexed costs
/// the records changed since the last look, not a walk of the folder;
/// a stale place or a change of folders still rebuilds the whole index.
#[test]
fn the_chunk_index_reads_only_what_changed_since_its_last_look() {
    let (_dir, mut store, root) = store_sharing_docs();
    for i in 0..50 {
        put(
            &mut store,
            &format!("f{i}"),
            &file_record(format!("old {i}").as_bytes()),
        );
    }
    let mut ix = ChunkIndex::default();
    let first = file_record(b"old 7").chunks[0].hash;
    assert_eq!(ix.find(&store, &first, true, false)[0].0, root.join("f7"));
    assert_eq!(ix.changes_since_whole, 0, "the first look reads everything");

    let fresh = file_record(b"a new file");
    put(&mut store, "new", &fresh);
    let places = ix.find(&store, &fresh.chunks[0].hash, true, false);
    assert_eq!(places[0].0, root.join("new"));
    assert_eq!(ix.changes_since_whole, 1, "one record read, not 51");

    // A deleted file's place stays until it proves stale; then the whole
    // index is rebuilt and the chunk is found nowhere.
    let mut gone = file_record(b"a new file");
    gone.deleted = true;
    put(&mut store, "new", &gone);
    ix.refresh(&store, Rebuild::Missing);
    assert_eq!(ix.places(&fresh.chunks[0].hash).len(), 1);
    // (A stale place rebuilds at most every 250 ms.)
    ix.built = Instant::now().checked_sub(Duration::from_secs(1));
    assert!(
        ix.find(&store, &fresh.chunks[0].hash, true, true)
            .is_empty()
    );
    assert_eq!(ix.changes_since_whole, 0);
}

/// Issue 21: the shared files' chunk places are kept on disk with the
/// sequence they reflect: a restart goes on from there (the records
/// changed since, not a walk of every record), and a file it cannot read
/// is made again from the store, never trusted.
#[test]
fn the_chunk_places_survive_a_restart_and_a_damaged_file_is_rebuilt() {
    let (dir, mut store, root) = store_sharing_docs();
    // More than one flush's worth, so some places are read from disk.
    let n = super::chunk_places::FLUSH_AT + 100;
    let ops = (0..n)
        .map(|i| crate::store::Op::Put {
            ns: crate::store::ns::FILES.into(),
            key: folder::file_key("docs", &format!("d/f{i}")),
            value: postcard::to_allocvec(&file_record(format!("bytes {i}").as_bytes())).unwrap(),
            origin: crate::core::NodeId::LOCAL,
            timestamp: crate::core::Timestamp(1),
        })
        .collect();
    store.apply_batch(ops).unwrap();
    let path = dir.path().join("store").join(super::CHUNK_PLACES_FILE);
    let seven = file_record(b"bytes 7").chunks[0].hash;
    {
        let mut ix = ChunkIndex::open(&path);
        assert_eq!(ix.find(&store, &seven, true, false)[0].0, root.join("d/f7"));
    }
    assert!(path.is_file());

    // Again, after a change made while it was closed.
    let fresh = file_record(b"written while the agent was stopped");
    put(&mut store, "new", &fresh);
    let mut ix = ChunkIndex::open(&path);
    assert_eq!(
        ix.at_seq,
        store.last_seq().0 - 1,
        "goes on from where it was"
    );
    let last = file_record(format!("bytes {}", n - 1).as_bytes()).chunks[0].hash;
    assert_eq!(
        ix.find(&store, &fresh.chunks[0].hash, true, false)[0].0,
        root.join("new")
    );
    assert_eq!(ix.changes_since_whole, 1, "one record read, not {}", n + 1);
    assert_eq!(ix.places(&last)[0].0, root.join(format!("d/f{}", n - 1)));
    assert_eq!(ix.places(&seven)[0].1, 0);
    // A place the disk lost without the sequence showing it (a store put
    // back from a copy): a peer asking for it gets one whole rebuild.
    ix.places.remove(&root, &seven);
    ix.places.flush();
    assert!(!ix.whole_this_run);
    assert_eq!(ix.find(&store, &seven, true, false)[0].0, root.join("d/f7"));
    assert!(ix.whole_this_run);
    drop(ix);

    // A damaged file: read again from the store, whole.
    std::fs::write(
        &path,
        b"not a database at all, but long enough to look like a header",
    )
    .unwrap();
    let mut ix = ChunkIndex::open(&path);
    assert_eq!(ix.find(&store, &seven, true, false)[0].0, root.join("d/f7"));
    assert_eq!(ix.changes_since_whole, 0, "a whole build");
    assert!(ix.places(&fresh.chunks[0].hash)[0].0.ends_with("new"));
}

/// The same bytes in two folders: the chunk index knows a place in each,
/// so a device that is a member of only one of them can still be served.
#[test]
fn a_chunk_in_two_folders_has_a_place_in_each() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) =
        Store::open_dir(crate::store::StoreConfig::new(dir.path().join("store"))).unwrap();
    let record = file_record(b"the same bytes");
    for id in ["alpha", "bravo"] {
        let root = dir.path().join(id);
        std::fs::create_dir(&root).unwrap();
        folder::add(&mut store, id, &root).unwrap();
        store
            .put(
                crate::store::ns::FILES,
                &folder::file_key(id, "same.txt"),
                postcard::to_allocvec(&record).unwrap(),
            )
            .unwrap();
    }
    let mut ix = ChunkIndex::default();
    let mut found: Vec<PathBuf> = ix
        .find(&store, &record.chunks[0].hash, true, false)
        .into_iter()
        .map(|p| p.0)
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            dir.path().join("alpha/same.txt"),
            dir.path().join("bravo/same.txt")
        ]
    );
}

/// A file moved into place is recognised as the agent's own only while
/// it is the file that was moved: a write that lands right after the
/// move (in place, as most editors' "save" does not) makes its event
/// count, even at the same size.
#[cfg(unix)]
#[test]
fn a_write_right_after_a_placement_is_not_taken_for_its_echo() {
    let dir = tempfile::tempdir().unwrap();
    let (tmp, dest) = (dir.path().join("tmp"), dir.path().join("file"));
    let placed = std::fs::File::create(&tmp).unwrap();
    std::io::Write::write_all(&mut &placed, b"from a peer").unwrap();
    sys::set_times_and_mode(&placed, 1_000_000_000, 0o644);
    drop(placed);
    let before = std::fs::symlink_metadata(&tmp).unwrap();
    std::fs::rename(&tmp, &dest).unwrap();
    let after = std::fs::symlink_metadata(&dest).unwrap();
    assert!(apply::placed_stamp(&before, &after).is_some());
    // The same size, written in place: only the mtime tells.
    std::fs::write(&dest, b"edited here").unwrap();
    let edited = std::fs::symlink_metadata(&dest).unwrap();
    assert!(apply::placed_stamp(&before, &edited).is_none());
    // Another file at the path.
    std::fs::remove_file(&dest).unwrap();
    std::fs::write(&dest, b"from a peer").unwrap();
    let replaced = std::fs::symlink_metadata(&dest).unwrap();
    assert!(apply::placed_stamp(&before, &replaced).is_none());
}

/// A node serving a sync is not at rest, though its own files do not
/// change: its chunk places are packed only once no place was looked up
/// for the quiet time (a pack holds the index while peers wait).
#[test]
fn the_chunk_places_are_not_packed_while_chunks_are_looked_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut ix = ChunkIndex::open(&dir.path().join("chunks.redb"));
    let root = dir.path().join("docs");
    let record = file_record(b"served");
    ix.insert(&root.join("f"), &record);
    ix.places.reached(1);
    ix.places.flush();
    assert!(ix.places.changed_since_pack);
    assert_eq!(ix.places(&record.chunks[0].hash).len(), 1);
    ix.pack_at_rest(Duration::from_secs(60));
    assert!(ix.places.changed_since_pack, "looked up a moment ago");
    ix.pack_at_rest(Duration::ZERO);
    assert!(!ix.places.changed_since_pack, "quiet long enough: packed");
}
