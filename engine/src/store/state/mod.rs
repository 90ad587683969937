//! # store::state — the materialised state, on disk
//!
//! What every key holds now lives in one redb database, `index.redb` in the
//! store directory, behind a page cache of a size the store chooses: memory
//! is bounded by that cache, not by the number of keys (issue 21). The WAL
//! stays the durable log and the source of sequences; this file is a
//! *derived* copy of it, brought up to date from the log at open.
//!
//! Tables (format version [`FORMAT`], pinned by `data/golden/index-v2.redb`;
//! format 1, `index-v1.redb`, reads as it is and is marked 2 at its
//! first open):
//! - `entries`: `(namespace, key)` → an [`Entry`] in the stored form
//!   (`stored.rs`: its origin device, and numbered devices' ids inside
//!   its value, by number), or, written by format 1, its plain postcard;
//! - `nodes` (optional: absent until an entry names a device):
//!   number → the device's 32-byte id;
//! - `by_seq`: `(namespace, version)` → key, for "what changed since";
//! - `meta`: `"format"` (written when the file is made) and `"applied"`,
//!   the last sequence applied (written with each commit);
//! - `totals` (optional: an index without it is read as one with none
//!   saved): `(namespace, name)` → a postcard `SavedBlob`, the running
//!   totals kept under that name ([`super::tally::SavedTally`]) as they
//!   were at the close that wrote them, with the sequence applied then.
//!   They are taken back at the next open only while that is still the
//!   sequence applied and nothing was applied since — any change, a
//!   replay after a crash included, makes them count again — so they are
//!   never stale.
//!
//! Commits are of two kinds. Changes are gathered in one open write
//! transaction — reads see them through it — and committed without an
//! fsync (redb's `Durability::None`) every so many operations or before a
//! scan; a *checkpoint* (`State::commit` with `durable`) makes
//! everything so far durable at once, after the WAL was flushed. A crash takes the state back
//! to its last checkpoint, and the WAL records after `applied` bring it
//! forward again: the log is compacted only up to a checkpoint.
//!
//! It never decides what a change means and never writes without the WAL
//! having logged the change first: `State::apply` is called by the store
//! after the append succeeded, and replay at open feeds it the log.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

mod backend;
pub(crate) mod compact;
mod handle;
mod iter;
mod read;
mod saved;
mod stored;
mod write;

use backend::Backend;
use handle::{closed, open_db};
use iter::EntryTable;
pub use iter::{Changed, Scan};
use write::{apply_in, written};

use super::tally::Tallies;
use super::{Entry, Op, StoreError, io_err};
use crate::core::Seq;
use crate::wal::Storage;

/// Version of the tables' layout and encodings: 2 since entries name
/// their origin by number (`stored.rs`); an index of format 1 reads as it
/// is and is marked 2 at its first open.
pub const FORMAT: u64 = 2;
/// The database's file name in the store directory.
pub const FILE_NAME: &str = "index.redb";

const ENTRIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("entries");
const BY_SEQ: TableDefinition<(&str, u64), &str> = TableDefinition::new("by_seq");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const TOTALS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("totals");

/// A redb failure as a [`StoreError`], saying what was being done.
pub(super) fn index_err(op: &'static str) -> impl FnOnce(redb::Error) -> StoreError {
    move |e| StoreError::Index {
        op,
        reason: e.to_string(),
        corrupt: matches!(
            e,
            redb::Error::Corrupted(_) | redb::Error::UpgradeRequired(_)
        ),
    }
}

fn err<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| index_err(op)(e.into())
}

/// The on-disk state. See the [module documentation](self).
pub(super) struct State {
    /// `None` only after [`State::reopen`] failed to open it again;
    /// never closed once abandoned ([`State::abandon`]).
    db: Option<Database>,
    /// Set by [`State::abandon`].
    abandoned: AtomicBool,
    /// Operations applied and not yet committed.
    uncommitted: AtomicU64,
    /// The sequence the open transaction brings the state to, recorded in
    /// `meta` when it commits (not once per operation).
    applied: AtomicU64,
    /// The sequence the index held when it was opened.
    opened_at: AtomicU64,
    /// Commits without an fsync since the last durable one.
    commits: AtomicU64,
    /// What the open write transaction changed, for point reads that need
    /// not go through it (see [`State::get`]).
    recent: Mutex<Recent>,
    /// The entries table as of the last commit, kept open for point reads.
    committed: Mutex<Option<EntryTable>>,
    /// Changes applied and not yet committed (see [`State::apply`]).
    pending: Mutex<Option<WriteTransaction>>,
    /// Running totals per namespace ([`super::Store::tally`]).
    /// Shared with [`super::TallyGate`] and [`super::TallyWalk`], which
    /// must not hold the state itself (compaction needs it alone).
    pub(super) tallies: Arc<Tallies>,
    /// The first read failure, kept so the next write fails with it.
    pub(super) read_failure: Mutex<Option<String>>,
    /// When the file is next worth compacting.
    compactor: Option<compact::Compactor>,
    /// Operations applied since the compactor last heard of them.
    changes: AtomicU64,
    /// Running totals saved at the last close and valid now, by namespace
    /// and name: emptied by the first change applied.
    saved: Mutex<std::collections::HashMap<(String, String), super::tally::SavedGroups>>,
    /// The devices entries name, by number (see `stored.rs`).
    nodes: std::sync::RwLock<stored::Nodes>,
}

impl State {
    /// Open (or create) the database at `path` with a page cache of
    /// `cache_bytes`. Returns the state and the last sequence it holds,
    /// `None` for a database that was never written.
    pub(super) fn open(
        storage: &dyn Storage,
        path: &Path,
        cache_bytes: usize,
    ) -> Result<(State, Option<Seq>), StoreError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let names = storage.list(dir).map_err(io_err("list", dir))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(FILE_NAME);
        if !names.iter().any(|n| n == name) {
            // Made under a temporary name and renamed once whole: a crash
            // or a failed write while creating it leaves no half a
            // database under the real name.
            let tmp = path.with_file_name(format!("{name}.new"));
            let file = storage.open_paged(&tmp).map_err(io_err("create", &tmp))?;
            file.set_len(0).map_err(io_err("create", &tmp))?;
            let db = redb::Builder::new()
                .create_with_backend(Backend(file))
                .map_err(err("create the index"))?;
            // The format is written once, here (a durable commit).
            let txn = db.begin_write().map_err(err("create the index"))?;
            txn.open_table(META)
                .map_err(err("create the index"))?
                .insert("format", FORMAT)
                .map_err(err("create the index"))?;
            txn.commit().map_err(err("create the index"))?;
            drop(db);
            storage
                .open_paged(&tmp)
                .and_then(|f| f.sync())
                .map_err(io_err("fsync", &tmp))?;
            storage.rename(&tmp, path).map_err(io_err("rename", &tmp))?;
            storage
                .sync_dir(dir)
                .map_err(io_err("sync directory", dir))?;
        }
        let db = open_db(storage, path, cache_bytes)?;
        let mut state = State {
            db: Some(db),
            abandoned: AtomicBool::new(false),
            uncommitted: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            opened_at: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            recent: Mutex::new(Recent::default()),
            committed: Mutex::new(None),
            pending: Mutex::new(None),
            tallies: Arc::default(),
            read_failure: Mutex::new(None),
            compactor: None,
            changes: AtomicU64::new(0),
            saved: Mutex::default(),
            nodes: Default::default(),
        };
        let read = state.db()?.begin_read().map_err(err("read the index"))?;
        let (format, applied) = match read.open_table(META) {
            Ok(meta) => (
                meta.get("format")
                    .map_err(err("read the index"))?
                    .map(|v| v.value()),
                meta.get("applied")
                    .map_err(err("read the index"))?
                    .map(|v| Seq(v.value())),
            ),
            Err(redb::TableError::TableDoesNotExist(_)) => (None, None),
            Err(e) => return Err(err("read the index")(e)),
        };
        if let Some(f) = format
            && f != FORMAT
            && f != 1
        {
            return Err(StoreError::Corruption(format!(
                "{} has index format {f}; this release reads formats 1 and {FORMAT}",
                path.display()
            )));
        }
        if let Some(seq) = applied {
            state.applied.store(seq.0, Ordering::SeqCst);
            state.opened_at.store(seq.0, Ordering::SeqCst);
            *crate::core::lock(&state.saved) = saved::saved_totals(&read, seq);
        }
        *state.nodes.get_mut().unwrap_or_else(|p| p.into_inner()) = stored::Nodes::load(&read)?;
        drop(read);
        if format == Some(1) {
            // Format 1 reads as format 2 (see `stored.rs`); marked so that
            // an older release refuses it once it holds entries it cannot
            // read. A durable commit of its own, before anything else.
            let txn = state
                .db()?
                .begin_write()
                .map_err(err("mark the index's format"))?;
            txn.open_table(META)
                .map_err(err("mark the index's format"))?
                .insert("format", FORMAT)
                .map_err(err("mark the index's format"))?;
            txn.commit().map_err(err("mark the index's format"))?;
            tracing::info!(file = %path.display(), "index format 1 marked as format {FORMAT}");
        }
        Ok((state, applied))
    }

    /// The open write transaction, begun if there is none.
    fn with_pending<R>(
        &self,
        work: impl FnOnce(&WriteTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut pending = crate::core::lock(&self.pending);
        if pending.is_none() {
            let mut txn = self.db()?.begin_write().map_err(err("write the index"))?;
            txn.set_durability(Durability::None)
                .map_err(err("write the index"))?;
            // Each checkpoint records the allocator's state: an open after
            // a crash then does not rebuild it from every page.
            txn.set_quick_repair(false);
            *pending = Some(txn);
        }
        match pending.as_ref() {
            Some(txn) => work(txn),
            None => Err(StoreError::Corruption("index transaction vanished".into())),
        }
    }

    /// Number the devices `ids` not numbered yet, in the open write
    /// transaction (see `stored.rs`).
    pub(super) fn know_devices(&self, ids: &[crate::core::NodeId]) -> Result<(), StoreError> {
        let known = |nodes: &stored::Nodes| ids.iter().all(|id| nodes.is_numbered(id));
        if known(&self.nodes.read().unwrap_or_else(|p| p.into_inner())) {
            return Ok(());
        }
        self.with_pending(|txn| {
            let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
            for id in ids {
                nodes.number(txn, *id)?;
            }
            Ok(())
        })
    }

    /// Apply `op`, logged at `seq`, to the open write transaction.
    pub(super) fn apply(&self, seq: Seq, op: Op) -> Result<(), StoreError> {
        // Saved totals are of the index before any change: not any more.
        {
            let mut saved = crate::core::lock(&self.saved);
            if !saved.is_empty() {
                saved.clear();
            }
        }
        let became = written(seq, &op);
        self.with_pending(|txn| {
            let mut tallies = crate::core::lock(&self.tallies.kept);
            let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
            apply_in(txn, &op, became.as_ref(), &mut tallies, &mut nodes)
        })?;
        self.applied.store(seq.0, Ordering::SeqCst);
        let mut recent = crate::core::lock(&self.recent);
        match became {
            Some((ns, key, entry)) => {
                recent.entries.entry(ns).or_default().insert(key, entry);
            }
            // Forgetting and purging change keys it may or may not list:
            // until the next commit, reads go through the transaction.
            None => {
                recent.entries.clear();
                recent.complete = false;
            }
        }
        self.uncommitted.fetch_add(1, Ordering::SeqCst);
        self.changes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Operations applied since the last commit.
    pub(super) fn uncommitted(&self) -> u64 {
        self.uncommitted.load(Ordering::SeqCst)
    }

    /// Commits without an fsync since the last durable one: each holds
    /// the pages it replaced until then, so the file grows with them.
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    /// Commit what was applied: without an fsync, or, with `durable`, as a
    /// checkpoint that makes it and every earlier commit durable. With
    /// nothing applied, a durable commit still makes earlier ones durable.
    pub(super) fn commit(&self, durable: bool) -> Result<(), StoreError> {
        if self.abandoned.load(Ordering::SeqCst) {
            return Err(StoreError::Index {
                op: "commit to the index",
                reason: "abandoned after a failure; reopen the store".into(),
                corrupt: false,
            });
        }
        let taken = crate::core::lock(&self.pending).take();
        let txn = match (taken, durable) {
            (Some(mut txn), true) => {
                txn.set_durability(Durability::Immediate)
                    .map_err(err("checkpoint the index"))?;
                txn
            }
            (Some(txn), false) => txn,
            (None, true) => self
                .db()?
                .begin_write()
                .map_err(err("checkpoint the index"))?,
            (None, false) => return Ok(()),
        };
        if self.uncommitted() > 0 {
            txn.open_table(META)
                .map_err(err("commit to the index"))?
                .insert("applied", self.applied.load(Ordering::SeqCst))
                .map_err(err("commit to the index"))?;
        }
        txn.commit().map_err(err(if durable {
            "checkpoint the index"
        } else {
            "commit to the index"
        }))?;
        self.uncommitted.store(0, Ordering::SeqCst);
        *crate::core::lock(&self.recent) = Recent::default();
        *crate::core::lock(&self.committed) = None;
        if durable {
            self.commits.store(0, Ordering::SeqCst);
        } else {
            self.commits.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Give back the disk space of free and half-empty pages once they
    /// pass half of what is stored (see [`compact::Compactor`]), looking
    /// from a file of `from_bytes` on, once it changed by a quarter of the
    /// entries it holds; the file holds `file_bytes`. Only right after a
    /// checkpoint: nothing pending, everything durable.
    pub(super) fn compact_when_wasteful(
        &mut self,
        from_bytes: u64,
        file_bytes: u64,
    ) -> Result<Option<compact::Compacted>, StoreError> {
        if self.abandoned.load(Ordering::SeqCst)
            || self.pending.get_mut().map_or(true, |p| p.is_some())
        {
            return Ok(None);
        }
        let entries = self.count();
        // One more durable commit: redb frees the pages a durable commit
        // replaced only at the next one.
        self.commit(true)?;
        // The reader kept for point reads (`count` too) is a
        // transaction: closed first.
        if let Ok(committed) = self.committed.get_mut() {
            *committed = None;
        }
        let changes = self.changes.swap(0, Ordering::Relaxed);
        // Packed whole: it runs when the store closes or a node is at
        // rest, where the time it takes (~0.7 s at 200,000 files) holds
        // little up.
        let compactor = self.compactor.get_or_insert_with(|| {
            // Once the file is half as large again as its data: what
            // a sync leaves (109 MB for 59 MB at 200,000 files).
            compact::Compactor::new(from_bytes, redb::CompactionMode::Maximum, 50)
        });
        compactor.changed(changes);
        let Some(db) = self.db.as_mut() else {
            return Ok(None);
        };
        compactor
            .maybe(db, file_bytes, entries)
            .map_err(index_err("compact the index"))
    }

    /// redb's check of every page's checksum and of the tree structure.
    pub(super) fn check_integrity(&mut self) -> Result<bool, StoreError> {
        self.commit(false)?;
        let Some(db) = self.db.as_mut() else {
            return Err(closed("check the index"));
        };
        db.check_integrity().map_err(err("check the index"))
    }

    /// Give up on everything since the last checkpoint: the log failed, or
    /// this state did, after changes were applied here that the log will
    /// not hold. Uncommitted changes are dropped, nothing more is
    /// committed, and the database is never closed (closing would make the
    /// commits since the checkpoint durable): the next open starts from
    /// the checkpoint and replays the log, exactly as after a crash.
    pub(super) fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
        drop(crate::core::lock(&self.pending).take());
        *crate::core::lock(&self.recent) = Recent::default();
    }
}

impl Drop for State {
    fn drop(&mut self) {
        if self.abandoned.load(Ordering::SeqCst) {
            // Closing would make every commit since the last checkpoint
            // durable, some of which the log no longer holds: left as a
            // crash leaves it, to be opened at that checkpoint.
            std::mem::forget(self.db.take());
            return;
        }
        // The running totals kept under a name go with the last commit,
        // so the next open need not count them again.
        if let Err(e) = self.save_totals() {
            tracing::warn!(error = %e, "store index: running totals not saved at close");
        }
        // What was applied is committed; redb makes it durable when the
        // database closes. The store flushed the WAL before (see
        // `Store::drop`), so the state never runs ahead of the log.
        if let Err(e) = self.commit(false) {
            tracing::warn!(error = %e, "store index: last changes not committed at close");
        }
        drop(self.db.take());
    }
}

/// The changes of the open write transaction, by key (see [`State::get`]).
struct Recent {
    /// By namespace, then key (looked up without building a key).
    entries: std::collections::HashMap<String, std::collections::HashMap<String, Entry>>,
    /// False once a forget or purge changed keys `entries` does not list.
    complete: bool,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            entries: Default::default(),
            complete: true,
        }
    }
}
