//! Membership at the engine: what it does when a folder stops being
//! shared with a device, what it refuses from a device a folder is not
//! shared with, and the folders devices offer. Who is a member is
//! [`crate::index::members`]' answer; this file only acts on it.

use super::*;

impl SyncEngine {
    /// Folder `folder` (or the app space) is no longer shared with
    /// `peer`: what this node read of the peer's index of it is forgotten
    /// (sharing it again exchanges the whole index anew), and work that
    /// only the peer could supply is dropped; the peer stops being a
    /// source of the rest. The files on disk stay as they are. Call
    /// [`SyncEngine::folders_changed`] too (and close transfers in flight).
    pub fn unshared(
        &mut self,
        store: &mut Store,
        folder: &str,
        peer: NodeId,
    ) -> Result<usize, SyncError> {
        let dropped = forget_peer_folder(store, folder, peer)?;
        let n = dropped.len();
        for path in dropped {
            self.remove_work(&(folder.to_string(), path));
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.folders.remove(folder);
            p.requests.remove(folder);
        }
        Ok(n)
    }

    /// Most folders one peer's list may offer (a longer list is cut).
    pub(super) const MAX_OFFERS: usize = 256;

    /// Folders trusted peers share with this node that it does not have,
    /// each with the peers offering it (connected now).
    pub fn offers(&self) -> &BTreeMap<String, BTreeSet<NodeId>> {
        &self.offered
    }

    /// Count (and log, once per peer and folder) something `peer` sent
    /// about `folder`, which is not shared with it.
    pub(super) fn refuse(&mut self, peer: NodeId, folder: &str, what: &str) {
        self.refused_requests += 1;
        if self.refusals_logged.insert((peer, folder.to_string())) {
            tracing::warn!(%peer, %folder, what, "refused: this folder is not shared with that device (logged once)");
        }
    }
}
