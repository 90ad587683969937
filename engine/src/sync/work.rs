//! File work: needs handed out in order (directories made before what is
//! in them, removed after), retried with backoff, completed in batches.

use super::*;
use crate::index::guard::Direction;

impl SyncEngine {
    /// The local state of a path: the need being worked on, else the index entry.
    /// The work still wanted for `path` of `folder`, if any.
    pub fn need(store: &Store, folder: &str, path: &str) -> Option<Need> {
        Self::local_state(store, folder, path).0
    }

    pub(super) fn local_state(
        store: &Store,
        folder: &str,
        path: &str,
    ) -> (Option<Need>, Option<FileRecord>) {
        let key = index::file_key(folder, path);
        let need = store
            .value(NEED_NS, &key)
            .and_then(|v| postcard::from_bytes::<Need>(&v).ok());
        (need, index::record(store, folder, path))
    }

    /// Remember what the work on `key` does to a directory.
    pub(super) fn note_dir_effect(&mut self, key: &(String, String), effect: DirEffect) {
        self.dir_work.remove(key);
        self.dir_removals.remove(key);
        match effect {
            DirEffect::Creates => self.dir_work.insert(key.clone()),
            DirEffect::Removes => self.dir_removals.insert(key.clone()),
            DirEffect::None => false,
        };
    }

    /// Whether `key` removes a directory while work on paths inside it is
    /// still pending: it waits for them (removed first, the directory can
    /// go; removed before them, it could not, and would stay on disk while
    /// the index said it was gone).
    pub(super) fn awaits_contents(&self, key: &(String, String)) -> bool {
        if !self.dir_removals.contains(key) {
            return false;
        }
        let (folder, path) = key;
        // Every path under `path/` sorts in [`path/`, `path0`): '0' follows '/'.
        let inside = (folder.clone(), format!("{path}/"))..(folder.clone(), format!("{path}0"));
        if self.work.range(inside).next().is_some() {
            return true;
        }
        // Work inside may wait in the store only, not taken in yet.
        let end = index::file_key(folder, &format!("{path}0"));
        self.backlog_from.as_ref().is_some_and(|b| *b < end)
    }

    /// Whether a directory above `path` is still to be created by pending
    /// work. Such a path waits for it (it is handed out when the directory
    /// completes): placing it first would make the executor create the
    /// directory itself, which the watcher would then record as a local
    /// addition and send back to peers as this node's edit.
    /// `seen` remembers the answer per directory for one pass over the work.
    pub(super) fn awaits_dir<'a>(
        &self,
        folder: &'a str,
        path: &'a str,
        seen: &mut HashMap<(&'a str, &'a str), bool>,
    ) -> bool {
        let mut at = path;
        while let Some((parent, _)) = at.rsplit_once('/') {
            let pending = *seen.entry((folder, parent)).or_insert_with(|| {
                self.dir_work
                    .contains(&(folder.to_string(), parent.to_string()))
            });
            if pending {
                return true;
            }
            at = parent;
        }
        false
    }

    /// File work whose time has come. A need whose path changed locally
    /// since it was decided (the scan recorded an edit) is decided again
    /// first: the edit is never overwritten, it becomes a conflict.
    pub(super) fn due_work(
        &mut self,
        store: &mut Store,
        now: Instant,
    ) -> Result<(Vec<Action>, usize, usize), SyncError> {
        let mut out = Vec::new();
        let mut retried = 0;
        let mut done = Vec::new();
        let mut changed_folders = HashSet::new();
        self.take_in_backlog(store, now);
        let slots = self.config.max_out.saturating_sub(self.out_count);
        // Work of a paused folder waits (work of a removed one is dropped
        // by `tick`).
        // One read of the folder list: which are active, and the devices
        // each is shared with (content comes only from those).
        let folders = index::list(store)?;
        let active: HashSet<&str> = folders
            .iter()
            .filter(|f| !f.paused && !self.halted.contains(&f.id))
            .map(|f| f.id.as_str())
            .chain([APP_SPACE])
            .collect();
        // Removals of a folder the deletion guard holds wait for a person.
        let held = self.held_deletions(store, &active)?;
        let members: HashMap<&str, &BTreeSet<NodeId>> = folders
            .iter()
            .map(|f| (f.id.as_str(), &f.members))
            .collect();
        let ready = |k: &(String, String), w: &Work| {
            !w.out && w.due <= now && active.contains(k.0.as_str())
        };
        // Directories first: the paths inside them wait for them.
        let mut due: Vec<(String, String)> = self
            .dir_work
            .iter()
            .filter(|k| self.work.get(*k).is_some_and(|w| ready(k, w)))
            .take(slots)
            .cloned()
            .collect();
        let mut dirs = HashMap::new();
        due.extend(
            self.work
                .iter()
                .filter(|(k, w)| {
                    ready(k, w)
                        && !self.dir_work.contains(*k)
                        && !self.awaits_dir(&k.0, &k.1, &mut dirs)
                        && !self.awaits_contents(k)
                })
                .map(|(k, _)| k.clone())
                .take(slots - due.len()),
        );
        for (folder, path) in due {
            let (need, local) = Self::local_state(store, &folder, &path);
            let Some(mut need) = need else {
                done.push((folder, path));
                continue;
            };
            // Changed since decided: for a plain update the local version
            // is no longer older; for a conflict it is no longer the one the
            // conflict was with.
            let changed = |l: &FileRecord| match &need.resolves {
                Some(against) => l.version != *against,
                None => l.version.compare(&need.record.version) != Causality::Before,
            };
            if let Some(l) = local.as_ref().filter(|l| changed(l)) {
                let key = index::file_key(&folder, &path);
                let (origin, ts) = (self.node, store.wall_time());
                let drop_need = Op::Forget {
                    ns: NEED_NS.into(),
                    key: key.clone(),
                };
                match resolve::decide(self.node, &path, Some(l), &need.record) {
                    Decision::Ignore => {
                        store.apply(drop_need)?;
                        done.push((folder, path));
                        continue;
                    }
                    Decision::Keep { mut record } => {
                        record.inode = l.inode;
                        let put = Op::Put {
                            ns: ns::FILES.into(),
                            key,
                            value: index::write_record(&record),
                            origin,
                            timestamp: ts,
                        };
                        store.apply_batch(vec![put, drop_need])?;
                        changed_folders.insert(folder.clone());
                        done.push((folder, path));
                        continue;
                    }
                    Decision::Take {
                        record,
                        conflict_copy,
                    } => {
                        let resolves =
                            (record.version != need.record.version).then(|| l.version.clone());
                        need = Need {
                            record: need.record,
                            conflict_copy: conflict_copy.or(need.conflict_copy),
                            sources: need.sources,
                            resolves,
                        };
                        store.apply(Op::Put {
                            ns: NEED_NS.into(),
                            key,
                            value: encode(&need),
                            origin,
                            timestamp: ts,
                        })?;
                    }
                }
            }
            if let Some(m) = members.get(folder.as_str()) {
                need.sources.retain(|s| m.contains(s));
            }
            let key = (folder.clone(), path.clone());
            if need.record.deleted && held.contains(&folder) {
                self.wait_held(&key, now);
                continue;
            }
            let Some(w) = self.work.get(&key) else {
                continue;
            };
            // A file's removal settles first, so that a peer's deletion
            // arriving in pieces is weighed whole by the guard.
            let settled = w.since + guard::REMOVAL_SETTLE;
            if need.record.deleted
                && need.record.kind == EntryKind::File
                && now < settled
                && !crate::index::guard::is_off(store, &folder)
                && !crate::index::guard::is_accepted(store, &folder, Direction::Remote)
            {
                if let Some(w) = self.work.get_mut(&key) {
                    w.due = settled;
                }
                continue;
            }
            if w.attempts > 0 {
                retried += 1;
            }
            self.set_out(&key, true);
            if let Some(w) = self.work.get_mut(&key) {
                w.size = need.record.size;
            }
            out.push(if need.record.deleted {
                Action::Remove {
                    folder,
                    path,
                    need,
                    expect: local,
                }
            } else {
                Action::Place {
                    folder,
                    path,
                    need,
                    expect: local,
                }
            });
        }
        let pruned = done.len();
        for k in done {
            self.remove_work(&k);
        }
        for f in changed_folders {
            out.extend(self.local_changed(store, &f));
        }
        Ok((out, retried, pruned))
    }

    /// The executor finished a [`Action::Place`] or [`Action::Remove`] for
    /// `done`: `record` (the need's record with this node's local metadata)
    /// is now what is on disk. Records it (settling a conflict if `done`
    /// resolves one) and drops the need, in one batch — unless the need
    /// changed meanwhile, which is then handed out again.
    #[allow(clippy::too_many_arguments)]
    pub fn completed(
        &mut self,
        store: &mut Store,
        folder: &str,
        path: &str,
        done: &Need,
        record: FileRecord,
        conflict_copy: Option<(String, FileRecord)>,
        now: Instant,
    ) -> Result<Vec<Action>, SyncError> {
        let one = Completed {
            folder: folder.to_string(),
            path: path.to_string(),
            done: done.clone(),
            record,
            conflict_copy,
        };
        self.completed_all(store, vec![one], now)
    }

    /// [`SyncEngine::completed`] for many pieces of work at once (distinct
    /// paths): their records go to the log as one batch, and the work that
    /// is due next is handed out once for all of them.
    pub fn completed_all(
        &mut self,
        store: &mut Store,
        all: Vec<Completed>,
        now: Instant,
    ) -> Result<Vec<Action>, SyncError> {
        let origin = self.node;
        let ts = store.wall_time();
        let mut ops = Vec::new();
        let mut folders = Vec::new();
        for Completed {
            folder,
            path,
            done,
            mut record,
            conflict_copy,
        } in all
        {
            let key = index::file_key(&folder, &path);
            let (need, local) = Self::local_state(store, &folder, &path);
            record.version = done.record.version.clone();
            if let Some(against) = &done.resolves {
                // The conflict is settled now, on disk: merged versions plus
                // one event of this node.
                record.version.merge(against);
                if let Some(l) = &local {
                    record.version.merge(&l.version);
                }
                record.version.bump(self.node);
            }
            let copied = conflict_copy.is_some();
            if let Some((copy_path, copy)) = conflict_copy {
                ops.push(Op::Put {
                    ns: ns::FILES.into(),
                    key: index::file_key(&folder, &copy_path),
                    value: index::write_record(&copy),
                    origin,
                    timestamp: ts,
                });
            }
            ops.push(Op::Put {
                ns: ns::FILES.into(),
                key: key.clone(),
                value: index::write_record(&record),
                origin,
                timestamp: ts,
            });
            let superseded = need.as_ref().is_some_and(|n| {
                !done.record.is_filled_in(&n.record) || n.resolves != done.resolves
            });
            let work = (folder, path);
            if superseded {
                // The work done is still true of the disk; the newer need
                // stays — without the conflict copy, which is made: doing it
                // again would copy the bytes just placed over the kept ones.
                if let Some(mut n) = need.filter(|_| copied) {
                    n.conflict_copy = None;
                    ops.push(Op::Put {
                        ns: NEED_NS.into(),
                        key: key.clone(),
                        value: encode(&n),
                        origin,
                        timestamp: ts,
                    });
                }
                folders.push(work.0.clone());
                self.work_due(work, now);
            } else {
                ops.push(Op::Forget {
                    ns: NEED_NS.into(),
                    key,
                });
                self.remove_work(&work);
                folders.push(work.0);
            }
        }
        store.apply_batch(ops)?;
        for f in folders {
            self.mark_dirty(store, f);
        }
        Ok(self.due_work(store, now)?.0)
    }

    /// Whether `need` is still the work wanted for `path`. The executor
    /// asks right before it changes the disk: work overtaken by newer
    /// information (a later record, a settled conflict) is discarded, never
    /// written over the newer state.
    /// The index entry must also still be `expect`: a local edit recorded
    /// meanwhile (even one that left the disk as it was, like a file
    /// created and deleted again) is decided about first.
    pub fn is_current(
        store: &Store,
        folder: &str,
        path: &str,
        need: &Need,
        expect: Option<&FileRecord>,
    ) -> bool {
        let (n, local) = Self::local_state(store, folder, path);
        n.is_some_and(|n| need.record.is_filled_in(&n.record) && n.resolves == need.resolves)
            && local.map(|l| l.version) == expect.map(|e| e.version.clone())
    }

    /// The executor could not finish the work on `path` (`why` says what
    /// and where, for [`progress`](Self::progress)). A failure that time
    /// cures is retried with exponential backoff and jitter; one that needs
    /// a change first ([`Cause::needs_change`]: a full disk, a denied
    /// permission) waits for [`retry_blocked`](Self::retry_blocked) or
    /// [`SyncConfig::retry_blocked`], whichever comes first.
    pub fn failed(&mut self, folder: &str, path: &str, now: Instant, why: &WorkError) {
        let (min, max) = (self.config.retry_min, self.config.retry_max);
        let blocked = self.config.retry_blocked;
        let key = (folder.to_string(), path.to_string());
        self.set_out(&key, false);
        if let Some(w) = self.work.get_mut(&key) {
            w.attempts += 1;
            tracing::debug!(folder, path, attempts = w.attempts, error = %why, "work failed");
            let mut why = why.clone();
            // A write that found the disk full does not know the file's
            // size; the work does: space is waited for until it fits.
            if why.cause == (Cause::NoSpace { needed: 0 }) {
                why.cause = Cause::NoSpace { needed: w.size };
            }
            // Jitter: up to half the delay for a short backoff, a quarter
            // for work waiting for a change.
            let (base, spread) = if why.needs_change() {
                (blocked, 4)
            } else {
                (min.saturating_mul(1 << w.attempts.min(16)).min(max), 2)
            };
            w.why = Some(why);
            let jitter = Duration::from_millis(self.rng.u64(..=base.as_millis() as u64 / spread));
            w.due = now + base + jitter;
        }
    }

    /// Something changed that may cure failures waiting for a change in
    /// `folder`: its work whose last failure `matches` is due again now.
    /// Returns how many were woken. The runtime calls it when space is
    /// freed, when the folder changes locally, is rescanned or resumed —
    /// on every local change, so it looks at this folder's work only.
    pub fn retry_blocked(
        &mut self,
        folder: &str,
        matches: impl Fn(Cause) -> bool,
        now: Instant,
    ) -> usize {
        let mut woken = 0;
        let from = (folder.to_string(), String::new());
        for (_, w) in self
            .work
            .range_mut(from..)
            .take_while(|((f, _), _)| f == folder)
        {
            if !w.out
                && let Some(why) = &w.why
                && why.needs_change()
                && matches(why.cause)
                && w.due > now
            {
                w.due = now;
                woken += 1;
            }
        }
        woken
    }

    /// Folders with work waiting for free space, each with the fewest
    /// bytes one such file needs (the runtime wakes them when at least
    /// that much is free).
    pub fn waiting_for_space(&self) -> HashMap<String, u64> {
        let mut out: HashMap<String, u64> = HashMap::new();
        for ((f, _), w) in &self.work {
            if let Some(WorkError {
                cause: Cause::NoSpace { needed },
                ..
            }) = &w.why
                && !w.out
            {
                let least = out.entry(f.clone()).or_insert(*needed);
                *least = (*least).min(*needed);
            }
        }
        out
    }

    /// Drop a need whose file work cannot ever be done here (for example
    /// the path is taken by a directory the user made): the path keeps its
    /// local state, and the next change on either side decides again.
    pub fn abandon(
        &mut self,
        store: &mut Store,
        folder: &str,
        path: &str,
    ) -> Result<(), SyncError> {
        self.remove_work(&(folder.to_string(), path.to_string()));
        store.apply(Op::Forget {
            ns: NEED_NS.into(),
            key: index::file_key(folder, path),
        })?;
        Ok(())
    }

    /// Pending file work: (folder, path, need).
    pub fn needs(store: &Store) -> Vec<(String, String, Need)> {
        store
            .list(NEED_NS, "")
            .filter_map(|(k, e)| {
                let (f, p) = k.split_once('/')?;
                let n = postcard::from_bytes::<Need>(e.value.as_deref()?).ok()?;
                Some((f.to_string(), p.to_string(), n))
            })
            .collect()
    }

    /// What is still to do for `folder`, for people: files and bytes still
    /// needed, how many are queued, in flight, or failing (waiting for a
    /// retry), with the last paths that fail.
    pub fn progress(&self, store: &mut Store, folder: &str) -> FolderProgress {
        // The store keeps the needs' totals as they change, and the work
        // in memory says what is in flight or failing: nothing here walks
        // or decodes the needs, so status costs the same for ten files or
        // a million.
        let needed = store.tally(NEED_NS, Some(folder), need_tally);
        let mut p = FolderProgress {
            needed_files: needed.items,
            needed_bytes: needed.bytes,
            ..FolderProgress::default()
        };
        let from = (folder.to_string(), String::new());
        for ((_, path), w) in self
            .work
            .range(from..)
            .take_while(|((f, _), _)| f == folder)
        {
            if w.out {
                p.in_flight += 1;
            } else if w.attempts > 0 {
                p.failing += 1;
                let (why, cause) = match &w.why {
                    Some(e) => (e.what.clone(), e.cause),
                    None => (String::new(), Cause::Io),
                };
                p.blocked += u64::from(cause.needs_change());
                if p.failing_files.len() < 5 {
                    p.failing_files.push(Failing {
                        path: path.clone(),
                        why,
                        cause,
                        waits_for_change: cause.needs_change(),
                        attempts: w.attempts,
                    });
                }
            }
        }
        p.queued = p.needed_files.saturating_sub(p.in_flight + p.failing);
        p
    }

    /// Paths with file work pending, over every folder (and the app
    /// space), from the store's running totals.
    pub fn pending(store: &mut Store) -> u64 {
        store.tally(NEED_NS, None, need_tally).items
    }

    pub(super) fn set_out(&mut self, key: &(String, String), out: bool) {
        let Some(w) = self.work.get_mut(key) else {
            return;
        };
        if out && w.held {
            // Handed out: the guard no longer holds it.
            w.held = false;
            self.held_count = self.held_count.saturating_sub(1);
        }
        if w.out != out {
            w.out = out;
            if out {
                self.out_count += 1;
            } else {
                self.out_count = self.out_count.saturating_sub(1);
            }
        }
    }

    pub(super) fn remove_work(&mut self, key: &(String, String)) {
        self.dir_work.remove(key);
        self.dir_removals.remove(key);
        if let Some(w) = self.work.remove(key) {
            if w.out {
                self.out_count = self.out_count.saturating_sub(1);
            }
            if w.held {
                self.held_count = self.held_count.saturating_sub(1);
            }
        }
    }

    /// Work for `key` is due now (new, or new information about it).
    pub(super) fn work_due(&mut self, key: (String, String), now: Instant) {
        if self.kept_in_store_only(&key) {
            return;
        }
        let was_out = match self.work.entry(key) {
            std::collections::btree_map::Entry::Occupied(mut e) => {
                let w = e.get_mut();
                w.due = now;
                std::mem::replace(&mut w.out, false)
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(Work::new(now));
                false
            }
        };
        if was_out {
            self.out_count = self.out_count.saturating_sub(1);
        }
    }
}

/// What reaching a record does to a directory at its path (what orders
/// file work: a directory is made before the paths inside it, and removed
/// after them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DirEffect {
    /// Makes one.
    Creates,
    /// Removes one (if that is what is there).
    Removes,
    /// Neither.
    None,
}

impl DirEffect {
    pub(super) fn of(record: &FileRecord) -> DirEffect {
        match (record.kind == EntryKind::Dir, record.deleted) {
            (true, false) => DirEffect::Creates,
            (true, true) => DirEffect::Removes,
            _ => DirEffect::None,
        }
    }
}

/// What a stored need counts for in the totals ([`Store::tally`]): one
/// path, with the bytes still to place (none for a removal).
fn need_tally(_key: &str, value: &[u8]) -> Option<u64> {
    let n: Need = postcard::from_bytes(value).ok()?;
    Some(if n.record.deleted { 0 } else { n.record.size })
}
