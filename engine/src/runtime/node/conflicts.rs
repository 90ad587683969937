//! A node's conflicts, listed and settled (see [`super::super::conflicts`]):
//! a decision is indexed at once and peers are hinted. Part of [`Node`].
//! The files it touches are the conflict's two versions: the loser moved
//! into the folder's trash, a copy moved to the path or to an ordinary name.

use std::path::Path;

use super::super::conflicts::{self, Conflict, Keep, Settled};
use super::super::events::What;
use super::{Node, NodeError, lock};

impl Node {
    /// Every conflict of folder `id`, or of every folder.
    pub fn conflicts(&self, id: Option<&str>) -> Result<Vec<Conflict>, NodeError> {
        Ok(conflicts::list_of(&lock(&self.store), self.id(), id)?)
    }

    /// Settle the conflict of the file (or conflict copy) at the absolute
    /// path `abs`, keeping `keep`.
    pub fn settle_conflict(&self, abs: &Path, keep: Keep) -> Result<Settled, NodeError> {
        let (folder, settled) =
            conflicts::settle_at(&self.store, Some(&self.shared.chunks), self.id(), abs, keep)?;
        self.shared.changed(&folder);
        self.shared
            .events
            .push_all(settled.conflicts.iter().map(|c| What::ConflictResolved {
                folder: c.folder.clone(),
                path: c.path.clone(),
            }));
        Ok(settled)
    }
}
