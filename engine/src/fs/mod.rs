//! # fs — what changed on the file system?
//!
//! `fs` observes a folder and reports; it never writes the WAL or the store
//! (the [`folder`](crate::folder) layer turns its reports into store
//! operations).
//!
//! * [`chunk`] — content-defined chunking (FastCDC) and blake3 hashing,
//!   streamed, so a one-byte insert changes one or two chunks.
//! * [`scan`] — walks a folder (or part of it), reads the metadata, and
//!   hashes on all cores only the files whose size, mtime or inode changed.
//!   Per-path trouble is reported, never fatal.
//! * [`sparse`] — reads a file without reading its holes (zeros, known
//!   from the file system), so a sparse image is indexed at hashing speed.
//! * [`watch`] — native recursive notifications coalesced over a short
//!   settle window (tens of milliseconds); overflow becomes a rescan.
//! * [`ignore`] — built-in rules for the agent's own files plus the folder's
//!   `.softadastraignore` (gitignore syntax).
//! * [`path`] — the one definition of a valid folder-relative path, used on
//!   local paths and, above all, on paths that come from peers.
//!
//! ```
//! use softadastra::fs::chunk::{chunk_bytes, ChunkerConfig};
//! let content = chunk_bytes(b"hello world", ChunkerConfig::default());
//! assert_eq!(content.size, 11);
//! assert_eq!(content.chunks.len(), 1);
//! ```

pub mod chunk;
pub mod ignore;
/// Folder-relative paths: checks and joins (pure; they live in `core`).
pub use crate::core::path;
pub mod scan;
pub mod sparse;
pub mod watch;

use std::path::PathBuf;

use crate::core::{ErrorContext, Retry};

/// Errors of the `fs` layer.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The folder root is missing or not a directory.
    #[error("folder {root} is not an accessible directory: {reason}")]
    Root {
        /// The folder root.
        root: PathBuf,
        /// Why.
        reason: String,
    },
    /// The OS refused more watches.
    #[error(
        "cannot watch {root}: the inotify watch limit is reached (fs.inotify.max_user_watches = {limit}); \
         raise it, e.g. `sudo sysctl fs.inotify.max_user_watches=524288` (and add it to /etc/sysctl.conf)"
    )]
    WatchLimit {
        /// The folder root.
        root: PathBuf,
        /// The current limit, as read from /proc.
        limit: String,
    },
    /// The watch failed for another reason.
    #[error("watching {root} failed: {reason}")]
    Watch {
        /// The folder root.
        root: PathBuf,
        /// What notify said.
        reason: String,
    },
}

impl ErrorContext for FsError {
    fn retry(&self) -> Retry {
        match self {
            FsError::Root { .. } | FsError::Watch { .. } => Retry::Later,
            FsError::WatchLimit { .. } => Retry::Never,
        }
    }
}
