//! The window of file work kept in memory: at most
//! [`SyncConfig::work_window`] files' work (directories aside, which order
//! the rest, and removals the deletion guard holds, which wait for a
//! person) is held by the engine at once; the rest of the pending work
//! waits in the store only (its need is in `sync.need` whatever happens)
//! and is taken in, in path order, as the window drains. A sync that
//! brings a million files holds the window, not a million entries (issue
//! 21). It never decides what work is wanted, only when it is held.

use super::*;
use work::DirEffect;

impl SyncEngine {
    /// Paths whose work is held in memory now (the window, and the
    /// directories to make or remove); the rest of the pending work waits
    /// in the store.
    pub fn work_in_memory(&self) -> usize {
        self.work.len()
    }

    /// File work in memory, directories and held removals aside: what
    /// the window bounds. A removal the deletion guard holds waits for a
    /// person; counted, a mass deletion held back would fill the window
    /// and stop the rest of the sync behind it.
    pub(super) fn files_in_window(&self) -> usize {
        (self.work.len())
            .saturating_sub(self.dir_work.len() + self.dir_removals.len() + self.held_count)
    }

    /// Take needs kept in the store only into the window of work in
    /// memory, in path order from where the last stopped, once it has
    /// drained to three quarters ([`SyncConfig::work_window`]). A path's
    /// directories sort before it, so a directory still to make is always
    /// taken in before what it holds.
    pub(super) fn take_in_backlog(&mut self, store: &Store, now: Instant) {
        let window = self.config.work_window.max(1);
        let Some(from) = self.backlog_from.clone() else {
            return;
        };
        if self.files_in_window() > window - window / 4 {
            return;
        }
        let mut next = None;
        for (key, entry) in store.scan_from(NEED_NS, &from) {
            let (Some(value), Some((f, p))) = (entry.value.as_deref(), key.split_once('/')) else {
                continue;
            };
            let k = (f.to_string(), p.to_string());
            if self.work.contains_key(&k) {
                continue;
            }
            let effect = postcard::from_bytes::<Need>(value)
                .map(|n| DirEffect::of(&n.record))
                .unwrap_or(DirEffect::None);
            if effect == DirEffect::None && self.files_in_window() >= window {
                next = Some(key);
                break;
            }
            self.note_dir_effect(&k, effect);
            self.work.insert(k, Work::new(now));
        }
        self.backlog_from = next;
    }

    /// Whether work for `key`, not held yet, must wait in the store only:
    /// the window is full and it is not a directory's. Then the first key
    /// waiting there is moved back to it if it sorts before.
    pub(super) fn kept_in_store_only(&mut self, key: &(String, String)) -> bool {
        let is_dir = self.dir_work.contains(key) || self.dir_removals.contains(key);
        if is_dir
            || self.files_in_window() < self.config.work_window.max(1)
            || self.work.contains_key(key)
        {
            return false;
        }
        let key = index::file_key(&key.0, &key.1);
        if self.backlog_from.as_ref().is_none_or(|b| key < *b) {
            self.backlog_from = Some(key);
        }
        true
    }
}
