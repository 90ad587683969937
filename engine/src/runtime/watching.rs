//! The folder watchers: one thread per shared folder that scans it to
//! catch up, then indexes each settled batch of changes and hints peers;
//! and the list of what each folder's scans leave out for good. They read
//! the disk and write the index; they never change a file.

use super::*;

/// One folder's watcher thread and its switches.
pub(super) struct FolderWatch {
    pub(super) stop: Arc<std::sync::atomic::AtomicBool>,
    pub(super) rescan: Arc<std::sync::atomic::AtomicBool>,
    pub(super) thread: std::thread::JoinHandle<()>,
}

impl FolderWatch {
    pub(super) fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

/// One watcher thread per shared folder: catch-up scan, then one indexed
/// batch per settled change, each followed by a hint to peers. Returns
/// once every folder's watches are in place (at most 10 s).
pub(super) fn start_watchers(
    s: &Arc<Shared>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> HashMap<String, FolderWatch> {
    let folders = match folder::list(&lock(&s.store)) {
        Ok(f) => f,
        Err(e) => {
            warn!(error = %e, "cannot list folders; nothing is synced");
            return HashMap::new();
        }
    };
    // Each watcher says when its watches are in place (or could not be):
    // the node is not called started before, so a change made as soon as
    // the control socket answers is seen by a watcher, not only by the
    // catch-up scan a large folder takes seconds over. A watcher slower
    // than `WATCHES_WAIT` is not waited for longer.
    const WATCHES_WAIT: Duration = Duration::from_secs(10);
    let (ready, watching) = std::sync::mpsc::channel();
    let watchers: HashMap<String, FolderWatch> = folders
        .into_iter()
        .filter(|f| !f.paused)
        .map(|config| {
            let id = config.id.clone();
            (id, watch_folder(s, stop, config, Some(ready.clone())))
        })
        .collect();
    drop(ready);
    let deadline = std::time::Instant::now() + WATCHES_WAIT;
    for _ in 0..watchers.len() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if watching.recv_timeout(left).is_err() {
            break;
        }
    }
    watchers
}

/// Watch and sync one folder in a thread of its own: catch-up scan, then
/// one indexed batch per settled change; a full scan again when asked
/// (`rescan`); ends when the node or this folder is stopped.
pub(super) fn watch_folder(
    s: &Arc<Shared>,
    all_stop: &Arc<std::sync::atomic::AtomicBool>,
    config: folder::FolderConfig,
    ready: Option<std::sync::mpsc::Sender<()>>,
) -> FolderWatch {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let rescan = Arc::new(AtomicBool::new(true));
    let thread = {
        let (s, all_stop, stop, rescan) =
            (s.clone(), all_stop.clone(), stop.clone(), rescan.clone());
        let spawned = std::thread::Builder::new().name("sync-watcher".into()).spawn(move || {
            let id = config.id.clone();
            let mut indexer = Indexer::new(config.clone(), s.node);
            let started = std::time::Instant::now();
            let since = std::time::SystemTime::now();
            let watcher = Watcher::new(&config.path, indexer.ignore().clone(), WatchConfig::default());
            if let Some(ready) = ready {
                let _ = ready.send(());
            }
            resume_restore(&s, &id);
            let mut watcher = match watcher {
                Ok(w) => w,
                Err(e) => {
                    warn!(folder = %id, error = %e, "cannot watch; the folder is not synced");
                    lock(&s.folder_errors).insert(id.clone(), format!("cannot watch: {e}"));
                    return;
                }
            };
            lock(&s.folder_errors).remove(&id);
            debug!(folder = %id, took_ms = started.elapsed().as_millis() as u64, "watching");
            let stopped = || all_stop.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst);
            // The catch-up scan (and any asked for) runs beside this loop,
            // not in it: at start, changes are indexed and sent while an
            // unchanged million files is still being looked at. The two
            // reconcile safely side by side (each looks again at a path
            // the other recorded meanwhile, as with sync's placements).
            let mut scan: Option<std::thread::JoinHandle<()>> = None;
            // The temporary files a crash left are dealt with by the first
            // scan's thread, before it looks at the folder (a walk of the
            // whole folder: new changes are indexed meanwhile). What it
            // finishes or removes is the agent's own, and the watcher makes
            // nothing of it.
            let mut recover = Some(since);
            let mut marker_looked = std::time::Instant::now();
            while !stopped() {
                // A folder stopped for its marker goes on once it is back
                // (a drive mounted again), looked for every few seconds.
                if marker_looked.elapsed() >= MARKER_LOOK && lock(&s.engine).is_halted(&id) {
                    marker_looked = std::time::Instant::now();
                    if folder::marker::marker_path(&config.path).exists() {
                        info!(folder = %id, "the folder's marker is back: syncing it again");
                        marker_back(&s, &id);
                        rescan.store(true, Ordering::SeqCst);
                    }
                }
                if scan.as_ref().is_none_or(|t| t.is_finished()) {
                    if let Some(done) = scan.take() {
                        let _ = done.join();
                    }
                    if rescan.swap(false, Ordering::SeqCst) {
                        scan = Some(scan_in_background(&s, &config, recover.take()));
                    }
                }
                let next = watcher.next_batch(Duration::from_millis(200));
                let mut again = lock(&s.look_again).remove(&id).unwrap_or_default();
                let mut batch = match next {
                    Some(batch) => batch,
                    None if !again.is_empty() => crate::fs::watch::Batch::default(),
                    None => continue,
                };
                s.echoes.drop_from(&id, &config.path, &mut batch);
                // Each path once: the batch's own are not named again.
                for path in &batch.paths {
                    again.remove(path);
                }
                batch.paths.extend(again);
                if batch.paths.is_empty() && !batch.rescan_all {
                    continue;
                }
                for e in watcher.take_errors() {
                    warn!(folder = %id, error = %e, "watch error");
                }
                let report = indexer.apply(&*s.store, &batch);
                if batch.changes_ignore_file() {
                    watcher.set_ignore(indexer.ignore().clone());
                }
                if let Ok(r) = &report {
                    let scope = (!batch.covers_whole_folder()).then_some(batch.paths.as_slice());
                    note_not_synced(&s, &id, &config.path, scope, &r.issues);
                }
                if let Err(e) = &report {
                    marker_gone(&s, &id, e);
                }
                match report {
                    Ok(r) if r.ops > 0 => {
                        debug!(folder = %id, added = r.added, modified = r.modified, deleted = r.deleted, "indexed");
                        tell_changes(&s, &id, &r);
                        let _ = s.local.send(Local::Changed(id.clone()));
                    }
                    Ok(_) => {}
                    Err(e) => warn!(folder = %id, error = %e, "indexing failed"),
                }
            }
            if let Some(running) = scan {
                let _ = running.join();
            }
        });
        // As `thread::spawn`.
        spawned.expect("cannot start a folder's watcher thread")
    };
    FolderWatch {
        stop,
        rescan,
        thread,
    }
}

/// Scan the whole folder of `config` in a thread of its own, then tell
/// the engine (its result may be work for peers); first, with `recover`,
/// deal with the temporary files left before then
/// ([`exec::recover_temp_files`]).
fn scan_in_background(
    s: &Arc<Shared>,
    config: &folder::FolderConfig,
    recover: Option<std::time::SystemTime>,
) -> std::thread::JoinHandle<()> {
    let (s, config) = (s.clone(), config.clone());
    let id = config.id.clone();
    let run = move || {
        let mut indexer = Indexer::new(config.clone(), s.node);
        lock(&s.scanning).insert(id.clone());
        if let Some(since) = recover {
            exec::recover_temp_files(&s, &config, since);
        }
        let scanned = indexer.scan(&*s.store, &Default::default());
        lock(&s.scanning).remove(&id);
        match scanned {
            Ok(r) => {
                note_not_synced(&s, &id, &config.path, None, &r.issues);
                tell_changes(&s, &id, &r);
                info!(folder = %id, added = r.added, modified = r.modified, deleted = r.deleted, took_ms = r.elapsed_ms, "scanned")
            }
            Err(e) => {
                marker_gone(&s, &id, &e);
                warn!(folder = %id, error = %e, "scan failed")
            }
        }
        let _ = s.local.send(Local::Changed(id));
    };
    std::thread::Builder::new()
        .name("sync-scan".into())
        .spawn(run)
        // As `thread::spawn`.
        .expect("cannot start a folder's scan thread")
}

/// How often a folder stopped for its marker is looked at again.
const MARKER_LOOK: Duration = Duration::from_secs(2);

/// A reconcile of `folder` failed with `e`: if for its marker, the folder
/// stops — none of its work is handed out, and status says why.
fn marker_gone(s: &Shared, folder: &str, e: &folder::FolderError) {
    if let folder::FolderError::MarkerMissing { reason, .. } = e {
        let newly = !lock(&s.engine).is_halted(folder);
        lock(&s.engine).halt(folder);
        lock(&s.folder_errors).insert(folder.to_string(), reason.clone());
        if newly {
            warn!(folder, "{reason}");
        }
    }
}

/// `folder`'s marker is there again: its work goes on.
pub(super) fn marker_back(s: &Shared, folder: &str) {
    lock(&s.engine).unhalt(folder, std::time::Instant::now());
    lock(&s.folder_errors).remove(folder);
}

/// Keep `folder`'s list of what is not synced (see [`Shared::not_synced`])
/// true after a reconcile of `scope` (the paths a watcher batch named, each
/// with what is under it; `None`: the whole folder) found `issues`.
fn note_not_synced(
    s: &Shared,
    folder: &str,
    root: &std::path::Path,
    scope: Option<&[String]>,
    issues: &[crate::fs::scan::ScanIssue],
) {
    let mut all = lock(&s.not_synced);
    let list = all.entry(folder.to_string()).or_default();
    match scope {
        None => list.clear(),
        Some(paths) => list.retain(|p, _| !paths.iter().any(|d| crate::fs::path::is_within(p, d))),
    }
    for i in issues.iter().filter(|i| i.kind.is_lasting()) {
        // A name that is not UTF-8 has no folder path: shown as best we can.
        let path = i.rel.clone().unwrap_or_else(|| {
            i.path
                .strip_prefix(root)
                .unwrap_or(&i.path)
                .to_string_lossy()
                .into_owned()
        });
        list.insert(path, i.detail.clone());
    }
}

/// Finish folder `id`'s restore a stop cut short, on a thread of its own
/// (the folder is watched meanwhile); peers hear of what it changed.
fn resume_restore(s: &Arc<Shared>, id: &str) {
    // Nearly always none: no thread for nothing.
    if !lock(&s.store).contains(super::history::RESTORE_NS, id) {
        return;
    }
    let (s, folder) = (s.clone(), id.to_string());
    let spawned = std::thread::Builder::new()
        .name("restore-resume".into())
        .spawn(move || {
            match super::history::resume(&s.store, &s.chunks, s.node, &folder) {
                Some(Ok(done)) if done.carried_out => s.changed(&folder),
                Some(Err(e)) => {
                    warn!(folder = %folder, error = %e, "a folder restore cut short could not be finished; run it again")
                }
                _ => {}
            }
        });
    if let Err(e) = spawned {
        warn!(folder = %id, error = %e, "cannot finish a folder restore cut short now; run it again");
    }
}

/// Tell the node's clients what a reconciliation of `folder` recorded:
/// each listed file out or deleted here (a conflict copy deleted: the
/// conflict settled), then how many more, if any.
fn tell_changes(s: &Shared, folder: &str, report: &folder::ChangeReport) {
    use super::events::{Side, What};
    let listed = report.changes.iter().flat_map(|c| {
        let (folder, path) = (folder.to_string(), c.path.clone());
        // A conflict copy deleted here: the person settled the conflict.
        let settled = c
            .deleted
            .then(|| crate::core::path::original_of_copy(&path))
            .flatten()
            .map(|(original, ..)| What::ConflictResolved {
                folder: folder.clone(),
                path: original,
            });
        let change = if c.deleted {
            What::Deleted {
                folder,
                path,
                by: Side::Here,
            }
        } else {
            What::FileOut {
                folder,
                path,
                size: c.size,
            }
        };
        settled.into_iter().chain([change])
    });
    let more = report.unlisted();
    let summary = (more > 0).then(|| What::ManyChanged {
        folder: folder.to_string(),
        more,
        by: Side::Here,
    });
    s.events.push_all(listed.chain(summary));
}
