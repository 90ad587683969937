//! What a reconcile knows of each path before it looks at the disk: its
//! stat and whether it is deleted, read from the index in one pass — not
//! the whole record, which is read again from the store only for the paths
//! found changed — and, as the walk finds them, which paths are on disk
//! (marked from all cores at once). Part of the [`Indexer`]; it reads the
//! store, never the disk.

use super::*;

impl Indexer {
    /// What the index knows about `scopes` — each path's stat and whether
    /// it is deleted, not its whole record (read again
    /// from the store only for the paths found changed) — and the log's
    /// last sequence when it was read (see [`Indexer::moved_since`]).
    pub(super) fn known(
        &self,
        store: &Store,
        scopes: &[Scope],
    ) -> Result<(KnownMap, Seq), FolderError> {
        Ok((
            self.known_of(self.entries(store, scopes))?,
            store.last_seq(),
        ))
    }

    /// [`Indexer::known`] of an index snapshot (see [`Indexer::entries`]),
    /// read without the store.
    pub(super) fn known_of(&self, entries: Entries) -> Result<KnownMap, FolderError> {
        let mut known = KnownMap::new();
        let strip = self.config.id.len() + 1;
        for (k, e) in entries {
            if let Some(v) = e.value.as_deref() {
                known.insert(&k[strip..], Known::of(&decode(&k, v)?));
            }
        }
        Ok(known)
    }

    /// The whole record of `rel` as the store has it now (deleted ones
    /// included).
    pub(super) fn full_record(
        &self,
        store: &Store,
        rel: &str,
    ) -> Result<Option<FileRecord>, FolderError> {
        let key = file_key(&self.config.id, rel);
        match store.value(ns::FILES, &key) {
            Some(v) => decode(&key, &v).map(Some),
            None => Ok(None),
        }
    }
}

/// What a reconcile knows of each path before it looks at the disk (see
/// [`Indexer::known`]): 32 bytes and the path, where the whole record
/// (its chunk list, its version vector) was several times that — at a
/// million files, hundreds of MB during every whole-folder scan. The stat
/// is kept field by field, not as a [`FileStat`], so the flags fit in its
/// padding (40 bytes otherwise).
#[derive(Debug)]
pub(super) struct Known {
    size: u64,
    mtime_ns: i64,
    inode: u64,
    mode: u32,
    kind: EntryKind,
    pub(super) deleted: bool,
    /// Found on disk by the reconcile: set by the walk, on all cores, for
    /// a file found as recorded; when it records, for the others.
    seen: std::sync::atomic::AtomicBool,
}

impl Clone for Known {
    fn clone(&self) -> Known {
        Known {
            seen: self.is_seen().into(),
            ..*self
        }
    }
}

impl Known {
    pub(super) fn of(r: &FileRecord) -> Known {
        Known::new(stat_of(r), r.deleted)
    }

    pub(super) fn new(stat: FileStat, deleted: bool) -> Known {
        Known {
            size: stat.size,
            mtime_ns: stat.mtime_ns,
            inode: stat.inode,
            mode: stat.mode,
            kind: stat.kind,
            deleted,
            seen: false.into(),
        }
    }

    /// Whether it was found on disk by the reconcile.
    pub(super) fn is_seen(&self) -> bool {
        self.seen.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Note it found on disk.
    pub(super) fn mark_seen(&self) {
        self.seen.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The stat on record.
    pub(super) fn stat(&self) -> FileStat {
        FileStat {
            kind: self.kind,
            size: self.size,
            mtime_ns: self.mtime_ns,
            mode: self.mode,
            inode: self.inode,
        }
    }

    /// Whether `o` is this live file exactly as recorded: same stat, its
    /// content not read again — nothing to record (as
    /// [`Indexer::observed_record`] would find), with no need to read the
    /// whole record.
    pub(super) fn unchanged_file(&self, o: &Observed) -> bool {
        !self.deleted
            && self.kind == EntryKind::File
            && o.stat == self.stat()
            && o.content.is_none()
            && o.link_target.is_none()
    }
}

/// [`Known`] by folder-relative path, compactly: the paths in one text
/// buffer, the entries in one vector, and a hash table of bare places in
/// them (4 bytes a slot, each hashed from its path when the table grows).
/// At a million files this takes ~70 bytes a path where a map of `String`
/// to [`Known`] took ~130, and a map of hashes to places ~100: most of the
/// catch-up scan's memory at a node's start (issue 21).
#[derive(Default)]
pub(super) struct KnownMap {
    slots: hashbrown::HashTable<u32>,
    paths: crate::fs::scan::PathList,
    known: Vec<Known>,
}

impl std::fmt::Debug for KnownMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The hash [`KnownMap`] places a path by (fixed: the same in every run).
fn path_hash(path: &str) -> u64 {
    use std::hash::BuildHasher;
    #[cfg(test)]
    if tests::ALL_COLLIDE.get() {
        return 0;
    }
    std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
        .hash_one(path)
}

impl KnownMap {
    pub(super) fn new() -> KnownMap {
        KnownMap::default()
    }

    fn index(&self, path: &str) -> Option<usize> {
        self.slots
            .find(path_hash(path), |&i| {
                self.paths.get(i as usize) == Some(path)
            })
            .map(|&i| i as usize)
    }

    pub(super) fn get(&self, path: &str) -> Option<&Known> {
        self.index(path).and_then(|i| self.known.get(i))
    }

    /// Whether `path` is known as a live file of exactly `stat`; if so, it
    /// is noted found (the walk asks this from all cores at once).
    pub(super) fn mark_if_as_recorded(&self, path: &str, stat: &FileStat) -> bool {
        match self.get(path) {
            Some(k) if !k.deleted && k.stat() == *stat => {
                k.mark_seen();
                true
            }
            _ => false,
        }
    }

    pub(super) fn contains_key(&self, path: &str) -> bool {
        self.index(path).is_some()
    }

    /// Know `path` as `known` (over what was known of it).
    pub(super) fn insert(&mut self, path: &str, known: Known) {
        if let Some(i) = self.index(path) {
            self.known[i] = known;
            return;
        }
        // A folder passing 4 billion paths would need wider places; the
        // record store holds far fewer.
        let i = u32::try_from(self.known.len()).unwrap_or(u32::MAX);
        self.paths.push(path);
        crate::core::grow::reserve(&mut self.known, 1);
        self.known.push(known);
        let paths = &self.paths;
        self.slots.insert_unique(path_hash(path), i, |&j| {
            path_hash(paths.get(j as usize).unwrap_or_default())
        });
    }

    /// Every path and what is known of it, in the order they came.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &Known)> {
        self.paths.iter().zip(&self.known)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Known> {
        self.known.iter()
    }

    /// Keep only the paths `keep` accepts.
    pub(super) fn retain(&mut self, keep: impl Fn(&str, &Known) -> bool) {
        let mut kept = KnownMap::new();
        for (p, k) in self.iter().filter(|(p, k)| keep(p, k)) {
            kept.insert(p, k.clone());
        }
        *self = kept;
    }

    /// Add what `other` knows (over what was known).
    pub(super) fn extend(&mut self, other: KnownMap) {
        for (p, k) in other.iter() {
            self.insert(p, k.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Every path hashes alike: the paths kept apart by name are used.
        pub(super) static ALL_COLLIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    fn known(size: u64) -> Known {
        Known::new(
            FileStat {
                kind: EntryKind::File,
                size,
                mtime_ns: 1,
                mode: 0o644,
                inode: 7,
            },
            false,
        )
    }

    fn exercise() {
        let mut m = KnownMap::new();
        for (i, p) in ["a", "d/b é.txt", "", "d/c", "zz"].iter().enumerate() {
            m.insert(p, known(i as u64));
        }
        assert_eq!(m.get("d/c").map(|k| k.stat().size), Some(3));
        assert_eq!(m.get("").map(|k| k.stat().size), Some(2));
        assert!(m.get("d").is_none() && !m.contains_key("d/b"));
        m.insert("d/c", known(30));
        m.get("a").unwrap().mark_seen();
        assert_eq!(m.values().count(), 5, "replaced, not added");
        assert_eq!(m.get("d/c").unwrap().stat().size, 30);
        m.retain(|p, _| p.starts_with("d/") || p == "a");
        let mut other = KnownMap::new();
        other.insert("new", known(9));
        other.insert("a", known(10));
        m.extend(other);
        let all: Vec<(&str, u64, bool)> = m
            .iter()
            .map(|(p, k)| (p, k.stat().size, k.is_seen()))
            .collect();
        assert_eq!(
            all,
            [
                ("a", 10, false),
                ("d/b é.txt", 1, false),
                ("d/c", 30, false),
                ("new", 9, false)
            ]
        );
    }

    /// A path's entry is 32 bytes (with the stat as one `FileStat`, 40).
    #[test]
    fn what_is_known_of_a_path_is_small() {
        assert_eq!(std::mem::size_of::<Known>(), 32);
    }

    /// Issue 21: the compact map answers as a map of paths does, in the
    /// order paths came, and a path whose hash another has is still told
    /// apart (here every path has the same).
    #[test]
    fn the_compact_map_answers_as_a_map_even_when_hashes_collide() {
        exercise();
        ALL_COLLIDE.set(true);
        exercise();
        ALL_COLLIDE.set(false);
    }
}
