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
//! Every change is an [`Op`]. It is appended to the [`Wal`] first (made
//! durable as the [`Durability`] policy says) and only then applied to the
//! in-memory map — never the other way round. If the append fails, the map
//! is untouched and the error is returned.
//!
//! ## Recovery
//!
//! State on disk is the newest valid *snapshot* plus the WAL records after
//! it. [`Store::snapshot`] writes a snapshot atomically (temporary file,
//! fsync, rename, fsync of the directory), keeps the newest
//! [`StoreConfig::snapshots_kept`], and compacts the WAL only up to the
//! *oldest* kept snapshot, so that if the newest snapshot is found damaged at
//! open the store falls back to the previous one (or a full replay) and says
//! so in [`StoreRecovery::snapshot_fallbacks`]. When neither a snapshot nor
//! the log can supply some records, opening fails with
//! [`StoreError::Corruption`] rather than inventing state.
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

//! ## Why this file is long
//!
//! About 900 lines, most of them one type: [`Store`] and the private state
//! its write path and its recovery share (the namespace map, the WAL, the
//! snapshot bookkeeping). Split apart, each half would need the other's
//! internals made public to the crate; the types that stand alone
//! ([`Op`], [`Entry`], the errors, the config) are small. The snapshot
//! format is in [`snapshot`], the tests in `tests.rs`.

pub mod repair;
pub mod snapshot;
mod tally;

pub use repair::{RepairReport, repair};
pub use tally::{TallyFn, Totals};

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::core::{Clock, ErrorContext, NodeId, Retry, Seq, SystemClock, Timestamp};
use crate::wal::{
    Durability, PendingSync, RecoveryReport, StdStorage, Storage, Wal, WalConfig, WalError,
};

/// Well-known namespaces.
pub mod ns {
    /// The file index of shared folders.
    pub const FILES: &str = "files";
    /// Application key/values written through the SDK and the CLI.
    pub const APP: &str = "app";
}

/// WAL record kind for a postcard-encoded [`Op`] (version 1 of the op encoding).
pub const OP_RECORD_KIND: u8 = 1;

/// One key's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The value, or `None` for a tombstone (the key was removed).
    pub value: Option<Vec<u8>>,
    /// WAL sequence of the operation that last changed this key.
    pub version: Seq,
    /// Wall-clock time of that operation.
    pub timestamp: Timestamp,
    /// Node that made that change.
    pub origin: NodeId,
}

impl Entry {
    /// Whether this entry records a removal.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// A change to the store, as recorded in the WAL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Set `key` to `value`.
    Put {
        /// Namespace.
        ns: String,
        /// Key.
        key: String,
        /// New value.
        value: Vec<u8>,
        /// Node the change comes from.
        origin: NodeId,
        /// When it was made.
        timestamp: Timestamp,
    },
    /// Remove `key`, leaving a tombstone.
    Remove {
        /// Namespace.
        ns: String,
        /// Key.
        key: String,
        /// Node the change comes from.
        origin: NodeId,
        /// When it was made.
        timestamp: Timestamp,
    },
    /// Forget tombstones in `ns` older than `before`.
    PurgeTombstones {
        /// Namespace.
        ns: String,
        /// Cut-off time.
        before: Timestamp,
    },
    /// Forget `key` entirely, leaving no tombstone: for local bookkeeping
    /// that must not look like a deletion to peers (a path that became ignored).
    Forget {
        /// Namespace.
        ns: String,
        /// Key.
        key: String,
    },
    /// Forget every key starting with `prefix`, leaving no tombstones (a
    /// folder removed from this node; its files stay on disk and on peers).
    DropPrefix {
        /// Namespace.
        ns: String,
        /// Key prefix (non-empty).
        prefix: String,
    },
}

impl Op {
    fn ns(&self) -> &str {
        match self {
            Op::Put { ns, .. }
            | Op::Remove { ns, .. }
            | Op::PurgeTombstones { ns, .. }
            | Op::Forget { ns, .. }
            | Op::DropPrefix { ns, .. } => ns,
        }
    }
    fn key(&self) -> Option<&str> {
        match self {
            Op::Put { key, .. } | Op::Remove { key, .. } | Op::Forget { key, .. } => Some(key),
            Op::DropPrefix { prefix, .. } => Some(prefix),
            Op::PurgeTombstones { .. } => None,
        }
    }
}

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The WAL failed; the operation was not accepted.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A snapshot file operation failed.
    #[error("snapshot {op} failed on {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Persisted state cannot be rebuilt.
    #[error("store corruption: {0}")]
    Corruption(String),
    /// Another process has the store open.
    #[error("store {dir} is in use by another process (lock file {dir}/LOCK is held)")]
    Locked {
        /// The store directory.
        dir: PathBuf,
    },
    /// A namespace or key the store does not accept.
    #[error("invalid key {ns:?}/{key:?}: {reason}")]
    InvalidKey {
        /// Namespace given.
        ns: String,
        /// Key given.
        key: String,
        /// Why it is refused.
        reason: &'static str,
    },
}

impl ErrorContext for StoreError {
    fn retry(&self) -> Retry {
        match self {
            StoreError::Wal(e) => e.retry(),
            StoreError::Io { .. } | StoreError::Locked { .. } => Retry::Later,
            StoreError::Corruption(_) | StoreError::InvalidKey { .. } => Retry::Never,
        }
    }
    fn is_corruption(&self) -> bool {
        match self {
            StoreError::Wal(e) => e.is_corruption(),
            StoreError::Corruption(_) => true,
            _ => false,
        }
    }
}

/// Where the store lives and how it behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Directory holding `wal/` and `snapshots/`.
    pub dir: PathBuf,
    /// WAL durability policy.
    pub durability: Durability,
    /// WAL segment size.
    pub segment_bytes: u64,
    /// How many snapshots to keep (at least 1). With 2 or more, a damaged
    /// newest snapshot can fall back to an older one.
    pub snapshots_kept: usize,
    /// [`Store::maybe_snapshot`] snapshots once this many operations were
    /// logged since the last snapshot.
    pub snapshot_after_ops: u64,
    /// Origin recorded on local operations.
    pub node: NodeId,
}

impl StoreConfig {
    /// Defaults: fsync per append, 64 MiB segments, 2 snapshots, a snapshot
    /// every 100,000 operations, origin [`NodeId::LOCAL`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            durability: Durability::EveryAppend,
            segment_bytes: 64 << 20,
            snapshots_kept: 2,
            snapshot_after_ops: 100_000,
            node: NodeId::LOCAL,
        }
    }
    /// The WAL directory inside [`StoreConfig::dir`].
    pub fn wal_dir(&self) -> PathBuf {
        self.dir.join("wal")
    }
    /// The snapshot directory inside [`StoreConfig::dir`].
    pub fn snapshot_dir(&self) -> PathBuf {
        self.dir.join("snapshots")
    }
}

/// What opening the store found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreRecovery {
    /// The snapshot recovery started from, if any.
    pub snapshot: Option<Seq>,
    /// Snapshots found unusable, newest first, with the reason.
    pub snapshot_fallbacks: Vec<String>,
    /// What the WAL found and repaired.
    pub wal: RecoveryReport,
}

/// A snapshot that was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Last sequence covered.
    pub seq: Seq,
    /// Entries written (tombstones included).
    pub entries: u64,
    /// File size.
    pub bytes: u64,
    /// WAL segments removed by compaction.
    pub compacted_segments: usize,
}

type Map = BTreeMap<String, Space>;

/// One namespace: its entries by key, and each key by its entry's version
/// (every operation changes one key, so versions are unique), for what
/// changed after a sequence without a walk of the whole namespace.
#[derive(Debug, Default)]
struct Space {
    entries: BTreeMap<Arc<str>, Entry>,
    by_seq: BTreeMap<Seq, Arc<str>>,
    /// Running totals, one per counting function asked for
    /// ([`Store::tally`]).
    tallies: Vec<tally::Tally>,
}

impl Space {
    fn from_sorted(rows: Vec<(String, Entry)>) -> Space {
        let mut by_seq = BTreeMap::new();
        let entries = rows
            .into_iter()
            .map(|(k, e)| {
                let k: Arc<str> = Arc::from(k);
                by_seq.insert(e.version, k.clone());
                (k, e)
            })
            .collect();
        Space {
            entries,
            by_seq,
            tallies: Vec::new(),
        }
    }

    fn set(&mut self, key: String, entry: Entry) {
        let version = entry.version;
        let key: Arc<str> = match self.entries.get_key_value(key.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(key),
        };
        // Counted before the entry moves into the map (no second lookup).
        let counted: Vec<Option<u64>> = self
            .tallies
            .iter()
            .map(|t| t.count(&key, entry.value.as_deref()))
            .collect();
        let old = self.entries.insert(key.clone(), entry);
        if let Some(old) = &old {
            self.by_seq.remove(&old.version);
        }
        for (t, is) in self.tallies.iter_mut().zip(counted) {
            let was = t.count(&key, old.as_ref().and_then(|o| o.value.as_deref()));
            t.counted(&key, was, is);
        }
        self.by_seq.insert(version, key);
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.entries.remove(key) {
            self.by_seq.remove(&old.version);
            for t in &mut self.tallies {
                t.changed(key, old.value.as_deref(), None);
            }
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        let by_seq = &mut self.by_seq;
        let tallies = &mut self.tallies;
        self.entries.retain(|k, e| {
            let kept = keep(e);
            if !kept {
                by_seq.remove(&e.version);
                for t in tallies.iter_mut() {
                    t.changed(k, e.value.as_deref(), None);
                }
            }
            kept
        });
    }
}

/// The key/value store. See the [module documentation](self).
pub struct Store {
    wal: Wal,
    data: Map,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    config: StoreConfig,
    snapshot_seq: Seq,
    /// Held while open (see [`Store::open_dir`]).
    lock: Option<std::fs::File>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.config.dir)
            .field("wal", &self.wal)
            .field("snapshot_seq", &self.snapshot_seq)
            .finish()
    }
}

fn apply_op(data: &mut Map, seq: Seq, op: Op) {
    match op {
        Op::Put {
            ns,
            key,
            value,
            origin,
            timestamp,
        } => {
            data.entry(ns).or_default().set(
                key,
                Entry {
                    value: Some(value),
                    version: seq,
                    timestamp,
                    origin,
                },
            );
        }
        Op::Remove {
            ns,
            key,
            origin,
            timestamp,
        } => {
            data.entry(ns).or_default().set(
                key,
                Entry {
                    value: None,
                    version: seq,
                    timestamp,
                    origin,
                },
            );
        }
        Op::PurgeTombstones { ns, before } => {
            if let Some(space) = data.get_mut(&ns) {
                space.retain(|e| !(e.is_tombstone() && e.timestamp < before));
            }
        }
        Op::Forget { ns, key } => {
            if let Some(space) = data.get_mut(&ns) {
                space.remove(&key);
            }
        }
        Op::DropPrefix { ns, prefix } => {
            if let Some(space) = data.get_mut(&ns) {
                let doomed: Vec<Arc<str>> = space
                    .entries
                    .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    space.remove(&k);
                }
            }
        }
    }
}

/// The snapshot bytes of `data` covering the WAL up to `seq`, and how
/// many entries (tombstones included) it holds.
fn snapshot_of(data: &Map, seq: Seq) -> (Vec<u8>, u64) {
    let count: u64 = data.values().map(|m| m.entries.len() as u64).sum();
    let rows = data
        .iter()
        .flat_map(|(n, m)| m.entries.iter().map(move |(k, e)| (n.as_str(), &**k, e)));
    (snapshot::encode(seq, count, rows), count)
}

/// A [`StoreError::Io`] maker for `op` on `path`.
fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// Take the exclusive lock on `dir/LOCK` (creating both if need be), held
/// for as long as the file returned stays open: a second process gets
/// [`StoreError::Locked`].
pub(crate) fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    let path = dir.join("LOCK");
    std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("open", &path))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err("lock", &path)(e)),
    }
}

/// The namespaces of a snapshot's rows (stored sorted): grouped and each
/// map bulk-built, not inserted one by one.
fn map_of_rows(rows: Vec<(String, String, Entry)>) -> Map {
    let mut data = Map::new();
    let mut rows = rows.into_iter().peekable();
    while let Some((n, k, e)) = rows.next() {
        let mut keys = vec![(k, e)];
        while let Some((_, k, e)) = rows.next_if(|(next, _, _)| *next == n) {
            keys.push((k, e));
        }
        match data.entry(n) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(Space::from_sorted(keys));
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                for (k, e) in keys {
                    o.get_mut().set(k, e);
                }
            }
        }
    }
    data
}

fn validate(op: &Op) -> Result<(), StoreError> {
    let bad = |reason| StoreError::InvalidKey {
        ns: op.ns().to_string(),
        key: op.key().unwrap_or("").to_string(),
        reason,
    };
    if op.ns().is_empty() {
        return Err(bad("namespace is empty"));
    }
    match op.key() {
        Some("") => Err(bad("key is empty")),
        Some(k) if k.len() > 4096 => Err(bad("key is longer than 4096 bytes")),
        _ => Ok(()),
    }
}

impl Store {
    /// Open the store in `config.dir` on the real file system, with the
    /// system clock, holding an exclusive lock on `config.dir/LOCK` for as
    /// long as the store is open: a second process gets
    /// [`StoreError::Locked`] instead of a second writer on the same log.
    pub fn open_dir(config: StoreConfig) -> Result<(Store, StoreRecovery), StoreError> {
        let lock = lock_dir(&config.dir)?;
        let (mut store, recovery) =
            Store::open(config, Arc::new(StdStorage), Arc::new(SystemClock))?;
        store.lock = Some(lock);
        Ok((store, recovery))
    }

    /// Open (or create) the store: load the newest valid snapshot, replay the WAL after it.
    pub fn open(
        config: StoreConfig,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> Result<(Store, StoreRecovery), StoreError> {
        let snap_dir = config.snapshot_dir();
        storage
            .create_dir_all(&snap_dir)
            .map_err(io_err("create directory", &snap_dir))?;
        let mut recovery = StoreRecovery::default();
        for name in storage.list(&snap_dir).map_err(io_err("list", &snap_dir))? {
            if name.ends_with(".tmp") {
                // An interrupted snapshot write: never renamed, never relied on.
                let path = snap_dir.join(&name);
                storage.remove(&path).map_err(io_err("remove", &path))?;
            }
        }
        let (newest, fallbacks) = snapshot::newest_usable(storage.as_ref(), &snap_dir)?;
        recovery.snapshot_fallbacks = fallbacks;
        let (mut data, mut base) = (Map::new(), Seq::ZERO);
        if let Some(d) = newest {
            base = d.seq;
            recovery.snapshot = Some(d.seq);
            data = map_of_rows(d.rows);
        }
        for fallback in &recovery.snapshot_fallbacks {
            tracing::warn!(%fallback, "snapshot unusable, falling back");
        }

        let mut applied = base;
        let wal_config = WalConfig {
            dir: config.wal_dir(),
            durability: config.durability,
            segment_bytes: config.segment_bytes,
        };
        let (wal, wal_report) = Wal::open(
            storage.clone(),
            wal_config,
            clock.clone(),
            base.next(),
            |rec| {
                if rec.seq != applied.next() {
                    return Err(format!(
                        "records {} to {} are in neither a usable snapshot nor the WAL",
                        applied.next(),
                        Seq(rec.seq.0 - 1)
                    ));
                }
                if rec.kind != OP_RECORD_KIND {
                    return Err(format!("unknown record kind {}", rec.kind));
                }
                let op: Op = postcard::from_bytes(rec.payload)
                    .map_err(|e| format!("operation does not decode: {e}"))?;
                apply_op(&mut data, rec.seq, op);
                applied = rec.seq;
                Ok(())
            },
        )?;
        if wal.next_seq() != applied.next() {
            return Err(StoreError::Corruption(format!(
                "records {} to {} are in neither a usable snapshot nor the WAL ({})",
                applied.next(),
                Seq(wal.next_seq().0 - 1),
                recovery.snapshot_fallbacks.join("; ")
            )));
        }
        if let Some(t) = &wal_report.truncated {
            tracing::warn!(segment = %t.segment.display(), offset = t.offset, discarded = t.discarded, "WAL torn tail cut at recovery");
        }
        recovery.wal = wal_report;
        Ok((
            Store {
                wal,
                data,
                storage,
                clock,
                config,
                snapshot_seq: base,
                lock: None,
            },
            recovery,
        ))
    }

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
        validate(&op)?;
        let payload =
            postcard::to_allocvec(&op).map_err(|e| StoreError::Corruption(e.to_string()))?;
        let seq = self.wal.append(OP_RECORD_KIND, &payload)?;
        apply_op(&mut self.data, seq, op);
        Ok(seq)
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
        for op in &ops {
            validate(op)?;
        }
        let payloads = ops
            .iter()
            .map(postcard::to_allocvec)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Corruption(e.to_string()))?;
        let records: Vec<(u8, &[u8])> = payloads
            .iter()
            .map(|p| (OP_RECORD_KIND, p.as_slice()))
            .collect();
        let range = self.wal.append_batch(&records)?;
        let mut seqs = Vec::with_capacity(ops.len());
        for (op, seq) in ops.into_iter().zip(range.start().0..=range.end().0) {
            apply_op(&mut self.data, Seq(seq), op);
            seqs.push(Seq(seq));
        }
        Ok(seqs)
    }

    /// The live entry for `key` (not a tombstone).
    pub fn get(&self, ns: &str, key: &str) -> Option<Entry> {
        self.entry(ns, key).filter(|e| !e.is_tombstone())
    }

    /// The entry for `key`, tombstones included.
    pub fn entry(&self, ns: &str, key: &str) -> Option<Entry> {
        self.data.get(ns)?.entries.get(key).cloned()
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
    /// tombstones included.
    pub fn scan_prefix<'a>(
        &'a self,
        ns: &str,
        prefix: &str,
    ) -> impl Iterator<Item = (String, Entry)> + use<'a> {
        let owned = prefix.to_string();
        self.data
            .get(ns)
            .map(|m| {
                m.entries
                    .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            })
            .into_iter()
            .flatten()
            .take_while(move |(k, _)| k.starts_with(&owned))
            .map(|(k, e)| (k.to_string(), e.clone()))
    }

    /// Entries of `ns` last changed after `since`, oldest change first,
    /// tombstones included: what a peer that has seen up to `since` lacks,
    /// found without a walk of the whole namespace.
    pub fn changed_since<'a>(
        &'a self,
        ns: &str,
        since: Seq,
    ) -> impl Iterator<Item = (String, Entry)> + use<'a> {
        self.data
            .get(ns)
            .map(|m| {
                m.by_seq
                    .range((Bound::Excluded(since), Bound::Unbounded))
                    .filter_map(|(_, k)| m.entries.get_key_value(&**k))
            })
            .into_iter()
            .flatten()
            .map(|(k, e)| (k.to_string(), e.clone()))
    }

    /// Live entries of `ns` whose key starts with `prefix`, in key order.
    pub fn list<'a>(
        &'a self,
        ns: &str,
        prefix: &'a str,
    ) -> impl Iterator<Item = (String, Entry)> + 'a {
        self.scan_prefix(ns, prefix)
            .filter(|(_, e)| !e.is_tombstone())
    }

    /// The running totals of `group` (keys `<group>/…`; `None`: every
    /// group) in `ns`, counted by `count`: the first call for a namespace
    /// and counting function walks the namespace once, later ones cost
    /// nothing — the totals are kept as entries change. A namespace may be
    /// counted several ways, each function keeping totals of its own.
    pub fn tally(&mut self, ns: &str, group: Option<&str>, count: TallyFn) -> Totals {
        let space = self.data.entry(ns.to_string()).or_default();
        let at = match space.tallies.iter().position(|t| t.counts_with(count)) {
            Some(at) => at,
            None => {
                let mut t = tally::Tally::new(count);
                for (k, e) in &space.entries {
                    t.changed(k, None, e.value.as_deref());
                }
                space.tallies.push(t);
                space.tallies.len() - 1
            }
        };
        space.tallies[at].totals(group)
    }

    /// Number of live entries in `ns`.
    pub fn len(&self, ns: &str) -> usize {
        self.data.get(ns).map_or(0, |m| {
            m.entries.values().filter(|e| !e.is_tombstone()).count()
        })
    }

    /// Whether `ns` has no live entries.
    pub fn is_empty(&self, ns: &str) -> bool {
        self.len(ns) == 0
    }

    /// Namespaces that hold entries.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.data.keys().map(String::as_str)
    }

    /// Run `work` with the log's fsyncs held: everything it applies is
    /// logged and applied at once, and made durable together by one fsync
    /// when it returns (group commit). The caller must not reveal those
    /// changes before this returns `Ok`. See [`Wal::hold`].
    pub fn hold<R>(&mut self, work: impl FnOnce(&mut Store) -> R) -> Result<R, StoreError> {
        let was = self.wal.hold_begin();
        let out = work(self);
        self.wal.hold_end(was)?;
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
        let out = work(self);
        let pending = self.wal.hold_end_deferred(was)?;
        Ok((out, pending))
    }

    /// The outcome of a [`PendingSync`] run away from the store. Returns
    /// [`Store::durable_seq`].
    pub fn synced(
        &mut self,
        done: PendingSync,
        result: std::io::Result<()>,
    ) -> Result<Seq, StoreError> {
        Ok(self.wal.synced(done, result)?)
    }

    /// Make every logged operation durable now.
    pub fn flush(&mut self) -> Result<Seq, StoreError> {
        Ok(self.wal.flush()?)
    }

    /// Group-commit timer: flush if the deadline passed at `now`.
    pub fn poll_flush(&mut self, now: Instant) -> Result<Seq, StoreError> {
        Ok(self.wal.poll_flush(now)?)
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

    /// The sequence the newest snapshot covers.
    pub fn snapshot_seq(&self) -> Seq {
        self.snapshot_seq
    }

    /// The underlying log (read-only).
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// The store clock's wall time, for stamping operations.
    pub fn wall_time(&self) -> Timestamp {
        self.clock.wall()
    }

    /// The configuration in use.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Snapshot if [`StoreConfig::snapshot_after_ops`] operations were logged
    /// since the last one.
    pub fn maybe_snapshot(&mut self) -> Result<Option<SnapshotInfo>, StoreError> {
        if self.wal.last_seq().0 - self.snapshot_seq.0 >= self.config.snapshot_after_ops {
            self.snapshot().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Write a snapshot of the current state atomically, drop old snapshots
    /// and compact the WAL (see the module docs for the retention rule).
    pub fn snapshot(&mut self) -> Result<SnapshotInfo, StoreError> {
        let seq = self.wal.flush()?;
        let dir = self.config.snapshot_dir();
        let (bytes, count) = snapshot_of(&self.data, seq);
        snapshot::write_file(self.storage.as_ref(), &dir, seq, &bytes)?;
        self.snapshot_seq = seq;

        let mut kept: Vec<Seq> = self
            .storage
            .list(&dir)
            .map_err(io_err("list", &dir))?
            .iter()
            .filter_map(|n| snapshot::parse_file_name(n))
            .collect();
        kept.sort_unstable_by(|a, b| b.cmp(a));
        let keep = self.config.snapshots_kept.max(1);
        for old in kept.iter().skip(keep) {
            let p = dir.join(snapshot::file_name(*old));
            self.storage.remove(&p).map_err(io_err("remove", &p))?;
        }
        kept.truncate(keep);
        // Start a fresh segment so everything the snapshot covers can later be
        // dropped, and drop what the oldest kept snapshot covers.
        self.wal.rotate()?;
        let compacted = if kept.len() >= keep {
            match kept.last() {
                Some(oldest) => self.wal.compact(*oldest)?,
                None => 0,
            }
        } else {
            0
        };
        Ok(SnapshotInfo {
            seq,
            entries: count,
            bytes: bytes.len() as u64,
            compacted_segments: compacted,
        })
    }
}

#[cfg(test)]
mod tests;
