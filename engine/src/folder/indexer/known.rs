//! What a reconcile knows of each path before it looks at the disk: its
//! stat and whether it is deleted, read from the index in one pass — not
//! the whole record, which is read again from the store only for the paths
//! found changed — and, as the walk finds them, which paths are on disk
//! (marked from all cores at once). Part of the [`Indexer`]; it reads the
//! store, never the disk.

use super::*;
use crate::fs::scan::PackedPaths;

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
                known.insert(&k[strip..], Known::of(&crate::index::read_record(&k, v)?));
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
            Some(v) => crate::index::read_record(&key, &v).map(Some),
            None => Ok(None),
        }
    }
}

/// What a reconcile knows of each path before it looks at the disk (see
/// [`Indexer::known`]): 32 bytes, where the whole record (its chunk list,
/// its version vector) was several times that — at a million files,
/// hundreds of MB during every whole-folder scan. The stat is kept field
/// by field, not as a [`FileStat`], so the path's hash and the flags fit
/// beside it.
#[derive(Debug)]
pub(super) struct Known {
    size: u64,
    mtime_ns: i64,
    inode: u64,
    /// Its path's hash in the [`KnownMap`] (set there).
    path_hash: u32,
    /// The mode's low 16 bits (all a Unix mode has); a mode beyond them
    /// is kept as `u16::MAX`, which then never matches the disk's: the
    /// file is looked at again, never skipped wrongly.
    mode: u16,
    kind: EntryKind,
    /// Found on disk by the reconcile: set by the walk, on all cores, for
    /// a file found as recorded; when it records, for the others. The
    /// record's deletion is bit 1 of the same byte.
    flags: std::sync::atomic::AtomicU8,
}

const SEEN: u8 = 1;
const DELETED: u8 = 2;

impl Clone for Known {
    fn clone(&self) -> Known {
        Known {
            flags: self.flags.load(std::sync::atomic::Ordering::Relaxed).into(),
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
            path_hash: 0,
            mode: u16::try_from(stat.mode).unwrap_or(u16::MAX),
            kind: stat.kind,
            flags: if deleted { DELETED } else { 0 }.into(),
        }
    }

    /// Whether the record is of a deleted path.
    pub(super) fn is_deleted(&self) -> bool {
        self.flags.load(std::sync::atomic::Ordering::Relaxed) & DELETED != 0
    }

    /// Whether it was found on disk by the reconcile.
    pub(super) fn is_seen(&self) -> bool {
        self.flags.load(std::sync::atomic::Ordering::Relaxed) & SEEN != 0
    }

    /// Note it found on disk.
    pub(super) fn mark_seen(&self) {
        self.flags
            .fetch_or(SEEN, std::sync::atomic::Ordering::Relaxed);
    }

    /// The stat on record.
    pub(super) fn stat(&self) -> FileStat {
        FileStat {
            kind: self.kind,
            size: self.size,
            mtime_ns: self.mtime_ns,
            mode: u32::from(self.mode),
            inode: self.inode,
        }
    }

    /// Whether `o` is this live file exactly as recorded: same stat, its
    /// content not read again — nothing to record (as
    /// [`Indexer::observed_record`] would find), with no need to read the
    /// whole record.
    pub(super) fn unchanged_file(&self, o: &Observed) -> bool {
        !self.is_deleted()
            && self.kind == EntryKind::File
            && o.stat == self.stat()
            && o.content.is_none()
            && o.link_target.is_none()
    }
}

/// [`Known`] by folder-relative path, compactly: the paths front-coded
/// in the order they came ([`PackedPaths`]: read from the index in key
/// order, neighbours share most of their bytes), the entries in one
/// vector, and a hash table of bare places in them (4 bytes a slot, the
/// path's hash kept in its entry for when the table grows). At a million
/// files this takes ~50 bytes a path, where a map of `String` to
/// [`Known`] took ~130 and the paths written out whole ~70: most of the
/// catch-up scan's memory at a node's start (issue 21).
#[derive(Default)]
pub(super) struct KnownMap {
    slots: hashbrown::HashTable<u32>,
    paths: PackedPaths,
    known: Vec<Known>,
}

impl std::fmt::Debug for KnownMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The hash [`KnownMap`] places a path by (fixed: the same in every run).
fn path_hash(path: &str) -> u32 {
    use std::hash::BuildHasher;
    #[cfg(test)]
    if tests::ALL_COLLIDE.get() {
        return 0;
    }
    let h = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
        .hash_one(path);
    (h ^ (h >> 32)) as u32
}

/// A 32-bit path hash as the table wants it: its bits in both halves, so
/// both the slot (low bits) and the tag (top bits) come from all of them.
fn spread(h: u32) -> u64 {
    (u64::from(h) << 32) | u64::from(h)
}

impl KnownMap {
    pub(super) fn new() -> KnownMap {
        KnownMap::default()
    }

    fn index(&self, path: &str) -> Option<usize> {
        let h = path_hash(path);
        self.slots
            .find(spread(h), |&i| {
                self.known.get(i as usize).is_some_and(|k| k.path_hash == h)
                    && self.paths.is_at(i as usize, path)
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
            Some(k) if !k.is_deleted() && k.stat() == *stat => {
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
    pub(super) fn insert(&mut self, path: &str, mut known: Known) {
        let h = path_hash(path);
        known.path_hash = h;
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
        let known = &self.known;
        self.slots.insert_unique(spread(h), i, |&j| {
            spread(known.get(j as usize).map_or(0, |k| k.path_hash))
        });
    }

    /// Every path and what is known of it, in the order they came.
    pub(super) fn iter(&self) -> KnownIter<'_, fn(&Known) -> bool> {
        self.iter_where(|_| true)
    }

    /// The paths whose entry `want` accepts, with it, in the order they
    /// came: only those paths are written out.
    pub(super) fn iter_where<F: Fn(&Known) -> bool>(&self, want: F) -> KnownIter<'_, F> {
        KnownIter {
            paths: self.paths.cursor(),
            known: self.known.iter(),
            want,
        }
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Known> {
        self.known.iter()
    }

    /// Keep only the paths `keep` accepts.
    pub(super) fn retain(&mut self, keep: impl Fn(&str, &Known) -> bool) {
        let mut kept = KnownMap::new();
        for (p, k) in self.iter().filter(|(p, k)| keep(p, k)) {
            kept.insert(&p, k.clone());
        }
        *self = kept;
    }

    /// Add what `other` knows (over what was known).
    pub(super) fn extend(&mut self, other: KnownMap) {
        for (p, k) in other.iter() {
            self.insert(&p, k.clone());
        }
    }
}

/// The paths of a [`KnownMap`] whose entry a filter accepts (see
/// [`KnownMap::iter_where`]).
pub(super) struct KnownIter<'a, F> {
    paths: crate::fs::scan::Cursor<'a>,
    known: std::slice::Iter<'a, Known>,
    want: F,
}

impl<'a, F: Fn(&Known) -> bool> Iterator for KnownIter<'a, F> {
    type Item = (String, &'a Known);
    fn next(&mut self) -> Option<(String, &'a Known)> {
        loop {
            let path = self.paths.next_path()?;
            let k = self.known.next()?;
            if (self.want)(k) {
                return Some((path.to_string(), k));
            }
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
        let all: Vec<(String, u64, bool)> = m
            .iter()
            .map(|(p, k)| (p, k.stat().size, k.is_seen()))
            .collect();
        let want = [
            ("a", 10, false),
            ("d/b é.txt", 1, false),
            ("d/c", 30, false),
            ("new", 9, false),
        ];
        let want: Vec<(String, u64, bool)> = want
            .iter()
            .map(|(p, n, s)| (p.to_string(), *n, *s))
            .collect();
        assert_eq!(all, want);

        // Many paths, as the index gives them (in key order, sharing
        // prefixes), some deleted, some found: each answers for itself.
        let mut m = KnownMap::new();
        let path = |i: usize| format!("dir{:03}/file{i:05}.txt", i / 37);
        for i in 0..1_000 {
            let mut k = known(i as u64);
            if i % 3 == 0 {
                k = Known::new(k.stat(), true);
            }
            m.insert(&path(i), k);
        }
        for i in (0..1_000).step_by(5) {
            let stat = m.get(&path(i)).unwrap().stat();
            assert_eq!(m.mark_if_as_recorded(&path(i), &stat), i % 3 != 0, "{i}");
        }
        for i in 0..1_000 {
            let k = m.get(&path(i)).unwrap();
            assert_eq!(k.stat().size, i as u64);
            assert_eq!(
                (k.is_deleted(), k.is_seen()),
                (i % 3 == 0, i % 5 == 0 && i % 3 != 0)
            );
        }
        assert!(m.get("dir000/file00000.tx").is_none() && m.get("dir000/").is_none());
        let gone: Vec<String> = m
            .iter_where(|k| !k.is_deleted() && !k.is_seen())
            .map(|(p, _)| p)
            .collect();
        let want: Vec<String> = (0..1_000)
            .filter(|i| i % 3 != 0 && i % 5 != 0)
            .map(path)
            .collect();
        assert_eq!(gone, want);
    }

    /// A path's entry is 32 bytes, its path's hash included (with the
    /// stat as one `FileStat`, 40 without it).
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
