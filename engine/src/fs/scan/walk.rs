//! One part of a folder's walk: a subtree (or a single entry) walked
//! with walkdir, every entry stat'ed and checked (ignored, a node's home,
//! a special file, a bad name), and the files whose metadata differs from
//! what is known (or modified within [`RACY_WINDOW`], whose stat proves
//! nothing) noted for reading, and names that differ from a sibling's
//! only in case reported. It reads metadata and symlink
//! targets only; it never opens a file and never follows a link.

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::case::SiblingNames;
use super::{
    EntryKind, FileStat, IgnoreRules, IssueKind, Observed, ScanIssue, ScanProgress, home_issue,
    io_issue, issue, path, special_kind,
};

/// What one part of a walk found: entries in walk order (every file among
/// them is to be read), how many files were found exactly as recorded,
/// and trouble.
#[derive(Default)]
pub(super) struct Walked {
    pub(super) entries: Vec<Observed>,
    pub(super) unchanged: u64,
    pub(super) issues: Vec<ScanIssue>,
    /// The start's folder-relative path, when the walk took it in (its
    /// name is compared with its siblings' by the caller).
    pub(super) start: Option<String>,
}

/// Walk `start` (itself included) under the folder at `root`: stat every
/// entry, note the files whose metadata differs from the record for
/// reading and, of those `as_recorded` (which notes them found), only
/// the count.
pub(super) fn walk(
    root: &Path,
    start: &Path,
    ignore: &IgnoreRules,
    as_recorded: &(dyn Fn(&str, &FileStat) -> bool + Sync),
    progress: &ScanProgress,
) -> Walked {
    let mut out = Walked::default();
    let mut siblings = SiblingNames::default();
    let recent_from = racy_from(std::time::SystemTime::now());
    let walker = walkdir::WalkDir::new(start)
        .follow_links(false)
        .follow_root_links(false)
        .min_depth(0);
    let mut it = walker.into_iter();
    while let Some(item) = it.next() {
        let entry = match item {
            Ok(e) => e,
            Err(e) => {
                let p = e.path().unwrap_or(start).to_path_buf();
                let rel = path::relative(root, &p).ok();
                // A missing start path is not trouble: the caller learns it is gone.
                if e.io_error()
                    .is_some_and(|io| io.kind() == io::ErrorKind::NotFound)
                    && p == start
                {
                    continue;
                }
                let detail = e.to_string();
                out.issues.push(match e.io_error() {
                    Some(io) => io_issue(&p, rel.as_deref(), io),
                    None => issue(&p, rel.as_deref(), IssueKind::Unreadable, detail),
                });
                continue;
            }
        };
        let abs = entry.path();
        let rel = match path::relative(root, abs) {
            Ok(r) => r,
            Err(e) => {
                out.issues.push(issue(abs, None, IssueKind::BadName, e));
                if entry.file_type().is_dir() {
                    it.skip_current_dir();
                }
                continue;
            }
        };
        let is_dir = entry.file_type().is_dir();
        if ignore.is_ignored(&rel, is_dir) {
            if is_dir {
                it.skip_current_dir();
            }
            continue;
        }
        if is_dir && crate::fs::ignore::is_node_home(abs) {
            out.issues.push(home_issue(abs, &rel));
            it.skip_current_dir();
            continue;
        }
        if let Some(what) = special_kind(entry.file_type()) {
            out.issues.push(issue(
                abs,
                Some(&rel),
                IssueKind::Special,
                format!("a {what}: not a file, never synced"),
            ));
            continue;
        }
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) => {
                let detail = e.to_string();
                out.issues.push(match e.io_error() {
                    Some(io) => io_issue(abs, Some(&rel), io),
                    None => issue(abs, Some(&rel), IssueKind::Unreadable, detail),
                });
                continue;
            }
        };
        progress.entries.fetch_add(1, Ordering::Relaxed);
        let stat = FileStat::from_metadata(&meta);
        let link_target = if stat.kind == EntryKind::Symlink {
            match std::fs::read_link(abs) {
                Ok(t) => match t.to_str() {
                    Some(s) => Some(s.to_string()),
                    None => {
                        out.issues.push(issue(
                            abs,
                            Some(&rel),
                            IssueKind::BadName,
                            "symlink target is not UTF-8",
                        ));
                        continue;
                    }
                },
                Err(e) => {
                    out.issues.push(io_issue(abs, Some(&rel), &e));
                    continue;
                }
            }
        } else {
            None
        };
        match entry.depth() {
            0 => out.start = Some(rel.clone()),
            depth => out.issues.extend(siblings.note(root, depth, &rel)),
        }
        if stat.kind == EntryKind::File && stat.mtime_ns < recent_from && as_recorded(&rel, &stat) {
            // As recorded (and noted found by the caller): nothing to
            // read or record.
            out.unchanged += 1;
            continue;
        }
        if stat.kind == EntryKind::File {
            progress.files_to_hash.fetch_add(1, Ordering::Relaxed);
            progress
                .bytes_to_hash
                .fetch_add(stat.size, Ordering::Relaxed);
        }
        out.entries.push(Observed {
            path: rel,
            stat,
            content: None,
            link_target,
        });
    }
    out
}

/// How close to the present a file's mtime must be for its stat to prove
/// nothing: a file system stamps times to its clock's tick (a few ms on
/// ext4, 1 s on ext3 and HFS+, 2 s on FAT), so a second write of the
/// same size within the tick of one already recorded leaves the stat
/// exactly as recorded. Such a file is read again, whatever its stat says.
pub(crate) const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

/// The mtime (ns since the epoch) from which a file is "racy" when looked
/// at `now` (see [`RACY_WINDOW`]).
pub(crate) fn racy_from(now: std::time::SystemTime) -> i64 {
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.saturating_sub(RACY_WINDOW).as_nanos() as i64)
}
