//! The index exchange: folder lists, index requests by sequence, pages
//! and hints; what a page's records mean for the local index and the work
//! to do.

use super::*;

impl SyncEngine {
    /// A peer connected: tell it our folders.
    pub fn connected(
        &mut self,
        store: &Store,
        peer: NodeId,
        now: Instant,
    ) -> Result<Vec<Action>, SyncError> {
        self.peers.insert(peer, PeerSync::default());
        // Work waiting out a retry delay (typically its transfer broke with
        // the connection this one replaces) has a source again: due now.
        // Its attempt count stays, so a path that keeps failing still
        // backs off. Work waiting for a change (a full disk) still waits:
        // a peer coming back cures nothing there.
        for w in self.work.values_mut() {
            if w.attempts > 0 && !w.out && !w.why.as_ref().is_some_and(WorkError::needs_change) {
                w.due = w.due.min(now);
            }
        }
        Ok(vec![self.folders_message(store, peer, true, now)?])
    }

    pub(super) fn folders_message(
        &mut self,
        store: &Store,
        peer: NodeId,
        reply: bool,
        now: Instant,
    ) -> Result<Action, SyncError> {
        // Only what is shared with this peer: it never learns of the rest.
        let ids: Vec<String> = members::shared_with(store, &peer)?.into_iter().collect();
        if let Some(p) = self.peers.get_mut(&peer) {
            p.told = Some(now);
        }
        Ok(Action::Send {
            peer,
            message: SyncMessage::Folders { ids, reply },
        })
    }

    /// This node's folders or their members changed (added, removed,
    /// paused, shared, unshared): what each peer syncs shrinks to what is
    /// still shared with it at once, and every peer is told.
    pub fn folders_changed(
        &mut self,
        store: &Store,
        now: Instant,
    ) -> Result<Vec<Action>, SyncError> {
        let peers: Vec<NodeId> = self.peers.keys().copied().collect();
        let mut out = Vec::new();
        for peer in peers {
            let shared = members::shared_with(store, &peer)?;
            if let Some(p) = self.peers.get_mut(&peer) {
                p.folders.retain(|f| shared.contains(f));
                p.requests.retain(|f, _| shared.contains(f));
                p.rehint.retain(|f| shared.contains(f));
            }
            out.push(self.folders_message(store, peer, true, now)?);
        }
        Ok(out)
    }

    /// A peer went away: its outstanding requests are void, its offers
    /// withdrawn until it says them again.
    pub fn disconnected(&mut self, peer: NodeId) {
        self.peers.remove(&peer);
        self.offered.retain(|_, by| {
            by.remove(&peer);
            !by.is_empty()
        });
    }

    /// Whether `peer` is connected.
    pub fn is_connected(&self, peer: &NodeId) -> bool {
        self.peers.contains_key(peer)
    }

    pub(super) fn cursor(store: &Store, peer: NodeId, folder: &str) -> u64 {
        store
            .value(CURSOR_NS, &cursor_key(peer, folder))
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_le_bytes)
    }

    pub(super) fn request(
        &mut self,
        store: &Store,
        peer: NodeId,
        folder: &str,
        now: Instant,
    ) -> Option<Action> {
        let since = Self::cursor(store, peer, folder);
        let retry_min = self.config.retry_min;
        let p = self.peers.get_mut(&peer)?;
        p.polled.insert(folder.to_string(), now);
        let attempts = p.requests.get(folder).map_or(0, |r| r.attempts);
        p.requests.insert(
            folder.to_string(),
            Inflight {
                since,
                due: now + retry_min * 4,
                attempts,
            },
        );
        Some(Action::Send {
            peer,
            message: SyncMessage::IndexRequest {
                folder: folder.to_string(),
                since,
            },
        })
    }

    /// `folder`'s index changed up to the store's last sequence: hint
    /// peers once that is durable.
    pub(super) fn mark_dirty(&mut self, store: &Store, folder: String) {
        let seq = store.last_seq().0;
        let mark = self.dirty.entry(folder).or_insert(seq);
        *mark = (*mark).max(seq);
    }

    /// The local index of `folder` changed: hint every peer sharing it.
    /// The hint names the last durable sequence: peers are never told of
    /// (nor sent, see `SyncEngine::page`) an entry a crash could still
    /// take back.
    pub fn local_changed(&mut self, store: &Store, folder: &str) -> Vec<Action> {
        let seq = store.durable_seq().0;
        self.peers
            .iter()
            .filter(|(_, p)| p.folders.contains(folder))
            .map(|(peer, _)| Action::Send {
                peer: *peer,
                message: SyncMessage::IndexHint {
                    folder: folder.to_string(),
                    seq,
                },
            })
            .collect()
    }

    /// Handle a message from `peer`.
    pub fn received(
        &mut self,
        store: &mut Store,
        peer: NodeId,
        message: SyncMessage,
        now: Instant,
    ) -> Result<Vec<Action>, SyncError> {
        if !self.peers.contains_key(&peer) {
            // From a connection already gone: ignore (it will be asked again).
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        match message {
            SyncMessage::Folders { ids, reply } => {
                if reply {
                    out.push(self.folders_message(store, peer, false, now)?);
                }
                let ours = members::shared_with(store, &peer)?;
                let known: HashSet<String> =
                    index::list(store)?.into_iter().map(|f| f.id).collect();
                // A folder this node does not have at all is an offer; one
                // it has but does not share with the peer stays private.
                self.offered.retain(|_, by| {
                    by.remove(&peer);
                    !by.is_empty()
                });
                for f in ids
                    .iter()
                    .filter(|f| !known.contains(*f) && *f != APP_SPACE)
                    .take(Self::MAX_OFFERS)
                {
                    if index::folders::validate_id(f).is_ok() {
                        self.offered.entry(f.clone()).or_default().insert(peer);
                    }
                }
                let shared: BTreeSet<String> =
                    ids.into_iter().filter(|f| ours.contains(f)).collect();
                let sorted: Vec<String> = shared.iter().cloned().collect();
                let mut new = Vec::new();
                if let Some(p) = self.peers.get_mut(&peer) {
                    new = shared.difference(&p.folders).cloned().collect();
                    p.folders = shared;
                    p.heard = true;
                }
                for f in sorted {
                    out.extend(self.request(store, peer, &f, now));
                }
                // Changes indexed before we knew the peer shares these were
                // hinted to no one: hint them now.
                let seq = store.durable_seq().0;
                for folder in new {
                    out.push(Action::Send {
                        peer,
                        message: SyncMessage::IndexHint { folder, seq },
                    });
                }
            }
            SyncMessage::IndexHint { folder, seq } => {
                let shares = self
                    .peers
                    .get(&peer)
                    .is_some_and(|p| p.folders.contains(&folder));
                if !shares && !members::shared_with(store, &peer)?.contains(&folder) {
                    self.refuse(peer, &folder, "a hint");
                }
                let behind = Self::cursor(store, peer, &folder) < seq;
                let asking = self
                    .peers
                    .get(&peer)
                    .is_some_and(|p| p.requests.contains_key(&folder));
                if shares && behind && !asking {
                    out.extend(self.request(store, peer, &folder, now));
                } else if shares
                    && behind
                    && let Some(p) = self.peers.get_mut(&peer)
                {
                    // The answer under way may predate this change.
                    p.rehint.insert(folder);
                }
            }
            SyncMessage::IndexRequest { folder, since } => {
                if members::shared_with(store, &peer)?.contains(&folder) {
                    out.push(Action::Send {
                        peer,
                        message: self.page(store, &folder, since),
                    });
                } else {
                    self.refuse(peer, &folder, "an index request");
                }
            }
            SyncMessage::IndexPage {
                folder,
                since,
                upto,
                records,
                more,
                values,
            } => {
                let expected = self
                    .peers
                    .get(&peer)
                    .and_then(|p| p.requests.get(&folder))
                    .map(|r| r.since);
                let cursor = Self::cursor(store, peer, &folder);
                // Only the answer to the outstanding request, from where we
                // stand: a late duplicate or a reordered page is dropped
                // (what it holds is asked for again).
                if expected.is_none() && !members::shared_with(store, &peer)?.contains(&folder) {
                    self.refuse(peer, &folder, "an index page");
                } else if expected == Some(since) && since == cursor && upto >= since {
                    self.take_page(store, peer, &folder, upto, records, values, now, &mut out)?;
                    let mut again = more;
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.requests.remove(&folder);
                        again |= p.rehint.remove(&folder);
                    }
                    if again {
                        out.extend(self.request(store, peer, &folder, now));
                    }
                }
            }
        }
        Ok(out)
    }

    /// One page of `folder`'s records changed after `since`: only those
    /// the log has made durable — a record a crash could still take back
    /// would leave the peer with a sequence this node may reuse.
    pub(super) fn page(&self, store: &Store, folder: &str, since: u64) -> SyncMessage {
        let durable = store.durable_seq().0;
        let prefix = format!("{folder}/");
        // In sequence order straight from the store's by-version index: a
        // page costs its own records, not a walk of the whole index (which
        // made a large index sent page by page quadratic). Only the page's
        // own records are decoded.
        let mut later = store
            .changed_since(ns::FILES, crate::core::Seq(since))
            .take_while(|(_, e)| e.version.0 <= durable)
            .filter_map(|(k, e)| {
                Some((
                    e.version.0,
                    k.strip_prefix(prefix.as_str())?.to_string(),
                    e.value?,
                ))
            })
            .peekable();
        // A receive-only folder withholds this node's own changes.
        let base = receive_only::baseline(store, folder);
        let mut changed: Vec<(u64, String, FileRecord)> = Vec::new();
        let mut bytes = 0;
        while changed.len() < self.config.page_records {
            // A page ends before the record that would take it past its
            // byte budget (it always holds one).
            let next_bytes = match later.peek() {
                Some((_, path, value)) => path.len() + value.len().min(MAX_LISTED_BYTES),
                None => break,
            };
            if !changed.is_empty() && bytes + next_bytes > PAGE_RECORD_BYTES {
                break;
            }
            let Some((seq, path, value)) = later.next() else {
                break;
            };
            if let Ok(mut rec) = index::decode_record(&value)
                && !self.withheld(base, seq, &rec)
            {
                // A long chunk list stays home: the node that fetches the
                // file asks for it on a bulk stream.
                if rec.chunks.len() > MAX_LISTED_CHUNKS {
                    rec.chunks = Vec::new();
                }
                bytes += next_bytes;
                changed.push((seq, path.to_string(), rec));
            }
        }
        let unread = later.peek().is_some();
        // App values travel inline: a page also ends at a byte budget
        // (always holding at least one record).
        let mut values = Vec::new();
        let mut take = changed.len();
        if folder == APP_SPACE {
            let mut bytes = 0;
            for (i, (_, path, rec)) in changed.iter().take(take).enumerate() {
                if rec.deleted {
                    continue;
                }
                let value = values::get(store, path).unwrap_or_default();
                if i > 0 && bytes + value.len() > PAGE_VALUE_BYTES {
                    take = i;
                    break;
                }
                bytes += value.len();
                values.push((path.clone(), value.to_vec()));
            }
        }
        let more = unread || changed.len() > take;
        changed.truncate(take);
        // Nothing changed: the cursor may still move to where the index is,
        // so the next request does not look at the same range again.
        let upto = if more {
            changed.last().map_or(since, |c| c.0)
        } else {
            durable.max(since)
        };
        SyncMessage::IndexPage {
            folder: folder.to_string(),
            since,
            upto,
            records: changed.into_iter().map(|(_, p, r)| (p, r)).collect(),
            more,
            values,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn take_page(
        &mut self,
        store: &mut Store,
        peer: NodeId,
        folder: &str,
        upto: u64,
        records: Vec<(String, FileRecord)>,
        values: Vec<(String, Vec<u8>)>,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Result<(), SyncError> {
        let app = folder == APP_SPACE;
        let send_only =
            !app && index::get(store, folder).is_ok_and(|f| f.kind == index::FolderType::SendOnly);
        let mut inline: std::collections::HashMap<String, Vec<u8>> = values.into_iter().collect();
        let mut app_changed = false;
        let mut ops = Vec::new();
        let mut touched = Vec::new();
        let origin = self.node;
        let ts = store.wall_time();
        let put = |ns: &str, key: String, value: Vec<u8>| Op::Put {
            ns: ns.into(),
            key,
            value,
            origin,
            timestamp: ts,
        };
        for (path, remote) in records {
            let valid = if app {
                values::validate_key(&path).map_err(|e| e.to_string())
            } else {
                crate::core::path::validate(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        // The agent's own files (trash, temporary files)
                        // are never anyone's to name.
                        if crate::core::path::is_builtin_ignored(&path) {
                            Err(format!("{path:?} is the agent's own file"))
                        } else {
                            Ok(())
                        }
                    })
            };
            let value = if app && !remote.deleted {
                inline.remove(&path)
            } else {
                None
            };
            let problem = match valid {
                Err(e) => Some(e),
                Ok(()) if (remote.kind == EntryKind::Value) != app => {
                    Some("an application value outside the app space, or a file inside it".into())
                }
                Ok(())
                    if !remote.deleted
                        && remote.kind == EntryKind::File
                        && !chunks_cover_or_follow(&remote) =>
                {
                    Some("a file whose chunks do not cover it exactly".into())
                }
                Ok(()) if app && !remote.deleted => match &value {
                    None => Some("a value record without its bytes".into()),
                    Some(v) if Some(ContentHash::of(v)) != remote.hash => {
                        Some("value bytes that do not match the record's hash".into())
                    }
                    Some(_) => None,
                },
                Ok(()) => None,
            };
            if let Some(e) = problem {
                self.refused_paths += 1;
                tracing::warn!(%peer, %folder, path = ?path, error = %e, "refused a record from a peer");
                continue;
            }
            let key = index::file_key(folder, &path);
            let (need, local) = Self::local_state(store, folder, &path);
            if let Some(mut n) = need {
                // Work in progress: its content is not on this disk.
                match n.record.version.compare(&remote.version) {
                    Causality::Before => {
                        // Newer: aim for that instead. Whatever was settled
                        // against the disk is settled again when the work
                        // is handed out (the disk may not be older than it).
                        n.record = remote;
                        n.sources = vec![peer];
                        n.resolves = None;
                        n.conflict_copy = None;
                        ops.push(put(NEED_NS, key, encode(&n)));
                        touched.push((path, DirEffect::of(&n.record)));
                        continue;
                    }
                    Causality::Equal => {
                        // Someone else has the content: one more source.
                        if !n.sources.contains(&peer) {
                            n.sources.push(peer);
                            ops.push(put(NEED_NS, key, encode(&n)));
                        }
                        continue;
                    }
                    Causality::After => continue,
                    Causality::Concurrent if resolve::same_substance(&n.record, &remote) => {
                        n.record.version.merge(&remote.version);
                        if !n.sources.contains(&peer) {
                            n.sources.push(peer);
                        }
                        ops.push(put(NEED_NS, key, encode(&n)));
                        continue;
                    }
                    Causality::Concurrent => {
                        // A conflict with an intention, not with content we
                        // hold: drop the intention and decide against the
                        // disk; the record it aimed for is held, to be
                        // decided again against whatever the disk becomes.
                        ops.push(Op::Forget {
                            ns: NEED_NS.into(),
                            key: key.clone(),
                        });
                        let from = n.sources.first().copied().unwrap_or(peer);
                        ops.push(put(
                            HELD_NS,
                            held_key(&key, from),
                            encode(&(from, &n.record)),
                        ));
                    }
                }
            }
            // A send-only folder keeps what differs (see `types.rs`); an
            // entry no longer true goes.
            let mut differs = false;
            let differed = send_only && store.contains(DIFFERS_NS, &key);
            match resolve::decide(self.node, &path, local.as_ref(), &remote) {
                Decision::Ignore => {
                    let concurrent = local.as_ref().is_some_and(|l| {
                        l.version.compare(&remote.version) == Causality::Concurrent
                    });
                    if concurrent && send_only {
                        differs = true;
                        ops.push(put(DIFFERS_NS, key.clone(), encode(&(peer, &remote))));
                    } else if concurrent {
                        ops.push(put(HELD_NS, held_key(&key, peer), encode(&(peer, &remote))));
                        if let Some(v) = value {
                            ops.push(put(HELD_VALUE_NS, held_key(&key, peer), v));
                        }
                    }
                }
                Decision::Take {
                    record,
                    conflict_copy,
                } if app => {
                    ops.extend(self.value_ops(
                        store,
                        &path,
                        record,
                        conflict_copy,
                        local.as_ref(),
                        value,
                    ));
                    app_changed = true;
                }
                Decision::Keep { record } => {
                    let mut rec = record;
                    if let Some(l) = &local {
                        rec.inode = l.inode;
                    }
                    ops.push(put(ns::FILES, key.clone(), index::write_record(&rec)));
                }
                Decision::Take {
                    record,
                    conflict_copy,
                } => {
                    let on_disk = local.as_ref().filter(|l| !l.deleted);
                    let no_file_work = match (&record.deleted, on_disk) {
                        // A deletion of something we do not have.
                        (true, None) => true,
                        // The same bytes, kind and permissions already here.
                        (false, Some(l)) => {
                            resolve::same_substance(l, &record)
                                && l.mode == record.mode
                                && conflict_copy.is_none()
                        }
                        _ => false,
                    };
                    if no_file_work {
                        let mut rec = record;
                        if let Some(l) = on_disk {
                            rec.inode = l.inode;
                            rec.chunks_from(l);
                        }
                        ops.push(put(ns::FILES, key.clone(), index::write_record(&rec)));
                    } else if send_only {
                        // Not applied here: kept to show, and to override.
                        differs = true;
                        ops.push(put(DIFFERS_NS, key.clone(), encode(&(peer, &remote))));
                    } else {
                        let resolves = (record.version != remote.version)
                            .then(|| local.as_ref().map(|l| l.version.clone()))
                            .flatten();
                        let n = Need {
                            record: remote,
                            conflict_copy,
                            sources: vec![peer],
                            resolves,
                        };
                        ops.push(put(NEED_NS, key.clone(), encode(&n)));
                        touched.push((path, DirEffect::of(&n.record)));
                    }
                }
            }
            if differed && !differs {
                ops.push(Op::Forget {
                    ns: DIFFERS_NS.into(),
                    key,
                });
            }
        }
        // A poll that found nothing new leaves the cursor where it is:
        // writing it again would be a change (a sequence, a log record) at
        // every poll of every folder of every peer, at rest too.
        let (key, cursor) = (cursor_key(peer, folder), upto.to_le_bytes());
        if store.value(CURSOR_NS, &key).as_deref() != Some(cursor.as_slice()) {
            ops.push(put(CURSOR_NS, key, cursor.to_vec()));
        }
        if !ops.is_empty() {
            store.apply_batch(ops)?;
        }
        if app_changed {
            // A settled conflict is a change of ours peers must learn.
            self.mark_dirty(store, APP_SPACE.to_string());
        }
        for (path, effect) in touched {
            // New information: hand it out again even if work was under way
            // (the older run finds itself overtaken before it writes).
            let key = (folder.to_string(), path);
            self.note_dir_effect(&key, effect);
            self.work_due(key, now);
        }
        out.extend(self.due_work(store, now)?.0);
        Ok(())
    }
}

/// Whether a peer's file record's chunks cover the file exactly, or were
/// left out of the page as a file of its size may be (its list is fetched
/// before the file, and checked then).
fn chunks_cover_or_follow(remote: &FileRecord) -> bool {
    remote.chunks_tile() || (remote.chunks_elided() && remote.size >= MIN_ELIDED_SIZE)
}
