//! A file's history for people, and getting a version back. The versions
//! are the ones [`crate::index::history`] recorded when they were kept,
//! plus, for a home that kept versions before there was a history, the
//! files its trash still holds for that path (listed, restorable, with
//! what their file says of them). Restoring is an ordinary local change:
//! the version's bytes are checked against its hash while they are copied
//! into a temporary file beside the destination, which is made durable and
//! renamed in — never written in place, so a crash leaves the old file or
//! the restored one, and a leftover temporary file the next start removes.
//! What was at the destination is kept first, as a version of its own. The
//! path is indexed at once, so the restored version syncs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::exec::versions::set_aside;
use super::exec::{ChunkIndex, rename_new, temp_path};
use crate::core::{ContentHash, NodeId};
use crate::folder::{FolderConfig, FolderError, Indexer, StoreAccess};
use crate::fs::ignore::META_DIR;
use crate::fs::watch::Batch;
use crate::index::history::{self as kept, Stored, Why};
use crate::index::{self, FileRecord};
use crate::runtime::exec::TRASH_DIR;

/// One version of a file, as listed (newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// Its number: 1 is the newest kept version.
    pub n: usize,
    /// When it was kept, UTC `YYYYMMDD-HHMMSS`.
    pub kept: String,
    /// The same, ns since the Unix epoch.
    pub kept_ns: u64,
    /// When it was last modified, UTC `YYYYMMDD-HHMMSS`.
    pub modified: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its blake3 hash (hex), when known.
    pub hash: Option<String>,
    /// The device that made it (text id), when known.
    pub device: Option<String>,
    /// Why it was kept: replaced, deleted, conflict, reverted, restored
    /// over, edited here, deleted here, or "trash" (kept before the history
    /// existed).
    pub why: String,
    /// Where its bytes are: a file, or the folder's version store.
    pub at: PathBuf,
    /// Whether its bytes are on this device yet: a version an edit or a
    /// deletion here replaced is gathered from this device's files and
    /// from the devices that kept it, shortly after.
    #[serde(default = "yes")]
    pub here: bool,
    /// The recorded version (none for a file found in an old trash).
    #[serde(skip)]
    pub source: Option<kept::Kept>,
}

/// Which version to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    /// The newest kept version.
    Newest,
    /// Version `n` as listed (1 is the newest).
    Number(usize),
    /// The version that was the file at this time (ns since the epoch):
    /// modified at or before it and kept after it.
    At(u64),
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    /// The version restored.
    pub version: Version,
    /// Where it was written.
    pub to: PathBuf,
    /// Where what was there before went (the folder's trash).
    pub replaced: Option<PathBuf>,
}

/// A deleted file that can come back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// Its folder path.
    pub path: String,
    /// Kept versions.
    pub versions: usize,
    /// The newest one.
    pub newest: Version,
}

/// Why a history could not be read or a version restored.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The path is in no shared folder.
    #[error("{0} is not in a shared folder (see `softadastra folder list`)")]
    NotShared(PathBuf),
    /// No kept version matches.
    #[error("{path} has no {what} (see `softadastra history {path}`)")]
    NoVersion {
        /// The file.
        path: String,
        /// What was asked for.
        what: String,
    },
    /// The destination is taken (`--to` never replaces a file).
    #[error("{0} already exists: choose another --to, or restore in place")]
    Exists(PathBuf),
    /// The kept bytes are gone or are not the version's.
    #[error("the kept bytes of {path} at {at} {problem}")]
    Damaged {
        /// The file.
        path: String,
        /// Where its bytes were to be.
        at: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The version's bytes are still being gathered (see
    /// [`Version::here`]).
    #[error(
        "that version of {0} is not on this device: an edit here replaced its bytes before they could be kept, and no device that has them was reached yet (it is fetched as soon as one is connected; `softadastra history` says when it is here)"
    )]
    NotHereYet(String),
    /// The disk failed (nothing was put in place).
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The index could not be read or written.
    #[error(transparent)]
    Folder(#[from] FolderError),
}

impl HistoryError {
    /// Whether trying again as is can help (a disk or store failure may
    /// pass; the rest need another request).
    pub fn retry(&self) -> bool {
        matches!(self, HistoryError::Io { .. } | HistoryError::NotHereYet(_))
            || matches!(self, HistoryError::Folder(FolderError::Store(_)))
    }
}

fn yes() -> bool {
    true
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HistoryError {
    let what = what.into();
    move |source| HistoryError::Io { what, source }
}

fn stamp(ns: u64) -> String {
    crate::sync::resolve::utc_stamp((ns / 1_000_000_000) as i64)
}

fn row(root: &Path, k: &kept::Kept) -> Version {
    Version {
        n: 0,
        kept: stamp(k.kept_at.0),
        kept_ns: k.kept_at.0,
        modified: stamp(k.record.mtime_ns.max(0) as u64),
        size: k.record.size,
        hash: k.record.hash.map(|h| h.to_string()),
        device: Some(k.record.modified_by.to_string()),
        why: k.why.as_str().to_string(),
        at: super::exec::versions::location(root, k),
        here: k.stored != Stored::Wanted,
        source: Some(k.clone()),
    }
}

/// Trash files of `rel` that no recorded version names: what a home kept
/// before it had a history, still readable.
fn from_trash(root: &Path, rel: &str, named: &[PathBuf]) -> Vec<Version> {
    let mut out = Vec::new();
    let Ok(batches) = std::fs::read_dir(root.join(META_DIR).join(TRASH_DIR)) else {
        return out;
    };
    for batch in batches.flatten() {
        let Some(secs) = batch
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let first = batch.path().join(rel);
        let name = first
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for n in 1.. {
            let at = match n {
                1 => first.clone(),
                n => first.with_file_name(crate::core::path::fit_name(&name, &format!(".~{n}~"))),
            };
            let Ok(m) = std::fs::symlink_metadata(&at) else {
                break;
            };
            if m.is_file() && !named.contains(&at) {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as u64);
                out.push(Version {
                    n: 0,
                    kept: stamp(secs * 1_000_000_000),
                    kept_ns: secs * 1_000_000_000,
                    modified: stamp(mtime),
                    size: m.len(),
                    hash: None,
                    device: None,
                    why: "trash".into(),
                    at,
                    here: true,
                    source: None,
                });
            }
        }
    }
    out
}

/// Every kept version of `rel` in folder `config`, newest first, numbered.
pub fn versions(
    store: &crate::store::Store,
    config: &FolderConfig,
    rel: &str,
) -> Result<Vec<Version>, FolderError> {
    let mut rows: Vec<Version> = kept::versions(store, &config.id, rel)?
        .iter()
        .map(|k| row(&config.path, k))
        .collect();
    let named: Vec<PathBuf> = rows.iter().map(|r| r.at.clone()).collect();
    rows.extend(from_trash(&config.path, rel, &named));
    rows.sort_by(|a, b| b.kept_ns.cmp(&a.kept_ns).then_with(|| b.at.cmp(&a.at)));
    for (i, r) in rows.iter_mut().enumerate() {
        r.n = i + 1;
    }
    Ok(rows)
}

/// Files of folder `config` that are deleted (or gone from the index) and
/// have a kept version to come back from, in path order.
pub fn deleted(
    store: &crate::store::Store,
    config: &FolderConfig,
) -> Result<Vec<Deleted>, FolderError> {
    let mut out: Vec<Deleted> = Vec::new();
    let mut last: Option<String> = None;
    for (path, _) in kept::all(store, &config.id)? {
        if last.as_deref() == Some(path.as_str()) {
            continue;
        }
        last = Some(path.clone());
        let live = index::record(store, &config.id, &path).is_some_and(|r| !r.deleted);
        if live {
            continue;
        }
        let rows = versions(store, config, &path)?;
        if let Some(newest) = rows.first().cloned() {
            out.push(Deleted {
                path,
                versions: rows.len(),
                newest,
            });
        }
    }
    Ok(out)
}

/// The version of `rel` that `pick` names, among `rows` (newest first).
fn choose(rows: Vec<Version>, rel: &str, pick: Pick) -> Result<Version, HistoryError> {
    let none = |what: String| HistoryError::NoVersion {
        path: rel.to_string(),
        what,
    };
    match pick {
        Pick::Newest => rows
            .into_iter()
            .next()
            .ok_or_else(|| none("kept version".into())),
        Pick::Number(n) => rows
            .into_iter()
            .find(|r| r.n == n)
            .ok_or_else(|| none(format!("version {n}"))),
        Pick::At(t) => rows
            .into_iter()
            .rev()
            .find(|r| r.kept_ns > t)
            .ok_or_else(|| none(format!("version that was the file at {}", stamp(t)))),
    }
}

/// The shared folder holding the absolute path `abs`, and the folder
/// path of it.
fn locate(store: &crate::store::Store, abs: &Path) -> Result<(FolderConfig, String), HistoryError> {
    super::conflicts::locate(store, abs)?.ok_or_else(|| HistoryError::NotShared(abs.to_path_buf()))
}

/// [`versions`] of the file at the absolute path `abs`.
pub fn versions_at(store: &crate::store::Store, abs: &Path) -> Result<Vec<Version>, HistoryError> {
    let (config, rel) = locate(store, abs)?;
    Ok(versions(store, &config, &rel)?)
}

/// [`restore`] the file at the absolute path `abs`, in whichever shared
/// folder holds it. `chunks`: a running node's chunk index (`None` for a
/// stopped one). Returns the folder's id too.
pub fn restore_at(
    store: &Mutex<crate::store::Store>,
    chunks: Option<&Mutex<ChunkIndex>>,
    me: NodeId,
    abs: &Path,
    pick: Pick,
    to: Option<&Path>,
) -> Result<(String, Restored), HistoryError> {
    let (config, rel) = locate(&crate::core::lock(store), abs)?;
    let own = Mutex::default();
    let restored = restore(
        StoreAccess::Shared(store),
        chunks.unwrap_or(&own),
        me,
        &config,
        &rel,
        pick,
        to,
    )?;
    Ok((config.id, restored))
}

/// The moment a person gave, as ns since the epoch: Unix seconds, or UTC
/// `YYYYMMDD-HHMMSS`, `YYYY-MM-DD HH:MM[:SS]` or `YYYY-MM-DDTHH:MM[:SS]`.
pub fn parse_time(text: &str) -> Option<u64> {
    if let Ok(secs) = text.parse::<u64>() {
        return Some(secs.saturating_mul(1_000_000_000));
    }
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let n = |r: std::ops::Range<usize>| digits.get(r).and_then(|d| d.parse::<i64>().ok());
    if !(digits.len() == 12 || digits.len() == 14) {
        return None;
    }
    let (y, mo, d, h, mi) = (n(0..4)?, n(4..6)?, n(6..8)?, n(8..10)?, n(10..12)?);
    let s = if digits.len() == 14 { n(12..14)? } else { 0 };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), the inverse of the
    // stamp's.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    u64::try_from(secs).ok().map(|s| s * 1_000_000_000)
}

mod folder;
mod restore;
mod retention;

pub use folder::{BringBack, FolderRestore, Job, Left, RESTORE_NS, plan, restore_folder, resume};
pub use restore::restore;
pub use retention::apply_retention;

#[cfg(test)]
mod tests;
