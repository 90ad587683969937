//! The trash: where a replaced or deleted file's version is moved aside
//! first, never replacing one kept before (a file then goes on into the
//! version store, see `versions`; a link stays); emptied of old batches.

use super::*;

/// Move the file (or symlink) at `abs` (folder path `path`) into the
/// folder's trash, `.softadastra/trash/<unix seconds>/<path>`, and
/// remember its chunks for reuse. Returns where it went.
///
/// Nothing already in the trash is ever replaced: the move refuses to land
/// on an existing name ([`rename_new`]), and a version of the same path
/// kept in the same second takes the next free name `<name>.~2~`,
/// `<name>.~3~`, … (cut to fit, see [`crate::fs::path::fit_name`]).
pub(crate) fn to_trash(
    chunks: &std::sync::Mutex<ChunkIndex>,
    root: &Path,
    path: &str,
    abs: &Path,
    record: Option<&FileRecord>,
) -> Result<PathBuf, WorkError> {
    let first = absolute(&trash_batch(root), path)?;
    if let Some(p) = first.parent() {
        std::fs::create_dir_all(p)
            .map_err(|e| WorkError::io(format_args!("create {}", p.display()), &e))?;
    }
    let name = first
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for n in 1..=MAX_KEPT_PER_SECOND {
        let trash = match n {
            1 => first.clone(),
            n => first.with_file_name(crate::fs::path::fit_name(&name, &format!(".~{n}~"))),
        };
        if let Some(r) = record {
            lock(chunks).trashing(&trash, r);
        }
        let moved = rename_new(abs, &trash);
        if let Some(r) = record {
            lock(chunks).trashed(abs, &trash, r, moved.is_ok());
        }
        match moved {
            Ok(()) => return Ok(trash),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(WorkError::io(
                    format_args!("move {} to the trash", abs.display()),
                    &e,
                ));
            }
        }
    }
    Err(WorkError::new(
        Cause::Io,
        format!("move to trash: {MAX_KEPT_PER_SECOND} versions of {path} already kept this second"),
    ))
}

/// This second's batch of the trash of the folder at `root`,
/// `.softadastra/trash/<unix seconds>/` (not made here).
pub(super) fn trash_batch(root: &Path) -> PathBuf {
    let stamp = crate::core::SystemClock.wall().as_nanos() / 1_000_000_000;
    root.join(META_DIR).join(TRASH_DIR).join(stamp.to_string())
}

/// Most versions of one path the trash takes in one second (the next
/// replacement waits for the next second: it is retried, nothing is lost).
pub(super) const MAX_KEPT_PER_SECOND: u32 = 10_000;

/// The trash of each folder, under its `.softadastra/` directory.
pub const TRASH_DIR: &str = "trash";

/// Delete trash batches (`.softadastra/trash/<unix seconds>/`) of the folder
/// at `root` older than `keep` at `now_unix`. Returns how many went. A
/// directory whose name is not a time is left alone.
pub fn prune_trash(root: &Path, keep: Duration, now_unix: u64) -> std::io::Result<usize> {
    let dir = root.join(META_DIR).join(TRASH_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut pruned = 0;
    for entry in entries.flatten() {
        let Some(stamp) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if stamp.saturating_add(keep.as_secs()) < now_unix {
            std::fs::remove_dir_all(entry.path())?;
            pruned += 1;
        }
    }
    Ok(pruned)
}
