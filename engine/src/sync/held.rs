//! Conflicts this node's version beat, held to be decided again if the
//! local version changes; and the app space's inline values.

use super::*;

impl SyncEngine {
    /// Decide again about held conflicting records whose path changed
    /// locally: drop those now superseded, turn into work those that win
    /// against the new local version.
    pub(super) fn revisit_held(
        &mut self,
        store: &mut Store,
        now: Instant,
    ) -> Result<Vec<Action>, SyncError> {
        let held: Vec<(String, (NodeId, FileRecord))> = store
            .list(HELD_NS, "")
            .filter_map(|(k, e)| {
                Some((
                    k.to_string(),
                    postcard::from_bytes(e.value.as_deref()?).ok()?,
                ))
            })
            .collect();
        let (origin, ts) = (self.node, store.wall_time());
        let mut ops = Vec::new();
        let mut changed = BTreeSet::new();
        for (key, (peer, remote)) in held {
            let Some((folder, path)) = key.split_once('\0').and_then(|(fk, _)| fk.split_once('/'))
            else {
                continue;
            };
            let (need, local) = Self::local_state(store, folder, path);
            if need.is_some() {
                continue; // settled when that work is done
            }
            let app = folder == APP_SPACE;
            let drop_value = app.then(|| Op::Forget {
                ns: HELD_VALUE_NS.into(),
                key: key.clone(),
            });
            let drop = Op::Forget {
                ns: HELD_NS.into(),
                key: key.clone(),
            };
            let Some(l) = local else {
                ops.push(drop);
                ops.extend(drop_value);
                continue;
            };
            match l.version.compare(&remote.version) {
                Causality::Concurrent => {}
                // Superseded (or newer, which the index exchange brings).
                _ => {
                    ops.push(drop);
                    ops.extend(drop_value);
                    continue;
                }
            }
            match resolve::decide(self.node, path, Some(&l), &remote) {
                Decision::Ignore => {}
                Decision::Take {
                    record,
                    conflict_copy,
                } if app => {
                    let value = store.get(HELD_VALUE_NS, &key).and_then(|e| e.value.clone());
                    if record.deleted || value.is_some() {
                        ops.extend(self.value_ops(
                            store,
                            path,
                            record,
                            conflict_copy,
                            Some(&l),
                            value,
                        ));
                        changed.insert(folder.to_string());
                    }
                    ops.push(drop);
                    ops.extend(drop_value);
                }
                Decision::Keep { mut record } => {
                    record.inode = l.inode;
                    ops.push(Op::Put {
                        ns: ns::FILES.into(),
                        key: index::file_key(folder, path),
                        value: index::write_record(&record),
                        origin,
                        timestamp: ts,
                    });
                    ops.push(drop);
                    ops.extend(drop_value);
                    changed.insert(folder.to_string());
                }
                Decision::Take { conflict_copy, .. } => {
                    let n = Need {
                        record: remote,
                        conflict_copy,
                        sources: vec![peer],
                        resolves: Some(l.version.clone()),
                    };
                    ops.push(Op::Put {
                        ns: NEED_NS.into(),
                        key: index::file_key(folder, path),
                        value: encode(&n),
                        origin,
                        timestamp: ts,
                    });
                    ops.push(drop);
                    let key = (folder.to_string(), path.to_string());
                    self.note_dir_effect(&key, DirEffect::of(&n.record));
                    self.work_due(key, now);
                }
            }
        }
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        store.apply_batch(ops)?;
        Ok(changed
            .iter()
            .flat_map(|f| self.local_changed(store, f))
            .collect())
    }

    /// Make app key `key` hold `record` (a value taken from a peer, whose
    /// bytes are `value`, or a deletion): no file work, so it is done at
    /// once, in the caller's batch. The losing local value of a conflict
    /// is kept under `conflict_copy` first (unless that key already holds
    /// the same bytes).
    pub(super) fn value_ops(
        &self,
        store: &Store,
        key: &str,
        record: FileRecord,
        conflict_copy: Option<String>,
        local: Option<&FileRecord>,
        value: Option<Vec<u8>>,
    ) -> Vec<Op> {
        let (origin, timestamp) = (self.node, store.wall_time());
        let mut ops = Vec::new();
        let losing = local
            .filter(|l| !l.deleted)
            .zip(values::get(store, key))
            .zip(conflict_copy);
        if let Some(((l, bytes), name)) = losing {
            let target = copy_target(&name, |p| match values::get(store, p) {
                None => Probe::Free,
                Some(b) if Some(ContentHash::of(&b)) == l.hash => Probe::Same,
                Some(_) => Probe::Different,
            });
            if let Some(copy_key) = target {
                let mut copy = l.clone();
                let mut version = values::record(store, &copy_key)
                    .ok()
                    .flatten()
                    .map(|r| r.version)
                    .unwrap_or_default();
                version.bump(self.node);
                copy.version = version;
                copy.modified_by = self.node;
                tracing::info!(key = %key, copy = %copy_key, "conflict: kept the other value under a new key");
                ops.extend(values::ops(
                    origin,
                    timestamp,
                    &copy_key,
                    &copy,
                    Some(&bytes),
                ));
            }
        }
        let value = value.filter(|_| !record.deleted);
        ops.extend(values::ops(
            origin,
            timestamp,
            key,
            &record,
            value.as_deref(),
        ));
        ops
    }
}
