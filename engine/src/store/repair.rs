//! # store::repair — a store that no longer opens, made to open again
//!
//! Opening refuses a damaged store ([`StoreError::Corruption`]): nothing
//! is invented and nothing is skipped silently. [`repair`] is the explicit
//! step after that refusal. It copies the damaged files aside first, then
//! keeps everything still readable — the index if redb's integrity check
//! passes (else a new one, from an older home's newest usable snapshot if
//! there is one), and every checksum-valid WAL record after it, before
//! *and after* the damage ([`crate::wal::format::salvage_segment`]) —
//! replays it in sequence order into the index, checkpoints it, and
//! empties the log. An index that is unusable is replaced by the node's
//! setup kept aside at the last checkpoint (`aside.bin`, see
//! [`super::aside`]) before the log is replayed over it. The report says
//! exactly which sequences were lost.
//!
//! New sequences continue past anything the damaged log may have held
//! (peers remember how far they read this node's log; a number given out
//! twice would hide a change from them). What the lost records *meant* —
//! a file index that must be looked at again, sync cursors that must
//! start over — is for the layers that own those namespaces to settle
//! (`runtime::repair`); this module knows keys and values only. It never
//! touches anything outside the store directory but the copy it keeps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::state::State;
use super::{OP_RECORD_KIND, Op, StoreConfig, StoreError, io_err, lock_dir, migrate};
use crate::core::Seq;
use crate::wal::{StdStorage, Storage, Wal, format, format::RECORD_HEADER_LEN};

/// What [`repair`] did and could not do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Where the damaged files were copied before anything changed.
    pub kept_copy: PathBuf,
    /// The sequence the state the repair started from was at: the index
    /// (or an older home's snapshot) that checked out.
    pub base: Option<Seq>,
    /// An index or snapshots that did not check out, with the reason.
    pub unusable: Vec<String>,
    /// WAL records read and replayed.
    pub records_kept: u64,
    /// Unreadable places in the WAL: file, byte offset, length, why.
    pub damage: Vec<String>,
    /// Sequences that neither the index nor the WAL could supply, as
    /// inclusive ranges: the changes lost with the damage.
    pub lost: Vec<(Seq, Seq)>,
    /// Unreadable bytes after the last record kept, at the end of the
    /// log: changes that may have been there (or a write cut short).
    pub unreadable_tail_bytes: u64,
    /// The node's setup brought back from `aside.bin` (see
    /// [`super::aside`]) when the index was unusable: the sequence it was
    /// kept at, and its entries.
    pub kept_aside: Option<(Seq, u64)>,
    /// Entries (tombstones included) in the repaired store.
    pub entries: u64,
    /// The sequence the repaired store's next change gets.
    pub next_seq: Seq,
}

impl RepairReport {
    /// How many sequences were lost (see [`RepairReport::lost`]).
    pub fn lost_records(&self) -> u64 {
        self.lost.iter().map(|(a, b)| b.0 - a.0 + 1).sum()
    }
    /// Whether anything that was ever recorded may be missing.
    pub fn lost_anything(&self) -> bool {
        !self.lost.is_empty() || self.unreadable_tail_bytes > 0
    }
}

/// The index at `config`, if it opens and redb's integrity check passes;
/// else why not. A damaged file can make redb panic rather than fail
/// (its debug builds assert on what it never writes), so that is caught.
fn usable_index(config: &StoreConfig) -> Result<(State, Option<Seq>), String> {
    let path = config.index_path();
    let opened = std::panic::catch_unwind(|| {
        let (mut state, at) =
            State::open(&StdStorage, &path, config.cache_bytes).map_err(|e| e.to_string())?;
        match state.check_integrity() {
            Ok(true) => Ok((state, at)),
            Ok(false) => Err("the integrity check found damage".to_string()),
            Err(e) => Err(e.to_string()),
        }
    });
    match opened {
        Ok(r) => r.map_err(|why| format!("{}: {why}", path.display())),
        Err(_) => Err(format!(
            "{}: unreadable (the database gave up on it)",
            path.display()
        )),
    }
}

/// Repair the store in `config.dir` (see the [module docs](self)); the
/// damaged `wal/`, index and any `snapshots/` are first copied into a new
/// directory under `keep_in`. Fails with [`StoreError::Locked`] while the
/// store is open elsewhere; a failure before the repaired index is
/// checkpointed leaves a store that is repaired again the same way.
pub fn repair(config: &StoreConfig, keep_in: &Path) -> Result<RepairReport, StoreError> {
    let _lock = lock_dir(&config.dir)?;
    let mut report = RepairReport {
        kept_copy: keep_copy(config, keep_in)?,
        ..RepairReport::default()
    };

    // The index if it checks out; else a fresh one, from an older home's
    // newest usable snapshot if there is one.
    let (state, base) = match usable_index(config) {
        Ok((state, at)) => (state, at),
        Err(why) => {
            report.unusable.push(why);
            let path = config.index_path();
            if path.exists() {
                std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
            }
            let (state, _) = State::open(&StdStorage, &path, config.cache_bytes)?;
            (state, None)
        }
    };
    let mut base = base.unwrap_or(Seq::ZERO);
    if base == Seq::ZERO {
        let (newest, unusable) = migrate::newest_snapshot(&StdStorage, config)?;
        report.unusable.extend(unusable);
        if let Some(snap) = newest {
            base = snap.seq;
            state.load(snap.rows, snap.seq)?;
        }
    }
    if base > Seq::ZERO {
        report.base = Some(base);
    }
    // Nothing to start from: the node's setup, kept aside at the last
    // checkpoint, comes back; the log's records of those namespaces up to
    // it are older, and are not replayed over it.
    let mut aside_seq = Seq::ZERO;
    if base == Seq::ZERO {
        match super::aside::read(&StdStorage, &config.dir) {
            Ok(Some(aside)) => {
                aside_seq = aside.seq;
                report.kept_aside = Some((aside.seq, aside.rows.len() as u64));
                state.load(aside.rows, Seq::ZERO)?;
            }
            Ok(None) => {}
            Err(why) => report.unusable.push(why),
        }
    }
    let kept_aside = |op: &Op| config.kept_aside.iter().any(|ns| ns == op.ns());

    // Every readable operation after it, by sequence.
    let mut ops: BTreeMap<Seq, Op> = BTreeMap::new();
    let mut highest = base;
    let wal_dir = config.wal_dir();
    let segments = if wal_dir.is_dir() {
        Wal::segment_files(&StdStorage, &wal_dir)?
    } else {
        Vec::new()
    };
    let mut tail_damage = 0;
    for path in &segments {
        // Every sequence before a segment's base was given out, even when
        // no record of it is left (a checkpoint compacts the log: a store
        // at rest holds one empty segment). Without this, a lost index
        // and an empty log would number new changes from 1 again, below
        // what peers have read of this node's log.
        if let Some(segment_base) = crate::wal::segment_base(path) {
            highest = highest.max(Seq(segment_base.0.saturating_sub(1)));
        }
        let bytes = std::fs::read(path).map_err(io_err("read", path))?;
        let salvaged = format::salvage_segment(&bytes);
        let last_record_end = salvaged.records.last().map_or(0, |(at, r)| {
            at + (RECORD_HEADER_LEN + r.payload.len()) as u64
        });
        tail_damage = 0;
        for (at, len, why) in &salvaged.damage {
            report.damage.push(format!(
                "{} at byte {at}: {len} bytes unreadable ({why})",
                path.display()
            ));
            if *at >= last_record_end {
                tail_damage = *len;
            }
        }
        for (_, rec) in salvaged.records {
            highest = highest.max(rec.seq);
            if rec.seq <= base || rec.kind != OP_RECORD_KIND {
                continue;
            }
            // A record that checks out but does not decode is lost too:
            // its sequence stays a gap.
            if let Ok(op) = postcard::from_bytes::<Op>(rec.payload) {
                ops.insert(rec.seq, op);
            }
        }
    }
    report.unreadable_tail_bytes = tail_damage;

    let mut expected = base.next();
    for (seq, op) in ops {
        if seq > expected {
            report.lost.push((expected, Seq(seq.0 - 1)));
        }
        if seq > aside_seq || !kept_aside(&op) {
            state.apply(seq, op)?;
        }
        report.records_kept += 1;
        expected = seq.next();
    }
    if highest >= expected {
        // Records numbered past the last kept one that did not decode.
        report.lost.push((expected, highest));
    }
    // Unreadable bytes at the end may have held as many records as fit.
    let tail_records = tail_damage / RECORD_HEADER_LEN as u64;
    let last = Seq(highest.max(Seq(expected.0 - 1)).0 + tail_records);
    report.next_seq = last.next();

    // The repaired state: the index at `last`, checkpointed, and no log.
    // The old files are in the kept copy. A crash before the old segments
    // are gone leaves a store that still refuses to open (or opens at the
    // checkpoint), and is repaired again the same way.
    state.load(Vec::new(), last)?;
    state.commit(true)?;
    report.entries = state.count();
    drop(state);
    for path in &segments {
        std::fs::remove_file(path).map_err(io_err("remove", path))?;
    }
    if config.snapshot_dir().is_dir() {
        migrate::remove_snapshots(&StdStorage, config)?;
    }
    Ok(report)
}

/// Copy the store's `wal/`, `snapshots/` (an older home's) and index file
/// into a new directory under `keep_in`, named for the time; returns it.
fn keep_copy(config: &StoreConfig, keep_in: &Path) -> Result<PathBuf, StoreError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut kept = keep_in.join(format!("store-damaged-{secs}"));
    let mut n = 1;
    while kept.exists() {
        n += 1;
        kept = keep_in.join(format!("store-damaged-{secs}-{n}"));
    }
    for dir in [config.wal_dir(), config.snapshot_dir()] {
        let Some(name) = dir.file_name() else {
            continue;
        };
        let to = kept.join(name);
        std::fs::create_dir_all(&to).map_err(io_err("create directory", &to))?;
        for file in list(&dir)? {
            let (from, into) = (dir.join(&file), to.join(&file));
            std::fs::copy(&from, &into).map_err(io_err("copy", &from))?;
            let copied = std::fs::File::open(&into).map_err(io_err("open", &into))?;
            copied.sync_all().map_err(io_err("fsync", &into))?;
        }
        let f = std::fs::File::open(&to).map_err(io_err("open", &to))?;
        f.sync_all().map_err(io_err("fsync", &to))?;
    }
    for file in [config.index_path(), super::aside::path(&config.dir)] {
        let Some(name) = file.file_name().filter(|_| file.exists()) else {
            continue;
        };
        let into = kept.join(name);
        std::fs::create_dir_all(&kept).map_err(io_err("create directory", &kept))?;
        std::fs::copy(&file, &into).map_err(io_err("copy", &file))?;
        let copied = std::fs::File::open(&into).map_err(io_err("open", &into))?;
        copied.sync_all().map_err(io_err("fsync", &into))?;
    }
    Ok(kept)
}

/// The file names in `dir`, in order (none if it does not exist).
fn list(dir: &Path) -> Result<Vec<String>, StoreError> {
    match StdStorage.list(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        listed => listed.map_err(io_err("list", dir)),
    }
}
