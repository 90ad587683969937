//! The folder's root marker: `<root>/.softadastra/marker`, written when a
//! folder is first indexed. Once written (the store remembers it,
//! [`crate::index::guard::is_marked`]), a folder whose marker is gone is
//! taken as not being the folder any more — a drive not mounted, a folder
//! wiped or replaced — and stops: nothing of it is indexed as deleted and
//! nothing from a peer is written into it. This file reads and writes the
//! marker only; what stopping means is the runtime's.

use std::path::{Path, PathBuf};

use super::FolderError;
use crate::fs::ignore::META_DIR;
use crate::store::Store;

/// The marker's file name, in the folder's `.softadastra/` directory.
pub const MARKER_FILE: &str = "marker";

/// Where the marker of the folder at `root` is.
pub fn marker_path(root: &Path) -> PathBuf {
    root.join(META_DIR).join(MARKER_FILE)
}

/// Why folder `id` at `root` is stopped for its marker, for people.
pub fn missing_reason(id: &str, root: &Path) -> String {
    format!(
        "the folder's marker {} is gone: the folder may be unmounted, wiped or replaced, so \
         nothing in it is synced (nothing is deleted anywhere). Put the folder back, or run \
         `softadastra folder rescan {id}` to take it as it is now",
        marker_path(root).display()
    )
}

/// A person takes folder `id` at `root` as it is now: if its marker is
/// gone, it is written again (what a scan then finds gone is still held
/// by the deletion guard). Returns whether it was missing.
pub fn retake(store: &Store, id: &str, root: &Path) -> Result<bool, FolderError> {
    if !crate::index::guard::is_marked(store, id) || marker_path(root).exists() {
        return Ok(false);
    }
    write(root, id)?;
    tracing::info!(folder = %id, "marker written again on request: the folder is taken as it is now");
    Ok(true)
}

/// Check the marker of shared folder `id` at `root` before its disk is
/// read as its state: a folder never marked gets its marker now (recorded
/// in the store); a marked one whose marker is gone — or whose root is — fails
/// with [`FolderError::MarkerMissing`].
pub fn check(store: &mut Store, id: &str, root: &Path) -> Result<(), FolderError> {
    // A directory merely looked at (`softadastra scan` of one not shared)
    // is not a folder: nothing is written into it.
    if crate::index::get(store, id).is_err() {
        return Ok(());
    }
    let path = marker_path(root);
    if crate::index::guard::is_marked(store, id) {
        return match std::fs::symlink_metadata(&path) {
            Ok(_) => Ok(()),
            Err(_) => Err(FolderError::MarkerMissing {
                path: root.to_path_buf(),
                reason: missing_reason(id, root),
            }),
        };
    }
    // Never made here: a folder whose root is gone is not created again
    // for its marker.
    if !root.is_dir() {
        return Err(FolderError::BadPath {
            path: root.to_path_buf(),
            reason: "not a directory (nothing recorded)".into(),
        });
    }
    write(root, id)?;
    crate::index::guard::set_marked(store, id)
}

/// Write (or rewrite) the marker of folder `id` at `root`.
pub fn write(root: &Path, id: &str) -> Result<(), FolderError> {
    let path = marker_path(root);
    let fail = |e: std::io::Error| FolderError::BadPath {
        path: path.clone(),
        reason: format!("cannot write the folder's marker: {e}"),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let text = format!(
        "Softadastra folder {id}. While this file is here the folder is taken as present; \
         if it goes, the folder stops instead of deleting its files on other devices.\n"
    );
    std::fs::write(&path, text).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::FolderConfig;
    use crate::store::StoreConfig;

    #[test]
    fn a_folder_is_marked_once_and_stops_when_its_marker_goes() {
        let home = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open_dir(StoreConfig::new(home.path())).unwrap();
        // Not shared: only looked at, nothing written.
        check(&mut store, "docs", root.path()).unwrap();
        assert!(!marker_path(root.path()).exists());
        crate::folder::add(&mut store, "docs", root.path()).unwrap();
        check(&mut store, "docs", root.path()).unwrap();
        assert!(marker_path(root.path()).is_file());
        check(&mut store, "docs", root.path()).unwrap();
        std::fs::remove_dir_all(root.path().join(META_DIR)).unwrap();
        let err = check(&mut store, "docs", root.path()).unwrap_err();
        assert!(matches!(err, FolderError::MarkerMissing { .. }), "{err}");
        assert!(err.to_string().contains("marker"), "{err}");
        assert!(
            retake(&store, "docs", root.path()).unwrap(),
            "written again"
        );
        assert!(
            !retake(&store, "docs", root.path()).unwrap(),
            "there already"
        );
        check(&mut store, "docs", root.path()).unwrap();
        let gone = root.path().join("never");
        crate::index::folders::put(&mut store, &FolderConfig::new("other", gone.clone())).unwrap();
        assert!(check(&mut store, "other", &gone).is_err());
        assert!(!gone.exists(), "a missing root is not made for its marker");
    }
}
