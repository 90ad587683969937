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

// Why this file is long (about 1,000 lines): most of it is `impl Wal`, whose
// append, group commit, rotation, recovery and compaction all work on the
// same private state (the open segment, the pending fsync, the segment
// list) under invariants that hold only together; the byte format is in
// `format`, the file access in `storage`, the tests in `tests.rs`.

pub mod format;
pub mod storage;

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::{Clock, ErrorContext, Retry, Seq};
pub use format::RecordRef;
use format::{SegmentEnd, SegmentScanError};
pub use storage::{
    Fault, FaultyStorage, FileSyncer, MemStorage, PagedFile, StdStorage, Storage, StorageFile,
};

/// When appended records are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync after every append.
    EveryAppend,
    /// fsync pending appends together: after `max_batch` of them, or once the
    /// oldest has waited `max_delay`.
    Group {
        /// Pending appends that force an fsync.
        max_batch: usize,
        /// Longest an append waits for its fsync.
        max_delay: Duration,
    },
    /// Never fsync. Tests and benchmarks only.
    None,
}

impl Durability {
    /// Group commit with the defaults the agent uses: 512 records or 5 ms.
    pub const GROUP_DEFAULT: Durability = Durability::Group {
        max_batch: 512,
        max_delay: Duration::from_millis(5),
    };
}

/// Where the log lives and how it behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    /// Directory holding the segment files.
    pub dir: PathBuf,
    /// When appends become durable.
    pub durability: Durability,
    /// A segment is closed and a new one started once it reaches this size.
    pub segment_bytes: u64,
}

impl WalConfig {
    /// fsync-per-append, 64 MiB segments, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalConfig {
            dir: dir.into(),
            durability: Durability::EveryAppend,
            segment_bytes: 64 << 20,
        }
    }
}

/// Everything that can go wrong in the log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file-system operation failed.
    #[error("WAL {op} failed on {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Stored data is damaged before its end.
    #[error("WAL corruption in {segment} at byte {offset}: {reason}")]
    Corruption {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the damaged record or header.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier write or fsync failed; the log accepts nothing more until reopened.
    #[error("WAL refuses writes after an earlier failure ({0}); reopen it to continue")]
    Poisoned(String),
    /// A payload larger than a record may carry.
    #[error("record payload of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The payload's size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl ErrorContext for WalError {
    fn retry(&self) -> Retry {
        match self {
            WalError::Io { .. } | WalError::Poisoned(_) => Retry::Later,
            WalError::Corruption { .. } | WalError::TooLarge { .. } => Retry::Never,
        }
    }
    fn is_corruption(&self) -> bool {
        matches!(self, WalError::Corruption { .. })
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> WalError + 'a {
    move |source| WalError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What opening the log found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files read.
    pub segments: usize,
    /// Valid records found (in all segments, replayed or not).
    pub records: u64,
    /// Records handed to the visitor.
    pub replayed: u64,
    /// Sequence of the last valid record.
    pub last_seq: Seq,
    /// A torn tail that was cut off: segment, offset and bytes discarded.
    pub truncated: Option<TornTail>,
    /// Segment files that held no complete header (a crash while creating
    /// one) and were removed.
    pub removed_empty_segments: Vec<PathBuf>,
}

/// A torn tail found at recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub segment: PathBuf,
    /// Where valid data ends.
    pub offset: u64,
    /// How many bytes were cut off.
    pub discarded: u64,
    /// Why the cut-off bytes were unreadable.
    pub reason: &'static str,
}

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

/// What [`Wal::verify`] found, without changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files found.
    pub segments: usize,
    /// Valid records.
    pub records: u64,
    /// Sequence of the first record still held (after compaction), if any.
    pub first_seq: Option<Seq>,
    /// Sequence of the last valid record.
    pub last_seq: Seq,
    /// A torn tail that the next open will cut off.
    pub torn_tail: Option<TornTail>,
    /// Corruption found, if any (reading stops there).
    pub corruption: Option<String>,
    /// Checksum-valid records after the corruption, which repair keeps
    /// (0 when there is none).
    pub records_after_damage: u64,
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
    /// Open (or create) the log in `config.dir`, recovering as described in
    /// the module docs, and hand every record with sequence `>= replay_from`
    /// to `visit` in order. `visit` returning `Err(reason)` stops recovery
    /// with [`WalError::Corruption`] at that record.
    ///
    /// `replay_from` is also a floor: a log that holds nothing at or after it
    /// (a fresh directory, or one whose segments were lost) continues
    /// numbering from `replay_from`, never reusing a sequence a checkpoint
    /// already covers.
    pub fn open(
        storage: Arc<dyn Storage>,
        config: WalConfig,
        clock: Arc<dyn Clock>,
        replay_from: Seq,
        mut visit: impl FnMut(RecordRef<'_>) -> Result<(), String>,
    ) -> Result<(Wal, RecoveryReport), WalError> {
        let dir = config.dir.clone();
        storage
            .create_dir_all(&dir)
            .map_err(io_err("create directory", &dir))?;
        let mut segments = list_segments(storage.as_ref(), &dir)?;
        let mut report = RecoveryReport {
            segments: segments.len(),
            ..RecoveryReport::default()
        };

        let mut next_seq = Seq::ZERO;
        let mut tail_len = None;
        let count = segments.len();
        let mut i = 0;
        while i < segments.len() {
            let seg = segments[i].clone();
            let is_last = i + 1 == count;
            let bytes = storage.read(&seg.path).map_err(io_err("read", &seg.path))?;
            let scan = format::scan_segment(&bytes, |rec| {
                if rec.seq >= replay_from {
                    report.replayed += 1;
                    visit(rec)
                } else {
                    Ok(())
                }
            });
            let scan = match scan {
                Ok(scan) => scan,
                Err(SegmentScanError::Header(format::HeaderProblem::Short(_))) if is_last => {
                    // A crash while creating the newest segment: nothing in it was acknowledged.
                    storage
                        .remove(&seg.path)
                        .map_err(io_err("remove", &seg.path))?;
                    storage
                        .sync_dir(&dir)
                        .map_err(io_err("sync directory", &dir))?;
                    report.removed_empty_segments.push(seg.path.clone());
                    segments.remove(i);
                    continue;
                }
                Err(SegmentScanError::Header(problem)) => {
                    return Err(WalError::Corruption {
                        segment: seg.path,
                        offset: 0,
                        reason: problem.to_string(),
                    });
                }
                Err(SegmentScanError::Corrupt(c)) => {
                    return Err(WalError::Corruption {
                        segment: seg.path,
                        offset: c.offset,
                        reason: c.reason,
                    });
                }
            };
            if scan.base != seg.base {
                return Err(WalError::Corruption {
                    segment: seg.path,
                    offset: 0,
                    reason: format!(
                        "header names base {} but file name says {}",
                        scan.base, seg.base
                    ),
                });
            }
            if next_seq != Seq::ZERO && scan.base != next_seq {
                return Err(WalError::Corruption {
                    segment: seg.path,
                    offset: 0,
                    reason: format!(
                        "segment starts at sequence {} but the previous one ends before {}",
                        scan.base, next_seq
                    ),
                });
            }
            if let SegmentEnd::Torn { offset, reason } = scan.end {
                if !is_last {
                    return Err(WalError::Corruption {
                        segment: seg.path,
                        offset,
                        reason: format!("{reason} in a segment that later segments follow"),
                    });
                }
                report.truncated = Some(TornTail {
                    segment: seg.path.clone(),
                    offset,
                    discarded: bytes.len() as u64 - offset,
                    reason,
                });
            }
            report.records += scan.records;
            report.last_seq = scan.last;
            next_seq = scan.last.next();
            // The valid and total length of the newest segment kept so far
            // (a torn-header segment after it is removed, so this one may end up last).
            tail_len = Some((scan.valid_len, bytes.len() as u64));
            i += 1;
        }

        let floor = if replay_from == Seq::ZERO {
            Seq(1)
        } else {
            replay_from
        };
        let (active, active_len) = match (segments.last(), tail_len) {
            (Some(last), Some((valid_len, file_len))) if next_seq >= floor => {
                let mut file = storage
                    .open_append(&last.path)
                    .map_err(io_err("open", &last.path))?;
                if valid_len < file_len {
                    file.truncate(valid_len)
                        .map_err(io_err("truncate", &last.path))?;
                    file.sync().map_err(io_err("fsync", &last.path))?;
                }
                (file, valid_len)
            }
            (last, _) => {
                debug_assert!(
                    last.is_none() || next_seq < floor,
                    "segments kept but no tail known"
                );
                // No segment, or everything the log holds is below the floor
                // (already covered by the index): start afresh at the floor.
                for seg in segments.drain(..) {
                    storage
                        .remove(&seg.path)
                        .map_err(io_err("remove", &seg.path))?;
                }
                next_seq = next_seq.max(floor);
                let (file, len) = Self::create_segment(storage.as_ref(), &dir, next_seq)?;
                segments.push(Segment {
                    base: next_seq,
                    path: dir.join(segment_name(next_seq)),
                });
                (file, len)
            }
        };
        report.segments = segments.len();
        let durable_seq = Seq(next_seq.0 - 1);
        Ok((
            Wal {
                storage,
                clock,
                config,
                segments,
                active,
                active_len,
                durable_len: active_len,
                next_seq,
                durable_seq,
                pending: 0,
                pending_since: None,
                poisoned: None,
                buf: Vec::with_capacity(64 << 10),
                held: false,
            },
            report,
        ))
    }

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

    /// Read the log in `dir` without changing anything, as `wal verify` does.
    pub fn verify(storage: &dyn Storage, dir: &Path) -> Result<VerifyReport, WalError> {
        let segments = list_segments(storage, dir)?;
        let mut report = VerifyReport {
            segments: segments.len(),
            records: 0,
            first_seq: None,
            last_seq: Seq::ZERO,
            torn_tail: None,
            corruption: None,
            records_after_damage: 0,
        };
        let mut expected: Option<Seq> = None;
        for (i, seg) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            let bytes = storage.read(&seg.path).map_err(io_err("read", &seg.path))?;
            let name = seg.path.display();
            // Records read before any damage count too.
            let mut read = 0u64;
            match format::scan_segment(&bytes, |_| {
                read += 1;
                Ok(())
            }) {
                Ok(scan) => {
                    if let Some(exp) = expected.filter(|e| *e != scan.base) {
                        report.corruption = Some(format!(
                            "{name}: starts at sequence {} where {exp} was expected",
                            scan.base
                        ));
                        report.records_after_damage =
                            Self::readable_after(storage, &segments[i..], None)?;
                        return Ok(report);
                    }
                    if scan.records > 0 && report.first_seq.is_none() {
                        report.first_seq = Some(scan.base);
                    }
                    report.records += read;
                    report.last_seq = report.last_seq.max(scan.last);
                    expected = Some(scan.last.next());
                    if let SegmentEnd::Torn { offset, reason } = scan.end {
                        if !is_last {
                            report.corruption = Some(format!(
                                "{name} at byte {offset}: {reason}, and later segments follow"
                            ));
                            report.records_after_damage =
                                Self::readable_after(storage, &segments[i + 1..], None)?;
                            return Ok(report);
                        }
                        report.torn_tail = Some(TornTail {
                            segment: seg.path.clone(),
                            offset,
                            discarded: bytes.len() as u64 - offset,
                            reason,
                        });
                    }
                }
                Err(SegmentScanError::Header(format::HeaderProblem::Short(n))) if is_last => {
                    report.torn_tail = Some(TornTail {
                        segment: seg.path.clone(),
                        offset: 0,
                        discarded: n as u64,
                        reason: "segment header incomplete",
                    });
                }
                Err(SegmentScanError::Header(p)) => {
                    report.corruption = Some(format!("{name} at byte 0: {p}"));
                    report.records_after_damage =
                        Self::readable_after(storage, &segments[i..], None)?;
                    return Ok(report);
                }
                Err(SegmentScanError::Corrupt(c)) => {
                    report.records += read;
                    // The records read before the damage hold sequences too.
                    if let (true, Ok(base)) = (read > 0, format::decode_segment_header(&bytes)) {
                        report.first_seq.get_or_insert(base);
                        report.last_seq = report.last_seq.max(Seq(base.0 + read - 1));
                    }
                    report.corruption = Some(format!("{name} at byte {}: {}", c.offset, c.reason));
                    report.records_after_damage =
                        Self::readable_after(storage, &segments[i..], Some(c.offset))?;
                    return Ok(report);
                }
            }
        }
        Ok(report)
    }

    /// Checksum-valid records in `segments` (in the first one, only past
    /// byte `past`): what repair can still keep after damage.
    fn readable_after(
        storage: &dyn Storage,
        segments: &[Segment],
        past: Option<u64>,
    ) -> Result<u64, WalError> {
        let mut n = 0;
        for (i, seg) in segments.iter().enumerate() {
            let bytes = storage.read(&seg.path).map_err(io_err("read", &seg.path))?;
            let skip = if i == 0 { past } else { None };
            let salvaged = format::salvage_segment(&bytes);
            n += salvaged
                .records
                .iter()
                .filter(|(at, _)| skip.is_none_or(|p| *at > p))
                .count() as u64;
        }
        Ok(n)
    }

    /// The segment files in `dir`, oldest first: what repair reads one
    /// by one.
    pub fn segment_files(storage: &dyn Storage, dir: &Path) -> Result<Vec<PathBuf>, WalError> {
        Ok(list_segments(storage, dir)?
            .into_iter()
            .map(|s| s.path)
            .collect())
    }

    /// Read records with sequence `>= from` again, in order (e.g. to resend
    /// them). Stops with [`WalError::Corruption`] on damage.
    pub fn replay(&self, from: Seq, mut visit: impl FnMut(RecordRef<'_>)) -> Result<(), WalError> {
        for (i, seg) in self.segments.iter().enumerate() {
            if let Some(next) = self.segments.get(i + 1)
                && next.base <= from
            {
                continue;
            }
            let bytes = self
                .storage
                .read(&seg.path)
                .map_err(io_err("read", &seg.path))?;
            let limit = if i + 1 == self.segments.len() {
                (self.active_len as usize).min(bytes.len())
            } else {
                bytes.len()
            };
            format::scan_segment(&bytes[..limit], |r| {
                if r.seq >= from {
                    visit(r);
                }
                Ok(())
            })
            .map_err(|e| WalError::Corruption {
                segment: seg.path.clone(),
                offset: match &e {
                    SegmentScanError::Corrupt(c) => c.offset,
                    SegmentScanError::Header(_) => 0,
                },
                reason: match e {
                    SegmentScanError::Corrupt(c) => c.reason,
                    SegmentScanError::Header(h) => h.to_string(),
                },
            })?;
        }
        Ok(())
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
