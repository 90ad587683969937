//! # store::aside — the node's setup kept beside the index
//!
//! A checkpoint compacts the log up to the index: from then on the index
//! is the only copy of every change before it. Damage to the index then
//! loses them all — the file records, which a scan of the disk and the
//! peers give back, but also what says how the node is set up (which
//! folders it shares and with whom, its trusted peers), which nothing
//! else holds: a repaired node no longer knew its folders or its peers,
//! so it could neither scan nor sync them back.
//!
//! So at each checkpoint, before the log is compacted, the entries of the
//! namespaces [`StoreConfig::kept_aside`](super::StoreConfig::kept_aside)
//! names (small ones, tombstones included) are also written to
//! `aside.bin` in the store directory when they changed, whole and
//! atomically (`checkpoint::write_whole`). `repair`
//! starts from it when the index is unusable.
//!
//! Format (version [`VERSION`], pinned by `data/golden/aside-v1.bin`):
//! [`MAGIC`], version (u32 LE), the sequence it is as of (u64 LE), then
//! the postcard of `Vec<(namespace, key, Entry)>`, then the blake3 of
//! everything before it (32 bytes). A file that does not check out is
//! not used, and says why.
//!
//! It never decides what a namespace means (the list is configuration),
//! and a failure to write it never fails the checkpoint: it is a second
//! copy, and the next checkpoint tries again.

use std::path::{Path, PathBuf};

use super::{Entry, StoreError};
use crate::core::Seq;
use crate::wal::Storage;

/// The file's name in the store directory.
pub const FILE_NAME: &str = "aside.bin";

/// What the file starts with.
pub const MAGIC: &[u8; 8] = b"SDASIDE\0";

/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

/// Entries kept aside: namespace, key, entry.
pub type Rows = Vec<(String, String, Entry)>;

/// A checked copy read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Aside {
    /// The sequence the entries are as of (the checkpoint that wrote them).
    pub seq: Seq,
    /// The entries.
    pub rows: Rows,
}

/// The file of the store in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The rows' encoding: what the file holds after its header, and what
/// [`digest`] identifies.
pub fn body(rows: &Rows) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(rows)
        .map_err(|e| StoreError::Corruption(format!("cannot encode the entries kept aside: {e}")))
}

/// What identifies a [`body`] (not its sequence): a copy is written again
/// only when it changes.
pub fn digest(body: &[u8]) -> [u8; 32] {
    *blake3::hash(body).as_bytes()
}

/// The file's bytes for `body` (see [`body`]) as of `seq`.
pub fn frame(seq: Seq, body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + body.len() + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&seq.0.to_le_bytes());
    out.extend_from_slice(&body);
    let check = blake3::hash(&out);
    out.extend_from_slice(check.as_bytes());
    out
}

/// The file's bytes for `rows` as of `seq`.
pub fn encode(seq: Seq, rows: &Rows) -> Result<Vec<u8>, StoreError> {
    Ok(frame(seq, body(rows)?))
}

/// The copy in `bytes`, or why it cannot be used.
pub fn decode(bytes: &[u8]) -> Result<Aside, String> {
    const HEAD: usize = 8 + 4 + 8;
    if bytes.len() < HEAD + 32 || &bytes[..8] != MAGIC {
        return Err("not a copy of the node's setup (wrong start or too short)".into());
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(body).as_bytes() != digest {
        return Err("damaged (its checksum does not match)".into());
    }
    let version = u32::from_le_bytes(body[8..12].try_into().map_err(|_| "short header")?);
    if version != VERSION {
        return Err(format!(
            "format {version}, this build reads format {VERSION}"
        ));
    }
    let seq = u64::from_le_bytes(body[12..20].try_into().map_err(|_| "short header")?);
    let rows: Rows =
        postcard::from_bytes(&body[HEAD..]).map_err(|e| format!("does not decode: {e}"))?;
    Ok(Aside {
        seq: Seq(seq),
        rows,
    })
}

/// Read the copy in the store directory `dir`: `Ok(None)` when there is
/// none, `Err` (why) when it does not check out.
pub fn read(storage: &dyn Storage, dir: &Path) -> Result<Option<Aside>, String> {
    let path = path(dir);
    match storage.read(&path) {
        Ok(bytes) => decode(&bytes)
            .map(Some)
            .map_err(|why| format!("{}: {why}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{NodeId, Timestamp};

    fn rows() -> Rows {
        vec![
            (
                "folders".into(),
                "docs".into(),
                Entry {
                    value: Some(b"a folder".to_vec()),
                    version: Seq(7),
                    origin: NodeId::LOCAL,
                    timestamp: Timestamp(1_700_000_000_000),
                },
            ),
            (
                "peers".into(),
                "gone".into(),
                Entry {
                    value: None,
                    version: Seq(9),
                    origin: NodeId::LOCAL,
                    timestamp: Timestamp(1_700_000_000_001),
                },
            ),
        ]
    }

    #[test]
    fn a_copy_reads_back_as_written() {
        let bytes = encode(Seq(42), &rows()).unwrap();
        assert_eq!(
            decode(&bytes).unwrap(),
            Aside {
                seq: Seq(42),
                rows: rows()
            }
        );
    }

    #[test]
    fn a_damaged_or_foreign_copy_is_refused_with_why() {
        let bytes = encode(Seq(42), &rows()).unwrap();
        for at in [0, 9, 13, 25, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(decode(&bad).is_err(), "byte {at}");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(b"short").is_err());
    }
}
