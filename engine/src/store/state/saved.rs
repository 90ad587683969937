//! # store::state::saved — running totals saved at close
//!
//! The `totals` table of the index (see [`super`]): running totals kept
//! under a name ([`crate::store::SavedTally`]) are written with the last
//! commit when the index closes, beside the sequence applied then, and
//! read back at the next open only if that sequence is still the one
//! applied. [`super::State::apply`] forgets them at the first change, so
//! what is taken back is never stale. It never counts anything itself.

use std::sync::atomic::Ordering;

use redb::ReadableTable;

use super::{State, TOTALS, err};
use crate::core::Seq;
use crate::store::StoreError;
use crate::store::tally::SavedGroups;

/// Version of a [`SavedBlob`]'s layout.
const SAVED_FORMAT: u32 = 1;

/// Running totals as saved in the `totals` table.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SavedBlob {
    format: u32,
    /// The sequence applied when they were saved.
    seq: u64,
    groups: SavedGroups,
}

/// The running totals in `read`'s `totals` table saved at `seq` (others
/// are of another state of the index, and ignored), by namespace and
/// name. A table or a row that cannot be read is as none saved: the
/// totals are counted again.
pub(super) fn saved_totals(
    read: &redb::ReadTransaction,
    seq: Seq,
) -> std::collections::HashMap<(String, String), SavedGroups> {
    let mut out = std::collections::HashMap::new();
    let Ok(table) = read.open_table(TOTALS) else {
        return out;
    };
    let Ok(rows) = table.iter() else {
        return out;
    };
    for (k, v) in rows.flatten() {
        let (ns, name) = k.value();
        if let Ok(blob) = postcard::from_bytes::<SavedBlob>(v.value())
            && blob.format == SAVED_FORMAT
            && blob.seq == seq.0
        {
            out.insert((ns.to_string(), name.to_string()), blob.groups);
        }
    }
    out
}

impl State {
    /// The running totals saved as `name` for `ns`, if valid now (saved at
    /// the sequence applied, nothing applied since): taken, once.
    pub(in crate::store) fn take_saved(&self, ns: &str, name: &str) -> Option<SavedGroups> {
        crate::core::lock(&self.saved).remove(&(ns.to_string(), name.to_string()))
    }

    /// Save the running totals kept under a name, as they are now, in the
    /// open write transaction (committed with it at close).
    /// Totals taken back as saved, with nothing applied since the open,
    /// are in the table as they are: not written again (a command that
    /// only reads leaves the index as it found it).
    pub(super) fn save_totals(&self) -> Result<(), StoreError> {
        let seq = self.applied.load(Ordering::SeqCst);
        let untouched = seq == self.opened_at.load(Ordering::SeqCst);
        let to_save: Vec<(String, &'static str, SavedGroups)> = {
            let kept = crate::core::lock(&self.tallies.kept);
            kept.iter()
                .flat_map(|(ns, ts)| {
                    ts.iter()
                        .filter(|t| !(untouched && t.restored))
                        .filter_map(|t| t.to_save().map(|(name, g)| (ns.clone(), name, g)))
                })
                .collect()
        };
        if to_save.is_empty() {
            return Ok(());
        }
        self.with_pending(|txn| {
            let mut table = txn.open_table(TOTALS).map_err(err("save the totals"))?;
            for (ns, name, groups) in to_save {
                let blob = SavedBlob {
                    format: SAVED_FORMAT,
                    seq,
                    groups,
                };
                let bytes = postcard::to_allocvec(&blob)
                    .map_err(|e| StoreError::Corruption(e.to_string()))?;
                table
                    .insert((ns.as_str(), name), bytes.as_slice())
                    .map_err(err("save the totals"))?;
            }
            Ok(())
        })
    }
}
