//! A whole build of the chunk index ([`super::ChunkIndex`]) — or a
//! catch-up with the records changed since its last look, run the same
//! way while the node is quiet — read from a
//! snapshot of the store and entered a batch at a time, so that neither
//! the store's lock nor the index's is held for its length: at a million
//! files it takes ~15 s, and holding the store that long stalled `status`,
//! the watchers and every commit (issue 21).
//!
//! The snapshot is taken, and the index cleared, in one short hold of both
//! locks ([`super::ChunkIndex::look`]); the records are read and decoded
//! without either; each batch takes the index's lock alone. While a build
//! runs, a place it has entered is given out at once, and a look for a
//! chunk it has not reached waits on its [`BuildGate`] instead of starting
//! another build. A file placed meanwhile is entered by the placement over
//! what the build brings (pending places are never overwritten by it), and
//! the records changed after the snapshot are read one by one at the next
//! look, as after any build.
//!
//! It never decides a place (the index does) and never reads a shared
//! file; a build dropped unfinished (a panic) opens its gate and leaves a
//! whole build due.

use std::sync::{Arc, Condvar, Mutex};

use super::*;
use crate::core::Seq;

/// Records entered per hold of the index's lock (~8 ms of work).
const BATCH: usize = 512;

/// Where a build is: under way, finished, or given up unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BuildState {
    Running,
    Finished,
    Abandoned,
}

/// What a look for a chunk the build has not reached waits on, without
/// either lock.
#[derive(Debug)]
pub(super) struct BuildGate {
    state: Mutex<BuildState>,
    done: Condvar,
}

impl BuildGate {
    fn new() -> Arc<BuildGate> {
        Arc::new(BuildGate {
            state: Mutex::new(BuildState::Running),
            done: Condvar::new(),
        })
    }

    /// Where the build is now.
    pub(super) fn state(&self) -> BuildState {
        *lock(&self.state)
    }

    /// Wait until the build has finished or was given up.
    pub(super) fn wait(&self) {
        let mut state = lock(&self.state);
        while *state == BuildState::Running {
            state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn end(&self, how: BuildState) {
        *lock(&self.state) = how;
        self.done.notify_all();
    }
}

/// Records to read: each item one record read, with what to enter of it
/// (`None`: nothing — a record that does not decode, or of no folder
/// shared here; it still counts as read).
type Records = Box<dyn Iterator<Item = Option<Entered>>>;

/// One record to enter: its folder (an index into [`WholeBuild::roots`]),
/// its path in the folder, the record.
pub(super) type Entered = (usize, String, FileRecord);

/// A whole build, or a catch-up ([`WholeBuild::since`]), under way (see
/// the [module documentation](self)).
pub(super) struct WholeBuild {
    pub(super) why: Rebuild,
    /// `None`: every record (a whole build, into a cleared index);
    /// `Some(seq)`: only those changed after `seq` (a catch-up, over what
    /// the index has).
    pub(super) since: Option<u64>,
    /// Records read so far.
    pub(super) read: usize,
    /// Run by a caller holding the store: places are written to disk
    /// later ([`super::chunk_places::PlaceTable::put_later`]).
    pub(super) under_store: bool,
    /// The store sequence of the snapshot.
    pub(super) seq: u64,
    pub(super) started: Instant,
    /// The shared folders' roots, with their records still to read.
    pub(super) roots: Vec<PathBuf>,
    sources: Vec<Records>,
    pub(super) gate: Arc<BuildGate>,
    finished: bool,
}

impl WholeBuild {
    /// A build of the records of `folders` (root, id) in `store` as they
    /// are now, at sequence `seq`.
    pub(super) fn new(
        store: &Store,
        folders: &[(PathBuf, String)],
        seq: u64,
        why: Rebuild,
    ) -> Self {
        let sources = folders
            .iter()
            .enumerate()
            .map(|(i, (_, id))| {
                let records = folder::records(store, id);
                Box::new(records.map(move |r| r.ok().map(|(rel, rec)| (i, rel, rec)))) as Records
            })
            .collect();
        WholeBuild::of(folders, sources, None, seq, why)
    }

    /// A catch-up: the records changed after `since` (in one pass over
    /// the log's by-sequence table, each counted as read), as the store has
    /// them now (at sequence `seq`), entered over what the index has (the
    /// newest record of a path says what it holds).
    pub(super) fn since(
        store: &Store,
        folders: &[(PathBuf, String)],
        since: u64,
        seq: u64,
    ) -> Self {
        let ids: Vec<String> = folders.iter().map(|(_, id)| id.clone()).collect();
        let changed = store.changed_since(crate::store::ns::FILES, Seq(since));
        let source = changed.map(move |(key, e)| {
            let (id, rel) = key.split_once('/')?;
            let i = ids.iter().position(|f| f == id)?;
            let rec = crate::index::decode_record(e.value.as_deref()?).ok()?;
            Some((i, rel.to_string(), rec))
        });
        WholeBuild::of(
            folders,
            vec![Box::new(source)],
            Some(since),
            seq,
            Rebuild::Lazy,
        )
    }

    fn of(
        folders: &[(PathBuf, String)],
        sources: Vec<Records>,
        since: Option<u64>,
        seq: u64,
        why: Rebuild,
    ) -> Self {
        WholeBuild {
            why,
            since,
            read: 0,
            under_store: false,
            seq,
            started: Instant::now(),
            roots: folders.iter().map(|(root, _)| root.clone()).collect(),
            sources,
            gate: BuildGate::new(),
            finished: false,
        }
    }

    /// The next records to enter, read and decoded without any lock;
    /// `None` once every folder's are read.
    pub(super) fn next_batch(&mut self) -> Option<Vec<Entered>> {
        let mut batch = Vec::with_capacity(BATCH);
        for source in &mut self.sources {
            for entered in source.by_ref() {
                self.read += 1;
                if let Some((i, rel, rec)) = entered
                    && !rec.deleted
                    && rec.kind == EntryKind::File
                {
                    batch.push((i, rel, rec));
                    if batch.len() == BATCH {
                        return Some(batch);
                    }
                }
            }
        }
        (!batch.is_empty()).then_some(batch)
    }

    /// Enter every batch in `index`, held whole (a caller that has it to
    /// itself: tests, a single thread).
    pub(super) fn run_here(mut self, index: &mut ChunkIndex) {
        while let Some(batch) = self.next_batch() {
            index.enter(&self, batch);
        }
        index.finish(self);
    }

    /// Enter every batch in the index behind `chunks`, taking its lock for
    /// each batch alone.
    pub(super) fn run_beside(mut self, chunks: &std::sync::Mutex<ChunkIndex>) {
        while let Some(batch) = self.next_batch() {
            lock(chunks).enter(&self, batch);
        }
        lock(chunks).finish(self);
    }

    /// The build went in whole: its gate opens on a finished build.
    pub(super) fn done(mut self) {
        self.finished = true;
        self.gate.end(BuildState::Finished);
    }
}

impl Drop for WholeBuild {
    fn drop(&mut self) {
        if !self.finished {
            self.gate.end(BuildState::Abandoned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{file_record, put, store_sharing_docs};
    use super::*;

    /// Issue 21: a whole build holds neither lock for its length. Begun,
    /// it has taken its snapshot: the store takes writes, what it entered
    /// is given out at once, a placement made meanwhile is not overwritten
    /// by the older record it reads, a look for a chunk it has not reached
    /// waits for it, and what changed after the snapshot is read at the
    /// next look, one record.
    #[test]
    fn a_whole_build_runs_beside_changes_and_misses_nothing() {
        let (_dir, mut store, root) = store_sharing_docs();
        let n = BATCH + 10;
        for i in 0..n {
            put(
                &mut store,
                &format!("f{i}"),
                &file_record(format!("bytes {i}").as_bytes()),
            );
        }
        let mut ix = ChunkIndex::default();
        let mut build = ix
            .look(&store, Rebuild::Lazy)
            .expect("a first look builds whole");
        assert!(ix.building().is_some());
        assert!(
            ix.look(&store, Rebuild::Missing).is_none(),
            "one build at a time"
        );

        // After the snapshot: a new file, and a file placed elsewhere with
        // the bytes of one the snapshot holds.
        let late = file_record(b"written after the snapshot");
        put(&mut store, "late", &late);
        let seven = file_record(b"bytes 7");
        let mut moved = seven.clone();
        moved.inode = 8;
        ix.insert(&root.join("moved/f7"), &moved);

        let first = build.next_batch().unwrap();
        assert_eq!(first.len(), BATCH);
        ix.enter(&build, first);
        let zero = file_record(b"bytes 0").chunks[0].hash;
        assert_eq!(ix.places(&zero)[0].0, root.join("f0"), "given out at once");

        let gate = ix.building().unwrap();
        let waiter = std::thread::spawn(move || gate.wait());
        build.run_here(&mut ix);
        waiter.join().unwrap();
        assert!(ix.building().is_none());
        assert_eq!(
            ix.places(&seven.chunks[0].hash)[0].0,
            root.join("moved/f7"),
            "the placement is newer than the snapshot"
        );
        let last = file_record(format!("bytes {}", n - 1).as_bytes()).chunks[0].hash;
        assert_eq!(ix.places(&last)[0].0, root.join(format!("f{}", n - 1)));
        assert!(ix.places(&late.chunks[0].hash).is_empty());
        assert_eq!(
            ix.find(&store, &late.chunks[0].hash, true, false)[0].0,
            root.join("late")
        );
        assert_eq!(
            ix.changes_since_whole, 1,
            "only what changed after the snapshot"
        );
    }

    /// A catch-up reads the records changed since the last look without
    /// the store, as a build does, and enters them over what is known:
    /// a file's new content replaces its old place, and only the records
    /// changed are read.
    #[test]
    fn a_catch_up_reads_what_changed_beside_the_store() {
        let (_dir, mut store, root) = store_sharing_docs();
        for i in 0..20 {
            put(
                &mut store,
                &format!("f{i}"),
                &file_record(format!("v1 {i}").as_bytes()),
            );
        }
        let mut ix = ChunkIndex::default();
        ix.refresh(&store, Rebuild::Lazy);
        let edited = file_record(b"v2 of f3");
        put(&mut store, "f3", &edited);
        put(&mut store, "new", &file_record(b"brand new"));
        ix.built = Instant::now().checked_sub(Duration::from_secs(11));
        let job = ix
            .look_with(&store, Rebuild::Lazy, true)
            .expect("a catch-up");
        assert_eq!(job.since, Some(ix.at_seq));
        assert!(ix.places(&edited.chunks[0].hash).is_empty(), "not read yet");
        job.run_here(&mut ix);
        assert!(ix.building().is_none());
        assert_eq!(ix.places(&edited.chunks[0].hash)[0].0, root.join("f3"));
        let new = file_record(b"brand new").chunks[0].hash;
        assert_eq!(ix.places(&new)[0].0, root.join("new"));
        assert_eq!(ix.changes_since_whole, 2, "two records read, not 22");
        assert_eq!(ix.at_seq, store.last_seq().0);
        ix.built = Instant::now().checked_sub(Duration::from_secs(11));
        assert!(
            ix.look_with(&store, Rebuild::Lazy, true).is_none(),
            "nothing new"
        );
    }

    /// A look under the store's lock reads a few records at once, but
    /// hands a long catch-up back, to run beside the store (during a sync
    /// the quiet catch-up never runs, and reading ~84,000 records there
    /// held the store 356 ms).
    #[test]
    fn a_long_catch_up_is_run_beside_the_store_even_when_asked_under_it() {
        let (_dir, mut store, root) = store_sharing_docs();
        put(&mut store, "a", &file_record(b"a"));
        let mut ix = ChunkIndex::default();
        ix.refresh(&store, Rebuild::Lazy);
        put(&mut store, "b", &file_record(b"b"));
        ix.built = Instant::now().checked_sub(Duration::from_secs(11));
        assert!(ix.look(&store, Rebuild::Lazy).is_none(), "read at once");
        let b = file_record(b"b").chunks[0].hash;
        assert_eq!(ix.places(&b)[0].0, root.join("b"));

        let many = CATCH_UP_UNDER_STORE_AT_MOST as usize + 1;
        for i in 0..many {
            put(
                &mut store,
                &format!("m{i}"),
                &file_record(format!("m{i}").as_bytes()),
            );
        }
        ix.built = Instant::now().checked_sub(Duration::from_secs(11));
        let job = ix.look(&store, Rebuild::Lazy).expect("handed back");
        assert_eq!(job.since, Some(ix.at_seq));
        assert!(!job.under_store, "its places are written as it goes");
        assert!(ix.building().is_some(), "a look for a chunk waits for it");
        job.run_here(&mut ix);
        let last = file_record(format!("m{}", many - 1).as_bytes()).chunks[0].hash;
        assert_eq!(ix.places(&last)[0].0, root.join(format!("m{}", many - 1)));
        assert_eq!(ix.at_seq, store.last_seq().0);
    }

    /// A build dropped unfinished (a panic in the thread running it)
    /// opens its gate and leaves the next look a whole build.
    #[test]
    fn a_build_given_up_leaves_a_whole_build_due() {
        let (_dir, mut store, _root) = store_sharing_docs();
        put(&mut store, "a", &file_record(b"a"));
        let mut ix = ChunkIndex::default();
        ix.refresh(&store, Rebuild::Lazy);
        put(&mut store, "b", &file_record(b"b"));
        // (A stale place rebuilds at most every 250 ms.)
        ix.built = Instant::now().checked_sub(Duration::from_secs(1));
        let build = ix
            .look(&store, Rebuild::Stale)
            .expect("a stale place builds whole");
        let gate = ix.building().unwrap();
        drop(build);
        gate.wait();
        assert_eq!(gate.state(), BuildState::Abandoned);
        assert!(ix.building().is_none());
        assert!(
            ix.look(&store, Rebuild::Missing).is_some(),
            "built whole again"
        );
        let b = file_record(b"b").chunks[0].hash;
        assert!(ix.places(&b).is_empty(), "not entered yet");
    }
}
