//! A node's conflicts, listed and settled (see [`super::super::conflicts`]):
//! a decision is indexed at once and peers are hinted. Part of [`Node`].
//! The files it touches are the conflict's two versions: the loser moved
//! into the folder's trash, a copy moved to the path or to an ordinary name.

use std::path::Path;

use super::super::conflicts::{self, Conflict, Keep, Settled};
use super::{Node, NodeError, lock};
use crate::folder::{self, StoreAccess};

impl Node {
    /// Every conflict of folder `id`, or of every folder.
    pub fn conflicts(&self, id: Option<&str>) -> Result<Vec<Conflict>, NodeError> {
        let store = lock(&self.store);
        let folders = match id {
            Some(id) => vec![folder::get(&store, id)?],
            None => folder::list(&store)?,
        };
        Ok(conflicts::list(&store, self.id(), &folders)?)
    }

    /// Settle the conflict of the file (or conflict copy) at the absolute
    /// path `abs`, keeping `keep`.
    pub fn settle_conflict(&self, abs: &Path, keep: Keep) -> Result<Settled, NodeError> {
        let folders = folder::list(&lock(&self.store))?;
        let (config, rel) = conflicts::locate(&folders, abs)?;
        let settled = conflicts::settle(
            StoreAccess::Shared(&self.store),
            &self.shared.chunks,
            self.id(),
            &config,
            &rel,
            keep,
        )?;
        self.shared.changed(&config.id);
        Ok(settled)
    }
}
