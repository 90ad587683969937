//! The committer: three threads in a pipeline that make received files
//! durable, carry the work out and record it under the store lock, then
//! make the log durable outside it and answer.

use super::*;

/// File work whose bytes are ready, waiting to change the disk and the
/// index (see [`committer`]).
pub struct Commit {
    pub(super) folder: String,
    pub(super) path: String,
    pub(super) need: Need,
    pub(super) expect: Option<FileRecord>,
    pub(super) step: Step,
    /// The temporary file's metadata as its writer left it, when known
    /// (small files): what `place_one` would otherwise `lstat` by path
    /// just before the move.
    pub(super) written: Option<std::fs::Metadata>,
}

pub(super) enum Step {
    /// Move `tmp` (assembled, verified) into place; `None` for a directory.
    Place {
        tmp: Option<PathBuf>,
        /// Already made durable by its transfer (a large file).
        synced: bool,
    },
    /// Move the file to the trash (an empty directory is removed).
    Remove,
}

pub(super) type Reply = tokio::sync::oneshot::Sender<Result<Vec<Action>, WorkError>>;

/// The committer's inbox.
pub type CommitQueue = std::sync::mpsc::Sender<(Commit, Reply)>;

pub(super) async fn submit(s: &Shared, commit: Commit) -> Result<Vec<Action>, WorkError> {
    answered(send_commit(s, commit)?).await
}

/// Hand `commit` to the committer; its answer comes on the receiver.
pub(super) fn send_commit(
    s: &Shared,
    commit: Commit,
) -> Result<tokio::sync::oneshot::Receiver<Result<Vec<Action>, WorkError>>, WorkError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    s.commits.send((commit, tx)).map_err(|_| stopping())?;
    Ok(rx)
}

/// The committer's answer to a commit.
pub(super) async fn answered(
    rx: tokio::sync::oneshot::Receiver<Result<Vec<Action>, WorkError>>,
) -> Result<Vec<Action>, WorkError> {
    rx.await.map_err(|_| stopping())?
}

/// Work cut short because the node is stopping.
pub(super) fn stopping() -> WorkError {
    WorkError::new(Cause::Stopping, "the node is stopping")
}

/// Work that could not be recorded (the store failed).
pub(super) fn unrecorded(e: impl std::fmt::Display) -> WorkError {
    WorkError::new(Cause::Io, format!("cannot record the work: {e}"))
}

/// The committer: three threads that change the disk and the index for all
/// file work, in batches — group commit — and in a pipeline:
///
/// 1. the first takes whatever is waiting as one batch and makes its
///    assembled temporary files durable with one `syncfs` (an fsync of
///    each elsewhere) instead of one fsync per file — with the
///    directories holding them, so each one's name survives too;
/// 2. the second takes every batch step 1 has finished and, under the
///    store lock with the log's fsyncs held, checks and carries out each
///    piece of work (conflict copy, rename or trash), makes the renames
///    durable (`syncfs` again, or an fsync of each directory) unless every
///    piece placed a new file, and records the work; the log's fsync is
///    taken out of the lock ([`Store::hold_deferred`]);
/// 3. the third, without the store lock — the second is already on the
///    next batch — makes the log durable, with one fsync for every batch
///    waiting, and only then answers.
///
/// An index entry is never durable before the bytes it describes, and
/// nothing is told to a peer before the entry is durable: the actions come
/// back after step 3, and index pages and hints name only what the log
/// has made durable ([`Store::durable_seq`]). A new file's rename may still
/// be in the page cache when its entry is durable: a power cut then leaves
/// its temporary file, durable since step 1, which the next start moves
/// into place ([`recover_temp_files`]). Twenty thousand small files cost a
/// few hundred flushes instead of forty thousand.
///
/// All three hold the node weakly and end when the node is gone.
pub fn committer(s: std::sync::Weak<Shared>, inbox: std::sync::mpsc::Receiver<(Commit, Reply)>) {
    // At most one batch flushed ahead of the recording: while the second
    // thread is behind, the first gathers a larger batch.
    let (to_record, flushed) = std::sync::mpsc::sync_channel::<Flushed>(1);
    let weak = s.clone();
    std::thread::Builder::new()
        .name("sync-recorder".into())
        .spawn(move || recorder(weak, flushed))
        .expect("cannot start the recorder thread");
    while let Ok(first) = inbox.recv() {
        let Some(s) = s.upgrade() else { break };
        let mut batch = vec![first];
        while batch.len() < 512 {
            match inbox.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (t, files) = (Instant::now(), batch.len());
        let ready = flush_batch(&s, batch);
        drop(s);
        debug!(
            files,
            ms = t.elapsed().as_millis() as u64,
            "flushed a batch"
        );
        if to_record.send(ready).is_err() {
            break;
        }
    }
}

/// Step 2 of [`committer`], handing each batch on to step 3.
pub(super) fn recorder(s: std::sync::Weak<Shared>, inbox: std::sync::mpsc::Receiver<Flushed>) {
    let (to_log, logged) = std::sync::mpsc::sync_channel::<Logged>(2);
    let weak = s.clone();
    std::thread::Builder::new()
        .name("sync-logger".into())
        .spawn(move || logger(weak, logged))
        .expect("cannot start the logger thread");
    while let Ok(mut batch) = inbox.recv() {
        let Some(s) = s.upgrade() else { break };
        while let Ok(more) = inbox.try_recv() {
            batch.items.extend(more.items);
            batch.only_new_files &= more.only_new_files;
        }
        let t = Instant::now();
        let files = batch.items.len();
        let logged = record_batch(&s, batch);
        drop(s);
        debug!(
            files,
            ms = t.elapsed().as_millis() as u64,
            "recorded a batch"
        );
        if let Some(logged) = logged
            && to_log.send(logged).is_err()
        {
            break;
        }
    }
}

impl Commit {
    /// Place `need`'s record at `path`: from `tmp` (assembled, verified), or
    /// a directory.
    pub(super) fn place(
        folder: &str,
        path: &str,
        need: Need,
        expect: Option<FileRecord>,
        tmp: Option<PathBuf>,
    ) -> Commit {
        Commit {
            folder: folder.to_string(),
            path: path.to_string(),
            step: Step::Place {
                synced: tmp.is_some() && need.record.size >= SYNC_ALONE,
                tmp,
            },
            need,
            expect,
            written: None,
        }
    }

    /// A file placed where the index has no live entry, with no conflict
    /// copy: its rename need not be durable before its entry (see
    /// [`committer`]): the temporary file it came from is.
    pub(super) fn is_new_file(&self) -> bool {
        matches!(self.step, Step::Place { tmp: Some(_), .. })
            && self.need.conflict_copy.is_none()
            && self.expect.as_ref().is_none_or(|e| e.deleted)
    }
}

/// Work whose bytes are durable, with its folder root and absolute
/// destination, waiting to be carried out and recorded.
pub(super) struct Flushed {
    pub(super) items: Vec<(Commit, Reply, PathBuf, PathBuf)>,
    /// Every item places a new file: the renames need no flush.
    pub(super) only_new_files: bool,
}

/// Step 1 of [`committer`]. Work that cannot go on (no such folder, a bad
/// path, a failed flush) is answered here.
pub(super) fn flush_batch(s: &Arc<Shared>, batch: Vec<(Commit, Reply)>) -> Flushed {
    let mut roots: HashMap<String, Result<PathBuf, WorkError>> = HashMap::new();
    let mut items = Vec::with_capacity(batch.len());
    for (c, reply) in batch {
        let root = roots
            .entry(c.folder.clone())
            .or_insert_with(|| root_of(s, &c.folder).and_then(|r| marker_present(s, &c.folder, r)))
            .clone();
        let place = root.and_then(|root| {
            let abs = absolute(&root, &c.path)?;
            Ok((root, abs))
        });
        match place {
            Ok((root, abs)) => items.push((c, reply, root, abs)),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }
    let only_new_files = items.iter().all(|(c, ..)| c.is_new_file());
    // Small files' data is made durable here, by the batch; large ones
    // were synced by their own transfer. When the renames will not be
    // flushed, the temporary files' directory entries must be durable
    // now.
    let mut durable: Vec<&Path> = Vec::new();
    let mut bytes = 0;
    for (c, ..) in &items {
        if let Step::Place {
            tmp: Some(t),
            synced,
        } = &c.step
        {
            if !synced {
                durable.push(t);
                bytes += c.need.record.size;
            }
            if only_new_files {
                durable.extend(t.parent());
            }
        }
    }
    let ok_roots: Vec<&Path> = roots
        .values()
        .filter_map(|r| r.as_ref().ok().map(PathBuf::as_path))
        .collect();
    if let Err(e) = make_durable(&ok_roots, &durable, bytes) {
        let e = WorkError::io("cannot make the received files durable", &e);
        for (_, reply, ..) in items {
            let _ = reply.send(Err(e.clone()));
        }
        return Flushed {
            items: Vec::new(),
            only_new_files,
        };
    }
    Flushed {
        items,
        only_new_files,
    }
}

/// `root` of `folder`, unless the folder's marker is gone (it is being
/// stopped, see [`crate::folder::marker`]): nothing is written into a
/// folder that may be an empty mount point or a wiped one.
fn marker_present(s: &Shared, folder: &str, root: PathBuf) -> Result<PathBuf, WorkError> {
    if crate::folder::marker::marker_path(&root).exists()
        || !crate::index::guard::is_marked(&lock(&s.store), folder)
    {
        return Ok(root);
    }
    Err(WorkError::new(
        Cause::Refused,
        crate::folder::marker::missing_reason(folder, &root),
    ))
}

/// Step 2 of [`committer`]: carry out and record the batch under the store
/// lock, the log's fsync left for step 3 (see [`logger`]). Work that
/// failed is answered here; the rest goes on to be made durable.
pub(super) fn record_batch(s: &Arc<Shared>, batch: Flushed) -> Option<Logged> {
    let Flushed {
        items,
        only_new_files,
    } = batch;
    if items.is_empty() {
        return None;
    }
    let mut roots: Vec<&Path> = items.iter().map(|(_, _, root, _)| root.as_path()).collect();
    roots.sort();
    roots.dedup();
    // Looked at once per directory and batch (files come in directory
    // order, mostly).
    let mut real: HashMap<&Path, bool> = HashMap::new();
    // The files placed, for the chunk index: entered once the store is let
    // go, since entering may write its table to disk (a second or two at a
    // million files), which `status` and the watchers must not wait for.
    let mut placed_chunks: Vec<(PathBuf, FileRecord)> = Vec::new();
    let mut store = lock(&s.store);
    let held = store.hold_deferred(|store| {
        let mut done = Vec::new();
        let mut placed = Vec::new();
        let mut results: Vec<Result<Vec<Action>, WorkError>> = items
            .iter()
            .map(|(c, _, root, abs)| {
                let parent = abs.parent().unwrap_or(root);
                if !*real
                    .entry(parent)
                    .or_insert_with(|| parents_are_real(root, abs))
                {
                    return Err(symlinked_parent(&c.folder, &c.path));
                }
                let (one, stamp) = match &c.step {
                    Step::Place { tmp, .. } => place_one(s, store, c, root, abs, tmp.as_deref()),
                    Step::Remove => remove_one(s, store, c, root, abs).map(|d| (d, None)),
                }?;
                if matches!(c.step, Step::Place { .. }) && !one.record.chunks.is_empty() {
                    placed_chunks.push((abs.clone(), one.record.clone()));
                }
                if let Some(stamp) = stamp {
                    placed.push((&c.folder, &c.path, stamp));
                }
                done.push(one);
                Ok(Vec::new())
            })
            .collect();
        if !only_new_files {
            // The renames are made durable before their records are even
            // written: any fsync of the log from now on (step 3's for an
            // earlier batch, another writer's) may carry them.
            let dirs: Vec<&Path> = items
                .iter()
                .zip(&results)
                .filter(|(_, r)| r.is_ok())
                .filter_map(|((.., abs), _)| abs.parent())
                .collect();
            if let Err(e) = make_durable(&roots, &dirs, 0) {
                // The renames may not survive a power cut; the work is
                // recorded anyway (it was done), and the work it hands out
                // next must go out. Say so loudly: the next scan
                // reconciles whatever a crash leaves.
                warn!(error = %e, "cannot make the renames durable");
            }
        }
        let mut events = events_of(&done);
        // Recorded together; the work due next rides on the first reply.
        let recorded = lock(&s.engine).completed_all(store, done, Instant::now());
        match recorded {
            Ok(next) => match results.iter_mut().find_map(|r| r.as_mut().ok()) {
                Some(first) => *first = next,
                // Nothing in the batch was done (each item overtaken,
                // changed on disk…), so no reply can carry the work handed
                // out next: it goes out now. Dropped, that work stayed
                // "in flight" for ever (the fault test found a deletion and
                // its directory's never carried out).
                None => s.report(next),
            },
            Err(e) => {
                placed.clear();
                events.clear();
                for r in results.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(unrecorded(&e));
                }
            }
        }
        (results, placed, events)
    });
    drop(store);
    if !placed_chunks.is_empty() {
        let mut chunks = lock(&s.chunks);
        for (abs, record) in &placed_chunks {
            chunks.insert(abs, record);
        }
    }
    let (results, pending, events) = match held {
        Ok(((results, placed, events), pending)) => {
            s.echoes.placed(&placed);
            (results, pending, events)
        }
        Err(e) => {
            for (_, reply, ..) in items {
                let _ = reply.send(Err(unrecorded(&e)));
            }
            return None;
        }
    };
    Some(Logged {
        pending,
        events,
        replies: items
            .into_iter()
            .zip(results)
            .map(|((_, reply, ..), result)| (reply, result))
            .collect(),
    })
}

/// Recorded work waiting for step 3 of [`committer`].
pub(super) struct Logged {
    /// The log's fsync, if the batch appended anything.
    pub(super) pending: Option<PendingSync>,
    /// What the batch did, told to the node's clients once it is durable.
    pub(super) events: Vec<events::What>,
    pub(super) replies: Vec<(Reply, Result<Vec<Action>, WorkError>)>,
}

impl Logged {
    /// Take a later batch in: one flush serves both.
    pub(super) fn absorb(&mut self, later: Logged) {
        self.pending = match (self.pending.take(), later.pending) {
            (Some(a), Some(b)) => Some(a.merge(b)),
            (a, b) => a.or(b),
        };
        self.events.extend(later.events);
        self.replies.extend(later.replies);
    }
}

/// The events work carried out makes: a file in or a deletion by a peer
/// for each file (directories are left out), and each conflict — a copy
/// kept here, or one a peer kept arriving (so both devices hear of it) —
/// and each settled (a peer removed the copy).
fn events_of(done: &[Completed]) -> Vec<events::What> {
    let mut out = Vec::with_capacity(done.len());
    for c in done {
        let (folder, path) = (c.folder.clone(), c.path.clone());
        let peers_copy = (!c.record.deleted)
            .then(|| crate::core::path::original_of_copy(&path))
            .flatten()
            .map(|(original, ..)| (original, path.clone()));
        let kept_here = c
            .conflict_copy
            .as_ref()
            .map(|(copy, _)| (path.clone(), copy.clone()));
        if let Some((original, copy)) = kept_here.or(peers_copy) {
            out.push(events::What::ConflictMade {
                folder: folder.clone(),
                path: original,
                copy,
            });
        }
        if c.record.kind == EntryKind::Dir {
            continue;
        }
        // A copy a peer removed: that peer settled the conflict.
        if c.record.deleted
            && let Some((original, ..)) = crate::core::path::original_of_copy(&path)
        {
            out.push(events::What::ConflictResolved {
                folder: folder.clone(),
                path: original,
            });
        }
        out.push(if c.record.deleted {
            events::What::Deleted {
                folder,
                path,
                by: events::Side::Peer,
            }
        } else {
            events::What::FileIn {
                folder,
                path,
                size: c.record.size,
            }
        });
    }
    out
}

/// Step 3 of [`committer`]: make the log durable — without the store lock,
/// so the next batch is carried out meanwhile — and only then answer.
/// Batches that wait meanwhile share one fsync.
pub(super) fn logger(s: std::sync::Weak<Shared>, inbox: std::sync::mpsc::Receiver<Logged>) {
    while let Ok(mut logged) = inbox.recv() {
        while let Ok(more) = inbox.try_recv() {
            logged.absorb(more);
        }
        let Some(s) = s.upgrade() else { break };
        let Logged {
            pending,
            events,
            replies,
        } = logged;
        let synced = match pending {
            Some(mut p) => {
                let result = p.sync();
                lock(&s.store).synced(p, result).map(|_| ())
            }
            None => Ok(()),
        };
        if synced.is_ok() {
            s.events.push_all(events);
        }
        for (reply, result) in replies {
            let result = match (&synced, result) {
                (Ok(()), result) => result,
                // The work handed out next, which this reply carried, still
                // goes out (it was marked in flight).
                (Err(e), Ok(next)) => {
                    s.report(next);
                    Err(unrecorded(e))
                }
                (Err(e), Err(_)) => Err(unrecorded(e)),
            };
            let _ = reply.send(result);
        }
    }
}

/// Make `files` (or directories) durable. One `syncfs` per file system
/// the `roots` are on when that is cheaper (Linux, many small files: one
/// device flush instead of one per file); an fsync of each otherwise — a
/// few files, or much data, where `syncfs` would also flush the other
/// transfers still being written.
/// `bytes`: how much file data `files` hold (0 for directories).
pub(crate) fn make_durable(
    roots: &[&Path],
    files: &[impl AsRef<Path>],
    bytes: u64,
) -> std::io::Result<()> {
    let mut unique: Vec<&Path> = files.iter().map(AsRef::as_ref).collect();
    unique.sort();
    unique.dedup();
    if unique.is_empty() {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        if unique.len() > 2 && bytes < 16 << 20 {
            let mut seen = std::collections::HashSet::new();
            for root in roots {
                use std::os::unix::fs::MetadataExt;
                let dev = std::fs::metadata(root)?.dev();
                if seen.insert(dev) {
                    syncfs(root)?;
                }
            }
            return Ok(());
        }
    }
    let _ = (roots, bytes);
    for f in unique {
        match std::fs::File::open(f) {
            Ok(h) => h.sync_all()?,
            // A directory cannot be opened for syncing on Windows.
            Err(_) if f.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
