//! # store::state::read — answering reads from the index
//!
//! Owns how a key, the namespaces and the entry count are read: through
//! the changes of the open write transaction first, then the table as of
//! the last commit (kept open, not a transaction per read). A read that
//! fails answers "nothing" and is remembered, so the next write fails with
//! it instead of the failure passing unseen. It never writes to the index
//! (beyond committing what is pending before a whole-table read).

use std::sync::atomic::Ordering;

use redb::{ReadableDatabase, ReadableTable};

use super::{ENTRIES, State, compact, err, stored};
use crate::store::{Entry, StoreError};

impl State {
    /// Note a read failure: the read answers "nothing", the next write
    /// fails with it (see [`State::take_read_failure`]).
    pub(super) fn failed_read(&self, e: impl std::fmt::Display) {
        tracing::error!(error = %e, "store index read failed");
        let mut slot = crate::core::lock(&self.read_failure);
        if slot.is_none() {
            *slot = Some(e.to_string());
        }
    }

    /// A read failure since the last call, as an error.
    pub(in crate::store) fn take_read_failure(&self) -> Result<(), StoreError> {
        match crate::core::lock(&self.read_failure).take() {
            Some(reason) => Err(StoreError::Index {
                op: "read the index",
                reason,
                corrupt: false,
            }),
            None => Ok(()),
        }
    }

    /// The entry of `key` in `ns`, tombstones included.
    pub(in crate::store) fn get(&self, ns: &str, key: &str) -> Option<Entry> {
        // What the open transaction changed, then the table as of the last
        // commit (kept open: no transaction begun per read). Only after a
        // forget or a purge, until the next commit, through the open
        // transaction itself.
        let pending = crate::core::lock(&self.pending);
        {
            let recent = crate::core::lock(&self.recent);
            if let Some(e) = recent.entries.get(ns).and_then(|keys| keys.get(key)) {
                return Some(e.clone());
            }
            if !recent.complete
                && let Some(txn) = pending.as_ref()
            {
                let bytes = txn
                    .open_table(ENTRIES)
                    .map_err(redb::Error::from)
                    .and_then(|t| Ok(t.get((ns, key))?.map(|v| v.value().to_vec())));
                return self.decoded(ns, key, bytes);
            }
        }
        drop(pending);
        let mut committed = crate::core::lock(&self.committed);
        if committed.is_none() {
            let read = self
                .db()
                .and_then(|db| db.begin_read().map_err(err("read the index")));
            match read.map(|r| r.open_table(ENTRIES)) {
                Ok(Ok(t)) => *committed = Some(t),
                Ok(Err(redb::TableError::TableDoesNotExist(_))) => return None,
                Ok(Err(e)) => {
                    self.failed_read(e);
                    return None;
                }
                Err(e) => {
                    self.failed_read(e);
                    return None;
                }
            }
        }
        let bytes = match committed.as_ref() {
            Some(t) => t
                .get((ns, key))
                .map(|v| v.map(|v| v.value().to_vec()))
                .map_err(redb::Error::from),
            None => Ok(None),
        };
        self.decoded(ns, key, bytes)
    }

    pub(super) fn decoded(
        &self,
        ns: &str,
        key: &str,
        bytes: Result<Option<Vec<u8>>, redb::Error>,
    ) -> Option<Entry> {
        match bytes {
            Ok(bytes) => bytes.and_then(|b| self.decode(ns, key, &b)),
            Err(e) => {
                self.failed_read(e);
                None
            }
        }
    }

    pub(super) fn decode(&self, ns: &str, key: &str, bytes: &[u8]) -> Option<Entry> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        match stored::decode(&nodes, bytes) {
            Ok(e) => Some(e),
            Err(e) => {
                self.failed_read(format!("entry {ns}/{key} does not decode: {e}"));
                None
            }
        }
    }

    /// A read transaction seeing everything applied so far (what was
    /// pending is committed first, without an fsync).
    pub(super) fn reader(&self) -> Option<redb::ReadTransaction> {
        if let Err(e) = self.commit(false) {
            self.failed_read(e);
            return None;
        }
        match self
            .db()
            .and_then(|db| db.begin_read().map_err(err("read the index")))
        {
            Ok(r) => Some(r),
            Err(e) => {
                self.failed_read(e);
                None
            }
        }
    }

    /// The namespaces that hold entries, in order.
    pub(in crate::store) fn namespaces(&self) -> Vec<String> {
        let Some(r) = self.reader() else {
            return Vec::new();
        };
        let Ok(t) = r.open_table(ENTRIES) else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        loop {
            // The first key after every key of the last namespace found.
            let next = match out.last() {
                None => t.range(("", "")..).map(|mut r| r.next()),
                Some(last) => {
                    let after = format!("{last}\0");
                    t.range((after.as_str(), "")..).map(|mut r| r.next())
                }
            };
            match next {
                Ok(Some(Ok((k, _)))) => out.push(k.value().0.to_string()),
                Ok(None) => return out,
                Ok(Some(Err(e))) | Err(e) => {
                    self.failed_read(e);
                    return out;
                }
            }
        }
    }

    /// Whether [`State::compact_when_wasteful`] would look at the file
    /// (cheap: no page is read).
    pub(in crate::store) fn compaction_due(&self, from_bytes: u64, file_bytes: u64) -> bool {
        file_bytes >= from_bytes
            && self.changes.load(Ordering::Relaxed) >= compact::changes_for_a_look(self.count())
    }

    /// How many entries (tombstones included) the database holds.
    pub(in crate::store) fn count(&self) -> u64 {
        use redb::ReadableTableMetadata;
        self.reader()
            .and_then(|r| r.open_table(ENTRIES).ok())
            .and_then(|t| t.len().ok())
            .unwrap_or(0)
    }
}
