//! A node's sharing decisions: who each folder is shared with, devices
//! paused, folder types, and offers accepted or declined — each applied
//! at once to the running sync (peers told, transfers with a removed
//! member cut). Part of [`Node`]. The one shared file it touches is a
//! receive-only folder's local copy on `revert_folder`, moved into that
//! folder's trash (never deleted).

use std::path::Path;

use tracing::info;

use super::super::trust::{self, TrustError};
use super::{Node, NodeError, lock};
use crate::core::NodeId;
use crate::folder::{self, FolderConfig};
use crate::index::members;

impl Node {
    /// Share folder `id` (or the app space) with `device`, or stop
    /// sharing it. Takes effect at once: the device is told its new
    /// folder list; when it loses one, what this node read of its index
    /// there is forgotten, work only it could supply is dropped, and the
    /// connection to it is closed and made again, so no transfer in
    /// flight for that folder goes on (nothing is left half-written at a
    /// real path: files are assembled aside). Returns whether anything
    /// changed.
    pub fn set_member(&self, id: &str, device: NodeId, member: bool) -> Result<bool, NodeError> {
        let changed = {
            let mut store = lock(&self.store);
            if member && !trust::is_trusted(&store, device) {
                return Err(TrustError::NotTrusted(device).into());
            }
            let changed = members::set_member(&mut store, id, device, member)?;
            if changed && !member {
                lock(&self.shared.engine).unshared(&mut store, id, device)?;
            }
            changed
        };
        if changed {
            info!(folder = %id, %device, shared = member, "folder membership changed");
            self.membership_changed(device, !member);
        }
        Ok(changed)
    }

    /// Pause (or resume) everything with `device`: while paused it is
    /// told of no folder and served nothing. Returns whether it changed.
    pub fn pause_device(&self, device: NodeId, paused: bool) -> Result<bool, NodeError> {
        let changed = {
            let mut store = lock(&self.store);
            if !trust::is_trusted(&store, device) {
                return Err(TrustError::NotTrusted(device).into());
            }
            members::set_device_paused(&mut store, device, paused)?
        };
        if changed {
            info!(%device, paused, "device paused or resumed");
            self.membership_changed(device, paused);
        }
        Ok(changed)
    }

    /// Make folder `id` sync as `kind` on this node (see
    /// [`crate::index::FolderType`] and [`crate::sync::SyncEngine::retype`]).
    pub fn set_folder_type(
        &self,
        id: &str,
        kind: crate::index::FolderType,
    ) -> Result<FolderConfig, NodeError> {
        let mut store = lock(&self.store);
        let config = lock(&self.shared.engine).retype(&mut store, id, kind)?;
        info!(folder = %id, %kind, "folder type changed");
        Ok(config)
    }

    /// Share the directory `path` as folder `id` (derived from its name if
    /// `None`), syncing as `kind` from its first scan on, and start
    /// watching it.
    pub fn add_folder_as(
        &self,
        path: &Path,
        id: Option<&str>,
        kind: crate::index::FolderType,
    ) -> Result<FolderConfig, NodeError> {
        let config = {
            let mut store = lock(&self.store);
            let config = folder::share(&mut store, path, id)?;
            lock(&self.shared.engine).retype(&mut store, &config.id, kind)?
        };
        self.watch(config.clone());
        info!(folder = %config.id, path = %config.path.display(), %kind, "sharing a new folder");
        Ok(config)
    }

    /// Push this node's state of send-only folder `id` back over every
    /// remote change it did not take. Returns how many paths.
    pub fn override_folder(&self, id: &str) -> Result<usize, NodeError> {
        let mut store = lock(&self.store);
        let config = folder::get(&store, id)?;
        if config.kind != crate::index::FolderType::SendOnly {
            return Err(NodeError::WrongType {
                id: id.to_string(),
                kind: config.kind,
                wanted: crate::index::FolderType::SendOnly,
            });
        }
        let n = lock(&self.shared.engine).override_remote(&mut store, id)?;
        info!(folder = %id, paths = n, "overrode remote changes");
        Ok(n)
    }

    /// Receive-only folder `id`: put back the peers' version of every path
    /// this node changed — its own copy goes to the folder's trash, its
    /// record is forgotten, and the peers are asked for their whole index
    /// again, which brings their version back as new. Paths only this node
    /// had stay in the trash. Returns how many paths.
    pub fn revert_folder(&self, id: &str) -> Result<usize, NodeError> {
        use crate::index::{EntryKind, FolderType};
        let (config, paths) = {
            let store = lock(&self.store);
            let config = folder::get(&store, id)?;
            if config.kind != FolderType::ReceiveOnly {
                return Err(NodeError::WrongType {
                    id: id.to_string(),
                    kind: config.kind,
                    wanted: FolderType::ReceiveOnly,
                });
            }
            let paths = lock(&self.shared.engine).revert_paths(&store, id);
            (config, paths)
        };
        let mut dirs = Vec::new();
        for (path, rec) in &paths {
            let Ok(abs) = crate::fs::path::absolute(&config.path, path) else {
                continue;
            };
            match rec.kind {
                _ if rec.deleted => {}
                EntryKind::Dir => dirs.push(abs),
                _ if std::fs::symlink_metadata(&abs).is_ok() => {
                    let failed = |e: crate::sync::WorkError| {
                        NodeError::Revert(format!("{}: {e}", abs.display()))
                    };
                    super::super::exec::versions::set_aside(
                        &mut lock(&self.store),
                        &self.shared.chunks,
                        &config.path,
                        id,
                        path,
                        &abs,
                        Some(rec),
                        crate::index::history::Why::Reverted,
                    )
                    .map_err(failed)?;
                }
                _ => {}
            }
        }
        // A directory only this node made goes once empty (deepest first).
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
        let names: Vec<String> = paths.into_iter().map(|(p, _)| p).collect();
        let actions = {
            let mut store = lock(&self.store);
            lock(&self.shared.engine).reverted(&mut store, id, &names, std::time::Instant::now())?
        };
        super::super::dispatch(&self.shared, actions);
        info!(folder = %id, paths = names.len(), "reverted local changes");
        Ok(names.len())
    }

    /// Folders connected devices offer this node (not declined, not here).
    pub fn offers(&self) -> Vec<crate::runtime::offers::Offer> {
        let store = lock(&self.store);
        let engine = lock(&self.shared.engine);
        crate::runtime::offers::visible(&store, engine.offers())
    }

    /// Keep the folder `id` that devices offer at `path`, shared with
    /// them, syncing as `kind`, and start syncing it.
    pub fn accept_offer(
        &self,
        id: &str,
        path: &Path,
        kind: crate::index::FolderType,
    ) -> Result<FolderConfig, NodeError> {
        let by = lock(&self.shared.engine)
            .offers()
            .get(id)
            .cloned()
            .ok_or_else(|| NodeError::NoOffer(id.to_string()))?;
        let config = {
            let mut store = lock(&self.store);
            crate::runtime::offers::accept(&mut store, id, path, &by)?;
            lock(&self.shared.engine).retype(&mut store, id, kind)?
        };
        info!(folder = %id, path = %config.path.display(), devices = by.len(), "accepted an offered folder");
        self.watch(config.clone());
        Ok(config)
    }

    /// Decline the folder `id` devices offer: not shown again.
    pub fn decline_offer(&self, id: &str) -> Result<(), NodeError> {
        crate::runtime::offers::decline(&mut lock(&self.store), id)?;
        Ok(())
    }

    /// Tell every peer its folder list again; if `cut`, close the
    /// connection to `device` (it is made again at once) so that nothing
    /// in flight goes on under the old membership.
    fn membership_changed(&self, device: NodeId, cut: bool) {
        if let Some(rt) = lock(&self.sync).as_ref() {
            rt.announce_folders();
        }
        if cut && let Some(h) = lock(&self.shared.peers).get(&device) {
            h.close(
                crate::transport::wire::close_code::NORMAL,
                "folder membership changed",
            );
        }
    }
}
