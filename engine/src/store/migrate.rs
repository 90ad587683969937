//! # store::migrate — a home from before the on-disk index
//!
//! Releases before the index kept the whole state in memory and wrote it
//! out as snapshots (`snapshots/snap-<seq>.snap`, see [`super::snapshot`]).
//! At the first open of such a home the store loads the newest usable
//! snapshot into the new index, replays the WAL after it, makes a
//! checkpoint, and only then removes the snapshots. A crash before that
//! leaves them, and the next open starts the migration over (the index is
//! recreated from them: it has no checkpointed sequence yet). This module
//! only reads snapshots and removes them; it never writes one.

use super::{StoreConfig, StoreError, io_err, snapshot};
use crate::wal::Storage;

/// The newest usable snapshot of an older home, if it has one, and the
/// newer ones that were not usable (with the reason).
pub(super) fn newest_snapshot(
    storage: &dyn Storage,
    config: &StoreConfig,
) -> Result<(Option<snapshot::Decoded>, Vec<String>), StoreError> {
    let dir = config.snapshot_dir();
    let names = match storage.list(&dir) {
        Ok(names) => names,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, Vec::new())),
        Err(e) => return Err(io_err("list", &dir)(e)),
    };
    if names.is_empty() {
        return Ok((None, Vec::new()));
    }
    snapshot::newest_usable(storage, &dir)
}

/// Remove the snapshot files (an interrupted write's `.tmp` included)
/// once a checkpoint of the new index holds what they held.
pub(super) fn remove_snapshots(
    storage: &dyn Storage,
    config: &StoreConfig,
) -> Result<(), StoreError> {
    let dir = config.snapshot_dir();
    for name in storage.list(&dir).map_err(io_err("list", &dir))? {
        let path = dir.join(name);
        storage.remove(&path).map_err(io_err("remove", &path))?;
    }
    storage
        .sync_dir(&dir)
        .map_err(io_err("sync directory", &dir))?;
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}
