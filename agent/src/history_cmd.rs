//! `softadastra history PATH`, `softadastra history --deleted FOLDER`,
//! `softadastra restore PATH [--version N | --at TIME] [--to DEST]` and
//! `softadastra restore --folder ID --at TIME [--dry-run]`: a file's kept
//! versions and getting one back, or a whole folder as it was, through the
//! running agent or, with none running, on the store and the disk.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use softadastra::folder;
use softadastra::runtime::history::{self, Deleted, Pick, Restored, Version};

use crate::control::{Reached, Request, call_or_open};
use crate::home::Home;
use crate::members_cmd::say;

/// `path` made absolute without requiring it to exist (a deleted file has
/// a history too): its nearest existing ancestor resolved, the rest kept.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(path)
    };
    let mut rest = Vec::new();
    let mut at = path.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            return Ok(rest.iter().rev().fold(real, |p, part| p.join(part)));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                at = parent;
            }
            _ => bail!("{} is not a path on this machine", path.display()),
        }
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    writeln!(
        std::io::stdout(),
        "{}",
        serde_json::to_string_pretty(value)?
    )?;
    Ok(())
}

fn print_versions(rows: &[Version], out: &mut impl Write) -> Result<()> {
    for v in rows {
        writeln!(
            out,
            "{:>3}  kept {}  {:<13}  {:>10} bytes  modified {}  by {}{}",
            v.n,
            v.kept,
            v.why,
            v.size,
            v.modified,
            v.device.as_deref().unwrap_or("?"),
            if v.here {
                ""
            } else {
                "  (not here: to be fetched from a device that kept it)"
            }
        )?;
    }
    Ok(())
}

/// `history PATH`.
pub fn run_history(home: &Home, path: &Path, json: bool) -> Result<ExitCode> {
    let abs = absolute(path)?;
    let request = Request::History { path: abs.clone() };
    let rows: Vec<Version> = match call_or_open(home, &request)? {
        Reached::Agent(answer) => serde_json::from_value(answer)?,
        Reached::Store(store) => history::versions_at(&store, &abs)?,
    };
    if json {
        print_json(&rows)?;
    } else if rows.is_empty() {
        eprintln!("{}: no kept version", abs.display());
    } else {
        let mut out = std::io::stdout().lock();
        print_versions(&rows, &mut out)?;
        writeln!(
            out,
            "restore one with `softadastra restore {} --version N` (add --to DEST to write it elsewhere)",
            path.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `history --deleted FOLDER`.
pub fn run_deleted(home: &Home, id: &str, json: bool) -> Result<ExitCode> {
    let request = Request::DeletedFiles {
        folder: id.to_string(),
    };
    let rows: Vec<Deleted> = match call_or_open(home, &request)? {
        Reached::Agent(answer) => serde_json::from_value(answer)?,
        Reached::Store(store) => history::deleted(&store, &folder::get(&store, id)?)?,
    };
    if json {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!("{id:?}: no deleted file with a kept version");
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    for d in &rows {
        writeln!(
            out,
            "{}  ({} version(s); newest kept {}, {} bytes)",
            d.path, d.versions, d.newest.kept, d.newest.size
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `restore PATH [--version N | --at TIME] [--to DEST]`.
pub fn run_restore(
    home: &Home,
    path: &Path,
    version: Option<usize>,
    at: Option<&str>,
    to: Option<&Path>,
    json: bool,
) -> Result<ExitCode> {
    let pick = match (version, at) {
        (Some(_), Some(_)) => bail!("give --version or --at, not both"),
        (Some(0), None) => bail!("versions are numbered from 1 (the newest)"),
        (Some(n), None) => Pick::Number(n),
        (None, Some(t)) => Pick::At(moment(t)?),
        (None, None) => Pick::Newest,
    };
    let abs = absolute(path)?;
    let to = to.map(absolute).transpose()?;
    let request = Request::Restore {
        path: abs.clone(),
        pick,
        to: to.clone(),
    };
    let restored: Restored = match call_or_open(home, &request)? {
        Reached::Agent(answer) => serde_json::from_value(answer)?,
        Reached::Store(store) => {
            let store = std::sync::Mutex::new(*store);
            let me = home.node_id()?;
            history::restore_at(&store, None, me, &abs, pick, to.as_deref())?.1
        }
    };
    let before = match &restored.replaced {
        Some(p) => format!("; what was there is kept in {}", p.display()),
        None => String::new(),
    };
    say(
        json,
        serde_json::to_value(&restored)?,
        &format!(
            "restored version {} (kept {}, {} bytes) to {}{before}",
            restored.version.n,
            restored.version.kept,
            restored.version.size,
            restored.to.display()
        ),
    )
}

/// The moment a person gave `--at` as, or a clear error.
fn moment(text: &str) -> Result<u64> {
    history::parse_time(text).with_context(|| {
        format!("--at {text:?}: give Unix seconds or a UTC time as YYYY-MM-DD HH:MM[:SS]")
    })
}

/// At most this many paths of each kind are printed (all with --json).
const SHOWN: usize = 20;

fn print_paths<'a>(
    out: &mut impl Write,
    title: &str,
    paths: impl ExactSizeIterator<Item = (&'a str, String)>,
) -> Result<()> {
    let n = paths.len();
    if n == 0 {
        return Ok(());
    }
    writeln!(out, "{title} ({n}):")?;
    for (path, note) in paths.take(SHOWN) {
        writeln!(out, "  {path}{note}")?;
    }
    if n > SHOWN {
        writeln!(out, "  … and {} more (--json lists them all)", n - SHOWN)?;
    }
    Ok(())
}

/// `restore --folder ID --at TIME [--dry-run]`.
pub fn run_restore_folder(
    home: &Home,
    id: &str,
    at: Option<&str>,
    dry_run: bool,
    json: bool,
) -> Result<ExitCode> {
    let Some(at) = at else {
        bail!("--folder needs --at TIME: the moment to put the folder back to");
    };
    let at = moment(at)?;
    let request = Request::RestoreFolder {
        folder: id.to_string(),
        at,
        dry_run,
    };
    let done: history::FolderRestore = match call_or_open(home, &request)? {
        Reached::Agent(answer) => serde_json::from_value(answer)?,
        Reached::Store(store) => {
            let store = std::sync::Mutex::new(*store);
            let chunks = Default::default();
            history::restore_folder(&store, &chunks, home.node_id()?, id, at, dry_run)?
        }
    };
    if json {
        print_json(&done)?;
        return Ok(if done.failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let mut out = std::io::stdout().lock();
    let verb = if done.carried_out { "" } else { "would " };
    writeln!(out, "{id:?} as it was at {} UTC:", done.at)?;
    print_paths(
        &mut out,
        &format!("{verb}bring back the version each had"),
        done.bring_back.iter().map(|b| {
            (
                b.path.as_str(),
                format!(
                    "  (kept {}, {} bytes, version {})",
                    b.version.kept, b.version.size, b.version.n
                ),
            )
        }),
    )?;
    print_paths(
        &mut out,
        &format!("{verb}set aside, created since (kept in the history)"),
        done.set_aside.iter().map(|p| (p.as_str(), String::new())),
    )?;
    print_paths(
        &mut out,
        &format!("{verb}leave as they are"),
        done.left
            .iter()
            .map(|l| (l.path.as_str(), format!(": {}", l.why))),
    )?;
    print_paths(
        &mut out,
        "could not be put back (the rest were)",
        done.failed
            .iter()
            .map(|l| (l.path.as_str(), format!(": {}", l.why))),
    )?;
    writeln!(out, "{} file(s) already as they were", done.unchanged)?;
    if !done.carried_out {
        writeln!(
            out,
            "dry run: nothing changed; run it again without --dry-run to do it"
        )?;
    } else if done.bring_back.len() + done.set_aside.len() > 0 {
        writeln!(
            out,
            "done; what each file held is kept in its history, and the other devices follow"
        )?;
    }
    Ok(if done.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `folder versions ID [POLICY] [--cap CAP] [--local on|off]`: show or
/// set how long the folder keeps versions, and whether it keeps those of
/// edits made here.
pub fn run_versions(
    home: &Home,
    id: &str,
    policy: Option<&str>,
    cap: Option<&str>,
    local: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    use softadastra::index::retention::{self, Policy};
    let policy = match policy {
        Some(text) => Some(Policy::parse(text, cap).map_err(anyhow::Error::msg)?),
        None if cap.is_some() => {
            bail!("--cap goes with a policy: `folder versions {id} staggered --cap 10GB`")
        }
        None => None,
    };
    let local = local
        .map(|text| crate::members_cmd::on_off("--local", text))
        .transpose()?;
    let request = Request::FolderVersions {
        id: id.to_string(),
        policy,
        local,
    };
    let answer = match call_or_open(home, &request)? {
        Reached::Agent(answer) => answer,
        Reached::Store(mut store) => {
            let config = folder::get(&store, id)?;
            let current = match policy {
                Some(p) => Some(p),
                None => retention::get(&store, id)?,
            };
            if let Some(on) = local {
                retention::set_keeps_local_edits(&mut store, id, on)?;
            }
            let keeps_local = retention::keeps_local_edits(&store, id);
            let mut removed = 0;
            if let Some(p) = &policy {
                retention::set(&mut store, id, p)?;
                let store = std::sync::Mutex::new(*store);
                let now =
                    softadastra::core::Clock::wall(&softadastra::core::SystemClock).as_nanos();
                removed = history::apply_retention(&store, &config, 1, now)?;
            }
            serde_json::json!({"id": id, "policy": current, "removed": removed, "local": keeps_local})
        }
    };
    let current: Option<Policy> = serde_json::from_value(answer["policy"].clone())?;
    let mut prose = match (&policy, &current) {
        (Some(p), _) => format!(
            "{id:?} now keeps {p}; {} old version(s) removed",
            answer["removed"].as_u64().unwrap_or(0)
        ),
        (None, Some(p)) => format!("{id:?} keeps {p}"),
        (None, None) => format!(
            "{id:?} keeps every version for the agent's trash days (`run --trash-days`, default 30)"
        ),
    };
    prose.push_str(if answer["local"].as_bool().unwrap_or(true) {
        "; versions replaced by edits and deletions made here are kept too"
    } else {
        "; versions replaced by edits and deletions made here are not kept (`--local on` keeps them)"
    });
    say(json, answer, &prose)
}
