//! Getting a version back: hash-checked into a temporary file beside the
//! destination, made durable, renamed in; what was there kept first; the
//! path indexed at once. Part of the history module.

use super::*;

/// A writer that hashes what goes through it.
struct Hashing<W> {
    out: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Write `version`'s bytes (of `rel` in the folder at `root`; `earlier`:
/// the path's kept versions) to a temporary file beside `to`, checking
/// them against its hash (when known) as they go, make it durable, and
/// rename it to `to` (never over an existing file).
fn copy_in(
    root: &Path,
    version: &Version,
    earlier: &[kept::Kept],
    to: &Path,
    rel: &str,
) -> Result<(), HistoryError> {
    let tmp = write_temp(root, version, earlier, to, rel, true)?;
    put_in(&tmp, to)
}

/// Move the temporary file `tmp` to `to`, never over an existing file
/// (then `tmp` is removed).
pub(super) fn put_in(tmp: &Path, to: &Path) -> Result<(), HistoryError> {
    let result = rename_new(tmp, to).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => HistoryError::Exists(to.to_path_buf()),
        _ => HistoryError::Io {
            what: format!("move the restored file to {}", to.display()),
            source: e,
        },
    });
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// Write `version`'s bytes to a temporary file beside `to`, checked as
/// they go (see [`copy_in`]), fsynced when `durable`. Returns its path;
/// nothing is left behind on failure.
pub(super) fn write_temp(
    root: &Path,
    version: &Version,
    earlier: &[kept::Kept],
    to: &Path,
    rel: &str,
    durable: bool,
) -> Result<PathBuf, HistoryError> {
    let damaged = |problem: String| HistoryError::Damaged {
        path: rel.to_string(),
        at: version.at.clone(),
        problem,
    };
    if version
        .source
        .as_ref()
        .is_some_and(|k| k.stored == Stored::Wanted)
    {
        return Err(HistoryError::NotHereYet(rel.to_string()));
    }
    let tmp = temp_path(to);
    let result = (|| {
        let out =
            std::fs::File::create_new(&tmp).map_err(io(format!("create {}", tmp.display())))?;
        let mut w = Hashing {
            out: std::io::BufWriter::with_capacity(1 << 20, out),
            hasher: blake3::Hasher::new(),
        };
        match &version.source {
            Some(k) => {
                crate::runtime::exec::versions::read_version(root, k, earlier, &mut w)
                    .map_err(|e| damaged(e.0))?;
            }
            None => {
                let mut src = std::fs::File::open(&version.at)
                    .map_err(|e| damaged(format!("cannot be read: {e}")))?;
                std::io::copy(&mut src, &mut w)
                    .map_err(|e| damaged(format!("cannot be copied: {e}")))?;
            }
        }
        if let Some(want) = &version.hash {
            let got = ContentHash::from(w.hasher.finalize()).to_string();
            if &got != want {
                return Err(damaged(
                    "do not match its hash (changed since it was kept)".into(),
                ));
            }
        }
        let out = w
            .out
            .into_inner()
            .map_err(|e| io(format!("write {}", tmp.display()))(e.into_error()))?;
        if durable {
            out.sync_all()
                .map_err(io(format!("flush {}", tmp.display())))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Set what is at `abs` (path `rel` of folder `config`) aside as a kept
/// version, "restored over", as the index has it. Returns where it went.
pub(super) fn keep_over(
    st: &mut crate::store::Store,
    chunks: &Mutex<ChunkIndex>,
    config: &FolderConfig,
    rel: &str,
    abs: &Path,
) -> Result<PathBuf, HistoryError> {
    let now = index::record(st, &config.id, rel).filter(|r| !r.deleted);
    set_aside(
        st,
        chunks,
        &config.path,
        &config.id,
        rel,
        abs,
        now.as_ref(),
        Why::Restored,
    )
    .map_err(|e| HistoryError::Io {
        what: format!("keep {} before restoring over it", abs.display()),
        source: std::io::Error::other(e.to_string()),
    })
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
    let (rows, earlier) = store.with(|st| {
        Ok::<_, FolderError>((
            versions(st, config, rel)?,
            kept::versions(st, &config.id, rel)?,
        ))
    })?;
    let version = choose(rows, rel, pick)?;
    if let Some(dest) = to {
        if std::fs::symlink_metadata(dest).is_ok() {
            return Err(HistoryError::Exists(dest.to_path_buf()));
        }
        copy_in(&config.path, &version, &earlier, dest, rel)?;
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
    let there = std::fs::symlink_metadata(&at).is_ok();
    if there {
        // What is there is kept as the index has it: looked at first.
        indexer.apply(store.reborrow(), &this_path)?;
    }
    // The version ready beside it before anything at the path moves: a
    // version that cannot be read changes nothing.
    let tmp = write_temp(&config.path, &version, &earlier, &at, rel, true)?;
    if there {
        match store.with(|st| keep_over(st, chunks, config, rel, &at)) {
            Ok(kept) => replaced = Some(kept),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
    }
    put_in(&tmp, &at)?;
    // What was there is kept already ("restored over").
    let mut indexer = indexer.without_local_versions();
    indexer.apply(store, &this_path)?;
    tracing::info!(folder = %config.id, path = rel, version = version.n, "restored a version");
    Ok(Restored {
        version,
        to: at,
        replaced,
    })
}
