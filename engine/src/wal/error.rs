//! The log's failures, each saying what failed and where, and whether
//! retrying can help ([`ErrorContext`]). Types only; no I/O.

use std::path::{Path, PathBuf};

use crate::core::{ErrorContext, Retry};

/// Everything that can go wrong in the log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file-system operation failed.
    #[error("WAL {op} failed on {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Stored data is damaged before its end.
    #[error("WAL corruption in {segment} at byte {offset}: {reason}")]
    Corruption {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the damaged record or header.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier write or fsync failed; the log accepts nothing more until reopened.
    #[error("WAL refuses writes after an earlier failure ({0}); reopen it to continue")]
    Poisoned(String),
    /// A payload larger than a record may carry.
    #[error("record payload of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The payload's size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl ErrorContext for WalError {
    fn retry(&self) -> Retry {
        match self {
            WalError::Io { .. } | WalError::Poisoned(_) => Retry::Later,
            WalError::Corruption { .. } | WalError::TooLarge { .. } => Retry::Never,
        }
    }
    fn is_corruption(&self) -> bool {
        matches!(self, WalError::Corruption { .. })
    }
}

/// A [`WalError::Io`] maker for `op` on `path`.
pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> WalError + 'a {
    move |source| WalError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
