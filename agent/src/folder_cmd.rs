//! `softadastra folder …`, `softadastra ls` and `softadastra scan`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use softadastra::core::ManualClock;
use softadastra::folder::{self, ChangeReport, FolderConfig, Indexer};
use softadastra::fs::scan::{EntryKind, ScanProgress};
use softadastra::store::{Store, StoreConfig};
use softadastra::wal::{Durability, MemStorage};

use crate::control::{FolderChange, Reached, Request, call_or_open};
use crate::home::Home;
use crate::store_cmd::open_store;

#[derive(Debug, Subcommand)]
pub enum FolderCommand {
    /// Share a directory: register it and index its contents. It syncs
    /// with the devices it is shared with (`--share`, `folder share`), none
    /// by default.
    Add {
        /// The directory.
        path: PathBuf,
        /// Folder id, the same on every node (default: derived from the directory name).
        #[arg(long)]
        id: Option<String>,
        /// Share it with this trusted device (id or name; repeatable).
        #[arg(long, value_name = "DEVICE")]
        share: Vec<String>,
        /// How it syncs here: send-receive (default), send-only or receive-only.
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
    },
    /// How a folder syncs on this node: send-receive; send-only (local
    /// changes go out, remote ones are shown as "remote differs"); or
    /// receive-only (remote changes come in, local ones are kept here as
    /// "locally changed").
    Type {
        /// Folder id.
        id: String,
        /// send-receive, send-only or receive-only.
        kind: String,
        #[arg(long)]
        json: bool,
    },
    /// Send-only folder: push this node's state back over every remote
    /// change it did not take (peers keep theirs in their history).
    Override {
        /// Folder id.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Receive-only folder: put the peers' version back over every local
    /// change (this node's copies are kept in the folder's history).
    Revert {
        /// Folder id.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Let the deletions the deletion guard holds back go ahead: found
    /// here, they are sent to other devices; from other devices, applied here.
    AcceptDeletions {
        /// Folder id.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Undo the deletions the deletion guard holds back: files gone here
    /// are fetched again from other devices; files other devices deleted
    /// keep this node's version, which goes back to them.
    RestoreDeletions {
        /// Folder id.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Switch the deletion guard on or off (on by default: a deletion of
    /// more than half of a folder's files, and at least 100, waits for you).
    Guard {
        /// Folder id.
        id: String,
        /// on or off.
        state: String,
        #[arg(long)]
        json: bool,
    },
    /// Show or set how long the folder keeps versions: "30d" (every
    /// version for 30 days) or "staggered" (all for a day, daily for 30
    /// days, weekly for a year), with --cap SIZE|PERCENT (oldest go first),
    /// and whether it keeps versions of edits made here (--local on|off).
    Versions {
        /// Folder id.
        id: String,
        /// "NNd" or "staggered" (none: show the policy).
        policy: Option<String>,
        /// A limit: "10GB", "500MiB", or a share of the disk like "5%".
        #[arg(long)]
        cap: Option<String>,
        /// Keep the versions that edits and deletions made on this device
        /// replace: on (the default) or off.
        #[arg(long)]
        local: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List shared folders, with the devices each is shared with.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Share a folder with a trusted device (id or name); `@app` is the
    /// app's key/value space.
    Share {
        /// Folder id.
        id: String,
        /// The device's id or name.
        device: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop sharing a folder with a device: it is told at once, and
    /// transfers in flight with it stop.
    Unshare {
        /// Folder id.
        id: String,
        /// The device's id or name.
        device: String,
        #[arg(long)]
        json: bool,
    },
    /// Folders connected devices share with this node that it does not
    /// have yet.
    Offers {
        #[arg(long)]
        json: bool,
    },
    /// Keep an offered folder at PATH (created if missing) and sync it.
    Accept {
        /// Folder id.
        id: String,
        /// Where to keep it.
        path: PathBuf,
        /// How it syncs here: send-receive (default), send-only or receive-only.
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Decline an offered folder (it is not shown again).
    Decline {
        /// Folder id.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop sharing a folder on this node (files on disk are left alone).
    Remove {
        /// Folder id.
        id: String,
    },
    /// Stop syncing a folder for now (its index is kept; peers are told).
    Pause {
        /// Folder id.
        id: String,
    },
    /// Sync a paused folder again (it is scanned first).
    Resume {
        /// Folder id.
        id: String,
    },
    /// Scan a folder again now, whatever the watcher saw.
    Rescan {
        /// Folder id.
        id: String,
    },
}

pub(crate) use softadastra::core::human_bytes;

/// Run `indexer.scan` with a progress bar on a terminal.
fn scan_with_progress(
    indexer: &mut Indexer,
    store: &mut Store,
    quiet: bool,
) -> Result<ChangeReport> {
    let progress = Arc::new(ScanProgress::default());
    let show = !quiet && std::io::stderr().is_terminal();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let painter = show.then(|| {
        let (progress, done) = (progress.clone(), done.clone());
        std::thread::spawn(move || {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} scanning {msg} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            while !done.load(Ordering::Relaxed) {
                bar.set_length(progress.bytes_to_hash.load(Ordering::Relaxed));
                bar.set_position(progress.bytes_hashed.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "{} entries, {}/{} files read",
                    progress.entries.load(Ordering::Relaxed),
                    progress.files_hashed.load(Ordering::Relaxed),
                    progress.files_to_hash.load(Ordering::Relaxed)
                ));
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        })
    });
    // The running totals a node keeps are kept through the scan, so they
    // are saved at close and the agent's next start takes them back
    // instead of counting every record (1–1.5 s at a million files, while
    // `status` waits). Taken back as saved, or counted once over what the
    // store held before (nothing, at a first index); the scan's records
    // add to them as they are applied.
    if let Some(walk) = store.tally_later(
        softadastra::store::ns::FILES,
        &softadastra::index::NODE_TOTALS,
    ) {
        walk.run();
    }
    let result = indexer.scan(store, &progress);
    done.store(true, Ordering::Relaxed);
    if let Some(p) = painter {
        let _ = p.join();
    }
    Ok(result?)
}

/// "2 added, 1 modified, 0 deleted, 1 renamed": what a reconciliation changed.
fn change_summary(report: &ChangeReport) -> String {
    let mut s = format!(
        "{} added, {} modified, {} deleted",
        report.added, report.modified, report.deleted
    );
    if report.renamed > 0 {
        s.push_str(&format!(", {} renamed", report.renamed));
    }
    if report.forgotten > 0 {
        s.push_str(&format!(", {} newly ignored", report.forgotten));
    }
    s
}

fn print_issues(report: &ChangeReport) {
    for issue in &report.issues {
        eprintln!(
            "warning: {}: {:?}: {}",
            issue.path.display(),
            issue.kind,
            issue.detail
        );
    }
}

fn print_report(report: &ChangeReport, recorded: bool) {
    let secs = (report.elapsed_ms as f64 / 1000.0).max(1e-3);
    eprintln!("{} entries; {}", report.entries, change_summary(report));
    eprintln!(
        "read {} files ({}) in {:.2} s: {:.0} files/s, {}/s{}",
        report.hashed_files,
        human_bytes(report.hashed_bytes),
        secs,
        report.entries as f64 / secs,
        human_bytes((report.hashed_bytes as f64 / secs) as u64),
        if recorded {
            format!(
                "; {} store operations, last sequence {}",
                report.ops, report.last_seq
            )
        } else {
            String::new()
        }
    );
    print_issues(report);
}

pub fn run_folder(home: &Home, cmd: FolderCommand) -> Result<ExitCode> {
    // With the agent running (it holds the store), sharing goes through
    // it: it indexes the folder, watches it and tells its peers at once;
    // pause, resume, remove and rescan too: the agent stops or starts the
    // folder's watcher and tells its peers.
    let set = |id: &String, change| {
        Some(Request::FolderSet {
            id: id.clone(),
            change,
        })
    };
    match &cmd {
        FolderCommand::List { json } => return crate::members_cmd::run_list(home, *json),
        FolderCommand::Share { id, device, json } => {
            return crate::members_cmd::run_member(home, id, device, true, *json);
        }
        FolderCommand::Unshare { id, device, json } => {
            return crate::members_cmd::run_member(home, id, device, false, *json);
        }
        FolderCommand::Offers { json } => return crate::members_cmd::run_offers(home, *json),
        FolderCommand::Accept {
            id,
            path,
            kind,
            json,
        } => {
            return crate::members_cmd::run_accept(home, id, path, kind.clone(), *json);
        }
        FolderCommand::Type { id, kind, json } => {
            return crate::members_cmd::run_type(home, id, kind, *json);
        }
        FolderCommand::Override { id, json } => {
            return crate::members_cmd::run_override(home, id, *json);
        }
        FolderCommand::Revert { id, json } => {
            return crate::members_cmd::run_revert(home, id, *json);
        }
        FolderCommand::Decline { id, json } => {
            return crate::members_cmd::run_decline(home, id, *json);
        }
        FolderCommand::AcceptDeletions { id, json } => {
            return crate::guard_cmd::run_decide(
                home,
                id,
                crate::guard_cmd::Decision::Accept,
                *json,
            );
        }
        FolderCommand::RestoreDeletions { id, json } => {
            return crate::guard_cmd::run_decide(
                home,
                id,
                crate::guard_cmd::Decision::Restore,
                *json,
            );
        }
        FolderCommand::Guard { id, state, json } => {
            return crate::guard_cmd::run_switch(home, id, state, *json);
        }
        FolderCommand::Versions {
            id,
            policy,
            cap,
            local,
            json,
        } => {
            return crate::history_cmd::run_versions(
                home,
                id,
                policy.as_deref(),
                cap.as_deref(),
                local.as_deref(),
                *json,
            );
        }
        _ => {}
    }
    let request = match &cmd {
        FolderCommand::Add {
            path,
            id,
            share,
            kind,
        } => {
            crate::members_cmd::parse_type(kind.as_deref())?;
            Some(Request::FolderAdd {
                path: std::fs::canonicalize(path)
                    .with_context(|| format!("cannot share {}", path.display()))?,
                id: id.clone(),
                share: share.clone(),
                kind: kind.clone(),
            })
        }
        FolderCommand::Remove { id } => set(id, FolderChange::Remove),
        FolderCommand::Pause { id } => set(id, FolderChange::Pause),
        FolderCommand::Resume { id } => set(id, FolderChange::Resume),
        FolderCommand::Rescan { id } => set(id, FolderChange::Rescan),
        _ => None,
    };
    let mut store = match request {
        Some(request) => match call_or_open(home, &request)? {
            Reached::Store(store) => *store,
            Reached::Agent(answer) => {
                match request {
                    Request::FolderAdd { path, .. } => eprintln!(
                        "sharing {} as folder {:?} (the running agent indexes and syncs it)",
                        path.display(),
                        answer["id"].as_str().unwrap_or_default()
                    ),
                    _ => eprintln!("{}", answer["said"].as_str().unwrap_or("done")),
                }
                return Ok(ExitCode::SUCCESS);
            }
        },
        None => open_store(home)?,
    };
    match cmd {
        FolderCommand::Add {
            path,
            id,
            share,
            kind,
        } => {
            let devices = share
                .iter()
                .map(|d| softadastra::runtime::trust::resolve(&store, d))
                .collect::<Result<Vec<_>, _>>()?;
            let mut config = folder::share(&mut store, &path, id.as_deref())?;
            if let Some(kind) = crate::members_cmd::parse_type(kind.as_deref())? {
                // Before the first scan: a receive-only folder's files are
                // its own changes from the start.
                config = crate::members_cmd::offline_engine(home)?
                    .retype(&mut store, &config.id, kind)?;
            }
            for d in &devices {
                softadastra::index::members::set_member(&mut store, &config.id, *d, true)?;
            }
            eprintln!(
                "sharing {} as folder {:?}{}",
                config.path.display(),
                config.id,
                if devices.is_empty() {
                    " (with no device yet: `softadastra folder share ID DEVICE`)".to_string()
                } else {
                    format!(" with {} device(s)", devices.len())
                }
            );
            let mut indexer = Indexer::new(config, home.node_id()?);
            for w in &indexer.ignore_warnings {
                eprintln!("warning: {w}");
            }
            let report = scan_with_progress(&mut indexer, &mut store, false)?;
            print_report(&report, true);
        }
        FolderCommand::Remove { id } => {
            let config = folder::remove(&mut store, &id)?;
            eprintln!(
                "stopped sharing {:?}; files in {} are untouched",
                config.id,
                config.path.display()
            );
        }
        FolderCommand::Pause { id } => {
            folder::set_paused(&mut store, &id, true)?;
            eprintln!(
                "paused {id:?}; the agent will not sync it until `softadastra folder resume {id}`"
            );
        }
        FolderCommand::Resume { id } => {
            folder::set_paused(&mut store, &id, false)?;
            eprintln!("resumed {id:?}; it syncs when the agent runs");
        }
        FolderCommand::Rescan { id } => {
            let config = folder::get(&store, &id)?;
            // As the agent does: a folder stopped for its marker is taken
            // as it is now.
            folder::marker::retake(&store, &id, &config.path)?;
            let mut indexer = Indexer::new(config, home.node_id()?);
            let report = scan_with_progress(&mut indexer, &mut store, false)?;
            print_report(&report, true);
        }
        FolderCommand::List { .. }
        | FolderCommand::Share { .. }
        | FolderCommand::Unshare { .. }
        | FolderCommand::Offers { .. }
        | FolderCommand::Accept { .. }
        | FolderCommand::Type { .. }
        | FolderCommand::Override { .. }
        | FolderCommand::Revert { .. }
        | FolderCommand::Decline { .. }
        | FolderCommand::AcceptDeletions { .. }
        | FolderCommand::RestoreDeletions { .. }
        | FolderCommand::Guard { .. }
        | FolderCommand::Versions { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// One index entry as `ls` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LsRow {
    folder: String,
    path: String,
    kind: EntryKind,
    size: u64,
    hash: Option<String>,
    chunks: usize,
    mode: String,
    version: u64,
    deleted: bool,
    link_target: Option<String>,
}

/// What `ls` lists: every entry of `folder_id` (all folders if `None`),
/// deletions too with `all`, and how many folders were looked at.
pub(crate) fn ls_rows(
    store: &Store,
    folder_id: Option<&str>,
    all: bool,
) -> Result<(Vec<LsRow>, usize)> {
    let folders = match folder_id {
        Some(id) => vec![folder::get(store, id)?],
        None => folder::list(store)?,
    };
    let mut rows = Vec::new();
    for f in &folders {
        for r in folder::records(store, &f.id) {
            let (path, rec) = r?;
            if rec.deleted && !all {
                continue;
            }
            rows.push(LsRow {
                folder: f.id.clone(),
                path: path.to_string(),
                kind: rec.kind,
                size: rec.size,
                hash: rec.hash.map(|h| h.to_string()),
                chunks: rec.chunks.len(),
                mode: format!("{:o}", rec.mode),
                version: rec.version.entries().iter().map(|(_, c)| c).sum(),
                deleted: rec.deleted,
                link_target: rec.link_target.clone(),
            });
        }
    }
    Ok((rows, folders.len()))
}

/// `ls`: from the running agent (which holds the store), else from disk.
pub fn run_ls(home: &Home, folder_id: Option<String>, json: bool, all: bool) -> Result<ExitCode> {
    let request = Request::Ls {
        folder: folder_id.clone(),
        all,
    };
    let (rows, folders) = match crate::control::call_or_open(home, &request)? {
        crate::control::Reached::Agent(answer) => serde_json::from_value(answer)
            .context("the agent's answer is not a list of index entries")?,
        crate::control::Reached::Store(store) => ls_rows(&store, folder_id.as_deref(), all)?,
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    } else if rows.is_empty() {
        eprintln!(
            "nothing indexed{}",
            if folders == 0 {
                "; add a folder with `softadastra folder add PATH`"
            } else {
                ""
            }
        );
    } else {
        writeln!(
            out,
            "{:<10}  {:>10}  {:<8}  {:>4}  PATH",
            "FOLDER", "SIZE", "HASH", "VER"
        )?;
        for r in rows {
            let hash = r.hash.as_deref().map_or("-", |h| h.get(..8).unwrap_or(h));
            let mut path = match r.kind {
                EntryKind::Dir => format!("{}/", r.path),
                EntryKind::Symlink => {
                    format!("{} -> {}", r.path, r.link_target.as_deref().unwrap_or("?"))
                }
                EntryKind::File | EntryKind::Value => r.path.to_string(),
            };
            if r.deleted {
                path.push_str("  (deleted)");
            }
            writeln!(
                out,
                "{:<10}  {:>10}  {:<8}  {:>4}  {}",
                r.folder,
                human_bytes(r.size),
                hash,
                r.version,
                path
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_scan(home: &Home, path: &Path, json: bool) -> Result<ExitCode> {
    let canonical =
        std::fs::canonicalize(path).with_context(|| format!("cannot scan {}", path.display()))?;
    if !canonical.is_dir() {
        bail!("cannot scan {}: not a directory", path.display());
    }
    let mut store = open_store(home)?;
    let shared = folder::list(&store)?
        .into_iter()
        .find(|f| f.path == canonical);
    let (report, recorded) = match shared {
        Some(config) => {
            let mut indexer = Indexer::new(config, home.node_id()?);
            (scan_with_progress(&mut indexer, &mut store, json)?, true)
        }
        None => {
            // Not shared: index into a scratch in-memory store, record nothing.
            drop(store);
            let mut c = StoreConfig::new("/scratch");
            c.durability = Durability::None;
            let (mut scratch, _) =
                Store::open(c, Arc::new(MemStorage::new()), Arc::new(ManualClock::new()))?;
            let config = FolderConfig::new("scan", canonical.clone());
            let mut indexer = Indexer::new(config, home.node_id()?);
            let started = Instant::now();
            let mut report = scan_with_progress(&mut indexer, &mut scratch, json)?;
            report.elapsed_ms = started.elapsed().as_millis() as u64;
            (report, false)
        }
    };
    if json {
        #[derive(Serialize)]
        struct ScanJson<'a> {
            path: &'a Path,
            recorded: bool,
            #[serde(flatten)]
            report: &'a ChangeReport,
        }
        writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&ScanJson {
                path: &canonical,
                recorded,
                report: &report
            })?
        )?;
    } else {
        print_report(&report, recorded);
        if !recorded {
            eprintln!(
                "(not a shared folder: nothing recorded; share it with `softadastra folder add {}`)",
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `softadastra watch [FOLDER]`: keep the index of shared folders up to date
/// in the foreground until interrupted. Every recorded change is durable
/// when its line is printed, so Ctrl-C at any moment loses nothing.
pub fn run_watch(home: &Home, folder_id: Option<String>) -> Result<ExitCode> {
    use softadastra::fs::ignore::IGNORE_FILE;
    use softadastra::fs::watch::{WatchConfig, Watcher};
    let mut store = open_store(home)?;
    let folders: Vec<FolderConfig> = match folder_id {
        Some(id) => vec![folder::get(&store, &id)?],
        None => folder::list(&store)?
            .into_iter()
            .filter(|f| !f.paused)
            .collect(),
    };
    if folders.is_empty() {
        bail!("no folders to watch; share one with `softadastra folder add PATH`");
    }
    let mut watched = Vec::new();
    for config in folders {
        let mut indexer = Indexer::new(config.clone(), home.node_id()?);
        // Watch first, then catch up: a change made during the scan is seen twice, never missed.
        let watcher = Watcher::new(
            &config.path,
            indexer.ignore().clone(),
            WatchConfig::default(),
        )
        .with_context(|| format!("cannot watch folder {:?}", config.id))?;
        let report = scan_with_progress(&mut indexer, &mut store, false)?;
        eprintln!(
            "{}: caught up ({} while not watching)",
            config.id,
            change_summary(&report)
        );
        print_issues(&report);
        watched.push((indexer, watcher));
    }
    eprintln!(
        "watching {} folder(s); Ctrl-C stops (every recorded change is already durable)",
        watched.len()
    );
    let wait = Duration::from_millis(if watched.len() == 1 { 500 } else { 25 });
    loop {
        for (indexer, watcher) in &mut watched {
            let Some(batch) = watcher.next_batch(wait) else {
                continue;
            };
            for e in watcher.take_errors() {
                eprintln!("warning: {e}");
            }
            let report = indexer.apply(&mut store, &batch)?;
            if batch.paths.iter().any(|p| p == IGNORE_FILE) {
                watcher.set_ignore(indexer.ignore().clone());
            }
            if report.ops == 0 {
                continue;
            }
            let mut names: Vec<&str> = batch.paths.iter().map(String::as_str).take(5).collect();
            if batch.paths.len() > 5 {
                names.push("…");
            }
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{}: {} (sequence {}) {}",
                indexer.config().id,
                change_summary(&report),
                report.last_seq,
                names.join(" ")
            )?;
            out.flush()?;
            print_issues(&report);
        }
    }
}
