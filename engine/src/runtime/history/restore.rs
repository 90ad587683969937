//! Getting a version back: hash-checked into a temporary file beside the
//! destination, made durable, renamed in; what was there kept first; the
//! path indexed at once. Part of the history module.

use super::*;

/// Copy `from` to a temporary file beside `to`, checking it against
/// `hash` (when known) as it goes, make it durable, and rename it to `to`
/// (never over an existing file).
fn copy_in(from: &Path, to: &Path, hash: Option<&str>, rel: &str) -> Result<(), HistoryError> {
    let damaged = |problem: String| HistoryError::Damaged {
        path: rel.to_string(),
        at: from.to_path_buf(),
        problem,
    };
    let mut src = std::fs::File::open(from).map_err(|e| damaged(format!("cannot be read: {e}")))?;
    let tmp = temp_path(to);
    let result = (|| {
        let mut out =
            std::fs::File::create_new(&tmp).map_err(io(format!("create {}", tmp.display())))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = src
                .read(&mut buf)
                .map_err(|e| damaged(format!("cannot be read: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(io(format!("write {}", tmp.display())))?;
        }
        if let Some(want) = hash {
            let got = ContentHash::from(hasher.finalize()).to_string();
            if got != want {
                return Err(damaged(
                    "do not match its hash (changed since it was kept)".into(),
                ));
            }
        }
        out.sync_all()
            .map_err(io(format!("flush {}", tmp.display())))?;
        rename_new(&tmp, to).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => HistoryError::Exists(to.to_path_buf()),
            _ => HistoryError::Io {
                what: format!("move the restored file to {}", to.display()),
                source: e,
            },
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Restore version `pick` of `rel` in folder `config`: to `to` (an
/// absolute path, never replacing a file), or in place — what is there
/// now kept first as a version of its own ("restored over") — and then
/// indexed as a change made by `me`, so it syncs.
pub fn restore(
    mut store: StoreAccess<'_>,
    chunks: &Mutex<ChunkIndex>,
    me: NodeId,
    config: &FolderConfig,
    rel: &str,
    pick: Pick,
    to: Option<&Path>,
) -> Result<Restored, HistoryError> {
    let rows = store.with(|st| versions(st, config, rel))?;
    let version = choose(rows, rel, pick)?;
    if let Some(dest) = to {
        if std::fs::symlink_metadata(dest).is_ok() {
            return Err(HistoryError::Exists(dest.to_path_buf()));
        }
        copy_in(&version.at, dest, version.hash.as_deref(), rel)?;
        tracing::info!(folder = %config.id, path = rel, to = %dest.display(), "restored a version elsewhere");
        return Ok(Restored {
            version,
            to: dest.to_path_buf(),
            replaced: None,
        });
    }
    let at = crate::fs::path::absolute(&config.path, rel).map_err(|e| HistoryError::Damaged {
        path: rel.to_string(),
        at: config.path.join(rel),
        problem: e.to_string(),
    })?;
    if let Some(dir) = at.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    }
    let mut replaced = None;
    let mut indexer = Indexer::new(config.clone(), me);
    let this_path = Batch {
        paths: vec![rel.to_string()],
        rescan_all: false,
    };
    if std::fs::symlink_metadata(&at).is_ok() {
        // What is there is kept as the index has it: looked at first.
        indexer.apply(store.reborrow(), &this_path)?;
        let now: Option<FileRecord> =
            store.with(|st| index::record(st, &config.id, rel).filter(|r| !r.deleted));
        let trash = to_trash(chunks, &config.path, rel, &at, now.as_ref()).map_err(|e| {
            HistoryError::Io {
                what: format!("keep {} before restoring over it", at.display()),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        if let Some(now) = &now {
            store
                .with(|st| {
                    record_kept(
                        st,
                        &config.path,
                        &config.id,
                        rel,
                        &trash,
                        now,
                        Why::Restored,
                    )
                })
                .map_err(|e| HistoryError::Io {
                    what: format!("record {rel}'s kept version"),
                    source: std::io::Error::other(e.to_string()),
                })?;
        }
        replaced = Some(trash);
    }
    copy_in(&version.at, &at, version.hash.as_deref(), rel)?;
    indexer.apply(store, &this_path)?;
    tracing::info!(folder = %config.id, path = rel, version = version.n, "restored a version");
    Ok(Restored {
        version,
        to: at,
        replaced,
    })
}
