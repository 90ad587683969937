//! Opening a store: the directory's lock, the index opened (or made, or
//! migrated from an older home's snapshot) and the WAL replayed after it.
//! It never writes state the log does not hold.

use std::path::Path;
use std::sync::Arc;

use super::*;

/// Take the exclusive lock on `dir/LOCK` (creating both if need be), held
/// for as long as the file returned stays open: a second process gets
/// [`StoreError::Locked`].
pub(crate) fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    let path = dir.join("LOCK");
    std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("open", &path))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err("lock", &path)(e)),
    }
}

impl Store {
    /// Open the store in `config.dir` on the real file system, with the
    /// system clock, holding an exclusive lock on `config.dir/LOCK` for as
    /// long as the store is open: a second process gets
    /// [`StoreError::Locked`] instead of a second writer on the same log.
    pub fn open_dir(config: StoreConfig) -> Result<(Store, StoreRecovery), StoreError> {
        let lock = lock_dir(&config.dir)?;
        let (mut store, recovery) =
            Store::open(config, Arc::new(StdStorage), Arc::new(SystemClock))?;
        store.lock = Some(lock);
        Ok((store, recovery))
    }

    /// Open (or create) the store: open the index, migrate an older home's
    /// snapshot into a new one, replay the WAL after it.
    pub fn open(
        config: StoreConfig,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> Result<(Store, StoreRecovery), StoreError> {
        storage
            .create_dir_all(&config.dir)
            .map_err(io_err("create directory", &config.dir))?;
        let (state, at) =
            state::State::open(storage.as_ref(), &config.index_path(), config.cache_bytes)?;
        let state = Arc::new(state);
        let mut recovery = StoreRecovery {
            checkpoint: at,
            ..StoreRecovery::default()
        };
        let mut base = at.unwrap_or(Seq::ZERO);
        let mut migrated = false;
        if at.is_none() {
            let (newest, fallbacks) = migrate::newest_snapshot(storage.as_ref(), &config)?;
            recovery.snapshot_fallbacks = fallbacks;
            for fallback in &recovery.snapshot_fallbacks {
                tracing::warn!(%fallback, "snapshot unusable, falling back");
            }
            if let Some(snap) = newest {
                base = snap.seq;
                recovery.migrated_snapshot = Some(snap.seq);
                state.load(snap.rows, snap.seq)?;
            }
            migrated = storage
                .list(&config.snapshot_dir())
                .is_ok_and(|names| !names.is_empty());
        }

        let mut applied = base;
        let mut failed: Option<StoreError> = None;
        let mut since_commit = 0u64;
        let wal_config = WalConfig {
            dir: config.wal_dir(),
            durability: config.durability,
            segment_bytes: config.segment_bytes,
        };
        let (wal, wal_report) = Wal::open(
            storage.clone(),
            wal_config,
            clock.clone(),
            base.next(),
            |rec| {
                if rec.seq != applied.next() {
                    return Err(format!(
                        "records {} to {} are in neither the index nor the WAL",
                        applied.next(),
                        Seq(rec.seq.0 - 1)
                    ));
                }
                if rec.kind != OP_RECORD_KIND {
                    return Err(format!("unknown record kind {}", rec.kind));
                }
                let op: Op = postcard::from_bytes(rec.payload)
                    .map_err(|e| format!("operation does not decode: {e}"))?;
                let step = state.apply(rec.seq, op).and_then(|()| {
                    since_commit += 1;
                    if since_commit >= REPLAY_COMMIT_EVERY {
                        since_commit = 0;
                        state.commit(false)
                    } else {
                        Ok(())
                    }
                });
                if let Err(e) = step {
                    let reason = e.to_string();
                    failed = Some(e);
                    return Err(reason);
                }
                applied = rec.seq;
                Ok(())
            },
        )
        .map_err(|e| failed.take().unwrap_or(StoreError::Wal(e)))?;
        if wal.next_seq() != applied.next() {
            return Err(StoreError::Corruption(format!(
                "records {} to {} are in neither the index nor the WAL ({})",
                applied.next(),
                Seq(wal.next_seq().0 - 1),
                recovery.snapshot_fallbacks.join("; ")
            )));
        }
        if let Some(t) = &wal_report.truncated {
            tracing::warn!(segment = %t.segment.display(), offset = t.offset, discarded = t.discarded, "WAL torn tail cut at recovery");
        }
        recovery.wal = wal_report;
        let mut store = Store {
            wal,
            state,
            storage,
            clock,
            config,
            checkpoint_seq: base,
            aside_digest: None,
            holding: false,
            lock: None,
        };
        // The setup kept aside, read once: a checkpoint writes it again
        // only when it changed.
        if !store.config.kept_aside.is_empty()
            && let Ok(Some(found)) = super::aside::read(store.storage.as_ref(), &store.config.dir)
        {
            store.aside_digest = Some(super::aside::digest(&super::aside::body(&found.rows)?));
        }
        // A log holding records the index had made durable already (a
        // process that closed cleanly after a bulk change, such as a first
        // index) is given back now rather than at the next due checkpoint.
        if migrated || recovery.wal.replayed > 0 || at.is_none() || store.log_reclaimable() {
            store.checkpoint()?;
        }
        if migrated {
            migrate::remove_snapshots(store.storage.as_ref(), &store.config)?;
        }
        // A home from before the setup was kept aside (or whose copy does
        // not check out) gets its copy now, not at its next checkpoint
        // (which, at rest, may be far off).
        if store.aside_digest.is_none() {
            let at = store.last_seq();
            store.keep_aside(at);
        }
        Ok((store, recovery))
    }
}
