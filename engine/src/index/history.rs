//! # index::history — the kept versions of each file, as data
//!
//! Owns the record of every version a node kept instead of destroying it:
//! a file a peer's change replaced or deleted, one a revert or a settled
//! conflict set aside, what a restore replaced. Each is a [`Kept`] in the `history` namespace under
//! `<folder>/<path>` NUL `<kept at, ns, 20 digits>`, so a file's versions
//! are one prefix scan, oldest first. A kept version says what it was (its
//! [`FileRecord`]: size, hash, chunks, who made it), when and why it was
//! kept, and where its bytes are ([`Stored`]). Values are versioned
//! (`0x01` + postcard). This node's bookkeeping only, never sent; written
//! in the same WAL batch as the change that kept the version. It reads and
//! writes the store; it never touches the bytes themselves.

use serde::{Deserialize, Serialize};

use super::{FileRecord, FolderError};
use crate::core::Timestamp;
use crate::store::{Op, Store};

/// Namespace of kept versions.
pub const HISTORY_NS: &str = "history";

/// Kept versions whose bytes are still to be gathered ([`Stored::Wanted`]):
/// the same keys as [`HISTORY_NS`], empty values. A short list to look
/// through, so gathering never walks the whole history.
pub const WANTED_NS: &str = "history.wanted";

/// The format byte that starts every value.
const FORMAT: u8 = 1;

/// Why a version was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// A peer's newer version replaced it.
    Replaced,
    /// A peer deleted it.
    Deleted,
    /// It lost a conflict that a person settled.
    Conflict,
    /// A revert of a receive-only folder put the peers' version back.
    Reverted,
    /// A restore put an older version in its place.
    Restored,
    /// An edit made on this device replaced it.
    EditedHere,
    /// It was deleted on this device.
    DeletedHere,
}

impl Why {
    /// As people read it.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Replaced => "replaced",
            Why::Deleted => "deleted",
            Why::Conflict => "conflict",
            Why::Reverted => "reverted",
            Why::Restored => "restored over",
            Why::EditedHere => "edited here",
            Why::DeletedHere => "deleted here",
        }
    }
}

/// Where a kept version's bytes are (see
/// [`crate::runtime::exec::versions`] for the version store). New variants
/// go last: a value names its variant by number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stored {
    /// A whole file, at this path under the folder's root (its trash).
    File(String),
    /// Whole, in the folder's version store under its content hash.
    Blob,
    /// Chunk by chunk: each chunk loose in the version store or inside one
    /// of these versions kept whole (by content hash).
    Chunks {
        /// The whole versions it shares chunks with.
        bases: Vec<crate::core::ContentHash>,
    },
    /// Not here yet. A version an edit or a deletion on this device
    /// replaced was gone from the disk before it could be copied: its bytes
    /// are gathered afterwards, from this device's own files and from the
    /// peers that kept it (see [`WANTED_NS`]).
    Wanted,
}

/// One kept version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// What it was.
    pub record: FileRecord,
    /// When it was kept.
    pub kept_at: Timestamp,
    /// Why.
    pub why: Why,
    /// Where its bytes are.
    pub stored: Stored,
}

/// The key prefix of `path`'s versions in folder `folder`.
pub fn prefix(folder: &str, path: &str) -> String {
    format!("{folder}/{path}\0")
}

/// The store operation recording `kept` for `path` of `folder` (see
/// [`key_for`]).
pub fn keep_op(store: &Store, folder: &str, path: &str, kept: &Kept) -> Op {
    let mut kept = kept.clone();
    let key = key_for(store, folder, path, &mut kept);
    put_op(store, key, &kept)
}

/// The key `kept` is recorded under for `path` of `folder`. Two versions
/// of a path kept at the same instant get distinct keys: the later one's
/// time (in `kept` too) is moved on by a nanosecond.
pub fn key_for(store: &Store, folder: &str, path: &str, kept: &mut Kept) -> String {
    loop {
        let key = format!("{}{:020}", prefix(folder, path), kept.kept_at.0);
        if !store.contains(HISTORY_NS, &key) {
            return key;
        }
        kept.kept_at = Timestamp(kept.kept_at.0 + 1);
    }
}

/// The store operations recording `kept` for `path` of `folder` and, when
/// its bytes are [`Stored::Wanted`], listing it in [`WANTED_NS`].
pub fn keep_ops(store: &Store, folder: &str, path: &str, kept: &Kept) -> Vec<Op> {
    let mut kept = kept.clone();
    let key = key_for(store, folder, path, &mut kept);
    let mut ops = vec![put_op(store, key.clone(), &kept)];
    if kept.stored == Stored::Wanted {
        ops.push(Op::Put {
            ns: WANTED_NS.into(),
            key,
            value: Vec::new(),
            origin: store.config().node,
            timestamp: store.wall_time(),
        });
    }
    ops
}

/// Up to `limit` keys of folder `folder`'s versions whose bytes are still
/// wanted, in path order, passing over those `skip` names.
pub fn wanted(
    store: &Store,
    folder: &str,
    limit: usize,
    skip: impl Fn(&str) -> bool,
) -> Vec<String> {
    store
        .list(WANTED_NS, &format!("{folder}/"))
        .filter(|(k, _)| !skip(k))
        .take(limit)
        .map(|(k, _)| k.to_string())
        .collect()
}

/// The kept version recorded under `key`, if any.
pub fn get(store: &Store, key: &str) -> Result<Option<Kept>, FolderError> {
    store
        .value(HISTORY_NS, key)
        .map(|v| decode(key, &v))
        .transpose()
}

/// The path of folder `folder` a history key is about.
pub fn path_of_key<'a>(folder: &str, key: &'a str) -> &'a str {
    key.get(folder.len() + 1..)
        .and_then(|rest| rest.split('\0').next())
        .unwrap_or_default()
}

/// The store operation writing `kept` under `key` (as [`keep_op`] chose
/// it): a version's record written again, e.g. its bytes' place corrected.
pub fn put_op(store: &Store, key: String, kept: &Kept) -> Op {
    let mut value = vec![FORMAT];
    value.extend(super::encode(kept));
    Op::Put {
        ns: HISTORY_NS.into(),
        key,
        value,
        origin: store.config().node,
        timestamp: store.wall_time(),
    }
}

/// Decode a stored kept version.
pub fn decode(key: &str, bytes: &[u8]) -> Result<Kept, FolderError> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => super::decode(key, rest),
        Some((v, _)) => Err(FolderError::Corruption {
            key: key.to_string(),
            reason: format!("kept version in format {v}, which this release does not read"),
        }),
        None => Err(FolderError::Corruption {
            key: key.to_string(),
            reason: "empty".into(),
        }),
    }
}

/// The kept versions of `path` in folder `folder`, oldest first.
pub fn versions(store: &Store, folder: &str, path: &str) -> Result<Vec<Kept>, FolderError> {
    store
        .list(HISTORY_NS, &prefix(folder, path))
        .map(|(k, e)| decode(&k, e.value.as_deref().unwrap_or_default()))
        .collect()
}

/// Every kept version of folder `folder`: (path, version), in path order
/// then oldest first.
pub fn all(store: &Store, folder: &str) -> Result<Vec<(String, Kept)>, FolderError> {
    store
        .list(HISTORY_NS, &format!("{folder}/"))
        .map(|(k, e)| {
            let path = path_of_key(folder, &k).to_string();
            decode(&k, e.value.as_deref().unwrap_or_default()).map(|v| (path, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{NodeId, VersionVector};
    use crate::index::EntryKind;
    use crate::store::StoreConfig;

    fn kept(at: u64, why: Why) -> Kept {
        Kept {
            record: FileRecord {
                kind: EntryKind::File,
                size: at,
                mtime_ns: 0,
                mode: 0o644,
                inode: 0,
                hash: None,
                chunks: Vec::new(),
                link_target: None,
                version: VersionVector::default(),
                modified_by: NodeId([3; 32]),
                deleted: false,
            },
            kept_at: Timestamp(at),
            why,
            stored: Stored::File(format!(".softadastra/trash/{at}/a.txt")),
        }
    }

    #[test]
    fn versions_are_listed_oldest_first_per_path() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open_dir(StoreConfig::new(dir.path())).unwrap();
        for (path, at, why) in [
            ("a.txt", 30, Why::Deleted),
            ("a.txt", 10, Why::Replaced),
            ("a.txt2", 20, Why::Replaced),
            ("b/a.txt", 5, Why::Conflict),
        ] {
            let op = keep_op(&store, "docs", path, &kept(at, why));
            store.apply(op).unwrap();
        }
        let a = versions(&store, "docs", "a.txt").unwrap();
        assert_eq!(
            a.iter().map(|k| k.kept_at.0).collect::<Vec<_>>(),
            [10, 30],
            "a.txt2 is another file"
        );
        let every = all(&store, "docs").unwrap();
        assert_eq!(every.len(), 4);
        assert_eq!(every[3].0, "b/a.txt", "the path is read from the key");
        assert!(decode("k", &[9, 1, 2]).is_err());
        // Two kept at one instant are both kept.
        for _ in 0..2 {
            let op = keep_op(&store, "docs", "same.txt", &kept(40, Why::Replaced));
            store.apply(op).unwrap();
        }
        let same = versions(&store, "docs", "same.txt").unwrap();
        assert_eq!(
            same.iter().map(|k| k.kept_at.0).collect::<Vec<_>>(),
            [40, 41]
        );
    }
}
