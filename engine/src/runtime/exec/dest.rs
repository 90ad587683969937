//! Where a received file goes: destination checks (no symlinked parent,
//! nothing in this node's home), temporary names, and the temporary files a
//! crash left.

use super::*;

/// Whether the disk at `abs` is what the index entry `expect` says.
pub(super) fn disk_matches(abs: &Path, expect: Option<&FileRecord>) -> bool {
    let meta = std::fs::symlink_metadata(abs).ok();
    match (meta, expect.filter(|e| !e.deleted)) {
        (None, None) => true,
        (Some(m), Some(e)) => {
            let st = FileStat::from_metadata(&m);
            st.kind == e.kind
                && (e.kind == EntryKind::Dir || (st.size == e.size && st.inode == e.inode))
        }
        _ => false,
    }
}

/// Refuse a destination whose parent directories (inside the folder) are
/// symlinks: writing through one could land outside the folder.
pub(super) fn parents_are_real(root: &Path, abs: &Path) -> bool {
    parents(root, abs) != Parents::Refused
}

/// What a destination's parent directories inside the folder are.
#[derive(Debug, PartialEq)]
pub(super) enum Parents {
    /// Directories, every one.
    Real,
    /// Some are missing (or not directories); none is a symlink.
    Missing,
    /// One is a symlink (or the destination is not inside the root).
    Refused,
}

/// Look at each of `abs`'s parents inside `root` (`lstat` each: a
/// symlinked ancestor would be followed by a look at its child).
pub(super) fn parents(root: &Path, abs: &Path) -> Parents {
    let mut found = Parents::Real;
    let mut p = abs.parent();
    while let Some(dir) = p {
        if dir == root {
            return found;
        }
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() => return Parents::Refused,
            Ok(m) if m.is_dir() => {}
            _ => found = Parents::Missing,
        }
        p = dir.parent();
    }
    Parents::Refused
}

/// Where a file being received goes.
#[derive(Clone)]
pub(super) struct Dest {
    /// The folder's root.
    pub(super) root: PathBuf,
    /// The file's final path.
    pub(super) abs: PathBuf,
    /// The temporary file it is assembled in, beside `abs`.
    pub(super) tmp: PathBuf,
}

/// Refuse to write or remove `abs` (in the folder at `root`) when the
/// folder contains this node's home and `abs` is inside it: the folder's
/// scan leaves the home out of the index, but a peer could still name
/// paths there. (A folder *inside* the home, as `<home>/docs`, is
/// ordinary: it holds none of the home's own files.)
pub(super) fn outside_home(home: Option<&Path>, root: &Path, abs: &Path) -> Result<(), WorkError> {
    match home {
        Some(h) if h.starts_with(root) && abs.starts_with(h) => Err(WorkError::new(
            Cause::Refused,
            format!("refused: {} is inside this node's home", abs.display()),
        )),
        _ => Ok(()),
    }
}

impl Dest {
    /// Where `path` of the folder at `root` goes (never into `home`, see
    /// [`outside_home`]).
    pub(super) fn of(root: PathBuf, path: &str, home: Option<&Path>) -> Result<Dest, WorkError> {
        let abs = absolute(&root, path)?;
        outside_home(home, &root, &abs)?;
        Ok(Dest {
            tmp: temp_path(&abs),
            root,
            abs,
        })
    }

    /// Make the directory the file goes in, refusing one reached through
    /// a symlink (writing through it could land outside the folder).
    /// Blocking.
    pub(super) fn prepare(&self, folder: &str, path: &str) -> Result<(), WorkError> {
        match parents(&self.root, &self.abs) {
            Parents::Real => Ok(()),
            Parents::Refused => Err(symlinked_parent(folder, path)),
            Parents::Missing => {
                let parent = self.abs.parent().unwrap_or(&self.root);
                std::fs::create_dir_all(parent)
                    .map_err(|e| WorkError::io(format_args!("create {}", parent.display()), &e))
            }
        }
    }
}

/// Refuse `path` of `folder` (a parent directory is a symlink), loudly.
pub(super) fn symlinked_parent(folder: &str, path: &str) -> WorkError {
    warn!(%folder, %path, "refused: a parent directory is a symlink");
    WorkError::new(Cause::Refused, "refused: a parent directory is a symlink")
}

/// `path` of the folder at `root` on disk, refused if it is not a plain
/// folder-relative path (a peer's `..`, an absolute path).
pub(super) fn absolute(root: &Path, path: &str) -> Result<PathBuf, WorkError> {
    crate::fs::path::absolute(root, path)
        .map_err(|e| WorkError::new(Cause::Refused, format!("refused: {e}")))
}

/// The temporary file a download of `abs` is assembled in, beside it:
/// `.softadastra-tmp-<8 hex>-<name>`, or, when that would be longer than a
/// file name may be, `.softadastra-tmp-<8 hex>=<blake3 of the name, 32
/// hex>` ([`lost_rename`] finds the destination either way).
pub(crate) fn temp_path(abs: &Path) -> PathBuf {
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tag = fastrand::u32(..);
    let full = format!("{TEMP_PREFIX}{tag:08x}-{name}");
    if full.len() <= crate::fs::path::NAME_MAX {
        return abs.with_file_name(full);
    }
    abs.with_file_name(format!("{TEMP_PREFIX}{tag:08x}={}", name_digest(&name)))
}

/// What stands for a name too long to go into a temporary file's name.
pub(super) fn name_digest(name: &str) -> String {
    blake3::hash(name.as_bytes()).to_hex()[..32].to_string()
}

/// At start, before the folder is scanned, deal with the temporary files
/// a crash left. A transfer cut short by a stop is not resumed from its
/// temporary file (the work restarts from the stored need; within a run,
/// see [`Partials`]): it is deleted. But a new
/// file whose entry became durable while its rename did not (a power cut
/// right after its batch, see [`committer`]) is finished: when its
/// destination is missing and the index — or the sync work still wanted
/// for that path (a replacement stopped between moving the old version to
/// the trash and moving the new one in) — says the destination holds
/// exactly the temporary file's bytes, the file is moved into place
/// (never over anything) — otherwise the scan would take the missing file
/// for a local deletion and send it to every peer. A temporary file
/// changed at or after `since` (its change time, which nothing can set
/// back) is this run's — a download under way, which sync may start as
/// soon as the watches are in place — and is left alone.
pub fn recover_temp_files(s: &Shared, folder: &folder::FolderConfig, since: std::time::SystemTime) {
    let walker = walkdir::WalkDir::new(&folder.path)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| e.file_name() != META_DIR);
    for entry in walker.flatten() {
        let tmp = entry.path();
        if !entry.file_type().is_file()
            || !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
            || entry.metadata().is_ok_and(|m| changed_since(&m, since))
        {
            continue;
        }
        if let Some(dest) = lost_rename(s, folder, tmp) {
            let moved = rename_new(tmp, &dest)
                .and_then(|()| make_durable(&[], &[dest.parent().unwrap_or(&folder.path)], 0));
            match moved {
                Ok(()) => {
                    info!(path = %dest.display(), "finished placing a file a crash interrupted");
                    continue;
                }
                Err(e) => {
                    warn!(path = %dest.display(), error = %e, "cannot finish placing a file a crash interrupted")
                }
            }
        }
        match std::fs::remove_file(tmp) {
            Ok(()) => info!(path = %tmp.display(), "removed an unfinished download"),
            Err(e) => {
                warn!(path = %tmp.display(), error = %e, "cannot remove an unfinished download")
            }
        }
    }
}

/// Whether `m`'s change time is at or after `since` (Unix; elsewhere its
/// modification time, which the writer sets from the record: never).
fn changed_since(m: &std::fs::Metadata, since: std::time::SystemTime) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(since) = since.duration_since(std::time::UNIX_EPOCH) else {
            return true;
        };
        let changed = std::time::Duration::new(m.ctime().max(0) as u64, m.ctime_nsec() as u32);
        changed >= since
    }
    #[cfg(not(unix))]
    {
        let _ = (m, since);
        false
    }
}

/// Where the temporary file `tmp` belongs, if it is a finished file whose
/// rename a crash lost (see [`recover_temp_files`]).
pub(super) fn lost_rename(
    s: &Shared,
    folder: &folder::FolderConfig,
    tmp: &Path,
) -> Option<PathBuf> {
    let rest = tmp.file_name()?.to_str()?.strip_prefix(TEMP_PREFIX)?;
    // `temp_path`: 8 hex digits, then a dash and the destination's name,
    // or `=` and its digest.
    let (tag, name) = rest.split_at_checked(9)?;
    if name.is_empty() {
        return None;
    }
    let (rel, record) = match tag.as_bytes()[8] {
        b'-' => {
            let dest = tmp.with_file_name(name);
            let rel = crate::fs::path::relative(&folder.path, &dest).ok()?;
            let record = folder::record(&lock(&s.store), &folder.id, &rel)?;
            (rel, record)
        }
        b'=' => {
            // The one record of that directory whose name has this digest.
            let dir = crate::fs::path::relative(&folder.path, tmp.parent()?).ok();
            let prefix = match &dir {
                Some(d) => format!("{d}/"),
                None => String::new(),
            };
            let store = lock(&s.store);
            folder::records(&store, &folder.id)
                .flatten()
                .filter(|(p, _)| p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
                .find(|(p, _)| name_digest(&p[prefix.len()..]) == name)
                .map(|(p, r)| (p.to_string(), r))?
        }
        _ => return None,
    };
    let dest = crate::fs::path::absolute(&folder.path, &rel).ok()?;
    if std::fs::symlink_metadata(&dest).is_ok() || !parents_are_real(&folder.path, &dest) {
        return None;
    }
    // What the path should hold: what the index says (a new file whose
    // entry became durable) or what sync was placing there (a replaced
    // file whose old version had gone to the trash when the node stopped:
    // without its new one, the scan would take the path for deleted here
    // and delete it everywhere).
    let need = SyncEngine::need(&lock(&s.store), &folder.id, &rel).map(|n| n.record);
    let wanted: Vec<&FileRecord> = [Some(&record), need.as_ref()]
        .into_iter()
        .flatten()
        .filter(|r| !r.deleted && r.kind == EntryKind::File)
        .collect();
    let mut f = std::fs::File::open(tmp).ok()?;
    let len = f.metadata().ok()?.len();
    if !wanted.iter().any(|r| r.size == len) {
        return None;
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(&mut f).ok()?;
    let got: ContentHash = hasher.finalize().into();
    wanted.iter().any(|r| r.hash == Some(got)).then_some(dest)
}
