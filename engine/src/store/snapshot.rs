//! The snapshot file format: the one encoder and the one decoder.
//!
//! ```text
//! magic    8  b"SDASNAP\n"
//! version  u16 LE (SNAPSHOT_VERSION)
//! reserved u16 LE (0)
//! seq      u64 LE  last WAL sequence the snapshot covers
//! count    u64 LE  number of entries
//! body_len u64 LE
//! body     postcard: sequence of (namespace, key, Entry), sorted
//! digest   32      blake3 of every byte above
//! ```

use serde::{Deserialize, Serialize};

use std::path::Path;

use super::{Entry, StoreError, io_err};
use crate::core::Seq;
use crate::wal::Storage;

/// First bytes of a snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"SDASNAP\n";
/// Version written in snapshot headers; readers refuse any other.
pub const SNAPSHOT_VERSION: u16 = 1;
const HEADER_LEN: usize = 8 + 2 + 2 + 8 + 8 + 8;

#[derive(Serialize)]
struct RowRef<'a>(&'a str, &'a str, &'a Entry);

#[derive(Deserialize)]
struct Row(String, String, Entry);

/// Encode a snapshot of `rows` covering the WAL up to `seq`.
pub fn encode<'a>(
    seq: Seq,
    count: u64,
    rows: impl Iterator<Item = (&'a str, &'a str, &'a Entry)>,
) -> Vec<u8> {
    let rows: Vec<RowRef<'a>> = rows.map(|(n, k, e)| RowRef(n, k, e)).collect();
    // Serializing plain strings, bytes and integers into memory cannot fail.
    let body = postcard::to_allocvec(&rows).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + 32);
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&seq.0.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    let digest = blake3::hash(&out);
    out.extend_from_slice(digest.as_bytes());
    out
}

/// A decoded snapshot.
pub struct Decoded {
    /// Last WAL sequence covered.
    pub seq: Seq,
    /// (namespace, key, entry) rows.
    pub rows: Vec<(String, String, Entry)>,
}

/// Decode and verify a snapshot file's bytes.
pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    if bytes.len() < HEADER_LEN + 32 {
        return Err(format!(
            "file is {} bytes, shorter than a snapshot header",
            bytes.len()
        ));
    }
    if bytes[..8] != SNAPSHOT_MAGIC {
        return Err("bad magic: not a Softadastra snapshot".into());
    }
    let (content, digest) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(content).as_bytes() != digest {
        return Err("checksum mismatch".into());
    }
    let u64_at = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&content[at..at + 8]);
        u64::from_le_bytes(a)
    };
    let version = u16::from_le_bytes([content[8], content[9]]);
    if version != SNAPSHOT_VERSION {
        return Err(format!(
            "unsupported snapshot version {version} (this build reads {SNAPSHOT_VERSION})"
        ));
    }
    let seq = Seq(u64_at(12));
    let count = u64_at(20);
    let body_len = u64_at(28);
    let body = &content[HEADER_LEN..];
    if body.len() as u64 != body_len {
        return Err(format!(
            "body is {} bytes, header says {body_len}",
            body.len()
        ));
    }
    let rows: Vec<Row> =
        postcard::from_bytes(body).map_err(|e| format!("body does not decode: {e}"))?;
    if rows.len() as u64 != count {
        return Err(format!("{} entries, header says {count}", rows.len()));
    }
    Ok(Decoded {
        seq,
        rows: rows.into_iter().map(|Row(n, k, e)| (n, k, e)).collect(),
    })
}

/// The file name of the snapshot covering the WAL up to `seq`.
pub fn file_name(seq: Seq) -> String {
    format!("snap-{:020}.snap", seq.0)
}

/// The sequence a snapshot file's name says it covers.
pub fn parse_file_name(name: &str) -> Option<Seq> {
    name.strip_prefix("snap-")?
        .strip_suffix(".snap")?
        .parse()
        .ok()
        .map(Seq)
}

/// Write `bytes` (see [`encode`]) as the snapshot for `seq` in `dir`,
/// atomically (`checkpoint::write_whole`).
#[cfg(test)]
pub(super) fn write_file(
    storage: &dyn Storage,
    dir: &Path,
    seq: Seq,
    bytes: &[u8],
) -> Result<(), StoreError> {
    super::checkpoint::write_whole(storage, &dir.join(file_name(seq)), bytes)
}

/// The newest snapshot in `dir` that checks out — its digest, its format
/// and the sequence its name gives — and, newest first, why each newer
/// one does not.
pub(super) fn newest_usable(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<(Option<Decoded>, Vec<String>), StoreError> {
    let mut seqs: Vec<Seq> = storage
        .list(dir)
        .map_err(io_err("list", dir))?
        .iter()
        .filter_map(|n| parse_file_name(n))
        .collect();
    seqs.sort_unstable_by(|a, b| b.cmp(a));
    let mut unusable = Vec::new();
    for seq in seqs {
        let path = dir.join(file_name(seq));
        match storage
            .read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| decode(&bytes))
        {
            Ok(d) if d.seq == seq => return Ok((Some(d), unusable)),
            Ok(d) => unusable.push(format!(
                "{}: covers sequence {} but is named for {seq}",
                path.display(),
                d.seq
            )),
            Err(reason) => unusable.push(format!("{}: {reason}", path.display())),
        }
    }
    Ok((None, unusable))
}
