//! Application key/values (the SDK's `put`/`get`/`remove`) as synced data.
//!
//! App data lives in one *space* shared by every node, [`APP_SPACE`], which
//! the sync engine treats like a folder whose entries carry their bytes
//! inline instead of on disk. A key has two entries, written in one WAL
//! batch so they never disagree:
//!
//! * the index record, namespace `files`, key `@app/<key>`: a
//!   [`FileRecord`] of kind [`EntryKind::Value`] with the value's size,
//!   blake3 hash and version vector — what index exchange, conflict
//!   resolution and tombstones work on, exactly as for files;
//! * the value itself, namespace [`ns::APP`], key `<key>` (what `get` reads).
//!
//! A concurrent write on two nodes is a conflict like any other: one value
//! wins the key on every node, the other is kept under
//! `KEY.sync-conflict-YYYYMMDD-HHMMSS-<node>` (itself a synced key).

use super::EntryKind;
use crate::core::{ContentHash, NodeId, Seq, Timestamp, VersionVector};
use crate::store::{Op, Store, ns};

use super::{FileRecord, FolderError, file_key};

/// The id of the app-data space. The `@` keeps it apart from folder ids,
/// which cannot contain it.
pub const APP_SPACE: &str = "@app";

/// Largest value accepted (it travels inline in an index page, whose frame
/// is at most 1 MiB).
pub const MAX_VALUE: usize = 256 * 1024;

/// Longest key, in bytes.
pub const MAX_KEY: usize = 1024;

/// Check an application key: 1–1024 bytes, no control characters (NUL
/// included), no leading or trailing whitespace.
pub fn validate_key(key: &str) -> Result<(), FolderError> {
    let bad = |reason| {
        Err(FolderError::InvalidKey {
            key: key.chars().take(80).collect(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("a key cannot be empty");
    }
    if key.len() > MAX_KEY {
        return bad("a key is at most 1024 bytes");
    }
    if key.chars().any(char::is_control) {
        return bad("a key cannot contain control characters");
    }
    if key.trim() != key {
        return bad("a key cannot start or end with whitespace");
    }
    Ok(())
}

/// The index record of `key`, if any (live or a deletion).
pub fn record(store: &Store, key: &str) -> Result<Option<FileRecord>, FolderError> {
    let k = file_key(APP_SPACE, key);
    store
        .value(ns::FILES, &k)
        .map(|v| super::read_record(&k, &v))
        .transpose()
}

/// The record of a value written on `node` at `mtime_ns`.
pub fn value_record(
    value: &[u8],
    version: VersionVector,
    node: NodeId,
    mtime_ns: i64,
) -> FileRecord {
    FileRecord {
        kind: EntryKind::Value,
        size: value.len() as u64,
        mtime_ns,
        mode: 0,
        inode: 0,
        hash: Some(ContentHash::of(value)),
        chunks: Vec::new(),
        link_target: None,
        version,
        modified_by: node,
        deleted: false,
    }
}

/// Set `key` to `value` on `node`: one durable WAL batch holding the value
/// and its index record (version bumped for `node`). Writing the bytes a
/// key already holds changes nothing and returns the current sequence.
pub fn put(store: &mut Store, node: NodeId, key: &str, value: &[u8]) -> Result<Seq, FolderError> {
    validate_key(key)?;
    if value.len() > MAX_VALUE {
        return Err(FolderError::ValueTooLarge {
            key: key.to_string(),
            len: value.len(),
            max: MAX_VALUE,
        });
    }
    let local = record(store, key)?;
    if let Some(l) = local.as_ref().filter(|l| !l.deleted)
        && l.hash == Some(ContentHash::of(value))
        && get(store, key).is_some()
    {
        return Ok(store.last_seq());
    }
    let mut version = local.map(|l| l.version).unwrap_or_default();
    version.bump(node);
    let rec = value_record(value, version, node, now_ns(store));
    write(store, node, key, &rec, Some(value))
}

fn now_ns(store: &Store) -> i64 {
    i64::try_from(store.wall_time().as_nanos()).unwrap_or(i64::MAX)
}

/// `rec` made a deletion by `node` at `mtime_ns`.
fn deletion(rec: &FileRecord, node: NodeId, mtime_ns: i64) -> FileRecord {
    let mut gone = rec.clone();
    gone.version.bump(node);
    gone.deleted = true;
    gone.size = 0;
    gone.hash = None;
    gone.modified_by = node;
    gone.mtime_ns = mtime_ns;
    gone
}

/// One WAL batch: `key`'s index record `rec`, and its value (`None`: gone).
fn write(
    store: &mut Store,
    node: NodeId,
    key: &str,
    rec: &FileRecord,
    value: Option<&[u8]>,
) -> Result<Seq, FolderError> {
    let batch = ops(node, store.wall_time(), key, rec, value);
    let seqs = store.apply_batch(batch.into())?;
    Ok(seqs.last().copied().unwrap_or_else(|| store.last_seq()))
}

/// The two operations that set `key` to index record `rec` and its value
/// (`None`: the value is gone), for a caller's batch — they must always be
/// written together.
pub fn ops(
    node: NodeId,
    timestamp: Timestamp,
    key: &str,
    rec: &FileRecord,
    value: Option<&[u8]>,
) -> [Op; 2] {
    let index = Op::Put {
        ns: ns::FILES.into(),
        key: file_key(APP_SPACE, key),
        value: super::write_record(rec),
        origin: node,
        timestamp,
    };
    let bytes = match value {
        Some(v) => Op::Put {
            ns: ns::APP.into(),
            key: key.to_string(),
            value: v.to_vec(),
            origin: node,
            timestamp,
        },
        None => Op::Remove {
            ns: ns::APP.into(),
            key: key.to_string(),
            origin: node,
            timestamp,
        },
    };
    [index, bytes]
}

/// Remove `key` on `node`: a deletion record (which syncs as a tombstone)
/// and the value gone, in one batch. `None` if there was no live value.
pub fn remove(store: &mut Store, node: NodeId, key: &str) -> Result<Option<Seq>, FolderError> {
    validate_key(key)?;
    let Some(rec) = record(store, key)?.filter(|r| !r.deleted) else {
        return Ok(None);
    };
    let gone = deletion(&rec, node, now_ns(store));
    write(store, node, key, &gone, None).map(Some)
}

/// The value of `key`, if it has one.
pub fn get(store: &Store, key: &str) -> Option<Vec<u8>> {
    store.value(ns::APP, key)
}

/// Live keys starting with `prefix`, in order, with their values.
pub fn list<'a>(store: &'a Store, prefix: &'a str) -> impl Iterator<Item = (String, Vec<u8>)> + 'a {
    store
        .list(ns::APP, prefix)
        .filter_map(|(k, e)| Some((k, e.value?)))
}

/// Make the index agree with the values after a crash. A key's value and
/// its index record are written in one WAL batch, but a torn tail can keep
/// the first half of a batch. As the disk is for files, the stored value is
/// the truth: a key whose value does not match its index record (or has
/// none while the record says it is live) is recorded again as a change of
/// `node`. Returns how many keys were repaired.
pub fn reconcile(store: &mut Store, node: NodeId) -> Result<usize, FolderError> {
    let mut keys: std::collections::BTreeSet<String> =
        list(store, "").map(|(k, _)| k.to_string()).collect();
    keys.extend(
        super::records(store, APP_SPACE)
            .filter_map(Result::ok)
            .map(|(k, _)| k.to_string()),
    );
    let ts = store.wall_time();
    let mtime = now_ns(store);
    let mut ops = Vec::new();
    for key in keys {
        let rec = record(store, &key)?;
        let value = get(store, &key);
        let live = rec.as_ref().filter(|r| !r.deleted);
        let fresh = match (live, value) {
            (Some(r), Some(v)) if r.hash == Some(ContentHash::of(&v)) => continue,
            (None, None) => continue,
            (_, Some(v)) => {
                let mut version = rec.map(|r| r.version).unwrap_or_default();
                version.bump(node);
                value_record(&v, version, node, mtime)
            }
            (Some(r), None) => deletion(r, node, mtime),
        };
        tracing::warn!(key = %key, "app value and index disagreed (an interrupted write); recorded the value as it is");
        ops.push(Op::Put {
            ns: ns::FILES.into(),
            key: file_key(APP_SPACE, &key),
            value: super::write_record(&fresh),
            origin: node,
            timestamp: ts,
        });
    }
    let n = ops.len();
    if n > 0 {
        store.apply_batch(ops)?;
    }
    Ok(n)
}
