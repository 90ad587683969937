//! # runtime::repair — a damaged node made whole and safe to sync again
//!
//! [`repair_node`] runs `store::repair` and then
//! settles what lost records mean for sync, layer by layer. If anything
//! may have been lost:
//!
//! * this node's sync cursors are forgotten (`sync::forget_cursors`), so
//!   every peer sends its whole index again: changes received in the lost
//!   records come back from whoever still has them;
//! * this node's count in every index record moves past any count the
//!   lost records may have given out (`index::advance_own_versions`), so a
//!   peer that holds such a version sees the next one as newer — or as a
//!   conflict, which keeps both — never as the same.
//!
//! The chunk places (`store/chunks.redb`, derived from the index) are
//! removed, to be made again at the next start.
//!
//! Then every active folder's index is looked at again against its disk
//! (a scan, as at start): what the disk holds is recorded, so the lost
//! records' files are not lost. It reads folders and writes the store; it
//! never writes, moves or deletes a file in a shared folder.

use std::path::{Path, PathBuf};

use crate::folder::{self, ChangeReport, FolderError, Indexer};
use crate::store::{self, RepairReport, Store, StoreConfig, StoreError};
use crate::wal::format::RECORD_HEADER_LEN;

/// What [`repair_node`] did.
#[derive(Debug)]
pub struct NodeRepair {
    /// What the store's repair kept and lost.
    pub store: RepairReport,
    /// Sync cursors forgotten (peers send their whole index again).
    pub cursors_forgotten: usize,
    /// Index records whose version moved past the lost ones' (0 when
    /// nothing was lost).
    pub records_advanced: u64,
    /// Each folder looked at again: id, path and what its scan found
    /// (or why it could not run). Paused folders are scanned when resumed.
    pub scans: Vec<(String, PathBuf, Result<ChangeReport, FolderError>)>,
}

/// Why [`repair_node`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The store could not be repaired, or not opened after.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index could not be read or rewritten.
    #[error(transparent)]
    Index(#[from] FolderError),
}

/// Repair the store of `config` (its origin is this node), keeping a copy
/// of the damaged files under `keep_in`; see the [module docs](self).
pub fn repair_node(config: StoreConfig, keep_in: &Path) -> Result<NodeRepair, RepairError> {
    let node = config.node;
    let report = store::repair(&config, keep_in)?;
    // The chunk places are derived from the index the repair changed:
    // made again from it at the next start, never trusted across it.
    let places = config.dir.join(super::exec::CHUNK_PLACES_FILE);
    if let Err(e) = std::fs::remove_file(&places)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(StoreError::Io {
            op: "remove",
            path: places,
            source: e,
        }
        .into());
    }
    let (mut store, _) = Store::open_dir(config)?;
    let (mut cursors_forgotten, mut records_advanced) = (0, 0);
    if report.lost_anything() {
        cursors_forgotten = crate::sync::forget_cursors(&mut store)?;
        let by = report.lost_records() + report.unreadable_tail_bytes / RECORD_HEADER_LEN as u64;
        records_advanced = crate::index::advance_own_versions(&mut store, node, by + 1)?;
    }
    let mut scans = Vec::new();
    for config in folder::list(&store)?.into_iter().filter(|f| !f.paused) {
        let (id, path) = (config.id.clone(), config.path.clone());
        let result = Indexer::new(config, node).scan(&mut store, &Default::default());
        scans.push((id, path, result));
    }
    // The repaired home starts from a checkpoint and an empty log.
    store.checkpoint()?;
    Ok(NodeRepair {
        store: report,
        cursors_forgotten,
        records_advanced,
        scans,
    })
}

#[cfg(test)]
mod tests {
    /// Every namespace that says how the node is set up is among those the
    /// store keeps aside at each checkpoint (`store::aside`): the list
    /// there is written as text, the constants live in their layers.
    #[test]
    fn the_setup_namespaces_are_kept_aside() {
        let kept = crate::store::KEPT_ASIDE;
        for ns in [
            crate::index::folders::FOLDERS_NS,
            crate::index::guard::GUARD_NS,
            crate::index::retention::RETENTION_NS,
            crate::index::retention::LOCAL_EDITS_NS,
            crate::index::members::APP_MEMBERS_NS,
            crate::index::members::PAUSED_DEVICES_NS,
            crate::index::members::MEMBERSHIP_MARK_NS,
            crate::sync::RECEIVE_ONLY_NS,
            crate::runtime::trust::PEERS_NS,
            crate::runtime::trust::NAMES_NS,
            crate::runtime::offers::DECLINED_NS,
        ] {
            assert!(kept.contains(&ns), "{ns} is not kept aside");
        }
        assert_eq!(kept.len(), 11, "a namespace kept aside that no layer names");
    }
}
