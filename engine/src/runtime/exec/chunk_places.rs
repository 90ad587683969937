//! Where each chunk of the shared files is, on disk: the table behind the
//! chunk index ([`super::ChunkIndex`]), so that its size follows a cache
//! this module sizes, not the number of files (issue 21: in memory it took
//! ~180 bytes per file, 33–39 MB at 200,000 files).
//!
//! One redb file, `chunks.redb` beside the store's index (format
//! [`FORMAT`]); tables:
//! - `places`: the folder root's number (4 bytes, big-endian) and the
//!   chunk hash's first [`HASH_PREFIX`] bytes → a postcard [`Row`] (the
//!   file under that root, offset, length, the file's stamp when
//!   indexed). Two chunks sharing 128 bits of their hash would share a
//!   row (the later one's place kept): never by chance — 2^-128 a pair —
//!   and a place is a hint, checked before its bytes are used (a peer
//!   checks what it is served);
//! - `roots`: a folder root's path (its bytes) → its number;
//! - `meta`: `"format"`, and `"at_seq"`, the store sequence the places
//!   reflect (absent until a whole build finished).
//!
//! It is a *derived* cache: every place it gives is checked against the
//! chunk's hash when read, anything it lost is found again from the store
//! (a whole build when `at_seq` is absent, or a file it cannot read, or of
//! another format, which it deletes and makes again: format 1 keyed the
//! whole hash). Writes gather in
//! memory ([`FLUSH_AT`] at most, or [`FLUSH_EVERY`]) and go to disk in one
//! transaction; reads look at those first. Random hashes leave its pages
//! half empty and a whole build frees them all: after a flush the file is
//! compacted once mostly waste (`store::state::compact`) — during a whole
//! build, once, when it settles — and packed whole once the node is at
//! rest ([`PlaceTable::pack_at_rest`]: its pages full, ~40 % smaller
//! than random inserts leave them). With no usable
//! file it works in memory, as before.
//!
//! It never decides what a chunk's place is (the chunk index does) and
//! never reads or writes a shared file.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::chunk_index::{Place, Stamp};
use crate::core::ContentHash;
use crate::store::state::compact::Compactor;

/// Version of the tables' layout and encodings.
pub const FORMAT: u64 = 2;
/// How much of a chunk's hash keys its place.
pub const HASH_PREFIX: usize = 16;
/// The file's name, in the store's directory.
pub const FILE_NAME: &str = "chunks.redb";
/// Writes held in memory before they go to disk together.
pub const FLUSH_AT: usize = 32_768;
/// The file's page cache.
const CACHE_BYTES: usize = 4 << 20;
/// The file is compacted when mostly waste, from this size on.
const COMPACT_FROM: u64 = 8 << 20;
/// At rest, the file is packed once its waste passes this share (%) of
/// the places.
const PACK_WASTE_PERCENT: u64 = 15;
/// What is pending is written once nothing was for this long
/// (`PlaceTable::flush_when_quiet`).
pub const QUIET: std::time::Duration = std::time::Duration::from_secs(2);
/// How often the sequence reached is written, at most (with what is
/// pending).
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

const PLACES: TableDefinition<&Key, &[u8]> = TableDefinition::new("places");
const ROOTS: TableDefinition<&[u8], u32> = TableDefinition::new("roots");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// A place as stored: the path is relative to its folder's root.
#[derive(Debug, Serialize, Deserialize)]
struct Row {
    rel: Vec<u8>,
    offset: u64,
    len: u32,
    size: u64,
    mtime_ns: i64,
    inode: u64,
}

type Key = [u8; 4 + HASH_PREFIX];

fn key(root: u32, hash: &ContentHash) -> Key {
    let mut k = [0u8; 4 + HASH_PREFIX];
    k[..4].copy_from_slice(&root.to_be_bytes());
    k[4..].copy_from_slice(&hash.0[..HASH_PREFIX]);
    k
}

/// See the [module documentation](self).
pub struct PlaceTable {
    db: Database,
    /// The file, `None` in memory.
    path: Option<PathBuf>,
    /// When the file is next worth compacting (random keys leave its
    /// pages half empty, and a whole build frees all of them at once).
    compactor: Compactor,
    /// Packing the file whole at rest ([`PlaceTable::pack_at_rest`]).
    packer: Compactor,
    /// Whether the file changed since it was last packed.
    pub(super) changed_since_pack: bool,
    /// Every root known, by path, with its number.
    roots: HashMap<PathBuf, u32>,
    /// Roots numbered since the last flush.
    new_roots: Vec<(PathBuf, u32)>,
    /// Places written (`Some`) or removed (`None`) since the last flush.
    pending: HashMap<Key, Option<Place>>,
    /// The places table as of the last flush, kept open for reads.
    reader: Option<redb::ReadOnlyTable<&'static Key, &'static [u8]>>,
    /// The store sequence the places (pending ones included) reflect.
    at_seq: Option<u64>,
    /// Whether `at_seq` changed since the last flush.
    unflushed_seq: bool,
    /// The last flush.
    flushed_at: Option<std::time::Instant>,
    /// The last write (a place, a removal, a sequence reached).
    written_at: Option<std::time::Instant>,
    /// Places written since the table was last cleared (an estimate of
    /// how many it holds: a place written twice counts twice).
    pub(super) written: usize,
    /// A whole build is filling the table since it was cleared: it is
    /// compacted once, when the build settles, not after each flush (each
    /// would rewrite a file the build is still growing).
    bulk: bool,
}

impl std::fmt::Debug for PlaceTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaceTable")
            .field("roots", &self.roots.len())
            .field("pending", &self.pending.len())
            .field("at_seq", &self.at_seq)
            .finish()
    }
}

impl Default for PlaceTable {
    /// A table in memory only (nothing survives the process).
    fn default() -> Self {
        Self::in_memory()
    }
}

impl PlaceTable {
    /// The table in `path`, made if missing; made again if it cannot be
    /// read or is of another format. In memory if even that fails (said
    /// once, in the log): the index then works as it did before it had a
    /// file.
    pub fn open(path: &Path) -> PlaceTable {
        match Self::open_file(path) {
            Ok(t) => return t,
            Err(e) => {
                warn!(file = %path.display(), error = %e, "the chunk places cannot be read; they are found again from the index");
                let _ = std::fs::remove_file(path);
            }
        }
        match Self::open_file(path) {
            Ok(t) => t,
            Err(e) => {
                warn!(file = %path.display(), error = %e, "cannot keep the chunk places on disk; they are kept in memory");
                Self::in_memory()
            }
        }
    }

    fn in_memory() -> PlaceTable {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(redb::backends::InMemoryBackend::new())
            // As `Vec::new`: an empty in-memory database cannot fail
            // short of memory itself.
            .expect("an in-memory database");
        Self::with(db, None).expect("an in-memory database")
    }

    fn open_file(path: &Path) -> Result<PlaceTable, redb::Error> {
        // A damaged file can make redb panic rather than fail.
        let opened = std::panic::catch_unwind(|| {
            redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .create(path)
        });
        let db = match opened {
            Ok(db) => db?,
            Err(_) => {
                return Err(redb::Error::Corrupted(format!(
                    "{} is damaged beyond reading",
                    path.display()
                )));
            }
        };
        Self::with(db, Some(path.to_path_buf()))
    }

    fn with(db: Database, path: Option<PathBuf>) -> Result<PlaceTable, redb::Error> {
        let txn = db.begin_write()?;
        let (format, at_seq, roots) = {
            let mut meta = txn.open_table(META)?;
            let format = meta.get("format")?.map(|v| v.value());
            if format.is_none() {
                meta.insert("format", FORMAT)?;
            }
            let at_seq = meta.get("at_seq")?.map(|v| v.value());
            let mut roots = HashMap::new();
            for row in txn.open_table(ROOTS)?.iter()? {
                let (k, v) = row?;
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(k.value()));
                roots.insert(path, v.value());
            }
            txn.open_table(PLACES)?;
            (format, at_seq, roots)
        };
        txn.commit()?;
        if let Some(f) = format
            && f != FORMAT
        {
            return Err(redb::Error::Corrupted(format!(
                "chunk places of format {f}; this release reads {FORMAT}"
            )));
        }
        Ok(PlaceTable {
            db,
            path,
            // Balanced: it gives back the pages commits freed and leaves
            // the others as they are; packed pages would all split at the
            // next flush of random hashes, and the file would grow again.
            compactor: Compactor::new(COMPACT_FROM, redb::CompactionMode::Balanced, 100),
            packer: Compactor::new(
                COMPACT_FROM,
                redb::CompactionMode::Maximum,
                PACK_WASTE_PERCENT,
            ),
            changed_since_pack: true,
            roots,
            new_roots: Vec::new(),
            pending: HashMap::new(),
            reader: None,
            at_seq,
            unflushed_seq: false,
            flushed_at: None,
            written_at: None,
            written: 0,
            bulk: false,
        })
    }

    /// The store sequence the places reflect; `None` until a whole build
    /// finished (then one is due).
    pub fn at_seq(&self) -> Option<u64> {
        self.at_seq
    }

    /// The roots of the folders whose places are known.
    pub fn roots(&self) -> impl Iterator<Item = &Path> {
        self.roots.keys().map(PathBuf::as_path)
    }

    /// Know `root` as a folder's root from now on (a place under it is
    /// entered under it, not under the empty root).
    pub fn add_root(&mut self, root: &Path) {
        self.root_number(root);
    }

    fn root_number(&mut self, root: &Path) -> u32 {
        if let Some(n) = self.roots.get(root) {
            return *n;
        }
        let n = self.roots.values().max().map_or(0, |m| m + 1);
        self.roots.insert(root.to_path_buf(), n);
        self.new_roots.push((root.to_path_buf(), n));
        n
    }

    /// The place of `hash` under `root`.
    pub fn get(&mut self, root: &Path, hash: &ContentHash) -> Option<Place> {
        let n = *self.roots.get(root)?;
        let k = key(n, hash);
        if let Some(p) = self.pending.get(&k) {
            return p.clone();
        }
        if self.reader.is_none() {
            let opened: Result<_, redb::Error> =
                (|| Ok(self.db.begin_read()?.open_table(PLACES)?))();
            self.reader = opened
                .map_err(|e| warn!(error = %e, "cannot read the chunk places"))
                .ok();
        }
        // A place that cannot be read is one not known: the chunk index
        // looks for it again in the store (said in the log, not hidden).
        let bytes = match self.reader.as_ref()?.get(&k) {
            Ok(found) => found?,
            Err(e) => {
                warn!(error = %e, "cannot read the chunk places");
                return None;
            }
        };
        let row: Row = match postcard::from_bytes(bytes.value()) {
            Ok(row) => row,
            Err(e) => {
                warn!(chunk = %hash, error = %e, "a chunk place does not decode");
                return None;
            }
        };
        let rel = PathBuf::from(std::ffi::OsStr::from_bytes(&row.rel));
        let path = if root.as_os_str().is_empty() {
            rel
        } else {
            root.join(rel)
        };
        let stamp = Stamp {
            size: row.size,
            mtime_ns: row.mtime_ns,
            inode: row.inode,
        };
        Some((path, row.offset, row.len, stamp))
    }

    /// Whether a place of `hash` under `root` was set since the last flush.
    pub fn is_pending(&self, root: &Path, hash: &ContentHash) -> bool {
        self.roots
            .get(root)
            .is_some_and(|n| matches!(self.pending.get(&key(*n, hash)), Some(Some(_))))
    }

    /// Set the place of `hash` under `root`.
    pub fn put(&mut self, root: &Path, hash: &ContentHash, place: Place) {
        self.set_pending(root, hash, place);
        self.flush_when_due();
    }

    /// Set the place of `hash` under `root`, written to disk later (with
    /// the next flush, or once [`FLUSH_AT`] × 4 are pending): for a caller
    /// holding the store, which must not wait for a write of the table.
    pub fn put_later(&mut self, root: &Path, hash: &ContentHash, place: Place) {
        self.set_pending(root, hash, place);
        if self.pending.len() >= FLUSH_AT * 4 {
            self.flush();
        }
    }

    fn set_pending(&mut self, root: &Path, hash: &ContentHash, place: Place) {
        let n = self.root_number(root);
        self.pending.insert(key(n, hash), Some(place));
        self.written += 1;
        self.compactor.changed(1);
        self.written_at = Some(std::time::Instant::now());
    }

    /// Whether nothing was written for [`QUIET`] (or ever).
    pub fn is_quiet(&self) -> bool {
        self.written_at.is_none_or(|t| t.elapsed() >= QUIET)
    }

    /// Forget the place of `hash` under `root`.
    pub fn remove(&mut self, root: &Path, hash: &ContentHash) {
        if let Some(n) = self.roots.get(root) {
            self.pending.insert(key(*n, hash), None);
            self.compactor.changed(1);
            self.written_at = Some(std::time::Instant::now());
            self.flush_when_due();
        }
    }

    /// Forget every place and root: a whole build follows, which ends
    /// with [`PlaceTable::settle`].
    pub fn clear(&mut self) {
        self.pending.clear();
        self.new_roots.clear();
        self.roots.clear();
        self.reader = None;
        self.at_seq = None;
        self.unflushed_seq = false;
        self.compactor.changed(self.written as u64);
        self.written = 0;
        self.bulk = true;
        let cleared: Result<(), redb::Error> = (|| {
            let txn = self.db.begin_write()?;
            txn.delete_table(PLACES)?;
            txn.delete_table(ROOTS)?;
            txn.open_table(META)?.remove("at_seq")?;
            txn.commit()?;
            Ok(())
        })();
        if let Err(e) = cleared {
            warn!(error = %e, "cannot clear the chunk places");
        }
    }

    fn flush_when_due(&mut self) {
        if self.pending.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// The places now reflect the store up to `seq`: recorded in memory at
    /// once, on disk with the next flush — now, if the last was
    /// [`FLUSH_EVERY`] ago.
    pub fn reached(&mut self, seq: u64) {
        self.at_seq = Some(seq);
        self.unflushed_seq = true;
        self.written_at = Some(std::time::Instant::now());
        if self.flushed_at.is_none_or(|t| t.elapsed() >= FLUSH_EVERY) {
            self.flush();
        }
    }

    /// Write what is pending to disk, with the sequence reached, in one
    /// durable commit. Durable, so that the pages each commit replaces are
    /// free for the next (commits without an fsync would hold them, and
    /// the file would grow); rare, so that the fsyncs cost little. A crash
    /// loses what was not flushed, which the next look finds again from
    /// the sequence on disk.
    pub fn flush(&mut self) {
        if !self.has_unwritten() {
            return;
        }
        let started = std::time::Instant::now();
        let roots = std::mem::take(&mut self.new_roots);
        let pending = std::mem::take(&mut self.pending);
        let count = pending.len();
        let roots_by_number: HashMap<u32, PathBuf> =
            self.roots.iter().map(|(p, n)| (*n, p.clone())).collect();
        let at_seq = self.at_seq.filter(|_| self.unflushed_seq);
        let written: Result<(), redb::Error> = (|| {
            let txn = self.db.begin_write()?;
            {
                let mut table = txn.open_table(ROOTS)?;
                for (path, n) in &roots {
                    table.insert(path.as_os_str().as_bytes(), *n)?;
                }
                let mut places = txn.open_table(PLACES)?;
                // In key order: a B-tree fills its pages densely and
                // touches each once when keys come sorted (hashes come in
                // no order at all).
                let mut pending: Vec<(Key, Option<Place>)> = pending.into_iter().collect();
                pending.sort_unstable_by_key(|p| p.0);
                for (k, place) in &pending {
                    match place {
                        Some((path, offset, len, stamp)) => {
                            let n = u32::from_be_bytes([k[0], k[1], k[2], k[3]]);
                            let root = roots_by_number.get(&n).map(PathBuf::as_path);
                            let rel = match root {
                                Some(r) if !r.as_os_str().is_empty() => {
                                    path.strip_prefix(r).unwrap_or(path)
                                }
                                _ => path.as_path(),
                            };
                            let row = Row {
                                rel: rel.as_os_str().as_bytes().to_vec(),
                                offset: *offset,
                                len: *len,
                                size: stamp.size,
                                mtime_ns: stamp.mtime_ns,
                                inode: stamp.inode,
                            };
                            let bytes = postcard::to_allocvec(&row).unwrap_or_default();
                            places.insert(k, bytes.as_slice())?;
                        }
                        None => {
                            places.remove(k)?;
                        }
                    }
                }
                if let Some(seq) = at_seq {
                    txn.open_table(META)?.insert("at_seq", seq)?;
                }
            }
            txn.commit()?;
            Ok(())
        })();
        self.reader = None;
        self.flushed_at = Some(std::time::Instant::now());
        // The sequence reached alone (written as the store moves on at
        // rest) changes no page worth packing again.
        if count > 0 || !roots.is_empty() {
            self.changed_since_pack = true;
        }
        match written {
            Ok(()) => {
                self.unflushed_seq = false;
                debug!(
                    places = count,
                    took_ms = started.elapsed().as_millis() as u64,
                    "chunk places written"
                );
            }
            Err(e) => {
                // What was lost is found again by a whole build.
                warn!(error = %e, "cannot write the chunk places; they are found again from the index");
                self.at_seq = None;
            }
        }
        if !self.bulk {
            self.compact_when_wasteful();
        }
    }

    /// Write what is pending once nothing was written for [`QUIET`]: a
    /// flush (and the compaction it may bring) costs up to a second on a
    /// large folder, paid then rather than by the next change, which
    /// would otherwise wait for it.
    pub fn flush_when_quiet(&mut self) {
        if self.has_unwritten() && self.written_at.is_some_and(|t| t.elapsed() >= QUIET) {
            self.flush();
        }
    }

    /// Write what is pending and give back the pages a whole build freed
    /// (it clears the table, then writes it again).
    pub fn settle(&mut self) {
        self.bulk = false;
        self.compactor.look_next();
        if self.has_unwritten() {
            // The flush looks at the file once written.
            self.flush();
        } else {
            self.compact_when_wasteful();
        }
    }

    /// Pack the file whole, its pages full, if it changed since it was
    /// last packed and its waste passes [`PACK_WASTE_PERCENT`] of the
    /// places: for a node at rest, whose next changes are few (each
    /// splits the few pages it touches). What is pending is written
    /// first. Costs a copy of the file (~1 s at a million places).
    pub fn pack_at_rest(&mut self) {
        if self.bulk {
            // A whole build fills the file: it settles first.
            return;
        }
        self.flush();
        if !self.changed_since_pack || self.path.is_none() {
            return;
        }
        self.packer.look_next();
        self.reader = None;
        let before = self.file_len();
        match self.packer.maybe(&mut self.db, before, self.written as u64) {
            Ok(packed) => {
                self.changed_since_pack = false;
                if let Some(done) = packed {
                    info!(
                        before,
                        after = self.file_len(),
                        took_ms = done.took_ms,
                        "chunk places packed at rest"
                    );
                }
            }
            Err(e) => warn!(error = %e, "chunk places not packed"),
        }
    }

    /// The file's length, 0 in memory or if it cannot be read.
    fn file_len(&self) -> u64 {
        (self.path.as_ref())
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    }

    /// Whether places, roots or the sequence reached wait to be written.
    fn has_unwritten(&self) -> bool {
        !self.pending.is_empty() || !self.new_roots.is_empty() || self.unflushed_seq
    }

    /// Give the file's free pages back once the waste outweighs the
    /// places (see [`Compactor`]).
    fn compact_when_wasteful(&mut self) {
        if self.path.is_none() {
            return;
        }
        let before = self.file_len();
        // How many places the file holds (`written` counts only since
        // this process opened it, or since a clear).
        let held = (self.db.begin_read().ok())
            .and_then(|r| r.open_table(PLACES).ok())
            .and_then(|t| t.len().ok())
            .unwrap_or(self.written as u64);
        match self.compactor.maybe(&mut self.db, before, held) {
            Ok(Some(done)) => {
                info!(
                    before,
                    after = self.file_len(),
                    took_ms = done.took_ms,
                    "chunk places compacted"
                );
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "chunk places not compacted"),
        }
    }
}

impl Drop for PlaceTable {
    /// What is pending goes to disk at a clean close.
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests;
