//! # store — the current local state
//!
//! The store answers: *what is the value now?* It is a key/value map split
//! into namespaces (`files` for the file index, `app` for SDK data, …). Each
//! [`Entry`] carries the WAL sequence that last changed it (its version), a
//! wall-clock timestamp and the node it came from. A removal leaves a
//! *tombstone* (an entry without a value) so the deletion itself can be
//! synced; tombstones are purged later by an explicit, logged operation.
//!
//! ## Write path
//!
//! Every change is an [`Op`]. The on-disk index ([`state`]) takes it
//! first, in a transaction not yet committed, then the [`Wal`] appends it
//! (durable as the `Durability` policy says); only then can a commit of
//! the index include it. Whatever fails, the outcome is the log's: a change
//! the index refused is never logged, and if the append fails the index
//! gives up everything since its last checkpoint (it is not closed, so the
//! next open starts there and replays the log) and the error is returned.
//!
//! ## Where the state lives, and recovery
//!
//! The state is an on-disk B-tree (`index.redb`, see [`state`]) read through
//! a page cache of [`StoreConfig::cache_bytes`]: memory does not grow with
//! the number of keys. Changes reach it without an fsync; a *checkpoint*
//! ([`Store::checkpoint`], and [`Store::maybe_checkpoint`] every
//! [`StoreConfig::checkpoint_after_ops`] operations or
//! [`StoreConfig::checkpoint_after_commits`] commits) flushes the WAL, makes
//! the index durable and compacts the WAL up to it. At open the index is
//! back at its last checkpoint at worst, and the WAL records after it are
//! replayed. When the log cannot supply some records the index lacks,
//! opening fails with [`StoreError::Corruption`] rather than inventing
//! state. A home from a release that kept snapshots (`snapshots/`) is
//! migrated at its first open: the newest usable snapshot is loaded into a
//! new index, the WAL replayed, a checkpoint made and the snapshots removed.
//!
//! ```
//! use softadastra::store::{Store, StoreConfig, ns};
//! let dir = tempfile::tempdir().unwrap();
//! let (mut store, _) = Store::open_dir(StoreConfig::new(dir.path())).unwrap();
//! store.put(ns::APP, "user:1", b"Gaspard".to_vec()).unwrap();
//! store.put(ns::APP, "user:1", b"Softadastra".to_vec()).unwrap();
//! assert_eq!(store.get(ns::APP, "user:1").unwrap().value.as_deref(), Some(&b"Softadastra"[..]));
//! store.remove(ns::APP, "user:1").unwrap();
//! assert!(!store.contains(ns::APP, "user:1"));
//! ```

//! This file holds the store itself: its write path and its reads. The
//! types of what it holds and how it changes are in `op.rs`, its failures
//! in `error.rs`, its settings in `config.rs`, opening it in `open.rs`,
//! the on-disk tables in [`state`], checkpoints and compaction in
//! `checkpoint.rs`, the format of the snapshots older releases wrote (read
//! once, to migrate) in [`snapshot`], the tests in `tests.rs`.

mod config;
mod error;
mod op;
mod open;
pub mod repair;
pub mod snapshot;
pub mod state;
mod tally;

pub use config::{KEPT_ASIDE, StoreConfig, StoreRecovery};
pub use error::StoreError;
use error::io_err;
use op::validate;
pub use op::{Entry, Op};
pub(crate) use open::lock_dir;

pub use checkpoint::CheckpointInfo;
pub use repair::{RepairReport, repair};
pub use tally::{SavedTally, TallyFn, Totals};

use std::sync::Arc;
use std::time::Instant;

use crate::core::{Clock, Seq, SystemClock, Timestamp};
use crate::wal::{PendingSync, StdStorage, Storage, Wal, WalConfig, WalError};

/// Well-known namespaces.
pub mod ns {
    /// The file index of shared folders.
    pub const FILES: &str = "files";
    /// Application key/values written through the SDK and the CLI.
    pub const APP: &str = "app";
}

/// WAL record kind for a postcard-encoded [`Op`] (version 1 of the op encoding).
pub const OP_RECORD_KIND: u8 = 1;

/// The key/value store. See the [module documentation](self).
pub struct Store {
    wal: Wal,
    state: Arc<state::State>,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    config: StoreConfig,
    checkpoint_seq: Seq,
    /// The digest of the setup last kept aside (or found there at open):
    /// a checkpoint writes `aside.bin` only when it changed.
    aside_digest: Option<[u8; 32]>,
    /// Inside [`Store::hold`]: commits wait for its end.
    holding: bool,
    /// Held while open (see [`Store::open_dir`]).
    lock: Option<std::fs::File>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.config.dir)
            .field("wal", &self.wal)
            .field("checkpoint_seq", &self.checkpoint_seq)
            .finish()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // A process that changed the index by a quarter of what it holds
        // (a first index of a folder, a sync) leaves it compacted, and the
        // log given back.
        if self.compaction_due() {
            match self.compact_when_wasteful() {
                Ok(_) => return,
                Err(e) => tracing::warn!(error = %e, "the index was not compacted at close"),
            }
        }
        // The index is made durable when it closes (after this), so the
        // log must be first: the index never holds a change the log lost.
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "WAL not flushed at close");
        }
    }
}

impl Store {
    /// Set `key` in `ns`. Returns the operation's sequence.
    pub fn put(&mut self, ns: &str, key: &str, value: Vec<u8>) -> Result<Seq, StoreError> {
        let op = Op::Put {
            ns: ns.to_string(),
            key: key.to_string(),
            value,
            origin: self.config.node,
            timestamp: self.clock.wall(),
        };
        self.apply(op)
    }

    /// Remove `key` from `ns`, leaving a tombstone. Returns `None` (and logs
    /// nothing) when the key has no live value.
    pub fn remove(&mut self, ns: &str, key: &str) -> Result<Option<Seq>, StoreError> {
        if !self.contains(ns, key) {
            return Ok(None);
        }
        let op = Op::Remove {
            ns: ns.to_string(),
            key: key.to_string(),
            origin: self.config.node,
            timestamp: self.clock.wall(),
        };
        self.apply(op).map(Some)
    }

    /// Forget tombstones in `ns` older than `before` (logged, so replay agrees).
    pub fn purge_tombstones(&mut self, ns: &str, before: Timestamp) -> Result<Seq, StoreError> {
        self.apply(Op::PurgeTombstones {
            ns: ns.to_string(),
            before,
        })
    }

    /// Log and apply one operation.
    pub fn apply(&mut self, op: Op) -> Result<Seq, StoreError> {
        self.apply_batch(vec![op]).map(|seqs| seqs[0])
    }

    /// Apply `ops` in order as batches of at most `per_batch` (each one
    /// [`Store::apply_batch`]: one fsync): a long run of changes made
    /// durable a batch at a time. On a failure, the batches before it
    /// stay applied.
    pub fn apply_in_batches(&mut self, ops: Vec<Op>, per_batch: usize) -> Result<(), StoreError> {
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            self.apply_batch(ops.by_ref().take(per_batch.max(1)).collect())?;
        }
        Ok(())
    }

    /// Log several operations durably together (one fsync), then apply them.
    /// Either all are accepted or none is.
    pub fn apply_batch(&mut self, ops: Vec<Op>) -> Result<Vec<Seq>, StoreError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        for op in &ops {
            validate(op)?;
        }
        self.wal.check_usable()?;
        // A read that failed since the last write: what was decided on it
        // is not logged.
        self.state.take_read_failure()?;
        let payloads = ops
            .iter()
            .map(postcard::to_allocvec)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Corruption(e.to_string()))?;
        let records: Vec<(u8, &[u8])> = payloads
            .iter()
            .map(|p| (OP_RECORD_KIND, p.as_slice()))
            .collect();
        // The index takes the changes first, under the sequences the log
        // will give them, so that whatever fails, the outcome is the log's:
        // a change the index refused is never logged, and one the log
        // refused is dropped from the index with everything since the
        // last checkpoint (see `state::State::abandon`).
        let first = self.wal.next_seq();
        let seqs: Vec<Seq> = (0..ops.len() as u64).map(|i| Seq(first.0 + i)).collect();
        for (op, seq) in ops.into_iter().zip(&seqs) {
            if let Err(e) = self.state.apply(*seq, op) {
                return Err(self.index_failed(e));
            }
        }
        match self.wal.append_batch(&records) {
            Ok(range) if *range.start() == first => {}
            Ok(range) => {
                return Err(self.index_failed(StoreError::Corruption(format!(
                    "the log gave sequence {} where {first} was expected",
                    range.start()
                ))));
            }
            Err(e) => return Err(self.wal_failed(e)),
        }
        if !self.holding {
            self.maybe_commit()?;
        }
        Ok(seqs)
    }

    /// The index failed: changes it may hold are not all in the log, or
    /// the log holds some it does not. Neither takes more changes; the
    /// next open starts from the last checkpoint and replays the log.
    fn index_failed(&mut self, e: StoreError) -> StoreError {
        self.state.abandon();
        self.wal.poison(format!("the store's index failed: {e}"));
        e
    }

    /// The log failed: it cut back what it had not made durable, so the
    /// index gives up what it took since its last checkpoint.
    fn wal_failed(&mut self, e: WalError) -> StoreError {
        self.state.abandon();
        StoreError::Wal(e)
    }

    /// Commit the index once enough changes wait (they are in the log
    /// already: a commit only bounds what the open transaction holds in
    /// memory).
    fn commit_when_due(&mut self) -> Result<(), StoreError> {
        if self.state.uncommitted() >= COMMIT_AFTER_OPS
            && let Err(e) = self.state.commit(false)
        {
            return Err(self.index_failed(e));
        }
        Ok(())
    }

    /// [`Store::commit_when_due`], and checkpoint once enough commits
    /// were made.
    fn maybe_commit(&mut self) -> Result<(), StoreError> {
        self.commit_when_due()?;
        if self.state.commits() >= self.config.checkpoint_after_commits
            && !self.wal.has_pending_sync()
        {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// The live entry for `key` (not a tombstone).
    pub fn get(&self, ns: &str, key: &str) -> Option<Entry> {
        self.entry(ns, key).filter(|e| !e.is_tombstone())
    }

    /// The entry for `key`, tombstones included.
    pub fn entry(&self, ns: &str, key: &str) -> Option<Entry> {
        self.state.get(ns, key)
    }

    /// The live value of `key`, if it has one.
    pub fn value(&self, ns: &str, key: &str) -> Option<Vec<u8>> {
        self.get(ns, key).and_then(|e| e.value)
    }

    /// Whether `key` has a live value.
    pub fn contains(&self, ns: &str, key: &str) -> bool {
        self.get(ns, key).is_some()
    }

    /// Entries of `ns` whose key starts with `prefix`, in key order,
    /// tombstones included. The iterator reads the index as it was when
    /// made; a read failure ends it early and fails the next write.
    pub fn scan_prefix(
        &self,
        ns: &str,
        prefix: &str,
    ) -> impl Iterator<Item = (String, Entry)> + use<> {
        self.state.scan(ns, prefix)
    }

    /// Entries of `ns` from the first key at or after `start`, in key
    /// order, tombstones included (as [`Store::scan_prefix`], resumed).
    pub fn scan_from(
        &self,
        ns: &str,
        start: &str,
    ) -> impl Iterator<Item = (String, Entry)> + use<> {
        self.state.scan_from(ns, start, "")
    }

    /// Entries of `ns` last changed after `since`, oldest change first,
    /// tombstones included: what a peer that has seen up to `since` lacks,
    /// found without a walk of the whole namespace.
    pub fn changed_since(
        &self,
        ns: &str,
        since: Seq,
    ) -> impl Iterator<Item = (String, Entry)> + use<> {
        self.state.changed_since(ns, since)
    }

    /// Live entries of `ns` whose key starts with `prefix`, in key order.
    pub fn list(&self, ns: &str, prefix: &str) -> impl Iterator<Item = (String, Entry)> + use<> {
        self.scan_prefix(ns, prefix)
            .filter(|(_, e)| !e.is_tombstone())
    }

    /// The running totals of `group` (keys `<group>/…`; `None`: every
    /// group) in `ns`, counted by `count`: the first call for a namespace
    /// and counting function walks the namespace once, later ones cost
    /// nothing — the totals are kept as entries change. A namespace may be
    /// counted several ways, each function keeping totals of its own.
    /// Totals still being counted ([`Store::tally_later`]) are waited for.
    pub fn tally(&mut self, ns: &str, group: Option<&str>, count: TallyFn) -> Totals {
        if let Some(walk) = self.keep_totals(ns, &[(count, None)]) {
            walk.run();
        }
        self.state.tallies.totals(ns, group, count)
    }

    /// Keep the running totals of `ns` by each of `counts` from now on,
    /// saved at close under their names and taken back at the next open
    /// when the index did not change in between; those neither kept nor
    /// taken back are counted by the returned walk, one for all of them,
    /// over a snapshot of now — to be run without the store (at a million
    /// entries it takes a second, which sync and the watchers need not
    /// wait for). Until it has run, [`Store::tally`] waits for them, and
    /// so does [`TallyGate::wait`].
    pub fn tally_later(&mut self, ns: &str, counts: &[SavedTally]) -> Option<TallyWalk> {
        let counts: Vec<(TallyFn, Option<&'static str>)> =
            counts.iter().map(|c| (c.count, Some(c.name))).collect();
        self.keep_totals(ns, &counts)
    }

    /// Keep the running totals of `ns` by those of `counts` that were
    /// saved at the last close and are still valid (see
    /// [`Store::tally_later`]), counting none: a process that writes the
    /// store without needing the totals (a CLI command) keeps them true
    /// and saved, so the agent's next start need not count them.
    pub fn keep_saved_totals(&mut self, ns: &str, counts: &[SavedTally]) {
        let mut tallies = crate::core::lock(&self.state.tallies.kept);
        let kept = tallies.entry(ns.to_string()).or_default();
        for c in counts {
            self.kept_or_taken_back(kept, ns, c.count, Some(c.name));
        }
    }

    /// Whether the totals of `ns` by `count` are in `kept` already, or
    /// are now: taken back as saved under `name` at the last close.
    fn kept_or_taken_back(
        &self,
        kept: &mut Vec<tally::Tally>,
        ns: &str,
        count: TallyFn,
        name: Option<&'static str>,
    ) -> bool {
        if kept.iter().any(|t| t.counts_with(count)) {
            return true;
        }
        let Some(name) = name else {
            return false;
        };
        let Some(groups) = self.state.take_saved(ns, name) else {
            return false;
        };
        tracing::debug!(%ns, name, "running totals taken back as saved");
        kept.push(tally::Tally::restored(SavedTally { name, count }, groups));
        true
    }

    /// See [`Store::tally_later`]; a count without a name is not saved.
    fn keep_totals(
        &mut self,
        ns: &str,
        counts: &[(TallyFn, Option<&'static str>)],
    ) -> Option<TallyWalk> {
        let missing: Vec<TallyFn> = {
            let mut tallies = crate::core::lock(&self.state.tallies.kept);
            let kept = tallies.entry(ns.to_string()).or_default();
            let mut missing = Vec::new();
            for &(count, name) in counts {
                if self.kept_or_taken_back(kept, ns, count, name) {
                    continue;
                }
                // Kept from now: changes made while the snapshot is
                // counted are in them already.
                kept.push(tally::Tally::building(count, name));
                missing.push(count);
            }
            missing
        };
        (!missing.is_empty()).then(|| TallyWalk {
            tallies: self.state.tallies.clone(),
            ns: ns.to_string(),
            counts: missing,
            snapshot: Some(Box::new(self.scan_prefix(ns, ""))),
        })
    }

    /// Something to wait on, without the store, until every running total
    /// is counted (see [`Store::tally_later`]).
    pub fn tally_gate(&self) -> TallyGate {
        TallyGate(self.state.tallies.clone())
    }

    /// Number of live entries in `ns`.
    pub fn len(&self, ns: &str) -> usize {
        self.list(ns, "").count()
    }

    /// Whether `ns` has no live entries.
    pub fn is_empty(&self, ns: &str) -> bool {
        self.list(ns, "").next().is_none()
    }

    /// Namespaces that hold entries.
    pub fn namespaces(&self) -> Vec<String> {
        self.state.namespaces()
    }

    /// Run `work` with the log's fsyncs held: everything it applies is
    /// logged and applied at once, and made durable together by one fsync
    /// when it returns (group commit). The caller must not reveal those
    /// changes before this returns `Ok`. See [`Wal::hold`].
    pub fn hold<R>(&mut self, work: impl FnOnce(&mut Store) -> R) -> Result<R, StoreError> {
        let was = self.wal.hold_begin();
        let outer = std::mem::replace(&mut self.holding, true);
        let out = work(self);
        self.holding = outer;
        self.wal.hold_end(was).map_err(|e| self.wal_failed(e))?;
        if !outer {
            self.maybe_commit()?;
        }
        Ok(out)
    }

    /// As [`Store::hold`], without the fsync at the end: it is handed out
    /// to be run once the caller has let go of the store (see
    /// [`Wal::pending_sync`]), and its outcome given to [`Store::synced`].
    /// Until then [`Store::durable_seq`] does not cover the changes, and the
    /// caller must not reveal them (reply to whoever asked for them).
    pub fn hold_deferred<R>(
        &mut self,
        work: impl FnOnce(&mut Store) -> R,
    ) -> Result<(R, Option<PendingSync>), StoreError> {
        let was = self.wal.hold_begin();
        let outer = std::mem::replace(&mut self.holding, true);
        let out = work(self);
        self.holding = outer;
        let pending = self
            .wal
            .hold_end_deferred(was)
            .map_err(|e| self.wal_failed(e))?;
        if !outer {
            // No checkpoint here: the log's fsync is still to be run.
            self.commit_when_due()?;
        }
        Ok((out, pending))
    }

    /// The outcome of a [`PendingSync`] run away from the store. Returns
    /// [`Store::durable_seq`].
    pub fn synced(
        &mut self,
        done: PendingSync,
        result: std::io::Result<()>,
    ) -> Result<Seq, StoreError> {
        self.wal
            .synced(done, result)
            .map_err(|e| self.wal_failed(e))
    }

    /// Make every logged operation durable now.
    pub fn flush(&mut self) -> Result<Seq, StoreError> {
        self.wal.flush().map_err(|e| self.wal_failed(e))
    }

    /// Group-commit timer: flush if the deadline passed at `now`.
    pub fn poll_flush(&mut self, now: Instant) -> Result<Seq, StoreError> {
        self.wal.poll_flush(now).map_err(|e| self.wal_failed(e))
    }

    /// When [`Store::poll_flush`] must next be called, if anything is pending.
    pub fn flush_deadline(&self) -> Option<Instant> {
        self.wal.flush_deadline()
    }

    /// The last logged sequence.
    pub fn last_seq(&self) -> Seq {
        self.wal.last_seq()
    }

    /// Operations up to here are durable.
    pub fn durable_seq(&self) -> Seq {
        self.wal.durable_seq()
    }

    /// The sequence the last checkpoint covers.
    pub fn checkpoint_seq(&self) -> Seq {
        self.checkpoint_seq
    }

    /// The underlying log (read-only).
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Number these devices in the index (the node's peers): a copy of
    /// their id in a stored value is kept as that number, ~30 bytes less
    /// (see `state/stored.rs`). Changes nothing a read returns; written
    /// with the next commit, not logged.
    pub fn know_devices(&self, ids: &[crate::core::NodeId]) -> Result<(), StoreError> {
        self.state.know_devices(ids)
    }

    /// The store clock's wall time, for stamping operations.
    pub fn wall_time(&self) -> Timestamp {
        self.clock.wall()
    }

    /// The configuration in use.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }
}

/// Commit the index every this many records while replaying the WAL at
/// open (a commit holds its changes in memory until then).
const REPLAY_COMMIT_EVERY: u64 = 20_000;

/// Commit the index once this many changes wait in its open transaction.
const COMMIT_AFTER_OPS: u64 = 2_048;

pub mod aside;
mod checkpoint;
mod migrate;

#[cfg(test)]
mod tests;

/// The count of running totals over a snapshot (see [`Store::tally_later`]).
/// Dropped without being run, the totals it was to count are forgotten
/// (the next [`Store::tally`] counts them again) rather than waited for.
/// It holds the totals, not the store's state (compaction needs that
/// alone); its snapshot holds the state only until it has run.
pub struct TallyWalk {
    tallies: Arc<tally::Tallies>,
    ns: String,
    counts: Vec<TallyFn>,
    snapshot: Option<Box<dyn Iterator<Item = (String, Entry)> + Send>>,
}

impl TallyWalk {
    /// Count the snapshot in; the totals are then ready.
    pub fn run(mut self) {
        let started = std::time::Instant::now();
        let mut counted: Vec<tally::Tally> =
            self.counts.iter().map(|c| tally::Tally::new(*c)).collect();
        for (k, e) in self.snapshot.take().into_iter().flatten() {
            for t in &mut counted {
                t.changed(&k, None, e.value.as_deref());
            }
        }
        self.tallies.counted(&self.ns, &counted);
        tracing::debug!(ns = %self.ns, took_ms = started.elapsed().as_millis() as u64, "totals counted");
    }
}

impl Drop for TallyWalk {
    fn drop(&mut self) {
        if self.snapshot.is_some() {
            self.tallies.uncounted(&self.ns, &self.counts);
        }
    }
}

/// See [`Store::tally_gate`].
#[derive(Clone)]
pub struct TallyGate(Arc<tally::Tallies>);

impl TallyGate {
    /// Wait until no running total is being counted.
    pub fn wait(&self) {
        self.0.wait_counted();
    }
}
