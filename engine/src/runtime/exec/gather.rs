//! Gathering the bytes of versions this device's own edits and deletions
//! replaced. The indexer records such a version as [`Stored::Wanted`] (its
//! bytes were gone from the disk before any watcher heard of the change);
//! here they are put together again, chunk by chunk, each checked against
//! its hash: from this device's own files first (an edit in place leaves
//! most chunks where they were), then from the versions this path already
//! keeps, then from the peers sharing the folder — each of which kept the
//! version when the change reached it. The bytes are assembled in a
//! temporary file in the trash and then filed into the version store like
//! any other kept version ([`versions::file_under`]), under the record's
//! own key. A version no connected device still has stays wanted and is
//! tried again later. This module writes only inside the folder's
//! `.softadastra/` directory — never in a paused folder or one whose marker
//! is gone — and never touches the folder's own files.

use std::collections::HashSet;
use std::os::unix::fs::FileExt;

use super::*;
use crate::index::history::{self as kept, Kept, Stored, WANTED_NS};
use crate::store::Op;

/// Versions looked at per pass.
const PER_PASS: usize = 64;

/// How long a version that could not be gathered waits before the next
/// try (peers may connect meanwhile), doubled at each failure up to
/// about an hour; any change in the connected peers ends every wait.
pub const GATHER_RETRY: Duration = Duration::from_secs(30);

/// The wait after `failures` failed tries.
fn retry_after(failures: u32) -> Duration {
    GATHER_RETRY * 2u32.pow(failures.saturating_sub(1).min(7))
}

/// One version to gather.
struct Wanted {
    folder: String,
    root: PathBuf,
    key: String,
    path: String,
    kept: Kept,
}

/// What gathering remembers between passes: the versions whose last try
/// failed, and when; the peers connected then.
#[derive(Debug, Default)]
pub struct WantedVersions {
    /// Per version: when its last try failed, and how many have.
    tried: HashMap<String, (Instant, u32)>,
    peers: Vec<NodeId>,
}

/// One pass: gather up to `PER_PASS` wanted versions, skipping those
/// whose last try failed less than [`GATHER_RETRY`] ago — unless the
/// connected peers changed since (one that has the bytes may have come).
/// Returns how many were filed away.
pub async fn gather_wanted(s: &Arc<Shared>, state: &mut WantedVersions) -> usize {
    let mut peers: Vec<NodeId> = lock(&s.peers).keys().copied().collect();
    peers.sort();
    if peers != state.peers {
        state.tried.clear();
        state.peers = peers;
    }
    // A version no longer wanted leaves no entry for long.
    state
        .tried
        .retain(|_, (at, _)| at.elapsed() < 2 * retry_after(u32::MAX));
    let skip: HashSet<String> = state
        .tried
        .iter()
        .filter(|(_, (at, n))| at.elapsed() < retry_after(*n))
        .map(|(k, _)| k.clone())
        .collect();
    let s2 = s.clone();
    let todo = tokio::task::spawn_blocking(move || list_wanted(&s2, &skip))
        .await
        .unwrap_or_default();
    let tried = &mut state.tried;
    let mut filed = 0;
    for w in todo {
        let key = w.key.clone();
        match gather_one(s, w).await {
            Ok(()) => {
                tried.remove(&key);
                filed += 1;
            }
            Err(why) => {
                debug!(version = %key.replace('\0', " @ "), %why, "a version edited here is not gathered yet");
                let failures = tried.get(&key).map_or(0, |t| t.1) + 1;
                tried.insert(key, (Instant::now(), failures));
            }
        }
    }
    filed
}

/// The wanted versions of the active folders (up to [`PER_PASS`], none
/// in `skip`); marks whose version is gone or no longer wanted are
/// forgotten.
fn list_wanted(s: &Shared, skip: &HashSet<String>) -> Vec<Wanted> {
    let mut store = lock(&s.store);
    if store.is_empty(WANTED_NS) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut stale = Vec::new();
    for f in folder::list(&store).unwrap_or_default() {
        // Nothing is written into a folder whose marker is gone (an empty
        // mount point, a wiped folder: see `crate::folder::marker`).
        let stopped = !crate::folder::marker::marker_path(&f.path).exists()
            && crate::index::guard::is_marked(&store, &f.id);
        if f.paused || stopped || out.len() >= PER_PASS {
            continue;
        }
        let keys = kept::wanted(&store, &f.id, PER_PASS - out.len(), |k| skip.contains(k));
        for key in keys {
            match kept::get(&store, &key) {
                Ok(Some(k)) if k.stored == Stored::Wanted => out.push(Wanted {
                    folder: f.id.clone(),
                    root: f.path.clone(),
                    path: kept::path_of_key(&f.id, &key).to_string(),
                    key,
                    kept: k,
                }),
                _ => stale.push(forget_mark(key)),
            }
        }
    }
    if !stale.is_empty() {
        let _ = store.apply_batch(stale);
    }
    out
}

fn forget_mark(key: String) -> Op {
    Op::Forget {
        ns: WANTED_NS.into(),
        key,
    }
}

/// Put version `w` together and file it away, or say why not.
async fn gather_one(s: &Arc<Shared>, w: Wanted) -> Result<(), String> {
    // The store is taken on a blocking thread, never on an async worker.
    let s2 = s.clone();
    let next = tokio::task::spawn_blocking(move || prepare(&s2, w))
        .await
        .map_err(|e| e.to_string())??;
    match next {
        Some((w, peers)) => gather_from(s, w, peers).await,
        None => Ok(()),
    }
}

/// Settle `w` at once when nothing needs gathering (no hash, or the same
/// content kept whole already: `None`); else the connected peers to ask,
/// or why there is no point yet.
fn prepare(s: &Shared, w: Wanted) -> Result<Option<(Wanted, Vec<NodeId>)>, String> {
    let Some(hash) = w.kept.record.hash.filter(|_| w.kept.record.chunks_tile()) else {
        // Nothing says what its bytes were (no hash, or chunks that do not
        // cover the file exactly): nothing can be gathered.
        lock(&s.store)
            .apply(forget_mark(w.key))
            .map_err(|e| e.to_string())?;
        return Ok(None);
    };
    if versions::blob_path(&w.root, &hash).is_file() {
        settle(s, w, None)?;
        return Ok(None);
    }
    let peers = member_peers(s, &w.folder);
    if peers.is_empty() {
        let absent = absent_here(s, &w);
        if absent > 0 {
            // Nothing is written until a device that may have them connects.
            return Err(format!(
                "{absent} of its chunks are not on this device, and no device sharing the folder is connected"
            ));
        }
    }
    Ok(Some((w, peers)))
}

/// The connected peers that share folder `folder`.
fn member_peers(s: &Shared, folder: &str) -> Vec<NodeId> {
    let connected: Vec<NodeId> = lock(&s.peers).keys().copied().collect();
    let store = lock(&s.store);
    connected
        .into_iter()
        .filter(|p| crate::index::members::is_member(&store, folder, p))
        .collect()
}

/// How many chunks of `w` this device does not seem to hold (looked up,
/// not read).
fn absent_here(s: &Shared, w: &Wanted) -> usize {
    let kept_here = kept_places(s, w);
    w.kept
        .record
        .chunks
        .iter()
        .filter(|c| {
            !kept_here.contains_key(&c.hash) && locate_chunk(s, &c.hash, false, false).is_empty()
        })
        .count()
}

/// Assemble `w` from this device and `peers`, and file it away.
async fn gather_from(s: &Arc<Shared>, w: Wanted, peers: Vec<NodeId>) -> Result<(), String> {
    let s2 = s.clone();
    let (w, tmp, missing) = tokio::task::spawn_blocking(move || {
        let (tmp, missing) = assemble_local(&s2, &w)?;
        Ok::<_, String>((w, tmp, missing))
    })
    .await
    .map_err(|e| e.to_string())??;
    let at = tmp.clone();
    let result = async {
        fetch_missing(s, &peers, &tmp, missing).await?;
        let s2 = s.clone();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&tmp)
                .map_err(|e| e.to_string())?;
            file.sync_all().map_err(|e| e.to_string())?;
            drop(file);
            settle(&s2, w, Some(&tmp))
        })
        .await
        .map_err(|e| e.to_string())?
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&at);
    }
    result
}

/// A chunk still to fetch: hash, length, offset in the version.
type Missing = (ContentHash, u32, u64);

/// Write every chunk of `w` found on this device into a new temporary
/// file in the folder's trash, at its offset. Returns the file and the
/// chunks still missing.
fn assemble_local(s: &Shared, w: &Wanted) -> Result<(PathBuf, Vec<Missing>), String> {
    let record = &w.kept.record;
    let at = absolute(&trash_batch(&w.root), &w.path).map_err(|e| e.to_string())?;
    let tmp = temp_path(&at);
    if let Some(dir) = tmp.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let file =
        std::fs::File::create_new(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    let kept_here = kept_places(s, w);
    let mut open = OpenFile::default();
    let mut missing = Vec::new();
    let written = (|| {
        // Made at its full size: all holes, which chunks of zeros stay
        // (a sparse file's version takes no more room than the file).
        file.set_len(record.size)?;
        for c in &record.chunks {
            if is_zero_chunk(c) {
                continue;
            }
            let local = kept_here
                .get(&c.hash)
                .and_then(|place| read_chunk(&mut open, place, &c.hash, false))
                .or_else(|| {
                    let places = locate_chunk(s, &c.hash, false, false);
                    local_chunk_from(s, &mut open, &c.hash, None, places)
                });
            match local {
                Some(bytes) if crate::core::is_zeros(&bytes) => {}
                Some(bytes) => file.write_all_at(&bytes, c.offset)?,
                None => missing.push((c.hash, c.len, c.offset)),
            }
        }
        Ok::<_, std::io::Error>(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("write {}: {e}", tmp.display()));
    }
    Ok((tmp, missing))
}

/// Where the chunks of the versions `w`'s path already keeps are (see
/// [`enter_kept`]).
fn kept_places(s: &Shared, w: &Wanted) -> HashMap<ContentHash, Place> {
    let earlier = kept::versions(&lock(&s.store), &w.folder, &w.path).unwrap_or_default();
    let mut places = HashMap::new();
    for k in &earlier {
        enter_kept(&mut places, &w.root, k);
    }
    places
}

/// Fetch `missing` from `peers` (connected, sharing the folder), in
/// requests of at most [`MAX_REQUEST_CHUNKS`] chunks and
/// [`MAX_REQUEST_BYTES`], each chunk asked of the next peer when one does
/// not have it; write each at its offset in `tmp`.
async fn fetch_missing(
    s: &Arc<Shared>,
    peers: &[NodeId],
    tmp: &Path,
    mut missing: Vec<Missing>,
) -> Result<(), String> {
    if missing.is_empty() {
        return Ok(());
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(tmp)
        .map_err(|e| format!("open {}: {e}", tmp.display()))?;
    for &peer in peers {
        let mut still = Vec::new();
        for group in requests(&missing) {
            let asked: Vec<(ContentHash, u32)> = group.iter().map(|m| (m.0, m.1)).collect();
            let Ok(got) = fetch_chunks(s, peer, &asked).await else {
                still.extend_from_slice(group);
                continue;
            };
            let mut arrived = Vec::new();
            for (m, data) in group.iter().zip(got) {
                match data {
                    Some(pieces) => arrived.push((m.2, pieces)),
                    None => still.push(*m),
                }
            }
            let bytes: u64 = arrived.iter().map(|(_, d)| data_len(d)).sum();
            s.bytes_fetched.fetch_add(bytes, Ordering::Relaxed);
            // Written on a blocking thread, not an async worker.
            let file = file.try_clone().map_err(|e| e.to_string())?;
            let at = tmp.to_path_buf();
            tokio::task::spawn_blocking(move || {
                for (mut offset, pieces) in arrived {
                    for piece in pieces {
                        file.write_all_at(&piece, offset)?;
                        offset += piece.len() as u64;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("write {}: {e}", at.display()))?;
        }
        missing = still;
        if missing.is_empty() {
            return Ok(());
        }
    }
    Err(format!(
        "{} of its chunks are on no connected device",
        missing.len()
    ))
}

/// `missing` cut into requests a peer accepts.
fn requests(missing: &[Missing]) -> Vec<&[Missing]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, m) in missing.iter().enumerate() {
        if i > start
            && (i - start >= MAX_REQUEST_CHUNKS || bytes + u64::from(m.1) > MAX_REQUEST_BYTES)
        {
            out.push(&missing[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += u64::from(m.1);
    }
    if start < missing.len() {
        out.push(&missing[start..]);
    }
    out
}

/// Holding the store: if `w` is still recorded and wanted, file its bytes
/// (assembled at `tmp`; `None`: already kept whole under its hash) away
/// under its key, and forget its mark.
fn settle(s: &Shared, w: Wanted, tmp: Option<&Path>) -> Result<(), String> {
    let mut store = lock(&s.store);
    let still = matches!(kept::get(&store, &w.key), Ok(Some(k)) if k.stored == Stored::Wanted);
    let filed = match (still, tmp) {
        (false, _) => Ok(()),
        // Looked for again holding the store: garbage collection, which
        // holds it too, may have taken it meanwhile.
        (true, None)
            if !w
                .kept
                .record
                .hash
                .is_some_and(|h| versions::blob_path(&w.root, &h).is_file()) =>
        {
            Err("its copy kept whole went meanwhile".to_string())
        }
        (true, None) => {
            let mut k = w.kept.clone();
            k.stored = Stored::Blob;
            let op = kept::put_op(&store, w.key.clone(), &k);
            store.apply(op).map(|_| ()).map_err(|e| e.to_string())
        }
        (true, Some(tmp)) => {
            let staged =
                to_trash(&s.chunks, &w.root, &w.path, tmp, None).map_err(|e| e.to_string())?;
            versions::file_under(
                &mut store,
                &s.chunks,
                &w.root,
                &w.folder,
                &w.path,
                &staged,
                w.key.clone(),
                w.kept.clone(),
                true,
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        }
    };
    if !still && let Some(tmp) = tmp {
        let _ = std::fs::remove_file(tmp);
    }
    filed?;
    store
        .apply(forget_mark(w.key))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_chunks_go_in_requests_a_peer_accepts() {
        let chunk = |len: u32| (ContentHash::of(&len.to_le_bytes()), len, 0);
        // 100 small chunks: 64, then 36.
        let small: Vec<Missing> = (0..100).map(|_| chunk(1000)).collect();
        let cut = requests(&small);
        assert_eq!(cut.iter().map(|r| r.len()).collect::<Vec<_>>(), [64, 36]);
        // 1 MiB chunks: four to a request (4 MiB at most).
        let big: Vec<Missing> = (0..9).map(|_| chunk(1 << 20)).collect();
        let cut = requests(&big);
        assert_eq!(cut.iter().map(|r| r.len()).collect::<Vec<_>>(), [4, 4, 1]);
        assert!(requests(&[]).is_empty());
    }

    #[test]
    fn only_chunks_that_cover_the_file_exactly_are_gathered() {
        let chunk = |offset: u64, len: u32| crate::index::Chunk {
            offset,
            len,
            hash: ContentHash::of(&offset.to_le_bytes()),
        };
        let mut r = FileRecord {
            kind: EntryKind::File,
            size: 30,
            mtime_ns: 0,
            mode: 0o644,
            inode: 0,
            hash: None,
            chunks: vec![chunk(0, 10), chunk(10, 20)],
            link_target: None,
            version: VersionVector::default(),
            modified_by: NodeId([1; 32]),
            deleted: false,
        };
        assert!(r.chunks_tile());
        r.chunks = vec![chunk(0, 10), chunk(12, 18)];
        assert!(!r.chunks_tile(), "a gap");
        r.chunks = vec![chunk(0, 10), chunk(10, 10)];
        assert!(!r.chunks_tile(), "short");
        r.size = 0;
        r.chunks.clear();
        assert!(r.chunks_tile(), "an empty file");
    }

    #[test]
    fn a_version_not_gathered_waits_longer_each_time_up_to_about_an_hour() {
        assert_eq!(retry_after(1), GATHER_RETRY);
        assert_eq!(retry_after(2), 2 * GATHER_RETRY);
        assert_eq!(retry_after(8), 128 * GATHER_RETRY);
        assert_eq!(retry_after(u32::MAX), 128 * GATHER_RETRY);
    }
}
