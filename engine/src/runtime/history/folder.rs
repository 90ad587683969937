//! A whole folder put back as it was at a moment (`restore --folder ID
//! --at TIME`). Part of the history module.
//!
//! The plan is made from the index and the history alone: for each file,
//! the version that was in place at that moment is the first one kept
//! after it (it was replaced or deleted later), provided it was written
//! before it; a file nothing was kept of since is as it was. A file
//! written after the moment whose inode was also born after it, with
//! nothing to say it existed then, was created since: it is set aside into
//! the history. A file changed since of which no earlier version is kept
//! here (a local edit: its earlier bytes are on the peers that received
//! it) is left as it is, and the plan says so. `--dry-run` prints the plan.
//!
//! Carrying it out is an ordinary local change, in groups of files: the
//! group is looked at (indexed) first; each version is written, checked
//! against its hash, into a temporary file beside its path; one flush
//! makes them durable; then what is at each path is set aside as a kept
//! version of its own and the temporary file renamed in; the group is
//! indexed, so it syncs. No file is ever half-written at its real path.
//! The moment is recorded (`history.restore`) before the first group and
//! forgotten after the last: a restore cut short by a crash is finished
//! at the next start, the plan made again from where things are (a file
//! already back is unchanged). It never touches a path outside the plan.

use std::collections::{BTreeMap, BTreeSet};

use super::restore::{keep_over, put_in, write_temp};
use super::*;
use crate::index::EntryKind;
use crate::store::{Op, Store};

/// Namespace of folder restores under way: folder id → the moment.
pub const RESTORE_NS: &str = "history.restore";

/// The format byte of a restore under way.
const JOB_FORMAT: u8 = 1;

/// Files carried out per step: one index batch, one flush.
const GROUP: usize = 256;

/// A restore under way, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The moment, ns since the Unix epoch.
    pub at: u64,
}

impl Job {
    /// The stored form: a format byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![JOB_FORMAT];
        v.extend(crate::index::encode(self));
        v
    }

    /// Read the stored form.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Job, FolderError> {
        match bytes.split_first() {
            Some((&JOB_FORMAT, rest)) => crate::index::decode(key, rest),
            _ => Err(FolderError::Corruption {
                key: key.to_string(),
                reason: "a folder restore in a format this release does not read".into(),
            }),
        }
    }
}

/// A file to bring back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BringBack {
    /// Its folder path.
    pub path: String,
    /// The version it had.
    pub version: Version,
}

/// A file left as it is, or one that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Left {
    /// Its folder path.
    pub path: String,
    /// Why.
    pub why: String,
}

/// What putting a folder back does (or did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderRestore {
    /// The folder.
    pub folder: String,
    /// The moment, UTC `YYYYMMDD-HHMMSS`.
    pub at: String,
    /// The same, ns since the epoch.
    pub at_ns: u64,
    /// Files given back the version they had.
    pub bring_back: Vec<BringBack>,
    /// Files created since, set aside into the history.
    pub set_aside: Vec<String>,
    /// Files left as they are.
    pub left: Vec<Left>,
    /// Files already as they were.
    pub unchanged: usize,
    /// Whether it was carried out (false: a dry run).
    pub carried_out: bool,
    /// Files that could not be put back (the rest were).
    pub failed: Vec<Left>,
}

/// Whether the file at `abs` was born (its inode made) after `at` ns.
/// Unknown (a file system without birth times) is no.
fn born_after(abs: &Path, at: u64) -> bool {
    std::fs::symlink_metadata(abs)
        .and_then(|m| m.created())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .is_some_and(|d| d.as_nanos() > u128::from(at))
}

/// What putting folder `config` back as it was at `at` (ns since the
/// epoch) would do, from the index and the history.
pub fn plan(store: &Store, config: &FolderConfig, at: u64) -> Result<FolderRestore, HistoryError> {
    let mut kept_of: BTreeMap<String, Vec<kept::Kept>> = BTreeMap::new();
    for (path, k) in kept::all(store, &config.id)? {
        kept_of.entry(path).or_default().push(k);
    }
    let mut live: BTreeMap<String, FileRecord> = BTreeMap::new();
    for r in index::records(store, &config.id) {
        let (path, rec) = r?;
        if !rec.deleted && rec.kind == EntryKind::File {
            live.insert(path.to_string(), rec);
        }
    }
    let mut out = FolderRestore {
        folder: config.id.clone(),
        at: stamp(at),
        at_ns: at,
        bring_back: Vec::new(),
        set_aside: Vec::new(),
        left: Vec::new(),
        unchanged: 0,
        carried_out: false,
        failed: Vec::new(),
    };
    let written_by = |mtime_ns: i64| u64::try_from(mtime_ns).unwrap_or(0) <= at;
    let paths: BTreeSet<&String> = kept_of.keys().chain(live.keys()).collect();
    for path in paths {
        let versions = kept_of.get(path).map(Vec::as_slice).unwrap_or_default();
        let now = live.get(path);
        let first_after = versions
            .iter()
            .filter(|k| k.kept_at.0 > at)
            .min_by_key(|k| k.kept_at.0);
        match (first_after, now) {
            (Some(k), now) if written_by(k.record.mtime_ns) => {
                if now.is_some_and(|n| n.hash.is_some() && n.hash == k.record.hash) {
                    out.unchanged += 1;
                } else {
                    let mut version = row(&config.path, k);
                    version.n = versions.iter().filter(|v| v.kept_at >= k.kept_at).count();
                    out.bring_back.push(BringBack {
                        path: path.clone(),
                        version,
                    });
                }
            }
            (_, None) => out.unchanged += 1,
            (_, Some(n)) if written_by(n.mtime_ns) => out.unchanged += 1,
            (_, Some(_)) => {
                // Written since. Was it there at the moment?
                let before = versions
                    .iter()
                    .filter(|k| k.kept_at.0 <= at)
                    .max_by_key(|k| k.kept_at.0);
                let absent_then = before.is_none_or(|k| k.why == Why::Deleted);
                let abs = config.path.join(path);
                if absent_then && born_after(&abs, at) {
                    out.set_aside.push(path.clone());
                } else {
                    out.left.push(Left {
                        path: path.clone(),
                        why: "changed since; no earlier version of it is kept on this device"
                            .into(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Record (or with `None`, forget) folder `id`'s restore under way.
fn mark(store: &Mutex<Store>, id: &str, job: Option<Job>) -> Result<(), HistoryError> {
    let mut st = crate::core::lock(store);
    let op = match job {
        Some(job) => Op::Put {
            ns: RESTORE_NS.into(),
            key: id.to_string(),
            value: job.encode(),
            origin: st.config().node,
            timestamp: st.wall_time(),
        },
        None => Op::Forget {
            ns: RESTORE_NS.into(),
            key: id.to_string(),
        },
    };
    st.apply(op).map_err(FolderError::from)?;
    Ok(())
}

/// Put folder `id` back as it was at `at` (ns since the epoch), as the
/// module says; with `dry_run`, only say what that would do. `chunks`: a
/// running node's chunk index (a fresh one for a stopped node); `me`: this
/// node, which the changes are made by.
pub fn restore_folder(
    store: &Mutex<Store>,
    chunks: &Mutex<ChunkIndex>,
    me: NodeId,
    id: &str,
    at: u64,
    dry_run: bool,
) -> Result<FolderRestore, HistoryError> {
    let config = crate::folder::get(&crate::core::lock(store), id)?;
    if dry_run {
        return plan(&crate::core::lock(store), &config, at);
    }
    mark(store, id, Some(Job { at }))?;
    let mut out = plan(&crate::core::lock(store), &config, at)?;
    let mut work: Vec<(&str, Option<&Version>)> = out
        .bring_back
        .iter()
        .map(|b| (b.path.as_str(), Some(&b.version)))
        .chain(out.set_aside.iter().map(|p| (p.as_str(), None)))
        .collect();
    work.sort_by_key(|w| w.0);
    let mut failed = Vec::new();
    let mut indexer = Indexer::new(config.clone(), me);
    // What was at each path is kept already ("restored over").
    let mut after = Indexer::new(config.clone(), me).without_local_versions();
    for group in work.chunks(GROUP) {
        let batch = Batch {
            paths: group.iter().map(|w| w.0.to_string()).collect(),
            rescan_all: false,
        };
        // Looked at first: what is at each path is kept as it is now.
        indexer.apply(StoreAccess::Shared(store), &batch)?;
        let mut ready = Vec::new();
        let mut bytes = 0;
        for &(path, version) in group {
            let Ok(abs) = crate::fs::path::absolute(&config.path, path) else {
                failed.push(Left {
                    path: path.to_string(),
                    why: "not a path inside the folder".into(),
                });
                continue;
            };
            let Some(version) = version else {
                ready.push((path, abs, None));
                continue;
            };
            let written = (|| {
                if let Some(dir) = abs.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(io(format!("create {}", dir.display())))?;
                }
                let earlier = kept::versions(&crate::core::lock(store), &config.id, path)?;
                write_temp(&config.path, version, &earlier, &abs, path, false)
            })();
            match written {
                Ok(tmp) => {
                    bytes += version.size;
                    ready.push((path, abs, Some(tmp)));
                }
                Err(e) => failed.push(Left {
                    path: path.to_string(),
                    why: e.to_string(),
                }),
            }
        }
        let temps: Vec<&PathBuf> = ready.iter().filter_map(|r| r.2.as_ref()).collect();
        crate::runtime::exec::make_durable(&[config.path.as_path()], &temps, bytes)
            .map_err(io("flush the restored files"))?;
        // The group's swaps under one hold of the store: their records
        // are made durable together, by one fsync.
        let mut st = crate::core::lock(store);
        st.hold(|st| {
            for (path, abs, tmp) in ready {
                let done = (|| {
                    if std::fs::symlink_metadata(&abs).is_ok() {
                        keep_over(st, chunks, &config, path, &abs)?;
                    }
                    match &tmp {
                        Some(tmp) => put_in(tmp, &abs),
                        None => Ok(()),
                    }
                })();
                if let Err(e) = done {
                    if let Some(tmp) = &tmp {
                        let _ = std::fs::remove_file(tmp);
                    }
                    failed.push(Left {
                        path: path.to_string(),
                        why: e.to_string(),
                    });
                }
            }
        })
        .map_err(FolderError::from)?;
        drop(st);
        after.apply(StoreAccess::Shared(store), &batch)?;
    }
    mark(store, id, None)?;
    tracing::info!(
        folder = id,
        at = %out.at,
        back = out.bring_back.len(),
        aside = out.set_aside.len(),
        left = out.left.len(),
        failed = failed.len(),
        "folder restored as it was"
    );
    out.carried_out = true;
    out.failed = failed;
    Ok(out)
}

/// Finish folder `id`'s restore if a stop cut it short (at the folder's
/// start, once its leftover temporary files are dealt with: the restore
/// writes its own). `None` when there is none.
pub fn resume(
    store: &Mutex<Store>,
    chunks: &Mutex<ChunkIndex>,
    me: NodeId,
    id: &str,
) -> Option<Result<FolderRestore, HistoryError>> {
    let job = {
        let st = crate::core::lock(store);
        let entry = st.get(RESTORE_NS, id)?;
        Job::decode(id, entry.value.as_deref().unwrap_or_default())
    };
    Some(match job {
        Ok(job) => {
            tracing::info!(folder = %id, at = %stamp(job.at), "finishing a folder restore a stop cut short");
            restore_folder(store, chunks, me, id, job.at, false)
        }
        Err(e) => {
            // Unreadable: forgotten, said once (nothing was changed by it).
            let _ = mark(store, id, None);
            Err(e.into())
        }
    })
}
