//! Where a store lives and how it behaves ([`StoreConfig`]), and what
//! opening it found ([`StoreRecovery`]). Types only; no I/O.

use std::path::PathBuf;

use super::state;
use crate::core::{NodeId, Seq};
use crate::wal::{Durability, RecoveryReport};

/// Where the store lives and how it behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Directory holding `wal/` and the index file.
    pub dir: PathBuf,
    /// WAL durability policy.
    pub durability: Durability,
    /// WAL segment size.
    pub segment_bytes: u64,
    /// `Store::maybe_checkpoint` checkpoints once this many operations
    /// were logged since the last checkpoint...
    pub checkpoint_after_ops: u64,
    /// ...or once the index was committed to this many times (each commit
    /// without an fsync holds its old pages until the next checkpoint).
    pub checkpoint_after_commits: u64,
    /// The index's page cache, in bytes: the store's memory, whatever the
    /// number of keys.
    pub cache_bytes: usize,
    /// The index is compacted (`Store::compact_when_wasteful`) only once
    /// its file holds at least this many bytes.
    pub compact_from_bytes: u64,
    /// Origin recorded on local operations.
    pub node: NodeId,
    /// Namespaces whose entries each checkpoint also copies to
    /// `aside.bin` (see `store::aside`), so that damage to the index does
    /// not take how the node is set up with it. Small ones only: each copy
    /// is written whole. By default [`KEPT_ASIDE`].
    pub kept_aside: Vec<String>,
}

/// The namespaces kept aside by default: the node's folders and who they
/// are shared with, its trusted peers, and the per-folder and per-peer
/// settings (`index::folders`, `index::guard`, `index::retention`,
/// `index::members`, `sync::receive_only`, `runtime::trust`,
/// `runtime::offers` own them; a test there checks each is listed). Not
/// the file records, kept versions, values or sync bookkeeping: a scan,
/// the peers or the layers above give those back.
pub const KEPT_ASIDE: &[&str] = &[
    "folders",
    "folder.guard",
    "folder.versions",
    "folder.local-versions",
    "app.members",
    "peers",
    "peers.name",
    "peers.paused",
    "meta",
    "sync.receive-only",
    "offers.declined",
];

impl StoreConfig {
    /// Defaults: fsync per append, 16 MiB segments (a checkpoint drops the
    /// ones it covers: the log on disk is about one segment), a checkpoint every
    /// 100,000 operations or 1,000 commits, a 24 MiB cache, origin
    /// [`NodeId::LOCAL`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            durability: Durability::EveryAppend,
            segment_bytes: 16 << 20,
            checkpoint_after_ops: 100_000,
            checkpoint_after_commits: 1_000,
            cache_bytes: 24 << 20,
            compact_from_bytes: 16 << 20,
            node: NodeId::LOCAL,
            kept_aside: KEPT_ASIDE.iter().map(|s| s.to_string()).collect(),
        }
    }
    /// The WAL directory inside [`StoreConfig::dir`].
    pub fn wal_dir(&self) -> PathBuf {
        self.dir.join("wal")
    }
    /// The index file inside [`StoreConfig::dir`].
    pub fn index_path(&self) -> PathBuf {
        self.dir.join(state::FILE_NAME)
    }
    /// Where releases before the on-disk index kept snapshots (read once,
    /// to migrate such a home).
    pub fn snapshot_dir(&self) -> PathBuf {
        self.dir.join("snapshots")
    }
}

/// What opening the store found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreRecovery {
    /// The sequence the index was at when opened (its last checkpoint, or
    /// later after a clean close); `None` for a new index.
    pub checkpoint: Option<Seq>,
    /// An older home's snapshot the new index was made from, if any.
    pub migrated_snapshot: Option<Seq>,
    /// Older snapshots found unusable while migrating, with the reason.
    pub snapshot_fallbacks: Vec<String>,
    /// What the WAL found and repaired.
    pub wal: RecoveryReport,
}
