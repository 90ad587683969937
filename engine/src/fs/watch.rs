//! Watching a folder: native notifications, coalesced into settled batches.
//!
//! Events are *hints*. The [`Coalescer`] (pure: events and the current time
//! in, batches out) collects the paths events name and releases them once
//! they have been quiet for [`WatchConfig::settle`] — so a file still being
//! written is released when it stops changing, not half-written. A queue
//! overflow or a watch failure becomes a rescan request, never a silent
//! miss. The [`Watcher`] drives it with `notify` (inotify, FSEvents,
//! ReadDirectoryChangesW).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher as _};

use super::FsError;
use super::ignore::{IgnoreRules, TEMP_PREFIX};
use super::path;

/// Timing of the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchConfig {
    /// A path is released once no event has named it for this long.
    pub settle: Duration,
    /// Quiet paths are released even while other paths are still busy once
    /// the oldest quiet one has waited this long.
    pub max_delay: Duration,
}

impl Default for WatchConfig {
    /// 20 ms settle, 200 ms cap.
    fn default() -> Self {
        WatchConfig {
            settle: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        }
    }
}

/// Settled changes to look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Folder-relative paths that changed (created, modified, removed,
    /// renamed from or to), in order.
    pub paths: Vec<String>,
    /// The whole folder must be rescanned (events were lost).
    pub rescan_all: bool,
}

impl Batch {
    /// Whether the folder's ignore file is among the changed paths.
    pub fn changes_ignore_file(&self) -> bool {
        self.paths.iter().any(|p| p == super::ignore::IGNORE_FILE)
    }

    /// Whether reconciling this batch means the whole folder: events were
    /// lost, or the ignore rules changed (every path may be in or out).
    pub fn covers_whole_folder(&self) -> bool {
        self.rescan_all || self.changes_ignore_file()
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    first: Instant,
    last: Instant,
}

/// Collects change hints and releases them once settled. Pure: no I/O, time
/// comes in as arguments.
#[derive(Debug)]
pub struct Coalescer {
    config: WatchConfig,
    pending: BTreeMap<String, Pending>,
    rescan: Option<Pending>,
}

impl Coalescer {
    /// An empty coalescer.
    pub fn new(config: WatchConfig) -> Self {
        Coalescer {
            config,
            pending: BTreeMap::new(),
            rescan: None,
        }
    }

    fn touch(slot: &mut Option<Pending>, now: Instant) {
        match slot {
            Some(p) => p.last = now,
            None => {
                *slot = Some(Pending {
                    first: now,
                    last: now,
                })
            }
        }
    }

    /// An event named `rel`.
    pub fn handle_path(&mut self, rel: String, now: Instant) {
        self.pending
            .entry(rel)
            .and_modify(|p| p.last = now)
            .or_insert(Pending {
                first: now,
                last: now,
            });
    }

    /// Events were lost: the whole folder must be looked at.
    pub fn handle_rescan(&mut self, now: Instant) {
        Self::touch(&mut self.rescan, now);
    }

    /// Whether anything is waiting.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.rescan.is_none()
    }

    /// When [`Coalescer::poll_batch`] may next have something to release:
    /// when every pending path will be quiet, or when the first one becomes
    /// quiet and overdue, whichever comes first.
    ///
    /// Handling an event never makes this earlier: a path named at `now`
    /// is quiet at `now + settle` and overdue at `now + max_delay`, no
    /// earlier than any path already waiting (named at `now` or before).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let (settle, max_delay) = (self.config.settle, self.config.max_delay);
        let pending = || self.pending.values().chain(self.rescan.iter());
        let all_quiet = pending().map(|p| p.last + settle).max()?;
        let first_overdue = pending()
            .map(|p| (p.last + settle).max(p.first + max_delay))
            .min()?;
        Some(all_quiet.min(first_overdue))
    }

    /// Release what has settled at `now`: everything, once every pending
    /// path is quiet; otherwise the quiet paths, once the oldest of them has
    /// waited `max_delay`.
    pub fn poll_batch(&mut self, now: Instant) -> Option<Batch> {
        let settle = self.config.settle;
        let quiet = |p: &Pending| now >= p.last + settle;
        let all_quiet = self.pending.values().all(quiet) && self.rescan.as_ref().is_none_or(quiet);
        let overdue = self
            .pending
            .values()
            .chain(self.rescan.iter())
            .filter(|p| quiet(p))
            .any(|p| now >= p.first + self.config.max_delay);
        if self.is_idle() || !(all_quiet || overdue) {
            return None;
        }
        let mut batch = Batch::default();
        if self.rescan.as_ref().is_some_and(quiet) {
            self.rescan = None;
            batch.rescan_all = true;
        }
        let ready: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| quiet(p))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &ready {
            self.pending.remove(k);
        }
        batch.paths = ready;
        if batch.paths.is_empty() && !batch.rescan_all {
            return None;
        }
        Some(batch)
    }
}

/// A recursive watch on one folder.
pub struct Watcher {
    _inner: notify::RecommendedWatcher,
    rx: mpsc::Receiver<notify::Result<notify::Event>>,
    root: PathBuf,
    ignore: IgnoreRules,
    coalescer: Coalescer,
    /// When the coalescer may next release something (`None`: idle).
    due: Option<Instant>,
    errors: Vec<FsError>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").field("root", &self.root).finish()
    }
}

/// Reads (our own hashing among them) are not changes; reacting to them
/// would loop forever. A close after writing is kept.
fn is_read(event: &notify::Event) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    matches!(event.kind, EventKind::Access(a) if a != AccessKind::Close(AccessMode::Write))
}

/// One of the agent's temporary files (ignored in every folder).
fn is_temp(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(TEMP_PREFIX))
}

fn watch_error(root: &Path, err: notify::Error) -> FsError {
    match err.kind {
        notify::ErrorKind::MaxFilesWatch => {
            // The per-user-namespace count is the effective limit on current
            // kernels; the fs.inotify sysctl mirrors it in the initial namespace.
            let limit = [
                "/proc/sys/user/max_inotify_watches",
                "/proc/sys/fs/inotify/max_user_watches",
            ]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
            FsError::WatchLimit {
                root: root.to_path_buf(),
                limit,
            }
        }
        _ => FsError::Watch {
            root: root.to_path_buf(),
            reason: err.to_string(),
        },
    }
}

impl Watcher {
    /// Start watching `root` recursively. Ignored paths are filtered out.
    pub fn new(root: &Path, ignore: IgnoreRules, config: WatchConfig) -> Result<Watcher, FsError> {
        let (tx, rx) = mpsc::channel();
        // Opens and read-only closes are not asked for: every file read in
        // the folder (a peer's chunk request served, a scan) would be an
        // event to wake for and drop. Closes after writing are kept.
        let kinds = notify::Config::default()
            .with_event_kinds(notify::EventKindMask::CORE | notify::EventKindMask::ACCESS_CLOSE);
        let handler = move |res: notify::Result<notify::Event>| {
            // Dropped on notify's thread, before they cost a hand-over:
            // reads, and events naming only our own temporary files (most
            // of them while files are being received).
            if let Ok(event) = &res
                && (is_read(event) || event.paths.iter().all(|p| is_temp(p)))
                && !event.need_rescan()
            {
                return;
            }
            let _ = tx.send(res);
        };
        let mut inner =
            notify::RecommendedWatcher::new(handler, kinds).map_err(|e| watch_error(root, e))?;
        inner
            .watch(root, RecursiveMode::Recursive)
            .map_err(|e| watch_error(root, e))?;
        Ok(Watcher {
            _inner: inner,
            rx,
            root: root.to_path_buf(),
            ignore,
            coalescer: Coalescer::new(config),
            due: None,
            errors: Vec::new(),
        })
    }

    /// Replace the ignore rules (after `.softadastraignore` changed).
    pub fn set_ignore(&mut self, ignore: IgnoreRules) {
        self.ignore = ignore;
    }

    fn handle(&mut self, res: notify::Result<notify::Event>, now: Instant) {
        match res {
            Ok(event) => {
                if event.need_rescan() {
                    self.coalescer.handle_rescan(now);
                }
                if is_read(&event) {
                    return;
                }
                for p in event.paths.iter().filter(|p| !is_temp(p)) {
                    match path::relative(&self.root, p) {
                        Ok(rel) => {
                            if !self.ignore.is_ignored_with(&rel, || p.is_dir()) {
                                self.coalescer.handle_path(rel, now);
                            }
                        }
                        // The root itself changed (or a path outside it was named):
                        // look at everything.
                        Err(_) => self.coalescer.handle_rescan(now),
                    }
                }
            }
            Err(e) => {
                // A failed watch means events may be missing: rescan, and tell.
                self.coalescer.handle_rescan(now);
                self.errors.push(watch_error(&self.root, e));
            }
        }
    }

    /// Errors the watch reported since the last call (each also triggered a rescan).
    pub fn take_errors(&mut self) -> Vec<FsError> {
        std::mem::take(&mut self.errors)
    }

    /// Wait up to `timeout` for a settled batch.
    ///
    /// The coalescer is looked at only when its earliest possible release
    /// comes, not after every event: an event can only postpone a release
    /// (see [`Coalescer::poll_timeout`]), so a deadline computed earlier is
    /// never late — at worst early, and then it is computed again. A burst
    /// of events costs one map update each, not a walk over every path
    /// still pending.
    pub fn next_batch(&mut self, timeout: Duration) -> Option<Batch> {
        let give_up = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if self.due.is_some_and(|due| now >= due) {
                let batch = self.coalescer.poll_batch(now);
                self.due = self.coalescer.poll_timeout();
                if batch.is_some() {
                    return batch;
                }
            }
            if now >= give_up {
                return None;
            }
            let wake = self.due.map_or(give_up, |due| due.min(give_up));
            match self.rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(res) => {
                    let now = Instant::now();
                    self.handle(res, now);
                    while let Ok(more) = self.rx.try_recv() {
                        self.handle(more, now);
                    }
                    if self.due.is_none() {
                        self.due = self.coalescer.poll_timeout();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.coalescer.handle_rescan(Instant::now());
                    self.due = None;
                    return self
                        .coalescer
                        .poll_batch(Instant::now() + Duration::from_secs(3600));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> WatchConfig {
        WatchConfig {
            settle: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        }
    }

    #[test]
    fn releases_once_quiet() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(cfg());
        c.handle_path("a".into(), t0);
        c.handle_path("b".into(), t0 + Duration::from_millis(5));
        assert_eq!(
            c.poll_batch(t0 + Duration::from_millis(21)),
            None,
            "b not yet quiet"
        );
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_millis(25)));
        let batch = c.poll_batch(t0 + Duration::from_millis(25)).unwrap();
        assert_eq!(batch.paths, vec!["a", "b"]);
        assert!(c.is_idle());
    }

    #[test]
    fn a_busy_file_does_not_hold_back_others_forever() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(cfg());
        c.handle_path("done.txt".into(), t0);
        // big.bin is written continuously.
        let mut t = t0;
        let mut released = None;
        for _ in 0..50 {
            t += Duration::from_millis(10);
            c.handle_path("big.bin".into(), t);
            if let Some(b) = c.poll_batch(t) {
                released = Some((b, t));
                break;
            }
        }
        let (batch, at) = released.expect("quiet path released while another is busy");
        assert_eq!(batch.paths, vec!["done.txt"]);
        assert!(at - t0 >= cfg().max_delay);
        // The busy file is released only after it stops.
        assert!(c.poll_batch(at).is_none());
        let b = c.poll_batch(at + Duration::from_millis(20)).unwrap();
        assert_eq!(b.paths, vec!["big.bin"]);
    }

    #[test]
    fn rescan_requests_are_kept() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(cfg());
        c.handle_rescan(t0);
        let b = c.poll_batch(t0 + Duration::from_millis(20)).unwrap();
        assert!(b.rescan_all);
        assert!(b.paths.is_empty());
    }

    proptest::proptest! {
        /// What `Watcher::next_batch` relies on: between releases, events
        /// (any paths, any order, rescans among them) only ever postpone
        /// the next possible release.
        #[test]
        fn events_never_bring_the_next_release_forward(
            settle in 1u64..300,
            max_delay in 1u64..300,
            events in proptest::collection::vec((0u8..6, 0u64..50), 1..60),
        ) {
            let t0 = Instant::now();
            let mut c = Coalescer::new(WatchConfig {
                settle: Duration::from_millis(settle),
                max_delay: Duration::from_millis(max_delay),
            });
            let (mut now, mut due) = (t0, None);
            for (path, gap) in events {
                now += Duration::from_millis(gap);
                if path == 5 {
                    c.handle_rescan(now);
                } else {
                    c.handle_path(format!("p{path}"), now);
                }
                let next = c.poll_timeout();
                proptest::prop_assert!(next.is_some());
                proptest::prop_assert!(due.is_none_or(|d| next >= Some(d)));
                due = next;
            }
        }
    }
}
