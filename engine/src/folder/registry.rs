//! The folder registry: which directories this node shares, under which
//! ids (the `folders` namespace). Adding one checks the path on disk (it
//! must be a directory, not a node's home, not overlapping another
//! folder); nothing here reads files.

use super::*;

pub use crate::index::folders::validate_id;

/// A folder id derived from a directory name: `My Photos` → `my-photos`.
pub fn derive_id(path: &Path) -> String {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("folder");
    let mut id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    id.truncate(64);
    let id = id.trim_matches('-').to_string();
    if validate_id(&id).is_ok() {
        id
    } else {
        "folder".into()
    }
}

/// Share the directory at `path` under `id`, or, when `None`, under an id
/// derived from its name ([`derive_id`]).
pub fn share(
    store: &mut Store,
    path: &Path,
    id: Option<&str>,
) -> Result<FolderConfig, FolderError> {
    match id {
        Some(id) => add(store, id, path),
        None => {
            let root = std::fs::canonicalize(path).map_err(|e| FolderError::BadPath {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            add(store, &derive_id(&root), &root)
        }
    }
}

/// Share the directory at `path` under `id` (with no device yet: see
/// [`crate::index::members::set_member`]).
pub fn add(store: &mut Store, id: &str, path: &Path) -> Result<FolderConfig, FolderError> {
    validate_id(id)?;
    let bad = |reason: String| FolderError::BadPath {
        path: path.to_path_buf(),
        reason,
    };
    let root = std::fs::canonicalize(path).map_err(|e| bad(e.to_string()))?;
    if !root.is_dir() {
        return Err(bad("not a directory".into()));
    }
    if crate::fs::ignore::is_node_home(&root) {
        return Err(bad(
            "it is a Softadastra node's home (its private key and log are never synced); share a folder beside it or one that contains it".into(),
        ));
    }
    for other in list(store)? {
        if other.id == id {
            return Err(FolderError::Exists {
                id: id.to_string(),
                path: other.path,
            });
        }
        if root.starts_with(&other.path) || other.path.starts_with(&root) {
            return Err(bad(format!(
                "it overlaps folder {:?} at {}",
                other.id,
                other.path.display()
            )));
        }
    }
    let config = FolderConfig::new(id, root);
    crate::index::folders::put(store, &config)?;
    Ok(config)
}

/// Stop sharing folder `id` on this node: its configuration and index are
/// forgotten (no deletion reaches peers); the files on disk stay.
pub fn remove(store: &mut Store, id: &str) -> Result<FolderConfig, FolderError> {
    let config = get(store, id)?;
    store.apply_batch(vec![
        Op::DropPrefix {
            ns: ns::FILES.into(),
            prefix: format!("{id}/"),
        },
        Op::DropPrefix {
            ns: crate::index::guard::GUARD_NS.into(),
            prefix: format!("{id}/"),
        },
        Op::Forget {
            ns: FOLDERS_NS.into(),
            key: id.to_string(),
        },
    ])?;
    Ok(config)
}

/// Set a folder's paused flag.
pub fn set_paused(store: &mut Store, id: &str, paused: bool) -> Result<FolderConfig, FolderError> {
    let mut config = get(store, id)?;
    config.paused = paused;
    crate::index::folders::put(store, &config)?;
    Ok(config)
}
