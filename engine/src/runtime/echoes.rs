//! Recognising the watcher's events for files the agent itself just placed
//! (the echo filter), so they cost one stat instead of a reconcile.

use std::collections::HashMap;
use std::path::Path;

use super::lock;

/// Files the agent just placed, each in the [`Placed`] state it was in right
/// after: the watcher's event for such a file is recognised with one stat
/// — nothing touched the file since — instead of being reconciled against
/// the index under the store's lock (which the committer needs). Anything
/// that changed the file since (an edit, a replacement, a chmod) changes
/// its stamp, and the event is reconciled as any other. An entry goes
/// when its event is seen; past a cap all go (events the watcher never
/// delivered must not pile up) and the watcher merely reconciles them.
#[derive(Debug, Default)]
pub struct Echoes {
    pub(super) placed: std::sync::Mutex<HashMap<String, HashMap<String, Placed>>>,
}

impl Echoes {
    const CAP: usize = 100_000;

    pub(super) fn placed(&self, files: &[(&String, &String, Placed)]) {
        if files.is_empty() {
            return;
        }
        let mut placed = lock(&self.placed);
        if placed.values().map(HashMap::len).sum::<usize>() + files.len() > Self::CAP {
            placed.clear();
        }
        for (folder, path, stamp) in files {
            placed
                .entry(folder.to_string())
                .or_default()
                .insert(path.to_string(), *stamp);
        }
    }

    /// Take out of `batch` (folder `folder` at `root`) the paths that are
    /// exactly as the agent placed them.
    pub fn drop_from(&self, folder: &str, root: &Path, batch: &mut crate::fs::watch::Batch) {
        let wanted: Vec<Option<Placed>> = {
            let mut placed = lock(&self.placed);
            let Some(files) = placed.get_mut(folder) else {
                return;
            };
            batch.paths.iter().map(|p| files.remove(p)).collect()
        };
        let mut wanted = wanted.into_iter();
        batch.paths.retain(|rel| {
            let Some(want) = wanted.next().flatten() else {
                return true;
            };
            let now = crate::fs::path::absolute(root, rel)
                .ok()
                .and_then(|abs| std::fs::symlink_metadata(abs).ok())
                .and_then(|m| Placed::of(&m));
            now != Some(want)
        });
    }
}

/// What identifies one state of a file, finer than `Stamp`: a write, a
/// truncation, a replacement, a chmod or a touch all change it (the change
/// time moves with any of them, to the file system's clock granularity —
/// the same limit as the scanner's own test). Unix only: elsewhere nothing
/// is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub(super) inode: u64,
    pub(super) size: u64,
    pub(super) mtime: (i64, i64),
    pub(super) ctime: (i64, i64),
}

impl Placed {
    pub(super) fn of(m: &std::fs::Metadata) -> Option<Placed> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Some(Placed {
                inode: m.ino(),
                size: m.size(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = m;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watcher's event for a file the agent placed is dropped while
    /// the file is as placed — once; an edit since makes it count.
    #[test]
    fn echoes_of_placed_files_are_recognised_and_edits_are_not() {
        use crate::fs::watch::Batch;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for name in ["a.txt", "b.txt", "c.txt"] {
            std::fs::write(root.join(name), b"placed").unwrap();
        }
        let stamp = |name: &str| Placed::of(&std::fs::metadata(root.join(name)).unwrap()).unwrap();
        let (f, a, b) = ("docs".to_string(), "a.txt".to_string(), "b.txt".to_string());
        let echoes = Echoes::default();
        echoes.placed(&[(&f, &a, stamp("a.txt")), (&f, &b, stamp("b.txt"))]);
        // b.txt is edited after it was placed.
        std::fs::write(root.join("b.txt"), b"placed, then edited").unwrap();
        let batch = || Batch {
            paths: vec!["a.txt".into(), "b.txt".into(), "c.txt".into()],
            rescan_all: false,
        };
        let mut first = batch();
        echoes.drop_from("docs", root, &mut first);
        assert_eq!(first.paths, ["b.txt", "c.txt"]);
        // Recognised once: a later event for a.txt is reconciled.
        let mut second = batch();
        echoes.drop_from("docs", root, &mut second);
        assert_eq!(second.paths, ["a.txt", "b.txt", "c.txt"]);
        // Another folder's paths are not confused with these.
        echoes.placed(&[(&f, &a, stamp("a.txt"))]);
        let mut other = batch();
        echoes.drop_from("photos", root, &mut other);
        assert_eq!(other.paths.len(), 3);
    }
}
