//! # folder — shared folders: turning what `fs` sees into store operations
//!
//! This is the glue the architecture puts *above* `fs` and `store`: `fs`
//! observes, `store` records, and this layer decides what an observation
//! means. A shared folder has an id and a root path (kept in the `folders`
//! namespace). Each path under it is a [`FileRecord`] in the `files`
//! namespace, keyed `<folder id>/<relative path>`, holding the kind, size,
//! mtime, permissions, content hash and chunk list, a version vector, the
//! node that last changed it, and a `deleted` flag (a deletion is a record
//! too, so it keeps its version vector and can be synced).
//!
//! [`Indexer::scan`] reconciles the whole folder; [`Indexer::apply`]
//! reconciles the paths a watcher batch names (a directory is looked at
//! with everything under it, so files that raced a new directory's watch
//! are still found). Changes are written with group commit: one fsync per
//! batch of up to 2,048 operations, not per file.
//!
//! Writes the agent itself makes (when sync places a file) go through
//! [`Indexer::record_local_write`]: the record then already matches the
//! disk, so the watcher's event for that write finds nothing new and no
//! echo goes back to peers.
//!
//! Files: this one holds the record and key layout (`FileRecord`,
//! `file_key`, `record`, `records`) and the errors; `registry.rs` which
//! folders are shared; `indexer.rs` the reconciliation of the disk into
//! the index (the only part that reads files); [`values`] the app's
//! key/values, kept as records of the app space.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

mod indexer;
mod registry;
pub mod values;

pub use indexer::*;
pub use registry::*;

use crate::core::{ContentHash, ErrorContext, MAX_CHUNK_LEN, NodeId, Retry, Seq, VersionVector};
use crate::fs::chunk::{Chunk, ChunkerConfig};
use crate::fs::ignore::IgnoreRules;
use crate::fs::scan::{
    self, EntryKind, FileStat, Observation, Observed, ScanIssue, ScanProgress, Scope,
};
use crate::fs::watch::Batch;
use crate::store::{Op, Store, StoreError, ns};

/// Namespace of folder configurations.
pub const FOLDERS_NS: &str = "folders";

/// A shared folder on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderConfig {
    /// Id shared by every node that syncs this folder.
    pub id: String,
    /// Absolute root path on this node.
    pub path: PathBuf,
    /// Paused folders are neither watched nor synced.
    pub paused: bool,
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

    fn stat(&self) -> FileStat {
        FileStat {
            kind: self.kind,
            size: self.size,
            mtime_ns: self.mtime_ns,
            mode: self.mode,
            inode: self.inode,
        }
    }

    /// Whether the content or type differs (what peers must learn about),
    /// as opposed to local-only metadata like mtime or inode.
    fn differs_in_substance(&self, other: &FileRecord) -> bool {
        self.deleted != other.deleted
            || self.kind != other.kind
            || self.size != other.size
            || self.hash != other.hash
            || self.mode != other.mode
            || self.link_target != other.link_target
    }
}

/// Errors of the folder layer.
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

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, FolderError> {
    postcard::from_bytes(bytes).map_err(|e| FolderError::Corruption {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding plain data into memory cannot fail.
    postcard::to_allocvec(value).unwrap_or_default()
}

/// The index key of `rel` in folder `id`.
pub fn file_key(id: &str, rel: &str) -> String {
    format!("{id}/{rel}")
}

/// The record of `rel` in folder `id`, if the index has one (deleted or not).
pub fn record(store: &Store, id: &str, rel: &str) -> Option<FileRecord> {
    store
        .get(ns::FILES, &file_key(id, rel))
        .and_then(|e| e.value.as_deref())
        .and_then(|v| postcard::from_bytes::<FileRecord>(v).ok())
}

/// Every record of folder `id` (deleted ones included), in path order.
pub fn records<'a>(
    store: &'a Store,
    id: &str,
) -> impl Iterator<Item = Result<(&'a str, FileRecord), FolderError>> + use<'a> {
    let prefix_len = id.len() + 1;
    store
        .scan_prefix(ns::FILES, &format!("{id}/"))
        .filter_map(move |(key, e)| {
            e.value
                .as_deref()
                .map(|v| decode::<FileRecord>(key, v).map(|r| (&key[prefix_len..], r)))
        })
}
