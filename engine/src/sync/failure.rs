//! Why file work failed, and whether trying again soon can help.
//!
//! The executor reports every failure as a [`WorkError`]: what failed and
//! where (`what`, for people), and a [`Cause`] the engine schedules by. A
//! cause that time cures (a peer went quiet, the disk changed under the
//! work, a passing I/O error) is retried with a short exponential backoff.
//! A cause that needs something to change first (the disk is full, the
//! directory is not writable, the name is not allowed on this file system,
//! the path was refused) is not retried blindly: the work waits for a
//! change the runtime reports ([`SyncEngine::retry_blocked`]: space freed,
//! a local change in the folder, a rescan, the folder resumed) or for a
//! long backoff ([`SyncConfig::retry_blocked`]), and status says that a
//! person may have to act. This module classifies; it never does I/O.
//!
//! [`SyncEngine::retry_blocked`]: super::SyncEngine::retry_blocked
//! [`SyncConfig::retry_blocked`]: super::SyncConfig::retry_blocked

use std::fmt::Display;

use serde::{Deserialize, Serialize};

/// Why file work failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Cause {
    /// The content could not be had: no peer has it, a peer went quiet,
    /// a stream broke, a chunk did not match its hash.
    Transfer,
    /// The file changed on disk since it was indexed; the scan decides first.
    ChangedOnDisk,
    /// Newer information arrived while the work ran.
    Overtaken,
    /// Any other I/O error, likely to pass.
    Io,
    /// The node is stopping.
    Stopping,
    /// Not enough free space on the folder's file system (`needed` bytes
    /// for this file, beyond the free space the node keeps).
    NoSpace {
        /// Bytes the file needs.
        needed: u64,
    },
    /// Permission denied, or a read-only file system.
    Denied,
    /// The name is not allowed by this file system (too long, bad bytes).
    NameNotAllowed,
    /// The path was refused: it leads outside the folder, into this node's
    /// home, or through a symlink.
    Refused,
    /// A directory to remove still holds files that are not the peer's to
    /// delete (new or ignored ones).
    DirNotEmpty,
}

impl Cause {
    /// Whether the work should wait for something to change rather than be
    /// retried soon: a person, or the disk, has to act first.
    pub fn needs_change(self) -> bool {
        matches!(
            self,
            Cause::NoSpace { .. }
                | Cause::Denied
                | Cause::NameNotAllowed
                | Cause::Refused
                | Cause::DirNotEmpty
        )
    }

    /// A short name for status (`no_space`, `denied`, …).
    pub fn name(self) -> &'static str {
        match self {
            Cause::Transfer => "transfer",
            Cause::ChangedOnDisk => "changed_on_disk",
            Cause::Overtaken => "overtaken",
            Cause::Io => "io",
            Cause::Stopping => "stopping",
            Cause::NoSpace { .. } => "no_space",
            Cause::Denied => "denied",
            Cause::NameNotAllowed => "name_not_allowed",
            Cause::Refused => "refused",
            Cause::DirNotEmpty => "dir_not_empty",
        }
    }
}

/// A failure of file work: what failed, where, and its [`Cause`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}")]
pub struct WorkError {
    /// Why, for scheduling.
    pub cause: Cause,
    /// What failed and where, for people.
    pub what: String,
}

impl WorkError {
    /// A failure of `cause`, described by `what`.
    pub fn new(cause: Cause, what: impl Into<String>) -> WorkError {
        WorkError {
            cause,
            what: what.into(),
        }
    }

    /// Content that could not be had (see [`Cause::Transfer`]).
    pub fn transfer(what: impl Into<String>) -> WorkError {
        WorkError::new(Cause::Transfer, what)
    }

    /// An I/O error while doing `doing` (which names the path), classified
    /// by its kind: a full disk, a permission or a name problem waits for a
    /// change; anything else is retried soon.
    pub fn io(doing: impl Display, e: &std::io::Error) -> WorkError {
        use std::io::ErrorKind as K;
        let cause = match e.kind() {
            K::StorageFull | K::QuotaExceeded => Cause::NoSpace { needed: 0 },
            K::PermissionDenied | K::ReadOnlyFilesystem => Cause::Denied,
            K::InvalidFilename => Cause::NameNotAllowed,
            K::DirectoryNotEmpty => Cause::DirNotEmpty,
            _ => match e.raw_os_error() {
                Some(code) if is_name_error(code) => Cause::NameNotAllowed,
                _ => Cause::Io,
            },
        };
        WorkError::new(cause, format!("{doing}: {e}"))
    }

    /// Whether the work should wait for a change (see [`Cause::needs_change`]).
    pub fn needs_change(&self) -> bool {
        self.cause.needs_change()
    }
}

/// EILSEQ: a name the file system cannot encode.
fn is_name_error(code: i32) -> bool {
    #[cfg(unix)]
    return code == libc::EILSEQ;
    #[cfg(not(unix))]
    return false;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn io_errors_are_classified_by_what_can_cure_them() {
        let full = WorkError::io("write /f/a", &Error::from(ErrorKind::StorageFull));
        assert_eq!(full.cause, Cause::NoSpace { needed: 0 });
        assert!(full.needs_change());
        assert!(full.to_string().starts_with("write /f/a: "));
        let ro = WorkError::io("create /f/t", &Error::from(ErrorKind::ReadOnlyFilesystem));
        assert_eq!(ro.cause, Cause::Denied);
        let denied = WorkError::io("create /f/t", &Error::from(ErrorKind::PermissionDenied));
        assert!(denied.needs_change());
        let long = WorkError::io("create /f/t", &Error::from(ErrorKind::InvalidFilename));
        assert_eq!(long.cause, Cause::NameNotAllowed);
        let passing = WorkError::io("read /f/a", &Error::from(ErrorKind::Interrupted));
        assert_eq!(passing.cause, Cause::Io);
        assert!(!passing.needs_change());
        assert!(!WorkError::transfer("peer went quiet").needs_change());
    }

    #[test]
    fn causes_have_stable_names() {
        assert_eq!(Cause::NoSpace { needed: 5 }.name(), "no_space");
        assert_eq!(Cause::Denied.name(), "denied");
        assert_eq!(Cause::Transfer.name(), "transfer");
    }
}
