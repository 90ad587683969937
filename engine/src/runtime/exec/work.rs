//! Carrying out one piece of the engine's file work, and accounting for it
//! ending (done, or failed and to be retried).

use super::*;

/// Carry out one Place or Remove (a small file's place goes the way of a
/// batch, [`run_small`]).
pub async fn run(s: Arc<Shared>, work: Action) {
    if is_small_place(&work) {
        return run_small(s, vec![work]).await;
    }
    let (folder_id, path) = match &work {
        Action::Place { folder, path, .. } | Action::Remove { folder, path, .. } => {
            (folder.clone(), path.clone())
        }
        Action::Send { .. } => return,
    };
    let result = match work {
        Action::Place {
            folder,
            path,
            need,
            expect,
        } => place(&s, &folder, &path, need, expect).await,
        Action::Remove {
            folder,
            path,
            need,
            expect,
        } => {
            submit(
                &s,
                Commit {
                    folder,
                    path,
                    need,
                    expect,
                    step: Step::Remove,
                    written: None,
                },
            )
            .await
        }
        Action::Send { .. } => Ok(Vec::new()),
    };
    let mut actions = Vec::new();
    finished(&s, &folder_id, &path, result, &mut actions);
    s.report(actions);
}

/// Account for one piece of file work that ended: done (its follow-up
/// actions join `actions`), or failed and to be retried.
pub(super) fn finished(
    s: &Shared,
    folder: &str,
    path: &str,
    result: Result<Vec<Action>, WorkError>,
    actions: &mut Vec<Action>,
) {
    match result {
        Ok(more) => {
            s.partials.forget(folder, path);
            s.files_done
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            actions.extend(more);
        }
        Err(e) => {
            debug!(%folder, %path, error = %e, "file work will be retried");
            if e.cause == Cause::ChangedOnDisk {
                lock(&s.look_again)
                    .entry(folder.to_string())
                    .or_default()
                    .insert(path.to_string());
            }
            lock(&s.engine).failed(folder, path, Instant::now(), &e);
        }
    }
}

/// A folder's root if it is cached (no store lock taken).
pub(super) fn cached_root(s: &Shared, folder_id: &str) -> Option<PathBuf> {
    lock(&s.roots).get(folder_id).cloned()
}

/// The root of `folder_id`: cached, or read from the store (its lock taken).
pub fn root_of(s: &Shared, folder_id: &str) -> Result<PathBuf, WorkError> {
    if let Some(root) = cached_root(s, folder_id) {
        return Ok(root);
    }
    let root = folder::get(&lock(&s.store), folder_id)
        .map(|f| f.path)
        .map_err(|e| WorkError::new(Cause::Io, format!("folder {folder_id}: {e}")))?;
    lock(&s.roots).insert(folder_id.to_string(), root.clone());
    Ok(root)
}

/// The root of `folder_id`: cached, or read from the store on a blocking
/// thread — the store's lock may be held through a commit batch's flush,
/// and the async workers carry every connection.
pub(super) async fn root_async(s: &Arc<Shared>, folder_id: &str) -> Result<PathBuf, WorkError> {
    if let Some(root) = cached_root(s, folder_id) {
        return Ok(root);
    }
    let (s2, folder2) = (s.clone(), folder_id.to_string());
    tokio::task::spawn_blocking(move || root_of(&s2, &folder2))
        .await
        .map_err(|_| stopping())?
}

/// Carry out a Place of anything but a small file (see [`run_small`]).
pub(super) async fn place(
    s: &Arc<Shared>,
    folder_id: &str,
    path: &str,
    need: Need,
    expect: Option<FileRecord>,
) -> Result<Vec<Action>, WorkError> {
    match need.record.kind {
        EntryKind::Dir => {
            return submit(s, Commit::place(folder_id, path, need, expect, None)).await;
        }
        EntryKind::Symlink => {
            // Symlinks are recorded, never created from a peer's say-so.
            let mut store = lock(&s.store);
            lock(&s.engine)
                .abandon(&mut store, folder_id, path)
                .map_err(unrecorded)?;
            info!(folder = %folder_id, %path, "a peer's symlink is not recreated here");
            return Ok(Vec::new());
        }
        EntryKind::Value => {
            // The sync engine refuses such records for folders; never a file.
            let mut store = lock(&s.store);
            lock(&s.engine)
                .abandon(&mut store, folder_id, path)
                .map_err(unrecorded)?;
            return Err(WorkError::new(
                Cause::Refused,
                "an application value is not a file",
            ));
        }
        EntryKind::File => {}
    }
    let mut need = need;
    if need.record.chunks_elided() {
        need.record.chunks = chunk_list(s, folder_id, path, &need).await?;
    }
    let mut dest = Dest::of(root_async(s, folder_id).await?, path, s.home.as_deref())?;
    SpaceBudget::default().take(s, &dest.root, path, bytes_to_write(&need.record))?;
    let resume = s.partials.take(folder_id, path, need.record.hash);
    if let Some(tmp) = &resume {
        dest.tmp = tmp.clone();
    }
    let (d, folder2, path2) = (dest.clone(), folder_id.to_string(), path.to_string());
    let prepared = tokio::task::spawn_blocking(move || d.prepare(&folder2, &path2))
        .await
        .map_err(|_| stopping())
        .and_then(|r| r);
    if let Err(e) = prepared {
        if resume.is_some() {
            let _ = std::fs::remove_file(&dest.tmp);
        }
        return Err(e);
    }
    let tmp = dest.tmp.clone();
    // The record is shared with the assembly's jobs, not copied (a large
    // file's chunk list is megabytes), and taken back once they are done.
    let sources = sources_of(&lock(&s.peers), &need);
    let record = Arc::new(need.record);
    let assembled = {
        let _permit = s.transfers.acquire().await;
        assemble(s, record.clone(), sources, &dest, resume.is_some()).await
    };
    need.record = Arc::try_unwrap(record).unwrap_or_else(|shared| (*shared).clone());
    if let Err(e) = assembled {
        if e.resumable {
            s.partials
                .keep(folder_id, path, tmp, need.record.hash, Instant::now());
        } else {
            let _ = std::fs::remove_file(&tmp);
        }
        return Err(e.why);
    }
    let result = submit(
        s,
        Commit::place(folder_id, path, need, expect, Some(tmp.clone())),
    )
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
