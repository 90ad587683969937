//! `softadastra store …` and `softadastra wal …`.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use softadastra::core::{ErrorContext, NodeId};
use softadastra::folder::values;
use softadastra::store::{Entry, Store, StoreConfig, ns};
use softadastra::wal::{StdStorage, Wal};

use crate::control::{self, Request};
use crate::home::Home;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Set KEY to VALUE in the app's key/values (synced to peers).
    Put { key: String, value: String },
    /// Print the value of KEY.
    Get {
        key: String,
        /// Namespace (read-only look at the engine's own: files, folders,
        /// peers, sync.*).
        #[arg(long, default_value = ns::APP)]
        ns: String,
        /// Print the entry (value, version, timestamp, origin) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove KEY from the app's key/values (the removal syncs).
    Rm { key: String },
    /// List keys, in order.
    List {
        /// Only keys starting with this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long, default_value = ns::APP)]
        ns: String,
        /// One JSON array of entries.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// Read every WAL record and report segments, records, last sequence and
    /// any damage. Changes nothing. Exits non-zero on corruption.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

/// Whether `e` says the store is held by another process (an agent, or a
/// one-shot command for a moment).
fn store_in_use(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<softadastra::store::StoreError>(),
        Some(softadastra::store::StoreError::Locked { .. })
    )
}

/// Run `attempt` until it does not fail with a store in use by another
/// process, for up to `wait`: a store held for a moment (a one-shot
/// command, an agent starting) is waited for instead of refused. A store
/// held longer gives the "in use" error as before.
pub fn while_store_in_use<T>(wait: Duration, mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + wait;
    loop {
        match attempt() {
            Err(e) if store_in_use(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

pub fn open_store(home: &Home) -> Result<Store> {
    let mut config = StoreConfig::new(home.store_dir());
    config.node = home.node_id()?;
    let (mut store, recovery) = Store::open_dir(config).map_err(|e| {
        let damaged = e.is_corruption();
        anyhow::Error::new(e).context(if damaged {
            format!(
                "cannot open the store in {}: it is damaged. `softadastra repair` (agent stopped) keeps a copy of the damaged files, salvages every readable change and indexes the folders again",
                home.store_dir().display()
            )
        } else {
            format!("cannot open the store in {}", home.store_dir().display())
        })
    })?;
    for fallback in &recovery.snapshot_fallbacks {
        eprintln!("warning: snapshot unusable, fell back: {fallback}");
    }
    if let Some(seq) = recovery.migrated_snapshot {
        eprintln!(
            "note: moved this home's store to the on-disk index (from its snapshot of sequence {seq}, then the log)"
        );
    }
    if let Some(t) = &recovery.wal.truncated {
        eprintln!(
            "warning: cut a torn WAL tail ({} bytes at offset {} of {}): an interrupted write that was never acknowledged",
            t.discarded,
            t.offset,
            t.segment.display()
        );
    }
    // Totals the agent keeps stay true and saved through whatever this
    // command writes (none are counted here), so its next start takes
    // them back instead of counting every record.
    store.keep_saved_totals(
        softadastra::store::ns::FILES,
        &softadastra::index::NODE_TOTALS,
    );
    let (folders, _) = softadastra::runtime::trust::upgrade_membership(&mut store)?;
    if !folders.is_empty() {
        eprintln!(
            "note: upgraded this home: folders {} stay shared with the devices trusted now (as they synced); a folder added from now on is shared with no device until `softadastra folder share`",
            folders.join(", ")
        );
    }
    Ok(store)
}

/// One store entry, as shown (and as the running agent sends it).
#[derive(Debug, Serialize, Deserialize)]
pub struct EntryRow {
    ns: String,
    key: String,
    value: String,
    value_bytes: usize,
    version: u64,
    timestamp_ns: u64,
    origin: String,
}

impl EntryRow {
    fn new(ns: &str, key: &str, e: &Entry) -> Self {
        let value = e.value.as_deref().unwrap_or_default();
        EntryRow {
            ns: ns.to_string(),
            key: key.to_string(),
            value: String::from_utf8_lossy(value).into_owned(),
            value_bytes: value.len(),
            version: e.version.0,
            timestamp_ns: e.timestamp.as_nanos(),
            origin: e.origin.to_string(),
        }
    }
}

/// `store get` and `store list` against a store (the agent's, or the one
/// on disk when no agent runs): `Some(key)` reads one entry, else every
/// entry under `prefix`.
pub fn read_rows(store: &Store, ns: &str, key: Option<&str>, prefix: &str) -> Vec<EntryRow> {
    match key {
        Some(k) => store
            .get(ns, k)
            .map(|e| EntryRow::new(ns, k, &e))
            .into_iter()
            .collect(),
        None => store
            .list(ns, prefix)
            .map(|(k, e)| EntryRow::new(ns, &k, &e))
            .collect(),
    }
}

/// `store put` (`Some(value)`) or `store rm` (`None`) of an app key on
/// `node`: through the same WAL batch and index as the SDK's, so it syncs.
/// The new sequence, or `None` when there was nothing to remove.
pub fn write_value(
    store: &mut Store,
    node: NodeId,
    key: &str,
    value: Option<&str>,
) -> Result<Option<u64>> {
    let seq = match value {
        Some(v) => Some(values::put(store, node, key, v.as_bytes())?),
        None => values::remove(store, node, key)?,
    };
    Ok(seq.map(|s| s.0))
}

pub fn run_store(home: &Home, cmd: StoreCommand) -> Result<ExitCode> {
    let (key, value) = match &cmd {
        StoreCommand::Put { key, value } => (key, Some(value.as_str())),
        StoreCommand::Rm { key } => (key, None),
        StoreCommand::Get { .. } | StoreCommand::List { .. } => return read_store(home, cmd),
    };
    let request = Request::StoreWrite {
        key: key.clone(),
        value: value.map(str::to_string),
    };
    let seq = match control::call_or_open(home, &request)? {
        control::Reached::Agent(answer) => serde_json::from_value::<Option<u64>>(answer)
            .context("the agent's answer is not a sequence number")?,
        control::Reached::Store(mut store) => {
            let node = home.node_id()?;
            let seq = write_value(&mut store, node, key, value).context("nothing was written")?;
            store
                .maybe_checkpoint()
                .context("checkpoint failed (the change itself is durable)")?;
            seq
        }
    };
    match (seq, value) {
        (Some(seq), Some(_)) => eprintln!("stored {key} (sequence {seq})"),
        (Some(seq), None) => eprintln!("removed {key} (sequence {seq})"),
        (None, _) => {
            eprintln!("error: key {key} not found");
            return Ok(ExitCode::from(2));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_store(home: &Home, cmd: StoreCommand) -> Result<ExitCode> {
    let (ns, key, prefix, json) = match &cmd {
        StoreCommand::Get { key, ns, json } => (ns, Some(key.as_str()), "", *json),
        StoreCommand::List { prefix, ns, json } => (ns, None, prefix.as_str(), *json),
        _ => unreachable!("writes are handled by run_store"),
    };
    let request = Request::StoreRead {
        ns: ns.clone(),
        key: key.map(str::to_string),
        prefix: prefix.to_string(),
    };
    let rows: Vec<EntryRow> = match control::call_or_open(home, &request)? {
        control::Reached::Agent(answer) => {
            serde_json::from_value(answer).context("the agent's answer is not a list of entries")?
        }
        control::Reached::Store(store) => read_rows(&store, ns, key, prefix),
    };
    let mut out = std::io::stdout().lock();
    if let Some(key) = key {
        let Some(row) = rows.first() else {
            eprintln!("error: key {ns}/{key} not found");
            return Ok(ExitCode::from(2));
        };
        if json {
            writeln!(out, "{}", serde_json::to_string_pretty(row)?)?;
        } else {
            out.write_all(row.value.as_bytes())?;
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                writeln!(out)?;
            }
        }
    } else if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    } else if rows.is_empty() {
        eprintln!(
            "no keys in namespace {ns:?}{}",
            if prefix.is_empty() {
                String::new()
            } else {
                format!(" with prefix {prefix:?}")
            }
        );
    } else {
        let width = rows.iter().map(|r| r.key.len()).max().unwrap_or(3).max(3);
        writeln!(
            out,
            "{:<width$}  {:>8}  {:>7}  VALUE",
            "KEY", "VERSION", "BYTES"
        )?;
        for r in rows {
            let mut preview: String = r.value.chars().take(48).collect();
            preview = preview.replace(['\n', '\r', '\t'], " ");
            if r.value.chars().count() > 48 {
                preview.push('…');
            }
            writeln!(
                out,
                "{:<width$}  {:>8}  {:>7}  {preview}",
                r.key, r.version, r.value_bytes
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct VerifyJson {
    wal_dir: String,
    segments: usize,
    records: u64,
    records_after_damage: u64,
    first_seq: Option<u64>,
    last_seq: u64,
    torn_tail: Option<String>,
    corruption: Option<String>,
    ok: bool,
}

pub fn run_wal(home: &Home, cmd: WalCommand) -> Result<ExitCode> {
    let WalCommand::Verify { json } = cmd;
    let dir = StoreConfig::new(home.store_dir()).wal_dir();
    if !dir.is_dir() {
        anyhow::bail!(
            "no WAL at {} (has this node stored anything yet?)",
            dir.display()
        );
    }
    let report = Wal::verify(&StdStorage, &dir)
        .with_context(|| format!("cannot read the WAL in {}", dir.display()))?;
    let torn = report.torn_tail.as_ref().map(|t| {
        format!(
            "{} bytes at offset {} of {} ({}); cut at next open",
            t.discarded,
            t.offset,
            t.segment.display(),
            t.reason
        )
    });
    let ok = report.corruption.is_none();
    if json {
        let j = VerifyJson {
            wal_dir: dir.display().to_string(),
            segments: report.segments,
            records: report.records,
            records_after_damage: report.records_after_damage,
            first_seq: report.first_seq.map(|s| s.0),
            last_seq: report.last_seq.0,
            torn_tail: torn,
            corruption: report.corruption.clone(),
            ok,
        };
        writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&j)?)?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "WAL        {}", dir.display())?;
        writeln!(out, "segments   {}", report.segments)?;
        match &report.corruption {
            Some(_) => writeln!(
                out,
                "records    {} before the damage, {} readable after it",
                report.records, report.records_after_damage
            )?,
            None => writeln!(out, "records    {}", report.records)?,
        }
        match report.first_seq {
            Some(first) => writeln!(out, "sequences  {first} to {}", report.last_seq)?,
            None => writeln!(
                out,
                "sequences  none held (last sequence {})",
                report.last_seq
            )?,
        }
        if let Some(t) = torn {
            writeln!(out, "torn tail  {t}")?;
        }
        match &report.corruption {
            Some(c) => {
                writeln!(out, "CORRUPTION {c}")?;
                writeln!(
                    out,
                    "repair     stop the agent, then `softadastra repair` keeps every readable change"
                )?;
            }
            None => writeln!(out, "status     ok")?,
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
