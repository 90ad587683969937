//! A node's answers to the deletion guard ([`super::super::guard`]),
//! applied to the running sync: work let go is handed out at once, and
//! the folder is scanned again when this node's own deletions were held.
//! Part of [`Node`]. It changes no file itself.

use super::super::guard::{self, Decided};
use super::{Node, NodeError, lock};

impl Node {
    /// Let the deletions held for folder `id` go ahead.
    pub fn accept_deletions(&self, id: &str) -> Result<Decided, NodeError> {
        let (decided, actions) = {
            let mut store = lock(&self.store);
            guard::accept(&mut lock(&self.shared.engine), &mut store, id)?
        };
        super::super::dispatch(&self.shared, actions);
        if decided.local > 0 {
            self.rescan_folder(id)?;
        }
        Ok(decided)
    }

    /// Undo the deletions held for folder `id` (see [`guard::restore`]).
    pub fn restore_deletions(&self, id: &str) -> Result<Decided, NodeError> {
        let (decided, actions) = {
            let mut store = lock(&self.store);
            guard::restore(&mut lock(&self.shared.engine), &mut store, id)?
        };
        super::super::dispatch(&self.shared, actions);
        if decided.remote > 0 {
            self.shared.changed(id);
        }
        Ok(decided)
    }

    /// Switch the deletion guard of folder `id` on or off.
    pub fn set_deletion_guard(&self, id: &str, on: bool) -> Result<(), NodeError> {
        {
            let mut store = lock(&self.store);
            guard::switch(&mut lock(&self.shared.engine), &mut store, id, on)?;
        }
        if !on {
            // What this node's scans held is recorded now; a peer's goes
            // at the next tick.
            let _ = self.rescan_folder(id);
            self.shared.changed(id);
        }
        Ok(())
    }
}
