//! Giving disk space back from a redb file once much of it is waste.
//!
//! A B-tree filled by keys in no order (content hashes), or by commits
//! that each copy the pages they change, ends with pages half empty and
//! pages freed but still in the file: at 200,000 files the store's index
//! took 142 MB for 54 MB of keys and values (issue 21). redb's compaction
//! moves the pages to the file's start and shortens it (and can pack
//! them); it reads the whole database, so it runs only when the waste
//! passes a share of what is stored and the database changed by a
//! quarter of what it holds since the last look ([`Compactor`]), which
//! makes its cost proportional to the changes, not to the size.
//!
//! Shared by the store's index ([`super::State`]) and the chunk places
//! (`runtime::exec::chunk_places`). It never compacts a database with a
//! transaction open (redb refuses, and the caller goes on without).

use std::time::Instant;

use redb::{CompactionMode, Database};

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// How long it took, ms.
    pub took_ms: u64,
    /// Bytes in the file's pages after it.
    pub after: u64,
}

/// How many changes since the last look make a database of `entries`
/// worth another: a quarter of them (random keys spread over every page
/// leave it mostly waste well before it changed whole).
pub fn changes_for_a_look(entries: u64) -> u64 {
    (entries / 4).max(1)
}

/// When one database is worth a look: measuring its waste walks every
/// page, so it is measured only once the database changed by a quarter
/// of the entries it holds since the last look ([`changes_for_a_look`]),
/// and its file holds at least a floor; the cost of looking (and of
/// compacting) follows the changes, not the size.
#[derive(Debug, Clone, Copy)]
pub struct Compactor {
    floor: u64,
    mode: CompactionMode,
    /// Compact once the waste is more than this percentage of the data.
    waste_percent: u64,
    changes: u64,
}

impl Compactor {
    /// Looks from a file of `floor` bytes on; compacts as `mode` says
    /// ([`CompactionMode::Balanced`] gives back free pages, cheaply;
    /// `Maximum` also packs half-empty ones, at the cost of a copy) once
    /// the waste is more than `waste_percent` % of the data.
    pub fn new(floor: u64, mode: CompactionMode, waste_percent: u64) -> Compactor {
        Compactor {
            floor,
            mode,
            waste_percent,
            changes: 0,
        }
    }

    /// `n` more changes were written.
    pub fn changed(&mut self, n: u64) {
        self.changes = self.changes.saturating_add(n);
    }

    /// The next [`Compactor::maybe`] looks whatever the changes (the
    /// database was just rewritten whole).
    pub fn look_next(&mut self) {
        self.changes = u64::MAX;
    }

    /// Compact `db`, whose file holds `file_bytes` and about `entries`
    /// entries, if it is time for a look and its waste passes the share
    /// of what it stores it was made with. `None` when not. A
    /// transaction still open (a reader elsewhere) makes it wait for a
    /// later call: nothing changed.
    pub fn maybe(
        &mut self,
        db: &mut Database,
        file_bytes: u64,
        entries: u64,
    ) -> Result<Option<Compacted>, redb::Error> {
        if file_bytes < self.floor || self.changes < changes_for_a_look(entries) {
            return Ok(None);
        }
        let (pages, wasteful) = waste(db, self.waste_percent)?;
        if !wasteful {
            self.changes = 0;
            return Ok(None);
        }
        let t = Instant::now();
        match db.compact(self.mode) {
            Ok(_) => {}
            Err(redb::CompactionError::TransactionInProgress) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        self.changes = 0;
        let took_ms = t.elapsed().as_millis() as u64;
        let after = waste(db, self.waste_percent)?.0.min(pages);
        Ok(Some(Compacted { took_ms, after }))
    }
}

/// Bytes in the file's pages (what is stored, and the waste: free pages
/// and the unused part of used ones), and whether the waste is more than
/// `percent` % of what is stored.
fn waste(db: &Database, percent: u64) -> Result<(u64, bool), redb::Error> {
    let txn = db.begin_write()?;
    let stats = txn.stats()?;
    txn.abort()?;
    let used = stats.stored_bytes() + stats.metadata_bytes();
    let waste = stats.fragmented_bytes();
    Ok((
        used + waste,
        waste.saturating_mul(100) > used.saturating_mul(percent),
    ))
}
