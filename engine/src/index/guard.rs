//! # index::guard — the deletion guard's state, per folder
//!
//! Owns what the store keeps for the guard that stops a wiped or
//! unmounted folder from deleting itself everywhere: whether the folder's
//! root marker was written (from then on its absence stops the folder),
//! whether the guard is switched off, and, for each direction, deletions
//! held back and waiting for a person — a local scan that found most of
//! the folder gone, or a peer's changes that would delete most of it
//! here. Namespace `folder.guard`, keys `<folder id>/<field>`. This is
//! this node's bookkeeping only, never sent to a peer. It reads and writes
//! the store; it never looks at the disk (the marker file is
//! [`crate::folder::marker`]'s) and never decides what to sync.

use serde::{Deserialize, Serialize};

use super::{FolderError, decode, encode};
use crate::core::Timestamp;
use crate::store::{Op, Store};

/// Namespace of the guard's state.
pub const GUARD_NS: &str = "folder.guard";

/// Fewest deletions that can trip the guard: small folders never do.
pub const MIN_HELD: u64 = 100;

/// Whether deleting `deleting` of a folder's `files` regular files trips
/// the guard: more than half of them, and at least [`MIN_HELD`].
pub fn trips(deleting: u64, files: u64) -> bool {
    deleting >= MIN_HELD && deleting.saturating_mul(2) > files
}

/// Where deletions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Found missing by this node's scan.
    Local,
    /// Sent by a peer.
    Remote,
}

impl Direction {
    fn key(self) -> &'static str {
        match self {
            Direction::Local => "held-local",
            Direction::Remote => "held-remote",
        }
    }

    fn accept_key(self) -> &'static str {
        match self {
            Direction::Local => "accept-local",
            Direction::Remote => "accept-remote",
        }
    }
}

/// Deletions held back in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// How many paths would have been deleted when it tripped (or last
    /// looked).
    pub paths: u64,
    /// The folder's regular files then.
    pub of_files: u64,
    /// When it first tripped.
    pub since: Timestamp,
}

fn key(folder: &str, field: &str) -> String {
    format!("{folder}/{field}")
}

fn put(store: &Store, folder: &str, field: &str, value: Vec<u8>) -> Op {
    Op::Put {
        ns: GUARD_NS.into(),
        key: key(folder, field),
        value,
        origin: store.config().node,
        timestamp: store.wall_time(),
    }
}

fn forget(folder: &str, field: &str) -> Op {
    Op::Forget {
        ns: GUARD_NS.into(),
        key: key(folder, field),
    }
}

/// Whether the folder's root marker was written: from then on a missing
/// marker means the folder is not what it was (unmounted, wiped).
pub fn is_marked(store: &Store, folder: &str) -> bool {
    store.contains(GUARD_NS, &key(folder, "marked"))
}

/// Record that the folder's marker was written.
pub fn set_marked(store: &mut Store, folder: &str) -> Result<(), FolderError> {
    if !is_marked(store, folder) {
        store.apply(put(store, folder, "marked", vec![1]))?;
    }
    Ok(())
}

/// Whether the guard is switched off for the folder.
pub fn is_off(store: &Store, folder: &str) -> bool {
    store.contains(GUARD_NS, &key(folder, "off"))
}

/// Switch the guard on or off for the folder. Switching it off lets
/// whatever was held go ahead (the held state is cleared).
pub fn set_off(store: &mut Store, folder: &str, off: bool) -> Result<(), FolderError> {
    let mut ops = vec![if off {
        put(store, folder, "off", vec![1])
    } else {
        forget(folder, "off")
    }];
    if off {
        for d in [Direction::Local, Direction::Remote] {
            ops.push(forget(folder, d.key()));
            ops.push(forget(folder, d.accept_key()));
        }
    }
    store.apply_batch(ops)?;
    Ok(())
}

/// Deletions held back in `dir`, if any.
pub fn held(store: &Store, folder: &str, dir: Direction) -> Option<Held> {
    let k = key(folder, dir.key());
    let e = store.get(GUARD_NS, &k)?;
    decode(&k, e.value.as_deref()?).ok()
}

/// Record deletions held back in `dir` (the first time is kept as `since`).
pub fn hold(
    store: &mut Store,
    folder: &str,
    dir: Direction,
    paths: u64,
    of_files: u64,
) -> Result<Held, FolderError> {
    let since = held(store, folder, dir).map_or_else(|| store.wall_time(), |h| h.since);
    let h = Held {
        paths,
        of_files,
        since,
    };
    if held(store, folder, dir) != Some(h) {
        store.apply(put(store, folder, dir.key(), encode(&h)))?;
    }
    Ok(h)
}

/// Whether a person accepted the deletions of `dir` (they then go ahead
/// until none is left: see [`settle`]).
pub fn is_accepted(store: &Store, folder: &str, dir: Direction) -> bool {
    store.contains(GUARD_NS, &key(folder, dir.accept_key()))
}

/// A person accepted (`true`) the deletions held in `dir`, or refused them
/// (`false`, once they are restored): either way nothing is held any more.
pub fn decide(
    store: &mut Store,
    folder: &str,
    dir: Direction,
    accept: bool,
) -> Result<(), FolderError> {
    let mut ops = vec![forget(folder, dir.key())];
    ops.push(if accept {
        put(store, folder, dir.accept_key(), vec![1])
    } else {
        forget(folder, dir.accept_key())
    });
    store.apply_batch(ops)?;
    Ok(())
}

/// No deletion of `dir` is pending any more: an acceptance has been used
/// up, and a hold with nothing behind it goes.
pub fn settle(store: &mut Store, folder: &str, dir: Direction) -> Result<(), FolderError> {
    let mut ops = Vec::new();
    if is_accepted(store, folder, dir) {
        ops.push(forget(folder, dir.accept_key()));
    }
    if held(store, folder, dir).is_some() {
        ops.push(forget(folder, dir.key()));
    }
    if !ops.is_empty() {
        store.apply_batch(ops)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    #[test]
    fn more_than_half_and_at_least_a_hundred_trips() {
        assert!(!trips(99, 100));
        assert!(trips(100, 150));
        assert!(!trips(100, 200), "exactly half does not trip");
        assert!(trips(101, 200));
        assert!(!trips(50, 60), "a small folder never trips");
        assert!(trips(1000, 1000));
    }

    #[test]
    fn held_deletions_are_kept_until_decided_and_an_acceptance_is_used_up() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open_dir(StoreConfig::new(dir.path())).unwrap();
        assert!(held(&store, "docs", Direction::Local).is_none());
        let first = hold(&mut store, "docs", Direction::Local, 500, 600).unwrap();
        let again = hold(&mut store, "docs", Direction::Local, 510, 600).unwrap();
        assert_eq!(first.since, again.since, "the first trip's time stays");
        assert_eq!(held(&store, "docs", Direction::Local).unwrap().paths, 510);
        assert!(held(&store, "docs", Direction::Remote).is_none());
        decide(&mut store, "docs", Direction::Local, true).unwrap();
        assert!(held(&store, "docs", Direction::Local).is_none());
        assert!(is_accepted(&store, "docs", Direction::Local));
        settle(&mut store, "docs", Direction::Local).unwrap();
        assert!(!is_accepted(&store, "docs", Direction::Local));

        hold(&mut store, "docs", Direction::Remote, 300, 400).unwrap();
        set_off(&mut store, "docs", true).unwrap();
        assert!(is_off(&store, "docs"));
        assert!(held(&store, "docs", Direction::Remote).is_none());
        assert!(!is_marked(&store, "docs"));
        set_marked(&mut store, "docs").unwrap();
        assert!(is_marked(&store, "docs"));
    }
}
