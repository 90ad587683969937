//! Housekeeping a running node does on a timer: deleting unfinished
//! downloads no longer wanted, waking work that waited for free space,
//! gathering the versions local edits replaced, writing the chunk places
//! once changes pause, and emptying old trash. Each task only asks or
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
/// for [`exec::QUIET`] (see [`exec::ChunkIndex::flush_when_quiet`]): the
/// next change then does not wait for that write. Never with the store's
/// lock; a lookup in progress is not waited for.
pub(super) async fn flush_chunk_places_when_quiet(s: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let s2 = s.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(mut chunks) = s2.chunks.try_lock() {
                chunks.flush_when_quiet();
            }
        })
        .await;
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
