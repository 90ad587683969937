//! Folder types at the engine. A *send-only* folder sends its changes and
//! applies none of a peer's: a remote change that would alter its files is
//! kept in `sync.differs` (key `<folder>/<path>`, value the peer and its
//! record) to be shown as "remote differs", until a later record settles
//! it or [`SyncEngine::override_remote`] pushes the local state back. The
//! entries are bookkeeping of this node only, never sent.

use super::*;

/// Namespace of remote changes a send-only folder did not apply.
pub const DIFFERS_NS: &str = "sync.differs";

/// What a `sync.differs` entry counts for in a folder's totals: one file,
/// the remote record's size.
pub fn differs_tally(_key: &str, value: &[u8]) -> Option<u64> {
    let (_, r): (NodeId, FileRecord) = postcard::from_bytes(value).ok()?;
    Some(if r.deleted { 0 } else { r.size })
}

impl SyncEngine {
    /// How many paths of `folder` a peer has changed and this send-only
    /// node did not take, and their remote bytes (running totals).
    pub fn remote_differs(store: &mut Store, folder: &str) -> crate::store::Totals {
        store.tally(DIFFERS_NS, Some(folder), differs_tally)
    }

    /// The paths of `folder` that differ remotely: (path, peer, its record).
    pub fn differing(store: &Store, folder: &str) -> Vec<(String, NodeId, FileRecord)> {
        store
            .scan_prefix(DIFFERS_NS, &format!("{folder}/"))
            .filter_map(|(k, e)| {
                let (peer, r): (NodeId, FileRecord) =
                    postcard::from_bytes(e.value.as_deref()?).ok()?;
                Some((k[folder.len() + 1..].to_string(), peer, r))
            })
            .collect()
    }

    /// Make this node's state of every path of `folder` that differs
    /// remotely win: its record gets a version past both its own and the
    /// peer's (a path the peer has and this node does not becomes a
    /// deletion), so every peer takes it back — their version goes to
    /// their trash, as any replaced file does. Returns the paths
    /// overridden; peers are hinted once the log has them.
    pub fn override_remote(&mut self, store: &mut Store, folder: &str) -> Result<usize, SyncError> {
        let differing = Self::differing(store, folder)
            .into_iter()
            .map(|(path, _, remote)| (path, remote))
            .collect();
        self.outvote(store, folder, differing, DIFFERS_NS)
    }

    /// Give this node's record of each `(path, remote record)` of
    /// `folder` a version past both its own and the remote one, so that
    /// every peer takes it back (a path this node does not have becomes a
    /// deletion), and forget the path's entry in `bookkeeping` (what kept
    /// the remote record aside). Returns how many paths; peers are hinted
    /// once the log has them.
    pub(super) fn outvote(
        &mut self,
        store: &mut Store,
        folder: &str,
        remote: Vec<(String, FileRecord)>,
        bookkeeping: &str,
    ) -> Result<usize, SyncError> {
        let (origin, ts) = (self.node, store.wall_time());
        let mut ops = Vec::new();
        let mut paths = Vec::new();
        for (path, remote) in remote {
            let key = index::file_key(folder, &path);
            let mut mine = match index::record(store, folder, &path) {
                Some(local) => local,
                None => FileRecord {
                    deleted: true,
                    size: 0,
                    hash: None,
                    chunks: Vec::new(),
                    link_target: None,
                    inode: 0,
                    ..remote.clone()
                },
            };
            mine.version.merge(&remote.version);
            mine.version.bump(self.node);
            mine.modified_by = self.node;
            ops.push(Op::Put {
                ns: ns::FILES.into(),
                key: key.clone(),
                value: index::write_record(&mine),
                origin,
                timestamp: ts,
            });
            ops.push(Op::Forget {
                ns: bookkeeping.into(),
                key,
            });
            paths.push(path);
        }
        if !paths.is_empty() {
            store.apply_batch(ops)?;
            self.mark_dirty(store, folder.to_string());
        }
        for p in &paths {
            self.remove_work(&(folder.to_string(), p.clone()));
        }
        Ok(paths.len())
    }
}

impl SyncEngine {
    /// Folder `folder` became send-only: work not yet done for it becomes
    /// "remote differs" instead (nothing of a peer's is applied from now on).
    pub fn became_send_only(
        &mut self,
        store: &mut Store,
        folder: &str,
    ) -> Result<usize, SyncError> {
        let (origin, ts) = (self.node, store.wall_time());
        let mut ops = Vec::new();
        let mut paths = Vec::new();
        for (f, path, need) in Self::needs(store) {
            if f != folder {
                continue;
            }
            let key = index::file_key(folder, &path);
            let from = need.sources.first().copied().unwrap_or(self.node);
            ops.push(Op::Put {
                ns: DIFFERS_NS.into(),
                key: key.clone(),
                value: encode(&(from, &need.record)),
                origin,
                timestamp: ts,
            });
            ops.push(Op::Forget {
                ns: NEED_NS.into(),
                key,
            });
            paths.push(path);
        }
        if !ops.is_empty() {
            store.apply_batch(ops)?;
        }
        for p in &paths {
            self.remove_work(&(folder.to_string(), p.clone()));
        }
        Ok(paths.len())
    }
}

impl SyncEngine {
    /// Make folder `id` sync as `kind` on this node, in the store and in
    /// the engine's bookkeeping: a folder leaving receive-only publishes
    /// what it withheld; one becoming send-only keeps its undone work as
    /// "remote differs"; one becoming receive-only withholds its changes
    /// from now on. Returns the new configuration.
    pub fn retype(
        &mut self,
        store: &mut Store,
        id: &str,
        kind: index::FolderType,
    ) -> Result<index::FolderConfig, SyncError> {
        use index::FolderType;
        let mut config = index::get(store, id)?;
        if config.kind == kind {
            return Ok(config);
        }
        let was = config.kind;
        config.kind = kind;
        index::folders::put(store, &config)?;
        if was == FolderType::ReceiveOnly {
            let published = self.left_receive_only(store, id)?;
            tracing::info!(folder = %id, published, "no longer receive-only: local changes published");
        }
        match kind {
            FolderType::SendOnly => {
                self.became_send_only(store, id)?;
            }
            FolderType::ReceiveOnly => self.became_receive_only(store, id)?,
            FolderType::SendReceive => {}
        }
        Ok(config)
    }
}
