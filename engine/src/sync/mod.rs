//! # sync — deciding what should be sent and what should change
//!
//! "Sync decides what should be sent. Transport sends it." The
//! [`SyncEngine`] is sans-IO: connection events, peer messages and clock
//! ticks go in; messages to send and file work to do come out. Its durable
//! state lives in the [`Store`] it is handed, next to the file index, so it
//! recovers like everything else:
//!
//! * **Index exchange by sequence.** Every index entry carries the local
//!   WAL sequence of its last change. A peer asks "folder F, everything
//!   after your sequence N" and gets pages of records with the sequence the
//!   page reaches; it stores that cursor *in the same WAL batch* as what it
//!   did with the records, so after a crash or a long absence it asks for
//!   exactly the delta — never the whole index, never a gap. Requests are
//!   idempotent, so lost, duplicated and reordered messages are harmless: a
//!   request with no answer is retried with exponential backoff and jitter,
//!   and every folder is re-polled now and then as a safety net.
//! * **Decisions** come from [`resolve::decide`] (version vectors; a
//!   deterministic winner for conflicts; a kept conflict copy).
//! * **Needs.** A record that requires file work (fetch content, remove a
//!   file, keep a conflict copy) is stored in the `sync.need` namespace
//!   before the cursor moves past it, and handed to the executor as an
//!   [`Action::Place`] or [`Action::Remove`]. The executor reports back
//!   through [`SyncEngine::completed`] (which records the new index entry
//!   and drops the need in one batch) or [`SyncEngine::failed`] with a
//!   typed [`WorkError`]: retried with backoff, or — a full disk, a denied
//!   permission — held until something changes (see `failure.rs`). After
//!   a restart every stored need is handed out again. At most
//!   [`SyncConfig::work_window`] files' work is held in memory; the rest
//!   waits in the store and is taken in as that drains (`window.rs`).
//! * **Paths from peers** pass [`crate::core::path::validate`]; a hostile one
//!   (absolute, `..`, NUL, …) is refused, logged and counted, and the rest
//!   of the page is still used.

mod codec;
mod exchange;
mod failure;
mod guard;
mod held;
mod membership;
mod messages;
mod receive_only;
pub mod resolve;
mod types;
mod window;
mod work;

pub use codec::DecodeError;
pub use failure::{Cause, WorkError};
pub use messages::*;
pub use receive_only::{RECEIVE_ONLY_NS, baseline};
pub use types::{DIFFERS_NS, differs_tally};
use work::DirEffect;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::core::{Causality, ContentHash, NodeId, VersionVector};
use crate::index::values::{self, APP_SPACE};
use crate::index::{self, EntryKind, FileRecord, members};
use crate::store::{Op, Store, StoreError, ns};
use resolve::{Decision, Probe, copy_target};

/// Namespace of index cursors: key `<peer hex>/<folder>`, value: the
/// peer's sequence (u64 LE) up to which its records have been taken in.
pub const CURSOR_NS: &str = "sync.cursor";
/// Namespace of pending file work: key `<folder>/<path>`, value: [`Need`].
pub const NEED_NS: &str = "sync.need";
/// Namespace of conflicting records this node's version beat: key
/// `<folder>/<path>` NUL `<peer hex>`, value: (the peer, its [`FileRecord`]). The nodes holding
/// the losing content settle such a conflict; but if the local version
/// changes before they do, the held record is decided again, so a conflict
/// never waits on a decision nobody will make.
pub const HELD_NS: &str = "sync.held";
/// The bytes of held app-space values (same keys as [`HELD_NS`]): a held
/// value may win later, and its bytes are not sent again.
pub const HELD_VALUE_NS: &str = "sync.held.value";

/// Inline value bytes per index page of the app space (so a page stays
/// well under the 1 MiB control frame; one value is at most 256 KiB).
const PAGE_VALUE_BYTES: usize = 512 * 1024;

/// Bytes of records per index page (paths and encoded records, a chunk
/// list counted at most [`MAX_LISTED_BYTES`]): with an app page's values
/// ([`PAGE_VALUE_BYTES`]) a page stays under the 1 MiB control frame
/// however large the folder's files are.
const PAGE_RECORD_BYTES: usize = 384 * 1024;

/// A file record of more chunks than this (a file of ~64 MiB or more) is
/// announced without its chunk list ([`FileRecord::chunks_elided`]); the
/// node that fetches the file asks a peer for the list on a bulk stream
/// (`transport::wire::ChunkListRequest`). 1,024 chunks are ~44 KiB.
pub const MAX_LISTED_CHUNKS: usize = 1024;

/// The smallest file a peer may announce without its chunk list: one of
/// more than [`MAX_LISTED_CHUNKS`] chunks, none of which (but the last) a
/// chunk list may hold under [`MIN_LISTED_CHUNK`](crate::core::MIN_LISTED_CHUNK).
const MIN_ELIDED_SIZE: u64 = MAX_LISTED_CHUNKS as u64 * crate::core::MIN_LISTED_CHUNK;

/// The most bytes a record announced in a page may take: a record with
/// [`MAX_LISTED_CHUNKS`] chunks, a long path, a long link target and
/// a version vector of many devices.
const MAX_LISTED_BYTES: usize = 64 * 1024;

#[derive(Debug)]
struct Inflight {
    since: u64,
    due: Instant,
    attempts: u32,
}

#[derive(Debug, Default)]
struct PeerSync {
    /// Folders the peer shares (that we share too).
    folders: BTreeSet<String>,
    /// Whether its folder list has arrived (else ours is re-sent).
    heard: bool,
    /// When ours was last sent.
    told: Option<Instant>,
    /// Outstanding index requests per folder.
    requests: BTreeMap<String, Inflight>,
    /// Last time each folder was asked for.
    polled: BTreeMap<String, Instant>,
    /// Folders hinted while a request was out: ask again once it is answered.
    rehint: BTreeSet<String>,
}

#[derive(Debug)]
struct Work {
    /// When it may be handed out (again).
    due: Instant,
    attempts: u32,
    /// Handed out and not yet reported.
    out: bool,
    /// Why the last attempt failed.
    why: Option<WorkError>,
    /// Bytes of the file it places (set when handed out).
    size: u64,
    /// When this node first heard of it (a removal waits
    /// [`guard::REMOVAL_SETTLE`] from then).
    since: Instant,
    /// A removal the deletion guard holds back: it waits for a person,
    /// not for the window (see `window.rs`), so it does not count in it.
    held: bool,
}

impl Work {
    /// Work first heard of `now`, due at once.
    fn new(now: Instant) -> Work {
        Work {
            due: now,
            attempts: 0,
            out: false,
            why: None,
            size: 0,
            since: now,
            held: false,
        }
    }
}

/// The sync state machine of one node.
#[derive(Debug)]
pub struct SyncEngine {
    node: NodeId,
    config: SyncConfig,
    rng: fastrand::Rng,
    /// Iterated in id order, so a seeded run is replayable.
    peers: BTreeMap<NodeId, PeerSync>,
    /// File work by (folder, path).
    work: BTreeMap<(String, String), Work>,
    /// The keys of `work` that create a directory: handed out before
    /// anything else, since the paths inside wait for them.
    dir_work: BTreeSet<(String, String)>,
    /// The keys of `work` that remove a directory: handed out only when
    /// no work inside it is left.
    dir_removals: BTreeSet<(String, String)>,
    /// How many of `work` are handed out.
    out_count: usize,
    /// How many of `work` are removals the deletion guard holds.
    held_count: usize,
    /// The store key (`<folder>/<path>`) from which needs may be kept in
    /// the store only, the window of work in memory having been full
    /// ([`SyncConfig::work_window`]); every need before it is in `work`
    /// or done. `None`: every need is in `work`.
    backlog_from: Option<String>,
    /// Folders whose index changed through completed work, with the last
    /// sequence changed: peers are hinted at the next tick once the log
    /// has made that sequence durable (one hint for a burst of files, not
    /// one each).
    dirty: BTreeMap<String, u64>,
    /// Paths refused from peers (hostile or invalid), counted for status.
    pub refused_paths: u64,
    /// Requests, hints and pages refused because the folder is not shared
    /// with the peer that sent them, counted for status.
    pub refused_requests: u64,
    /// The (peer, folder) pairs whose refusal was logged: once each.
    refusals_logged: HashSet<(NodeId, String)>,
    /// Folders peers share with this node that it does not have, and who
    /// offers each (see [`SyncEngine::offers`]).
    offered: BTreeMap<String, BTreeSet<NodeId>>,
    /// Receive-only folders' locally changed paths (see `receive_only.rs`).
    local_changes: HashMap<String, receive_only::LocalChanges>,
    /// Folders none of whose work is handed out: their root marker is
    /// gone (see `guard.rs`).
    halted: HashSet<String>,
}

fn held_key(file_key: &str, peer: NodeId) -> String {
    format!("{file_key}\0{}", peer.to_hex())
}

fn cursor_key(peer: NodeId, folder: &str) -> String {
    format!("{}/{folder}", peer.to_hex())
}

/// Forget how far this node has read each peer's log (the sync cursors),
/// so that every peer sends its whole index again at the next exchange:
/// after a store repair lost records, what they said may be among them.
/// Returns how many cursors there were.
pub fn forget_cursors(store: &mut Store) -> Result<usize, crate::store::StoreError> {
    let ops: Vec<crate::store::Op> = store
        .scan_prefix(CURSOR_NS, "")
        .map(|(key, _)| crate::store::Op::Forget {
            ns: CURSOR_NS.into(),
            key: key.to_string(),
        })
        .collect();
    let n = ops.len();
    if n > 0 {
        store.apply_batch(ops)?;
    }
    Ok(n)
}

/// The store's side of [`SyncEngine::unshared`], for a node whose engine
/// is not running too: forget the cursor of `peer`'s index of `folder`,
/// drop the needs only `peer` could supply, and take `peer` off the
/// sources of the rest. Returns the paths whose need was dropped.
pub fn forget_peer_folder(
    store: &mut Store,
    folder: &str,
    peer: NodeId,
) -> Result<Vec<String>, StoreError> {
    let (origin, ts) = (store.config().node, store.wall_time());
    let mut ops = vec![Op::Forget {
        ns: CURSOR_NS.into(),
        key: cursor_key(peer, folder),
    }];
    let mut dropped = Vec::new();
    for (key, e) in store.scan_prefix(NEED_NS, &format!("{folder}/")) {
        let Some(mut need) = e
            .value
            .as_deref()
            .and_then(|v| postcard::from_bytes::<Need>(v).ok())
        else {
            continue;
        };
        if !need.sources.contains(&peer) {
            continue;
        }
        need.sources.retain(|s| *s != peer);
        if need.sources.is_empty() {
            ops.push(Op::Forget {
                ns: NEED_NS.into(),
                key: key.to_string(),
            });
            dropped.push(key[folder.len() + 1..].to_string());
        } else {
            ops.push(Op::Put {
                ns: NEED_NS.into(),
                key: key.to_string(),
                value: encode(&need),
                origin,
                timestamp: ts,
            });
        }
    }
    store.apply_batch(ops)?;
    Ok(dropped)
}

/// Drop the tombstones of the engine's own bookkeeping (needs and held
/// records). They are never sent to a peer; releases before this one left
/// one per file ever synced, in memory and in every snapshot. Done once
/// at start when any is found; returns whether a purge was logged.
pub fn purge_bookkeeping_tombstones(store: &mut Store) -> Result<bool, crate::store::StoreError> {
    let mut purged = false;
    for ns in [NEED_NS, HELD_NS, HELD_VALUE_NS] {
        if store.scan_prefix(ns, "").any(|(_, e)| e.is_tombstone()) {
            store.purge_tombstones(ns, crate::core::Timestamp(u64::MAX))?;
            purged = true;
        }
    }
    Ok(purged)
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap_or_default()
}

impl SyncEngine {
    /// An engine for `node`; `seed` drives retry jitter (fixed in tests).
    pub fn new(node: NodeId, config: SyncConfig, seed: u64) -> SyncEngine {
        SyncEngine {
            node,
            config,
            rng: fastrand::Rng::with_seed(seed),
            peers: BTreeMap::new(),
            work: BTreeMap::new(),
            dir_work: BTreeSet::new(),
            dir_removals: BTreeSet::new(),
            out_count: 0,
            held_count: 0,
            backlog_from: None,
            dirty: BTreeMap::new(),
            refused_paths: 0,
            refused_requests: 0,
            refusals_logged: HashSet::new(),
            offered: BTreeMap::new(),
            local_changes: HashMap::new(),
            halted: HashSet::new(),
        }
    }

    /// Load the stored needs, so unfinished file work resumes after a
    /// restart: as many as the window holds, in path order, the rest as
    /// the window drains (see `SyncEngine::take_in_backlog`).
    pub fn resume(&mut self, store: &Store, now: Instant) {
        self.backlog_from = Some(String::new());
        self.take_in_backlog(store, now);
    }

    /// Advance time: re-send unanswered requests (backoff with jitter),
    /// poll folders not asked for a while, hand out due file work.
    pub fn tick(&mut self, store: &mut Store, now: Instant) -> Result<TickReport, SyncError> {
        let mut report = TickReport::default();
        // Work of a folder no longer shared here is dropped with its need.
        let known: HashSet<String> = index::list(store)?.into_iter().map(|f| f.id).collect();
        let gone: Vec<(String, String)> = self
            .work
            .keys()
            .filter(|(f, _)| !known.contains(f))
            .cloned()
            .collect();
        for (f, p) in gone {
            store.apply(Op::Forget {
                ns: NEED_NS.into(),
                key: index::file_key(&f, &p),
            })?;
            self.remove_work(&(f, p));
            report.pruned += 1;
        }
        let mut asks: Vec<(NodeId, String, bool)> = Vec::new();
        let (min, max, poll) = (
            self.config.retry_min,
            self.config.retry_max,
            self.config.poll_every,
        );
        let mut tell = Vec::new();
        for (peer, p) in self.peers.iter_mut() {
            // Our folder list (or its answer) was lost: say it again.
            if !p.heard && p.told.is_none_or(|t| now.duration_since(t) >= min * 4) {
                tell.push(*peer);
            }
            for (folder, r) in p.requests.iter_mut() {
                if r.due <= now {
                    r.attempts += 1;
                    asks.push((*peer, folder.clone(), true));
                }
            }
            for folder in &p.folders {
                let last = p.polled.get(folder).copied();
                if !p.requests.contains_key(folder)
                    && last.is_none_or(|t| now.duration_since(t) >= poll)
                {
                    asks.push((*peer, folder.clone(), false));
                }
            }
        }
        for peer in tell {
            if let Ok(a) = self.folders_message(store, peer, true, now) {
                report.retried += 1;
                report.actions.push(a);
            }
        }
        for (peer, folder, retry) in asks {
            if let Some(Action::Send { peer, message }) = self.request(store, peer, &folder, now) {
                if retry {
                    report.retried += 1;
                    // Back off: the next timeout doubles with each attempt.
                    if let Some(r) = self
                        .peers
                        .get_mut(&peer)
                        .and_then(|p| p.requests.get_mut(&folder))
                    {
                        let base = (min * 4).saturating_mul(1 << r.attempts.min(16)).min(max);
                        let jitter =
                            Duration::from_millis(self.rng.u64(..=base.as_millis() as u64 / 2));
                        r.due = now + base + jitter;
                    }
                }
                report.actions.push(Action::Send { peer, message });
            }
        }
        let durable = store.durable_seq().0;
        let due: Vec<String> = self
            .dirty
            .iter()
            .filter(|(_, seq)| **seq <= durable)
            .map(|(f, _)| f.clone())
            .collect();
        for folder in due {
            self.dirty.remove(&folder);
            report.actions.extend(self.local_changed(store, &folder));
        }
        report.actions.extend(self.revisit_held(store, now)?);
        let (work, retried, pruned) = self.due_work(store, now)?;
        report.retried += retried;
        report.pruned += pruned;
        report.actions.extend(work);
        report.batch_size = report.actions.len();
        Ok(report)
    }

    /// Connected peers.
    pub fn peers(&self) -> impl Iterator<Item = &NodeId> {
        self.peers.keys()
    }

    /// The node this engine runs for.
    pub fn node(&self) -> NodeId {
        self.node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A home from an earlier release kept a tombstone per finished need:
    /// they go once, at start, and the live needs stay.
    #[test]
    fn old_bookkeeping_tombstones_are_purged_once_and_live_needs_stay() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open_dir(crate::store::StoreConfig::new(dir.path())).unwrap();
        for i in 0..10 {
            store.put(NEED_NS, &format!("docs/f{i}"), vec![1]).unwrap();
        }
        for i in 0..7 {
            store.remove(NEED_NS, &format!("docs/f{i}")).unwrap();
        }
        store.put(HELD_NS, "docs/x\0peer", vec![2]).unwrap();
        store.remove(HELD_NS, "docs/x\0peer").unwrap();
        assert!(purge_bookkeeping_tombstones(&mut store).unwrap());
        assert_eq!(store.scan_prefix(NEED_NS, "").count(), 3);
        assert_eq!(store.scan_prefix(HELD_NS, "").count(), 0);
        assert!(
            !purge_bookkeeping_tombstones(&mut store).unwrap(),
            "nothing left to purge"
        );
    }
}
