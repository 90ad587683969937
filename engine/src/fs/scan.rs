//! Walking a folder and summarising what is on disk.
//!
//! [`observe`] walks the requested scopes (the whole folder, a subtree, or
//! single paths), reports each entry's metadata and, for regular files whose
//! metadata differs from what the caller already knows, hashes and chunks
//! the content on all cores. Trouble with one path (unreadable, vanished,
//! changing while read, not UTF-8) is reported for that path and never stops
//! the walk. Symlinks are recorded with their target and never followed, so
//! a link cannot lead the walk outside the folder or into a loop.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use serde::Serialize;

mod case;
mod packed;
mod walk;
pub use packed::{Cursor, PackedPaths};
use walk::{Walked, walk};

use super::chunk::{ChunkerConfig, Content, chunk_bytes, chunk_reader};
use super::ignore::IgnoreRules;
use super::path;

pub use crate::index::EntryKind;

/// The metadata that decides whether a file must be re-read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Kind of entry.
    pub kind: EntryKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Permission bits (`mode & 0o777` on Unix: set-user-id, set-group-id
    /// and sticky bits are never recorded, so never synced).
    pub mode: u32,
    /// Inode (or file id): a changed inode at the same path means a new file.
    pub inode: u64,
}

impl FileStat {
    /// Read the metadata of `meta` (from `symlink_metadata`).
    pub fn from_metadata(meta: &std::fs::Metadata) -> FileStat {
        let kind = if meta.file_type().is_symlink() {
            EntryKind::Symlink
        } else if meta.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::File
        };
        #[cfg(unix)]
        let (mtime_ns, mode, inode) = {
            use std::os::unix::fs::MetadataExt;
            (
                meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                meta.mode() & 0o777,
                meta.ino(),
            )
        };
        #[cfg(not(unix))]
        let (mtime_ns, mode, inode) = {
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i64);
            (
                mtime,
                if meta.permissions().readonly() {
                    0o444
                } else {
                    0o644
                },
                0,
            )
        };
        FileStat {
            kind,
            size: if kind == EntryKind::Dir {
                0
            } else {
                meta.len()
            },
            mtime_ns,
            mode,
            inode,
        }
    }
}

/// One path as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Folder-relative path.
    pub path: String,
    /// Its metadata.
    pub stat: FileStat,
    /// Content summary, for files that were (re-)read. `None` for files whose
    /// metadata matched what the caller knew, and for non-files. Boxed: a
    /// whole-folder scan holds one `Observed` per file, nearly all without
    /// content, and inline it took 56 of each one's 144 bytes.
    pub content: Option<Box<Content>>,
    /// A symlink's target, as stored in the link.
    pub link_target: Option<String>,
}

/// What went wrong with one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IssueKind {
    /// Permission denied or another read error.
    Unreadable,
    /// Disappeared between listing and reading.
    Vanished,
    /// Kept changing while being read; picked up once it settles.
    Changing,
    /// A name that is not valid UTF-8 (cannot be synced).
    BadName,
    /// Two names that differ only in case (they collide on case-insensitive disks).
    CaseCollision,
    /// A named pipe, socket or device node: not content, never opened,
    /// never synced.
    Special,
    /// A Softadastra node's home (see [`super::ignore::is_node_home`]):
    /// never indexed, never synced.
    NodeHome,
    /// A file whose record (its chunk list: about 380 GB of varied data)
    /// is over what one log record holds: not indexed, not synced, until
    /// it is smaller.
    TooLarge,
}

impl IssueKind {
    /// Whether the path stays out of sync for as long as it is what it is
    /// (as opposed to trouble that may pass: unreadable, changing, gone).
    pub fn is_lasting(self) -> bool {
        matches!(
            self,
            IssueKind::BadName | IssueKind::Special | IssueKind::NodeHome | IssueKind::TooLarge
        )
    }
}

/// A problem with one path; the rest of the scan goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanIssue {
    /// The path (absolute).
    pub path: PathBuf,
    /// Folder-relative path, when it has one.
    pub rel: Option<String>,
    /// What kind of trouble.
    pub kind: IssueKind,
    /// The underlying error.
    pub detail: String,
}

/// Which part of a folder to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole folder.
    All,
    /// A path and, if it is a directory, everything under it.
    Tree(String),
}

/// Live counters, for progress display from another thread.
#[derive(Debug, Default)]
pub struct ScanProgress {
    /// Entries found by the walk.
    pub entries: AtomicU64,
    /// Files found that need reading.
    pub files_to_hash: AtomicU64,
    /// Bytes those files hold.
    pub bytes_to_hash: AtomicU64,
    /// Files read so far.
    pub files_hashed: AtomicU64,
    /// Bytes read so far.
    pub bytes_hashed: AtomicU64,
}

/// The result of [`observe`].
#[derive(Debug, Default)]
pub struct Observation {
    /// Everything found, in walk order, but the files found exactly as the
    /// caller knew them.
    pub entries: Vec<Observed>,
    /// How many files were found exactly as the caller knew them (kind,
    /// size, mtime and inode): counted only — the caller noted each one
    /// as it was found (see [`observe`]). At a rescan of an unchanged
    /// folder, nearly every file; keeping even their names took ~24 MB
    /// at a million files.
    pub unchanged: u64,
    /// Per-path trouble.
    pub issues: Vec<ScanIssue>,
    /// Files re-read.
    pub hashed_files: u64,
    /// Bytes re-read.
    pub hashed_bytes: u64,
}

impl Observation {
    /// Forget what was found at the paths `keep` refuses (entries and
    /// the trouble of each; the count of unchanged files stays as it is).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.entries.retain(|o| keep(&o.path));
        self.issues.retain(|i| i.rel.as_deref().is_none_or(&keep));
    }

    /// Add what another observation found.
    pub fn extend(&mut self, other: Observation) {
        self.entries.extend(other.entries);
        self.unchanged += other.unchanged;
        self.issues.extend(other.issues);
        self.hashed_files += other.hashed_files;
        self.hashed_bytes += other.hashed_bytes;
    }

    /// Whether `rel` (or a parent of it) could not be read: such paths must
    /// not be taken as deleted. An issue at `""` is the folder's own
    /// listing: everything is then in doubt.
    pub fn is_unsure(&self, rel: &str) -> bool {
        self.issues.iter().any(|i| {
            !matches!(i.kind, IssueKind::CaseCollision | IssueKind::Special)
                && i.rel.as_deref().is_some_and(|p| path::is_within(rel, p))
        })
    }

    /// Whether `rel` is in a node's home found by the walk: such paths are
    /// not deleted, they are forgotten (as ignored paths are).
    pub fn is_in_node_home(&self, rel: &str) -> bool {
        self.issues.iter().any(|i| {
            i.kind == IssueKind::NodeHome
                && i.rel.as_deref().is_some_and(|p| path::is_within(rel, p))
        })
    }
}

/// The kind of a special file (not a file, directory or symlink), if it
/// is one.
fn special_kind(t: std::fs::FileType) -> Option<&'static str> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Some("named pipe");
        }
        if t.is_socket() {
            return Some("socket");
        }
        if t.is_block_device() || t.is_char_device() {
            return Some("device node");
        }
    }
    let _ = t;
    None
}

/// The first directory strictly between `root` and `start` that is a
/// node's home, with its folder-relative path (`start` itself, when a
/// directory, is looked at by the walk like any other).
fn home_above(root: &Path, start: &Path) -> Option<(PathBuf, String)> {
    let rest = start.strip_prefix(root).ok()?;
    let mut at = root.to_path_buf();
    let parts: Vec<_> = rest.components().collect();
    for c in parts.iter().take(parts.len().saturating_sub(1)) {
        at.push(c);
        if super::ignore::is_node_home(&at) {
            let rel = path::relative(root, &at).ok()?;
            return Some((at, rel));
        }
    }
    None
}

/// The issue that says a node's home is left out.
fn home_issue(abs: &Path, rel: &str) -> ScanIssue {
    issue(
        abs,
        Some(rel),
        IssueKind::NodeHome,
        "a Softadastra node's home (private key, log): never synced",
    )
}

fn issue(path: &Path, rel: Option<&str>, kind: IssueKind, detail: impl ToString) -> ScanIssue {
    ScanIssue {
        path: path.to_path_buf(),
        rel: rel.map(str::to_string),
        kind,
        detail: detail.to_string(),
    }
}

fn io_issue(path: &Path, rel: Option<&str>, e: &io::Error) -> ScanIssue {
    let kind = if e.kind() == io::ErrorKind::NotFound {
        IssueKind::Vanished
    } else {
        IssueKind::Unreadable
    };
    issue(path, rel, kind, e)
}

/// Observe `scopes` of the folder at `root`. `as_recorded(rel, stat)`
/// says whether the caller has `rel` on record as a live file of exactly
/// `stat` (kind, size, mtime and inode), and notes it found: such a file
/// is not read again and only counted ([`Observation::unchanged`]). It is
/// asked from all cores at once, and only for files past the racy window
/// (a file modified within the last 2 s is always read).
pub fn observe(
    root: &Path,
    scopes: &[Scope],
    ignore: &IgnoreRules,
    as_recorded: &(dyn Fn(&str, &FileStat) -> bool + Sync),
    chunker: ChunkerConfig,
    progress: &ScanProgress,
) -> Observation {
    let mut out = Observation::default();
    // Where each walk started: each walk compares the names below its
    // start, these are compared with each other.
    let mut tops: Vec<String> = Vec::new();
    for scope in scopes {
        let starts: Vec<PathBuf> = match scope {
            // A whole folder is walked in parts, one per entry at its top,
            // on all cores: looking at an unchanged folder is mostly stat
            // calls, which then overlap.
            Scope::All => match std::fs::read_dir(root) {
                Ok(listing) => {
                    let mut starts = Vec::new();
                    for item in listing {
                        match item {
                            Ok(e) => starts.push(e.path()),
                            // The whole folder is then in doubt: nothing in
                            // it is taken as deleted.
                            Err(e) => out.issues.push(io_issue(root, Some(""), &e)),
                        }
                    }
                    starts.sort();
                    starts
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    out.issues.push(io_issue(root, Some(""), &e));
                    continue;
                }
            },
            Scope::Tree(rel) => match path::absolute(root, rel) {
                Ok(p) => {
                    if let Some((home, home_rel)) = home_above(root, &p) {
                        out.issues.push(home_issue(&home, &home_rel));
                        continue;
                    }
                    vec![p]
                }
                Err(e) => {
                    out.issues
                        .push(issue(root, Some(rel), IssueKind::BadName, e));
                    continue;
                }
            },
        };
        let parts: Vec<Walked> = starts
            .par_iter()
            .map(|start| walk(root, start, ignore, as_recorded, progress))
            .collect();
        for part in parts {
            tops.extend(part.start);
            out.entries.extend(part.entries);
            out.unchanged += part.unchanged;
            out.issues.extend(part.issues);
        }
    }

    // Read and chunk the files found (every file among the entries: those
    // found as known are names only) on all cores, each result put in its
    // entry — not gathered first (at a million new files, the list of
    // paths to read and the list of results took ~200 MB beside them).
    let failed: Vec<(usize, ScanIssue)> = out
        .entries
        .par_iter_mut()
        .enumerate()
        .filter(|(_, o)| o.stat.kind == EntryKind::File)
        .filter_map(|(idx, o)| {
            let read = path::absolute(root, &o.path)
                .map_err(|e| issue(root, Some(&o.path), IssueKind::BadName, e))
                .and_then(|abs| read_settled(&abs, &o.path, o.stat, chunker, progress));
            match read {
                Ok((content, stat)) => {
                    o.stat = stat;
                    o.content = Some(Box::new(content));
                    None
                }
                Err(issue) => Some((idx, issue)),
            }
        })
        .collect();
    for o in out.entries.iter().filter_map(|o| o.content.as_ref()) {
        out.hashed_files += 1;
        out.hashed_bytes += o.size;
    }
    let mut dropped = Vec::with_capacity(failed.len());
    for (idx, issue) in failed {
        out.issues.push(issue);
        dropped.push(idx);
    }
    if !dropped.is_empty() {
        dropped.sort_unstable();
        let mut i = 0;
        out.entries.retain(|_| {
            let keep = dropped.binary_search(&i).is_err();
            i += 1;
            keep
        });
    }
    out.issues
        .extend(case::among(root, tops.iter().map(String::as_str)));
    out
}

/// A file read in full, with the metadata it had, or why it could not be.
type ReadResult = Result<(Content, FileStat), ScanIssue>;

/// Files up to this size are read whole into one exact-size buffer.
const SMALL_FILE: u64 = 1 << 20;

/// Read a file whose metadata stays the same while it is read (checked on
/// the open handle before and after). A file that keeps changing is
/// reported as [`IssueKind::Changing`] and picked up once it settles.
fn read_settled(
    abs: &Path,
    rel: &str,
    walked: FileStat,
    chunker: ChunkerConfig,
    progress: &ScanProgress,
) -> ReadResult {
    let fail = |e: io::Error| io_issue(abs, Some(rel), &e);
    for attempt in 0..3 {
        let mut file = open_regular(abs).map_err(fail)?;
        let opened = file.metadata().map_err(fail)?;
        if !opened.is_file() {
            // Replaced since the walk (by a pipe, a directory…): looked at
            // again by the next scan of this path.
            return Err(issue(
                abs,
                Some(rel),
                IssueKind::Changing,
                "no longer a regular file",
            ));
        }
        let before = if attempt == 0 {
            walked
        } else {
            FileStat::from_metadata(&opened)
        };
        let content = if before.size <= SMALL_FILE {
            let mut buf = Vec::with_capacity(before.size as usize + 1);
            io::Read::read_to_end(&mut file, &mut buf).map_err(fail)?;
            progress
                .bytes_hashed
                .fetch_add(buf.len() as u64, Ordering::Relaxed);
            chunk_bytes(&buf, chunker)
        } else {
            chunk_reader(
                CountingReader {
                    inner: super::sparse::HoleSkipping::new(&file).map_err(fail)?,
                    progress,
                },
                chunker.for_size(before.size),
            )
            .map_err(fail)?
        };
        let after = FileStat::from_metadata(&file.metadata().map_err(fail)?);
        progress.files_hashed.fetch_add(1, Ordering::Relaxed);
        if after == before && content.size == after.size {
            return Ok((content, after));
        }
    }
    Err(issue(
        abs,
        Some(rel),
        IssueKind::Changing,
        "file kept changing while being read; it will be recorded once it settles",
    ))
}

/// Open a file found by the walk for reading without ever blocking or
/// leaving the folder: a path swapped meanwhile for a named pipe opens at
/// once (no writer needed), one swapped for a symlink is not followed.
fn open_regular(abs: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
    }
    options.open(abs)
}

struct CountingReader<'a, R> {
    inner: R,
    progress: &'a ScanProgress,
}

impl<R: io::Read> io::Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress
            .bytes_hashed
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
