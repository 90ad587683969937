//! The version store: where the bytes of kept versions live, each stored
//! once. A folder's store is `.softadastra/versions/`: `blobs/<hash>` holds
//! a kept file whole (moved in, never copied, named by its content hash so
//! the same content is kept once), `chunks/<ab>/<hash>` holds loose chunks.
//!
//! A version of a large file whose earlier versions are kept whole costs
//! only the chunks none of them holds: a one-byte edit of a 1 GiB file
//! keeps one or two chunks (~64–128 KiB), not another GiB. The first
//! version of a file is kept whole — a rename, so free — because only bytes
//! the store owns are safe: a chunk left in the live file would be lost to
//! the next local edit, which nothing sees before it lands.
//!
//! This module owns that directory: it files a version away
//! ([`keep_version`], which also records it in the history), reads one back
//! chunk by chunk, each checked against its hash ([`read_version`]), and
//! removes what no recorded version needs ([`collect_garbage`]). It never
//! touches a folder's own files beyond the one it is handed, and never
//! deletes a byte a recorded version refers to.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;

use super::*;
use crate::index::history::{Kept, Stored, Why, key_for, put_op};
use crate::store::Op;

/// The version store of each folder, under its `.softadastra/` directory.
pub const VERSIONS_DIR: &str = "versions";

/// A version smaller than this is kept whole: a rename costs nothing, and
/// a few chunks gain little.
const DEDUP_MIN: u64 = 1 << 20;

/// The version store of the folder at `root`.
pub fn store_dir(root: &Path) -> PathBuf {
    root.join(META_DIR).join(VERSIONS_DIR)
}

/// Where a version kept whole with content `hash` is.
pub fn blob_path(root: &Path, hash: &ContentHash) -> PathBuf {
    store_dir(root).join("blobs").join(hash.to_string())
}

/// Where the loose chunk `hash` is.
pub fn chunk_path(root: &Path, hash: &ContentHash) -> PathBuf {
    let hex = hash.to_string();
    store_dir(root).join("chunks").join(&hex[..2]).join(hex)
}

/// File away version `record` of `path` (folder `folder` at `root`), which
/// was just moved aside to `staged` (its trash place), and record it in the
/// history for `why`, in the store's next batch.
///
/// Into the version store it goes: whole (moved in) when small or the
/// first of its path, else as the chunks the path's kept versions do not
/// already hold (written durably first). The record comes before the move:
/// a crash between leaves the bytes in the trash, where the history still
/// lists them. When filing cannot be done (no hash known, the bytes are not
/// the record's, the disk refuses), the version stays in the trash and is
/// recorded there: nothing is ever lost to filing. Only files have a
/// history (a link's trash copy stays as it is). Returns where the bytes
/// are now.
#[allow(clippy::too_many_arguments)]
pub fn keep_version(
    store: &mut Store,
    chunks: &std::sync::Mutex<ChunkIndex>,
    root: &Path,
    folder: &str,
    path: &str,
    staged: &Path,
    record: &FileRecord,
    why: Why,
) -> Result<PathBuf, WorkError> {
    if record.kind != EntryKind::File {
        return Ok(staged.to_path_buf());
    }
    let mut kept = Kept {
        record: record.clone(),
        kept_at: store.wall_time(),
        why,
        stored: Stored::Wanted,
    };
    let key = key_for(store, folder, path, &mut kept);
    file_under(store, chunks, root, folder, path, staged, key, kept, false)
}

/// File the bytes at `staged` away as version `kept` of `path`, recorded
/// under history key `key` (a new one, or a version whose bytes were
/// [`Stored::Wanted`] until now): see [`keep_version`]. `checked`: the bytes
/// were put together from chunks each checked against the record's, so
/// they are the record's and are not hashed again (under the store's
/// lock). Returns where the bytes are now.
#[allow(clippy::too_many_arguments)]
pub fn file_under(
    store: &mut Store,
    chunks: &std::sync::Mutex<ChunkIndex>,
    root: &Path,
    folder: &str,
    path: &str,
    staged: &Path,
    key: String,
    mut kept: Kept,
    checked: bool,
) -> Result<PathBuf, WorkError> {
    kept.stored = match filing(store, root, folder, path, staged, &mut kept.record, checked) {
        Ok(Some(stored)) => stored,
        Ok(None) => in_trash(root, staged),
        Err(e) => {
            warn!(folder, path, error = %e, "a kept version stays in the trash: the version store refused it");
            in_trash(root, staged)
        }
    };
    let op = put_op(store, key.clone(), &kept);
    let record_it = |store: &mut Store, op: Op| {
        store
            .apply(op)
            .map(|_| ())
            .map_err(|e| WorkError::new(Cause::Io, format!("cannot record a kept version: {e}")))
    };
    record_it(store, op)?;
    let moved = match &kept.stored {
        Stored::File(_) | Stored::Wanted => return Ok(staged.to_path_buf()),
        Stored::Blob => into_blob(chunks, root, staged, &kept.record),
        Stored::Chunks { .. } => std::fs::remove_file(staged),
    };
    match moved {
        Ok(()) => tidy(root, staged),
        Err(e) => {
            // The bytes stayed in the trash: say so in the record.
            warn!(folder, path, error = %e, "a kept version stays in the trash: it could not be moved into the version store");
            kept.stored = in_trash(root, staged);
            let op = put_op(store, key, &kept);
            record_it(store, op)?;
        }
    }
    Ok(location(root, &kept))
}

/// Set the file (or link) at `abs`, path `path` of folder `folder` at
/// `root`, aside as a kept version: moved to the trash (`to_trash`), then,
/// when its record is known, filed ([`keep_version`]) for `why`. Returns
/// where it went.
#[allow(clippy::too_many_arguments)]
pub fn set_aside(
    store: &mut Store,
    chunks: &std::sync::Mutex<ChunkIndex>,
    root: &Path,
    folder: &str,
    path: &str,
    abs: &Path,
    record: Option<&FileRecord>,
    why: Why,
) -> Result<PathBuf, WorkError> {
    let staged = to_trash(chunks, root, path, abs, record)?;
    match record {
        Some(r) => keep_version(store, chunks, root, folder, path, &staged, r, why),
        None => Ok(staged),
    }
}

/// A version left at `staged`, as the history names it.
fn in_trash(root: &Path, staged: &Path) -> Stored {
    let at = staged.strip_prefix(root).unwrap_or(staged);
    Stored::File(at.to_string_lossy().into_owned())
}

/// A version below this size is hashed before it is filed, whatever its
/// stat says (cheap; a rewrite in place within one tick of the disk's
/// clock, same size, is only plausible for a small file). A larger one is
/// hashed when its size, mtime or inode differ from its record, or before
/// its bytes would be let go as a copy of a version kept already.
const HASH_BELOW: u64 = 64 << 20;

/// Hash the file at `staged`; when it is not what `record` says, correct
/// `record` (size, hash, chunks) to what it is.
fn verify(staged: &Path, record: &mut FileRecord, folder: &str, path: &str) -> std::io::Result<()> {
    let content = crate::fs::chunk::chunk_file(
        &std::fs::File::open(staged)?,
        crate::fs::chunk::ChunkerConfig::default(),
    )?;
    if record.hash != Some(content.hash) || record.size != content.size {
        warn!(
            folder,
            path, "a kept version changed on disk just before it was kept: kept as it is"
        );
        record.hash = Some(content.hash);
        record.size = content.size;
        record.chunks = content.chunks;
    }
    Ok(())
}

/// How the version at `staged` is to be stored (its loose chunks already
/// written when chunk by chunk); `None` when it must stay where it is.
///
/// Only bytes known to be a stored hash's may ever be let go: a file
/// rewritten in place just before it was moved aside holds other bytes
/// than its record says (see [`HASH_BELOW`]). Such a version is kept as
/// what it is — `record` is corrected to its real size and hash.
fn filing(
    store: &Store,
    root: &Path,
    folder: &str,
    path: &str,
    staged: &Path,
    record: &mut FileRecord,
    checked: bool,
) -> std::io::Result<Option<Stored>> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(staged)?;
    if !meta.is_file() {
        return Ok(None);
    }
    let mtime_ns = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
    let as_recorded = meta.len() == record.size
        && mtime_ns == record.mtime_ns
        && (record.inode == 0 || meta.ino() == record.inode)
        && record.hash.is_some();
    let hashed = checked || !as_recorded || record.size < HASH_BELOW;
    if hashed && !checked {
        verify(staged, record, folder, path)?;
    }
    let Some(hash) = record.hash else {
        return Ok(None);
    };
    if blob_path(root, &hash).is_file() {
        // The same content is kept whole already: the bytes go only once
        // they are known to be it (a corrected record files them below,
        // under their own hash).
        if !hashed {
            verify(staged, record, folder, path)?;
        }
        if record.hash == Some(hash) {
            return Ok(Some(Stored::Blob));
        }
    }
    if record.size >= DEDUP_MIN
        && let Some(stored) = as_chunks(store, root, folder, path, staged, record)?
    {
        return Ok(Some(stored));
    }
    Ok(Some(Stored::Blob))
}

/// Move the version at `staged` into the store whole, under its hash.
fn into_blob(
    chunks: &std::sync::Mutex<ChunkIndex>,
    root: &Path,
    staged: &Path,
    record: &FileRecord,
) -> std::io::Result<()> {
    let Some(hash) = record.hash else {
        return Err(std::io::Error::other("no content hash"));
    };
    let blob = blob_path(root, &hash);
    if let Some(dir) = blob.parent() {
        std::fs::create_dir_all(dir)?;
    }
    lock(chunks).trashing(&blob, record);
    match rename_new(staged, &blob) {
        Ok(()) => Ok(()),
        // The same content is kept already.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::remove_file(staged),
        Err(e) => {
            lock(chunks).trashing(staged, record);
            Err(e)
        }
    }
}

/// Keep `record` as the chunks that `path`'s versions kept whole do not
/// hold, read from `staged` and checked; `None` when that would not save
/// at least half its size (or there is nothing to share with).
fn as_chunks(
    store: &Store,
    root: &Path,
    folder: &str,
    path: &str,
    staged: &Path,
    record: &FileRecord,
) -> std::io::Result<Option<Stored>> {
    let earlier = crate::index::history::versions(store, folder, path).unwrap_or_default();
    let mut held: HashSet<ContentHash> = HashSet::new();
    let mut bases = Vec::new();
    let wanted: HashSet<ContentHash> = record.chunks.iter().map(|c| c.hash).collect();
    for k in &earlier {
        let (Stored::Blob, Some(h)) = (&k.stored, k.record.hash) else {
            continue;
        };
        if bases.contains(&h) || !blob_path(root, &h).is_file() {
            continue;
        }
        if k.record.chunks.iter().any(|c| wanted.contains(&c.hash)) {
            bases.push(h);
            held.extend(k.record.chunks.iter().map(|c| c.hash));
        }
    }
    if bases.is_empty() {
        return Ok(None);
    }
    let mut missing = Vec::new();
    let mut seen = HashSet::new();
    for c in &record.chunks {
        if !held.contains(&c.hash) && seen.insert(c.hash) && !chunk_path(root, &c.hash).is_file() {
            missing.push(c);
        }
    }
    let bytes: u64 = missing.iter().map(|c| u64::from(c.len)).sum();
    if bytes.saturating_mul(2) > record.size {
        return Ok(None);
    }
    let file = std::fs::File::open(staged)?;
    let mut buf = Vec::new();
    for c in missing {
        buf.resize(c.len as usize, 0);
        file.read_exact_at(&mut buf, c.offset)?;
        if ContentHash::of(&buf) != c.hash {
            // Not the bytes the record says: kept as they are instead.
            return Ok(None);
        }
        write_chunk(root, &c.hash, &buf)?;
    }
    Ok(Some(Stored::Chunks { bases }))
}

/// Write the loose chunk `hash` durably (temporary file, fsync, rename).
fn write_chunk(root: &Path, hash: &ContentHash, bytes: &[u8]) -> std::io::Result<()> {
    let at = chunk_path(root, hash);
    if at.is_file() {
        return Ok(());
    }
    if let Some(dir) = at.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = temp_path(&at);
    let written = (|| {
        let mut f = std::fs::File::create_new(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        match rename_new(&tmp, &at) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    written
}

/// Remove the trash directories `staged` left empty, up to the trash.
fn tidy(root: &Path, staged: &Path) {
    let trash = root.join(META_DIR).join(TRASH_DIR);
    let mut dir = staged.parent();
    while let Some(d) = dir {
        if d == trash || !d.starts_with(&trash) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Where version `kept`'s bytes are, for people: a file, or the store.
pub fn location(root: &Path, kept: &Kept) -> PathBuf {
    match (&kept.stored, kept.record.hash) {
        (Stored::File(at), _) => root.join(at),
        (Stored::Blob, Some(h)) => blob_path(root, &h),
        _ => store_dir(root),
    }
}

/// Why a kept version could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

/// Write the bytes of version `kept` (folder at `root`) to `out`, each
/// chunk checked against its hash. `earlier`: the path's kept versions,
/// which say where the chunks of whole ones are. Returns how many bytes.
pub fn read_version(
    root: &Path,
    kept: &Kept,
    earlier: &[Kept],
    out: &mut dyn Write,
) -> Result<u64, Unreadable> {
    fn whole(at: PathBuf, out: &mut dyn Write) -> Result<u64, Unreadable> {
        let mut f = std::fs::File::open(&at)
            .map_err(|e| Unreadable(format!("{} cannot be read: {e}", at.display())))?;
        std::io::copy(&mut f, out)
            .map_err(|e| Unreadable(format!("{} cannot be copied: {e}", at.display())))
    }
    let bases = match &kept.stored {
        Stored::Wanted => {
            return Err(Unreadable(
                "are not on this device: an edit here replaced them before they could be kept (they are fetched from a device that kept them as soon as one is connected)"
                    .into(),
            ));
        }
        Stored::File(at) => return whole(root.join(at), out),
        Stored::Blob => match kept.record.hash {
            Some(h) => return whole(blob_path(root, &h), out),
            None => return Err(Unreadable("a whole version without a hash".into())),
        },
        Stored::Chunks { bases } => bases,
    };
    let mut places: HashMap<ContentHash, (PathBuf, u64)> = HashMap::new();
    for base in bases {
        let at = blob_path(root, base);
        let known = earlier
            .iter()
            .find(|k| matches!(k.stored, Stored::Blob) && k.record.hash == Some(*base))
            .map(|k| k.record.chunks.clone());
        let list = match known {
            Some(list) => list,
            // Its record is gone (retention): chunking is deterministic.
            None => std::fs::File::open(&at)
                .and_then(|f| crate::fs::chunk::chunk_file(&f, Default::default()))
                .map(|c| c.chunks)
                .unwrap_or_default(),
        };
        for c in list {
            places.entry(c.hash).or_insert((at.clone(), c.offset));
        }
    }
    let mut open: HashMap<PathBuf, std::fs::File> = HashMap::new();
    let mut buf = Vec::new();
    let mut total = 0u64;
    for c in &kept.record.chunks {
        buf.resize(c.len as usize, 0);
        let loose = chunk_path(root, &c.hash);
        let read = match std::fs::read(&loose) {
            Ok(bytes) => {
                buf = bytes;
                Ok(())
            }
            Err(_) => match places.get(&c.hash) {
                Some((at, offset)) => {
                    let f = match open.entry(at.clone()) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(std::fs::File::open(at).map_err(|e| {
                                Unreadable(format!("{} cannot be read: {e}", at.display()))
                            })?)
                        }
                    };
                    f.read_exact_at(&mut buf, *offset)
                        .map_err(|e| Unreadable(format!("{} cannot be read: {e}", at.display())))
                }
                None => Err(Unreadable(format!(
                    "miss chunk {} (offset {})",
                    c.hash.short(),
                    c.offset
                ))),
            },
        };
        read?;
        if buf.len() != c.len as usize || ContentHash::of(&buf) != c.hash {
            return Err(Unreadable(format!(
                "hold a damaged chunk {} (offset {})",
                c.hash.short(),
                c.offset
            )));
        }
        out.write_all(&buf)
            .map_err(|e| Unreadable(format!("cannot be written out: {e}")))?;
        total += buf.len() as u64;
    }
    Ok(total)
}

/// Remove from the version store of folder `folder` (at `root`) every blob
/// and loose chunk no recorded version refers to. Call it holding the
/// store: versions are filed away holding it too, so none is half-filed
/// meanwhile (a version's bytes enter the store before its record only as
/// loose copies of a file still in the trash). Returns (files, bytes)
/// removed.
pub fn collect_garbage(store: &Store, root: &Path, folder: &str) -> std::io::Result<(usize, u64)> {
    let all = crate::index::history::all(store, folder)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut wanted: HashSet<String> = HashSet::new();
    for (_, k) in &all {
        match &k.stored {
            Stored::File(_) | Stored::Wanted => {}
            Stored::Blob => {
                if let Some(h) = k.record.hash {
                    wanted.insert(h.to_string());
                }
            }
            Stored::Chunks { bases } => {
                wanted.extend(bases.iter().map(ToString::to_string));
                wanted.extend(k.record.chunks.iter().map(|c| c.hash.to_string()));
            }
        }
    }
    let dir = store_dir(root);
    let mut removed = (0usize, 0u64);
    let mut sweep = |d: &Path| -> std::io::Result<()> {
        let entries = match std::fs::read_dir(d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(m) = entry.metadata() else { continue };
            if !m.is_file() || wanted.contains(&name) {
                continue;
            }
            std::fs::remove_file(entry.path())?;
            removed.0 += 1;
            removed.1 += m.len();
        }
        Ok(())
    };
    sweep(&dir.join("blobs"))?;
    if let Ok(shards) = std::fs::read_dir(dir.join("chunks")) {
        for shard in shards.flatten() {
            sweep(&shard.path())?;
            let _ = std::fs::remove_dir(shard.path());
        }
    }
    Ok(removed)
}
