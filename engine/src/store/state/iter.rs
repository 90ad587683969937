//! # store::state::iter — scans that own their read transaction
//!
//! [`Scan`] (keys under a prefix) and [`Changed`] (what changed after a
//! sequence) read the index as it was when they were made, whatever is
//! written meanwhile. A read failure ends them early and is kept by the
//! state, so the next write fails with it; they never write.

use std::sync::Arc;

use redb::ReadableTable;

use super::{BY_SEQ, ENTRIES, State};
use crate::core::Seq;
use crate::store::Entry;

pub(super) type RangeOf<K, V> = redb::OwnedRange<K, V>;

/// The iterator of `State::scan`: owns its read transaction.
pub struct Scan {
    pub(super) state: Arc<State>,
    pub(super) range: Option<RangeOf<(&'static str, &'static str), &'static [u8]>>,
    pub(super) ns: String,
    pub(super) prefix: String,
}

impl Iterator for Scan {
    type Item = (String, Entry);
    fn next(&mut self) -> Option<(String, Entry)> {
        let range = self.range.as_mut()?;
        let row = match range.next()? {
            Ok(row) => row,
            Err(e) => {
                self.state.failed_read(e);
                self.range = None;
                return None;
            }
        };
        let (n, key) = row.0.value();
        if n != self.ns || !key.starts_with(self.prefix.as_str()) {
            self.range = None;
            return None;
        }
        let entry = self.state.decode(n, key, row.1.value());
        let key = key.to_string();
        match entry {
            Some(e) => Some((key, e)),
            None => {
                self.range = None;
                None
            }
        }
    }
}

pub(super) type SeqRange = RangeOf<(&'static str, u64), &'static str>;
pub(super) type EntryTable = redb::ReadOnlyTable<(&'static str, &'static str), &'static [u8]>;

/// The iterator of `State::changed_since`: owns its read transaction.
pub struct Changed {
    pub(super) state: Arc<State>,
    pub(super) tables: Option<(SeqRange, EntryTable)>,
    pub(super) ns: String,
}

impl Iterator for Changed {
    type Item = (String, Entry);
    fn next(&mut self) -> Option<(String, Entry)> {
        let (range, entries) = self.tables.as_mut()?;
        let looked = match range.next()? {
            Ok((k, key)) => {
                let (n, _) = k.value();
                if n != self.ns {
                    Ok(None)
                } else {
                    let key = key.value().to_string();
                    entries
                        .get((n, key.as_str()))
                        .map(|v| Some((key, v.map(|v| v.value().to_vec()))))
                }
            }
            Err(e) => Err(e),
        };
        match looked {
            Ok(Some((key, Some(bytes)))) => match self.state.decode(&self.ns, &key, &bytes) {
                Some(e) => Some((key, e)),
                None => {
                    self.tables = None;
                    None
                }
            },
            Ok(Some((key, None))) => {
                self.state.failed_read(format!(
                    "{}/{key}: listed by version but has no entry",
                    self.ns
                ));
                self.tables = None;
                None
            }
            Ok(None) => {
                self.tables = None;
                None
            }
            Err(e) => {
                self.state.failed_read(e);
                self.tables = None;
                None
            }
        }
    }
}

impl State {
    /// Entries of `ns` whose key starts with `prefix`, in key order,
    /// tombstones included.
    pub(in crate::store) fn scan(self: &Arc<Self>, ns: &str, prefix: &str) -> Scan {
        self.scan_from(ns, prefix, prefix)
    }

    /// Entries of `ns` whose key starts with `prefix`, in key order, from
    /// the first key at or after `start` (which must not sort before
    /// `prefix` for the prefix's entries to be all there), tombstones
    /// included.
    pub(in crate::store) fn scan_from(
        self: &Arc<Self>,
        ns: &str,
        start: &str,
        prefix: &str,
    ) -> Scan {
        let range = self.reader().and_then(|r| match r.open_table(ENTRIES) {
            Ok(t) => {
                let from = (ns, start);
                t.range_owned(from..).map_err(|e| self.failed_read(e)).ok()
            }
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => {
                self.failed_read(e);
                None
            }
        });
        Scan {
            state: self.clone(),
            range,
            ns: ns.to_string(),
            prefix: prefix.to_string(),
        }
    }

    /// Entries of `ns` last changed after `since`, oldest change first.
    pub(in crate::store) fn changed_since(self: &Arc<Self>, ns: &str, since: Seq) -> Changed {
        let tables = self.reader().and_then(|r| {
            let seqs = r.open_table(BY_SEQ);
            let entries = r.open_table(ENTRIES);
            match (seqs, entries) {
                (Ok(s), Ok(e)) => {
                    let range = s
                        .range_owned((ns, since.0.saturating_add(1))..)
                        .map_err(|e| self.failed_read(e))
                        .ok()?;
                    Some((range, e))
                }
                (Err(redb::TableError::TableDoesNotExist(_)), _)
                | (_, Err(redb::TableError::TableDoesNotExist(_))) => None,
                (Err(e), _) | (_, Err(e)) => {
                    self.failed_read(e);
                    None
                }
            }
        });
        Changed {
            state: self.clone(),
            tables,
            ns: ns.to_string(),
        }
    }
}
