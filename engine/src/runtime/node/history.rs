//! A node's file history (see [`super::super::history`]): versions of a
//! file, deleted files that can come back, and a restore, indexed at once
//! and hinted to peers. Part of [`Node`]. The files it touches: the
//! destination of a restore, and what was there before, moved into the
//! folder's trash.

use std::path::Path;

use super::super::history::{self, Deleted, FolderRestore, Pick, Restored, Version};
use super::{Node, NodeError, lock};
use crate::folder;

impl Node {
    /// The kept versions of the file at the absolute path `abs`, newest
    /// first.
    pub fn history(&self, abs: &Path) -> Result<Vec<Version>, NodeError> {
        Ok(history::versions_at(&lock(&self.store), abs)?)
    }

    /// Deleted files of folder `id` that can come back.
    pub fn deleted_files(&self, id: &str) -> Result<Vec<Deleted>, NodeError> {
        let store = lock(&self.store);
        let config = folder::get(&store, id)?;
        Ok(history::deleted(&store, &config)?)
    }

    /// Set folder `id`'s retention policy and apply it now. Returns how
    /// many kept versions it removed.
    pub fn set_retention(
        &self,
        id: &str,
        policy: &crate::index::retention::Policy,
    ) -> Result<usize, NodeError> {
        let config = {
            let mut store = lock(&self.store);
            let config = folder::get(&store, id)?;
            crate::index::retention::set(&mut store, id, policy)?;
            config
        };
        let now = crate::core::Clock::wall(&crate::core::SystemClock).as_nanos();
        // The policy just set is the one applied (the default is unused).
        Ok(history::apply_retention(&self.store, &config, 1, now)?)
    }

    /// Restore version `pick` of the file at `abs`, in place or to `to`.
    pub fn restore(
        &self,
        abs: &Path,
        pick: Pick,
        to: Option<&Path>,
    ) -> Result<Restored, NodeError> {
        let (folder, restored) = history::restore_at(
            &self.store,
            Some(&self.shared.chunks),
            self.id(),
            abs,
            pick,
            to,
        )?;
        if to.is_none() {
            self.shared.changed(&folder);
        }
        Ok(restored)
    }

    /// Put folder `id` back as it was at `at` (ns since the epoch), or
    /// with `dry_run` only say what that would do. Blocking: call it on a
    /// blocking thread.
    pub fn restore_folder(
        &self,
        id: &str,
        at: u64,
        dry_run: bool,
    ) -> Result<FolderRestore, NodeError> {
        let done =
            history::restore_folder(&self.store, &self.shared.chunks, self.id(), id, at, dry_run)?;
        if done.carried_out {
            self.shared.changed(id);
        }
        Ok(done)
    }
}
