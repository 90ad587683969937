//! Conflicts a person can see and settle. When two devices change one
//! file at once, sync keeps one version at the file's path and the other
//! beside it as a conflict copy, `NAME.sync-conflict-<when>-<device>.EXT`
//! (see [`crate::sync::resolve`]); the copy is an ordinary file, synced
//! to every device. This module finds the conflicts in a folder's index —
//! the same on every device, since the copies are — and settles one: keep
//! the version at the path (the copy goes), keep the copy's (it takes the
//! path's place), or keep both under ordinary names. The loser goes to the
//! folder's trash, never deleted, and each decision is an ordinary local
//! change, indexed at once and synced. Counting conflicts for status is
//! the store's running totals' ([`crate::index::conflict_tally`]); this
//! module walks the index only when asked for the list or a decision.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::exec::versions::set_aside;
use super::exec::{ChunkIndex, rename_new};
use crate::core::NodeId;
use crate::core::path::{is_conflict_copy, original_of_copy};
use crate::folder::{FolderConfig, FolderError, Indexer, StoreAccess};
use crate::fs::watch::Batch;
use crate::index::{self, FileRecord};
use crate::store::Store;

/// One version of a conflicting file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The device that made it: its id (text form) for the version at the
    /// path, the short id the copy's name carries for the copy.
    pub device: String,
    /// When it was last modified, UTC `YYYYMMDD-HHMMSS`.
    pub modified: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Which of a conflict's two versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The version at the file's path (sync's pick).
    Original,
    /// The version kept beside it as a conflict copy.
    Copy,
}

/// One conflict: a file and one copy of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// Folder id.
    pub folder: String,
    /// The file's folder path.
    pub path: String,
    /// The conflict copy's folder path.
    pub copy: String,
    /// Where the copy is on this machine.
    pub copy_at: PathBuf,
    /// The version at the path (`None`: the path was deleted since).
    pub original: Option<Version>,
    /// The copy's version.
    pub conflicting: Version,
    /// Which version this device made, if one.
    pub mine: Option<Side>,
}

/// What to keep when settling a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The version this device made.
    Mine,
    /// The version the other device made.
    Theirs,
    /// Both, the copy under an ordinary name.
    Both,
    /// The version at the path.
    Original,
    /// The copy's version, moved to the path.
    Copy,
}

impl std::str::FromStr for Keep {
    type Err = String;
    fn from_str(s: &str) -> Result<Keep, String> {
        Ok(match s {
            "mine" => Keep::Mine,
            "theirs" => Keep::Theirs,
            "both" => Keep::Both,
            "original" => Keep::Original,
            "copy" => Keep::Copy,
            other => {
                return Err(format!(
                    "--keep takes mine, theirs, both, original or copy, not {other:?}"
                ));
            }
        })
    }
}

/// What settling a conflict did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    /// The conflicts settled.
    pub conflicts: Vec<Conflict>,
    /// What was kept: the original, the copy, or both (`None`).
    pub kept: Option<Side>,
    /// Where each loser went in the folder's trash.
    pub trashed: Vec<PathBuf>,
    /// For `both`: the ordinary names the copies got (folder paths).
    pub renamed: Vec<String>,
}

/// Why a conflict could not be listed or settled.
#[derive(Debug, thiserror::Error)]
pub enum ConflictError {
    /// The path is in no shared folder.
    #[error("{0} is not in a shared folder (see `softadastra folder list`)")]
    NotShared(PathBuf),
    /// The path has no conflict.
    #[error("{0} has no conflict (see `softadastra conflicts`)")]
    NoConflict(PathBuf),
    /// Mine/theirs asked where neither version is this device's.
    #[error(
        "neither version of {0} was made on this device, so mine/theirs says nothing: use --keep original, copy or both"
    )]
    NotMine(PathBuf),
    /// A path with several copies, asked to keep "the" copy.
    #[error("{path} has {copies} conflict copies: settle them one at a time, naming the copy")]
    SeveralCopies {
        /// The file.
        path: PathBuf,
        /// How many copies it has.
        copies: usize,
    },
    /// A file could not be moved (nothing else of the decision was done).
    #[error("cannot {what}: {detail}")]
    Io {
        /// What was being done.
        what: String,
        /// The system's or the executor's word.
        detail: String,
    },
    /// The index could not be read or written.
    #[error(transparent)]
    Folder(#[from] FolderError),
}

impl ConflictError {
    /// Whether trying again as is can help: a failed move or a store
    /// failure may pass; the rest need a different request.
    pub fn retry(&self) -> bool {
        matches!(self, ConflictError::Io { .. })
            || matches!(self, ConflictError::Folder(FolderError::Store(_)))
    }
}

fn failed(what: String, e: impl std::fmt::Display) -> ConflictError {
    ConflictError::Io {
        what,
        detail: e.to_string(),
    }
}

fn stamp_of(record: &FileRecord) -> String {
    crate::sync::resolve::utc_stamp(record.mtime_ns.div_euclid(1_000_000_000))
}

/// The conflict of copy `copy` (live record `rec`) in folder `config`.
fn conflict_of(
    store: &Store,
    me: NodeId,
    config: &FolderConfig,
    copy: &str,
    rec: &FileRecord,
) -> Option<Conflict> {
    let (path, made, device) = original_of_copy(copy)?;
    let original = index::record(store, &config.id, &path)
        .filter(|r| !r.deleted)
        .map(|r| Version {
            device: r.modified_by.to_string(),
            modified: stamp_of(&r),
            size: r.size,
        });
    let mine = if original
        .as_ref()
        .is_some_and(|o| o.device == me.to_string())
    {
        Some(Side::Original)
    } else if device == me.short() {
        Some(Side::Copy)
    } else {
        None
    };
    Some(Conflict {
        folder: config.id.clone(),
        path,
        copy: copy.to_string(),
        copy_at: crate::fs::path::absolute(&config.path, copy).ok()?,
        original,
        conflicting: Version {
            device,
            modified: made,
            size: rec.size,
        },
        mine,
    })
}

/// Every conflict of the folders `folders`, in path order.
pub fn list(
    store: &Store,
    me: NodeId,
    folders: &[FolderConfig],
) -> Result<Vec<Conflict>, FolderError> {
    let mut out = Vec::new();
    for config in folders {
        for r in index::records(store, &config.id) {
            let (path, rec) = r?;
            if rec.deleted || !is_conflict_copy(&path) {
                continue;
            }
            out.extend(conflict_of(store, me, config, &path, &rec));
        }
    }
    Ok(out)
}

/// The shared folder holding the absolute path `abs`, and the folder
/// path of it (`None`: in no shared folder).
pub fn locate(store: &Store, abs: &Path) -> Result<Option<(FolderConfig, String)>, FolderError> {
    for f in crate::folder::list(store)? {
        if let Ok(rel) = abs.strip_prefix(&f.path) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            if !rel.is_empty() {
                return Ok(Some((f, rel)));
            }
        }
    }
    Ok(None)
}

/// Every conflict of folder `id`, or of every folder.
pub fn list_of(store: &Store, me: NodeId, id: Option<&str>) -> Result<Vec<Conflict>, FolderError> {
    let folders = match id {
        Some(id) => vec![crate::folder::get(store, id)?],
        None => crate::folder::list(store)?,
    };
    list(store, me, &folders)
}

/// [`settle`] the conflict of the file (or conflict copy) at the
/// absolute path `abs`, in whichever shared folder holds it. `chunks`: a
/// running node's chunk index (`None` for a stopped one).
pub fn settle_at(
    store: &Mutex<Store>,
    chunks: Option<&Mutex<ChunkIndex>>,
    me: NodeId,
    abs: &Path,
    keep: Keep,
) -> Result<(String, Settled), ConflictError> {
    let (config, rel) = locate(&crate::core::lock(store), abs)?
        .ok_or_else(|| ConflictError::NotShared(abs.to_path_buf()))?;
    let own = Mutex::default();
    let settled = settle(
        StoreAccess::Shared(store),
        chunks.unwrap_or(&own),
        me,
        &config,
        &rel,
        keep,
    )?;
    Ok((config.id, settled))
}

/// Settle the conflict of `rel` in folder `config` — `rel` being the file
/// or one of its conflict copies — keeping `keep`: the loser goes to the
/// folder's trash, and the paths changed are indexed at once (so the
/// decision syncs), as made by `me`. `chunks` learns where moved bytes
/// are (a running node's index; any for a stopped one).
pub fn settle(
    mut store: StoreAccess<'_>,
    chunks: &Mutex<ChunkIndex>,
    me: NodeId,
    config: &FolderConfig,
    rel: &str,
    keep: Keep,
) -> Result<Settled, ConflictError> {
    let abs = config.path.join(rel);
    let conflicts: Vec<Conflict> = store.with(|st| {
        list(st, me, std::slice::from_ref(config)).map(|all| {
            all.into_iter()
                .filter(|c| c.copy == rel || (c.path == rel && !is_conflict_copy(rel)))
                .collect()
        })
    })?;
    if conflicts.is_empty() {
        return Err(ConflictError::NoConflict(abs));
    }
    let side = |c: &Conflict, want_mine: bool| match c.mine {
        Some(s) if want_mine => Ok(s),
        Some(Side::Original) => Ok(Side::Copy),
        Some(Side::Copy) => Ok(Side::Original),
        None => Err(ConflictError::NotMine(abs.clone())),
    };
    let kept = match keep {
        Keep::Both => None,
        Keep::Original => Some(Side::Original),
        Keep::Copy => Some(Side::Copy),
        Keep::Mine | Keep::Theirs => {
            let want = keep == Keep::Mine;
            let first = side(&conflicts[0], want)?;
            for c in &conflicts[1..] {
                if side(c, want)? != first {
                    return Err(ConflictError::SeveralCopies {
                        path: abs,
                        copies: conflicts.len(),
                    });
                }
            }
            Some(first)
        }
    };
    if kept == Some(Side::Copy) && conflicts.len() > 1 {
        return Err(ConflictError::SeveralCopies {
            path: abs,
            copies: conflicts.len(),
        });
    }
    let record_of = |st: &mut StoreAccess<'_>, path: &str| {
        st.with(|s| index::record(s, &config.id, path).filter(|r| !r.deleted))
    };
    let mut settled = Settled {
        conflicts: conflicts.clone(),
        kept,
        trashed: Vec::new(),
        renamed: Vec::new(),
    };
    let mut changed: Vec<String> = Vec::new();
    for c in &conflicts {
        let copy_rec = record_of(&mut store, &c.copy);
        match kept {
            Some(Side::Original) => {
                let to = kept_aside(
                    &mut store,
                    chunks,
                    config,
                    &c.copy,
                    &c.copy_at,
                    copy_rec.as_ref(),
                )?;
                settled.trashed.push(to);
                changed.push(c.copy.clone());
            }
            Some(Side::Copy) => {
                let at = config.path.join(&c.path);
                if std::fs::symlink_metadata(&at).is_ok() {
                    let rec = record_of(&mut store, &c.path);
                    let to = kept_aside(&mut store, chunks, config, &c.path, &at, rec.as_ref())?;
                    settled.trashed.push(to);
                }
                rename_new(&c.copy_at, &at).map_err(|e| {
                    failed(
                        format!("move {} to {}", c.copy_at.display(), at.display()),
                        e,
                    )
                })?;
                changed.extend([c.path.clone(), c.copy.clone()]);
            }
            None => {
                let name = kept_name(&config.path, &c.path, &c.conflicting)?;
                let at = config.path.join(&name);
                rename_new(&c.copy_at, &at).map_err(|e| {
                    failed(
                        format!("move {} to {}", c.copy_at.display(), at.display()),
                        e,
                    )
                })?;
                changed.extend([c.copy.clone(), name.clone()]);
                settled.renamed.push(name);
            }
        }
    }
    // The version not kept went into the history already.
    let mut indexer = Indexer::new(config.clone(), me).without_local_versions();
    indexer.apply(
        store,
        &Batch {
            paths: changed,
            rescan_all: false,
        },
    )?;
    tracing::info!(folder = %config.id, path = rel, ?kept, conflicts = conflicts.len(), "conflict settled");
    Ok(settled)
}

/// Set `path` (at `abs`), version `record`, aside as the loser of a
/// conflict. Returns where it went.
fn kept_aside(
    store: &mut StoreAccess<'_>,
    chunks: &Mutex<ChunkIndex>,
    config: &FolderConfig,
    path: &str,
    abs: &Path,
    record: Option<&FileRecord>,
) -> Result<PathBuf, ConflictError> {
    store
        .with(|st| {
            set_aside(
                st,
                chunks,
                &config.path,
                &config.id,
                path,
                abs,
                record,
                crate::index::history::Why::Conflict,
            )
        })
        .map_err(|e| failed(format!("set {} aside", abs.display()), e))
}

/// A free ordinary name for a conflict copy of `path` kept beside it:
/// `NAME (from <device> <when>).EXT`, then ` 2`, ` 3`… inside the
/// brackets if taken.
fn kept_name(root: &Path, path: &str, v: &Version) -> Result<String, ConflictError> {
    let (dir, file) = match path.rsplit_once('/') {
        Some((d, f)) => (Some(d), f),
        None => (None, path),
    };
    let (stem, ext) = match file.rfind('.') {
        Some(i) if i > 0 => (&file[..i], &file[i..]),
        _ => (file, ""),
    };
    for n in 1..100 {
        let more = if n == 1 {
            String::new()
        } else {
            format!(" {n}")
        };
        let name = crate::core::path::fit_name(
            stem,
            &format!(" (from {} {}{more}){ext}", v.device, v.modified),
        );
        let rel = match dir {
            Some(d) => format!("{d}/{name}"),
            None => name,
        };
        if std::fs::symlink_metadata(root.join(&rel)).is_err() {
            return Ok(rel);
        }
    }
    Err(ConflictError::Io {
        what: format!("name a kept copy of {path}"),
        detail: "99 names taken".into(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::core::ManualClock;
    use crate::store::StoreConfig;
    use crate::wal::MemStorage;

    const ME: NodeId = NodeId([1; 32]);
    const OTHER: NodeId = NodeId([2; 32]);
    const COPY: &str = "a.sync-conflict-20261203-101010-ABCDEFG.txt";

    fn folder_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Store, FolderConfig) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        for (p, text) in files {
            std::fs::write(root.join(p), text).unwrap();
        }
        let (mut store, _) = Store::open(
            StoreConfig::new("/c"),
            Arc::new(MemStorage::new()),
            Arc::new(ManualClock::new()),
        )
        .unwrap();
        let config = crate::folder::add(&mut store, "f", &root).unwrap();
        // Indexed as another device's files: neither version is ME's.
        Indexer::new(config.clone(), OTHER)
            .scan(&mut store, &Default::default())
            .unwrap();
        (dir, store, config)
    }

    fn settle_in(
        store: &mut Store,
        config: &FolderConfig,
        rel: &str,
        keep: Keep,
    ) -> Result<Settled, ConflictError> {
        let chunks = Mutex::new(ChunkIndex::default());
        settle(StoreAccess::Own(store), &chunks, ME, config, rel, keep)
    }

    #[test]
    fn a_conflict_is_listed_and_settled_by_keeping_the_copy() {
        let (_dir, mut store, config) =
            folder_with(&[("a.txt", "original"), (COPY, "copy"), ("b.txt", "x")]);
        let found = list(&store, ME, std::slice::from_ref(&config)).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        let c = &found[0];
        assert_eq!((c.path.as_str(), c.copy.as_str()), ("a.txt", COPY));
        assert_eq!(c.conflicting.device, "ABCDEFG");
        assert_eq!(c.conflicting.modified, "20261203-101010");
        assert_eq!(c.original.as_ref().unwrap().device, OTHER.to_string());
        assert_eq!(c.mine, None);

        for keep in [Keep::Mine, Keep::Theirs] {
            let err = settle_in(&mut store, &config, "a.txt", keep).unwrap_err();
            assert!(matches!(err, ConflictError::NotMine(_)), "{err}");
        }
        let err = settle_in(&mut store, &config, "b.txt", Keep::Both).unwrap_err();
        assert!(matches!(err, ConflictError::NoConflict(_)), "{err}");

        let done = settle_in(&mut store, &config, "a.txt", Keep::Copy).unwrap();
        assert_eq!(done.kept, Some(Side::Copy));
        assert_eq!(
            std::fs::read_to_string(config.path.join("a.txt")).unwrap(),
            "copy"
        );
        assert_eq!(
            std::fs::read_to_string(&done.trashed[0]).unwrap(),
            "original"
        );
        assert!(!config.path.join(COPY).exists());
        // Recorded at once: the copy deleted, the path holding its bytes.
        assert!(index::record(&store, "f", COPY).unwrap().deleted);
        let a = index::record(&store, "f", "a.txt").unwrap();
        assert_eq!(a.hash, Some(crate::core::ContentHash::of(b"copy")));
        assert_eq!(a.modified_by, ME);
        assert!(
            list(&store, ME, std::slice::from_ref(&config))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn several_copies_are_kept_beside_or_dropped_but_never_all_moved_to_the_path() {
        let second = "a.sync-conflict-20261203-111111-HIJKLMN.txt";
        let (_dir, mut store, config) =
            folder_with(&[("a.txt", "original"), (COPY, "one"), (second, "two")]);
        let err = settle_in(&mut store, &config, "a.txt", Keep::Copy).unwrap_err();
        assert!(
            matches!(err, ConflictError::SeveralCopies { copies: 2, .. }),
            "{err}"
        );

        let done = settle_in(&mut store, &config, "a.txt", Keep::Both).unwrap();
        assert_eq!(
            done.renamed,
            [
                "a (from ABCDEFG 20261203-101010).txt",
                "a (from HIJKLMN 20261203-111111).txt"
            ]
        );
        assert_eq!(
            std::fs::read_to_string(config.path.join(&done.renamed[1])).unwrap(),
            "two"
        );
        assert!(
            list(&store, ME, std::slice::from_ref(&config))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .tally(crate::store::ns::FILES, Some("f"), index::conflict_tally)
                .items,
            0
        );
    }
}
