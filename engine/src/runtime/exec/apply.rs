//! Changing the disk under the store lock: checks that the work is still
//! wanted and the disk is as indexed, conflict copies, the move into place,
//! removals.

use super::versions::{keep_version, set_aside};
use super::*;
use crate::index::history::Why;

/// Check the work is still wanted and the disk is what the index says,
/// keep a conflict copy if asked, move the new file into place, and record
/// it. Runs under the store lock, so the watcher cannot mistake the new
/// file for a local edit.
pub(super) fn place_one(
    s: &Arc<Shared>,
    store: &mut Store,
    c: &Commit,
    root: &Path,
    abs: &Path,
    tmp: Option<&Path>,
) -> Result<(Completed, Option<Placed>), WorkError> {
    let (folder_id, path, need, expect) = (&c.folder, &c.path, &c.need, c.expect.as_ref());
    outside_home(s.home.as_deref(), root, abs)?;
    if !SyncEngine::is_current(store, folder_id, path, need, expect) {
        return Err(overtaken());
    }
    // A new file needs nothing at its path: the rename checks that itself,
    // atomically, where the file system can (`rename_new`).
    let new_file = tmp.is_some() && expect.is_none_or(|e| e.deleted);
    if !new_file && !disk_matches(abs, expect) {
        tracing::debug!(
            folder = %folder_id, %path,
            disk = ?std::fs::symlink_metadata(abs).ok().map(|m| FileStat::from_metadata(&m)),
            indexed = ?expect.map(|e| (e.deleted, e.kind, e.size, e.inode)),
            "the disk does not match the index"
        );
        return Err(changed_on_disk());
    }
    let mut copy = None;
    let target = match (&need.conflict_copy, expect.filter(|e| !e.deleted)) {
        (Some(name), Some(e)) => copy_target(name, |p| {
            let Ok(candidate) = crate::fs::path::absolute(root, p) else {
                return Probe::Different;
            };
            match std::fs::symlink_metadata(&candidate) {
                Err(_) => Probe::Free,
                Ok(m) if m.is_file() && m.len() == e.size => match std::fs::read(&candidate) {
                    Ok(b) if Some(ContentHash::of(&b)) == e.hash => Probe::Same,
                    _ => Probe::Different,
                },
                Ok(_) => Probe::Different,
            }
        })
        .map(|p| (p, e)),
        _ => None,
    };
    let mut copied_to = None;
    if let Some((copy_path, e)) = target {
        let copy_path = &copy_path;
        let copy_abs = absolute(root, copy_path)?;
        rename_new(abs, &copy_abs).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => WorkError::new(
                Cause::ChangedOnDisk,
                format!("{} already exists", copy_abs.display()),
            ),
            _ => WorkError::io(
                format_args!("keep conflict copy {}", copy_abs.display()),
                &e,
            ),
        })?;
        copied_to = Some(copy_abs.clone());
        let mut rec = e.clone();
        let mut v: VersionVector = folder::record(store, folder_id, copy_path)
            .map(|r| r.version)
            .unwrap_or_default();
        v.bump(s.node);
        rec.version = v;
        // The inode moved with the file: the one `disk_matches` found,
        // not whatever is at the copy's path by now.
        rec.modified_by = s.node;
        info!(folder = %folder_id, %path, copy = %copy_path, "conflict: kept the other version beside the file");
        copy = Some((copy_path.clone(), rec));
    }
    let mut trashed = None;
    if copy.is_none()
        && tmp.is_some()
        && let Some(old) = expect.filter(|e| !e.deleted)
    {
        match old.kind {
            // A replaced file's (or link's) previous version goes to the
            // trash, so a bad remote edit can be undone.
            EntryKind::File | EntryKind::Symlink => {
                let chunks = (old.kind == EntryKind::File).then_some(old);
                trashed = Some(to_trash(&s.chunks, root, path, abs, chunks)?);
            }
            // A directory gives way to a file only when empty.
            EntryKind::Dir => std::fs::remove_dir(abs).map_err(|e| {
                WorkError::io(
                    format_args!("a directory is in the way: {}", abs.display()),
                    &e,
                )
            })?,
            EntryKind::Value => {}
        }
    }
    // What is placed, read before the move: once it is in, the path is
    // anyone's, and a write that lands between the move and a look at
    // it must not be taken for the agent's own (see `placed_stamp`). A
    // small file's writer read it from its handle; a change to the
    // temporary file since then only makes the stamp not match, and the
    // watcher indexes the file as a local edit.
    let ours = tmp.and_then(|t| {
        c.written
            .clone()
            .or_else(|| std::fs::symlink_metadata(t).ok())
    });
    match tmp {
        Some(t) => {
            // Whatever was at the path has been moved aside: the new file
            // goes where nothing is, never over a file created meanwhile.
            if let Err(e) = rename_new(t, abs) {
                // Put back what was moved aside — unless the path is taken
                // again, in which case it stays where it went (the trash,
                // the conflict copy) and the scan decides.
                if let Some(back) = trashed.as_ref().or(copied_to.as_ref()) {
                    let _ = rename_new(back, abs);
                }
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    return Err(changed_on_disk());
                }
                return Err(WorkError::io(
                    format_args!("move {} into place", abs.display()),
                    &e,
                ));
            }
        }
        None => {
            if need.record.kind == EntryKind::Dir {
                std::fs::create_dir_all(abs)
                    .map_err(|e| WorkError::io(format_args!("create {}", abs.display()), &e))?;
            }
        }
    }
    // The replaced version joins the history once the new one is in (a
    // failed rename put it back).
    if let (Some(at), Some(old)) = (&trashed, expect) {
        keep_version(
            store,
            &s.chunks,
            root,
            folder_id,
            path,
            at,
            old,
            Why::Replaced,
        )?;
    }
    let mut record = need.record.clone();
    let mut placed = None;
    match (&ours, std::fs::symlink_metadata(abs)) {
        (Some(before), after) => {
            record.inode = FileStat::from_metadata(before).inode;
            placed = after.ok().and_then(|a| placed_stamp(before, &a));
        }
        (None, Ok(m)) => record.inode = FileStat::from_metadata(&m).inode,
        (None, Err(_)) => {}
    }
    // (Its chunks join the chunk index once the store is let go:
    // `record_batch`.)
    let done = Completed {
        folder: folder_id.clone(),
        path: path.clone(),
        done: need.clone(),
        record,
        conflict_copy: copy,
    };
    Ok((done, placed))
}

/// The stamp by which the watcher's event for a file just moved into
/// place is recognised as the agent's own ([`Placed`]): only if the path
/// still holds the very file that was moved (`before`, read from the
/// temporary file) — same inode, size and mtime. A write that landed
/// between the move and the look at the path changes one of them; its
/// event must then be indexed, not dropped as an echo (the write would be
/// lost to the index, and the file's work would fail "changed on disk"
/// for ever). The change time is not compared: the move itself sets it.
pub(super) fn placed_stamp(
    before: &std::fs::Metadata,
    after: &std::fs::Metadata,
) -> Option<Placed> {
    let (was, now) = (Placed::of(before)?, Placed::of(after)?);
    (was.inode == now.inode && was.size == now.size && was.mtime == now.mtime).then_some(now)
}

/// Why the removal of a directory waits.
pub(super) const DIR_NOT_EMPTY: &str =
    "the directory still holds files this node has not been asked to delete (new or ignored ones)";

/// Why work on a path whose disk no longer matches its index entry waits
/// (placing and removing alike).
pub(super) const CHANGED_ON_DISK: &str =
    "the file changed on disk since it was indexed; the scan decides first";

/// See [`CHANGED_ON_DISK`].
pub(super) fn changed_on_disk() -> WorkError {
    WorkError::new(Cause::ChangedOnDisk, CHANGED_ON_DISK)
}

/// The work is no longer wanted as it was handed out.
fn overtaken() -> WorkError {
    WorkError::new(Cause::Overtaken, "overtaken by newer information")
}

/// Move a deleted file into the folder's trash (an empty directory is
/// simply removed; one still holding files fails, see [`DIR_NOT_EMPTY`])
/// and record it.
pub(super) fn remove_one(
    s: &Arc<Shared>,
    store: &mut Store,
    c: &Commit,
    root: &Path,
    abs: &Path,
) -> Result<Completed, WorkError> {
    let (folder_id, path, need, expect) = (&c.folder, &c.path, &c.need, c.expect.as_ref());
    outside_home(s.home.as_deref(), root, abs)?;
    if !SyncEngine::is_current(store, folder_id, path, need, expect) {
        return Err(overtaken());
    }
    if !disk_matches(abs, expect) {
        return Err(changed_on_disk());
    }
    if let Ok(m) = std::fs::symlink_metadata(abs) {
        if m.is_dir() {
            // The sync engine hands a directory's removal out only once
            // nothing under it waits for work; what is left is not the
            // peer's to delete (a file made here meanwhile, an ignored
            // one): the directory stays, and says why, rather than being
            // recorded as gone while it is still there.
            match std::fs::remove_dir(abs) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                    return Err(WorkError::new(Cause::DirNotEmpty, DIR_NOT_EMPTY));
                }
                Err(e) => {
                    return Err(WorkError::io(
                        format_args!("remove directory {}", abs.display()),
                        &e,
                    ));
                }
            }
        } else {
            set_aside(
                store,
                &s.chunks,
                root,
                folder_id,
                path,
                abs,
                expect,
                Why::Deleted,
            )?;
        }
    }
    Ok(Completed {
        folder: folder_id.clone(),
        path: path.clone(),
        done: need.clone(),
        record: need.record.clone(),
        conflict_copy: None,
    })
}
