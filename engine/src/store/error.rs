//! The store's failures, each saying what failed and where, and whether
//! retrying can help ([`ErrorContext`]). Types only; no I/O.

use std::path::{Path, PathBuf};

use crate::core::{ErrorContext, Retry};
use crate::wal::WalError;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The WAL failed; the operation was not accepted.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A snapshot file operation failed.
    #[error("snapshot {op} failed on {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Persisted state cannot be rebuilt.
    #[error("store corruption: {0}")]
    Corruption(String),
    /// The on-disk index failed.
    #[error("store index: cannot {op}: {reason}")]
    Index {
        /// What was being done.
        op: &'static str,
        /// What went wrong.
        reason: String,
        /// Whether the index file is damaged (else an I/O failure).
        corrupt: bool,
    },
    /// Another process has the store open.
    #[error("store {dir} is in use by another process (lock file {dir}/LOCK is held)")]
    Locked {
        /// The store directory.
        dir: PathBuf,
    },
    /// A namespace or key the store does not accept.
    #[error("invalid key {ns:?}/{key:?}: {reason}")]
    InvalidKey {
        /// Namespace given.
        ns: String,
        /// Key given.
        key: String,
        /// Why it is refused.
        reason: &'static str,
    },
}

impl ErrorContext for StoreError {
    fn retry(&self) -> Retry {
        match self {
            StoreError::Wal(e) => e.retry(),
            StoreError::Io { .. } | StoreError::Locked { .. } => Retry::Later,
            StoreError::Corruption(_) | StoreError::InvalidKey { .. } => Retry::Never,
            StoreError::Index { corrupt, .. } => {
                if *corrupt {
                    Retry::Never
                } else {
                    Retry::Later
                }
            }
        }
    }
    fn is_corruption(&self) -> bool {
        match self {
            StoreError::Wal(e) => e.is_corruption(),
            StoreError::Corruption(_) => true,
            StoreError::Index { corrupt, .. } => *corrupt,
            _ => false,
        }
    }
}

/// A [`StoreError::Io`] maker for `op` on `path`.
pub(super) fn io_err(
    op: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}
