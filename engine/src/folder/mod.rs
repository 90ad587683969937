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
//! Files: `registry.rs` says which folders are shared; `indexer.rs`
//! reconciles the disk into the index (the only part that reads files),
//! holding back a deletion of most of the folder (the deletion guard,
//! [`crate::index::guard`]); `marker.rs` keeps the root marker whose
//! absence stops a folder.
//! The record and key layout, the folder list and the app's key/values are
//! [`crate::index`]'s, re-exported here.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

mod indexer;
pub mod marker;
mod registry;

pub use crate::index::{
    FOLDERS_NS, FileRecord, FolderConfig, FolderError, file_key, get, list, record, records, values,
};
pub use indexer::*;
pub use registry::*;

use crate::core::{ContentHash, NodeId, Seq};
use crate::fs::chunk::ChunkerConfig;
use crate::fs::ignore::IgnoreRules;
use crate::fs::scan::{
    self, EntryKind, FileStat, Observation, Observed, ScanIssue, ScanProgress, Scope,
};
use crate::fs::watch::Batch;
use crate::store::{Op, Store, ns};

/// The metadata of `record` the scanner compares with the disk.
fn stat_of(record: &FileRecord) -> FileStat {
    FileStat {
        kind: record.kind,
        size: record.size,
        mtime_ns: record.mtime_ns,
        mode: record.mode,
        inode: record.inode,
    }
}
