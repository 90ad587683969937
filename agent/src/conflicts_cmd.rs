//! `softadastra conflicts` and `softadastra conflicts resolve PATH --keep
//! …`: the conflicts of every folder (or one), and settling one, through
//! the running agent or, with none running, on the store and the disk.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use softadastra::runtime::conflicts::{self, Conflict, Keep, Settled, Side};

use crate::control::{Reached, Request, call_or_open};
use crate::home::Home;
use crate::members_cmd::say;

#[derive(Debug, Subcommand)]
pub enum ConflictsCommand {
    /// Settle the conflict of a file (or of one of its conflict copies):
    /// the version not kept goes to the folder's history; the decision syncs.
    Resolve {
        /// The file or its conflict copy.
        path: PathBuf,
        /// mine or theirs (the version this device made, or the other),
        /// both (the copy gets an ordinary name), original or copy.
        #[arg(long)]
        keep: String,
        #[arg(long)]
        json: bool,
    },
}

/// `conflicts [--folder ID] [--json]`.
pub fn run_list(home: &Home, folder_id: Option<&str>, json: bool) -> Result<ExitCode> {
    let request = Request::Conflicts {
        folder: folder_id.map(str::to_string),
    };
    let list: Vec<Conflict> = match call_or_open(home, &request)? {
        Reached::Agent(answer) => serde_json::from_value(answer)?,
        Reached::Store(store) => conflicts::list_of(&store, home.node_id()?, folder_id)?,
    };
    if json {
        writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&list)?
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        eprintln!("no conflicts");
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    for c in &list {
        let whose = |side: Side, device: &str| match c.mine {
            Some(s) if s == side => format!("this device ({device})"),
            _ => device.to_string(),
        };
        let original = match &c.original {
            Some(v) => format!(
                "{} bytes by {}, modified {}",
                v.size,
                whose(Side::Original, &v.device),
                v.modified
            ),
            None => "deleted since".into(),
        };
        writeln!(
            out,
            "{}/{}\n    kept at the path: {original}\n    conflict copy:    {} bytes by {}, modified {}\n                      {}",
            c.folder,
            c.path,
            c.conflicting.size,
            whose(Side::Copy, &c.conflicting.device),
            c.conflicting.modified,
            c.copy_at.display()
        )?;
    }
    writeln!(
        out,
        "{} conflict(s); settle one with `softadastra conflicts resolve PATH --keep mine|theirs|both`",
        list.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `conflicts resolve PATH --keep K`.
pub fn run_resolve(home: &Home, path: &Path, keep: &str, json: bool) -> Result<ExitCode> {
    let keep: Keep = keep.parse().map_err(anyhow::Error::msg)?;
    let abs = std::fs::canonicalize(path)
        .with_context(|| format!("cannot settle a conflict of {}", path.display()))?;
    let request = Request::ConflictResolve {
        path: abs.clone(),
        keep,
    };
    let settled: Settled = match call_or_open(home, &request)? {
        Reached::Agent(answer) => serde_json::from_value(answer)?,
        Reached::Store(store) => {
            let store = std::sync::Mutex::new(*store);
            conflicts::settle_at(&store, None, home.node_id()?, &abs, keep)?.1
        }
    };
    let what = match settled.kept {
        Some(Side::Original) => "kept the version at the path".to_string(),
        Some(Side::Copy) => "kept the conflict copy's version, now at the path".to_string(),
        None => format!("kept both: the copy is now {}", settled.renamed.join(", ")),
    };
    let trashed = match settled.trashed.len() {
        0 => String::new(),
        _ => format!(
            "; the other is kept in the history ({})",
            settled
                .trashed
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    say(
        json,
        serde_json::to_value(&settled)?,
        &format!("{}: {what}{trashed}; other devices follow", abs.display()),
    )
}
