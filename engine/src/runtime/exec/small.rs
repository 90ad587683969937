//! Small files in batches: planned together, local chunks copied in one
//! job, the rest asked of sources, each file written and committed at its
//! own pace.

use super::*;

/// Most small files one task carries out (see [`run_small`]).
pub const SMALL_BATCH: usize = 32;

/// Whether `work` places a small file: such work is carried out in
/// batches ([`run_small`]).
pub fn is_small_place(work: &Action) -> bool {
    matches!(work, Action::Place { need, .. }
        if need.record.kind == EntryKind::File
            && need.record.size <= SMALL_FILE
            && !need.record.chunks_elided())
}

/// One small file of a batch on its way.
pub(super) struct SmallFile {
    pub(super) folder: String,
    pub(super) path: String,
    pub(super) need: Need,
    pub(super) expect: Option<FileRecord>,
    pub(super) dest: Option<Dest>,
    pub(super) sources: Vec<NodeId>,
    /// Its chunks, as they arrive.
    pub(super) parts: Vec<Option<Data>>,
    /// Chunks (by index) to ask of the next source.
    pub(super) want: Vec<usize>,
    /// Sources asked so far.
    pub(super) tries: usize,
    /// The source asked last, its answers still coming in (how many), and
    /// the chunks it did not send.
    pub(super) asked: Option<NodeId>,
    pub(super) outstanding: usize,
    pub(super) missing: Vec<usize>,
    /// Why the last source asked did not send them all.
    pub(super) last: Option<WorkError>,
    /// Why it cannot go on, if it cannot.
    pub(super) failed: Option<WorkError>,
    /// The temporary file as its writer left it (read from its open
    /// handle, no path walked): the committer's look before the move.
    pub(super) written: Option<std::fs::Metadata>,
}

/// A chunk's answer for a batch: (file, chunk index, answer).
pub(super) type BatchAnswer = (usize, usize, Result<Option<Data>, WorkError>);

/// Place small files ([`is_small_place`]) in one task: thousands of small
/// files cost one task, one answer channel and a few writer jobs per batch
/// instead of a task, a few channel hops and a blocking job each (the
/// receiving node's async workers spent a third less CPU on a 20,000-file
/// sync). Each file still goes at its own pace and succeeds or fails
/// alone: its local chunks are copied, its missing ones asked of its
/// sources in turn (fetched together with other batches' small runs,
/// `ask_gathered`) — a source that sent only some is followed by the
/// next at once, not when the rest of the batch is in — and the files
/// whose bytes are all here are written, checked and finished together on
/// a writer thread, then committed, while the others are still coming.
pub async fn run_small(s: Arc<Shared>, work: Vec<Action>) {
    let mut files = Vec::with_capacity(work.len());
    {
        // Only small places are handed here (see `dispatch`).
        let peers = lock(&s.peers);
        for w in work {
            if let Action::Place {
                folder,
                path,
                need,
                expect,
            } = w
            {
                let sources = sources_of(&peers, &need);
                let failed = check_tiles(&need.record).err();
                let parts = vec![None; need.record.chunks.len()];
                files.push(SmallFile {
                    folder,
                    path,
                    need,
                    expect,
                    dest: None,
                    sources,
                    parts,
                    want: Vec::new(),
                    tries: 0,
                    asked: None,
                    written: None,
                    outstanding: 0,
                    missing: Vec::new(),
                    last: None,
                    failed,
                });
            }
        }
    }
    let mut space = SpaceBudget::default();
    for f in files.iter_mut().filter(|f| f.failed.is_none()) {
        let dest = root_async(&s, &f.folder)
            .await
            .and_then(|root| Dest::of(root, &f.path, s.home.as_deref()))
            .and_then(|d| {
                space.take(&s, &d.root, &f.path, f.need.record.size)?;
                Ok(d)
            });
        match dest {
            Ok(d) => f.dest = Some(d),
            Err(e) => f.failed = Some(e),
        }
    }
    let mut actions = Vec::new();
    let mut commits = Vec::new();
    {
        // The semaphore is never closed.
        let _permits = s
            .small_transfers
            .acquire_many(files.len().min(SMALL_BATCH) as u32)
            .await;
        copy_local(&s, &mut files).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<BatchAnswer>();
        let mut files: Vec<Option<SmallFile>> = files.into_iter().map(Some).collect();
        let mut ready = Vec::new();
        let mut coming = 0usize;
        for (n, slot) in files.iter_mut().enumerate() {
            if let Some(f) = slot {
                if ask_next(&s, f, n, &tx) {
                    coming += 1;
                } else {
                    ready.push(n);
                }
            }
        }
        loop {
            // Every answer already here is taken before the files it
            // completed are written; with none, those are written before
            // waiting for more (the sender is held here: the channel is
            // never closed while answers are coming).
            let next = match rx.try_recv() {
                Ok(answer) => Some(answer),
                Err(_) if !ready.is_empty() => {
                    let batch = ready.drain(..).filter_map(|n| files[n].take()).collect();
                    write_and_commit(&s, batch, &mut commits, &mut actions).await;
                    continue;
                }
                Err(_) if coming == 0 => break,
                Err(_) => rx.recv().await,
            };
            let Some((n, i, answer)) = next else { break };
            let Some(f) = files[n].as_mut() else { continue };
            if took_answer(&s, f, i, answer) {
                coming -= 1;
                if ask_next(&s, f, n, &tx) {
                    coming += 1;
                } else {
                    ready.push(n);
                }
            }
        }
    }
    for (folder, path, rx, tmp) in commits {
        let result = answered(rx).await;
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        finished(&s, &folder, &path, result, &mut actions);
    }
    s.report(actions);
}

/// A commit sent: its file, the committer's answer to come, and the
/// temporary file to delete if it fails.
pub(super) type SentCommit = (
    String,
    String,
    tokio::sync::oneshot::Receiver<Result<Vec<Action>, WorkError>>,
    PathBuf,
);

/// Copy every chunk of the batch that local files have, in one blocking
/// job; the others (and local copies that turn out stale) are to fetch.
pub(super) async fn copy_local(s: &Arc<Shared>, files: &mut [SmallFile]) {
    let mut local: Vec<(usize, usize, Vec<Place>)> = Vec::new();
    // Planned on a blocking thread: a lookup may wait for the chunk index
    // (its places being written, a catch-up under way), which must never
    // hold up an async worker — `status` on the control socket waited
    // 1.7 s behind one during a million-file sync (issue 21).
    let records: Vec<(usize, FileRecord)> = (files.iter().enumerate())
        .filter(|(_, f)| f.failed.is_none())
        .map(|(n, f)| (n, f.need.record.clone()))
        .collect();
    let s2 = s.clone();
    let planned = tokio::task::spawn_blocking(move || {
        (records.into_iter())
            .map(|(n, record)| (n, plan(&s2, &record, 0)))
            .collect::<Vec<_>>()
    })
    .await;
    let Ok(planned) = planned else {
        // The planning thread failed (the runtime is stopping): every
        // chunk is asked of a peer instead.
        for f in files.iter_mut().filter(|f| f.failed.is_none()) {
            f.want.extend(0..f.need.record.chunks.len());
        }
        return;
    };
    for (n, jobs) in planned {
        let Some(f) = files.get_mut(n) else {
            continue;
        };
        for job in jobs {
            match job {
                Job::Zeros(i) => f.parts[i] = Some(zero_data(f.need.record.chunks[i].len)),
                Job::Local(i, places) => local.push((n, i, places)),
                Job::Remote(run) => f.want.extend(run),
            }
        }
    }
    if local.is_empty() {
        return;
    }
    let _slot = s.chunk_slots.acquire().await;
    let hashes: Vec<ContentHash> = local
        .iter()
        .map(|(n, i, _)| files[*n].need.record.chunks[*i].hash)
        .collect();
    let s2 = s.clone();
    let read = tokio::task::spawn_blocking(move || {
        let mut open = OpenFile::default();
        local
            .into_iter()
            .zip(hashes)
            .map(|((n, i, places), hash)| {
                (n, i, local_chunk_from(&s2, &mut open, &hash, None, places))
            })
            .collect::<Vec<_>>()
    })
    .await;
    match read {
        Ok(read) => {
            for (n, i, got) in read {
                match got {
                    Some(d) => {
                        let d: Data = vec![Bytes::from(d)];
                        count_chunk(s, &d, false);
                        files[n].parts[i] = Some(d);
                    }
                    // A local copy turned out stale: fetched instead.
                    None => files[n].want.push(i),
                }
            }
        }
        Err(_) => {
            for f in files.iter_mut() {
                f.failed.get_or_insert_with(stopping);
            }
        }
    }
}

/// Ask the next source of file `n` for the chunks it still wants, the
/// answers going to `tx`. `false` when nothing is to be asked: the file
/// has all its chunks, has failed, or has no source left (it fails).
pub(super) fn ask_next(
    s: &Arc<Shared>,
    f: &mut SmallFile,
    n: usize,
    tx: &tokio::sync::mpsc::UnboundedSender<BatchAnswer>,
) -> bool {
    if f.failed.is_some() || f.want.is_empty() {
        return false;
    }
    if f.tries >= f.sources.len() {
        let last = f.last.take();
        f.failed = Some(last.unwrap_or_else(|| WorkError::transfer(NO_SOURCE)));
        return false;
    }
    // Files of a batch start at different sources: the batch is spread
    // over the peers that have it.
    let peer = f.sources[(n + f.tries) % f.sources.len()];
    f.tries += 1;
    f.asked = Some(peer);
    f.outstanding = f.want.len();
    let record = &f.need.record;
    let want = std::mem::take(&mut f.want);
    ask_gathered(
        s,
        peer,
        want.into_iter().map(|i| {
            let reply = batch_reply(tx.clone(), n, i);
            (record.chunks[i].hash, record.chunks[i].len, reply)
        }),
    );
    true
}

/// Where a batch's chunk answer goes; dropped unanswered (a fetch that
/// ended without answering), it answers that, so the batch never waits
/// for an answer that cannot come.
pub(super) struct Answering(
    Option<(
        tokio::sync::mpsc::UnboundedSender<BatchAnswer>,
        usize,
        usize,
    )>,
);

impl Answering {
    pub(super) fn send(mut self, answer: Result<Option<Data>, WorkError>) {
        if let Some((tx, n, i)) = self.0.take() {
            let _ = tx.send((n, i, answer));
        }
    }
}

/// The reply for chunk `i` of file `n` of a batch.
pub(super) fn batch_reply(
    tx: tokio::sync::mpsc::UnboundedSender<BatchAnswer>,
    n: usize,
    i: usize,
) -> ChunkReply {
    let answering = Answering(Some((tx, n, i)));
    Box::new(move |answer| answering.send(answer))
}

impl Drop for Answering {
    fn drop(&mut self) {
        if let Some((tx, n, i)) = self.0.take() {
            let _ = tx.send((n, i, Err(WorkError::transfer("the fetch was dropped"))));
        }
    }
}

/// Take the answer for chunk `i` of `f`; `true` when it was the last one
/// the source asked owed (what it did not send is then wanted again).
pub(super) fn took_answer(
    s: &Shared,
    f: &mut SmallFile,
    i: usize,
    answer: Result<Option<Data>, WorkError>,
) -> bool {
    match answer {
        Ok(Some(d)) => {
            count_chunk(s, &d, true);
            f.parts[i] = Some(d);
        }
        Ok(None) => {
            f.last = f.asked.map(lacks_chunks);
            f.missing.push(i);
        }
        Err(e) => {
            f.last = Some(e);
            f.missing.push(i);
        }
    }
    f.outstanding = f.outstanding.saturating_sub(1);
    if f.outstanding > 0 {
        return false;
    }
    f.want = std::mem::take(&mut f.missing);
    true
}

/// Write, check and finish `batch` on a writer thread, then send each
/// written file's commit (answers awaited later, in `commits`); a file
/// that failed is accounted for at once.
pub(super) async fn write_and_commit(
    s: &Arc<Shared>,
    batch: Vec<SmallFile>,
    commits: &mut Vec<SentCommit>,
    actions: &mut Vec<Action>,
) {
    let keys: Vec<(String, String)> = batch
        .iter()
        .map(|f| (f.folder.clone(), f.path.clone()))
        .collect();
    let written = s
        .writers
        .run(move || {
            let mut batch = batch;
            for f in batch.iter_mut() {
                write_small(f);
            }
            Ok(batch)
        })
        .await;
    let batch = match written {
        Ok(batch) => batch,
        Err(e) => {
            for (folder, path) in keys {
                finished(s, &folder, &path, Err(e.clone()), actions);
            }
            return;
        }
    };
    for f in batch {
        let sent = match (f.failed, f.dest) {
            (None, Some(dest)) => {
                let mut commit =
                    Commit::place(&f.folder, &f.path, f.need, f.expect, Some(dest.tmp.clone()));
                commit.written = f.written;
                send_commit(s, commit).map(|rx| (rx, dest.tmp))
            }
            (failed, _) => Err(failed.unwrap_or_else(not_written)),
        };
        match sent {
            Ok((rx, tmp)) => commits.push((f.folder, f.path, rx, tmp)),
            Err(e) => finished(s, &f.folder, &f.path, Err(e), actions),
        }
    }
}

/// Write a small file whose chunks are all here into its temporary file,
/// check it and finish it (on a writer thread). A failure marks the file
/// failed and leaves no temporary file.
pub(super) fn write_small(f: &mut SmallFile) {
    let Some(dest) = f.dest.as_ref().filter(|_| f.failed.is_none()) else {
        return;
    };
    let record = &f.need.record;
    let written = (|| {
        dest.prepare(&f.folder, &f.path)?;
        if f.parts.iter().any(Option::is_none) {
            return Err(not_written());
        }
        let tmp = &dest.tmp;
        let mut file = std::fs::File::create(tmp)
            .map_err(|e| WorkError::io(format_args!("create {}", tmp.display()), &e))?;
        // In one write (the pieces are as the network delivered them).
        let mut bytes = Vec::with_capacity(record.size as usize);
        for piece in f.parts.iter().flatten().flatten() {
            bytes.extend_from_slice(piece);
        }
        file.write_all(&bytes)
            .map_err(|e| WorkError::io(format_args!("write {}", tmp.display()), &e))?;
        finish_file(&file, small_file_hash(record, &bytes), record)?;
        Ok(file.metadata().ok())
    })();
    f.parts = Vec::new();
    match written {
        Ok(stat) => f.written = stat,
        Err(e) => {
            let _ = std::fs::remove_file(&dest.tmp);
            f.failed = Some(e);
        }
    }
}

/// A file whose bytes did not all arrive, or whose write went wrong
/// unseen.
fn not_written() -> WorkError {
    WorkError::new(Cause::Io, "the file could not be written")
}

/// The connected peers to fetch `need`'s file from: those that announced
/// its version, or else every connected peer.
pub(super) fn sources_of(
    peers: &HashMap<NodeId, crate::transport::quic::PeerHandle>,
    need: &Need,
) -> Vec<NodeId> {
    let v: Vec<NodeId> = need
        .sources
        .iter()
        .copied()
        .filter(|p| peers.contains_key(p))
        .collect();
    if v.is_empty() {
        peers.keys().copied().collect()
    } else {
        v
    }
}
