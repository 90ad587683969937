//! # wal — the durable operation log
//!
//! The write-ahead log answers one question: *which operations were durably
//! recorded?* An operation is accepted only once its record is in the log and
//! the log has been made durable as the [`Durability`] policy says. Everything
//! else (the store's state, sync progress) can be rebuilt from it.
//!
//! ## Shape
//!
//! The log is a directory of *segments* named `seg-<base seq>.wal`. Records
//! carry consecutive sequence numbers ([`Seq`]) starting at 1; a segment
//! header names the first sequence it holds, so sequences survive restarts
//! and compaction even when the newest segment is still empty. The byte
//! format is defined once, in the [`format`](mod@format) module.
//!
//! ## Durability
//!
//! * [`Durability::EveryAppend`] — fsync after each append: an `append` that
//!   returns `Ok` is durable.
//! * [`Durability::Group`] — appends are written at once but made durable
//!   together: when `max_batch` are pending, when the oldest has waited
//!   `max_delay` (the owner calls [`Wal::poll_flush`] at
//!   [`Wal::flush_deadline`]), or on [`Wal::flush`]. [`Wal::durable_seq`]
//!   says how far acknowledgements may go. [`Wal::append_batch`] makes a
//!   whole batch durable with one fsync under every policy but `None`.
//! * [`Durability::None`] — never fsync; the log *claims* durability on
//!   write. For tests and benchmarks only.
//!
//! A caller that holds the log behind a lock can take the fsync out of it:
//! [`Wal::pending_sync`] hands out what a flush would make durable,
//! [`PendingSync::sync`] runs the fsync on a handle of its own (the lock
//! released, appends going on), and [`Wal::synced`] moves
//! [`Wal::durable_seq`] — back under the lock.
//!
//! If a write or fsync fails, the operations it covered are **not**
//! accepted: the log cuts its file back to the last durable byte and refuses
//! every further write ([`WalError::Poisoned`]) until it is reopened. A
//! failed fsync is never retried, because after one the kernel may already
//! have dropped the data it was meant to save.
//!
//! ## Recovery
//!
//! [`Wal::open`] reads every segment. A damaged or incomplete record that no
//! valid record follows — a crash in the middle of an append — is a *torn
//! tail*: it is cut off and reported in [`RecoveryReport`]. Damage anywhere
//! else is [`WalError::Corruption`], naming the segment and offset; it is
//! never skipped silently.
//!
//! ```
//! use softadastra::wal::{Wal, WalConfig, StdStorage};
//! use softadastra::core::{SystemClock, Seq};
//! use std::sync::Arc;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let config = WalConfig::new(dir.path().join("wal"));
//! let (mut wal, _report) =
//!     Wal::open(Arc::new(StdStorage), config.clone(), Arc::new(SystemClock), Seq(1), |_| Ok(())).unwrap();
//! let seq = wal.append(1, b"hello").unwrap();
//! assert!(wal.durable_seq() >= seq);
//! drop(wal);
//!
//! let mut seen = Vec::new();
//! Wal::open(Arc::new(StdStorage), config, Arc::new(SystemClock), Seq(1), |r| {
//!     seen.push(r.payload.to_vec());
//!     Ok(())
//! })
//! .unwrap();
//! assert_eq!(seen, vec![b"hello".to_vec()]);
//! ```

// This file holds the log's state and its write path: append, group
// commit, rotation and compaction, which work on the same private state
// (the open segment, the pending fsync, the segment list) under invariants
// that hold only together. Opening and reading it are in `recovery.rs`,
// its settings in `config.rs`, its failures in `error.rs`, the byte format
// in `format`, the file access in `storage`, the tests in `tests.rs`.

mod config;
mod error;
pub mod format;
mod recovery;
pub mod storage;

pub use config::{Durability, WalConfig};
pub use error::WalError;
use error::io_err;
pub use recovery::{RecoveryReport, TornTail, VerifyReport};

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::core::{Clock, Seq};
pub use format::RecordRef;
use format::{SegmentEnd, SegmentScanError};
pub use storage::{
    Fault, FaultyStorage, FileSyncer, MemStorage, PagedFile, StdStorage, Storage, StorageFile,
};

#[derive(Debug, Clone)]
struct Segment {
    base: Seq,
    path: PathBuf,
}

fn segment_name(base: Seq) -> String {
    format!("seg-{:020}.wal", base.0)
}

fn parse_segment_name(name: &str) -> Option<Seq> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".wal")?;
    digits.parse().ok().map(Seq)
}

/// The sequence the segment file at `path` starts at (its name says it:
/// `seg-<base seq>.wal`), whether or not it holds any record: every
/// sequence before it was given out. `None` for another name.
pub fn segment_base(path: &Path) -> Option<Seq> {
    parse_segment_name(path.file_name()?.to_str()?)
}

/// The write-ahead log. See the [module documentation](self).
pub struct Wal {
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    config: WalConfig,
    segments: Vec<Segment>,
    active: Box<dyn StorageFile>,
    active_len: u64,
    durable_len: u64,
    next_seq: Seq,
    durable_seq: Seq,
    pending: usize,
    pending_since: Option<Instant>,
    poisoned: Option<String>,
    buf: Vec<u8>,
    /// Inside [`Wal::hold`]: appends are written but their fsync waits for
    /// the end of the held span.
    held: bool,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.config.dir)
            .field("segments", &self.segments.len())
            .field("next_seq", &self.next_seq)
            .field("durable_seq", &self.durable_seq)
            .finish()
    }
}

/// Records appended but not yet durable, to be made durable away from the
/// log (see [`Wal::pending_sync`]).
pub struct PendingSync {
    syncer: Box<dyn FileSyncer>,
    segment: PathBuf,
    upto_seq: Seq,
    upto_len: u64,
}

impl std::fmt::Debug for PendingSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSync")
            .field("segment", &self.segment)
            .field("upto_seq", &self.upto_seq)
            .finish()
    }
}

impl PendingSync {
    /// The last sequence this makes durable.
    pub fn upto(&self) -> Seq {
        self.upto_seq
    }

    /// Run the fsync (no lock needed). Hand the result to [`Wal::synced`].
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.syncer.sync()
    }

    /// Take several in one: the later covers the earlier, so only its
    /// fsync is run.
    pub fn merge(self, later: PendingSync) -> PendingSync {
        if later.upto_seq >= self.upto_seq {
            later
        } else {
            self
        }
    }
}

/// Read the segment list of a log directory, sorted by base sequence.
fn list_segments(storage: &dyn Storage, dir: &Path) -> Result<Vec<Segment>, WalError> {
    let mut segments: Vec<Segment> = storage
        .list(dir)
        .map_err(io_err("list", dir))?
        .into_iter()
        .filter_map(|name| {
            parse_segment_name(&name).map(|base| Segment {
                base,
                path: dir.join(name),
            })
        })
        .collect();
    segments.sort_by_key(|s| s.base);
    Ok(segments)
}

impl Wal {
    fn create_segment(
        storage: &dyn Storage,
        dir: &Path,
        base: Seq,
    ) -> Result<(Box<dyn StorageFile>, u64), WalError> {
        let path = dir.join(segment_name(base));
        let mut header = Vec::with_capacity(format::SEGMENT_HEADER_LEN);
        format::encode_segment_header(base, &mut header);
        let mut file = storage.create(&path).map_err(io_err("create", &path))?;
        file.write_all(&header).map_err(io_err("write", &path))?;
        file.sync().map_err(io_err("fsync", &path))?;
        storage
            .sync_dir(dir)
            .map_err(io_err("sync directory", dir))?;
        Ok((file, header.len() as u64))
    }

    /// Refuse further writes, for `why`, and cut back what was written but
    /// is not durable (as a failure of the log's own would): the store
    /// calls this when its index failed to take changes the log holds.
    pub fn poison(&mut self, why: String) {
        if self.poisoned.is_none() {
            let _ = self.fail(WalError::Poisoned(why));
        }
    }

    /// Whether appended records wait for an fsync (group commit).
    pub fn has_pending_sync(&self) -> bool {
        self.pending > 0
    }

    /// `Err(Poisoned)` once the log refuses writes.
    pub fn check_usable(&self) -> Result<(), WalError> {
        match &self.poisoned {
            Some(why) => Err(WalError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Record a failure: cut back to the last durable byte, refuse further writes.
    fn fail(&mut self, err: WalError) -> WalError {
        self.poisoned = Some(err.to_string());
        // Best effort: what was written but never acknowledged must not come
        // back after a reopen. If this fails too, recovery still only ever
        // returns whole records, and none of them was acknowledged.
        if self.active.truncate(self.durable_len).is_ok() {
            let _ = self.active.sync();
        }
        self.active_len = self.durable_len;
        self.next_seq = self.durable_seq.next();
        self.pending = 0;
        self.pending_since = None;
        err
    }

    fn active_path(&self) -> PathBuf {
        self.segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_else(|| self.config.dir.clone())
    }

    /// Append one record. Under [`Durability::EveryAppend`] it is durable when
    /// this returns; otherwise check [`Wal::durable_seq`].
    pub fn append(&mut self, kind: u8, payload: &[u8]) -> Result<Seq, WalError> {
        let range = self.write_records(&[(kind, payload)])?;
        match self.config.durability {
            Durability::None => self.durable_seq = *range.end(),
            _ if self.held => {}
            Durability::EveryAppend => self.sync_pending()?,
            Durability::Group { max_batch, .. } if self.pending >= max_batch => {
                self.sync_pending()?
            }
            Durability::Group { .. } => {}
        }
        Ok(*range.end())
    }

    /// Append several records and make them durable together with a single
    /// fsync (under every policy but `None`). Returns their sequences.
    pub fn append_batch(
        &mut self,
        records: &[(u8, &[u8])],
    ) -> Result<RangeInclusive<Seq>, WalError> {
        let range = self.write_records(records)?;
        match self.config.durability {
            Durability::None => self.durable_seq = *range.end(),
            _ if self.held => {}
            _ => self.sync_pending()?,
        }
        Ok(range)
    }

    /// Run `work` with fsyncs held: every record it appends is written at
    /// once and all of them are made durable together by one fsync when it
    /// returns — group commit for a caller that applies many small batches
    /// in a row. Until then [`Wal::durable_seq`] lags behind; the caller
    /// must not reveal what it appended (answer a client, tell a peer)
    /// before this returns `Ok`.
    pub fn hold<R>(&mut self, work: impl FnOnce(&mut Wal) -> R) -> Result<R, WalError> {
        let was = self.hold_begin();
        let out = work(self);
        self.hold_end(was)?;
        Ok(out)
    }

    /// Start holding fsyncs (see [`Wal::hold`]); returns whether they were
    /// held already, for [`Wal::hold_end`].
    pub fn hold_begin(&mut self) -> bool {
        std::mem::replace(&mut self.held, true)
    }

    /// End a span begun by [`Wal::hold_begin`]: the outermost end makes
    /// everything appended durable with one fsync.
    pub fn hold_end(&mut self, was: bool) -> Result<Seq, WalError> {
        self.held = was;
        if was {
            return Ok(self.durable_seq);
        }
        self.flush()
    }

    /// End a span begun by [`Wal::hold_begin`] without its fsync: what was
    /// appended is handed out to be made durable elsewhere (see
    /// [`Wal::pending_sync`]). `None` if nothing is pending.
    pub fn hold_end_deferred(&mut self, was: bool) -> Result<Option<PendingSync>, WalError> {
        self.held = was;
        if was {
            return Ok(None);
        }
        self.pending_sync()
    }

    /// What [`Wal::flush`] would make durable now, as work another thread
    /// can do without the log: run [`PendingSync::sync`], then hand the
    /// outcome to [`Wal::synced`]. Until then [`Wal::durable_seq`] stays
    /// where it is, so whoever reveals records only up to it (answers to
    /// clients and peers) reveals none of these. `None` when nothing is
    /// pending, under [`Durability::None`], or when no second handle on the
    /// log could be had — then the fsync was run here.
    pub fn pending_sync(&mut self) -> Result<Option<PendingSync>, WalError> {
        self.check_usable()?;
        if self.pending == 0 || self.config.durability == Durability::None {
            return Ok(None);
        }
        let syncer = match self.active.syncer() {
            Ok(s) => s,
            // No second handle (out of descriptors, say): nothing is lost,
            // the fsync is simply run here, as a flush would.
            Err(_) => {
                self.sync_pending()?;
                return Ok(None);
            }
        };
        Ok(Some(PendingSync {
            syncer,
            segment: self.active_path(),
            upto_seq: Seq(self.next_seq.0 - 1),
            upto_len: self.active_len,
        }))
    }

    /// Take the outcome of a [`PendingSync`]: on success what it covered is
    /// durable (unless the log failed meanwhile); a failed fsync poisons
    /// the log as one of its own would. Returns [`Wal::durable_seq`].
    pub fn synced(
        &mut self,
        done: PendingSync,
        result: std::io::Result<()>,
    ) -> Result<Seq, WalError> {
        self.check_usable()?;
        if let Err(e) = result {
            return Err(self.fail(WalError::Io {
                op: "fsync",
                path: done.segment,
                source: e,
            }));
        }
        // A rotation in between flushed the old segment itself.
        if done.upto_seq > self.durable_seq && done.segment == self.active_path() {
            self.durable_len = self.durable_len.max(done.upto_len);
            self.durable_seq = done.upto_seq;
            self.pending = (self.next_seq.0 - 1 - self.durable_seq.0) as usize;
            if self.pending == 0 {
                self.pending_since = None;
            }
        }
        Ok(self.durable_seq)
    }

    fn write_records(&mut self, records: &[(u8, &[u8])]) -> Result<RangeInclusive<Seq>, WalError> {
        self.check_usable()?;
        if let Some((_, p)) = records
            .iter()
            .find(|(_, p)| p.len() > format::MAX_RECORD_PAYLOAD)
        {
            return Err(WalError::TooLarge {
                len: p.len(),
                max: format::MAX_RECORD_PAYLOAD,
            });
        }
        if records.is_empty() {
            return Ok(self.next_seq..=self.durable_seq);
        }
        let incoming: u64 = records
            .iter()
            .map(|(_, p)| (format::RECORD_HEADER_LEN + p.len()) as u64)
            .sum();
        if self.active_len > format::SEGMENT_HEADER_LEN as u64
            && self.active_len + incoming > self.config.segment_bytes
        {
            self.rotate()?;
        }
        let first = self.next_seq;
        self.buf.clear();
        let mut seq = first;
        for (kind, payload) in records {
            format::encode_record(seq, *kind, payload, &mut self.buf);
            seq = seq.next();
        }
        if let Err(e) = self.active.write_all(&self.buf) {
            let path = self.active_path();
            return Err(self.fail(WalError::Io {
                op: "write",
                path,
                source: e,
            }));
        }
        self.active_len += self.buf.len() as u64;
        self.next_seq = seq;
        if self.pending == 0 {
            self.pending_since = Some(self.clock.now());
        }
        self.pending += records.len();
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::with_capacity(64 << 10);
        }
        Ok(first..=Seq(seq.0 - 1))
    }

    fn sync_pending(&mut self) -> Result<(), WalError> {
        if self.pending == 0 {
            return Ok(());
        }
        if let Err(e) = self.active.sync() {
            let path = self.active_path();
            return Err(self.fail(WalError::Io {
                op: "fsync",
                path,
                source: e,
            }));
        }
        self.durable_len = self.active_len;
        self.durable_seq = Seq(self.next_seq.0 - 1);
        self.pending = 0;
        self.pending_since = None;
        Ok(())
    }

    /// Make every appended record durable now. Returns [`Wal::durable_seq`].
    pub fn flush(&mut self) -> Result<Seq, WalError> {
        self.check_usable()?;
        if self.config.durability == Durability::None {
            return Ok(self.durable_seq);
        }
        self.sync_pending()?;
        Ok(self.durable_seq)
    }

    /// When pending group-commit records must be flushed, if any are pending.
    pub fn flush_deadline(&self) -> Option<Instant> {
        match (self.config.durability, self.pending_since) {
            (Durability::Group { max_delay, .. }, Some(since)) => Some(since + max_delay),
            _ => None,
        }
    }

    /// Flush if the group-commit deadline has passed at `now`.
    pub fn poll_flush(&mut self, now: Instant) -> Result<Seq, WalError> {
        match self.flush_deadline() {
            Some(deadline) if now >= deadline => self.flush(),
            _ => Ok(self.durable_seq),
        }
    }

    /// Close the active segment (making it durable) and start a new one.
    pub fn rotate(&mut self) -> Result<(), WalError> {
        self.check_usable()?;
        self.sync_pending()?;
        if self.active_len <= format::SEGMENT_HEADER_LEN as u64 {
            // The active segment holds no record yet: it already starts at next_seq.
            return Ok(());
        }
        let dir = self.config.dir.clone();
        match Self::create_segment(self.storage.as_ref(), &dir, self.next_seq) {
            Ok((file, len)) => {
                self.active = file;
                self.active_len = len;
                self.durable_len = len;
                self.segments.push(Segment {
                    base: self.next_seq,
                    path: dir.join(segment_name(self.next_seq)),
                });
                Ok(())
            }
            Err(e) => {
                self.poisoned = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Delete every closed segment whose records all have sequence `<= upto`
    /// (the index holds them at a checkpoint). Returns how many were removed.
    pub fn compact(&mut self, upto: Seq) -> Result<usize, WalError> {
        let removable = self.covered_segments(upto);
        self.check_usable()?;
        let dir = self.config.dir.clone();
        for seg in self.segments.drain(..removable).collect::<Vec<_>>() {
            if let Err(e) = self.storage.remove(&seg.path) {
                let err = io_err("remove", &seg.path)(e);
                self.poisoned = Some(err.to_string());
                return Err(err);
            }
        }
        if removable > 0
            && let Err(e) = self.storage.sync_dir(&dir)
        {
            let err = io_err("sync directory", &dir)(e);
            self.poisoned = Some(err.to_string());
            return Err(err);
        }
        Ok(removable)
    }

    /// How many closed segments hold only records with sequence `<= upto`
    /// (what [`Wal::compact`] at `upto` would remove).
    pub fn covered_segments(&self, upto: Seq) -> usize {
        (self.segments.windows(2))
            .take_while(|pair| pair[1].base.0 <= upto.0 + 1)
            .count()
    }

    /// Bytes in the active segment (its header included).
    pub fn active_bytes(&self) -> u64 {
        self.active_len
    }

    /// The sequence the next append will get.
    pub fn next_seq(&self) -> Seq {
        self.next_seq
    }
    /// The last appended sequence (durable or not).
    pub fn last_seq(&self) -> Seq {
        Seq(self.next_seq.0 - 1)
    }
    /// Every record up to this sequence is durable.
    pub fn durable_seq(&self) -> Seq {
        self.durable_seq
    }
    /// The first sequence still held in the log.
    pub fn first_seq(&self) -> Seq {
        self.segments
            .first()
            .map(|s| s.base)
            .unwrap_or(self.next_seq)
    }
    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }
    /// Whether an earlier failure has stopped the log.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }
}

#[cfg(test)]
mod tests;
