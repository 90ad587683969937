//! Where each chunk can be read locally: the index of every shared file's
//! chunks by hash, kept up to date from the records changed since its last
//! look (rebuilt whole only when a place it gave proved stale), the
//! trash's, and those of the versions kept in the version stores.
//!
//! The shared files' places live on disk ([`PlaceTable`], beside the
//! store), with the sequence they reflect: memory does not grow with the
//! folder, and a restart goes on from there instead of reading every
//! record again. The trash's and the kept versions' places stay in memory
//! (a few, and rebuilt as they are).

use super::chunk_build::{BuildGate, BuildState, Entered, WholeBuild};
use super::chunk_places::PlaceTable;
use super::*;
use crate::core::Seq;
use crate::index::history::{Kept, Stored};

/// How a record's chunks are entered.
#[derive(Debug, Clone, Copy)]
enum Enter {
    /// By a whole build: a place already pending stays (as good, or a
    /// placement newer than the build's snapshot).
    Whole,
    /// The newest record of its path: over what is known.
    Newest,
    /// As `Newest`, by a caller holding the store: written to disk later.
    NewestLater,
}

/// Why the chunk index is asked to rebuild.
#[derive(Debug, Clone, Copy)]
pub(super) enum Rebuild {
    /// Routine: when the store changed and 10 s have passed.
    Lazy,
    /// A place it gave no longer held the chunk.
    Stale,
    /// A peer asked for a chunk it does not know.
    Missing,
}

/// Sequences behind the store beyond which a catch-up is not read under
/// the store's lock but handed back, to run beside it like a whole build
/// ([`ChunkIndex::look_with`]): during a sync the quiet catch-up never
/// runs, and a look that found ~84,000 records to read held the store
/// 356 ms (issue 21). A few records are read at once, under the lock.
pub(super) const CATCH_UP_UNDER_STORE_AT_MOST: u64 = 2_048;

/// Whole builds one look for a chunk may run (or wait for) before it
/// settles for what the index has: one is enough unless the store changes
/// in a way that calls for another while it runs.
pub(super) const MAX_BUILDS_PER_FIND: usize = 2;

/// Where a chunk can be read locally: file, offset, length, and the
/// file's stamp when it was indexed.
pub type Place = (PathBuf, u64, u32, Stamp);

/// A file's size, mtime and inode: while they are what the index recorded,
/// the file holds the bytes the index says (the scanner's own test for
/// skipping a re-read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub(super) size: u64,
    pub(super) mtime_ns: i64,
    pub(super) inode: u64,
}

impl Stamp {
    pub(super) fn of_record(r: &FileRecord) -> Stamp {
        Stamp {
            size: r.size,
            mtime_ns: r.mtime_ns,
            inode: r.inode,
        }
    }
    pub(super) fn of_file(f: &std::fs::File) -> Option<Stamp> {
        let st = FileStat::from_metadata(&f.metadata().ok()?);
        Some(Stamp {
            size: st.size,
            mtime_ns: st.mtime_ns,
            inode: st.inode,
        })
    }
}

/// Enter where each chunk of version `k`, kept by the folder at `root`,
/// is into `places`: inside its whole copy (a blob, or a trash file) —
/// over a place known before — or loose in the version store, unless a
/// place is known already (a chunk of a version kept as chunks may be
/// inside one of its bases instead, whose own record says where). The
/// stamps never match a file: every read is checked against the hash.
pub(super) fn enter_kept(places: &mut HashMap<ContentHash, Place>, root: &Path, k: &Kept) {
    let never = Stamp {
        size: u64::MAX,
        mtime_ns: i64::MIN,
        inode: 0,
    };
    let whole = match (&k.stored, k.record.hash) {
        (Stored::Blob, Some(h)) => Some(versions::blob_path(root, &h)),
        (Stored::File(at), _) => Some(root.join(at)),
        (Stored::Chunks { .. }, _) => None,
        _ => return,
    };
    for c in &k.record.chunks {
        match &whole {
            Some(at) => {
                places.insert(c.hash, (at.clone(), c.offset, c.len, never));
            }
            None => {
                let at = versions::chunk_path(root, &c.hash);
                places.entry(c.hash).or_insert((at, 0, c.len, never));
            }
        }
    }
}

/// Where each chunk hash can be read locally: one place per folder that
/// holds it (keyed by the folder's root), so a chunk can be served from a
/// folder shared with the asker even when another folder holds it too.
#[derive(Debug, Default)]
pub struct ChunkIndex {
    pub(super) at_seq: u64,
    pub(super) built: Option<Instant>,
    /// The shared files' chunks, by folder root (on disk when opened with
    /// [`ChunkIndex::open`]).
    pub(super) places: PlaceTable,
    /// Chunks of files moved to the trash by sync: a rename arrives as a
    /// deletion and an addition, and the deletion may be carried out first.
    pub(super) trashed: HashMap<ContentHash, Place>,
    /// Chunks of the versions kept in the folders' version stores: a peer
    /// gathering a version its own edit replaced asks for them.
    pub(super) kept: HashMap<ContentHash, Place>,
    /// Records read one by one since the last whole rebuild.
    pub(super) changes_since_whole: usize,
    /// A whole rebuild ran since this index was made (opened or not).
    pub(super) whole_this_run: bool,
    /// The next look is a whole rebuild.
    whole_due: bool,
    /// The whole build under way, if one is (see [`WholeBuild`]).
    building: Option<Arc<BuildGate>>,
    /// When a place was last looked up (a peer fetching, a file being
    /// assembled): a node serving a sync is not at rest, whatever its own
    /// files do.
    looked_up_at: Option<Instant>,
}

impl ChunkIndex {
    /// The index whose shared files' places are kept in `path` (made if
    /// missing; see `PlaceTable::open`), going on from the sequence they
    /// were recorded at.
    pub fn open(path: &Path) -> ChunkIndex {
        let places = PlaceTable::open(path);
        ChunkIndex {
            at_seq: places.at_seq().unwrap_or(0),
            places,
            ..Default::default()
        }
    }

    /// Bring the index up to date with the store if it changed since the
    /// last look and that was a while ago (see [`ChunkIndex::may_rebuild`]),
    /// a whole build included, here and now (see [`ChunkIndex::look`]).
    #[cfg(test)]
    pub(super) fn refresh(&mut self, store: &Store, why: Rebuild) {
        if let Some(build) = self.look(store, why) {
            build.run_here(self);
        }
    }

    /// Bring the index up to date with the store if it changed since the
    /// last look and that was a while ago (see [`ChunkIndex::may_rebuild`]).
    /// Usually only the records changed since are read (the store finds
    /// them by sequence), so the cost follows the change, not the folder:
    /// a peer asking for the chunks of one new file among a million costs
    /// one record. The whole index is rebuilt when a place it gave proved
    /// stale (a file's old chunks still point at it until then), when the
    /// shared folders changed, and after as many changes as it holds
    /// chunks, so entries that went stale cannot pile up: that build is
    /// begun here (the index cleared, a snapshot taken) and handed back, to
    /// be run without the store ([`WholeBuild`]). Nothing is done while a
    /// build is under way.
    pub(super) fn look(&mut self, store: &Store, why: Rebuild) -> Option<WholeBuild> {
        self.look_with(store, why, false)
    }

    /// [`ChunkIndex::look`]; `beside`: the records changed since are read
    /// by the returned catch-up too, without the store, rather than here
    /// (see [`WholeBuild::since`]) — as they are anyway when more than
    /// [`CATCH_UP_UNDER_STORE_AT_MOST`] sequences came since the last look.
    pub(super) fn look_with(
        &mut self,
        store: &Store,
        why: Rebuild,
        beside: bool,
    ) -> Option<WholeBuild> {
        if self.building().is_some() || !self.may_rebuild(why) {
            return None;
        }
        let seq = store.last_seq().0;
        let stale = matches!(why, Rebuild::Stale);
        // A stale place is worth a whole rebuild if records were read one
        // by one since the last (a changed file's old chunks still point
        // at it), even when nothing changed since the last look.
        if seq == self.at_seq
            && self.built.is_some()
            && !self.whole_due
            && !(stale && self.changes_since_whole > 0)
        {
            // Nothing changed: good for as long as a build would be.
            self.built = Some(Instant::now());
            return None;
        }
        // Each shared folder's root and id.
        let folders: Vec<(PathBuf, String)> = (folder::list(store).unwrap_or_default())
            .into_iter()
            .map(|f| (f.path, f.id))
            .collect();
        let since = Seq(self.at_seq);
        // The kept versions' places are in memory only: after a start,
        // read once whole; the files' places go on from the disk's.
        let first_look = self.built.is_none();
        let whole = self.whole_due
            || self.places.at_seq().is_none_or(|at| at > seq)
            || stale
            || store
                .changed_since(folder::FOLDERS_NS, since)
                .next()
                .is_some()
            || self.changes_since_whole > self.len().max(100_000);
        if whole || first_look {
            self.kept.clear();
            for (root, id) in &folders {
                for (_, k) in crate::index::history::all(store, id).unwrap_or_default() {
                    self.add_kept(root, &k);
                }
            }
        }
        if whole {
            self.places.clear();
            self.changes_since_whole = 0;
            self.whole_due = false;
            // Known at once: a file placed while the build runs goes
            // under its folder's root, where the build will not overwrite
            // it, not under the empty one.
            for (root, _) in &folders {
                self.places.add_root(root);
            }
            let build = WholeBuild::new(store, &folders, seq, why);
            self.building = Some(build.gate.clone());
            return Some(build);
        }
        for (key, entry) in store.changed_since(crate::index::history::HISTORY_NS, since) {
            let (Some((id, _)), Some(value)) = (key.split_once('/'), &entry.value) else {
                continue;
            };
            let (Some((root, _)), Ok(k)) = (
                folders.iter().find(|(_, f)| f == id),
                crate::index::history::decode(&key, value),
            ) else {
                continue;
            };
            self.add_kept(root, &k);
        }
        let mut job = WholeBuild::since(store, &folders, self.at_seq, seq);
        if beside || seq.saturating_sub(self.at_seq) > CATCH_UP_UNDER_STORE_AT_MOST {
            self.building = Some(job.gate.clone());
            return Some(job);
        }
        // Read here, under the store's lock: written to disk later.
        job.under_store = true;
        job.run_here(self);
        None
    }

    /// The gate of the whole build under way, if one is; a build given up
    /// unfinished leaves the next look a whole build.
    pub(super) fn building(&mut self) -> Option<Arc<BuildGate>> {
        match self.building.as_ref().map(|g| g.state()) {
            Some(BuildState::Running) => self.building.clone(),
            Some(BuildState::Abandoned) => {
                self.building = None;
                self.whole_due = true;
                None
            }
            Some(BuildState::Finished) | None => {
                self.building = None;
                None
            }
        }
    }

    /// Enter a batch of a build's records: of a whole build, a place set
    /// meanwhile, by a placement, is newer and stays; of a catch-up, each
    /// record is the newest of its path.
    pub(super) fn enter(&mut self, build: &WholeBuild, batch: Vec<Entered>) {
        let how = match (build.since, build.under_store) {
            (None, _) => Enter::Whole,
            (Some(_), false) => Enter::Newest,
            (Some(_), true) => Enter::NewestLater,
        };
        for (i, rel, rec) in batch {
            if let Some(root) = build.roots.get(i) {
                self.add(root, &rel, &rec, how);
            }
        }
    }

    /// A whole build's records are all in: the places reflect its
    /// snapshot's sequence (what changed since is read at the next look).
    pub(super) fn finish(&mut self, build: WholeBuild) {
        self.building = None;
        self.places.reached(build.seq);
        self.at_seq = build.seq;
        self.built = Some(Instant::now());
        let took_ms = build.started.elapsed().as_millis() as u64;
        if build.since.is_some() {
            self.changes_since_whole += build.read;
            debug!(records = build.read, took_ms, "chunk index caught up");
        } else {
            self.whole_this_run = true;
            self.places.settle();
            info!(why = ?build.why, chunks = self.len(), took_ms, "chunk index rebuilt whole");
        }
        build.done();
    }

    /// Enter the chunks of `rec` (at `rel` in the folder at `root`), if it
    /// is a live file; `how` says whether over a place already known for a
    /// hash (see [`Enter`]: in a whole build, the first file holding a
    /// chunk keeps it).
    fn add(&mut self, root: &Path, rel: &str, rec: &FileRecord, how: Enter) {
        if rec.deleted || rec.kind != EntryKind::File {
            return;
        }
        let Ok(abs) = crate::fs::path::absolute(root, rel) else {
            return;
        };
        let stamp = Stamp::of_record(rec);
        for c in &rec.chunks {
            let place = (abs.clone(), c.offset, c.len, stamp);
            match how {
                Enter::NewestLater => self.places.put_later(root, &c.hash, place),
                Enter::Newest => self.places.put(root, &c.hash, place),
                // A whole build starts empty: a place set earlier in it is
                // either still pending or one as good as this one.
                Enter::Whole if !self.places.is_pending(root, &c.hash) => {
                    self.places.put(root, &c.hash, place);
                }
                Enter::Whole => {}
            }
        }
    }

    /// Enter the chunks of version `k`, kept in the version store of the
    /// folder at `root` (see [`enter_kept`]).
    fn add_kept(&mut self, root: &Path, k: &Kept) {
        enter_kept(&mut self.kept, root, k);
    }

    /// Chunks known, over all folders (an estimate: see
    /// [`PlaceTable::written`]).
    fn len(&self) -> usize {
        self.places.written
    }

    /// The folder roots with places known.
    fn roots(&self) -> Vec<PathBuf> {
        self.places.roots().map(Path::to_path_buf).collect()
    }

    /// Whether `hash` is known in a shared file or a kept version.
    pub(super) fn contains(&mut self, hash: &ContentHash) -> bool {
        self.kept.contains_key(hash)
            || self
                .roots()
                .iter()
                .any(|r| self.places.get(r, hash).is_some())
    }

    /// The root of the folder holding `path` (the one it is under; a file
    /// outside every folder goes under the empty root).
    fn root_for(&self, path: &Path) -> PathBuf {
        self.places
            .roots()
            .find(|r| !r.as_os_str().is_empty() && path.starts_with(r))
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Whether the last build is old enough for a rebuild for `why` (if
    /// the store changed since): a chunk a peer asks for and the index
    /// lacks — whenever (the file was indexed a moment ago); a chunk not
    /// where the index said — at most every 250 ms, so a burst of moved
    /// files costs a few rebuilds, not one each; otherwise every 10 s.
    /// When not, a lookup needs no store (nor its lock).
    pub(super) fn may_rebuild(&self, why: Rebuild) -> bool {
        let limit = match why {
            Rebuild::Missing => Duration::ZERO,
            Rebuild::Stale => Duration::from_millis(250),
            Rebuild::Lazy => Duration::from_secs(10),
        };
        self.built.is_none_or(|t| t.elapsed() >= limit)
    }

    /// Where `hash` may be read locally, as of the last build.
    pub(super) fn places(&mut self, hash: &ContentHash) -> Vec<Place> {
        self.looked_up_at = Some(Instant::now());
        let mut out: Vec<Place> = self
            .roots()
            .iter()
            .filter_map(|r| self.places.get(r, hash))
            .collect();
        out.extend(self.trashed.get(hash).cloned());
        out.extend(self.kept.get(hash).cloned());
        out
    }

    /// Write the places pending on disk once no change came for a while
    /// (see `PlaceTable::flush_when_quiet`).
    pub fn flush_when_quiet(&mut self) {
        self.places.flush_when_quiet();
    }

    /// Pack the places' file at rest (see `PlaceTable::pack_at_rest`) —
    /// unless a place was looked up in the last `quiet`: a sender's own
    /// files do not change while it serves a sync, and a pack holds the
    /// index (1.5 s at a million places) while peers wait for chunks.
    pub fn pack_at_rest(&mut self, quiet: Duration) {
        if self.looked_up_at.is_some_and(|t| t.elapsed() < quiet) {
            return;
        }
        self.places.pack_at_rest();
    }

    /// Whether a look while nothing is written is worth a try: the places
    /// are quiet and the last look is old enough for a lazy one.
    pub(super) fn may_catch_up(&mut self) -> bool {
        self.building().is_none() && self.places.is_quiet() && self.may_rebuild(Rebuild::Lazy)
    }

    /// Record the chunks of a file just placed at `path`.
    pub(super) fn insert(&mut self, path: &Path, record: &FileRecord) {
        let stamp = Stamp::of_record(record);
        let root = self.root_for(path);
        for c in &record.chunks {
            let place = (path.to_path_buf(), c.offset, c.len, stamp);
            self.places.put(&root, &c.hash, place);
        }
    }

    /// Where `hash` may be read locally: a shared file, then the trash.
    /// `serving`: a peer asks for it because this node announced it, so a
    /// miss is worth a rebuild (the file may have been indexed a moment
    /// ago); `stale`: the places given before did not hold it (the file
    /// moved or changed), so the index is rebuilt first. A whole build is
    /// run here, holding the index (see `ChunkIndex::find_or_build`).
    pub fn find(
        &mut self,
        store: &Store,
        hash: &ContentHash,
        serving: bool,
        stale: bool,
    ) -> Vec<Place> {
        let mut stale = stale;
        for _ in 0..MAX_BUILDS_PER_FIND {
            match self.find_or_build(store, hash, serving, stale) {
                Ok(places) => return places,
                Err(build) => build.run_here(self),
            }
            // The build was the fresh look a stale place asked for.
            stale = false;
        }
        self.places(hash)
    }

    /// As [`ChunkIndex::find`], but a whole build it needs is handed back
    /// instead of run (to be run without the store, then asked again).
    pub(super) fn find_or_build(
        &mut self,
        store: &Store,
        hash: &ContentHash,
        serving: bool,
        stale: bool,
    ) -> Result<Vec<Place>, WholeBuild> {
        let why = if stale { Rebuild::Stale } else { Rebuild::Lazy };
        if let Some(build) = self.look(store, why) {
            return Err(build);
        }
        if serving && !self.contains(hash) {
            if let Some(build) = self.look(store, Rebuild::Missing) {
                return Err(build);
            }
            // Still unknown, and the places on disk were never rebuilt in
            // this run: they may be from before something the sequence
            // does not show (a store restored from a copy). Read
            // everything again, once per run.
            if !self.whole_this_run && !self.contains(hash) && self.building().is_none() {
                self.whole_due = true;
                if let Some(build) = self.look(store, Rebuild::Missing) {
                    return Err(build);
                }
            }
        }
        Ok(self.places(hash))
    }

    /// Remember the chunks of `record` at `to` in the trash, where its file
    /// is about to move — before it does: while it moves, a reader finds
    /// it at one of the two places ([`ChunkIndex::places`] lists the old
    /// one first), never at neither.
    pub(super) fn trashing(&mut self, to: &Path, record: &FileRecord) {
        if self.trashed.len() > 1_000_000 {
            self.trashed.clear();
        }
        // A move keeps size, mtime and inode.
        let stamp = Stamp::of_record(record);
        for c in &record.chunks {
            self.trashed
                .insert(c.hash, (to.to_path_buf(), c.offset, c.len, stamp));
        }
    }

    /// The file of `record` moved from `from` (see [`ChunkIndex::trashing`])
    /// — or, if `moved` is false, did not: its chunks are where they were.
    pub(super) fn trashed(&mut self, from: &Path, to: &Path, record: &FileRecord, moved: bool) {
        if moved {
            let root = self.root_for(from);
            for c in &record.chunks {
                if self
                    .places
                    .get(&root, &c.hash)
                    .is_some_and(|(p, ..)| p == from)
                {
                    self.places.remove(&root, &c.hash);
                }
            }
        } else {
            for c in &record.chunks {
                if self.trashed.get(&c.hash).is_some_and(|(p, ..)| p == to) {
                    self.trashed.remove(&c.hash);
                }
            }
        }
    }
}
