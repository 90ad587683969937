//! # store::state::handle — the index's database handle
//!
//! Opening `index.redb` (a damaged file is refused, never panicked on),
//! and closing and opening it again on a node at rest
//! ([`State::reopen`]): redb's page cache, filled to its size by a sync,
//! is kept for the life of the handle and cannot be emptied otherwise —
//! at a million files that was a third of an idle receiver's memory
//! (issue 21). It owns only the handle; it never writes an entry.

use std::path::Path;
use std::sync::atomic::Ordering;

use redb::Database;

use super::backend::Backend;
use super::{State, err};
use crate::store::{StoreError, io_err};
use crate::wal::Storage;

/// Open the database at `path` (it exists) with a page cache of
/// `cache_bytes`.
pub(super) fn open_db(
    storage: &dyn Storage,
    path: &Path,
    cache_bytes: usize,
) -> Result<Database, StoreError> {
    let file = storage.open_paged(path).map_err(io_err("open", path))?;
    // A damaged file can make redb panic (its debug builds assert on
    // what it never writes) rather than fail: either way, a refusal.
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create_with_backend(Backend(file))
    }));
    match opened {
        Ok(db) => db.map_err(err("open the index")),
        Err(_) => Err(StoreError::Index {
            op: "open the index",
            reason: format!("{} is damaged beyond reading", path.display()),
            corrupt: true,
        }),
    }
}

/// The error of any use of a handle that could not be opened again.
pub(super) fn closed(op: &'static str) -> StoreError {
    StoreError::Index {
        op,
        reason: "the index could not be opened again after its cache was given back; \
                 restart the agent (the log holds every change)"
            .into(),
        corrupt: false,
    }
}

impl State {
    /// The open database.
    pub(super) fn db(&self) -> Result<&Database, StoreError> {
        self.db.as_ref().ok_or_else(|| closed("use the index"))
    }

    /// Close the database and open it again at `path`, with a page cache
    /// of `cache_bytes` that starts empty: what the old one held goes
    /// back to the allocator. Only right after a checkpoint and with no
    /// scan holding the state (the caller has it alone): nothing is
    /// pending, everything is durable, so closing writes nothing the log
    /// does not hold. `false` when it was not done (something pending, or
    /// abandoned). A failure to close or open again leaves the state abandoned:
    /// every later read and write fails with [`closed`]'s error, and the
    /// next start opens the file at that checkpoint.
    pub(in crate::store) fn reopen(
        &mut self,
        storage: &dyn Storage,
        path: &Path,
        cache_bytes: usize,
    ) -> Result<bool, StoreError> {
        if self.abandoned.load(Ordering::SeqCst)
            || self.pending.get_mut().map_or(true, |p| p.is_some())
            || self.uncommitted() > 0
        {
            return Ok(false);
        }
        // The reader kept for point reads is a transaction: closed first.
        if let Ok(committed) = self.committed.get_mut() {
            *committed = None;
        }
        let closed =
            (self.db.take()).map_or(Ok(()), |db| db.close().map_err(err("close the index")));
        match closed.and_then(|()| open_db(storage, path, cache_bytes)) {
            Ok(db) => {
                self.db = Some(db);
                Ok(true)
            }
            Err(e) => {
                self.abandon();
                Err(e)
            }
        }
    }
}
