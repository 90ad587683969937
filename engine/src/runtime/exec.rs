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
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::{Shared, lock};
use crate::core::{Clock, ContentHash, NodeId, VersionVector};
use crate::folder::{self, FileRecord};
use crate::fs::ignore::{META_DIR, TEMP_PREFIX};
use crate::fs::scan::{EntryKind, FileStat};
use crate::store::Store;
use crate::sync::resolve::{Probe, copy_target};
use crate::sync::{Action, Need, SyncEngine};
use crate::transport::quic::BulkStream;

/// Where each chunk hash can be read locally: (file, offset, length).
#[derive(Debug, Default)]
pub struct ChunkIndex {
    at_seq: u64,
    built: Option<Instant>,
    map: HashMap<ContentHash, (PathBuf, u64, u32)>,
    /// Chunks of files moved to the trash by sync: a rename arrives as a
    /// deletion and an addition, and the deletion may be carried out first.
    trashed: HashMap<ContentHash, (PathBuf, u64, u32)>,
}

impl ChunkIndex {
    /// Rebuild from the store's index if it changed since the last build
    /// and that was a while ago: a full rebuild per lookup would make a
    /// bulk sync quadratic. Files placed by sync are added as they land
    /// ([`ChunkIndex::insert`]); a chunk found stale is re-hashed on read
    /// and simply fetched instead.
    fn refresh(&mut self, store: &Store, force: bool) {
        let seq = store.last_seq().0;
        let fresh = !force
            && self
                .built
                .is_some_and(|t| t.elapsed() < Duration::from_secs(10));
        if seq == self.at_seq || fresh {
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
                for c in &rec.chunks {
                    self.map
                        .entry(c.hash)
                        .or_insert_with(|| (abs.clone(), c.offset, c.len));
                }
            }
        }
        self.at_seq = seq;
        self.built = Some(Instant::now());
    }

    /// Record the chunks of a file just placed at `path`.
    fn insert(&mut self, path: &Path, record: &FileRecord) {
        for c in &record.chunks {
            self.map
                .insert(c.hash, (path.to_path_buf(), c.offset, c.len));
        }
    }

    /// Where `hash` is, if any local file has it. `serving`: a peer asks
    /// for it because this node announced it, so a miss is worth a rebuild
    /// (the file may have been indexed a moment ago).
    pub fn find(
        &mut self,
        store: &Store,
        hash: &ContentHash,
        serving: bool,
    ) -> Option<(PathBuf, u64, u32)> {
        self.refresh(store, false);
        if serving && !self.map.contains_key(hash) {
            self.refresh(store, true);
        }
        self.map
            .get(hash)
            .or_else(|| self.trashed.get(hash))
            .cloned()
    }

    /// Remember the chunks of `record`, now at `path` in the trash.
    fn trashed(&mut self, path: &Path, record: &FileRecord) {
        if self.trashed.len() > 1_000_000 {
            self.trashed.clear();
        }
        for c in &record.chunks {
            self.trashed
                .insert(c.hash, (path.to_path_buf(), c.offset, c.len));
        }
    }
}

/// Read `len` bytes at `offset` of `path` and check they hash to `hash`
/// (the file may have changed since it was indexed).
fn read_chunk(path: &Path, offset: u64, len: u32, hash: &ContentHash) -> Option<Vec<u8>> {
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).ok()?;
    (ContentHash::of(&buf) == *hash).then_some(buf)
}

fn local_chunk(s: &Shared, hash: &ContentHash, serving: bool) -> Option<Vec<u8>> {
    let at = {
        let store = lock(&s.store);
        lock(&s.chunks).find(&store, hash, serving)
    };
    let (path, offset, len) = at?;
    read_chunk(&path, offset, len, hash)
}

/// Answer chunk requests on a bulk stream a peer opened.
pub async fn serve_chunks(s: Arc<Shared>, peer: NodeId, mut stream: BulkStream) {
    let mut req = [0u8; 36];
    if read_full(&mut stream, &mut req).await.is_err() {
        return;
    }
    let mut h = [0u8; 32];
    h.copy_from_slice(&req[..32]);
    let hash = ContentHash(h);
    let len = u32::from_le_bytes([req[32], req[33], req[34], req[35]]);
    let data = {
        let s = s.clone();
        tokio::task::spawn_blocking(move || local_chunk(&s, &hash, true))
            .await
            .ok()
            .flatten()
    };
    match data.filter(|d| d.len() == len as usize) {
        Some(d) => {
            let _ = stream.write_all(&[0]).await;
            let _ = stream.write_all(&d).await;
        }
        None => {
            debug!(%peer, chunk = %hash, "asked for a chunk this node does not have");
            let _ = stream.write_all(&[1]).await;
        }
    }
    let _ = stream.finish();
}

async fn read_full(stream: &mut BulkStream, buf: &mut [u8]) -> Result<(), String> {
    let mut at = 0;
    while at < buf.len() {
        match stream.read(&mut buf[at..]).await {
            Ok(0) => return Err("stream ended early".into()),
            Ok(n) => at += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// Fetch one chunk from `peer`, checked against its hash.
async fn fetch_chunk(
    s: &Shared,
    peer: NodeId,
    hash: ContentHash,
    len: u32,
) -> Result<Vec<u8>, String> {
    let handle = lock(&s.peers)
        .get(&peer)
        .cloned()
        .ok_or("peer not connected")?;
    let work = async {
        let mut stream = handle.open_bulk().await.map_err(|e| e.to_string())?;
        let mut req = Vec::with_capacity(36);
        req.extend_from_slice(&hash.0);
        req.extend_from_slice(&len.to_le_bytes());
        stream.write_all(&req).await.map_err(|e| e.to_string())?;
        let _ = stream.finish();
        let mut status = [0u8; 1];
        read_full(&mut stream, &mut status).await?;
        if status[0] != 0 {
            return Err(format!("{peer} does not have chunk {hash}"));
        }
        let mut data = vec![0u8; len as usize];
        read_full(&mut stream, &mut data).await?;
        if ContentHash::of(&data) != hash {
            return Err(format!(
                "chunk {hash} from {peer} has the wrong hash; discarded"
            ));
        }
        Ok(data)
    };
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .map_err(|_| "chunk fetch timed out".to_string())?
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
    let mut p = abs.parent();
    while let Some(dir) = p {
        if dir == root {
            return true;
        }
        if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
            return false;
        }
        p = dir.parent();
    }
    false
}

fn temp_path(abs: &Path) -> PathBuf {
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    abs.with_file_name(format!("{TEMP_PREFIX}{:08x}-{name}", fastrand::u32(..)))
}

/// Carry out one Place or Remove.
pub async fn run(s: Arc<Shared>, work: Action) {
    let (folder_id, path) = match &work {
        Action::Place { folder, path, .. } | Action::Remove { folder, path, .. } => {
            (folder.clone(), path.clone())
        }
        Action::Send { .. } => return,
    };
    let _permit = s.transfers.acquire().await;
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
        } => remove(&s, &folder, &path, need, expect),
        Action::Send { .. } => Ok(Vec::new()),
    };
    match result {
        Ok(actions) => {
            s.files_done
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            s.report(actions)
        }
        Err(e) => {
            debug!(folder = %folder_id, %path, error = %e, "file work will be retried");
            lock(&s.engine).failed(&folder_id, &path, Instant::now());
        }
    }
}

fn root_of(s: &Shared, folder_id: &str) -> Result<PathBuf, String> {
    folder::get(&lock(&s.store), folder_id)
        .map(|f| f.path)
        .map_err(|e| e.to_string())
}

async fn place(
    s: &Arc<Shared>,
    folder_id: &str,
    path: &str,
    need: Need,
    expect: Option<FileRecord>,
) -> Result<Vec<Action>, String> {
    let root = root_of(s, folder_id)?;
    let abs = crate::fs::path::absolute(&root, path).map_err(|e| e.to_string())?;
    if !parents_are_real(&root, &abs) {
        warn!(folder = %folder_id, %path, "refused: a parent directory is a symlink");
        return Err("a parent directory is a symlink".into());
    }
    let record = need.record.clone();
    match record.kind {
        EntryKind::Dir => {
            return commit(
                s,
                folder_id,
                &root,
                path,
                &abs,
                &need,
                expect.as_ref(),
                None,
            );
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
        EntryKind::File => {}
    }
    if let Some(parent) = abs.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    }
    let tmp = temp_path(&abs);
    let assembled = assemble(s, &need, &tmp).await;
    if let Err(e) = assembled {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let result = commit(
        s,
        folder_id,
        &root,
        path,
        &abs,
        &need,
        expect.as_ref(),
        Some(&tmp),
    );
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Write the file's bytes into `tmp`: local chunks copied, missing ones
/// fetched (several at once), then the whole file checked and synced.
async fn assemble(s: &Arc<Shared>, need: &Need, tmp: &Path) -> Result<(), String> {
    let record = &need.record;
    let file = std::fs::File::create(tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    file.set_len(record.size).map_err(|e| e.to_string())?;
    let file = Arc::new(Mutex2::new(file));
    let sources: Vec<NodeId> = {
        let peers = lock(&s.peers);
        let mut v: Vec<NodeId> = need
            .sources
            .iter()
            .copied()
            .filter(|p| peers.contains_key(p))
            .collect();
        if v.is_empty() {
            v = peers.keys().copied().collect();
        }
        v
    };
    let mut set = tokio::task::JoinSet::new();
    let mut fetched = 0u64;
    for (i, c) in record.chunks.iter().cloned().enumerate() {
        let (s, file, sources) = (s.clone(), file.clone(), sources.clone());
        set.spawn(async move {
            let local = {
                let s = s.clone();
                tokio::task::spawn_blocking(move || local_chunk(&s, &c.hash, false))
                    .await
                    .ok()
                    .flatten()
            };
            let (data, remote) = match local {
                Some(d) => (d, false),
                None => {
                    let mut last = "no connected peer has this file".to_string();
                    let mut got = None;
                    for k in 0..sources.len() {
                        let peer = sources[(i + k) % sources.len()];
                        match fetch_chunk(&s, peer, c.hash, c.len).await {
                            Ok(d) => {
                                got = Some(d);
                                break;
                            }
                            Err(e) => last = e,
                        }
                    }
                    (got.ok_or(last)?, true)
                }
            };
            let mut f = file.lock();
            f.seek(SeekFrom::Start(c.offset))
                .map_err(|e| e.to_string())?;
            f.write_all(&data).map_err(|e| e.to_string())?;
            let n = data.len() as u64;
            let counter = if remote {
                &s.bytes_fetched
            } else {
                &s.bytes_reused
            };
            counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            Ok::<u64, String>(if remote { n } else { 0 })
        });
        // Bounded parallelism per file.
        while set.len() >= 8 {
            if let Some(r) = set.join_next().await {
                fetched += r.map_err(|e| e.to_string())??;
            }
        }
    }
    while let Some(r) = set.join_next().await {
        fetched += r.map_err(|e| e.to_string())??;
    }
    let tmp_owned = tmp.to_path_buf();
    let want = record.hash;
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let f = file.lock();
        f.sync_all().map_err(|e| e.to_string())?;
        drop(f);
        let mut hasher = blake3::Hasher::new();
        let mut rd = std::fs::File::open(&tmp_owned).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = rd.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let got = ContentHash(*hasher.finalize().as_bytes());
        if Some(got) != want {
            return Err(format!(
                "assembled file hashes to {got}, not the announced hash; discarded"
            ));
        }
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())??;
    debug!(bytes_fetched = fetched, size = record.size, "assembled");
    Ok(())
}

/// A tiny mutex wrapper so the file can be shared by chunk tasks.
struct Mutex2<T>(std::sync::Mutex<T>);
impl<T> Mutex2<T> {
    fn new(v: T) -> Self {
        Mutex2(std::sync::Mutex::new(v))
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        lock(&self.0)
    }
}

fn set_times_and_mode(path: &Path, record: &FileRecord) {
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) {
        let t = std::time::UNIX_EPOCH + Duration::from_nanos(record.mtime_ns.max(0) as u64);
        let _ = f.set_modified(t);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ =
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(record.mode & 0o7777));
    }
}

/// Under the store lock: check the work is still wanted and the disk is
/// what the index says, keep a conflict copy if asked, move the new file
/// into place, and record it.
#[allow(clippy::too_many_arguments)]
fn commit(
    s: &Arc<Shared>,
    folder_id: &str,
    root: &Path,
    path: &str,
    abs: &Path,
    need: &Need,
    expect: Option<&FileRecord>,
    tmp: Option<&Path>,
) -> Result<Vec<Action>, String> {
    if let Some(t) = tmp {
        set_times_and_mode(t, &need.record);
    }
    let mut store = lock(&s.store);
    if !SyncEngine::is_current(&store, folder_id, path, need, expect) {
        return Err("overtaken by newer information".into());
    }
    if !disk_matches(abs, expect) {
        return Err("the file changed on disk since it was indexed; the scan decides first".into());
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
    if let Some((copy_path, e)) = target {
        let copy_path = &copy_path;
        let copy_abs = crate::fs::path::absolute(root, copy_path).map_err(|e| e.to_string())?;
        if copy_abs.exists() {
            return Err(format!("{} already exists", copy_abs.display()));
        }
        std::fs::rename(abs, &copy_abs).map_err(|e| format!("keep conflict copy: {e}"))?;
        let mut rec = e.clone();
        let key = folder::file_key(folder_id, copy_path);
        let mut v: VersionVector = store
            .get(crate::store::ns::FILES, &key)
            .and_then(|e| e.value.as_deref())
            .and_then(|v| postcard::from_bytes::<FileRecord>(v).ok())
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
    match tmp {
        Some(t) => std::fs::rename(t, abs).map_err(|e| format!("move into place: {e}"))?,
        None => {
            if need.record.kind == EntryKind::Dir {
                std::fs::create_dir_all(abs).map_err(|e| e.to_string())?;
            }
        }
    }
    let mut record = need.record.clone();
    if let Ok(m) = std::fs::symlink_metadata(abs) {
        let st = FileStat::from_metadata(&m);
        record.inode = st.inode;
    }
    lock(&s.chunks).insert(abs, &record);
    let mut engine = lock(&s.engine);
    engine
        .completed(
            &mut store,
            folder_id,
            path,
            need,
            record,
            copy,
            Instant::now(),
        )
        .map_err(|e| e.to_string())
}

fn remove(
    s: &Arc<Shared>,
    folder_id: &str,
    path: &str,
    need: Need,
    expect: Option<FileRecord>,
) -> Result<Vec<Action>, String> {
    let root = root_of(s, folder_id)?;
    let abs = crate::fs::path::absolute(&root, path).map_err(|e| e.to_string())?;
    if !parents_are_real(&root, &abs) {
        return Err("a parent directory is a symlink".into());
    }
    let mut store = lock(&s.store);
    if !SyncEngine::is_current(&store, folder_id, path, &need, expect.as_ref()) {
        return Err("overtaken by newer information".into());
    }
    if !disk_matches(&abs, expect.as_ref()) {
        return Err("the file changed on disk since it was indexed".into());
    }
    if let Ok(m) = std::fs::symlink_metadata(&abs) {
        if m.is_dir() {
            // Only an empty directory goes; what is left in it keeps it.
            let _ = std::fs::remove_dir(&abs);
        } else {
            let stamp = crate::core::SystemClock.wall().as_nanos() / 1_000_000_000;
            let trash = root
                .join(META_DIR)
                .join("trash")
                .join(stamp.to_string())
                .join(path);
            if let Some(p) = trash.parent() {
                std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
            }
            std::fs::rename(&abs, &trash).map_err(|e| format!("move to trash: {e}"))?;
            if let Some(e) = &expect {
                lock(&s.chunks).trashed(&trash, e);
            }
        }
    }
    let mut engine = lock(&s.engine);
    engine
        .completed(
            &mut store,
            folder_id,
            path,
            &need,
            need.record.clone(),
            None,
            Instant::now(),
        )
        .map_err(|e| e.to_string())
}
