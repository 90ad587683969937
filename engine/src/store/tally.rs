//! Running totals of a namespace, kept as its entries change, so a
//! question like "how many files, how many bytes in this folder" costs
//! nothing per call instead of a walk of every entry.
//!
//! The store knows nothing of what values mean: the layer that owns a
//! namespace registers a [`TallyFn`] saying what one value counts for
//! (`None`: nothing). Totals are kept per *group*, the key up to its first
//! `/` (a folder id in the `files` namespace). Totals can be kept from a
//! moment on while a snapshot of that moment is still being counted
//! ([`Tally::building`], [`Tallies`]): those asking wait until it is in.
//! Totals kept under a name ([`SavedTally`]) are written into the index
//! when it closes and taken back at the next open instead of counted
//! again, if nothing was applied in between (see `store::state`'s
//! `totals` table). This module only adds, subtracts and waits; it writes
//! nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Condvar, Mutex};

/// What one stored entry (its key and value) counts for: `Some(bytes)` to
/// count it as one item of that many bytes, `None` not to count it.
pub type TallyFn = fn(&str, &[u8]) -> Option<u64>;

/// A way of counting a namespace whose totals are saved when the store
/// closes and taken back, uncounted, at the next open if the index did not
/// change in between: `name` tells them apart on disk (a new way of
/// counting needs a new name).
#[derive(Debug, Clone, Copy)]
pub struct SavedTally {
    /// What the totals are saved as (with a version: `files.v1`).
    pub name: &'static str,
    /// What one entry counts for.
    pub count: TallyFn,
}

/// Totals as saved: by group, items and bytes.
pub(super) type SavedGroups = Vec<(String, i64, i64)>;

/// Items and bytes of one group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Items counted.
    pub items: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The totals of one namespace, by group.
#[derive(Debug)]
pub(super) struct Tally {
    count: TallyFn,
    /// The name the totals are saved under at close, if they are.
    saved_as: Option<&'static str>,
    /// Items and bytes by group, signed: while the totals are being built
    /// from a snapshot ([`Tally::building`]) they hold the changes made
    /// since it, which may take away what the snapshot is yet to add.
    groups: HashMap<String, (i64, i64)>,
    /// Whether the snapshot's count is in (see [`Tally::building`]).
    pub(super) ready: bool,
    /// Taken back as saved at open ([`Tally::restored`]), not counted.
    pub(super) restored: bool,
}

impl Tally {
    /// Totals built whole before they are kept.
    pub(super) fn new(count: TallyFn) -> Tally {
        Tally {
            count,
            saved_as: None,
            groups: HashMap::new(),
            ready: true,
            restored: false,
        }
    }

    /// Totals kept from now on, the snapshot of now still to be counted
    /// in ([`Tally::add`]): until then they hold only the changes since.
    /// Saved at close as `saved_as`, if given, once ready.
    pub(super) fn building(count: TallyFn, saved_as: Option<&'static str>) -> Tally {
        Tally {
            ready: false,
            saved_as,
            ..Tally::new(count)
        }
    }

    /// Totals taken back as they were saved (`groups`), ready.
    pub(super) fn restored(saved: SavedTally, groups: SavedGroups) -> Tally {
        Tally {
            saved_as: Some(saved.name),
            groups: groups.into_iter().map(|(g, i, b)| (g, (i, b))).collect(),
            restored: true,
            ..Tally::new(saved.count)
        }
    }

    /// The name and totals to save at close: of ready totals kept under a
    /// name only.
    pub(super) fn to_save(&self) -> Option<(&'static str, SavedGroups)> {
        let name = self.saved_as.filter(|_| self.ready)?;
        let mut groups: SavedGroups = (self.groups.iter())
            .map(|(g, (i, b))| (g.clone(), *i, *b))
            .collect();
        groups.sort();
        Some((name, groups))
    }

    /// Whether these are the totals `count` keeps. Functions are told apart
    /// by address: two with the same body merged into one count the same
    /// anyway, and one found at two addresses only costs a second set.
    pub(super) fn counts_with(&self, count: TallyFn) -> bool {
        self.count as usize == count as usize
    }

    /// The function these totals count by.
    pub(super) fn count_fn(&self) -> TallyFn {
        self.count
    }

    /// What `key`'s value (`None`: absent or a tombstone) counts for.
    pub(super) fn count(&self, key: &str, value: Option<&[u8]>) -> Option<u64> {
        value.and_then(|v| (self.count)(key, v))
    }

    /// `key`'s value went from `old` to `new` (`None`: absent or a
    /// tombstone).
    pub(super) fn changed(&mut self, key: &str, old: Option<&[u8]>, new: Option<&[u8]>) {
        let (was, is) = (self.count(key, old), self.count(key, new));
        self.counted(key, was, is);
    }

    /// `key` went from counting for `was` to counting for `is`.
    pub(super) fn counted(&mut self, key: &str, was: Option<u64>, is: Option<u64>) {
        if was == is {
            return;
        }
        let group = key.split_once('/').map_or(key, |(g, _)| g);
        let t = self.groups.entry(group.to_string()).or_default();
        if let Some(b) = was {
            t.0 -= 1;
            t.1 -= b as i64;
        }
        if let Some(b) = is {
            t.0 += 1;
            t.1 += b as i64;
        }
    }

    /// Count in `other`'s totals (a snapshot's, into the changes since),
    /// and be ready.
    pub(super) fn add(&mut self, other: &Tally) {
        for (group, (items, bytes)) in &other.groups {
            let t = self.groups.entry(group.clone()).or_default();
            t.0 += items;
            t.1 += bytes;
        }
        self.ready = true;
    }

    pub(super) fn totals(&self, group: Option<&str>) -> Totals {
        let of = |(items, bytes): (i64, i64)| Totals {
            items: items.max(0) as u64,
            bytes: bytes.max(0) as u64,
        };
        match group {
            Some(g) => self.groups.get(g).copied().map(of).unwrap_or_default(),
            None => self
                .groups
                .values()
                .copied()
                .map(of)
                .fold(Totals::default(), |a, t| Totals {
                    items: a.items + t.items,
                    bytes: a.bytes + t.bytes,
                }),
        }
    }
}

/// Every namespace's running totals, and a signal for totals being
/// counted. Shared (an `Arc`) by the store's state, its walks and gates.
#[derive(Debug, Default)]
pub(super) struct Tallies {
    /// The totals kept, by namespace.
    pub(super) kept: Mutex<BTreeMap<String, Vec<Tally>>>,
    /// Told when totals being counted are ready (or forgotten).
    counted: Condvar,
}

impl Tallies {
    /// The totals of `group` in `ns` by `count`, once counted (waited
    /// for while a [`super::TallyWalk`] counts them); none if not kept.
    pub(super) fn totals(&self, ns: &str, group: Option<&str>, count: TallyFn) -> Totals {
        let mut kept = crate::core::lock(&self.kept);
        loop {
            match kept
                .get(ns)
                .and_then(|ts| ts.iter().find(|t| t.counts_with(count)))
            {
                Some(t) if t.ready => return t.totals(group),
                Some(_) => {
                    kept = self.counted.wait(kept).unwrap_or_else(|e| e.into_inner());
                }
                None => return Totals::default(),
            }
        }
    }

    /// A snapshot of `ns` was counted (`counted`, one per counting
    /// function): into the totals kept since, which are then ready.
    pub(super) fn counted(&self, ns: &str, counted: &[Tally]) {
        let mut kept = crate::core::lock(&self.kept);
        if let Some(kept) = kept.get_mut(ns) {
            for c in counted {
                if let Some(t) = kept
                    .iter_mut()
                    .find(|t| !t.ready && t.counts_with(c.count_fn()))
                {
                    t.add(c);
                }
            }
        }
        self.counted.notify_all();
    }

    /// The totals of `ns` by `counts` will not be counted: forget them.
    pub(super) fn uncounted(&self, ns: &str, counts: &[TallyFn]) {
        let mut kept = crate::core::lock(&self.kept);
        if let Some(kept) = kept.get_mut(ns) {
            kept.retain(|t| t.ready || !counts.iter().any(|c| t.counts_with(*c)));
        }
        self.counted.notify_all();
    }

    /// Wait until no totals are being counted.
    pub(super) fn wait_counted(&self) {
        let mut kept = crate::core::lock(&self.kept);
        while kept.values().flatten().any(|t| !t.ready) {
            kept = self.counted.wait(kept).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests;
