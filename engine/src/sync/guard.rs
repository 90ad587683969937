//! The deletion guard at the engine: deletions from peers that would
//! remove most of a folder here are held back — their work is not handed
//! out — until a person accepts them ([`SyncEngine::accept_deletions`]) or
//! has this node's files win back ([`SyncEngine::restore_deletions`]); a
//! folder whose root marker is gone is *halted*: none of its work is
//! handed out. The rest of a folder's sync goes on meanwhile. State is in
//! [`crate::index::guard`]; the counts come from the store's running
//! totals, so nothing here walks the index on a tick.

use super::*;
use crate::index::guard::{self, Direction};

/// How long held work waits before it is looked at again (it is made due
/// at once when the hold is decided).
const HELD_WAIT: Duration = Duration::from_secs(3600);

/// How long a peer's removal of a file waits after this node first heard
/// of it before it is carried out (in a folder whose guard is on): a mass
/// deletion reaches a peer in several index pages and watcher batches, and
/// the guard must weigh it whole, not let the first pieces through.
pub(super) const REMOVAL_SETTLE: Duration = Duration::from_secs(2);

/// What a stored need counts for in the guard's totals: a regular file's
/// removal.
fn deletion_tally(_key: &str, value: &[u8]) -> Option<u64> {
    let n: Need = postcard::from_bytes(value).ok()?;
    (n.record.deleted && n.record.kind == EntryKind::File).then_some(0)
}

/// A regular file to place (new or changed): what offsets removals when a
/// peer moved files rather than lost them.
fn placement_tally(_key: &str, value: &[u8]) -> Option<u64> {
    let n: Need = postcard::from_bytes(value).ok()?;
    (!n.record.deleted && n.record.kind == EntryKind::File).then_some(0)
}

impl SyncEngine {
    /// Regular files of `folder` peers' changes would remove here.
    pub fn deletions_pending(store: &mut Store, folder: &str) -> u64 {
        store.tally(NEED_NS, Some(folder), deletion_tally).items
    }

    /// The folders among `active` whose removals are held back now, the
    /// holds brought up to date: one trips when removals pending, net of
    /// files pending placement, are most of the folder ([`guard::trips`]),
    /// and ends when none is left (an acceptance is then used up too).
    pub(super) fn held_deletions(
        &self,
        store: &mut Store,
        active: &HashSet<&str>,
    ) -> Result<HashSet<String>, SyncError> {
        let mut held = HashSet::new();
        for &folder in active {
            if folder == APP_SPACE || guard::is_off(store, folder) {
                continue;
            }
            let pending = Self::deletions_pending(store, folder);
            let holding = guard::held(store, folder, Direction::Remote);
            if pending == 0 {
                if holding.is_some() || guard::is_accepted(store, folder, Direction::Remote) {
                    guard::settle(store, folder, Direction::Remote)?;
                }
                continue;
            }
            if guard::is_accepted(store, folder, Direction::Remote) {
                continue;
            }
            let files = store
                .tally(ns::FILES, Some(folder), index::file_tally)
                .items;
            // Net of files to place: a tree a peer moved loses nothing.
            let placing = store.tally(NEED_NS, Some(folder), placement_tally).items;
            if holding.is_none() && !guard::trips(pending.saturating_sub(placing), files) {
                continue;
            }
            // While a hold lasts, the folder's count stays the one it
            // tripped against (the files do not shrink: nothing is removed).
            let of = holding.map_or(files, |h| h.of_files);
            guard::hold(store, folder, Direction::Remote, pending, of)?;
            if holding.is_none() {
                tracing::warn!(
                    folder,
                    pending,
                    files,
                    "peers' changes would delete most of the folder: \
                    held back (softadastra folder accept-deletions or restore-deletions)"
                );
            }
            held.insert(folder.to_string());
        }
        Ok(held)
    }

    /// Held work of `key` waits (see [`HELD_WAIT`]).
    pub(super) fn wait_held(&mut self, key: &(String, String), now: Instant) {
        if let Some(w) = self.work.get_mut(key) {
            w.due = now + HELD_WAIT;
            if !w.held {
                w.held = true;
                self.held_count += 1;
            }
        }
    }

    /// Every piece of work of `folder` is due now (a hold ended).
    fn release(&mut self, folder: &str, now: Instant) {
        let from = (folder.to_string(), String::new());
        for (_, w) in self
            .work
            .range_mut(from..)
            .take_while(|((f, _), _)| f == folder)
        {
            if !w.out {
                w.due = now;
            }
        }
    }

    /// A person accepted the deletions held for `folder` in `dir`: a
    /// peer's go ahead at once; this node's are recorded by the next scan
    /// (the caller asks for one).
    pub fn accept_deletions(
        &mut self,
        store: &mut Store,
        folder: &str,
        dir: Direction,
        now: Instant,
    ) -> Result<Vec<Action>, SyncError> {
        guard::decide(store, folder, dir, true)?;
        if dir == Direction::Local {
            return Ok(Vec::new());
        }
        self.release(folder, now);
        Ok(self.due_work(store, now)?.0)
    }

    /// Undo the peers' deletions held for `folder`: each path they would
    /// remove keeps this node's version, which gets a version past theirs,
    /// so every peer takes it back. Returns how many paths.
    pub fn restore_deletions(
        &mut self,
        store: &mut Store,
        folder: &str,
    ) -> Result<usize, SyncError> {
        let removals: Vec<(String, FileRecord)> = Self::needs(store)
            .into_iter()
            .filter(|(f, _, n)| f == folder && n.record.deleted)
            .map(|(_, p, n)| (p, n.record))
            .collect();
        let n = self.outvote(store, folder, removals, NEED_NS)?;
        guard::decide(store, folder, Direction::Remote, false)?;
        Ok(n)
    }

    /// The deletion guard was switched on or off for `folder`: anything it
    /// held is looked at again now.
    pub fn guard_switched(&mut self, folder: &str, now: Instant) {
        self.release(folder, now);
    }

    /// Folder `folder` cannot be trusted to be itself (its marker is
    /// gone): none of its work is handed out until [`SyncEngine::unhalt`].
    pub fn halt(&mut self, folder: &str) {
        self.halted.insert(folder.to_string());
    }

    /// Folder `folder` is itself again: its work goes on.
    pub fn unhalt(&mut self, folder: &str, now: Instant) {
        if self.halted.remove(folder) {
            self.release(folder, now);
        }
    }

    /// Whether `folder` is halted.
    pub fn is_halted(&self, folder: &str) -> bool {
        self.halted.contains(folder)
    }
}
