//! The deletion guard, this node's side: deletions a reconcile finds are
//! held back instead of recorded when they lose most of the folder (see
//! [`crate::index::guard`]). Part of the [`Indexer`]; it decides and notes
//! the hold in the store, and never touches the disk.

use super::*;
use crate::index::guard::{self, Direction};

/// How far back deletions already recorded count with new ones for the
/// deletion guard: a folder emptied faster than a watcher batch (a few
/// hundred ms) is seen in many batches, none of them most of what is left.
pub const RECENT_DELETIONS: std::time::Duration = std::time::Duration::from_secs(60);

impl Indexer {
    /// The deletion guard, this node's side: `deletions` found by a
    /// reconcile (which also found `adding` new regular files) are held
    /// back (emptied, their number returned) when they lose most of the
    /// folder ([`guard::trips`]) or deletions are held already, unless the
    /// guard is off or a person accepted them. What is lost is counted net
    /// of files added — a tree moved inside the folder, or build output
    /// made and cleaned, loses nothing — over this reconcile and the ones
    /// this indexer recorded in the last [`RECENT_DELETIONS`], so a folder
    /// emptied over many watcher batches is caught too. A look at the
    /// whole folder that finds nothing deleted ends a hold (the files are
    /// back) and uses up an acceptance.
    pub(super) fn guard_deletions(
        &self,
        store: &mut Store,
        deletions: &mut Vec<(String, FileRecord)>,
        adding: u64,
        whole: bool,
    ) -> Result<u64, FolderError> {
        let id = self.config.id.as_str();
        let deleting = deletions
            .iter()
            .filter(|(_, r)| r.kind == EntryKind::File)
            .count() as u64;
        let now = Instant::now();
        let mut recent = self.recent.borrow_mut();
        while recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RECENT_DELETIONS)
        {
            recent.pop_front();
        }
        let (lately_deleted, lately_added) = recent
            .iter()
            .fold((0u64, 0u64), |(d, a), (_, c)| (d + c.0, a + c.1));
        let go_ahead = |recent: &mut std::collections::VecDeque<(Instant, (u64, u64))>| {
            recent.push_back((now, (deleting, adding)));
            Ok(0)
        };
        if guard::is_off(store, id) {
            return go_ahead(&mut recent);
        }
        if deletions.is_empty() || guard::is_accepted(store, id, Direction::Local) {
            if whole {
                guard::settle(store, id, Direction::Local)?;
            }
            return go_ahead(&mut recent);
        }
        let files = store
            .tally(ns::FILES, Some(id), crate::index::file_tally)
            .items;
        // The folder as it was at the start of the window, and what it lost.
        let before = (files + lately_deleted).saturating_sub(lately_added);
        let lost = (deleting + lately_deleted).saturating_sub(adding + lately_added);
        let holding = guard::held(store, id, Direction::Local);
        if holding.is_none() && !guard::trips(lost, before) {
            return go_ahead(&mut recent);
        }
        let n = deletions.len() as u64;
        // A hold covers what a whole look finds gone; a part of the
        // folder adds to it (a path seen twice meanwhile counts twice
        // until the next whole look).
        let paths = match holding {
            Some(h) if !whole => h.paths + n,
            _ => n,
        };
        guard::hold(store, id, Direction::Local, paths, before)?;
        if holding.is_none() {
            tracing::warn!(folder = %id, lost, files = before, "most of the folder is gone from disk: \
                deletions held back (softadastra folder accept-deletions or restore-deletions)");
        }
        deletions.clear();
        Ok(n)
    }
}
