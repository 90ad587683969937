//! Housekeeping a running node does on a timer: deleting unfinished
//! downloads no longer wanted, waking work that waited for free space,
//! gathering the versions local edits replaced, writing the chunk places
//! once changes pause, giving the store index's cache back once the store
//! is still, compacting the index once changes stopped for a minute, and
//! emptying old trash. Each task only asks or
//! tidies; none decides what to sync.

use super::*;

/// Every few seconds, delete the unfinished downloads kept for a resume
/// that will not come (see [`exec::Partials::drop_unwanted`]): a kept
/// temporary file must not outlive the work it was for.
pub(super) async fn drop_unwanted_partials(s: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        every.tick().await;
        if s.partials.is_empty() {
            // Nothing kept: the store's lock is not worth taking.
            continue;
        }
        let s2 = s.clone();
        let dropped =
            tokio::task::spawn_blocking(move || s2.partials.drop_unwanted(&lock(&s2.store)))
                .await
                .unwrap_or(0);
        if dropped > 0 {
            debug!(
                files = dropped,
                "deleted unfinished downloads no longer wanted"
            );
        }
    }
}

/// Every second, write the chunk places pending on disk if no change came
/// for [`exec::QUIET`] (see [`exec::ChunkIndex::flush_when_quiet`]), and
/// bring the chunk index up to date with the store then
/// ([`exec::catch_up_when_quiet`]): the next change does not wait for
/// either. A lookup in progress, or the store busy, is not waited for.
pub(super) async fn flush_chunk_places_when_quiet(s: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let s2 = s.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(mut chunks) = s2.chunks.try_lock() {
                chunks.flush_when_quiet();
            }
            exec::catch_up_when_quiet(&s2);
        })
        .await;
    }
}

/// How long the store must see no change before its index is compacted
/// (see [`compact_index_when_quiet`]).
const QUIET_FOR_COMPACTION: Duration = Duration::from_secs(60);

/// Every 10 s, compact the store's index if it is due (see
/// [`Store::compaction_due`]) and no shared file changed for
/// [`QUIET_FOR_COMPACTION`]: it holds the store's lock while it runs
/// (~0.7 s at 200,000 files), which a change arriving during a sync would
/// wait for; a node at rest gives its disk space back. Then, without the
/// store, the chunk places are packed if they changed since they last
/// were and no chunk was looked up for as long (see
/// [`exec::ChunkIndex::pack_at_rest`]; a lookup in progress is not
/// waited for).
pub(super) async fn compact_index_when_quiet(s: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_secs(10));
    let mut quiet = Quiet::default();
    loop {
        every.tick().await;
        let s2 = s.clone();
        let mut q = quiet;
        quiet = tokio::task::spawn_blocking(move || {
            let mut store = lock(&s2.store);
            let now = store.last_seq();
            let quiet = q.long_enough(now, Instant::now(), QUIET_FOR_COMPACTION, |since| {
                store
                    .changed_since(crate::store::ns::FILES, since)
                    .next()
                    .is_some()
            });
            if quiet
                && store.compaction_due()
                && let Err(e) = store.compact_when_wasteful()
            {
                warn!(error = %e, "the store index was not compacted");
            }
            drop(store);
            if quiet && let Ok(mut chunks) = s2.chunks.try_lock() {
                chunks.pack_at_rest(QUIET_FOR_COMPACTION);
            }
            q
        })
        .await
        .unwrap_or_default();
    }
}

/// How long the store must see no change at all before its index's page
/// cache is given back (see [`release_store_cache_when_still`]).
const STILL_FOR_RELEASE: Duration = Duration::from_secs(3);

/// Every second, once the store saw no change for [`STILL_FOR_RELEASE`] and
/// changed since the last time, checkpoint it and give its index's page
/// cache back ([`Store::release_cache`]): a sync fills the cache to its
/// size (24 MiB), which an idle agent would otherwise hold for good. The
/// next change reads its pages again from the system's file cache, a few
/// ms. A scan holding the store's state makes it wait for a later tick.
pub(super) async fn release_store_cache_when_still(s: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut still = Still::default();
    loop {
        every.tick().await;
        let s2 = s.clone();
        let mut st = still;
        still = tokio::task::spawn_blocking(move || {
            let mut store = lock(&s2.store);
            let seq = store.last_seq();
            if !st.due(seq, Instant::now()) {
                return st;
            }
            let started = Instant::now();
            match store.release_cache() {
                Ok(true) => {
                    st.released(seq);
                    debug!(
                        took_ms = started.elapsed().as_millis() as u64,
                        "store index cache given back"
                    );
                }
                // A scan holds the state: the next tick tries again.
                Ok(false) => {}
                Err(e) => {
                    st.released(seq);
                    warn!(error = %e, "the store index was not reopened to give its cache back");
                }
            }
            st
        })
        .await
        .unwrap_or_default();
    }
}

/// Whether the store has been still long enough to give its cache back,
/// from the sequence it is at on each look: no change for
/// [`STILL_FOR_RELEASE`], and some since the cache was last given back.
#[derive(Debug, Clone, Copy, Default)]
struct Still {
    /// Since when the store is at the sequence it is at.
    quiet: Quiet,
    /// The sequence the cache was last given back at.
    released_at: Option<crate::core::Seq>,
}

impl Still {
    /// The store is at `seq` at `now`: whether to give the cache back.
    fn due(&mut self, seq: crate::core::Seq, now: Instant) -> bool {
        let still = (self.quiet).long_enough(seq, now, STILL_FOR_RELEASE, |at| at != seq);
        still && self.released_at != Some(seq)
    }

    /// The cache was given back (or that failed, not to be tried again)
    /// at `seq`.
    fn released(&mut self, seq: crate::core::Seq) {
        self.released_at = Some(seq);
    }
}

/// Whether nothing that matters changed in the store for long enough,
/// from what it says on each look: no shared file for
/// [`QUIET_FOR_COMPACTION`] (bookkeeping such as sync cursors may still be
/// written meanwhile), or nothing at all for [`STILL_FOR_RELEASE`].
#[derive(Debug, Clone, Copy, Default)]
struct Quiet {
    /// The sequence at the look that found the last change that matters
    /// (or the first look), and when that was.
    seen: Option<(crate::core::Seq, Instant)>,
}

impl Quiet {
    /// The store is at `seq` at `now`; `changed_since(s)` says whether
    /// something that matters changed after sequence `s`. Whether nothing
    /// did for at least `needed`.
    fn long_enough(
        &mut self,
        seq: crate::core::Seq,
        now: Instant,
        needed: Duration,
        changed_since: impl FnOnce(crate::core::Seq) -> bool,
    ) -> bool {
        match self.seen {
            Some((at, since)) if !changed_since(at) => now.duration_since(since) >= needed,
            _ => {
                self.seen = Some((seq, now));
                false
            }
        }
    }
}

/// Every 2 s, gather the bytes of versions that edits and deletions on
/// this device replaced (see [`exec::gather_wanted`]), while any are
/// wanted: a version is kept here within seconds of the change, from this
/// device's files and the peers that kept it.
pub(super) async fn gather_local_versions(s: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_secs(2));
    let mut state = exec::WantedVersions::default();
    loop {
        every.tick().await;
        let filed = exec::gather_wanted(&s, &mut state).await;
        if filed > 0 {
            debug!(versions = filed, "kept versions of changes made here");
        }
    }
}

/// Every few seconds, wake the work that waits for free space in a folder
/// whose file system now has room for at least one of its files beyond
/// the minimum kept (see [`exec::MinFree`]): a file blocked by a full disk
/// lands within seconds of space being freed.
pub(super) async fn wake_when_space_frees(s: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        every.tick().await;
        let waiting = lock(&s.engine).waiting_for_space();
        if waiting.is_empty() {
            continue;
        }
        let s2 = s.clone();
        let roomy: Vec<String> = tokio::task::spawn_blocking(move || {
            waiting
                .into_iter()
                .filter(|(folder, least)| {
                    exec::root_of(&s2, folder)
                        .ok()
                        .and_then(|root| exec::room_beyond_minimum(&root, &s2.min_free))
                        .is_some_and(|room| room >= *least)
                })
                .map(|(folder, _)| folder)
                .collect()
        })
        .await
        .unwrap_or_default();
        let now = Instant::now();
        let mut engine = lock(&s.engine);
        for folder in roomy {
            let woken = engine.retry_blocked(
                &folder,
                |c| matches!(c, crate::sync::Cause::NoSpace { .. }),
                now,
            );
            if woken > 0 {
                info!(%folder, files = woken, "space was freed; trying the files that did not fit");
            }
        }
    }
}

/// Remove the versions each folder's retention policy no longer keeps
/// (every version for `keep` when a folder has none): at start, then
/// hourly.
pub(super) async fn prune_trash_hourly(s: Arc<Shared>, keep: Duration) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        let dropped = s.partials.prune(Instant::now(), Duration::from_secs(3600));
        if dropped > 0 {
            info!(
                files = dropped,
                "deleted unfinished downloads left alone an hour"
            );
        }
        let folders = folder::list(&lock(&s.store)).unwrap_or_default();
        let s = s.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let now =
                crate::core::Clock::wall(&crate::core::SystemClock).as_nanos() / 1_000_000_000;
            let days = (keep.as_secs() / 86_400).max(1) as u32;
            for f in folders {
                // Each folder's policy (`folder versions`), else `keep`.
                if let Err(e) =
                    super::history::apply_retention(&s.store, &f, days, now * 1_000_000_000)
                {
                    warn!(folder = %f.id, error = %e, "cannot remove old versions");
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Seq;

    #[test]
    fn quiet_means_no_file_change_for_the_whole_period() {
        let t = Instant::now();
        let at = |s| t + Duration::from_secs(s);
        // Files change at sequences 6 and 9; other writes come between.
        // What the store says at sequence `now`:
        let files = |now: u64| move |since: Seq| [6, 9].iter().any(|s| *s > since.0 && *s <= now);
        let mut q = Quiet::default();
        assert!(
            !q.long_enough(Seq(5), t, QUIET_FOR_COMPACTION, files(5)),
            "a first look knows no past"
        );
        assert!(
            !q.long_enough(Seq(6), at(10), QUIET_FOR_COMPACTION, files(6)),
            "a file changed"
        );
        assert!(!q.long_enough(Seq(7), at(40), QUIET_FOR_COMPACTION, files(7)));
        assert!(
            q.long_enough(Seq(8), at(70), QUIET_FOR_COMPACTION, files(8)),
            "7 and 8 were no file"
        );
        assert!(
            !q.long_enough(Seq(9), at(80), QUIET_FOR_COMPACTION, files(9)),
            "a file changed again"
        );
        assert!(!q.long_enough(Seq(9), at(130), QUIET_FOR_COMPACTION, files(9)));
        assert!(q.long_enough(Seq(10), at(140), QUIET_FOR_COMPACTION, files(10)));
    }

    #[test]
    fn the_cache_is_given_back_once_per_stillness_after_a_change() {
        let t = Instant::now();
        let at = |s| t + Duration::from_secs(s);
        let mut still = Still::default();
        assert!(!still.due(Seq(3), t), "a first look knows no past");
        assert!(!still.due(Seq(3), at(2)), "still for 2 s only");
        assert!(!still.due(Seq(4), at(6)), "a change");
        assert!(!still.due(Seq(4), at(8)));
        assert!(still.due(Seq(4), at(9)), "still for 3 s");
        still.released(Seq(4));
        assert!(!still.due(Seq(4), at(30)), "nothing changed since");
        assert!(!still.due(Seq(5), at(31)));
        assert!(!still.due(Seq(5), at(33)));
        assert!(still.due(Seq(5), at(34)), "changed, then still again");
    }
}
