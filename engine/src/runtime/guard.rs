//! A person's answers to the deletion guard, for a running node (through
//! [`Node`](super::node::Node)) or a stopped one (the CLI on the store,
//! with an engine of its own): accept the deletions held back, restore
//! what they would remove, switch the guard on or off. Each works on both
//! directions at once — this node's scan found most of the folder gone,
//! or a peer's changes would remove most of it here. It changes no file:
//! a restore is carried out by sync (this node's files win back on peers;
//! files gone from here are fetched again).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::index::guard::{self, Direction};
use crate::index::{self, FolderError};
use crate::store::Store;
use crate::sync::{Action, SyncEngine, SyncError};

/// What a decision covered: the deletions held, by direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    /// Paths this node's scan found gone (accepted: recorded as deleted
    /// by the next scan; restored: fetched again from peers).
    pub local: u64,
    /// Paths peers' changes would remove here (accepted: removed;
    /// restored: this node's version wins back on the peers).
    pub remote: u64,
}

/// Why a decision could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The folder has no deletions held back.
    #[error("folder {0:?} holds back no deletions (see `softadastra status`)")]
    NothingHeld(String),
    /// The folder is unknown, or the store failed.
    #[error(transparent)]
    Folder(#[from] FolderError),
    /// The sync bookkeeping could not be changed.
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl GuardError {
    /// Whether trying again as is can help: only a store failure may pass.
    pub fn retry(&self) -> bool {
        use crate::core::{ErrorContext, Retry};
        match self {
            GuardError::NothingHeld(_) => false,
            GuardError::Folder(e) => e.retry() == Retry::Later,
            GuardError::Sync(_) => true,
        }
    }
}

/// The deletions held for `id` now, by direction.
pub fn held(store: &Store, id: &str) -> Decided {
    let n = |d| guard::held(store, id, d).map_or(0, |h| h.paths);
    Decided {
        local: n(Direction::Local),
        remote: n(Direction::Remote),
    }
}

/// Let the deletions held for folder `id` go ahead. A peer's are handed
/// out at once (the returned actions); this node's are recorded by the
/// folder's next scan, which the caller asks for when `local` is not 0.
pub fn accept(
    engine: &mut SyncEngine,
    store: &mut Store,
    id: &str,
) -> Result<(Decided, Vec<Action>), GuardError> {
    index::get(store, id)?;
    let was = held(store, id);
    if was == Decided::default() {
        return Err(GuardError::NothingHeld(id.to_string()));
    }
    let mut actions = Vec::new();
    if was.local > 0 {
        engine.accept_deletions(store, id, Direction::Local, Instant::now())?;
    }
    if was.remote > 0 {
        actions = engine.accept_deletions(store, id, Direction::Remote, Instant::now())?;
    }
    tracing::info!(folder = %id, local = was.local, remote = was.remote, "held deletions accepted");
    Ok((was, actions))
}

/// Undo the deletions held for folder `id` at `root`: each path a peer
/// would remove keeps this node's version, made to win on every peer; each
/// path this node's scan found gone has its record forgotten and every
/// peer's index asked for again, so peers' copies come back (a path no
/// peer has stays gone). Returns what was restored and the actions to run.
pub fn restore(
    engine: &mut SyncEngine,
    store: &mut Store,
    id: &str,
) -> Result<(Decided, Vec<Action>), GuardError> {
    let config = index::get(store, id)?;
    let was = held(store, id);
    if was == Decided::default() {
        return Err(GuardError::NothingHeld(id.to_string()));
    }
    let mut done = Decided::default();
    let mut actions = Vec::new();
    if was.remote > 0 {
        done.remote = engine.restore_deletions(store, id)? as u64;
    }
    if was.local > 0 {
        let mut gone = Vec::new();
        for r in index::records(store, id) {
            let (path, rec) = r?;
            if rec.deleted {
                continue;
            }
            let present = crate::fs::path::absolute(&config.path, &path)
                .is_ok_and(|abs| std::fs::symlink_metadata(abs).is_ok());
            if !present {
                gone.push(path.to_string());
            }
        }
        done.local = gone.len() as u64;
        actions = engine.reverted(store, id, &gone, Instant::now())?;
        guard::decide(store, id, Direction::Local, false)?;
    }
    tracing::info!(folder = %id, local = done.local, remote = done.remote, "held deletions restored");
    Ok((done, actions))
}

/// Switch the deletion guard of folder `id` on or off. Off, whatever it
/// held goes ahead (this node's at the next scan, which the caller asks
/// for).
pub fn switch(
    engine: &mut SyncEngine,
    store: &mut Store,
    id: &str,
    on: bool,
) -> Result<(), GuardError> {
    index::get(store, id)?;
    guard::set_off(store, id, !on)?;
    engine.guard_switched(id, Instant::now());
    tracing::info!(folder = %id, on, "deletion guard switched");
    Ok(())
}
