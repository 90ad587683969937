//! Running totals of a namespace, kept as its entries change, so a
//! question like "how many files, how many bytes in this folder" costs
//! nothing per call instead of a walk of every entry.
//!
//! The store knows nothing of what values mean: the layer that owns a
//! namespace registers a [`TallyFn`] saying what one value counts for
//! (`None`: nothing). Totals are kept per *group*, the key up to its first
//! `/` (a folder id in the `files` namespace). This module only adds and
//! subtracts; it writes nothing.

use std::collections::HashMap;

/// What one stored entry (its key and value) counts for: `Some(bytes)` to
/// count it as one item of that many bytes, `None` not to count it.
pub type TallyFn = fn(&str, &[u8]) -> Option<u64>;

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
    /// Items and bytes by group, signed: while the totals are being built
    /// from a snapshot ([`Tally::building`]) they hold the changes made
    /// since it, which may take away what the snapshot is yet to add.
    groups: HashMap<String, (i64, i64)>,
    /// Whether the snapshot's count is in (see [`Tally::building`]).
    pub(super) ready: bool,
}

impl Tally {
    /// Totals built whole before they are kept.
    pub(super) fn new(count: TallyFn) -> Tally {
        Tally {
            count,
            groups: HashMap::new(),
            ready: true,
        }
    }

    /// Totals kept from now on, the snapshot of now still to be counted
    /// in ([`Tally::add`]): until then they hold only the changes since.
    pub(super) fn building(count: TallyFn) -> Tally {
        Tally {
            ready: false,
            ..Tally::new(count)
        }
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
