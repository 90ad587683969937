//! What a reconcile records: each path found against what the index knew
//! (a new version for changed substance, a local-only update for a moved
//! mtime or inode), deletions for what is gone, held back by the guard,
//! and the versions this node's edits replaced. Part of the [`Indexer`];
//! it writes the store, never the disk.

use super::*;

impl Indexer {
    /// Record what `obs` found against what the index knew (`known`);
    /// `whole`: the whole folder was looked at.
    pub(super) fn record(
        &self,
        store: &mut Store,
        known: &KnownMap,
        mut obs: Observation,
        whole: bool,
        started: Instant,
    ) -> Result<ChangeReport, FolderError> {
        // What was found is marked where it was known (the files found as
        // recorded were, by the walk): what is known and not marked, is
        // not on disk.
        let mut found_new = 0u64;
        for o in &obs.entries {
            match known.get(&o.path) {
                Some(k) => k.mark_seen(),
                None => found_new += 1,
            }
        }
        let found_known = known.values().filter(|k| k.is_seen()).count() as u64;
        let mut report = ChangeReport {
            entries: found_new + found_known,
            hashed_files: obs.hashed_files,
            hashed_bytes: obs.hashed_bytes,
            ..ChangeReport::default()
        };
        // A version an edit or deletion here replaced is recorded right
        // after the change, in the same WAL batch.
        let keep_local = self.local_versions && self.keeps_local_edits(store);
        // Nothing live was known (a folder's first index): nothing can be
        // found deleted, so what is found is recorded as it goes, batch by
        // batch, instead of being held whole first (a million new files'
        // records and operations took over a GB).
        let first_index = !known.values().any(|k| !k.is_deleted());
        let mut ops: Vec<Op> = Vec::new();
        // New live files (the deletion guard weighs deletions against them).
        let mut adding = 0u64;
        // The whole records a deletion replaces (see `local_versions`).
        let mut prevs: HashMap<String, FileRecord> = HashMap::new();
        let mut added_hashes: Vec<ContentHash> = Vec::new();
        // Taken, not copied: a large file's chunk list moves into its
        // record (a 100 GB file's is ~20 MB).
        for mut o in std::mem::take(&mut obs.entries) {
            let prev = match known.get(&o.path) {
                Some(k) if k.unchanged_file(&o) => continue,
                Some(_) => self.full_record(store, &o.path)?,
                None => None,
            };
            let content = o.content.take();
            let change = self.observed_record(&o, content, prev.as_ref());
            if let Change::Substance(r) | Change::LocalOnly(r) = &change
                && let Err(detail) = fits_a_record(r)
            {
                // One file the log cannot hold: said, and the rest of the
                // batch recorded (it used to fail whole).
                obs.issues.push(crate::fs::scan::ScanIssue {
                    path: self.config.path.join(&o.path),
                    rel: Some(o.path),
                    kind: crate::fs::scan::IssueKind::TooLarge,
                    detail,
                });
                continue;
            }
            let rec = match change {
                Change::None => continue,
                Change::LocalOnly(rec) => rec,
                Change::Substance(rec) => {
                    if prev.as_ref().is_none_or(|p| p.deleted) {
                        report.added += 1;
                        // Only a deletion in the same scan makes it a move.
                        if let Some(h) = rec.hash.filter(|_| !first_index) {
                            added_hashes.push(h);
                        }
                    } else {
                        report.modified += 1;
                    }
                    if rec.kind != EntryKind::Dir {
                        report.changed_files += 1;
                    }
                    if rec.kind != EntryKind::Dir && report.changes.len() < CHANGES_LISTED {
                        report.changes.push(ChangedPath {
                            path: o.path.clone(),
                            size: rec.size,
                            deleted: false,
                        });
                    }
                    rec
                }
            };
            if rec.kind == EntryKind::File && known.get(&o.path).is_none_or(|k| k.is_deleted()) {
                adding += 1;
            }
            ops.push(self.put_op(&o.path, &rec, store));
            if keep_local {
                // A put replaces nothing moved: `moved` only matters for
                // deletions.
                ops.extend(self.local_version(
                    store,
                    &o.path,
                    prev.as_ref(),
                    &rec,
                    &HashSet::new(),
                ));
            }
            if first_index && ops.len() >= OPS_PER_COMMIT {
                report.ops += ops.len() as u64;
                store.apply_batch(std::mem::take(&mut ops))?;
            }
        }
        // Known, live, in scope, not on disk and not in doubt: deleted.
        let mut deletions: Vec<(String, FileRecord)> = Vec::new();
        let mut forgets: Vec<String> = Vec::new();
        let mut deleted_hashes: HashSet<ContentHash> = HashSet::new();
        for (rel, k) in known.iter_where(|k| !k.is_deleted() && !k.is_seen()) {
            let rel = rel.as_str();
            // Recorded before homes were left out: forgotten, as ignored
            // paths are (no deletion reaches peers).
            if obs.is_in_node_home(rel) {
                forgets.push(rel.to_string());
                continue;
            }
            if obs.is_unsure(rel) {
                continue;
            }
            if self.ignore.is_ignored(rel, k.stat().kind == EntryKind::Dir) {
                forgets.push(rel.to_string());
                continue;
            }
            let Some(rec) = self.full_record(store, rel)?.filter(|r| !r.deleted) else {
                continue;
            };
            let mut gone = rec.clone();
            gone.deleted = true;
            gone.version.bump(self.node);
            gone.modified_by = self.node;
            if let Some(h) = rec.hash {
                deleted_hashes.insert(h);
            }
            prevs.insert(rel.to_string(), rec);
            deletions.push((rel.to_string(), gone));
        }
        report.held = self.guard_deletions(store, &mut deletions, adding, whole)?;
        report.deleted = deletions.len() as u64;
        let room = CHANGES_LISTED.saturating_sub(report.changes.len());
        let gone_files = deletions.iter().filter(|(_, r)| r.kind != EntryKind::Dir);
        report.changed_files += gone_files.clone().count() as u64;
        report
            .changes
            .extend(gone_files.take(room).map(|(path, r)| ChangedPath {
                path: path.clone(),
                size: r.size,
                deleted: true,
            }));
        report.forgotten = forgets.len() as u64;
        report.renamed = added_hashes
            .iter()
            .filter(|h| deleted_hashes.contains(h))
            .count() as u64;
        // Parents before children for additions (the walk's order);
        // children before parents for deletions.
        deletions.sort_by(|a, b| b.0.cmp(&a.0));
        let moved: HashSet<ContentHash> = added_hashes.iter().copied().collect();
        for (rel, rec) in deletions.iter() {
            ops.push(self.put_op(rel, rec, store));
            if keep_local {
                ops.extend(self.local_version(store, rel, prevs.get(rel), rec, &moved));
            }
        }
        for rel in forgets {
            ops.push(Op::Forget {
                ns: ns::FILES.into(),
                key: file_key(&self.config.id, &rel),
            });
        }
        report.ops += ops.len() as u64;
        store.apply_in_batches(ops, OPS_PER_COMMIT)?;
        for issue in &obs.issues {
            tracing::warn!(path = %issue.path.display(), kind = ?issue.kind, detail = %issue.detail, "scan issue");
        }
        report.issues = obs.issues;
        report.last_seq = store.last_seq().0;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        if report.renamed > 0 {
            tracing::info!(folder = %self.config.id, renamed = report.renamed, "renames detected by content hash");
        }
        Ok(report)
    }

    /// The record of what `o` is, its `content` (if read) moved in.
    fn observed_record(
        &self,
        o: &Observed,
        content: Option<Box<crate::fs::chunk::Content>>,
        prev: Option<&FileRecord>,
    ) -> Change {
        let live_prev = prev.filter(|p| !p.deleted);
        let (hash, chunks) = match (content, live_prev) {
            (Some(c), _) => (Some(c.hash), c.chunks),
            // Metadata matched: the content is what we recorded.
            (None, Some(p)) if o.stat.kind == EntryKind::File => (p.hash, p.chunks.clone()),
            _ => (None, Vec::new()),
        };
        let mut rec = FileRecord {
            kind: o.stat.kind,
            size: o.stat.size,
            mtime_ns: o.stat.mtime_ns,
            mode: o.stat.mode,
            inode: o.stat.inode,
            hash,
            chunks,
            link_target: o.link_target.clone(),
            version: prev.map(|p| p.version.clone()).unwrap_or_default(),
            modified_by: self.node,
            deleted: false,
        };
        match prev {
            Some(p) if !rec.differs_in_substance(p) => {
                // The recorded mtime belongs to the version (sync settles
                // conflicts by it, identically on every node), so a touch
                // that changed no content does not move it; only the
                // local-only inode is updated.
                rec.mtime_ns = p.mtime_ns;
                if stat_of(&rec) == stat_of(p) {
                    Change::None
                } else {
                    rec.modified_by = p.modified_by;
                    Change::LocalOnly(rec)
                }
            }
            _ => {
                rec.version.bump(self.node);
                Change::Substance(rec)
            }
        }
    }
}

/// Whether `record` fits one log record, with room for its key and the
/// rest of the operation; if not, why, for people.
pub(super) fn fits_a_record(record: &FileRecord) -> Result<(), String> {
    // About 40 bytes per chunk: only a long list comes near the limit.
    if record.chunks.len() < 200_000 {
        return Ok(());
    }
    let room = crate::wal::format::MAX_RECORD_PAYLOAD - 8192;
    let len = crate::index::write_record(record).len();
    if len <= room {
        return Ok(());
    }
    Err(format!(
        "its record ({} chunks, {len} bytes) is over the {room} bytes one log record holds",
        record.chunks.len()
    ))
}
