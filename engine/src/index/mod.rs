//! # index — the file index as data: records, keys, the folder list
//!
//! What the index *is*, with no disk behind it: a [`FileRecord`] per path
//! (kind, size, mtime, permissions, content hash and [`Chunk`]s, version
//! vector, last writer, deletion flag), stored in the store's `files`
//! namespace under [`file_key`] `<folder id>/<path>`; the shared folders'
//! configurations ([`FolderConfig`], namespace `folders`); and the app's
//! key/values ([`values`]), kept as records of the app space. `folder`
//! (which reads the disk to make records) and `sync` (which exchanges
//! them) both build on it. This module reads and writes the store only;
//! it never touches a file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::core::{ContentHash, ErrorContext, MAX_CHUNK_LEN, NodeId, Retry, VersionVector};
use crate::store::{Op, Store, StoreError, ns};

pub mod folders;
pub mod guard;
pub mod history;
pub mod members;
pub mod retention;
pub mod stored;
pub mod values;

pub use folders::{FOLDERS_NS, FolderConfig, FolderType, get, list};
pub use stored::{decode_record, read_record, write_record};

/// What kind of entry a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link (recorded, never followed).
    Symlink,
    /// An application value (SDK key/value data, synced in the app space;
    /// never on disk in a folder).
    Value,
}

/// One chunk of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Byte offset in the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
    /// blake3 of the chunk's bytes.
    pub hash: ContentHash,
}

/// One path's state in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the Unix epoch.
    pub mtime_ns: i64,
    /// Permission bits.
    pub mode: u32,
    /// Local inode (not meaningful on other nodes).
    pub inode: u64,
    /// blake3 of the content (files only).
    pub hash: Option<ContentHash>,
    /// Content-defined chunks (files only).
    pub chunks: Vec<Chunk>,
    /// Symlink target, recorded, never followed.
    pub link_target: Option<String>,
    /// Change history across nodes.
    pub version: VersionVector,
    /// Node that made the last change.
    pub modified_by: NodeId,
    /// The path was deleted.
    pub deleted: bool,
}

impl FileRecord {
    /// Whether the chunks cover the content exactly, in order, each of 1
    /// to [`MAX_CHUNK_LEN`] bytes: true of every record a node makes from
    /// a file (an empty file has no chunks). A peer's file record that is
    /// not so is refused.
    pub fn chunks_tile(&self) -> bool {
        self.chunks.iter().try_fold(0u64, |at, c| {
            (c.offset == at && c.len > 0 && c.len <= MAX_CHUNK_LEN).then_some(at + u64::from(c.len))
        }) == Some(self.size)
    }

    /// Whether this is a file announced without its chunk list: a live
    /// file of some bytes and no chunks. A peer leaves out the list of a
    /// file of many chunks (see `sync::MAX_LISTED_CHUNKS`); a node fetches
    /// it before the file's bytes, and never records a file without it.
    pub fn chunks_elided(&self) -> bool {
        self.kind == EntryKind::File && !self.deleted && self.size > 0 && self.chunks.is_empty()
    }

    /// Fill in an elided chunk list (see [`FileRecord::chunks_elided`])
    /// from `local`, a record of the same content on this node.
    pub fn chunks_from(&mut self, local: &FileRecord) {
        if self.chunks_elided() && !local.deleted && local.hash == self.hash {
            self.chunks = local.chunks.clone();
        }
    }

    /// Whether this is `announced` (a record as a peer sent it), or it with
    /// its left-out chunk list filled in (see [`FileRecord::chunks_elided`]).
    pub fn is_filled_in(&self, announced: &FileRecord) -> bool {
        if !announced.chunks_elided() {
            return self == announced;
        }
        let FileRecord {
            kind,
            size,
            mtime_ns,
            mode,
            inode,
            hash,
            chunks: _,
            link_target,
            version,
            modified_by,
            deleted,
        } = self;
        *kind == announced.kind
            && *size == announced.size
            && *mtime_ns == announced.mtime_ns
            && *mode == announced.mode
            && *inode == announced.inode
            && *hash == announced.hash
            && *link_target == announced.link_target
            && *version == announced.version
            && *modified_by == announced.modified_by
            && *deleted == announced.deleted
    }

    /// Whether the content or type differs (what peers must learn about),
    /// as opposed to local-only metadata like mtime or inode.
    pub fn differs_in_substance(&self, other: &FileRecord) -> bool {
        self.deleted != other.deleted
            || self.kind != other.kind
            || self.size != other.size
            || self.hash != other.hash
            || self.mode != other.mode
            || self.link_target != other.link_target
    }
}

/// Errors of the index and folder layers.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// The store failed; nothing of the failed batch was recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A folder id that is not allowed.
    #[error("invalid folder id {id:?}: use 1-64 characters from a-z, A-Z, 0-9, '.', '_' and '-'")]
    InvalidId {
        /// The id given.
        id: String,
    },
    /// The folder path is unusable.
    #[error("cannot share {path}: {reason}")]
    BadPath {
        /// The path given.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The folder's root marker is gone (see [`crate::folder::marker`]):
    /// the folder is stopped until it is back or a person says so.
    #[error("folder at {path} is stopped: {reason}")]
    MarkerMissing {
        /// The folder's root.
        path: PathBuf,
        /// What happened and what to do.
        reason: String,
    },
    /// The id is taken.
    #[error("a folder with id {id:?} already exists (at {path})")]
    Exists {
        /// The id.
        id: String,
        /// Where the existing folder is.
        path: PathBuf,
    },
    /// No folder with that id.
    #[error("no folder with id {0:?} (see `softadastra folder list`)")]
    NotFound(String),
    /// An application key that is not allowed.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key given.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// An application value over the size limit.
    #[error(
        "value of {len} bytes for key {key:?} exceeds the {max}-byte limit; store large data as files in a shared folder"
    )]
    ValueTooLarge {
        /// The key.
        key: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A stored folder configuration of a format this release does not know.
    #[error(
        "folder configuration {key:?} is in format {version}, newer than this release reads: run the release that wrote it, or a newer one"
    )]
    NewerFormat {
        /// Store key.
        key: String,
        /// The format found.
        version: u8,
    },
    /// A device named where a trusted one is expected.
    #[error("{0} is not a trusted device (see `softadastra peer list`)")]
    NotTrusted(NodeId),
    /// A stored record cannot be decoded.
    #[error("corrupt index entry {key}: {reason}")]
    Corruption {
        /// Store key.
        key: String,
        /// Decoder message.
        reason: String,
    },
}

impl ErrorContext for FolderError {
    fn retry(&self) -> Retry {
        match self {
            FolderError::Store(e) => e.retry(),
            // Not as is: the drive must be mounted again, or the folder
            // put back, first.
            _ => Retry::Never,
        }
    }
    fn is_corruption(&self) -> bool {
        match self {
            FolderError::Store(e) => e.is_corruption(),
            FolderError::Corruption { .. } => true,
            _ => false,
        }
    }
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    key: &str,
    bytes: &[u8],
) -> Result<T, FolderError> {
    postcard::from_bytes(bytes).map_err(|e| FolderError::Corruption {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding plain data into memory cannot fail.
    postcard::to_allocvec(value).unwrap_or_default()
}

/// What a stored record counts for in a folder's totals
/// ([`Store::tally`]): a live regular file, its size.
pub fn file_tally(_key: &str, value: &[u8]) -> Option<u64> {
    let r = decode_record(value).ok()?;
    (!r.deleted && r.kind == EntryKind::File).then_some(r.size)
}

/// What a stored record counts for in a folder's conflict count: a live
/// conflict copy (see [`crate::core::path::is_conflict_copy`]).
pub fn conflict_tally(key: &str, value: &[u8]) -> Option<u64> {
    if !crate::core::path::is_conflict_copy(key) {
        return None;
    }
    file_tally(key, value)
}

/// The folders' file totals ([`file_tally`]), saved when the store closes
/// (see [`crate::store::SavedTally`]; a change to [`file_tally`] needs a
/// new name).
pub const FILE_TOTALS: crate::store::SavedTally = crate::store::SavedTally {
    name: "files.v1",
    count: file_tally,
};

/// The folders' conflict totals ([`conflict_tally`]), saved as
/// [`FILE_TOTALS`] are.
pub const CONFLICT_TOTALS: crate::store::SavedTally = crate::store::SavedTally {
    name: "conflicts.v1",
    count: conflict_tally,
};

/// The running totals of the files' namespace a node keeps (`status`
/// reads them): kept by the agent and by every CLI command that writes
/// its store, so that they stay saved and are never counted at start.
pub const NODE_TOTALS: [crate::store::SavedTally; 2] = [FILE_TOTALS, CONFLICT_TOTALS];

/// The index key of `rel` in folder `id`.
pub fn file_key(id: &str, rel: &str) -> String {
    format!("{id}/{rel}")
}

/// The record of `rel` in folder `id`, if the index has one (deleted or not).
pub fn record(store: &Store, id: &str, rel: &str) -> Option<FileRecord> {
    store
        .value(ns::FILES, &file_key(id, rel))
        .and_then(|v| decode_record(&v).ok())
}

/// Every record of folder `id` (deleted ones included), in path order,
/// as the index is when called (the iterator reads a snapshot and does
/// not hold the store).
pub fn records(
    store: &Store,
    id: &str,
) -> impl Iterator<Item = Result<(String, FileRecord), FolderError>> + use<> {
    let prefix_len = id.len() + 1;
    store
        .scan_prefix(ns::FILES, &format!("{id}/"))
        .filter_map(move |(key, e)| {
            e.value
                .as_deref()
                .map(|v| read_record(&key, v).map(|r| (key[prefix_len..].to_string(), r)))
        })
}

/// Count `by` more changes by `node` in every record of the index (files
/// of every folder, and values), deleted ones included, as one change
/// each. After a store repair lost records this node may have given some
/// record a count it no longer knows of; a peer holding that version
/// must see every version made from now on as newer (or, if it changed
/// the record too, as a conflict), never as the same one. Returns the
/// records rewritten.
pub fn advance_own_versions(store: &mut Store, node: NodeId, by: u64) -> Result<u64, FolderError> {
    let mut ops = Vec::new();
    for (key, entry) in store.scan_prefix(ns::FILES, "") {
        let Some(value) = entry.value.as_deref() else {
            continue;
        };
        let mut record = read_record(&key, value)?;
        record.version.advance(node, by);
        ops.push(Op::Put {
            ns: ns::FILES.into(),
            key,
            value: write_record(&record),
            origin: node,
            timestamp: store.wall_time(),
        });
    }
    let n = ops.len() as u64;
    store.apply_in_batches(ops, 4096)?;
    Ok(n)
}
