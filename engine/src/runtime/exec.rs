//! The executor: carries out the engine's file work on disk.
//!
//! Placing a file: every chunk the file needs is taken from a local file
//! that has it (same hash anywhere in any shared folder: renames and copies
//! move no bytes over the network) or fetched from a peer that announced
//! the version, several at once over bulk streams. The bytes go into a
//! hidden temporary file in the destination directory, each chunk checked
//! against its hash, the whole file against the announced hash; the file
//! is synced, its mtime and permissions set, and then — holding the store,
//! so the watcher cannot mistake the new file for a local edit — the engine
//! confirms the work is still wanted, the disk is checked to be what the
//! index says, a conflict copy is made if asked, the temporary file is
//! renamed into place and the new state recorded. A partial file never
//! appears at its real path. Removing moves the file into the folder's
//! `.softadastra/trash/` instead of deleting it.
//!
//! Chunk requests (bulk stream): 32-byte chunk hash + u32 LE length;
//! answer: one status byte (0 = here it is, 1 = not here) then the bytes.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::{Shared, lock};
use crate::core::{Clock, ContentHash, NodeId, VersionVector};
use crate::folder::{self, FileRecord};
use crate::fs::ignore::{META_DIR, TEMP_PREFIX};
use crate::fs::scan::{EntryKind, FileStat};
use crate::store::Store;
use crate::sync::resolve::{Probe, copy_target};
use crate::sync::{Action, Completed, Need, SyncEngine};
use crate::transport::quic::BulkStream;
use crate::transport::wire::{
    CHUNK_FOLLOWS, CHUNK_MISSING, ChunkRequest, MAX_REQUEST_BYTES, MAX_REQUEST_CHUNKS,
};
use crate::wal::PendingSync;

/// Why the chunk index is asked to rebuild.
#[derive(Debug, Clone, Copy)]
enum Rebuild {
    /// Routine: when the store changed and 10 s have passed.
    Lazy,
    /// A place it gave no longer held the chunk.
    Stale,
    /// A peer asked for a chunk it does not know.
    Missing,
}

/// Where a chunk can be read locally: file, offset, length, and the
/// file's stamp when it was indexed.
pub type Place = (PathBuf, u64, u32, Stamp);

/// A file's size, mtime and inode: while they are what the index recorded,
/// the file holds the bytes the index says (the scanner's own test for
/// skipping a re-read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    size: u64,
    mtime_ns: i64,
    inode: u64,
}

impl Stamp {
    fn of_record(r: &FileRecord) -> Stamp {
        Stamp {
            size: r.size,
            mtime_ns: r.mtime_ns,
            inode: r.inode,
        }
    }
    fn of_file(f: &std::fs::File) -> Option<Stamp> {
        let st = FileStat::from_metadata(&f.metadata().ok()?);
        Some(Stamp {
            size: st.size,
            mtime_ns: st.mtime_ns,
            inode: st.inode,
        })
    }
}

/// Where each chunk hash can be read locally.
#[derive(Debug, Default)]
pub struct ChunkIndex {
    at_seq: u64,
    built: Option<Instant>,
    map: HashMap<ContentHash, Place>,
    /// Chunks of files moved to the trash by sync: a rename arrives as a
    /// deletion and an addition, and the deletion may be carried out first.
    trashed: HashMap<ContentHash, Place>,
}

impl ChunkIndex {
    /// Rebuild from the store's index if it changed since the last build
    /// and that was a while ago: a full rebuild per lookup would make a
    /// bulk sync quadratic. Files placed by sync are added as they land
    /// ([`ChunkIndex::insert`]); a chunk found stale is re-hashed on read
    /// and simply fetched instead.
    fn refresh(&mut self, store: &Store, why: Rebuild) {
        if !self.may_rebuild(why) {
            return;
        }
        let seq = store.last_seq().0;
        if seq == self.at_seq {
            // Nothing changed: good for as long as a build would be.
            self.built = Some(Instant::now());
            return;
        }
        self.map.clear();
        for f in folder::list(store).unwrap_or_default() {
            for (rel, rec) in folder::records(store, &f.id).flatten() {
                if rec.deleted || rec.kind != EntryKind::File {
                    continue;
                }
                let Ok(abs) = crate::fs::path::absolute(&f.path, rel) else {
                    continue;
                };
                let stamp = Stamp::of_record(&rec);
                for c in &rec.chunks {
                    self.map
                        .entry(c.hash)
                        .or_insert_with(|| (abs.clone(), c.offset, c.len, stamp));
                }
            }
        }
        self.at_seq = seq;
        self.built = Some(Instant::now());
    }

    /// Whether the last build is old enough for a rebuild for `why` (if
    /// the store changed since): a chunk a peer asks for and the index
    /// lacks — whenever (the file was indexed a moment ago); a chunk not
    /// where the index said — at most every 250 ms, so a burst of moved
    /// files costs a few rebuilds, not one each; otherwise every 10 s.
    /// When not, a lookup needs no store (nor its lock).
    fn may_rebuild(&self, why: Rebuild) -> bool {
        let limit = match why {
            Rebuild::Missing => Duration::ZERO,
            Rebuild::Stale => Duration::from_millis(250),
            Rebuild::Lazy => Duration::from_secs(10),
        };
        self.built.is_none_or(|t| t.elapsed() >= limit)
    }

    /// Where `hash` may be read locally, as of the last build.
    fn places(&self, hash: &ContentHash) -> Vec<Place> {
        self.map
            .get(hash)
            .into_iter()
            .chain(self.trashed.get(hash))
            .cloned()
            .collect()
    }

    /// Record the chunks of a file just placed at `path`.
    fn insert(&mut self, path: &Path, record: &FileRecord) {
        let stamp = Stamp::of_record(record);
        for c in &record.chunks {
            self.map
                .insert(c.hash, (path.to_path_buf(), c.offset, c.len, stamp));
        }
    }

    /// Where `hash` may be read locally: a shared file, then the trash.
    /// `serving`: a peer asks for it because this node announced it, so a
    /// miss is worth a rebuild (the file may have been indexed a moment
    /// ago); `stale`: the places given before did not hold it (the file
    /// moved or changed), so the index is rebuilt first.
    pub fn find(
        &mut self,
        store: &Store,
        hash: &ContentHash,
        serving: bool,
        stale: bool,
    ) -> Vec<Place> {
        self.refresh(store, if stale { Rebuild::Stale } else { Rebuild::Lazy });
        if serving && !self.map.contains_key(hash) {
            self.refresh(store, Rebuild::Missing);
        }
        self.places(hash)
    }

    /// Remember the chunks of `record` at `to` in the trash, where its file
    /// is about to move — before it does: while it moves, a reader finds
    /// it at one of the two places ([`ChunkIndex::places`] lists the old
    /// one first), never at neither.
    fn trashing(&mut self, to: &Path, record: &FileRecord) {
        if self.trashed.len() > 1_000_000 {
            self.trashed.clear();
        }
        // A move keeps size, mtime and inode.
        let stamp = Stamp::of_record(record);
        for c in &record.chunks {
            self.trashed
                .insert(c.hash, (to.to_path_buf(), c.offset, c.len, stamp));
        }
    }

    /// The file of `record` moved from `from` (see [`ChunkIndex::trashing`])
    /// — or, if `moved` is false, did not: its chunks are where they were.
    fn trashed(&mut self, from: &Path, to: &Path, record: &FileRecord, moved: bool) {
        for c in &record.chunks {
            let (stale, kept) = if moved {
                (&mut self.map, from)
            } else {
                (&mut self.trashed, to)
            };
            if stale.get(&c.hash).is_some_and(|(p, ..)| p == kept) {
                stale.remove(&c.hash);
            }
        }
    }
}

/// A chunk's bytes: in the pieces they came off the network in, or in one
/// piece read from a local file.
type Data = Vec<Bytes>;

fn data_len(d: &Data) -> u64 {
    d.iter().map(|b| b.len() as u64).sum()
}

/// A file kept open across chunk reads (the chunks of one request mostly
/// come from one file, in order), with its stamp when it was opened.
#[derive(Default)]
struct OpenFile(Option<(PathBuf, std::fs::File, Option<Stamp>)>);

/// Read the chunk `hash` at `place`, checked: hashed again, unless
/// `trust_stamp` and the file is unchanged since it was indexed (a node
/// serving a peer; the peer checks every chunk itself). A node copying
/// its own chunks into a file always hashes them.
fn read_chunk(
    open: &mut OpenFile,
    place: &Place,
    hash: &ContentHash,
    trust_stamp: bool,
) -> Option<Vec<u8>> {
    let (path, offset, len, stamp) = place;
    if open.0.as_ref().is_none_or(|(p, ..)| p != path) {
        let f = std::fs::File::open(path).ok()?;
        let now = Stamp::of_file(&f);
        open.0 = Some((path.clone(), f, now));
    }
    let (_, f, now) = open.0.as_ref()?;
    let mut f: &std::fs::File = f;
    f.seek(SeekFrom::Start(*offset)).ok()?;
    // Read into spare capacity: the buffer is never zero-filled first.
    let mut buf = Vec::with_capacity(*len as usize);
    f.take(u64::from(*len)).read_to_end(&mut buf).ok()?;
    let unchanged = trust_stamp && *now == Some(*stamp);
    (buf.len() == *len as usize && (unchanged || ContentHash::of(&buf) == *hash)).then_some(buf)
}

/// The bytes of chunk `hash` from a local file, checked, starting from
/// `places` the index gave. A place that no longer holds the chunk (the
/// file moved or changed since) makes it look again with a fresh index.
fn local_chunk_from(
    s: &Shared,
    open: &mut OpenFile,
    hash: &ContentHash,
    serving: bool,
    places: Vec<Place>,
) -> Option<Vec<u8>> {
    let mut places = places;
    for stale in [false, true] {
        if stale {
            places = locate_chunk(s, hash, serving, true);
        }
        if places.is_empty() {
            return None;
        }
        for place in places.drain(..) {
            if let Some(d) = read_chunk(open, &place, hash, serving) {
                return Some(d);
            }
        }
    }
    None
}

/// [`ChunkIndex::find`], taking the store's lock only when a rebuild may
/// be due: the store is often held for a while (a commit batch's flush),
/// and the chunk index is never held while the store is being taken (the
/// committer takes them in the other order).
fn locate_chunk(s: &Shared, hash: &ContentHash, serving: bool, stale: bool) -> Vec<Place> {
    {
        let index = lock(&s.chunks);
        let why = if stale { Rebuild::Stale } else { Rebuild::Lazy };
        if !index.may_rebuild(why) && (!serving || index.map.contains_key(hash)) {
            return index.places(hash);
        }
    }
    let store = lock(&s.store);
    lock(&s.chunks).find(&store, hash, serving, stale)
}

/// Answer the chunk request a peer opened a bulk stream with (see
/// [`ChunkRequest`]). The chunks are read and checked in order on a
/// blocking thread, a few ahead of the network.
pub async fn serve_chunks(s: Arc<Shared>, peer: NodeId, mut stream: BulkStream) {
    let request = match read_request(&mut stream).await {
        Ok(r) => r,
        Err(e) => {
            debug!(%peer, error = %e, "refused a chunk request");
            return;
        }
    };
    // The reader below holds a blocking thread until the peer has read
    // everything: a bounded number of them at once (`SERVING`).
    let Ok(_serving) = s.serving.acquire().await else {
        return;
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(4);
    let s2 = s.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let s = s2;
        let mut open = OpenFile::default();
        for (hash, len) in request.chunks {
            let places = locate_chunk(&s, &hash, true, false);
            let data = local_chunk_from(&s, &mut open, &hash, true, places)
                .filter(|d| d.len() == len as usize);
            if data.is_none() {
                debug!(%peer, chunk = %hash, "asked for a chunk this node does not have");
            }
            if tx.blocking_send(data).is_err() {
                break;
            }
        }
    });
    while let Some(data) = rx.recv().await {
        let sent = match data {
            Some(d) => {
                stream.write_all(&[CHUNK_FOLLOWS]).await.is_ok()
                    && stream.write_bytes(Bytes::from(d)).await.is_ok()
            }
            None => stream.write_all(&[CHUNK_MISSING]).await.is_ok(),
        };
        if !sent {
            break;
        }
    }
    drop(rx);
    let _ = reader.await;
    let _ = stream.finish();
}

async fn read_request(stream: &mut BulkStream) -> Result<ChunkRequest, String> {
    let mut head = [0u8; 2];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|e| e.to_string())?;
    let mut body = vec![0u8; ChunkRequest::body_len(head).map_err(|e| e.to_string())?];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    ChunkRequest::decode(head, &body).map_err(|e| e.to_string())
}

/// When each peer last sent chunk bytes to this node, in milliseconds
/// since the node started: a chunk request is given up when its peer has
/// been silent for the stall time ([`Shared::stall`]), whatever the
/// request's own age.
pub struct Heard {
    epoch: Instant,
    peers: std::sync::Mutex<HashMap<NodeId, Arc<AtomicU64>>>,
}

impl Default for Heard {
    fn default() -> Self {
        Heard {
            epoch: Instant::now(),
            peers: Default::default(),
        }
    }
}

impl Heard {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
    /// `peer`'s clock: the time it last sent bytes, which fetches move on.
    fn of(&self, peer: NodeId) -> Arc<AtomicU64> {
        lock(&self.peers).entry(peer).or_default().clone()
    }
}

/// Fetch `chunks` from `peer` on one bulk stream. Each comes back checked
/// against its hash, or as `None`: the peer does not have it, or sent bytes
/// that do not match (discarded). An error is a broken stream, or a peer
/// that sent nothing for the stall time ([`Shared::stall`]) — on this
/// stream or any other to it: a request crawling over a slow link, or
/// waiting behind others the peer is busy sending, is not given up.
async fn fetch_chunks(
    s: &Shared,
    peer: NodeId,
    chunks: &[(ContentHash, u32)],
) -> Result<Vec<Option<Data>>, String> {
    let handle = lock(&s.peers)
        .get(&peer)
        .cloned()
        .ok_or("peer not connected")?;
    let request = ChunkRequest {
        chunks: chunks.to_vec(),
    }
    .encode()
    .map_err(|e| e.to_string())?;
    let heard = s.heard.of(peer);
    let started = s.heard.now();
    let sent_something = || {
        heard.fetch_max(s.heard.now(), Ordering::Relaxed);
    };
    let work = async {
        let mut stream = handle.open_bulk().await.map_err(|e| e.to_string())?;
        stream
            .write_all(&request)
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.finish();
        let mut got = Vec::with_capacity(chunks.len());
        for (hash, len) in chunks {
            let mut status = [0u8; 1];
            stream
                .read_exact(&mut status)
                .await
                .map_err(|e| e.to_string())?;
            sent_something();
            match status[0] {
                CHUNK_FOLLOWS => {}
                CHUNK_MISSING => {
                    got.push(None);
                    continue;
                }
                other => return Err(format!("{peer} answered a chunk with status {other}")),
            }
            let mut pieces = Vec::new();
            let mut hasher = blake3::Hasher::new();
            let mut left = *len as usize;
            while left > 0 {
                let piece = stream
                    .read_bytes(left)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("stream ended early")?;
                sent_something();
                left = left.saturating_sub(piece.len());
                hasher.update(&piece);
                pieces.push(piece);
            }
            if ContentHash::from(hasher.finalize()) == *hash {
                got.push(Some(pieces));
            } else {
                warn!(%peer, chunk = %hash, "a chunk with the wrong hash; discarded");
                got.push(None);
            }
        }
        Ok(got)
    };
    let stall = s.stall;
    let watch = async {
        let every = (stall / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            tokio::time::sleep(every).await;
            let last = heard.load(Ordering::Relaxed).max(started);
            if s.heard.now().saturating_sub(last) >= stall.as_millis() as u64 {
                return;
            }
        }
    };
    tokio::select! {
        got = work => got,
        () = watch => Err(format!("{peer} sent nothing for {stall:?}")),
    }
}

/// Runs of chunks this small (whole small files, mostly) are fetched
/// together with others (see [`SmallFetches`]); files this small are
/// limited by [`Shared::small_transfers`](super::Shared).
pub const SMALL_FILE: u64 = 64 << 10;

/// Chunk requests to one peer running at once for gathered small runs.
const GATHERED_REQUESTS: usize = 8;

/// Small runs of chunks waiting to be fetched, per peer. Asking for each
/// small file on a bulk stream of its own costs a round trip and a stream
/// per file — thousands of small files crawl. Instead up to
/// [`GATHERED_REQUESTS`] requests per peer run at once, each taking
/// every small run waiting (up to a request's limits): while they are
/// out, new ones gather for the next request.
#[derive(Default)]
pub struct SmallFetches(std::sync::Mutex<HashMap<NodeId, Gathering>>);

#[derive(Default)]
struct Gathering {
    waiting: std::collections::VecDeque<Wanted>,
    requests: usize,
}

/// One chunk wanted, and where its answer goes.
struct Wanted {
    hash: ContentHash,
    len: u32,
    reply: ChunkReply,
}

/// What is done with a chunk's answer: its bytes, `None` when the peer
/// does not have it (or sent it wrong), or why the request failed.
type ChunkReply = Box<dyn FnOnce(Result<Option<Data>, String>) + Send>;

/// Ask `peer` for `chunks` in requests shared with other small runs for
/// the same peer; each chunk's answer goes to its reply.
fn ask_gathered(
    s: &Arc<Shared>,
    peer: NodeId,
    chunks: impl IntoIterator<Item = (ContentHash, u32, ChunkReply)>,
) {
    let mut all = lock(&s.small_fetches.0);
    let gathering = all.entry(peer).or_default();
    gathering
        .waiting
        .extend(
            chunks
                .into_iter()
                .map(|(hash, len, reply)| Wanted { hash, len, reply }),
        );
    if gathering.requests < GATHERED_REQUESTS {
        gathering.requests += 1;
        tokio::spawn(send_gathered(s.clone(), peer));
    }
}

/// [`fetch_chunks`] for a small run, sharing a request with other small
/// runs for the same peer.
async fn fetch_gathered(
    s: &Arc<Shared>,
    peer: NodeId,
    chunks: Vec<(ContentHash, u32)>,
) -> Result<Vec<Option<Data>>, String> {
    let mut answers = Vec::with_capacity(chunks.len());
    ask_gathered(
        s,
        peer,
        chunks.into_iter().map(|(hash, len)| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            answers.push(rx);
            let reply: ChunkReply = Box::new(move |answer| drop(tx.send(answer)));
            (hash, len, reply)
        }),
    );
    let mut got = Vec::with_capacity(answers.len());
    for answer in answers {
        got.push(
            answer
                .await
                .map_err(|_| "the fetch was dropped".to_string())??,
        );
    }
    Ok(got)
}

/// Send what is waiting for `peer` in requests, one at a time, until
/// nothing is.
async fn send_gathered(s: Arc<Shared>, peer: NodeId) {
    loop {
        let _slot = s.chunk_slots.acquire().await;
        let batch: Vec<Wanted> = {
            let mut all = lock(&s.small_fetches.0);
            let Some(gathering) = all.get_mut(&peer) else {
                return;
            };
            let mut batch = Vec::new();
            let mut bytes = 0u64;
            while let Some(w) = gathering.waiting.front() {
                let len = u64::from(w.len);
                if batch.len() == MAX_REQUEST_CHUNKS
                    || (!batch.is_empty() && bytes + len > MAX_REQUEST_BYTES)
                {
                    break;
                }
                bytes += len;
                batch.extend(gathering.waiting.pop_front());
            }
            if batch.is_empty() {
                gathering.requests -= 1;
                if gathering.requests == 0 {
                    all.remove(&peer);
                }
                return;
            }
            batch
        };
        let ask: Vec<(ContentHash, u32)> = batch.iter().map(|w| (w.hash, w.len)).collect();
        match fetch_chunks(&s, peer, &ask).await {
            Ok(got) => {
                for (w, d) in batch.into_iter().zip(got) {
                    (w.reply)(Ok(d));
                }
            }
            Err(e) => {
                for w in batch {
                    (w.reply)(Err(e.clone()));
                }
            }
        }
    }
}

/// Files the agent just placed, each in the [`Placed`] state it was in right
/// after: the watcher's event for such a file is recognised with one stat
/// — nothing touched the file since — instead of being reconciled against
/// the index under the store's lock (which the committer needs). Anything
/// that changed the file since (an edit, a replacement, a chmod) changes
/// its stamp, and the event is reconciled as any other. An entry goes
/// when its event is seen; past a cap all go (events the watcher never
/// delivered must not pile up) and the watcher merely reconciles them.
#[derive(Debug, Default)]
pub struct Echoes {
    placed: std::sync::Mutex<HashMap<String, HashMap<String, Placed>>>,
}

impl Echoes {
    const CAP: usize = 100_000;

    fn placed(&self, files: &[(&String, &String, Placed)]) {
        if files.is_empty() {
            return;
        }
        let mut placed = lock(&self.placed);
        if placed.values().map(HashMap::len).sum::<usize>() + files.len() > Self::CAP {
            placed.clear();
        }
        for (folder, path, stamp) in files {
            placed
                .entry(folder.to_string())
                .or_default()
                .insert(path.to_string(), *stamp);
        }
    }

    /// Take out of `batch` (folder `folder` at `root`) the paths that are
    /// exactly as the agent placed them.
    pub fn drop_from(&self, folder: &str, root: &Path, batch: &mut crate::fs::watch::Batch) {
        let wanted: Vec<Option<Placed>> = {
            let mut placed = lock(&self.placed);
            let Some(files) = placed.get_mut(folder) else {
                return;
            };
            batch.paths.iter().map(|p| files.remove(p)).collect()
        };
        let mut wanted = wanted.into_iter();
        batch.paths.retain(|rel| {
            let Some(want) = wanted.next().flatten() else {
                return true;
            };
            let now = crate::fs::path::absolute(root, rel)
                .ok()
                .and_then(|abs| std::fs::symlink_metadata(abs).ok())
                .and_then(|m| Placed::of(&m));
            now != Some(want)
        });
    }
}

/// What identifies one state of a file, finer than [`Stamp`]: a write, a
/// truncation, a replacement, a chmod or a touch all change it (the change
/// time moves with any of them, to the file system's clock granularity —
/// the same limit as the scanner's own test). Unix only: elsewhere nothing
/// is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    inode: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Placed {
    fn of(m: &std::fs::Metadata) -> Option<Placed> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Some(Placed {
                inode: m.ino(),
                size: m.size(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = m;
            None
        }
    }
}

/// Whether the disk at `abs` is what the index entry `expect` says.
fn disk_matches(abs: &Path, expect: Option<&FileRecord>) -> bool {
    let meta = std::fs::symlink_metadata(abs).ok();
    match (meta, expect.filter(|e| !e.deleted)) {
        (None, None) => true,
        (Some(m), Some(e)) => {
            let st = FileStat::from_metadata(&m);
            st.kind == e.kind
                && (e.kind == EntryKind::Dir || (st.size == e.size && st.inode == e.inode))
        }
        _ => false,
    }
}

/// Refuse a destination whose parent directories (inside the folder) are
/// symlinks: writing through one could land outside the folder.
fn parents_are_real(root: &Path, abs: &Path) -> bool {
    parents(root, abs) != Parents::Refused
}

/// What a destination's parent directories inside the folder are.
#[derive(Debug, PartialEq)]
enum Parents {
    /// Directories, every one.
    Real,
    /// Some are missing (or not directories); none is a symlink.
    Missing,
    /// One is a symlink (or the destination is not inside the root).
    Refused,
}

/// Look at each of `abs`'s parents inside `root` (`lstat` each: a
/// symlinked ancestor would be followed by a look at its child).
fn parents(root: &Path, abs: &Path) -> Parents {
    let mut found = Parents::Real;
    let mut p = abs.parent();
    while let Some(dir) = p {
        if dir == root {
            return found;
        }
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() => return Parents::Refused,
            Ok(m) if m.is_dir() => {}
            _ => found = Parents::Missing,
        }
        p = dir.parent();
    }
    Parents::Refused
}

/// Where a file being received goes.
#[derive(Clone)]
struct Dest {
    /// The folder's root.
    root: PathBuf,
    /// The file's final path.
    abs: PathBuf,
    /// The temporary file it is assembled in, beside `abs`.
    tmp: PathBuf,
}

/// Refuse to write or remove `abs` (in the folder at `root`) when the
/// folder contains this node's home and `abs` is inside it: the folder's
/// scan leaves the home out of the index, but a peer could still name
/// paths there. (A folder *inside* the home, as `<home>/docs`, is
/// ordinary: it holds none of the home's own files.)
fn outside_home(home: Option<&Path>, root: &Path, abs: &Path) -> Result<(), String> {
    match home {
        Some(h) if h.starts_with(root) && abs.starts_with(h) => Err(format!(
            "refused: {} is inside this node's home",
            abs.display()
        )),
        _ => Ok(()),
    }
}

impl Dest {
    /// Where `path` of the folder at `root` goes (never into `home`, see
    /// [`outside_home`]).
    fn of(root: PathBuf, path: &str, home: Option<&Path>) -> Result<Dest, String> {
        let abs = crate::fs::path::absolute(&root, path).map_err(|e| e.to_string())?;
        outside_home(home, &root, &abs)?;
        Ok(Dest {
            tmp: temp_path(&abs),
            root,
            abs,
        })
    }

    /// Make the directory the file goes in, refusing one reached through
    /// a symlink (writing through it could land outside the folder).
    /// Blocking.
    fn prepare(&self, folder: &str, path: &str) -> Result<(), String> {
        match parents(&self.root, &self.abs) {
            Parents::Real => Ok(()),
            Parents::Refused => Err(symlinked_parent(folder, path)),
            Parents::Missing => {
                let parent = self.abs.parent().unwrap_or(&self.root);
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("create {}: {e}", parent.display()))
            }
        }
    }
}

/// Refuse `path` of `folder` (a parent directory is a symlink), loudly.
fn symlinked_parent(folder: &str, path: &str) -> String {
    warn!(%folder, %path, "refused: a parent directory is a symlink");
    "a parent directory is a symlink".to_string()
}

/// The temporary file a download of `abs` is assembled in, beside it:
/// `.softadastra-tmp-<8 hex>-<name>`, or, when that would be longer than a
/// file name may be, `.softadastra-tmp-<8 hex>=<blake3 of the name, 32
/// hex>` ([`lost_rename`] finds the destination either way).
fn temp_path(abs: &Path) -> PathBuf {
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tag = fastrand::u32(..);
    let full = format!("{TEMP_PREFIX}{tag:08x}-{name}");
    if full.len() <= crate::fs::path::NAME_MAX {
        return abs.with_file_name(full);
    }
    abs.with_file_name(format!("{TEMP_PREFIX}{tag:08x}={}", name_digest(&name)))
}

/// What stands for a name too long to go into a temporary file's name.
fn name_digest(name: &str) -> String {
    blake3::hash(name.as_bytes()).to_hex()[..32].to_string()
}

/// At start, before the folder is scanned, deal with the temporary files
/// a crash left. A transfer cut short by a stop is not resumed from its
/// temporary file (the work restarts from the stored need; within a run,
/// see [`Partials`]): it is deleted. But a new
/// file whose entry became durable while its rename did not (a power cut
/// right after its batch, see [`committer`]) is finished: when its
/// destination is missing and the index — or the sync work still wanted
/// for that path (a replacement stopped between moving the old version to
/// the trash and moving the new one in) — says the destination holds
/// exactly the temporary file's bytes, the file is moved into place
/// (never over anything) — otherwise the scan would take the missing file
/// for a local deletion and send it to every peer.
pub fn recover_temp_files(s: &Shared, folder: &folder::FolderConfig) {
    let walker = walkdir::WalkDir::new(&folder.path)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| e.file_name() != META_DIR);
    for entry in walker.flatten() {
        let tmp = entry.path();
        if !entry.file_type().is_file()
            || !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
        {
            continue;
        }
        if let Some(dest) = lost_rename(s, folder, tmp) {
            let moved = rename_new(tmp, &dest)
                .and_then(|()| make_durable(&[], &[dest.parent().unwrap_or(&folder.path)], 0));
            match moved {
                Ok(()) => {
                    info!(path = %dest.display(), "finished placing a file a crash interrupted");
                    continue;
                }
                Err(e) => {
                    warn!(path = %dest.display(), error = %e, "cannot finish placing a file a crash interrupted")
                }
            }
        }
        match std::fs::remove_file(tmp) {
            Ok(()) => info!(path = %tmp.display(), "removed an unfinished download"),
            Err(e) => {
                warn!(path = %tmp.display(), error = %e, "cannot remove an unfinished download")
            }
        }
    }
}

/// Where the temporary file `tmp` belongs, if it is a finished file whose
/// rename a crash lost (see [`recover_temp_files`]).
fn lost_rename(s: &Shared, folder: &folder::FolderConfig, tmp: &Path) -> Option<PathBuf> {
    let rest = tmp.file_name()?.to_str()?.strip_prefix(TEMP_PREFIX)?;
    // `temp_path`: 8 hex digits, then a dash and the destination's name,
    // or `=` and its digest.
    let (tag, name) = rest.split_at_checked(9)?;
    if name.is_empty() {
        return None;
    }
    let (rel, record) = match tag.as_bytes()[8] {
        b'-' => {
            let dest = tmp.with_file_name(name);
            let rel = crate::fs::path::relative(&folder.path, &dest).ok()?;
            let record = folder::record(&lock(&s.store), &folder.id, &rel)?;
            (rel, record)
        }
        b'=' => {
            // The one record of that directory whose name has this digest.
            let dir = crate::fs::path::relative(&folder.path, tmp.parent()?).ok();
            let prefix = match &dir {
                Some(d) => format!("{d}/"),
                None => String::new(),
            };
            let store = lock(&s.store);
            folder::records(&store, &folder.id)
                .flatten()
                .filter(|(p, _)| p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
                .find(|(p, _)| name_digest(&p[prefix.len()..]) == name)
                .map(|(p, r)| (p.to_string(), r))?
        }
        _ => return None,
    };
    let dest = crate::fs::path::absolute(&folder.path, &rel).ok()?;
    if std::fs::symlink_metadata(&dest).is_ok() || !parents_are_real(&folder.path, &dest) {
        return None;
    }
    // What the path should hold: what the index says (a new file whose
    // entry became durable) or what sync was placing there (a replaced
    // file whose old version had gone to the trash when the node stopped:
    // without its new one, the scan would take the path for deleted here
    // and delete it everywhere).
    let need = SyncEngine::need(&lock(&s.store), &folder.id, &rel).map(|n| n.record);
    let wanted: Vec<&FileRecord> = [Some(&record), need.as_ref()]
        .into_iter()
        .flatten()
        .filter(|r| !r.deleted && r.kind == EntryKind::File)
        .collect();
    let mut f = std::fs::File::open(tmp).ok()?;
    let len = f.metadata().ok()?.len();
    if !wanted.iter().any(|r| r.size == len) {
        return None;
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(&mut f).ok()?;
    let got: ContentHash = hasher.finalize().into();
    wanted.iter().any(|r| r.hash == Some(got)).then_some(dest)
}

/// Carry out one Place or Remove (a small file's place goes the way of a
/// batch, [`run_small`]).
pub async fn run(s: Arc<Shared>, work: Action) {
    if is_small_place(&work) {
        return run_small(s, vec![work]).await;
    }
    let (folder_id, path) = match &work {
        Action::Place { folder, path, .. } | Action::Remove { folder, path, .. } => {
            (folder.clone(), path.clone())
        }
        Action::Send { .. } => return,
    };
    let result = match work {
        Action::Place {
            folder,
            path,
            need,
            expect,
        } => place(&s, &folder, &path, need, expect).await,
        Action::Remove {
            folder,
            path,
            need,
            expect,
        } => {
            submit(
                &s,
                Commit {
                    folder,
                    path,
                    need,
                    expect,
                    step: Step::Remove,
                },
            )
            .await
        }
        Action::Send { .. } => Ok(Vec::new()),
    };
    let mut actions = Vec::new();
    finished(&s, &folder_id, &path, result, &mut actions);
    s.report(actions);
}

/// Account for one piece of file work that ended: done (its follow-up
/// actions join `actions`), or failed and to be retried.
fn finished(
    s: &Shared,
    folder: &str,
    path: &str,
    result: Result<Vec<Action>, String>,
    actions: &mut Vec<Action>,
) {
    match result {
        Ok(more) => {
            s.partials.forget(folder, path);
            s.files_done
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            actions.extend(more);
        }
        Err(e) => {
            debug!(%folder, %path, error = %e, "file work will be retried");
            lock(&s.engine).failed(folder, path, Instant::now(), &e);
        }
    }
}

/// A folder's root if it is cached (no store lock taken).
fn cached_root(s: &Shared, folder_id: &str) -> Option<PathBuf> {
    lock(&s.roots).get(folder_id).cloned()
}

fn root_of(s: &Shared, folder_id: &str) -> Result<PathBuf, String> {
    if let Some(root) = cached_root(s, folder_id) {
        return Ok(root);
    }
    let root = folder::get(&lock(&s.store), folder_id)
        .map(|f| f.path)
        .map_err(|e| e.to_string())?;
    lock(&s.roots).insert(folder_id.to_string(), root.clone());
    Ok(root)
}

/// The root of `folder_id`: cached, or read from the store on a blocking
/// thread — the store's lock may be held through a commit batch's flush,
/// and the async workers carry every connection.
async fn root_async(s: &Arc<Shared>, folder_id: &str) -> Result<PathBuf, String> {
    if let Some(root) = cached_root(s, folder_id) {
        return Ok(root);
    }
    let (s2, folder2) = (s.clone(), folder_id.to_string());
    tokio::task::spawn_blocking(move || root_of(&s2, &folder2))
        .await
        .map_err(|e| e.to_string())?
}

/// Carry out a Place of anything but a small file (see [`run_small`]).
async fn place(
    s: &Arc<Shared>,
    folder_id: &str,
    path: &str,
    need: Need,
    expect: Option<FileRecord>,
) -> Result<Vec<Action>, String> {
    match need.record.kind {
        EntryKind::Dir => {
            return submit(s, Commit::place(folder_id, path, need, expect, None)).await;
        }
        EntryKind::Symlink => {
            // Symlinks are recorded, never created from a peer's say-so.
            let mut store = lock(&s.store);
            lock(&s.engine)
                .abandon(&mut store, folder_id, path)
                .map_err(|e| e.to_string())?;
            info!(folder = %folder_id, %path, "a peer's symlink is not recreated here");
            return Ok(Vec::new());
        }
        EntryKind::Value => {
            // The sync engine refuses such records for folders; never a file.
            let mut store = lock(&s.store);
            lock(&s.engine)
                .abandon(&mut store, folder_id, path)
                .map_err(|e| e.to_string())?;
            return Err("an application value is not a file".into());
        }
        EntryKind::File => {}
    }
    let mut dest = Dest::of(root_async(s, folder_id).await?, path, s.home.as_deref())?;
    let resume = s.partials.take(folder_id, path, need.record.hash);
    if let Some(tmp) = &resume {
        dest.tmp = tmp.clone();
    }
    let (d, folder2, path2) = (dest.clone(), folder_id.to_string(), path.to_string());
    let prepared = tokio::task::spawn_blocking(move || d.prepare(&folder2, &path2))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    if let Err(e) = prepared {
        if resume.is_some() {
            let _ = std::fs::remove_file(&dest.tmp);
        }
        return Err(e);
    }
    let tmp = dest.tmp.clone();
    let assembled = {
        let _permit = s.transfers.acquire().await;
        assemble(s, &need, &dest, resume.is_some()).await
    };
    if let Err(e) = assembled {
        if e.resumable {
            s.partials
                .keep(folder_id, path, tmp, need.record.hash, Instant::now());
        } else {
            let _ = std::fs::remove_file(&tmp);
        }
        return Err(e.why);
    }
    let result = submit(
        s,
        Commit::place(folder_id, path, need, expect, Some(tmp.clone())),
    )
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Most small files one task carries out (see [`run_small`]).
pub const SMALL_BATCH: usize = 32;

/// Whether `work` places a small file: such work is carried out in
/// batches ([`run_small`]).
pub fn is_small_place(work: &Action) -> bool {
    matches!(work, Action::Place { need, .. }
        if need.record.kind == EntryKind::File && need.record.size <= SMALL_FILE)
}

/// One small file of a batch on its way.
struct SmallFile {
    folder: String,
    path: String,
    need: Need,
    expect: Option<FileRecord>,
    dest: Option<Dest>,
    sources: Vec<NodeId>,
    /// Its chunks, as they arrive.
    parts: Vec<Option<Data>>,
    /// Chunks (by index) to ask of the next source.
    want: Vec<usize>,
    /// Sources asked so far.
    tries: usize,
    /// The source asked last, its answers still coming in (how many), and
    /// the chunks it did not send.
    asked: Option<NodeId>,
    outstanding: usize,
    missing: Vec<usize>,
    /// Why the last source asked did not send them all.
    last: Option<String>,
    /// Why it cannot go on, if it cannot.
    failed: Option<String>,
}

/// A chunk's answer for a batch: (file, chunk index, answer).
type BatchAnswer = (usize, usize, Result<Option<Data>, String>);

/// Place small files ([`is_small_place`]) in one task: thousands of small
/// files cost one task, one answer channel and a few writer jobs per batch
/// instead of a task, a few channel hops and a blocking job each (the
/// receiving node's async workers spent a third less CPU on a 20,000-file
/// sync). Each file still goes at its own pace and succeeds or fails
/// alone: its local chunks are copied, its missing ones asked of its
/// sources in turn (fetched together with other batches' small runs,
/// [`ask_gathered`]) — a source that sent only some is followed by the
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
                    outstanding: 0,
                    missing: Vec::new(),
                    last: None,
                    failed,
                });
            }
        }
    }
    for f in files.iter_mut().filter(|f| f.failed.is_none()) {
        match root_async(&s, &f.folder)
            .await
            .and_then(|root| Dest::of(root, &f.path, s.home.as_deref()))
        {
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
type SentCommit = (
    String,
    String,
    tokio::sync::oneshot::Receiver<Result<Vec<Action>, String>>,
    PathBuf,
);

/// Copy every chunk of the batch that local files have, in one blocking
/// job; the others (and local copies that turn out stale) are to fetch.
async fn copy_local(s: &Arc<Shared>, files: &mut [SmallFile]) {
    let mut local: Vec<(usize, usize, Vec<Place>)> = Vec::new();
    for (n, f) in files.iter_mut().enumerate() {
        if f.failed.is_some() {
            continue;
        }
        for job in plan(s, &f.need.record, 0) {
            match job {
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
                (n, i, local_chunk_from(&s2, &mut open, &hash, false, places))
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
        Err(e) => {
            for f in files.iter_mut() {
                f.failed.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Ask the next source of file `n` for the chunks it still wants, the
/// answers going to `tx`. `false` when nothing is to be asked: the file
/// has all its chunks, has failed, or has no source left (it fails).
fn ask_next(
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
        f.failed = Some(last.unwrap_or_else(|| NO_SOURCE.into()));
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
struct Answering(
    Option<(
        tokio::sync::mpsc::UnboundedSender<BatchAnswer>,
        usize,
        usize,
    )>,
);

impl Answering {
    fn send(mut self, answer: Result<Option<Data>, String>) {
        if let Some((tx, n, i)) = self.0.take() {
            let _ = tx.send((n, i, answer));
        }
    }
}

/// The reply for chunk `i` of file `n` of a batch.
fn batch_reply(
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
            let _ = tx.send((n, i, Err("the fetch was dropped".into())));
        }
    }
}

/// Take the answer for chunk `i` of `f`; `true` when it was the last one
/// the source asked owed (what it did not send is then wanted again).
fn took_answer(
    s: &Shared,
    f: &mut SmallFile,
    i: usize,
    answer: Result<Option<Data>, String>,
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
async fn write_and_commit(
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
                let commit =
                    Commit::place(&f.folder, &f.path, f.need, f.expect, Some(dest.tmp.clone()));
                send_commit(s, commit).map(|rx| (rx, dest.tmp))
            }
            (failed, _) => Err(failed.unwrap_or_else(|| "the file could not be written".into())),
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
fn write_small(f: &mut SmallFile) {
    let Some(dest) = f.dest.as_ref().filter(|_| f.failed.is_none()) else {
        return;
    };
    let record = &f.need.record;
    let written = (|| {
        dest.prepare(&f.folder, &f.path)?;
        if f.parts.iter().any(Option::is_none) {
            return Err("the file could not be written".to_string());
        }
        let tmp = &dest.tmp;
        let mut file =
            std::fs::File::create(tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
        // In one write (the pieces are as the network delivered them).
        let mut bytes = Vec::with_capacity(record.size as usize);
        for piece in f.parts.iter().flatten().flatten() {
            bytes.extend_from_slice(piece);
        }
        file.write_all(&bytes).map_err(|e| e.to_string())?;
        finish_file(&file, small_file_hash(record, &bytes), record)
    })();
    f.parts = Vec::new();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&dest.tmp);
        f.failed = Some(e);
    }
}

/// The connected peers to fetch `need`'s file from: those that announced
/// its version, or else every connected peer.
fn sources_of(peers: &HashMap<NodeId, super::PeerHandle>, need: &Need) -> Vec<NodeId> {
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

/// Peers' records are checked when they arrive; a need stored by an older
/// build is checked here.
fn check_tiles(record: &FileRecord) -> Result<(), String> {
    if record.chunks_tile() {
        Ok(())
    } else {
        Err("the file's chunks do not cover it exactly".into())
    }
}

/// Why a file could not be fetched when no source was left to ask.
const NO_SOURCE: &str = "no connected peer has this file";

/// Why `peer` was not enough for a file's chunks.
fn lacks_chunks(peer: NodeId) -> String {
    format!("{peer} does not have every chunk asked for")
}

/// Most bytes fetched on one bulk stream: enough that a stream costs little
/// next to its bytes, small enough that several run in parallel per file
/// and a lost one costs little to ask again.
const FETCH_BYTES: u64 = 1 << 20;
/// Fetches and local reads in flight per file.
const JOBS_PER_FILE: usize = 6;
/// Bytes a file may hold in memory waiting for an earlier chunk.
const PENDING_BYTES: u64 = 4 << 20;

/// One unit of a file's assembly.
enum Job {
    /// Chunk `i`, which local files have (at the places given).
    Local(usize, Vec<Place>),
    /// Chunks (by index) fetched from a peer on one bulk stream.
    Remote(Vec<usize>),
}

/// Split the file's chunks into jobs, in file order: each chunk local
/// files have is copied from them; the others are fetched in runs of
/// consecutive chunks, up to [`FETCH_BYTES`] (and [`MAX_REQUEST_CHUNKS`])
/// each. Jobs in file order keep the chunks waiting for an earlier one
/// few: the job holding the next chunk to write is always started.
fn plan(s: &Shared, record: &FileRecord, from: usize) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut run: Vec<usize> = Vec::new();
    let mut run_bytes = 0u64;
    for (i, c) in record.chunks.iter().enumerate().skip(from) {
        let places = locate_chunk(s, &c.hash, false, false);
        let len = u64::from(c.len);
        let full = run_bytes + len > FETCH_BYTES || run.len() == MAX_REQUEST_CHUNKS;
        if !run.is_empty() && (full || !places.is_empty()) {
            jobs.push(Job::Remote(std::mem::take(&mut run)));
            run_bytes = 0;
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
async fn run_job(
    s: Arc<Shared>,
    record: Arc<FileRecord>,
    sources: Arc<Vec<NodeId>>,
    k: usize,
    job: Job,
) -> Result<Vec<(usize, Data, bool)>, String> {
    let mut want = match job {
        Job::Local(i, places) => {
            let _slot = s.chunk_slots.acquire().await;
            let c = record.chunks[i];
            let s2 = s.clone();
            let local = tokio::task::spawn_blocking(move || {
                local_chunk_from(&s2, &mut OpenFile::default(), &c.hash, false, places)
            })
            .await
            .map_err(|e| e.to_string())?;
            if let Some(d) = local {
                return Ok(vec![(i, vec![Bytes::from(d)], false)]);
            }
            vec![i]
        }
        Job::Remote(run) => run,
    };
    let mut done = Vec::with_capacity(want.len());
    let mut last = NO_SOURCE.to_string();
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
async fn assemble(
    s: &Arc<Shared>,
    need: &Need,
    dest: &Dest,
    resume: bool,
) -> Result<(), Unfinished> {
    check_tiles(&need.record)?;
    let record = Arc::new(need.record.clone());
    let sources = Arc::new(sources_of(&lock(&s.peers), need));
    // Boxed: the state of a large file's assembly is several KiB.
    Box::pin(assemble_large(s, record, sources, &dest.tmp, resume)).await
}

/// Why a large file's assembly did not finish, and whether its temporary
/// file is worth keeping: it holds the file's first chunks, checked, and
/// only fetching the rest failed.
#[derive(Debug)]
struct Unfinished {
    why: String,
    resumable: bool,
}

impl From<String> for Unfinished {
    fn from(why: String) -> Self {
        Unfinished {
            why,
            resumable: false,
        }
    }
}

impl From<&str> for Unfinished {
    fn from(why: &str) -> Self {
        Unfinished::from(why.to_string())
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

struct Partial {
    tmp: PathBuf,
    hash: Option<ContentHash>,
    since: Instant,
}

impl Partials {
    /// The temporary file an earlier attempt at `path` with content `hash`
    /// left; one of other content is deleted.
    fn take(&self, folder: &str, path: &str, hash: Option<ContentHash>) -> Option<PathBuf> {
        let p = lock(&self.0).remove(&(folder.to_string(), path.to_string()))?;
        if p.hash.is_some() && p.hash == hash {
            return Some(p.tmp);
        }
        let _ = std::fs::remove_file(&p.tmp);
        None
    }

    /// Keep `tmp`, an unfinished attempt at `path` with content `hash`.
    fn keep(
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
    fn forget(&self, folder: &str, path: &str) {
        if let Some(p) = lock(&self.0).remove(&(folder.to_string(), path.to_string())) {
            let _ = std::fs::remove_file(&p.tmp);
        }
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
async fn assemble_large(
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
    let writer = tokio::task::spawn_blocking(move || -> Result<_, String> {
        // Opened here, not on an async worker: creating a file waits
        // while the file system commits its journal (every commit batch's
        // syncfs).
        let (mut f, mut hasher, kept, mut at) = open_assembly(&tmp_path, &r, resume)?;
        let _ = ready.send(kept);
        let mut flushed = at;
        while let Some(data) = inbox.blocking_recv() {
            for piece in &data {
                f.write_all(piece).map_err(|e| e.to_string())?;
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
            Ok(Ok(_)) => "the file could not be opened".into(),
            Err(e) => e.to_string().into(),
        });
    };
    let mut pending: std::collections::BTreeMap<usize, Data> = Default::default();
    let mut pending_bytes = 0u64;
    let mut next = from;
    let mut set = tokio::task::JoinSet::new();
    let mut fetched = 0u64;
    let mut writing = true;
    let mut jobs = plan(s, &record, from).into_iter().enumerate();
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
        let done = match done.map_err(|e| e.to_string()).and_then(|d| d) {
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
    let written = writer.await.map_err(|e| e.to_string())?;
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
        return Err("the file could not be written".into());
    }
    let r = record.clone();
    tokio::task::spawn_blocking(move || finish_file(&f, hasher.finalize().into(), &r))
        .await
        .map_err(|e| e.to_string())??;
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
fn open_assembly(
    tmp: &Path,
    record: &FileRecord,
    resume: bool,
) -> Result<(std::fs::File, blake3::Hasher, usize, u64), String> {
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
        let at = record.chunks.get(kept).map_or(record.size, |c| c.offset);
        f.seek(SeekFrom::Start(at)).map_err(|e| e.to_string())?;
        return Ok((f, hasher, kept, at));
    }
    let f = std::fs::File::create(tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    f.set_len(record.size).map_err(|e| e.to_string())?;
    Ok((f, hasher, 0, 0))
}

/// Count a chunk's bytes as fetched from a peer or reused from a local
/// file; returns them.
fn count_chunk(s: &Shared, data: &Data, remote: bool) -> u64 {
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
fn finish_file(f: &std::fs::File, got: ContentHash, record: &FileRecord) -> Result<(), String> {
    if Some(got) != record.hash {
        return Err(format!(
            "assembled file hashes to {got}, not the announced hash; discarded"
        ));
    }
    set_times_and_mode(f, record.mtime_ns, record.mode);
    if record.size >= SYNC_ALONE {
        f.sync_all().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The hash of a small file's assembled `bytes`, to check against the
/// announced one. A file of one chunk whose hash is the file's is not
/// hashed again: every chunk was checked when fetched or read locally.
fn small_file_hash(record: &FileRecord, bytes: &[u8]) -> ContentHash {
    match (&record.chunks[..], record.hash) {
        ([only], Some(whole)) if only.hash == whole && only.len as usize == bytes.len() => whole,
        _ => ContentHash::of(bytes),
    }
}

/// The threads small files are written on: a few, fed from one queue,
/// instead of a blocking-pool task per file — thousands of small files
/// cost no thread wake-up each while the writers are busy (8 % off the
/// 20,000-file sync). They end when this is dropped.
pub struct Writers {
    queue: std::sync::mpsc::Sender<WriteJob>,
}

type WriteJob = Box<dyn FnOnce() + Send>;

impl Writers {
    /// `n` writer threads.
    pub fn new(n: usize) -> Writers {
        let (queue, jobs) = std::sync::mpsc::channel::<WriteJob>();
        let jobs = Arc::new(std::sync::Mutex::new(jobs));
        for i in 0..n {
            let jobs = jobs.clone();
            let started = std::thread::Builder::new()
                .name(format!("sync-writer-{i}"))
                .spawn(move || {
                    // The next job, taken under the lock, run outside it;
                    // a job that panics fails its caller, not the thread.
                    let next = || lock(&jobs).recv().ok();
                    while let Some(job) = next() {
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = started {
                warn!(error = %e, "cannot start a writer thread");
            }
        }
        Writers { queue }
    }

    /// Run `work` on a writer thread and wait for its result.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: WriteJob = Box::new(move || {
            let _ = tx.send(work());
        });
        self.queue
            .send(job)
            .map_err(|_| "the node is stopping".to_string())?;
        // Dropped unanswered: the job panicked.
        rx.await
            .map_err(|_| "writing the file failed unexpectedly".to_string())?
    }
}

impl std::fmt::Debug for Writers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writers")
    }
}

/// A large file being written is handed to the disk in steps this big.
const WRITEBACK_STEP: u64 = 8 << 20;

/// Start writing `len` bytes at `offset` of `f` to disk without waiting
/// for it: the disk works while the network does, and the fsync that ends
/// a large file finds little left to write (instead of every file's bytes
/// at once at the end of a bulk sync). Linux only; elsewhere the fsync
/// does it all.
#[cfg(target_os = "linux")]
fn start_writeback(f: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range reads nothing from our memory; the
    // descriptor is open for the duration of the call. A failure only
    // leaves the work to the fsync.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &std::fs::File, _: u64, _: u64) {}

/// Files at least this large are fsynced on their own as soon as they are
/// assembled; smaller ones are made durable per commit batch.
const SYNC_ALONE: u64 = 4 << 20;

fn set_times_and_mode(f: &std::fs::File, mtime_ns: i64, mode: u32) {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(mtime_ns.max(0) as u64);
    let _ = f.set_modified(t);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Usually already right (created 0644): one change event fewer
        // for every watcher of the folder, ours included.
        // Permission bits only: a peer never makes a file set-user-id,
        // set-group-id or sticky here.
        let want = mode & 0o777;
        if f.metadata().map(|m| m.permissions().mode() & 0o7777).ok() != Some(want) {
            let _ = f.set_permissions(std::fs::Permissions::from_mode(want));
        }
    }
    #[cfg(not(unix))]
    let _ = mode;
}

/// File work whose bytes are ready, waiting to change the disk and the
/// index (see [`committer`]).
pub struct Commit {
    folder: String,
    path: String,
    need: Need,
    expect: Option<FileRecord>,
    step: Step,
}

enum Step {
    /// Move `tmp` (assembled, verified) into place; `None` for a directory.
    Place {
        tmp: Option<PathBuf>,
        /// Already made durable by its transfer (a large file).
        synced: bool,
    },
    /// Move the file to the trash (an empty directory is removed).
    Remove,
}

type Reply = tokio::sync::oneshot::Sender<Result<Vec<Action>, String>>;

/// The committer's inbox.
pub type CommitQueue = std::sync::mpsc::Sender<(Commit, Reply)>;

async fn submit(s: &Shared, commit: Commit) -> Result<Vec<Action>, String> {
    answered(send_commit(s, commit)?).await
}

/// Hand `commit` to the committer; its answer comes on the receiver.
fn send_commit(
    s: &Shared,
    commit: Commit,
) -> Result<tokio::sync::oneshot::Receiver<Result<Vec<Action>, String>>, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    s.commits
        .send((commit, tx))
        .map_err(|_| "the node is stopping".to_string())?;
    Ok(rx)
}

/// The committer's answer to a commit.
async fn answered(
    rx: tokio::sync::oneshot::Receiver<Result<Vec<Action>, String>>,
) -> Result<Vec<Action>, String> {
    rx.await.map_err(|_| "the node is stopping".to_string())?
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
fn recorder(s: std::sync::Weak<Shared>, inbox: std::sync::mpsc::Receiver<Flushed>) {
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
    fn place(
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
        }
    }

    /// A file placed where the index has no live entry, with no conflict
    /// copy: its rename need not be durable before its entry (see
    /// [`committer`]): the temporary file it came from is.
    fn is_new_file(&self) -> bool {
        matches!(self.step, Step::Place { tmp: Some(_), .. })
            && self.need.conflict_copy.is_none()
            && self.expect.as_ref().is_none_or(|e| e.deleted)
    }
}

/// Work whose bytes are durable, with its folder root and absolute
/// destination, waiting to be carried out and recorded.
struct Flushed {
    items: Vec<(Commit, Reply, PathBuf, PathBuf)>,
    /// Every item places a new file: the renames need no flush.
    only_new_files: bool,
}

/// Step 1 of [`committer`]. Work that cannot go on (no such folder, a bad
/// path, a failed flush) is answered here.
fn flush_batch(s: &Arc<Shared>, batch: Vec<(Commit, Reply)>) -> Flushed {
    let mut roots: HashMap<String, Result<PathBuf, String>> = HashMap::new();
    let mut items = Vec::with_capacity(batch.len());
    for (c, reply) in batch {
        let root = roots
            .entry(c.folder.clone())
            .or_insert_with(|| root_of(s, &c.folder))
            .clone();
        let place = root.and_then(|root| {
            let abs = crate::fs::path::absolute(&root, &c.path).map_err(|e| e.to_string())?;
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
        let e = format!("cannot make the received files durable: {e}");
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

/// Step 2 of [`committer`]: carry out and record the batch under the store
/// lock, the log's fsync left for step 3 (see [`logger`]). Work that
/// failed is answered here; the rest goes on to be made durable.
fn record_batch(s: &Arc<Shared>, batch: Flushed) -> Option<Logged> {
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
    let mut store = lock(&s.store);
    let held = store.hold_deferred(|store| {
        let mut done = Vec::new();
        let mut placed = Vec::new();
        let mut results: Vec<Result<Vec<Action>, String>> = items
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
        // Recorded together; the work due next rides on the first reply.
        let recorded = lock(&s.engine).completed_all(store, done, Instant::now());
        match recorded {
            Ok(next) => {
                if let Some(first) = results.iter_mut().find_map(|r| r.as_mut().ok()) {
                    *first = next;
                }
            }
            Err(e) => {
                placed.clear();
                for r in results.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(e.to_string());
                }
            }
        }
        (results, placed)
    });
    drop(store);
    let (results, pending) = match held {
        Ok(((results, placed), pending)) => {
            s.echoes.placed(&placed);
            (results, pending)
        }
        Err(e) => {
            for (_, reply, ..) in items {
                let _ = reply.send(Err(e.to_string()));
            }
            return None;
        }
    };
    Some(Logged {
        pending,
        replies: items
            .into_iter()
            .zip(results)
            .map(|((_, reply, ..), result)| (reply, result))
            .collect(),
    })
}

/// Recorded work waiting for step 3 of [`committer`].
struct Logged {
    /// The log's fsync, if the batch appended anything.
    pending: Option<PendingSync>,
    replies: Vec<(Reply, Result<Vec<Action>, String>)>,
}

impl Logged {
    /// Take a later batch in: one flush serves both.
    fn absorb(&mut self, later: Logged) {
        self.pending = match (self.pending.take(), later.pending) {
            (Some(a), Some(b)) => Some(a.merge(b)),
            (a, b) => a.or(b),
        };
        self.replies.extend(later.replies);
    }
}

/// Step 3 of [`committer`]: make the log durable — without the store lock,
/// so the next batch is carried out meanwhile — and only then answer.
/// Batches that wait meanwhile share one fsync.
fn logger(s: std::sync::Weak<Shared>, inbox: std::sync::mpsc::Receiver<Logged>) {
    while let Ok(mut logged) = inbox.recv() {
        while let Ok(more) = inbox.try_recv() {
            logged.absorb(more);
        }
        let Some(s) = s.upgrade() else { break };
        let Logged { pending, replies } = logged;
        let synced = match pending {
            Some(mut p) => {
                let result = p.sync();
                lock(&s.store).synced(p, result).map(|_| ())
            }
            None => Ok(()),
        };
        for (reply, result) in replies {
            let result = match &synced {
                Ok(()) => result,
                Err(e) => Err(e.to_string()),
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
fn make_durable(roots: &[&Path], files: &[impl AsRef<Path>], bytes: u64) -> std::io::Result<()> {
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

/// Flush every dirty page of the file system holding `dir`: one device
/// flush for a whole batch of files.
#[cfg(target_os = "linux")]
fn syncfs(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir)?;
    // SAFETY: syncfs reads nothing from our memory; the descriptor is open
    // for the duration of the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Move the file (or symlink) at `abs` (folder path `path`) into the
/// folder's trash, `.softadastra/trash/<unix seconds>/<path>`, and
/// remember its chunks for reuse. Returns where it went.
///
/// Nothing already in the trash is ever replaced: the move refuses to land
/// on an existing name ([`rename_new`]), and a version of the same path
/// kept in the same second takes the next free name `<name>.~2~`,
/// `<name>.~3~`, … (cut to fit, see [`crate::fs::path::fit_name`]).
fn to_trash(
    chunks: &std::sync::Mutex<ChunkIndex>,
    root: &Path,
    path: &str,
    abs: &Path,
    record: Option<&FileRecord>,
) -> Result<PathBuf, String> {
    let stamp = crate::core::SystemClock.wall().as_nanos() / 1_000_000_000;
    let batch = root.join(META_DIR).join(TRASH_DIR).join(stamp.to_string());
    let first = crate::fs::path::absolute(&batch, path).map_err(|e| e.to_string())?;
    if let Some(p) = first.parent() {
        std::fs::create_dir_all(p).map_err(|e| format!("create {}: {e}", p.display()))?;
    }
    let name = first
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for n in 1..=MAX_KEPT_PER_SECOND {
        let trash = match n {
            1 => first.clone(),
            n => first.with_file_name(crate::fs::path::fit_name(&name, &format!(".~{n}~"))),
        };
        if let Some(r) = record {
            lock(chunks).trashing(&trash, r);
        }
        let moved = rename_new(abs, &trash);
        if let Some(r) = record {
            lock(chunks).trashed(abs, &trash, r, moved.is_ok());
        }
        match moved {
            Ok(()) => return Ok(trash),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("move to trash: {e}")),
        }
    }
    Err(format!(
        "move to trash: {MAX_KEPT_PER_SECOND} versions of {path} already kept this second"
    ))
}

/// Most versions of one path the trash takes in one second (the next
/// replacement waits for the next second: it is retried, nothing is lost).
const MAX_KEPT_PER_SECOND: u32 = 10_000;

/// The trash of each folder, under its `.softadastra/` directory.
pub const TRASH_DIR: &str = "trash";

/// Delete trash batches (`.softadastra/trash/<unix seconds>/`) of the folder
/// at `root` older than `keep` at `now_unix`. Returns how many went. A
/// directory whose name is not a time is left alone.
pub fn prune_trash(root: &Path, keep: Duration, now_unix: u64) -> std::io::Result<usize> {
    let dir = root.join(META_DIR).join(TRASH_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut pruned = 0;
    for entry in entries.flatten() {
        let Some(stamp) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if stamp.saturating_add(keep.as_secs()) < now_unix {
            std::fs::remove_dir_all(entry.path())?;
            pruned += 1;
        }
    }
    Ok(pruned)
}

/// Check the work is still wanted and the disk is what the index says,
/// keep a conflict copy if asked, move the new file into place, and record
/// it. Runs under the store lock, so the watcher cannot mistake the new
/// file for a local edit.
fn place_one(
    s: &Arc<Shared>,
    store: &mut Store,
    c: &Commit,
    root: &Path,
    abs: &Path,
    tmp: Option<&Path>,
) -> Result<(Completed, Option<Placed>), String> {
    let (folder_id, path, need, expect) = (&c.folder, &c.path, &c.need, c.expect.as_ref());
    outside_home(s.home.as_deref(), root, abs)?;
    if !SyncEngine::is_current(store, folder_id, path, need, expect) {
        return Err("overtaken by newer information".into());
    }
    // A new file needs nothing at its path: the rename checks that itself,
    // atomically, where the file system can (`rename_new`).
    let new_file = tmp.is_some() && expect.is_none_or(|e| e.deleted);
    if !new_file && !disk_matches(abs, expect) {
        return Err(CHANGED_ON_DISK.into());
    }
    let mut copy = None;
    let target = match (&need.conflict_copy, expect.filter(|e| !e.deleted)) {
        (Some(name), Some(e)) => copy_target(name, |p| {
            let Ok(candidate) = crate::fs::path::absolute(root, p) else {
                return Probe::Different;
            };
            match std::fs::symlink_metadata(&candidate) {
                Err(_) => Probe::Free,
                Ok(m) if m.is_file() && m.len() == e.size => match std::fs::read(&candidate) {
                    Ok(b) if Some(ContentHash::of(&b)) == e.hash => Probe::Same,
                    _ => Probe::Different,
                },
                Ok(_) => Probe::Different,
            }
        })
        .map(|p| (p, e)),
        _ => None,
    };
    let mut copied_to = None;
    if let Some((copy_path, e)) = target {
        let copy_path = &copy_path;
        let copy_abs = crate::fs::path::absolute(root, copy_path).map_err(|e| e.to_string())?;
        rename_new(abs, &copy_abs).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => format!("{} already exists", copy_abs.display()),
            _ => format!("keep conflict copy: {e}"),
        })?;
        copied_to = Some(copy_abs.clone());
        let mut rec = e.clone();
        let mut v: VersionVector = folder::record(store, folder_id, copy_path)
            .map(|r| r.version)
            .unwrap_or_default();
        v.bump(s.node);
        rec.version = v;
        rec.modified_by = s.node;
        if let Ok(m) = std::fs::symlink_metadata(&copy_abs) {
            rec.inode = FileStat::from_metadata(&m).inode;
        }
        info!(folder = %folder_id, %path, copy = %copy_path, "conflict: kept the other version beside the file");
        copy = Some((copy_path.clone(), rec));
    }
    let mut trashed = None;
    if copy.is_none()
        && tmp.is_some()
        && let Some(old) = expect.filter(|e| !e.deleted)
    {
        match old.kind {
            // A replaced file's (or link's) previous version goes to the
            // trash, so a bad remote edit can be undone.
            EntryKind::File | EntryKind::Symlink => {
                let chunks = (old.kind == EntryKind::File).then_some(old);
                trashed = Some(to_trash(&s.chunks, root, path, abs, chunks)?);
            }
            // A directory gives way to a file only when empty.
            EntryKind::Dir => {
                std::fs::remove_dir(abs).map_err(|e| format!("a directory is in the way: {e}"))?
            }
            EntryKind::Value => {}
        }
    }
    match tmp {
        Some(t) => {
            // Whatever was at the path has been moved aside: the new file
            // goes where nothing is, never over a file created meanwhile.
            if let Err(e) = rename_new(t, abs) {
                // Put back what was moved aside — unless the path is taken
                // again, in which case it stays where it went (the trash,
                // the conflict copy) and the scan decides.
                if let Some(back) = trashed.as_ref().or(copied_to.as_ref()) {
                    let _ = rename_new(back, abs);
                }
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    return Err(CHANGED_ON_DISK.into());
                }
                return Err(format!("move into place: {e}"));
            }
        }
        None => {
            if need.record.kind == EntryKind::Dir {
                std::fs::create_dir_all(abs).map_err(|e| e.to_string())?;
            }
        }
    }
    let mut record = need.record.clone();
    let mut placed = None;
    if let Ok(m) = std::fs::symlink_metadata(abs) {
        let st = FileStat::from_metadata(&m);
        record.inode = st.inode;
        placed = tmp.and(Placed::of(&m));
    }
    lock(&s.chunks).insert(abs, &record);
    let done = Completed {
        folder: folder_id.clone(),
        path: path.clone(),
        done: need.clone(),
        record,
        conflict_copy: copy,
    };
    Ok((done, placed))
}

/// Why the removal of a directory waits.
const DIR_NOT_EMPTY: &str =
    "the directory still holds files this node has not been asked to delete (new or ignored ones)";

/// Why work on a path whose disk no longer matches its index entry waits
/// (placing and removing alike).
const CHANGED_ON_DISK: &str =
    "the file changed on disk since it was indexed; the scan decides first";

/// Rename `from` to `to`, which must not exist (`AlreadyExists` if it
/// does): a file created there meanwhile is never replaced. One atomic
/// call on Linux file systems that support it; a check, then the rename,
/// elsewhere.
fn rename_new(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_bytes())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        };
        let (f, t) = (c(from)?, c(to)?);
        // SAFETY: both paths are NUL-terminated strings that live across
        // the call; renameat2 only reads them.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        // Not supported by this file system (or kernel): as elsewhere.
        if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
            return Err(e);
        }
    }
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(std::io::ErrorKind::AlreadyExists.into());
    }
    std::fs::rename(from, to)
}

/// Move a deleted file into the folder's trash (an empty directory is
/// simply removed; one still holding files fails, see [`DIR_NOT_EMPTY`])
/// and record it.
fn remove_one(
    s: &Arc<Shared>,
    store: &mut Store,
    c: &Commit,
    root: &Path,
    abs: &Path,
) -> Result<Completed, String> {
    let (folder_id, path, need, expect) = (&c.folder, &c.path, &c.need, c.expect.as_ref());
    outside_home(s.home.as_deref(), root, abs)?;
    if !SyncEngine::is_current(store, folder_id, path, need, expect) {
        return Err("overtaken by newer information".into());
    }
    if !disk_matches(abs, expect) {
        return Err(CHANGED_ON_DISK.into());
    }
    if let Ok(m) = std::fs::symlink_metadata(abs) {
        if m.is_dir() {
            // The sync engine hands a directory's removal out only once
            // nothing under it waits for work; what is left is not the
            // peer's to delete (a file made here meanwhile, an ignored
            // one): the directory stays, and says why, rather than being
            // recorded as gone while it is still there.
            match std::fs::remove_dir(abs) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                    return Err(DIR_NOT_EMPTY.into());
                }
                Err(e) => return Err(format!("remove directory: {e}")),
            }
        } else {
            to_trash(&s.chunks, root, path, abs, expect)?;
        }
    }
    Ok(Completed {
        folder: folder_id.clone(),
        path: path.clone(),
        done: need.clone(),
        record: need.record.clone(),
        conflict_copy: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record of a file holding `bytes`, chunked as the scanner would.
    fn file_record(bytes: &[u8]) -> FileRecord {
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

    /// The watcher's event for a file the agent placed is dropped while
    /// the file is as placed — once; an edit since makes it count.
    #[test]
    fn echoes_of_placed_files_are_recognised_and_edits_are_not() {
        use crate::fs::watch::Batch;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for name in ["a.txt", "b.txt", "c.txt"] {
            std::fs::write(root.join(name), b"placed").unwrap();
        }
        let stamp = |name: &str| Placed::of(&std::fs::metadata(root.join(name)).unwrap()).unwrap();
        let (f, a, b) = ("docs".to_string(), "a.txt".to_string(), "b.txt".to_string());
        let echoes = Echoes::default();
        echoes.placed(&[(&f, &a, stamp("a.txt")), (&f, &b, stamp("b.txt"))]);
        // b.txt is edited after it was placed.
        std::fs::write(root.join("b.txt"), b"placed, then edited").unwrap();
        let batch = || Batch {
            paths: vec!["a.txt".into(), "b.txt".into(), "c.txt".into()],
            rescan_all: false,
        };
        let mut first = batch();
        echoes.drop_from("docs", root, &mut first);
        assert_eq!(first.paths, ["b.txt", "c.txt"]);
        // Recognised once: a later event for a.txt is reconciled.
        let mut second = batch();
        echoes.drop_from("docs", root, &mut second);
        assert_eq!(second.paths, ["a.txt", "b.txt", "c.txt"]);
        // Another folder's paths are not confused with these.
        echoes.placed(&[(&f, &a, stamp("a.txt"))]);
        let mut other = batch();
        echoes.drop_from("photos", root, &mut other);
        assert_eq!(other.paths.len(), 3);
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
                                Err(format!("no {i}"))
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
                let bug = || -> Result<u32, String> { panic!("a bug") };
                failed.push(writers.run(bug).await);
            }
            let mut fine = Vec::new();
            for i in 0..6 {
                fine.push(writers.run(move || Ok(i)).await);
            }
            (failed, fine)
        });
        let failed = Err("writing the file failed unexpectedly".to_string());
        assert!(after.0.iter().all(|r| *r == failed), "{:?}", after.0);
        assert_eq!(
            after.1,
            (0..6).map(Ok).collect::<Vec<Result<u32, String>>>()
        );
        for (i, got) in results {
            if i % 7 == 0 {
                assert_eq!(got, Err(format!("no {i}")));
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
        assert_eq!(answer.unwrap_err(), "the fetch was dropped");
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
        let paths = |ix: &ChunkIndex| -> Vec<PathBuf> {
            ix.places(&hash).into_iter().map(|p| p.0).collect()
        };
        for moved in [true, false] {
            let mut ix = ChunkIndex::default();
            ix.insert(from, &record);
            ix.trashing(to, &record);
            assert_eq!(paths(&ix), [from, to], "old place first while it moves");
            ix.trashed(from, to, &record, moved);
            let end = if moved { to } else { from };
            assert_eq!(paths(&ix), [end]);
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
}
