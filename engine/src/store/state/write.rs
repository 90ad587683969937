//! # store::state::write — one logged operation written into the index
//!
//! Owns how an [`Op`] changes the tables inside an open write transaction:
//! the entry a put or a removal leaves, the by-version row beside it, the
//! running totals, and the keys a forget, a drop of a prefix or a purge
//! takes out; and rows put as they are ([`State::load`]: an older home's
//! snapshot, what a repair salvaged). It never commits and never decides
//! when: that is [`super::State`]'s.

use std::collections::BTreeMap;

use redb::{ReadableTable, WriteTransaction};

use super::stored::{self, Nodes};
use super::{BY_SEQ, ENTRIES, State, err};
use crate::core::Seq;
use crate::store::tally::Tally;
use crate::store::{Entry, Op, StoreError};
use std::sync::atomic::Ordering;

/// Write `op`'s effect into `txn`, keeping `tallies` in step.
pub(super) fn apply_in(
    txn: &WriteTransaction,
    op: &Op,
    written: Option<&(String, String, Entry)>,
    tallies: &mut BTreeMap<String, Vec<Tally>>,
    nodes: &mut Nodes,
) -> Result<(), StoreError> {
    let mut entries = txn.open_table(ENTRIES).map_err(err("write the index"))?;
    let mut by_seq = txn.open_table(BY_SEQ).map_err(err("write the index"))?;
    if let Some((ns, key, entry)) = written {
        let (ns, key) = (ns.as_str(), key.as_str());
        let bytes = stored::encode(txn, nodes, entry)?;
        let old = entries
            .insert((ns, key), bytes.as_slice())
            .map_err(err("write the index"))?
            .map(|v| v.value().to_vec());
        let old: Option<Entry> = old.and_then(|b| stored::decode(nodes, &b).ok());
        if let Some(o) = &old {
            by_seq
                .remove((ns, o.version.0))
                .map_err(err("write the index"))?;
        }
        by_seq
            .insert((ns, entry.version.0), key)
            .map_err(err("write the index"))?;
        if let Some(ts) = tallies.get_mut(ns) {
            for t in ts {
                t.changed(
                    key,
                    old.as_ref().and_then(|o| o.value.as_deref()),
                    entry.value.as_deref(),
                );
            }
        }
    }
    match op {
        // Written above.
        Op::Put { .. } | Op::Remove { .. } => {}
        Op::PurgeTombstones { ns, before } => {
            let (ns, before) = (ns.as_str(), *before);
            let doomed: Vec<(String, Entry)> = {
                let mut out = Vec::new();
                for row in entries.range((ns, "")..).map_err(err("read the index"))? {
                    let (k, v) = row.map_err(err("read the index"))?;
                    let (n, key) = k.value();
                    if n != ns {
                        break;
                    }
                    let e: Entry = stored::decode(nodes, v.value())
                        .map_err(|e| StoreError::Corruption(format!("entry {n}/{key}: {e}")))?;
                    if e.is_tombstone() && e.timestamp < before {
                        out.push((key.to_string(), e));
                    }
                }
                out
            };
            for (key, e) in doomed {
                entries
                    .remove((ns, key.as_str()))
                    .map_err(err("write the index"))?;
                by_seq
                    .remove((ns, e.version.0))
                    .map_err(err("write the index"))?;
            }
        }
        Op::Forget { ns, key } => {
            forget(
                &mut entries,
                &mut by_seq,
                tallies,
                nodes,
                ns,
                std::slice::from_ref(key),
            )?;
        }
        Op::DropPrefix { ns, prefix } => {
            let keys: Vec<String> = {
                let mut out = Vec::new();
                for row in entries
                    .range((ns.as_str(), prefix.as_str())..)
                    .map_err(err("read the index"))?
                {
                    let (k, _) = row.map_err(err("read the index"))?;
                    let (n, key) = k.value();
                    if n != ns || !key.starts_with(prefix.as_str()) {
                        break;
                    }
                    out.push(key.to_string());
                }
                out
            };
            forget(&mut entries, &mut by_seq, tallies, nodes, ns, &keys)?;
        }
    }
    Ok(())
}

/// The entry a put or a removal logged at `seq` leaves under its key.
pub(super) fn written(seq: Seq, op: &Op) -> Option<(String, String, Entry)> {
    let (ns, key, value, origin, timestamp) = match op {
        Op::Put {
            ns,
            key,
            value,
            origin,
            timestamp,
        } => (ns, key, Some(value.clone()), origin, timestamp),
        Op::Remove {
            ns,
            key,
            origin,
            timestamp,
        } => (ns, key, None, origin, timestamp),
        _ => return None,
    };
    let entry = Entry {
        value,
        version: seq,
        timestamp: *timestamp,
        origin: *origin,
    };
    Some((ns.clone(), key.clone(), entry))
}

type Entries<'t> = redb::Table<'t, (&'static str, &'static str), &'static [u8]>;
type BySeq<'t> = redb::Table<'t, (&'static str, u64), &'static str>;

/// Remove `keys` of `ns` outright (no tombstone).
fn forget(
    entries: &mut Entries<'_>,
    by_seq: &mut BySeq<'_>,
    tallies: &mut BTreeMap<String, Vec<Tally>>,
    nodes: &Nodes,
    ns: &str,
    keys: &[String],
) -> Result<(), StoreError> {
    for key in keys {
        let old = entries
            .remove((ns, key.as_str()))
            .map_err(err("write the index"))?
            .map(|v| v.value().to_vec());
        let Some(old) = old.and_then(|b| stored::decode(nodes, &b).ok()) else {
            continue;
        };
        by_seq
            .remove((ns, old.version.0))
            .map_err(err("write the index"))?;
        if let Some(ts) = tallies.get_mut(ns) {
            for t in ts {
                t.changed(key, old.value.as_deref(), None);
            }
        }
    }
    Ok(())
}

impl State {
    /// Put `rows` (namespace, key, entry) as they are, and record that the
    /// state is at `applied`: an older home's snapshot, or what a repair
    /// salvaged. Committed without an fsync, like any change.
    pub(in crate::store) fn load(
        &self,
        rows: impl IntoIterator<Item = (String, String, Entry)>,
        applied: Seq,
    ) -> Result<(), StoreError> {
        self.with_pending(|txn| {
            let mut entries = txn.open_table(ENTRIES).map_err(err("write the index"))?;
            let mut by_seq = txn.open_table(BY_SEQ).map_err(err("write the index"))?;
            let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
            for (ns, key, entry) in rows {
                let bytes = stored::encode(txn, &mut nodes, &entry)?;
                entries
                    .insert((ns.as_str(), key.as_str()), bytes.as_slice())
                    .map_err(err("write the index"))?;
                by_seq
                    .insert((ns.as_str(), entry.version.0), key.as_str())
                    .map_err(err("write the index"))?;
            }
            Ok(())
        })?;
        self.applied.store(applied.0, Ordering::SeqCst);
        self.uncommitted.fetch_add(1, Ordering::SeqCst);
        {
            let mut recent = crate::core::lock(&self.recent);
            recent.entries.clear();
            recent.complete = false;
        }
        self.commit(false)
    }
}
