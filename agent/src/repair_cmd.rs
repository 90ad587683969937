//! `softadastra repair`: make a damaged store open again (the agent
//! stopped), saying exactly what was kept and what was lost. The work is
//! `runtime::repair::repair_node`; this file runs it and prints it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;
use softadastra::runtime::repair::repair_node;
use softadastra::store::{StoreConfig, StoreError};

use crate::home::Home;

#[derive(Serialize)]
struct RepairJson {
    store_dir: String,
    damaged_files_kept_in: String,
    started_from_sequence: Option<u64>,
    unusable: Vec<String>,
    /// The node's setup (folders, peers) brought back from `aside.bin`:
    /// the sequence it was kept at and its entries.
    setup_kept_aside: Option<(u64, u64)>,
    wal_damage: Vec<String>,
    records_kept: u64,
    lost_changes: u64,
    lost_sequences: Vec<(u64, u64)>,
    unreadable_tail_bytes: u64,
    entries: u64,
    sync_cursors_reset: usize,
    index_records_advanced: u64,
    folders: Vec<FolderJson>,
}

#[derive(Serialize)]
struct FolderJson {
    id: String,
    path: String,
    added: u64,
    modified: u64,
    deleted: u64,
    error: Option<String>,
}

pub fn run_repair(home: &Home, json: bool) -> Result<ExitCode> {
    let mut config = StoreConfig::new(home.store_dir());
    config.node = home.node_id()?;
    let repaired = match repair_node(config, &home.root) {
        Err(softadastra::runtime::repair::RepairError::Store(StoreError::Locked { .. })) => {
            anyhow::bail!(
                "the store in {} is in use: stop the agent first (softadastra shutdown), then repair",
                home.store_dir().display()
            )
        }
        r => {
            r.with_context(|| format!("cannot repair the store in {}", home.store_dir().display()))?
        }
    };
    let s = &repaired.store;
    let out = RepairJson {
        store_dir: home.store_dir().display().to_string(),
        damaged_files_kept_in: s.kept_copy.display().to_string(),
        started_from_sequence: s.base.map(|q| q.0),
        unusable: s.unusable.clone(),
        setup_kept_aside: s.kept_aside.map(|(seq, n)| (seq.0, n)),
        wal_damage: s.damage.clone(),
        records_kept: s.records_kept,
        lost_changes: s.lost_records(),
        lost_sequences: s.lost.iter().map(|(a, b)| (a.0, b.0)).collect(),
        unreadable_tail_bytes: s.unreadable_tail_bytes,
        entries: s.entries,
        sync_cursors_reset: repaired.cursors_forgotten,
        index_records_advanced: repaired.records_advanced,
        folders: repaired
            .scans
            .iter()
            .map(|(id, path, r)| FolderJson {
                id: id.clone(),
                path: path.display().to_string(),
                added: r.as_ref().map_or(0, |r| r.added),
                modified: r.as_ref().map_or(0, |r| r.modified),
                deleted: r.as_ref().map_or(0, |r| r.deleted),
                error: r.as_ref().err().map(|e| e.to_string()),
            })
            .collect(),
    };
    let mut w = std::io::stdout().lock();
    if json {
        writeln!(w, "{}", serde_json::to_string_pretty(&out)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(w, "repaired the store in {}", out.store_dir)?;
    writeln!(
        w,
        "  the damaged files are kept in {}",
        out.damaged_files_kept_in
    )?;
    match out.started_from_sequence {
        Some(seq) => writeln!(w, "  started from the index at sequence {seq}")?,
        None if out.setup_kept_aside.is_some() => writeln!(
            w,
            "  no usable index: started from the node's setup kept aside, then the log"
        )?,
        None => writeln!(w, "  no usable index: started from the log alone")?,
    }
    for u in &out.unusable {
        writeln!(w, "  unusable: {u}")?;
    }
    if let Some((seq, entries)) = out.setup_kept_aside {
        writeln!(
            w,
            "  the node's setup (folders, who they are shared with, peers) came back from the copy kept at sequence {seq}: {entries} entries"
        )?;
    }
    for d in &out.wal_damage {
        writeln!(w, "  damage: {d}")?;
    }
    writeln!(
        w,
        "  {} change(s) read back from the log; {} entries now",
        out.records_kept, out.entries
    )?;
    if out.lost_changes == 0 && out.unreadable_tail_bytes == 0 {
        writeln!(w, "  nothing was lost")?;
    } else {
        let ranges: Vec<String> = out
            .lost_sequences
            .iter()
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        if !ranges.is_empty() {
            writeln!(
                w,
                "  LOST: {} change(s) (sequences {})",
                out.lost_changes,
                ranges.join(", ")
            )?;
        }
        if out.unreadable_tail_bytes > 0 {
            writeln!(
                w,
                "  LOST, perhaps: {} unreadable bytes at the end of the log (a write cut short, or changes)",
                out.unreadable_tail_bytes
            )?;
        }
        writeln!(
            w,
            "    app values changed only there are gone unless a peer has them; files are on disk and are indexed again below"
        )?;
        writeln!(
            w,
            "    {} sync cursors reset (peers send their whole index again); {} index records given newer versions",
            out.sync_cursors_reset, out.index_records_advanced
        )?;
    }
    for f in &out.folders {
        match &f.error {
            Some(e) => writeln!(w, "  folder {} ({}): NOT scanned: {e}", f.id, f.path)?,
            None => writeln!(
                w,
                "  folder {} ({}): indexed again from disk: {} added, {} modified, {} deleted",
                f.id, f.path, f.added, f.modified, f.deleted
            )?,
        }
    }
    writeln!(
        w,
        "start the agent again (softadastra run) to sync with peers"
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Make a damaged database file end the process with what to do instead
/// of a panic's backtrace. The database library (redb) checks what it
/// reads and, on pages it never wrote, can stop with a panic rather than
/// an error — seen on a million-file home whose `index.redb` was damaged
/// after it opened: `softadastra ls` printed "internal error: entered
/// unreachable code". A panic raised inside that library now prints
/// which file kind is damaged and names `softadastra repair`, and exits
/// with failure (the log keeps every change acknowledged, so the repair
/// has them). Any other panic is reported as before. `to_log`: the agent
/// (`run`) also writes it to its log, which may be a file.
pub fn explain_damaged_database_panics(to_log: bool) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let Some(at) = info.location().filter(|l| is_database_library(l.file())) else {
            return default(info);
        };
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no reason given".into());
        let message = format!(
            "the store's database files (store/index.redb, store/chunks.redb) are damaged: \
             reading them failed ({what}, in the database library at {}:{})",
            at.file(),
            at.line()
        );
        if to_log {
            tracing::error!("{message}");
        }
        eprintln!("error: {message}");
        eprintln!(
            "  stop the agent if it runs, then `softadastra repair`: it keeps a copy of the \
             damaged files, salvages every readable change and indexes the folders again"
        );
        std::process::exit(1);
    }));
}

/// Whether a panic's source file is the database library's.
fn is_database_library(file: &str) -> bool {
    file.replace('\\', "/").contains("/redb-")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_library_is_told_by_its_source_path() {
        assert!(super::is_database_library(
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/redb-5.0.0/src/tree_store/btree_cursor.rs"
        ));
        assert!(super::is_database_library(
            r"C:\Users\a\.cargo\registry\src\index\redb-5.0.0\src\db.rs"
        ));
        assert!(!super::is_database_library("engine/src/store/mod.rs"));
        assert!(!super::is_database_library(
            "/rustc/abc/library/core/src/option.rs"
        ));
    }
}
