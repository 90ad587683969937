//! `softadastra store …` and `softadastra wal …`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde::Serialize;
use softadastra::store::{Entry, Store, StoreConfig, ns};
use softadastra::wal::{StdStorage, Wal};

use crate::home::Home;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Set KEY to VALUE.
    Put {
        key: String,
        value: String,
        /// Namespace.
        #[arg(long, default_value = ns::APP)]
        ns: String,
    },
    /// Print the value of KEY.
    Get {
        key: String,
        #[arg(long, default_value = ns::APP)]
        ns: String,
        /// Print the entry (value, version, timestamp, origin) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove KEY (a tombstone is kept so the removal can sync).
    Rm {
        key: String,
        #[arg(long, default_value = ns::APP)]
        ns: String,
    },
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

pub fn open_store(home: &Home) -> Result<Store> {
    let mut config = StoreConfig::new(home.store_dir());
    config.node = home.node_id()?;
    let (store, recovery) = Store::open_dir(config)
        .with_context(|| format!("cannot open the store in {}", home.store_dir().display()))?;
    for fallback in &recovery.snapshot_fallbacks {
        eprintln!("warning: snapshot unusable, fell back: {fallback}");
    }
    if let Some(t) = &recovery.wal.truncated {
        eprintln!(
            "warning: cut a torn WAL tail ({} bytes at offset {} of {}): an interrupted write that was never acknowledged",
            t.discarded,
            t.offset,
            t.segment.display()
        );
    }
    Ok(store)
}

#[derive(Serialize)]
struct EntryJson<'a> {
    ns: &'a str,
    key: &'a str,
    value: String,
    value_bytes: usize,
    version: u64,
    timestamp_ns: u64,
    origin: String,
}

impl<'a> EntryJson<'a> {
    fn new(ns: &'a str, key: &'a str, e: &Entry) -> Self {
        let value = e.value.as_deref().unwrap_or_default();
        EntryJson {
            ns,
            key,
            value: String::from_utf8_lossy(value).into_owned(),
            value_bytes: value.len(),
            version: e.version.0,
            timestamp_ns: e.timestamp.as_nanos(),
            origin: e.origin.to_string(),
        }
    }
}

pub fn run_store(home: &Home, cmd: StoreCommand) -> Result<ExitCode> {
    let mut store = open_store(home)?;
    let mut out = std::io::stdout().lock();
    match cmd {
        StoreCommand::Put { key, value, ns } => {
            let seq = store
                .put(&ns, &key, value.into_bytes())
                .context("put failed; nothing was written")?;
            store
                .maybe_snapshot()
                .context("snapshot after put failed (the put itself is durable)")?;
            eprintln!("stored {ns}/{key} (sequence {seq})");
        }
        StoreCommand::Get { key, ns, json } => match store.get(&ns, &key) {
            Some(e) if json => writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&EntryJson::new(&ns, &key, e))?
            )?,
            Some(e) => {
                out.write_all(e.value.as_deref().unwrap_or_default())?;
                if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                    writeln!(out)?;
                }
            }
            None => {
                eprintln!("error: key {ns}/{key} not found");
                return Ok(ExitCode::from(2));
            }
        },
        StoreCommand::Rm { key, ns } => match store
            .remove(&ns, &key)
            .context("remove failed; nothing was written")?
        {
            Some(seq) => eprintln!("removed {ns}/{key} (sequence {seq})"),
            None => {
                eprintln!("error: key {ns}/{key} not found");
                return Ok(ExitCode::from(2));
            }
        },
        StoreCommand::List { prefix, ns, json } => {
            let entries: Vec<_> = store.list(&ns, &prefix).collect();
            if json {
                let rows: Vec<_> = entries
                    .iter()
                    .map(|(k, e)| EntryJson::new(&ns, k, e))
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else if entries.is_empty() {
                eprintln!(
                    "no keys in namespace {ns:?}{}",
                    if prefix.is_empty() {
                        String::new()
                    } else {
                        format!(" with prefix {prefix:?}")
                    }
                );
            } else {
                let width = entries
                    .iter()
                    .map(|(k, _)| k.len())
                    .max()
                    .unwrap_or(3)
                    .max(3);
                writeln!(
                    out,
                    "{:<width$}  {:>8}  {:>7}  VALUE",
                    "KEY", "VERSION", "BYTES"
                )?;
                for (k, e) in entries {
                    let v = e.value.as_deref().unwrap_or_default();
                    let mut preview: String = String::from_utf8_lossy(v).chars().take(48).collect();
                    preview = preview.replace(['\n', '\r', '\t'], " ");
                    if v.len() > 48 {
                        preview.push('…');
                    }
                    writeln!(
                        out,
                        "{k:<width$}  {:>8}  {:>7}  {preview}",
                        e.version.0,
                        v.len()
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct VerifyJson {
    wal_dir: String,
    segments: usize,
    records: u64,
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
        writeln!(out, "records    {}", report.records)?;
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
            Some(c) => writeln!(out, "CORRUPTION {c}")?,
            None => writeln!(out, "status     ok")?,
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
