//! The indexer: reconciles what is on disk under a shared folder with its
//! records — a whole scan, or the paths a watcher batch names — and writes
//! the changes with group commit. The one part of `folder` that reads the
//! disk.

use super::*;

/// Operations per WAL batch (one fsync each).
const OPS_PER_COMMIT: usize = 2048;

/// What one reconciliation changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChangeReport {
    /// Entries found on disk in the scope looked at.
    pub entries: u64,
    /// New paths.
    pub added: u64,
    /// Paths whose content, type or permissions changed.
    pub modified: u64,
    /// Paths gone from disk.
    pub deleted: u64,
    /// Of the added paths, those whose content matches a path deleted in
    /// the same reconciliation (a rename or move: no content to transfer).
    pub renamed: u64,
    /// Paths that became ignored and were dropped from the index.
    pub forgotten: u64,
    /// Paths found gone but not recorded as deleted: the deletion guard
    /// holds them back ([`crate::index::guard`]).
    pub held: u64,
    /// Files read and hashed.
    pub hashed_files: u64,
    /// Bytes read and hashed.
    pub hashed_bytes: u64,
    /// Store operations written.
    pub ops: u64,
    /// Last store sequence after writing.
    pub last_seq: u64,
    /// Per-path trouble.
    pub issues: Vec<ScanIssue>,
    /// Time taken, ms.
    pub elapsed_ms: u64,
    /// The first [`CHANGES_LISTED`] files and links added, modified or
    /// deleted (directories left out): what the agent tells its clients.
    /// Every one of them is counted above.
    #[serde(skip)]
    pub changes: Vec<ChangedPath>,
    /// Files and links changed, listed or not.
    #[serde(skip)]
    pub changed_files: u64,
}

/// How many changed paths one [`ChangeReport`] lists.
pub const CHANGES_LISTED: usize = 100;

/// One file or link a reconciliation found changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedPath {
    /// Folder-relative path.
    pub path: String,
    /// Its size (the last known one, for a deletion).
    pub size: u64,
    /// It was deleted.
    pub deleted: bool,
}

impl ChangeReport {
    /// Files and links changed beyond those listed in [`changes`](Self::changes).
    pub fn unlisted(&self) -> u64 {
        self.changed_files.saturating_sub(self.changes.len() as u64)
    }
}

/// Reconciles one folder's disk state into the store.
#[derive(Debug)]
pub struct Indexer {
    config: FolderConfig,
    node: NodeId,
    ignore: IgnoreRules,
    /// Warnings from reading the ignore file.
    pub ignore_warnings: Vec<String>,
    chunker: ChunkerConfig,
    /// Regular files this indexer recorded as deleted and as added lately,
    /// and when:
    /// the deletion guard counts them with the next ones (see
    /// [`RECENT_DELETIONS`]).
    recent: std::cell::RefCell<std::collections::VecDeque<(Instant, (u64, u64))>>,
    /// Whether it records the versions that changes it finds replace
    /// (see `local_versions`): off for one that looks at what a restore or
    /// a settled conflict just wrote, which keeps the version itself.
    local_versions: bool,
}

impl Indexer {
    /// An indexer for `config`, recording changes as made by `node`.
    pub fn new(config: FolderConfig, node: NodeId) -> Indexer {
        let (ignore, ignore_warnings) = IgnoreRules::load(&config.path);
        Indexer {
            config,
            node,
            ignore,
            ignore_warnings,
            chunker: ChunkerConfig::default(),
            recent: Default::default(),
            local_versions: true,
        }
    }

    /// This indexer, recording no version of what the changes it finds
    /// replace: for looking at a change whose caller kept that version
    /// already (a restore, a settled conflict).
    pub fn without_local_versions(mut self) -> Indexer {
        self.local_versions = false;
        self
    }

    /// The folder.
    pub fn config(&self) -> &FolderConfig {
        &self.config
    }

    /// The ignore rules in force.
    pub fn ignore(&self) -> &IgnoreRules {
        &self.ignore
    }

    fn check_root(&self) -> Result<(), FolderError> {
        match std::fs::metadata(&self.config.path) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(FolderError::BadPath {
                path: self.config.path.clone(),
                reason: "no longer a directory".into(),
            }),
            // A vanished root must not be read as "everything was deleted".
            Err(e) => Err(FolderError::BadPath {
                path: self.config.path.clone(),
                reason: format!("{e} (nothing recorded)"),
            }),
        }
    }

    /// Reconcile the whole folder.
    pub fn scan<'a>(
        &mut self,
        store: impl Into<StoreAccess<'a>>,
        progress: &ScanProgress,
    ) -> Result<ChangeReport, FolderError> {
        self.reconcile(store.into(), &[Scope::All], progress)
    }

    /// Reconcile the paths of a watcher batch.
    pub fn apply<'a>(
        &mut self,
        store: impl Into<StoreAccess<'a>>,
        batch: &Batch,
    ) -> Result<ChangeReport, FolderError> {
        if batch.changes_ignore_file() {
            self.reload_ignore();
        }
        let scopes: Vec<Scope> = if batch.covers_whole_folder() {
            vec![Scope::All]
        } else {
            tree_scopes(batch.paths.iter())
        };
        self.reconcile(store.into(), &scopes, &ScanProgress::default())
    }

    /// Reload `.softadastraignore`.
    pub fn reload_ignore(&mut self) {
        let (ignore, warnings) = IgnoreRules::load(&self.config.path);
        self.ignore = ignore;
        self.ignore_warnings = warnings;
    }

    /// Record a file the agent itself wrote (e.g. sync placing a download):
    /// `record` is stored as given, with the local stat of the file, so the
    /// watcher's event for this write finds nothing new.
    pub fn record_local_write(
        &self,
        store: &mut Store,
        rel: &str,
        mut record: FileRecord,
    ) -> Result<Seq, FolderError> {
        let abs = crate::fs::path::absolute(&self.config.path, rel).map_err(|e| {
            FolderError::BadPath {
                path: self.config.path.join(rel),
                reason: e.to_string(),
            }
        })?;
        if let Ok(meta) = std::fs::symlink_metadata(&abs) {
            let stat = FileStat::from_metadata(&meta);
            record.mtime_ns = stat.mtime_ns;
            record.inode = stat.inode;
        }
        let op = self.put_op(rel, &record, store);
        Ok(store.apply(op)?)
    }

    fn put_op(&self, rel: &str, record: &FileRecord, store: &Store) -> Op {
        Op::Put {
            ns: ns::FILES.into(),
            key: file_key(&self.config.id, rel),
            value: crate::index::write_record(record),
            origin: self.node,
            timestamp: store.wall_time(),
        }
    }

    /// Reconcile `scopes`: read what the index knows of them, look at the
    /// disk (stat, and hash what changed), record the differences. With a
    /// shared store the lock is taken only to read and to record, never
    /// while the disk is walked and files are hashed — sync keeps placing
    /// files meanwhile. What it recorded meanwhile for a path looked at
    /// (a download placed, a deletion carried out) makes that observation
    /// stale: those paths are looked at again under the lock.
    fn reconcile(
        &mut self,
        mut store: StoreAccess<'_>,
        scopes: &[Scope],
        progress: &ScanProgress,
    ) -> Result<ChangeReport, FolderError> {
        let started = Instant::now();
        // The marker first: a marked folder whose root is gone is stopped.
        store.with(|st| super::marker::check(st, &self.config.id, &self.config.path))?;
        self.check_root()?;
        let (snapshot, read_at) = store.with(|st| (self.entries(st, scopes), st.last_seq()));
        let known = self.known_of(snapshot)?;
        let known_ms = started.elapsed().as_millis() as u64;
        let obs = self.observe(scopes, &known, progress);
        let observed_ms = started.elapsed().as_millis() as u64;
        let report =
            store.with(|st| self.settle(st, scopes, known, read_at, obs, progress, started));
        tracing::debug!(
            folder = %self.config.id,
            known_ms,
            observed_ms,
            settled_ms = started.elapsed().as_millis() as u64,
            "reconciled"
        );
        report
    }

    /// The locked end of [`Indexer::reconcile`]: look again at the paths
    /// whose entry changed since `known` was read (at sequence `read_at`),
    /// then record.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &self,
        store: &mut Store,
        scopes: &[Scope],
        mut known: KnownMap,
        read_at: Seq,
        mut obs: Observation,
        progress: &ScanProgress,
        started: Instant,
    ) -> Result<ChangeReport, FolderError> {
        let moved = self.moved_since(store, scopes, read_at, &known, &obs);
        if !moved.is_empty() {
            let again = tree_scopes(moved.iter());
            let covered: HashSet<&str> = moved.iter().map(String::as_str).collect();
            let (known_now, _) = self.known(store, &again)?;
            let obs_now = self.observe(&again, &known_now, progress);
            known.retain(|p, _| !is_covered(&covered, p));
            known.extend(known_now);
            obs.retain(|p| !is_covered(&covered, p));
            obs.extend(obs_now);
        }
        let whole = scopes.iter().any(|s| matches!(s, Scope::All));
        self.record(store, &known, obs, whole, started)
    }

    /// Every index entry (key, entry) of `scopes`, tombstones included,
    /// as the index is now: a snapshot, read on after the store is let go
    /// (a million entries take a second; sync and the watcher must not
    /// wait for it).
    fn entries(&self, store: &Store, scopes: &[Scope]) -> Entries {
        let mut parts: Vec<Box<dyn Iterator<Item = (String, crate::store::Entry)> + Send>> =
            Vec::new();
        for scope in scopes {
            match scope {
                Scope::All => {
                    let prefix = format!("{}/", self.config.id);
                    parts.push(Box::new(store.scan_prefix(ns::FILES, &prefix)));
                }
                Scope::Tree(p) => {
                    let key = file_key(&self.config.id, p);
                    let own = store.entry(ns::FILES, &key).map(|e| (key.clone(), e));
                    let prefix = format!("{key}/");
                    parts.push(Box::new(
                        own.into_iter().chain(store.scan_prefix(ns::FILES, &prefix)),
                    ));
                }
            }
        }
        parts.into_iter().flatten()
    }

    /// Walk and stat `scopes`, hashing only what differs from `known`; the
    /// files found as known are marked seen in it.
    fn observe(&self, scopes: &[Scope], known: &KnownMap, progress: &ScanProgress) -> Observation {
        let as_recorded = |rel: &str, stat: &FileStat| known.mark_if_as_recorded(rel, stat);
        scan::observe(
            &self.config.path,
            scopes,
            &self.ignore,
            &as_recorded,
            self.chunker,
            progress,
        )
    }

    /// Paths looked at (known or found) whose index entry changed after
    /// sequence `read_at` (when `known` was read): what the log says
    /// changed since then, not a walk of the scopes' entries (a million
    /// of them, under the store's lock).
    fn moved_since(
        &self,
        store: &Store,
        scopes: &[Scope],
        read_at: Seq,
        known: &KnownMap,
        obs: &Observation,
    ) -> Vec<String> {
        let prefix = format!("{}/", self.config.id);
        let changed: Vec<String> = store
            .changed_since(ns::FILES, read_at)
            .filter_map(|(k, _)| k.strip_prefix(&prefix).map(str::to_string))
            .filter(|rel| in_scopes(scopes, rel))
            .collect();
        if changed.is_empty() {
            return Vec::new();
        }
        let found: HashSet<&str> = obs.entries.iter().map(|o| o.path.as_str()).collect();
        let mut moved: Vec<String> = changed
            .into_iter()
            .filter(|p| known.contains_key(p) || found.contains(p.as_str()))
            .collect();
        moved.sort();
        moved.dedup();
        moved
    }
}

/// Tree scopes for `paths`; a path inside another one is covered by it.
fn tree_scopes<'a>(paths: impl Iterator<Item = &'a String>) -> Vec<Scope> {
    let mut sorted: Vec<&String> = paths.collect();
    sorted.sort();
    let mut scopes: Vec<Scope> = Vec::new();
    let mut last: Option<&str> = None;
    for p in sorted {
        if let Some(l) = last
            && p.starts_with(l)
            && p.as_bytes().get(l.len()) == Some(&b'/')
        {
            continue;
        }
        scopes.push(Scope::Tree(p.clone()));
        last = Some(p);
    }
    scopes
}

/// Whether `rel` is in one of `scopes`.
fn in_scopes(scopes: &[Scope], rel: &str) -> bool {
    scopes.iter().any(|s| match s {
        Scope::All => true,
        Scope::Tree(p) => {
            rel == p || (rel.starts_with(p.as_str()) && rel.as_bytes().get(p.len()) == Some(&b'/'))
        }
    })
}

/// An index snapshot's entries (see [`Indexer::entries`]).
type Entries = std::iter::Flatten<
    std::vec::IntoIter<Box<dyn Iterator<Item = (String, crate::store::Entry)> + Send>>,
>;

/// Whether `rel` is one of `trees` or inside one.
fn is_covered(trees: &HashSet<&str>, rel: &str) -> bool {
    trees.contains(rel)
        || rel
            .match_indices('/')
            .any(|(i, _)| trees.contains(&rel[..i]))
}

/// How an [`Indexer`] reaches the store: to itself for the whole
/// reconcile (a command holding the store), or shared with a running node
/// — its lock is then taken only to read and to record, so sync is not
/// held up while the disk is walked and files are hashed.
pub enum StoreAccess<'a> {
    /// The caller's own store.
    Own(&'a mut Store),
    /// A running node's store.
    Shared(&'a std::sync::Mutex<Store>),
}

impl StoreAccess<'_> {
    /// The same store, lent for one call.
    pub(crate) fn reborrow(&mut self) -> StoreAccess<'_> {
        match self {
            StoreAccess::Own(store) => StoreAccess::Own(store),
            StoreAccess::Shared(store) => StoreAccess::Shared(store),
        }
    }

    pub(crate) fn with<R>(&mut self, work: impl FnOnce(&mut Store) -> R) -> R {
        match self {
            StoreAccess::Own(store) => work(store),
            StoreAccess::Shared(store) => work(&mut crate::core::lock(store)),
        }
    }
}

impl<'a> From<&'a mut Store> for StoreAccess<'a> {
    fn from(store: &'a mut Store) -> Self {
        StoreAccess::Own(store)
    }
}

impl<'a> From<&'a std::sync::Mutex<Store>> for StoreAccess<'a> {
    fn from(store: &'a std::sync::Mutex<Store>) -> Self {
        StoreAccess::Shared(store)
    }
}

enum Change {
    None,
    /// mtime or inode moved, content did not: update locally, no new version.
    LocalOnly(FileRecord),
    /// Something peers must learn about: new version.
    Substance(FileRecord),
}

mod guard;
mod known;
mod local_versions;
mod record;
pub use guard::RECENT_DELETIONS;
use known::KnownMap;

#[cfg(test)]
mod tests;
