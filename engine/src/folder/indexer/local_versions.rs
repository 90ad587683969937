//! Versions of what this device's own edits and deletions replace: when a
//! reconcile records that a file was edited or deleted here, the version
//! it replaced is entered in the history as [`Stored::Wanted`] in the same
//! batch — its bytes are gone from the disk before any watcher hears of
//! the change, so they are gathered afterwards (by the runtime, from this
//! device's own files and from the peers that kept it). Part of the
//! [`Indexer`]; it writes records only, never the disk, and is switched
//! off per folder by [`retention::set_keeps_local_edits`].

use std::collections::HashSet;

use super::*;
use crate::core::ContentHash;
use crate::index::history::{Kept, Stored, Why, keep_ops};
use crate::index::retention;

impl Indexer {
    /// Whether this folder keeps versions of what is edited or deleted
    /// here.
    pub(super) fn keeps_local_edits(&self, store: &Store) -> bool {
        retention::keeps_local_edits(store, &self.config.id)
    }

    /// The history records for the version that `now` (a new record of
    /// `rel`) replaces here, given what the index knew (`prev`). `moved`:
    /// content hashes added in the same reconcile — a file whose content
    /// turns up elsewhere was moved, not lost, and keeps nothing.
    pub(super) fn local_version(
        &self,
        store: &Store,
        rel: &str,
        prev: Option<&FileRecord>,
        now: &FileRecord,
        moved: &HashSet<ContentHash>,
    ) -> Vec<Op> {
        let Some((prev, why)) = prev.and_then(|p| Some((p, replaced_here(p, now, moved)?))) else {
            return Vec::new();
        };
        let kept = Kept {
            record: prev.clone(),
            kept_at: store.wall_time(),
            why,
            stored: Stored::Wanted,
        };
        keep_ops(store, &self.config.id, rel, &kept)
    }
}

/// Why the version `prev` is to be kept when `now` replaces it here, or
/// `None` when nothing of it is lost: it was no file with content, only
/// its metadata changed, or (deleted) its content was added elsewhere.
fn replaced_here(prev: &FileRecord, now: &FileRecord, moved: &HashSet<ContentHash>) -> Option<Why> {
    let hash = prev.hash?;
    if prev.deleted || prev.kind != EntryKind::File {
        return None;
    }
    if now.deleted {
        return (!moved.contains(&hash)).then_some(Why::DeletedHere);
    }
    (now.kind != EntryKind::File || now.hash != Some(hash)).then_some(Why::EditedHere)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{ManualClock, NodeId, VersionVector};
    use crate::index::history;
    use crate::store::StoreConfig;
    use crate::wal::MemStorage;

    /// A kept version as the test looks at it: path, why, content hash.
    type Row = (String, Why, Option<ContentHash>);

    /// Each kept version of folder "f", and the keys listed as wanted.
    fn kept_of(store: &Store) -> (Vec<Row>, Vec<String>) {
        let all = history::all(store, "f").unwrap();
        let rows = all
            .iter()
            .map(|(p, k)| {
                assert_eq!(k.stored, Stored::Wanted);
                (p.clone(), k.why, k.record.hash)
            })
            .collect();
        (rows, history::wanted(store, "f", 100, |_| false))
    }

    #[test]
    fn edits_and_deletions_here_keep_what_they_replaced_moves_and_touches_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        for (name, text) in [("a.txt", "one"), ("b.txt", "bee"), ("c.txt", "sea")] {
            std::fs::write(root.join(name), text).unwrap();
        }
        let (mut store, _) = Store::open(
            StoreConfig::new("/idx"),
            std::sync::Arc::new(MemStorage::new()),
            std::sync::Arc::new(ManualClock::new()),
        )
        .unwrap();
        let config = crate::folder::add(&mut store, "f", &root).unwrap();
        let mut ix = Indexer::new(config, NodeId([1; 32]));
        let scan = |ix: &mut Indexer, store: &mut Store| {
            ix.scan(store, &ScanProgress::default()).unwrap();
        };
        scan(&mut ix, &mut store);
        assert!(
            kept_of(&store).0.is_empty(),
            "a first index replaces nothing"
        );

        // Edited, deleted, moved, touched.
        std::fs::write(root.join("a.txt"), "two").unwrap();
        std::fs::remove_file(root.join("b.txt")).unwrap();
        std::fs::rename(root.join("c.txt"), root.join("moved.txt")).unwrap();
        scan(&mut ix, &mut store);
        let (rows, wanted) = kept_of(&store);
        assert_eq!(
            rows,
            [
                (
                    "a.txt".into(),
                    Why::EditedHere,
                    Some(ContentHash::of(b"one"))
                ),
                (
                    "b.txt".into(),
                    Why::DeletedHere,
                    Some(ContentHash::of(b"bee"))
                ),
            ]
        );
        assert_eq!(wanted.len(), 2, "both are listed to be gathered");
        assert_eq!(history::path_of_key("f", &wanted[0]), "a.txt");

        // Switched off: the next edit keeps nothing.
        retention::set_keeps_local_edits(&mut store, "f", false).unwrap();
        assert!(!retention::keeps_local_edits(&store, "f"));
        std::fs::write(root.join("a.txt"), "three").unwrap();
        scan(&mut ix, &mut store);
        assert_eq!(kept_of(&store).0.len(), 2);
        // And an indexer told the caller keeps the version keeps none.
        retention::set_keeps_local_edits(&mut store, "f", true).unwrap();
        std::fs::write(root.join("a.txt"), "four").unwrap();
        let config = crate::folder::get(&store, "f").unwrap();
        let mut quiet = Indexer::new(config, NodeId([1; 32])).without_local_versions();
        scan(&mut quiet, &mut store);
        assert_eq!(kept_of(&store).0.len(), 2);
        std::fs::write(root.join("a.txt"), "five").unwrap();
        scan(&mut ix, &mut store);
        assert_eq!(kept_of(&store).0.len(), 3);
    }

    fn file(hash: u8, deleted: bool) -> FileRecord {
        FileRecord {
            kind: EntryKind::File,
            size: 3,
            mtime_ns: 1,
            mode: 0o644,
            inode: 1,
            hash: Some(ContentHash([hash; 32])),
            chunks: Vec::new(),
            link_target: None,
            version: VersionVector::default(),
            modified_by: NodeId([1; 32]),
            deleted,
        }
    }

    #[test]
    fn only_content_that_is_lost_is_kept() {
        let none = HashSet::new();
        assert_eq!(
            replaced_here(&file(1, false), &file(2, false), &none),
            Some(Why::EditedHere)
        );
        assert_eq!(replaced_here(&file(1, false), &file(1, false), &none), None);
        assert_eq!(
            replaced_here(&file(1, false), &file(1, true), &none),
            Some(Why::DeletedHere)
        );
        let moved = HashSet::from([ContentHash([1; 32])]);
        assert_eq!(replaced_here(&file(1, false), &file(1, true), &moved), None);
        assert_eq!(replaced_here(&file(1, true), &file(2, false), &none), None);
        let mut dir = file(2, false);
        dir.kind = EntryKind::Dir;
        dir.hash = None;
        assert_eq!(
            replaced_here(&file(1, false), &dir, &none),
            Some(Why::EditedHere)
        );
    }
}
