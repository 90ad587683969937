//! Checkpoints and compaction: when the index is made durable, the WAL
//! trimmed to what the index lacks, and the index file given back the
//! space its freed and half-empty pages take. Part of the [`Store`]; it
//! never writes a change of its own (a checkpoint only makes durable what
//! was applied, and a compaction moves pages, not entries).

use std::path::Path;
use std::sync::Arc;

use super::{Store, StoreError, io_err};
use crate::core::Seq;
use crate::wal::Storage;

/// A checkpoint that was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Last sequence covered.
    pub seq: Seq,
    /// Entries in the index (tombstones included).
    pub entries: u64,
    /// Size of the index file.
    pub bytes: u64,
    /// WAL segments removed by compaction.
    pub compacted_segments: usize,
}

/// A checkpoint closes the active WAL segment, to remove it, once it holds
/// this many bytes and nothing the index lacks.
const ROTATE_COVERED_AT: u64 = 1 << 20;

impl Store {
    /// Checkpoint if `StoreConfig::checkpoint_after_ops` operations were
    /// logged, or `StoreConfig::checkpoint_after_commits` commits made,
    /// since the last one.
    pub fn maybe_checkpoint(&mut self) -> Result<Option<CheckpointInfo>, StoreError> {
        if self.wal.last_seq().0 - self.checkpoint_seq.0 >= self.config.checkpoint_after_ops
            || self.state.commits() >= self.config.checkpoint_after_commits
        {
            self.checkpoint().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Whether a checkpoint would give back log space the index covers
    /// already: a closed segment, or an active one of at least
    /// [`ROTATE_COVERED_AT`] bytes whose every record is in the index.
    pub(super) fn log_reclaimable(&self) -> bool {
        let at = self.checkpoint_seq;
        self.wal.covered_segments(at) > 0 || self.active_segment_reclaimable(at)
    }

    /// Whether the active segment holds only records `<= at` and at least
    /// [`ROTATE_COVERED_AT`] bytes: worth closing, to remove it.
    fn active_segment_reclaimable(&self, at: Seq) -> bool {
        self.wal.last_seq() <= at && self.wal.active_bytes() >= ROTATE_COVERED_AT
    }

    /// Flush the WAL, make the index durable up to it, and drop the WAL
    /// segments it covers (the active one too, once closed, when it is
    /// large: a bulk change would otherwise stay in the log until the
    /// segment fills).
    pub fn checkpoint(&mut self) -> Result<CheckpointInfo, StoreError> {
        let seq = self.flush()?;
        if let Err(e) = self.state.commit(true) {
            return Err(self.index_failed(e));
        }
        self.checkpoint_seq = seq;
        // Before the log gives up what the index now holds.
        self.keep_aside(seq);
        if self.active_segment_reclaimable(seq) {
            self.wal.rotate()?;
        }
        let compacted = self.wal.compact(seq)?;
        let path = self.config.index_path();
        let bytes = (self.storage.open_paged(&path))
            .and_then(|f| f.size())
            .map_err(io_err("measure", &path))?;
        Ok(CheckpointInfo {
            seq,
            entries: self.state.count(),
            bytes,
            compacted_segments: compacted,
        })
    }

    /// Copy the namespaces kept aside to `aside.bin` (see
    /// [`super::aside`]) when they changed since the copy there (read at
    /// open). A failure is said and left for the next checkpoint: the
    /// index is durable.
    pub(super) fn keep_aside(&mut self, seq: Seq) {
        if self.config.kept_aside.is_empty() {
            return;
        }
        let mut rows = super::aside::Rows::new();
        for ns in &self.config.kept_aside {
            rows.extend(
                self.state
                    .scan(ns, "")
                    .map(|(key, entry)| (ns.clone(), key, entry)),
            );
        }
        let written = super::aside::body(&rows).and_then(|body| {
            let digest = super::aside::digest(&body);
            if self.aside_digest != Some(digest) {
                let bytes = super::aside::frame(seq, body);
                write_whole(
                    self.storage.as_ref(),
                    &super::aside::path(&self.config.dir),
                    &bytes,
                )?;
                self.aside_digest = Some(digest);
            }
            Ok(())
        });
        if let Err(e) = written {
            tracing::warn!(error = %e, "the node's setup was not kept aside; the next checkpoint tries again");
        }
    }

    /// Whether [`Store::compact_when_wasteful`] would look at the index:
    /// it changed by a quarter of what it holds since the last look, and
    /// the file is large enough to matter. Cheap: no page is read.
    pub fn compaction_due(&self) -> bool {
        let path = self.config.index_path();
        let bytes = (self.storage.open_paged(&path))
            .and_then(|f| f.size())
            .unwrap_or(0);
        !self.wal.is_poisoned()
            && self
                .state
                .compaction_due(self.config.compact_from_bytes, bytes)
    }

    /// Checkpoint, then compact the index if its waste (pages freed by
    /// commits, half-empty ones) passes half its data and it changed by a
    /// quarter of what it holds since the last look (see
    /// `state::compact::Compactor`). It holds the store for as long as
    /// it takes (~0.7 s at 200,000 files), so a running node does it only
    /// once changes paused for a minute, and closing does it too
    /// ([`Store`]'s drop). Returns the file's bytes before and after,
    /// when it ran.
    pub fn compact_when_wasteful(&mut self) -> Result<Option<(u64, u64)>, StoreError> {
        let before = self.checkpoint()?.bytes;
        // Only when nothing else reads the index (a scan in progress
        // holds it): a later call tries again.
        let from = self.config.compact_from_bytes;
        let Some(state) = Arc::get_mut(&mut self.state) else {
            return Ok(None);
        };
        let Some(done) = state.compact_when_wasteful(from, before)? else {
            return Ok(None);
        };
        let path = self.config.index_path();
        let after = (self.storage.open_paged(&path))
            .and_then(|f| f.size())
            .map_err(io_err("measure", &path))?;
        tracing::info!(
            before,
            after,
            took_ms = done.took_ms,
            "store index compacted"
        );
        Ok(Some((before, after)))
    }
}

impl Store {
    /// Checkpoint, then close the index and open it again, so that its
    /// page cache (`StoreConfig::cache_bytes`, filled by any large sync
    /// or scan) goes back to the allocator: what a node at rest calls
    /// (the next reads fill it again from the disk's cache, a few ms).
    /// `false` when it was not done: a scan holds the state, or the log
    /// failed. A failure to open the index again is returned, and leaves
    /// the store refusing every read and write until it is opened anew
    /// (nothing is lost: the index is durable at the checkpoint just made).
    pub fn release_cache(&mut self) -> Result<bool, StoreError> {
        // A scan holding the state is looked at before the checkpoint, so
        // that a caller trying again meanwhile does not fsync each time.
        if self.wal.is_poisoned() || Arc::strong_count(&self.state) > 1 {
            return Ok(false);
        }
        self.checkpoint()?;
        let Some(state) = Arc::get_mut(&mut self.state) else {
            return Ok(false);
        };
        state.reopen(
            self.storage.as_ref(),
            &self.config.index_path(),
            self.config.cache_bytes,
        )
    }
}

/// Write `bytes` as the whole file at `path`, durably and atomically: a
/// temporary file beside it, fsynced, renamed over it, the directory
/// fsynced. On failure the temporary file is removed and `path` is as it
/// was.
pub(super) fn write_whole(
    storage: &dyn Storage,
    path: &Path,
    bytes: &[u8],
) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let written = storage
        .create(&tmp)
        .map_err(io_err("create", &tmp))
        .and_then(|mut file| {
            file.write_all(bytes).map_err(io_err("write", &tmp))?;
            file.sync().map_err(io_err("fsync", &tmp))
        })
        .and_then(|()| storage.rename(&tmp, path).map_err(io_err("rename", &tmp)));
    if let Err(e) = written {
        let _ = storage.remove(&tmp);
        return Err(e);
    }
    storage.sync_dir(dir).map_err(io_err("sync directory", dir))
}
