//! Applying a folder's retention policy ([`crate::index::retention`]):
//! the versions it no longer keeps leave the history and lose their bytes
//! (a file of the folder's own trash at once; in the version store, what
//! no remaining version shares). Part of the history
//! module.

use super::*;

/// Apply folder `config`'s retention policy at `now` (ns since the epoch;
/// `default_days` when no policy was set): each kept version the policy
/// no longer keeps has its bytes removed from the trash and leaves the
/// history, oldest first under a cap; trash files older than the policy
/// keeps anything, recorded or not, go too. Returns how many versions went.
pub fn apply_retention(
    store: &Mutex<crate::store::Store>,
    config: &FolderConfig,
    default_days: u32,
    now: u64,
) -> Result<usize, HistoryError> {
    use crate::index::retention::{self, Cap, Item, Versions};
    let (policy, all) = {
        let st = crate::core::lock(store);
        let policy = retention::get(&st, &config.id)?
            .unwrap_or_else(|| retention::Policy::days(default_days));
        (policy, kept::all(&st, &config.id)?)
    };
    let cap = match policy.cap {
        Some(Cap::Bytes(b)) => Some(b),
        Some(Cap::Percent(p)) => crate::runtime::exec::disk_space(&config.path)
            .ok()
            .map(|(_, total)| total / 100 * u64::from(p)),
        None => None,
    };
    let items: Vec<Item<'_>> = all
        .iter()
        .map(|(path, k)| Item {
            path,
            kept_at: k.kept_at.0,
            size: k.record.size,
        })
        .collect();
    let keep = retention::plan(now, &items, &policy, cap);
    let trash = Path::new(META_DIR).join(TRASH_DIR);
    let mut gone = Vec::new();
    for ((path, k), kept) in all.iter().zip(&keep) {
        if *kept {
            continue;
        }
        // Only ever a file of the folder's own trash; the version store's
        // bytes go below, once nothing recorded needs them.
        if let Stored::File(at) = &k.stored
            && Path::new(at).starts_with(&trash)
            && !at.split('/').any(|p| p == "..")
        {
            match std::fs::remove_file(config.path.join(at)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(format!("remove an old version of {path}"))(e)),
            }
        }
        gone.push(format!(
            "{}{:020}",
            kept::prefix(&config.id, path),
            k.kept_at.0
        ));
    }
    if !gone.is_empty() {
        let ops = gone
            .iter()
            .map(|key| crate::store::Op::Forget {
                ns: kept::HISTORY_NS.into(),
                key: key.clone(),
            })
            .collect();
        crate::core::lock(store)
            .apply_batch(ops)
            .map_err(FolderError::from)?;
        tracing::info!(folder = %config.id, versions = gone.len(), policy = %policy, "old versions removed (oldest first)");
    }
    {
        // Holding the store: no version is filed away meanwhile.
        let st = crate::core::lock(store);
        let (files, bytes) =
            crate::runtime::exec::versions::collect_garbage(&st, &config.path, &config.id)
                .map_err(io("empty the version store"))?;
        if files > 0 {
            tracing::info!(folder = %config.id, files, bytes, "the version store let go of bytes no kept version needs");
        }
    }
    // What the policy keeps nothing of: unrecorded trash files too.
    let span_days = match policy.versions {
        Versions::Days(d) => d,
        Versions::Staggered => 365,
    };
    let secs = now / 1_000_000_000;
    crate::runtime::exec::prune_trash(
        &config.path,
        std::time::Duration::from_secs(u64::from(span_days) * 86_400),
        secs,
    )
    .map_err(io("empty the old trash"))?;
    Ok(gone.len())
}
