//! # index::stored — a file record as the store keeps it
//!
//! The values of the `files` namespace — in the WAL and in the store's
//! index — are [`FileRecord`]s in their *stored* form, format
//! [`STORED_FORMAT`] (pinned by `data/golden/file-record-stored-v2.bin`):
//! the byte [`STORED_TAG`], then the record's postcard with two fields
//! told more briefly:
//! - the chunk list of a file that is one chunk — the whole content, so
//!   the chunk's hash is the file's — is left out, and made again when
//!   read (36 bytes of a small file's record);
//! - the last writer, when it is one of the version vector's devices (a
//!   change always bumps its writer's count), is its position there
//!   rather than its 32-byte id.
//!
//! Format 1 — the record's plain postcard, which earlier releases stored
//! and which peers still exchange — reads as before: its first byte is an
//! [`EntryKind`], never the tag. A home made by an earlier release so
//! reads as it is, and each record takes the new form when it next
//! changes (issue 21: the home's size per file).
//!
//! Every read and write of a `files` value goes through
//! [`write_record`] and [`read_record`] (or [`decode_record`]); records go
//! over the wire in the plain form (`sync`'s messages), never this one.
//! It decides nothing about a record and never reads the store.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{Chunk, EntryKind, FileRecord, FolderError};
use crate::core::{ContentHash, NodeId, VersionVector};

/// The stored form's version (format 1 is the plain postcard).
pub const STORED_FORMAT: u8 = 2;

/// The first byte of a record in the stored form: not the first byte of
/// any format 1 record (an [`EntryKind`] variant, 0 to 3).
pub const STORED_TAG: u8 = 0xF0 | STORED_FORMAT;

/// A file's chunk list, as stored.
#[derive(Serialize, Deserialize)]
enum StoredChunks<'a> {
    /// As the record has it.
    Listed(Cow<'a, [Chunk]>),
    /// One chunk, the whole content: offset 0, the file's size and hash.
    Whole,
}

/// The last writer, as stored.
#[derive(Serialize, Deserialize)]
enum Writer {
    /// The device at this position in the version vector.
    InVersion(u32),
    /// A device the version vector does not name.
    Other(NodeId),
}

/// [`FileRecord`]'s fields in the stored form, in its order.
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    kind: EntryKind,
    size: u64,
    mtime_ns: i64,
    mode: u32,
    inode: u64,
    hash: Option<ContentHash>,
    chunks: StoredChunks<'a>,
    link_target: Option<Cow<'a, str>>,
    version: Cow<'a, VersionVector>,
    modified_by: Writer,
    deleted: bool,
}

/// Whether `r`'s chunk list is exactly one chunk holding all of its
/// content (so it can be made again from the size and the hash).
fn is_one_whole_chunk(r: &FileRecord) -> bool {
    match r.chunks.as_slice() {
        [c] => c.offset == 0 && u64::from(c.len) == r.size && r.hash == Some(c.hash),
        _ => false,
    }
}

/// `record` in the stored form.
pub fn write_record(record: &FileRecord) -> Vec<u8> {
    let chunks = if is_one_whole_chunk(record) {
        StoredChunks::Whole
    } else {
        StoredChunks::Listed(Cow::Borrowed(&record.chunks))
    };
    let modified_by = match (record.version.entries().iter())
        .position(|(n, _)| *n == record.modified_by)
        .and_then(|i| u32::try_from(i).ok())
    {
        Some(i) => Writer::InVersion(i),
        None => Writer::Other(record.modified_by),
    };
    let stored = Stored {
        kind: record.kind,
        size: record.size,
        mtime_ns: record.mtime_ns,
        mode: record.mode,
        inode: record.inode,
        hash: record.hash,
        chunks,
        link_target: record.link_target.as_deref().map(Cow::Borrowed),
        version: Cow::Borrowed(&record.version),
        modified_by,
        deleted: record.deleted,
    };
    // Encoding plain data into memory cannot fail.
    postcard::to_extend(&stored, vec![STORED_TAG]).unwrap_or_else(|_| vec![STORED_TAG])
}

/// Why a stored record cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes are not a record of either form.
    #[error("not a file record: {0}")]
    Undecodable(String),
    /// A record in the stored form says what it cannot mean.
    #[error("a stored file record {0}")]
    Inconsistent(&'static str),
}

/// The record `bytes` hold, in either form (see the [module](self)).
pub fn decode_record(bytes: &[u8]) -> Result<FileRecord, RecordError> {
    let Some(rest) = bytes.strip_prefix(&[STORED_TAG]) else {
        return postcard::from_bytes(bytes).map_err(|e| RecordError::Undecodable(e.to_string()));
    };
    let s: Stored =
        postcard::from_bytes(rest).map_err(|e| RecordError::Undecodable(e.to_string()))?;
    let chunks = match s.chunks {
        StoredChunks::Listed(c) => c.into_owned(),
        StoredChunks::Whole => {
            let hash = (s.hash).ok_or(RecordError::Inconsistent("is one chunk with no hash"))?;
            let len = u32::try_from(s.size)
                .ok()
                .filter(|l| *l > 0 && *l <= crate::core::MAX_CHUNK_LEN)
                .ok_or(RecordError::Inconsistent(
                    "is one chunk of an impossible size",
                ))?;
            vec![Chunk {
                offset: 0,
                len,
                hash,
            }]
        }
    };
    let version = s.version.into_owned();
    let modified_by = match s.modified_by {
        Writer::Other(n) => n,
        Writer::InVersion(i) => (version.entries().get(i as usize))
            .map(|(n, _)| *n)
            .ok_or(RecordError::Inconsistent("names a writer past its version"))?,
    };
    Ok(FileRecord {
        kind: s.kind,
        size: s.size,
        mtime_ns: s.mtime_ns,
        mode: s.mode,
        inode: s.inode,
        hash: s.hash,
        chunks,
        link_target: s.link_target.map(Cow::into_owned),
        version,
        modified_by,
        deleted: s.deleted,
    })
}

/// The record stored under `key`, a corruption of the index if it cannot
/// be read.
pub fn read_record(key: &str, bytes: &[u8]) -> Result<FileRecord, FolderError> {
    decode_record(bytes).map_err(|e| FolderError::Corruption {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    fn small_file() -> FileRecord {
        let mut version = VersionVector::default();
        version.bump(node(1));
        version.bump(node(2));
        let hash = ContentHash([5; 32]);
        FileRecord {
            kind: EntryKind::File,
            size: 1_200,
            mtime_ns: 1_700_000_000_123_456_789,
            mode: 0o644,
            inode: 42,
            hash: Some(hash),
            chunks: vec![Chunk {
                offset: 0,
                len: 1_200,
                hash,
            }],
            link_target: None,
            version,
            modified_by: node(2),
            deleted: false,
        }
    }

    /// Every shape a record takes reads back exactly, in both forms.
    #[test]
    fn records_read_back_exactly_in_both_forms() {
        let small = small_file();
        let mut two_chunks = small.clone();
        two_chunks.size = 70_000;
        two_chunks.chunks = vec![
            Chunk {
                offset: 0,
                len: 65_536,
                hash: ContentHash([6; 32]),
            },
            Chunk {
                offset: 65_536,
                len: 4_464,
                hash: ContentHash([7; 32]),
            },
        ];
        // One chunk whose hash is not the file's: kept as listed.
        let mut odd_chunk = small.clone();
        odd_chunk.chunks[0].hash = ContentHash([9; 32]);
        let mut foreign_writer = small.clone();
        foreign_writer.modified_by = node(3);
        let mut empty = small.clone();
        empty.size = 0;
        empty.chunks.clear();
        empty.hash = Some(ContentHash::of(b""));
        let mut link = small.clone();
        link.kind = EntryKind::Symlink;
        link.hash = None;
        link.chunks.clear();
        link.link_target = Some("../elsewhere/ü".into());
        let mut deleted = small.clone();
        deleted.deleted = true;
        deleted.chunks.clear();
        let mut unversioned = small.clone();
        unversioned.version = VersionVector::default();
        for r in [
            small,
            two_chunks,
            odd_chunk,
            foreign_writer,
            empty,
            link,
            deleted,
            unversioned,
        ] {
            let stored = write_record(&r);
            assert_eq!(stored[0], STORED_TAG);
            assert_eq!(decode_record(&stored), Ok(r.clone()), "{r:?}");
            let plain = postcard::to_allocvec(&r).unwrap();
            assert_ne!(plain[0], STORED_TAG);
            assert_eq!(decode_record(&plain), Ok(r.clone()), "format 1: {r:?}");
        }
    }

    /// The point of the form: a small file's record is much shorter.
    #[test]
    fn a_small_files_record_is_shorter_by_its_chunk_and_writer() {
        let r = small_file();
        let plain = postcard::to_allocvec(&r).unwrap().len();
        let stored = write_record(&r).len();
        assert!(stored + 60 <= plain, "stored {stored} bytes, plain {plain}");
    }

    /// Damaged or contradictory stored records are errors, never a
    /// record made up.
    #[test]
    fn a_damaged_stored_record_is_an_error() {
        let stored = write_record(&small_file());
        for cut in 1..stored.len() {
            assert!(decode_record(&stored[..cut]).is_err(), "cut at {cut}");
        }
        let r = small_file();
        let stored = |chunks, hash, modified_by| {
            let s = Stored {
                kind: r.kind,
                size: r.size,
                mtime_ns: r.mtime_ns,
                mode: r.mode,
                inode: r.inode,
                hash,
                chunks,
                link_target: None,
                version: Cow::Borrowed(&r.version),
                modified_by,
                deleted: false,
            };
            let mut out = vec![STORED_TAG];
            out.extend(postcard::to_allocvec(&s).unwrap());
            decode_record(&out)
        };
        assert!(stored(StoredChunks::Whole, r.hash, Writer::InVersion(1)).is_ok());
        for (chunks, hash, writer) in [
            (StoredChunks::Whole, None, Writer::InVersion(1)),
            (StoredChunks::Whole, r.hash, Writer::InVersion(2)),
        ] {
            assert!(matches!(
                stored(chunks, hash, writer),
                Err(RecordError::Inconsistent(_))
            ));
        }
    }
}
