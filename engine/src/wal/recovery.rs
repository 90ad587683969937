//! Opening the log: every segment read, a torn tail cut off, damage
//! anywhere else refused by name ([`WalError::Corruption`]), the records
//! handed to the caller in order; and reading it without changing it
//! ([`Wal::verify`], [`Wal::replay`]). What opening found is reported
//! ([`RecoveryReport`], [`VerifyReport`]). It writes only to cut a torn
//! tail and to remove segment files a crash left without a header.

use super::*;

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
}
