//! Receive-only folders at the engine. Peers' changes are applied as in
//! any folder; this node's own changes are *withheld*: an index page of
//! the folder leaves out every record this node made after the folder
//! became receive-only (its *baseline*, the store sequence then, kept in
//! `sync.receive-only`, key the folder id). Such records are the
//! folder's "locally changed" paths — counted from a set kept up to date
//! from the records changed since its last look, never by a walk per
//! call. [`SyncEngine::revert_paths`] and [`SyncEngine::reverted`] are the
//! engine's two halves of `folder revert` (the runtime moves the local
//! copies to the trash between them); leaving receive-only publishes
//! what was withheld.
//!
//! Why forgetting a withheld record is safe: it never left this node, so
//! no peer can hold its version, and the remote version taken back in its
//! place cannot be confused with it.

use super::*;
use crate::core::Seq;

/// Namespace of receive-only folders' baselines: key the folder id, value
/// the store sequence (u64 LE) when it became receive-only.
pub const RECEIVE_ONLY_NS: &str = "sync.receive-only";

/// A receive-only folder's locally changed paths, as of store sequence `at`.
#[derive(Debug, Default)]
pub(super) struct LocalChanges {
    at: u64,
    baseline: u64,
    paths: BTreeSet<String>,
}

/// Folder `folder`'s baseline, if it is receive-only.
pub fn baseline(store: &Store, folder: &str) -> Option<u64> {
    store
        .value(RECEIVE_ONLY_NS, folder)
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(u64::from_le_bytes)
}

impl SyncEngine {
    /// Whether a record at store sequence `seq` is withheld from peers:
    /// made by this node after the folder's receive-only `baseline`.
    pub(super) fn withheld(&self, baseline: Option<u64>, seq: u64, rec: &FileRecord) -> bool {
        baseline.is_some_and(|b| seq > b && rec.modified_by == self.node)
    }

    /// Folder `folder` became receive-only: from now on this node's
    /// changes to it stay here.
    pub fn became_receive_only(
        &mut self,
        store: &mut Store,
        folder: &str,
    ) -> Result<(), SyncError> {
        let at = store.last_seq().0;
        store.put(RECEIVE_ONLY_NS, folder, at.to_le_bytes().to_vec())?;
        self.local_changes.remove(folder);
        Ok(())
    }

    /// Folder `folder` is no longer receive-only: what it withheld is
    /// published (recorded again, unchanged, so peers' next requests
    /// carry it). Returns how many records.
    pub fn left_receive_only(
        &mut self,
        store: &mut Store,
        folder: &str,
    ) -> Result<usize, SyncError> {
        let mut ops: Vec<Op> = self
            .revert_paths(store, folder)
            .into_iter()
            .map(|(path, rec)| Op::Put {
                ns: ns::FILES.into(),
                key: index::file_key(folder, &path),
                value: index::write_record(&rec),
                origin: self.node,
                timestamp: store.wall_time(),
            })
            .collect();
        let n = ops.len();
        ops.push(Op::Forget {
            ns: RECEIVE_ONLY_NS.into(),
            key: folder.to_string(),
        });
        store.apply_in_batches(ops, 4096)?;
        self.local_changes.remove(folder);
        if n > 0 {
            self.mark_dirty(store, folder.to_string());
        }
        Ok(n)
    }

    /// How many paths of receive-only `folder` this node changed and did
    /// not send (0 for other folders). Costs the records changed since
    /// the last call, not the folder.
    pub fn locally_changed(&mut self, store: &Store, folder: &str) -> u64 {
        let Some(base) = baseline(store, folder) else {
            self.local_changes.remove(folder);
            return 0;
        };
        let node = self.node;
        let counts = |seq: u64, v: Option<&[u8]>| {
            v.and_then(|v| index::decode_record(v).ok())
                .is_some_and(|r| seq > base && r.modified_by == node)
        };
        let prefix = format!("{folder}/");
        let lc = self.local_changes.entry(folder.to_string()).or_default();
        if lc.at == 0 || lc.baseline != base {
            lc.paths = store
                .scan_prefix(ns::FILES, &prefix)
                .filter(|(_, e)| counts(e.version.0, e.value.as_deref()))
                .map(|(k, _)| k[prefix.len()..].to_string())
                .collect();
            lc.baseline = base;
        } else {
            for (k, e) in store.changed_since(ns::FILES, Seq(lc.at)) {
                if let Some(path) = k.strip_prefix(prefix.as_str()) {
                    if counts(e.version.0, e.value.as_deref()) {
                        lc.paths.insert(path.to_string());
                    } else {
                        lc.paths.remove(path);
                    }
                }
            }
        }
        // Forgotten records leave no trace in `changed_since`: drop paths
        // whose record is gone.
        lc.paths
            .retain(|p| store.contains(ns::FILES, &index::file_key(folder, p)));
        lc.at = store.last_seq().0.max(1);
        lc.paths.len() as u64
    }

    /// The locally changed paths of receive-only `folder` and their
    /// records: what `folder revert` puts back.
    pub fn revert_paths(&self, store: &Store, folder: &str) -> Vec<(String, FileRecord)> {
        let Some(base) = baseline(store, folder) else {
            return Vec::new();
        };
        store
            .scan_prefix(ns::FILES, &format!("{folder}/"))
            .filter_map(|(k, e)| {
                let rec = index::decode_record(e.value.as_deref()?).ok()?;
                (e.version.0 > base && rec.modified_by == self.node)
                    .then(|| (k[folder.len() + 1..].to_string(), rec))
            })
            .collect()
    }

    /// The local copies of `paths` are in the trash: forget their records
    /// and every peer's cursor of `folder`, so the next exchange (asked
    /// for at once) brings each peer's version back as new. Returns the
    /// folder list messages to send.
    pub fn reverted(
        &mut self,
        store: &mut Store,
        folder: &str,
        paths: &[String],
        now: Instant,
    ) -> Result<Vec<Action>, SyncError> {
        let mut ops: Vec<Op> = paths
            .iter()
            .map(|p| Op::Forget {
                ns: ns::FILES.into(),
                key: index::file_key(folder, p),
            })
            .collect();
        let peers: Vec<String> = store
            .scan_prefix(CURSOR_NS, "")
            .filter(|(k, _)| k.split_once('/').is_some_and(|(_, f)| f == folder))
            .map(|(k, _)| k.to_string())
            .collect();
        ops.extend(peers.into_iter().map(|key| Op::Forget {
            ns: CURSOR_NS.into(),
            key,
        }));
        store.apply_in_batches(ops, 4096)?;
        self.local_changes.remove(folder);
        for p in self.peers.values_mut() {
            p.requests.remove(folder);
            p.polled.remove(folder);
        }
        self.folders_changed(store, now)
    }
}
