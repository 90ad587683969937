//! What a reconcile knows of each path before it looks at the disk: its
//! stat and whether it is deleted, read from the index in one pass — not
//! the whole record, which is read again from the store only for the paths
//! found changed. Part of the [`Indexer`]; it reads the store, never the
//! disk.

use super::*;

impl Indexer {
    /// What the index knows about `scopes` — each path's stat and whether
    /// it is deleted, not its whole record (read again
    /// from the store only for the paths found changed) — and the log's
    /// last sequence when it was read (see [`Indexer::moved_since`]).
    pub(super) fn known(
        &self,
        store: &Store,
        scopes: &[Scope],
    ) -> Result<(KnownMap, Seq), FolderError> {
        Ok((
            self.known_of(self.entries(store, scopes))?,
            store.last_seq(),
        ))
    }

    /// [`Indexer::known`] of an index snapshot (see [`Indexer::entries`]),
    /// read without the store.
    pub(super) fn known_of(&self, entries: Entries) -> Result<KnownMap, FolderError> {
        let mut known = KnownMap::new();
        let strip = self.config.id.len() + 1;
        for (k, e) in entries {
            if let Some(v) = e.value.as_deref() {
                known.insert(k[strip..].to_string(), Known::of(&decode(&k, v)?));
            }
        }
        Ok(known)
    }

    /// The whole record of `rel` as the store has it now (deleted ones
    /// included).
    pub(super) fn full_record(
        &self,
        store: &Store,
        rel: &str,
    ) -> Result<Option<FileRecord>, FolderError> {
        let key = file_key(&self.config.id, rel);
        match store.value(ns::FILES, &key) {
            Some(v) => decode(&key, &v).map(Some),
            None => Ok(None),
        }
    }
}

/// What a reconcile knows of each path before it looks at the disk (see
/// [`Indexer::known`]): ~50 bytes and the path, where the whole record
/// (its chunk list, its version vector) was several times that — at a
/// million files, hundreds of MB during every whole-folder scan.
#[derive(Debug, Clone, Copy)]
pub(super) struct Known {
    pub(super) stat: FileStat,
    pub(super) deleted: bool,
    /// Found on disk by the reconcile (set when it records).
    pub(super) seen: bool,
}

impl Known {
    pub(super) fn of(r: &FileRecord) -> Known {
        Known {
            stat: stat_of(r),
            deleted: r.deleted,
            seen: false,
        }
    }

    /// Whether `o` is this live file exactly as recorded: same stat, its
    /// content not read again — nothing to record (as
    /// [`Indexer::observed_record`] would find), with no need to read the
    /// whole record.
    pub(super) fn unchanged_file(&self, o: &Observed) -> bool {
        !self.deleted
            && self.stat.kind == EntryKind::File
            && o.stat == self.stat
            && o.content.is_none()
            && o.link_target.is_none()
    }
}

/// [`Known`] by folder-relative path.
pub(super) type KnownMap = HashMap<String, Known>;
