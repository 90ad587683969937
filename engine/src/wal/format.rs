//! The on-disk WAL format: the one encoder and the one decoder.
//!
//! A segment file is a header followed by records, nothing else:
//!
//! ```text
//! segment header (24 bytes)
//!   magic    8  b"SDAWAL\r\n"
//!   version  u16 LE  (FORMAT_VERSION)
//!   reserved u16 LE  (0)
//!   base     u64 LE  sequence of the first record this segment holds
//!   crc      u32 LE  crc32 of the 20 bytes above
//! record (17-byte header + payload)
//!   crc      u32 LE  crc32 of every byte after this field, payload included
//!   len      u32 LE  payload length (<= MAX_RECORD_PAYLOAD)
//!   seq      u64 LE  the record's sequence (base, base+1, … within a segment)
//!   kind     u8      what the payload is (owned by the layer that appends)
//!   payload  len bytes
//! ```
//!
//! Everything here is pure: bytes in, records or a typed problem out. Deciding
//! whether a bad record is a *torn tail* (crash while writing, safe to cut)
//! or *corruption* (damage before valid data, never skipped) is done here
//! too, by [`scan_segment`], so that recovery and `wal verify` agree.

use crate::core::Seq;

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SDAWAL\r\n";
/// Version written in segment headers; readers refuse any other.
pub const FORMAT_VERSION: u16 = 1;
/// Size of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 24;
/// Size of a record header (crc, len, seq, kind).
pub const RECORD_HEADER_LEN: usize = 17;
/// Largest payload a record may carry (64 MiB).
pub const MAX_RECORD_PAYLOAD: usize = 64 << 20;

/// One decoded record, borrowing its payload from the segment bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The record's sequence.
    pub seq: Seq,
    /// The appender's record type.
    pub kind: u8,
    /// The payload bytes.
    pub payload: &'a [u8],
}

/// Append a segment header for `base` to `out`.
pub fn encode_segment_header(base: Seq, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&SEGMENT_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&base.0.to_le_bytes());
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Append one record to `out`. The caller guarantees `payload.len() <= MAX_RECORD_PAYLOAD`.
pub fn encode_record(seq: Seq, kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(payload.len() <= MAX_RECORD_PAYLOAD);
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&seq.0.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Why a segment header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderProblem {
    /// Fewer bytes than a header.
    #[error("segment header is incomplete ({0} of {SEGMENT_HEADER_LEN} bytes)")]
    Short(usize),
    /// Not a Softadastra WAL segment.
    #[error("bad magic: not a Softadastra WAL segment")]
    Magic,
    /// A format version this build does not read.
    #[error("unsupported WAL format version {0} (this build reads version {FORMAT_VERSION})")]
    Version(u16),
    /// Header bytes damaged.
    #[error("segment header checksum mismatch")]
    Checksum,
}

/// Read a segment header, returning the segment's base sequence.
pub fn decode_segment_header(bytes: &[u8]) -> Result<Seq, HeaderProblem> {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err(HeaderProblem::Short(bytes.len()));
    }
    let h = &bytes[..SEGMENT_HEADER_LEN];
    if h[..8] != SEGMENT_MAGIC {
        return Err(HeaderProblem::Magic);
    }
    let stored_crc = u32::from_le_bytes([h[20], h[21], h[22], h[23]]);
    if crc32fast::hash(&h[..20]) != stored_crc {
        return Err(HeaderProblem::Checksum);
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != FORMAT_VERSION {
        return Err(HeaderProblem::Version(version));
    }
    Ok(Seq(u64::from_le_bytes(read8(&h[12..20]))))
}

fn read8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

/// The result of trying to read one record at the start of `buf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, checksum-valid record and how many bytes it used.
    Record(RecordRef<'a>, usize),
    /// The buffer ends inside the record.
    Incomplete,
    /// The bytes are not a valid record.
    Invalid(&'static str),
}

/// Try to read one record from the start of `buf`. Never panics, never
/// allocates: the length field is checked against [`MAX_RECORD_PAYLOAD`]
/// before it is trusted.
pub fn decode_record(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < RECORD_HEADER_LEN {
        return Decoded::Incomplete;
    }
    let crc = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if len > MAX_RECORD_PAYLOAD {
        return Decoded::Invalid("record length exceeds the maximum");
    }
    let total = RECORD_HEADER_LEN + len;
    if buf.len() < total {
        return Decoded::Incomplete;
    }
    if crc32fast::hash(&buf[4..total]) != crc {
        return Decoded::Invalid("record checksum mismatch");
    }
    let seq = Seq(u64::from_le_bytes(read8(&buf[8..16])));
    Decoded::Record(
        RecordRef {
            seq,
            kind: buf[16],
            payload: &buf[RECORD_HEADER_LEN..total],
        },
        total,
    )
}

/// How a segment's bytes end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentEnd {
    /// Every byte belongs to a valid record.
    Clean,
    /// From `offset` on, the bytes are an incomplete or damaged record that no
    /// valid record follows: the signature of a crash mid-write. Safe to cut.
    Torn {
        /// Where the valid data ends.
        offset: u64,
        /// Why the bytes from `offset` could not be read.
        reason: &'static str,
    },
}

/// Damage before the end of a segment: a bad record with valid data after it,
/// or records out of sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentCorruption {
    /// Byte offset of the first bad record.
    pub offset: u64,
    /// What is wrong there.
    pub reason: String,
}

/// What [`scan_segment`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    /// The base sequence from the header.
    pub base: Seq,
    /// Number of valid records.
    pub records: u64,
    /// Sequence of the last valid record (`base - 1` when there is none).
    pub last: Seq,
    /// Bytes of valid data (header included).
    pub valid_len: u64,
    /// How the segment ends.
    pub end: SegmentEnd,
}

/// Read a whole segment, calling `visit` for each valid record in order.
///
/// Records must carry consecutive sequences starting at the header's base. A
/// record that cannot be read is a torn tail only when no valid record can be
/// found anywhere after it; otherwise it is corruption. `visit` may stop the
/// scan by returning an error, which is reported as corruption at that record.
pub fn scan_segment(
    bytes: &[u8],
    mut visit: impl FnMut(RecordRef<'_>) -> Result<(), String>,
) -> Result<SegmentScan, SegmentScanError> {
    let base = decode_segment_header(bytes).map_err(SegmentScanError::Header)?;
    let mut pos = SEGMENT_HEADER_LEN;
    let mut expected = base;
    let mut records = 0u64;
    let end = loop {
        if pos == bytes.len() {
            break SegmentEnd::Clean;
        }
        match decode_record(&bytes[pos..]) {
            Decoded::Record(rec, used) => {
                if rec.seq != expected {
                    return Err(SegmentScanError::Corrupt(SegmentCorruption {
                        offset: pos as u64,
                        reason: format!(
                            "record has sequence {} where {} was expected",
                            rec.seq, expected
                        ),
                    }));
                }
                visit(rec).map_err(|reason| {
                    SegmentScanError::Corrupt(SegmentCorruption {
                        offset: pos as u64,
                        reason,
                    })
                })?;
                records += 1;
                expected = expected.next();
                pos += used;
            }
            bad => {
                let reason = match bad {
                    Decoded::Invalid(reason) => reason,
                    _ => "incomplete record at end of segment",
                };
                // A damaged length field can make a record look incomplete,
                // so both cases ask the same question: does valid data follow?
                if let Some(at) = find_valid_record_after(bytes, pos + 1, Seq::ZERO) {
                    return Err(SegmentScanError::Corrupt(SegmentCorruption {
                        offset: pos as u64,
                        reason: format!("{reason}; a valid record follows at offset {at}"),
                    }));
                }
                break SegmentEnd::Torn {
                    offset: pos as u64,
                    reason,
                };
            }
        }
    };
    Ok(SegmentScan {
        base,
        records,
        last: Seq(expected.0 - 1),
        valid_len: pos as u64,
        end,
    })
}

/// Where the first checksum-valid record with a sequence of at least
/// `floor` starts, at or after `from`.
fn find_valid_record_after(bytes: &[u8], from: usize, floor: Seq) -> Option<usize> {
    (from..bytes.len().saturating_sub(RECORD_HEADER_LEN - 1))
        .find(|&at| matches!(decode_record(&bytes[at..]), Decoded::Record(r, _) if r.seq >= floor))
}

/// What [`salvage_segment`] could read of a segment, damaged or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvaged<'a> {
    /// The base sequence from the header, if the header is intact.
    pub base: Option<Seq>,
    /// Every checksum-valid record with its byte offset, in file order,
    /// sequences rising.
    pub records: Vec<(u64, RecordRef<'a>)>,
    /// Byte ranges that hold no readable record: offset, length, why.
    pub damage: Vec<(u64, u64, &'static str)>,
}

/// Read every record of a segment that can still be read, stepping over
/// damage: past a bad record (or header), reading resumes at the next
/// offset where a checksum-valid record starts. A record whose sequence
/// does not rise (or falls below the header's base) is taken for bytes
/// that only look like one and stepped over too. Used by repair; normal
/// recovery never skips damage ([`scan_segment`]).
pub fn salvage_segment(bytes: &[u8]) -> Salvaged<'_> {
    let mut out = Salvaged {
        base: None,
        records: Vec::new(),
        damage: Vec::new(),
    };
    let mut pos = match decode_segment_header(bytes) {
        Ok(base) => {
            out.base = Some(base);
            SEGMENT_HEADER_LEN
        }
        Err(_) => {
            let len = bytes.len().min(SEGMENT_HEADER_LEN);
            out.damage
                .push((0, len as u64, "segment header unreadable"));
            len
        }
    };
    let mut floor = out.base.unwrap_or(Seq::ZERO);
    while pos < bytes.len() {
        let reason = match decode_record(&bytes[pos..]) {
            Decoded::Record(rec, used) if rec.seq >= floor => {
                floor = rec.seq.next();
                out.records.push((pos as u64, rec));
                pos += used;
                continue;
            }
            Decoded::Record(..) => "record out of sequence",
            Decoded::Invalid(reason) => reason,
            Decoded::Incomplete => "incomplete record",
        };
        let end = find_valid_record_after(bytes, pos + 1, floor).unwrap_or(bytes.len());
        out.damage.push((pos as u64, (end - pos) as u64, reason));
        pos = end;
    }
    out
}

/// Why [`scan_segment`] could not read a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentScanError {
    /// The header is missing or invalid.
    Header(HeaderProblem),
    /// Damage before the end of the data.
    Corrupt(SegmentCorruption),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_segment_header(Seq(1), &mut out);
        for i in 1..=n {
            encode_record(Seq(i), 1, format!("payload-{i}").as_bytes(), &mut out);
        }
        out
    }

    fn collect(bytes: &[u8]) -> Result<(Vec<u64>, SegmentScan), SegmentScanError> {
        let mut seqs = Vec::new();
        let scan = scan_segment(bytes, |r| {
            seqs.push(r.seq.0);
            Ok(())
        })?;
        Ok((seqs, scan))
    }

    #[test]
    fn clean_segment_reads_every_record() {
        let (seqs, scan) = collect(&segment(5)).unwrap();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        assert_eq!(scan.end, SegmentEnd::Clean);
        assert_eq!(scan.last, Seq(5));
    }

    #[test]
    fn oversized_length_is_rejected_without_allocating() {
        let mut buf = vec![0u8; RECORD_HEADER_LEN];
        buf[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_record(&buf), Decoded::Invalid(_)));
    }

    #[test]
    fn out_of_sequence_record_is_corruption() {
        let mut out = Vec::new();
        encode_segment_header(Seq(1), &mut out);
        encode_record(Seq(1), 1, b"a", &mut out);
        encode_record(Seq(3), 1, b"b", &mut out);
        assert!(matches!(collect(&out), Err(SegmentScanError::Corrupt(_))));
    }

    /// Repair reads past damage: every record but the damaged one, and
    /// the damaged bytes' place and length.
    #[test]
    fn salvage_steps_over_damage_and_keeps_the_rest() {
        let clean = segment(6);
        let mut damaged = clean.clone();
        let at = SEGMENT_HEADER_LEN + 3 * (RECORD_HEADER_LEN + "payload-1".len()) + 20;
        damaged[at] ^= 0xff;
        let s = salvage_segment(&damaged);
        let seqs: Vec<u64> = s.records.iter().map(|(_, r)| r.seq.0).collect();
        assert_eq!(seqs, vec![1, 2, 3, 5, 6]);
        assert_eq!(s.damage.len(), 1);
        assert_eq!(s.base, Some(Seq(1)));
        // A damaged header: the records are still read.
        let mut headless = clean.clone();
        headless[2] ^= 1;
        let s = salvage_segment(&headless);
        assert_eq!(s.records.len(), 6);
        assert_eq!((s.base, s.damage[0].0), (None, 0));
        // Nothing to salvage from noise, and no panic.
        let noise: Vec<u8> = (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect();
        assert!(salvage_segment(&noise).records.is_empty());
        assert_eq!(salvage_segment(&clean).damage, vec![]);
    }

    #[test]
    fn header_problems_are_named() {
        assert_eq!(
            decode_segment_header(b"short"),
            Err(HeaderProblem::Short(5))
        );
        let mut h = segment(0);
        h[0] ^= 1;
        assert_eq!(decode_segment_header(&h), Err(HeaderProblem::Magic));
        let mut h = segment(0);
        h[8] = 9;
        assert_eq!(decode_segment_header(&h), Err(HeaderProblem::Checksum));
    }
}
