//! Large files: chunk jobs in file order, assembly into the temporary
//! file, and partial downloads kept to resume.

use super::*;
use crate::index::Chunk;

/// Peers' records are checked when they arrive; a need stored by an older
/// build is checked here.
pub(super) fn check_tiles(record: &FileRecord) -> Result<(), WorkError> {
    if record.chunks_tile() {
        Ok(())
    } else {
        Err(WorkError::new(
            Cause::Refused,
            "refused: the file's chunks do not cover it exactly",
        ))
    }
}

/// The chunk list of `need`'s file, announced without it (see
/// [`FileRecord::chunks_elided`]): from this node's own record of the
/// same content if it has one, else from the first source that still has
/// that content.
pub(super) async fn chunk_list(
    s: &Arc<Shared>,
    folder: &str,
    path: &str,
    need: &Need,
) -> Result<Vec<Chunk>, WorkError> {
    let record = &need.record;
    let (s2, f2, p2, hash) = (s.clone(), folder.to_string(), path.to_string(), record.hash);
    let local = tokio::task::spawn_blocking(move || {
        crate::index::record(&lock(&s2.store), &f2, &p2)
            .filter(|l| !l.deleted && l.hash == hash && !l.chunks_elided())
            .map(|l| l.chunks)
    })
    .await
    .map_err(|_| stopping())?;
    if let Some(chunks) = local {
        return Ok(chunks);
    }
    let sources = sources_of(&lock(&s.peers), need);
    let mut last = WorkError::transfer(NO_SOURCE);
    for peer in sources {
        match fetch_chunk_list(s, peer, folder, path, record).await {
            Ok(Some(chunks)) => return Ok(chunks),
            Ok(None) => last = WorkError::transfer(format!("{peer} no longer has this content")),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Why a file could not be fetched when no source was left to ask.
pub(super) const NO_SOURCE: &str = "no connected peer has this file";

/// Why `peer` was not enough for a file's chunks.
pub(super) fn lacks_chunks(peer: NodeId) -> WorkError {
    WorkError::transfer(format!("{peer} does not have every chunk asked for"))
}

/// Most bytes fetched on one bulk stream: enough that a stream costs little
/// next to its bytes, small enough that several run in parallel per file
/// and a lost one costs little to ask again.
pub(super) const FETCH_BYTES: u64 = 1 << 20;
/// Fetches and local reads in flight per file.
pub(super) const JOBS_PER_FILE: usize = 6;
/// Bytes a file may hold in memory waiting for an earlier chunk.
pub(super) const PENDING_BYTES: u64 = 4 << 20;

/// One unit of a file's assembly.
pub(super) enum Job {
    /// Chunk `i`, which is all zeros: nothing to read or fetch, and a hole
    /// in the file written.
    Zeros(usize),
    /// Chunk `i`, which local files have (at the places given).
    Local(usize, Vec<Place>),
    /// Chunks (by index) fetched from a peer on one bulk stream.
    Remote(Vec<usize>),
}

/// Split the file's chunks into jobs, in file order: each chunk local
/// files have is copied from them; the others are fetched in runs of
/// consecutive chunks, up to [`FETCH_BYTES`] (and [`MAX_REQUEST_CHUNKS`])
/// each. Jobs in file order keep the chunks waiting for an earlier one
/// few: the job holding the next chunk to write is always started. It may
/// wait for the chunk index ([`locate_chunk`]): never on an async worker.
pub(super) fn plan(s: &Shared, record: &FileRecord, from: usize) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut run: Vec<usize> = Vec::new();
    let mut run_bytes = 0u64;
    for (i, c) in record.chunks.iter().enumerate().skip(from) {
        let zeros = is_zero_chunk(c);
        let places = if zeros {
            Vec::new()
        } else {
            locate_chunk(s, &c.hash, false, false)
        };
        let len = u64::from(c.len);
        let full = run_bytes + len > FETCH_BYTES || run.len() == MAX_REQUEST_CHUNKS;
        if !run.is_empty() && (full || zeros || !places.is_empty()) {
            jobs.push(Job::Remote(std::mem::take(&mut run)));
            run_bytes = 0;
        }
        if zeros {
            jobs.push(Job::Zeros(i));
            continue;
        }
        if !places.is_empty() {
            jobs.push(Job::Local(i, places));
            continue;
        }
        run.push(i);
        run_bytes += len;
    }
    if !run.is_empty() {
        jobs.push(Job::Remote(run));
    }
    jobs
}

/// Carry out one job: `(chunk index, bytes, fetched from a peer)` for each
/// of its chunks. Chunks a peer lacks (or sends wrong) are asked of the
/// next source; a local copy that turns out stale is fetched instead.
pub(super) async fn run_job(
    s: Arc<Shared>,
    record: Arc<FileRecord>,
    sources: Arc<Vec<NodeId>>,
    k: usize,
    job: Job,
) -> Result<Vec<(usize, Data, bool)>, WorkError> {
    let mut want = match job {
        Job::Zeros(i) => return Ok(vec![(i, zero_data(record.chunks[i].len), false)]),
        Job::Local(i, places) => {
            let _slot = s.chunk_slots.acquire().await;
            let c = record.chunks[i];
            let s2 = s.clone();
            let local = tokio::task::spawn_blocking(move || {
                local_chunk_from(&s2, &mut OpenFile::default(), &c.hash, None, places)
            })
            .await
            .map_err(|_| stopping())?;
            if let Some(d) = local {
                return Ok(vec![(i, vec![Bytes::from(d)], false)]);
            }
            vec![i]
        }
        Job::Remote(run) => run,
    };
    let mut done = Vec::with_capacity(want.len());
    let mut last = WorkError::transfer(NO_SOURCE);
    for t in 0..sources.len() {
        let peer = sources[(k + t) % sources.len()];
        let ask: Vec<(ContentHash, u32)> = want
            .iter()
            .map(|&i| (record.chunks[i].hash, record.chunks[i].len))
            .collect();
        let bytes: u64 = ask.iter().map(|c| u64::from(c.1)).sum();
        let fetched = if bytes <= SMALL_FILE {
            fetch_gathered(&s, peer, ask).await
        } else {
            let _slot = s.chunk_slots.acquire().await;
            // Boxed: a stream's fetch is a large state that small files'
            // work (fetched together instead) need not carry.
            Box::pin(fetch_chunks(&s, peer, &ask)).await
        };
        match fetched {
            Ok(got) => {
                let mut still = Vec::new();
                for (i, d) in want.into_iter().zip(got) {
                    match d {
                        Some(d) => done.push((i, d, true)),
                        None => still.push(i),
                    }
                }
                want = still;
                if want.is_empty() {
                    return Ok(done);
                }
                last = lacks_chunks(peer);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Write a large file's bytes into its temporary file: local chunks
/// copied, missing ones fetched (several runs at once, from every source),
/// then the whole file checked and synced.
///
/// `resume`: `dest.tmp` holds an earlier attempt (see [`Partials`]); the
/// chunks at its start that check out are kept.
pub(super) async fn assemble(
    s: &Arc<Shared>,
    record: Arc<FileRecord>,
    sources: Vec<NodeId>,
    dest: &Dest,
    resume: bool,
) -> Result<(), Unfinished> {
    check_tiles(&record)?;
    let sources = Arc::new(sources);
    // Boxed: the state of a large file's assembly is several KiB.
    Box::pin(assemble_large(s, record, sources, &dest.tmp, resume)).await
}

/// Why a large file's assembly did not finish, and whether its temporary
/// file is worth keeping: it holds the file's first chunks, checked, and
/// only fetching the rest failed.
#[derive(Debug)]
pub(super) struct Unfinished {
    pub(super) why: WorkError,
    pub(super) resumable: bool,
}

impl From<WorkError> for Unfinished {
    fn from(why: WorkError) -> Self {
        Unfinished {
            why,
            resumable: false,
        }
    }
}

/// Large files whose transfer broke part-way (a peer gone or silent), per
/// folder and path: the temporary file holding the chunks written so far,
/// and the content they belong to. The next attempt at the same content
/// starts after them instead of from the first byte; an attempt at other
/// content deletes it, and one left alone an hour is deleted (at start,
/// [`recover_temp_files`] deletes every temporary file a stop left).
#[derive(Default)]
pub struct Partials(std::sync::Mutex<HashMap<(String, String), Partial>>);

pub(super) struct Partial {
    pub(super) tmp: PathBuf,
    pub(super) hash: Option<ContentHash>,
    pub(super) since: Instant,
}

impl Partials {
    /// The temporary file an earlier attempt at `path` with content `hash`
    /// left; one of other content is deleted.
    pub(super) fn take(
        &self,
        folder: &str,
        path: &str,
        hash: Option<ContentHash>,
    ) -> Option<PathBuf> {
        let p = lock(&self.0).remove(&(folder.to_string(), path.to_string()))?;
        if p.hash.is_some() && p.hash == hash {
            return Some(p.tmp);
        }
        let _ = std::fs::remove_file(&p.tmp);
        None
    }

    /// Keep `tmp`, an unfinished attempt at `path` with content `hash`.
    pub(super) fn keep(
        &self,
        folder: &str,
        path: &str,
        tmp: PathBuf,
        hash: Option<ContentHash>,
        now: Instant,
    ) {
        let key = (folder.to_string(), path.to_string());
        let kept = Partial {
            tmp: tmp.clone(),
            hash,
            since: now,
        };
        let before = lock(&self.0).insert(key, kept);
        if let Some(before) = before.filter(|b| b.tmp != tmp) {
            let _ = std::fs::remove_file(&before.tmp);
        }
    }

    /// Delete the one kept for `path`, if any: its work is done.
    pub(super) fn forget(&self, folder: &str, path: &str) {
        if let Some(p) = lock(&self.0).remove(&(folder.to_string(), path.to_string())) {
            let _ = std::fs::remove_file(&p.tmp);
        }
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        lock(&self.0).is_empty()
    }

    /// Delete those no longer wanted: the sync engine holds no work for
    /// their path, or work for other content (the file was deleted, moved
    /// or changed again at its origin meanwhile). How many went.
    pub fn drop_unwanted(&self, store: &Store) -> usize {
        let mut all = lock(&self.0);
        let before = all.len();
        all.retain(|(folder, path), p| {
            let wanted = SyncEngine::need(store, folder, path)
                .is_some_and(|n| !n.record.deleted && n.record.hash == p.hash);
            if !wanted {
                let _ = std::fs::remove_file(&p.tmp);
            }
            wanted
        });
        before - all.len()
    }

    /// Delete those kept since before `now - keep`; how many.
    pub fn prune(&self, now: Instant, keep: Duration) -> usize {
        let mut all = lock(&self.0);
        let old: Vec<_> = all
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.since) >= keep)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &old {
            if let Some(p) = all.remove(k) {
                let _ = std::fs::remove_file(&p.tmp);
            }
        }
        old.len()
    }
}

/// [`assemble`] for a file larger than [`SMALL_FILE`], into `tmp`.
pub(super) async fn assemble_large(
    s: &Arc<Shared>,
    record: Arc<FileRecord>,
    sources: Arc<Vec<NodeId>>,
    tmp: &Path,
    resume: bool,
) -> Result<(), Unfinished> {
    // Jobs run several at a time and finish in any order; chunks are
    // written and hashed in order — they tile the file, so they follow one
    // another with no seek, and the whole-file hash needs no second read.
    // Writing and hashing happen on a blocking thread of the file's own: a
    // disk throttling its writers never stalls the async workers that
    // carry every connection's traffic.
    let (to_writer, mut inbox) = tokio::sync::mpsc::channel::<Data>(16);
    let (ready, from) = tokio::sync::oneshot::channel::<usize>();
    let (tmp_path, r) = (tmp.to_path_buf(), record.clone());
    let writer = tokio::task::spawn_blocking(move || -> Result<_, WorkError> {
        // Opened here, not on an async worker: creating a file waits
        // while the file system commits its journal (every commit batch's
        // syncfs).
        let (mut f, mut hasher, kept, mut at) = open_assembly(&tmp_path, &r, resume)?;
        let _ = ready.send(kept);
        let mut flushed = at;
        while let Some(data) = inbox.blocking_recv() {
            for piece in &data {
                // Zeros are left a hole: the file was made at its full
                // size, all holes past `at`, so a sparse file stays sparse
                // and its runs of zeros take no disk.
                let written = if crate::core::is_zeros(piece) {
                    f.seek(SeekFrom::Current(piece.len() as i64)).map(|_| ())
                } else {
                    f.write_all(piece)
                };
                written
                    .map_err(|e| WorkError::io(format_args!("write {}", tmp_path.display()), &e))?;
                hasher.update(piece);
                at += piece.len() as u64;
            }
            if at >= flushed + WRITEBACK_STEP {
                start_writeback(&f, flushed, at - flushed);
                flushed = at;
            }
        }
        Ok((f, hasher))
    });
    let Ok(from) = from.await else {
        // The writer could not open the file: its error says why.
        return Err(match writer.await {
            Ok(Err(e)) => e.into(),
            Ok(Ok(_)) => WorkError::new(Cause::Io, "the file could not be opened").into(),
            Err(_) => stopping().into(),
        });
    };
    let mut pending: std::collections::BTreeMap<usize, Data> = Default::default();
    let mut pending_bytes = 0u64;
    let mut next = from;
    let mut set = tokio::task::JoinSet::new();
    let mut fetched = 0u64;
    let mut writing = true;
    let planned = {
        let (s, record) = (s.clone(), record.clone());
        tokio::task::spawn_blocking(move || plan(&s, &record, from))
    };
    let mut jobs = planned
        .await
        .map_err(|_| stopping())?
        .into_iter()
        .enumerate();
    let mut failed = None;
    loop {
        // Start jobs while there is room; otherwise wait for one.
        let room = set.len() < JOBS_PER_FILE && pending_bytes < PENDING_BYTES;
        if writing
            && room
            && let Some((k, job)) = jobs.next()
        {
            set.spawn(run_job(s.clone(), record.clone(), sources.clone(), k, job));
            continue;
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        let done = match done.map_err(|_| stopping()).and_then(|d| d) {
            Ok(d) => d,
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        for (i, data, remote) in done {
            let n = count_chunk(s, &data, remote);
            if remote {
                fetched += n;
            }
            pending_bytes += n;
            pending.insert(i, data);
        }
        // Hand the chunks that are next in order to the writer. A writer
        // gone is a write that failed.
        while writing && let Some(data) = pending.remove(&next) {
            pending_bytes -= data_len(&data);
            if to_writer.send(data).await.is_err() {
                writing = false;
            }
            next += 1;
        }
    }
    // Wait for the writer even after a failure: the caller deletes the
    // temporary file, which must not be created after that.
    drop(to_writer);
    let written = writer.await.map_err(|_| stopping())?;
    if let Some(why) = failed {
        // What was written is the file's first chunks, each checked: a
        // later attempt at the same content goes on from there.
        return Err(Unfinished {
            why,
            resumable: written.is_ok() && writing && next > 0,
        });
    }
    let (f, hasher) = written?;
    if !writing || next < record.chunks.len() {
        return Err(WorkError::new(Cause::Io, "the file could not be written").into());
    }
    let r = record.clone();
    tokio::task::spawn_blocking(move || finish_file(&f, hasher.finalize().into(), &r))
        .await
        .map_err(|_| stopping())??;
    debug!(
        bytes_fetched = fetched,
        size = record.size,
        resumed_after_chunks = from,
        "assembled"
    );
    Ok(())
}

/// Open the temporary file a large file is assembled in: with `resume`,
/// the earlier attempt's file if it has the file's size, keeping the
/// chunks at its start whose bytes check out (their count and the offset
/// after them are returned, the whole-file hash fed with them and the file
/// positioned there); otherwise a new file of the right size.
pub(super) fn open_assembly(
    tmp: &Path,
    record: &FileRecord,
    resume: bool,
) -> Result<(std::fs::File, blake3::Hasher, usize, u64), WorkError> {
    let mut hasher = blake3::Hasher::new();
    if resume
        && let Ok(mut f) = std::fs::OpenOptions::new().read(true).write(true).open(tmp)
        && f.metadata().is_ok_and(|m| m.len() == record.size)
    {
        let mut kept = 0;
        let mut buf = Vec::new();
        for c in &record.chunks {
            buf.resize(c.len as usize, 0);
            if f.read_exact(&mut buf).is_err() || ContentHash::of(&buf) != c.hash {
                break;
            }
            hasher.update(&buf);
            kept += 1;
        }
        // The chunks tile the file: the next one starts where these end.
        // Whatever the earlier attempt left past them becomes a hole, as
        // in a new file: zeros are not written (see `assemble_large`).
        let at = record.chunks.get(kept).map_or(record.size, |c| c.offset);
        f.set_len(at)
            .and_then(|()| f.set_len(record.size))
            .and_then(|()| f.seek(SeekFrom::Start(at)))
            .map_err(|e| WorkError::io(format_args!("resume {}", tmp.display()), &e))?;
        return Ok((f, hasher, kept, at));
    }
    let f = std::fs::File::create(tmp)
        .map_err(|e| WorkError::io(format_args!("create {}", tmp.display()), &e))?;
    f.set_len(record.size)
        .map_err(|e| WorkError::io(format_args!("size {}", tmp.display()), &e))?;
    Ok((f, hasher, 0, 0))
}

/// A chunk of `len` zeros, as data to write (borrowed, never allocated).
pub(super) fn zero_data(len: u32) -> Data {
    vec![Bytes::from_static(crate::core::zeros(len))]
}

/// Whether chunk `c` is all zeros (known by its hash, never read).
pub(super) fn is_zero_chunk(c: &Chunk) -> bool {
    ContentHash::of_zeros(c.len) == Some(c.hash)
}

/// The bytes a file's assembly writes to disk: its size less its chunks
/// of zeros, which stay holes.
pub(super) fn bytes_to_write(record: &FileRecord) -> u64 {
    let zeros: u64 = record
        .chunks
        .iter()
        .filter(|c| is_zero_chunk(c))
        .map(|c| u64::from(c.len))
        .sum();
    record.size.saturating_sub(zeros)
}

/// Count a chunk's bytes as fetched from a peer or reused from a local
/// file; returns them.
pub(super) fn count_chunk(s: &Shared, data: &Data, remote: bool) -> u64 {
    let n = data_len(data);
    let counter = if remote {
        &s.bytes_fetched
    } else {
        &s.bytes_reused
    };
    counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    n
}

/// Check the assembled file against the announced hash, set its mtime
/// and permissions, and sync it if it is large — in parallel with other
/// transfers; small ones are synced together with their commit batch (see
/// [`committer`]).
pub(super) fn finish_file(
    f: &std::fs::File,
    got: ContentHash,
    record: &FileRecord,
) -> Result<(), WorkError> {
    if Some(got) != record.hash {
        return Err(WorkError::transfer(format!(
            "assembled file hashes to {got}, not the announced hash; discarded"
        )));
    }
    set_times_and_mode(f, record.mtime_ns, record.mode);
    if record.size >= SYNC_ALONE {
        f.sync_all()
            .map_err(|e| WorkError::io("sync the assembled file", &e))?;
    }
    Ok(())
}

/// The hash of a small file's assembled `bytes`, to check against the
/// announced one. A file of one chunk whose hash is the file's is not
/// hashed again: every chunk was checked when fetched or read locally.
pub(super) fn small_file_hash(record: &FileRecord, bytes: &[u8]) -> ContentHash {
    match (&record.chunks[..], record.hash) {
        ([only], Some(whole)) if only.hash == whole && only.len as usize == bytes.len() => whole,
        _ => ContentHash::of(bytes),
    }
}
