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
//!   and drops the need in one batch) or [`SyncEngine::failed`] (retried
//!   with backoff). After a restart every stored need is handed out again.
//! * **Paths from peers** pass [`crate::fs::path::validate`]; a hostile one
//!   (absolute, `..`, NUL, …) is refused, logged and counted, and the rest
//!   of the page is still used.

pub mod resolve;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::core::{Causality, ContentHash, NodeId, VersionVector};
use crate::folder::values::{self, APP_SPACE};
use crate::folder::{self, FileRecord};
use crate::fs::scan::EntryKind;
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

/// Messages of the sync protocol (carried on a connection's control stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncMessage {
    /// The folders the sender shares (sent on connect and when they change).
    Folders {
        /// Folder ids.
        ids: Vec<String>,
        /// The sender has not heard the receiver's list yet: answer with yours.
        reply: bool,
    },
    /// "Send me folder `folder`'s records changed after your sequence `since`."
    IndexRequest {
        /// Folder id.
        folder: String,
        /// The sender's cursor for the receiver.
        since: u64,
    },
    /// Records of `folder` whose sequence is in `(since, upto]`.
    IndexPage {
        /// Folder id.
        folder: String,
        /// The request's `since`.
        since: u64,
        /// Highest sequence covered (the next request starts here).
        upto: u64,
        /// (path, record) pairs.
        records: Vec<(String, FileRecord)>,
        /// More pages follow.
        more: bool,
        /// (path, bytes) of each live record of the app space
        /// ([`APP_SPACE`]), whose values travel inline; empty for folders.
        values: Vec<(String, Vec<u8>)>,
    },
    /// "My index of `folder` changed (it reached `seq`)": ask me.
    IndexHint {
        /// Folder id.
        folder: String,
        /// The sender's latest sequence.
        seq: u64,
    },
}

/// What is still to do for one folder (see [`SyncEngine::progress`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FolderProgress {
    /// Files still to fetch, place or remove.
    pub needed_files: u64,
    /// Their bytes (content still to be placed).
    pub needed_bytes: u64,
    /// Waiting their turn.
    pub queued: u64,
    /// Being transferred or committed now.
    pub in_flight: u64,
    /// Failed at least once, waiting for a retry.
    pub failing: u64,
    /// Some of the failing paths, with why.
    pub failing_files: Vec<Failing>,
}

/// A path whose file work failed and waits for a retry (see
/// [`FolderProgress`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failing {
    /// Folder-relative path.
    pub path: String,
    /// Why the last attempt failed.
    pub why: String,
    /// Attempts so far.
    pub attempts: u32,
}

/// Pending file work for one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    /// The record to reach.
    pub record: FileRecord,
    /// Keep the local content under this name first.
    pub conflict_copy: Option<String>,
    /// Peers known to have the content.
    pub sources: Vec<NodeId>,
    /// Set when taking `record` settles a conflict with the local version
    /// given here: on completion the path gets `record`'s content under
    /// the merge of both versions plus one event of this node. `record`
    /// itself stays exactly as the peer announced it, so later records are
    /// compared with what the network knows, not with a private intention.
    pub resolves: Option<VersionVector>,
}

/// File work for the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a message to a peer.
    Send {
        /// The peer.
        peer: NodeId,
        /// The message.
        message: SyncMessage,
    },
    /// Make `path` hold `need.record` (a live entry): keep a conflict copy
    /// of the local content first if asked; fetch what is missing from the
    /// sources; replace the local file only if it still matches `expect`
    /// (the index entry now) — otherwise it changed meanwhile: report
    /// failure and let the scan record it, which makes it a conflict.
    Place {
        /// Folder id.
        folder: String,
        /// Path in the folder.
        path: String,
        /// What to reach.
        need: Need,
        /// The local index entry the disk must still match.
        expect: Option<FileRecord>,
    },
    /// Remove `path` (into the trash) if it still matches `expect`, then
    /// record the deletion `need.record`.
    Remove {
        /// Folder id.
        folder: String,
        /// Path in the folder.
        path: String,
        /// The deletion to reach.
        need: Need,
        /// The local index entry the disk must still match.
        expect: Option<FileRecord>,
    },
}

/// What a [`SyncEngine::tick`] did.
#[derive(Debug, Default)]
pub struct TickReport {
    /// What to do now.
    pub actions: Vec<Action>,
    /// Requests and file work handed out again after a timeout or failure.
    pub retried: usize,
    /// File work dropped because its need was settled meanwhile (a newer
    /// local edit, or the same state reached another way).
    pub pruned: usize,
    /// `actions.len()`.
    pub batch_size: usize,
}

/// Tunables (all durations on the engine's clock).
#[derive(Debug, Clone, Copy)]
pub struct SyncConfig {
    /// Records per index page.
    pub page_records: usize,
    /// First retry delay of an unanswered request or failed file work.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Every shared folder is re-polled this often even with no hint.
    pub poll_every: Duration,
    /// File work handed out at once (the rest waits its turn, so a bulk
    /// sync of many files neither floods the executor nor memory).
    pub max_out: usize,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            page_records: 1000,
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            poll_every: Duration::from_secs(60),
            max_out: 512,
        }
    }
}

/// Errors of the sync layer.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The store failed; nothing of the failed step was recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The folder layer failed.
    #[error(transparent)]
    Folder(#[from] folder::FolderError),
}

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
    why: Option<String>,
}

/// One finished piece of file work, for [`SyncEngine::completed_all`].
#[derive(Debug, Clone)]
pub struct Completed {
    /// Folder id.
    pub folder: String,
    /// Folder-relative path.
    pub path: String,
    /// The need the work carried out.
    pub done: Need,
    /// The need's record with this node's local metadata (what is on disk).
    pub record: FileRecord,
    /// A conflict copy kept beside the file: its path and record.
    pub conflict_copy: Option<(String, FileRecord)>,
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
    /// Folders whose index changed through completed work, with the last
    /// sequence changed: peers are hinted at the next tick once the log
    /// has made that sequence durable (one hint for a burst of files, not
    /// one each).
    dirty: BTreeMap<String, u64>,
    /// Paths refused from peers (hostile or invalid), counted for status.
    pub refused_paths: u64,
}

fn held_key(file_key: &str, peer: NodeId) -> String {
    format!("{file_key}\0{}", peer.to_hex())
}

fn cursor_key(peer: NodeId, folder: &str) -> String {
    format!("{}/{folder}", peer.to_hex())
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
            dirty: BTreeMap::new(),
            refused_paths: 0,
        }
    }

    /// Load the stored needs, so unfinished file work resumes after a restart.
    pub fn resume(&mut self, store: &Store, now: Instant) {
        for (key, entry) in store.list(NEED_NS, "") {
            if let Some(value) = entry.value.as_deref()
                && let Some((f, p)) = key.split_once('/')
            {
                if let Ok(n) = postcard::from_bytes::<Need>(value) {
                    let key = (f.to_string(), p.to_string());
                    self.note_dir_effect(&key, DirEffect::of(&n.record));
                }
                self.work.insert(
                    (f.to_string(), p.to_string()),
                    Work {
                        due: now,
                        attempts: 0,
                        out: false,
                        why: None,
                    },
                );
            }
        }
    }

    /// The folders this node shares (not paused), and the app space,
    /// which every node shares.
    fn local_folders(store: &Store) -> Result<HashSet<String>, SyncError> {
        Ok(folder::list(store)?
            .into_iter()
            .filter(|f| !f.paused)
            .map(|f| f.id)
            .chain([APP_SPACE.to_string()])
            .collect())
    }

    /// A peer connected: tell it our folders.
    pub fn connected(
        &mut self,
        store: &Store,
        peer: NodeId,
        now: Instant,
    ) -> Result<Vec<Action>, SyncError> {
        self.peers.insert(peer, PeerSync::default());
        // Work waiting out a retry delay (typically its transfer broke with
        // the connection this one replaces) has a source again: due now.
        // Its attempt count stays, so a path that keeps failing still
        // backs off.
        for w in self.work.values_mut() {
            if w.attempts > 0 && !w.out {
                w.due = w.due.min(now);
            }
        }
        Ok(vec![self.folders_message(store, peer, true, now)?])
    }

    fn folders_message(
        &mut self,
        store: &Store,
        peer: NodeId,
        reply: bool,
        now: Instant,
    ) -> Result<Action, SyncError> {
        let mut ids: Vec<String> = Self::local_folders(store)?.into_iter().collect();
        ids.sort();
        if let Some(p) = self.peers.get_mut(&peer) {
            p.told = Some(now);
        }
        Ok(Action::Send {
            peer,
            message: SyncMessage::Folders { ids, reply },
        })
    }

    /// This node's folders changed (added, removed, paused): tell every peer.
    pub fn folders_changed(
        &mut self,
        store: &Store,
        now: Instant,
    ) -> Result<Vec<Action>, SyncError> {
        let peers: Vec<NodeId> = self.peers.keys().copied().collect();
        peers
            .into_iter()
            .map(|p| self.folders_message(store, p, true, now))
            .collect()
    }

    /// A peer went away: its outstanding requests are void.
    pub fn disconnected(&mut self, peer: NodeId) {
        self.peers.remove(&peer);
    }

    /// Whether `peer` is connected.
    pub fn is_connected(&self, peer: &NodeId) -> bool {
        self.peers.contains_key(peer)
    }

    fn cursor(store: &Store, peer: NodeId, folder: &str) -> u64 {
        store
            .get(CURSOR_NS, &cursor_key(peer, folder))
            .and_then(|e| e.value.as_deref())
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .map_or(0, u64::from_le_bytes)
    }

    fn request(
        &mut self,
        store: &Store,
        peer: NodeId,
        folder: &str,
        now: Instant,
    ) -> Option<Action> {
        let since = Self::cursor(store, peer, folder);
        let retry_min = self.config.retry_min;
        let p = self.peers.get_mut(&peer)?;
        p.polled.insert(folder.to_string(), now);
        let attempts = p.requests.get(folder).map_or(0, |r| r.attempts);
        p.requests.insert(
            folder.to_string(),
            Inflight {
                since,
                due: now + retry_min * 4,
                attempts,
            },
        );
        Some(Action::Send {
            peer,
            message: SyncMessage::IndexRequest {
                folder: folder.to_string(),
                since,
            },
        })
    }

    /// `folder`'s index changed up to the store's last sequence: hint
    /// peers once that is durable.
    fn mark_dirty(&mut self, store: &Store, folder: String) {
        let seq = store.last_seq().0;
        let mark = self.dirty.entry(folder).or_insert(seq);
        *mark = (*mark).max(seq);
    }

    /// The local index of `folder` changed: hint every peer sharing it.
    /// The hint names the last durable sequence: peers are never told of
    /// (nor sent, see [`SyncEngine::page`]) an entry a crash could still
    /// take back.
    pub fn local_changed(&mut self, store: &Store, folder: &str) -> Vec<Action> {
        let seq = store.durable_seq().0;
        self.peers
            .iter()
            .filter(|(_, p)| p.folders.contains(folder))
            .map(|(peer, _)| Action::Send {
                peer: *peer,
                message: SyncMessage::IndexHint {
                    folder: folder.to_string(),
                    seq,
                },
            })
            .collect()
    }

    /// Handle a message from `peer`.
    pub fn received(
        &mut self,
        store: &mut Store,
        peer: NodeId,
        message: SyncMessage,
        now: Instant,
    ) -> Result<Vec<Action>, SyncError> {
        if !self.peers.contains_key(&peer) {
            // From a connection already gone: ignore (it will be asked again).
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        match message {
            SyncMessage::Folders { ids, reply } => {
                if reply {
                    out.push(self.folders_message(store, peer, false, now)?);
                }
                let ours = Self::local_folders(store)?;
                let shared: BTreeSet<String> =
                    ids.into_iter().filter(|f| ours.contains(f)).collect();
                let sorted: Vec<String> = shared.iter().cloned().collect();
                let mut new = Vec::new();
                if let Some(p) = self.peers.get_mut(&peer) {
                    new = shared.difference(&p.folders).cloned().collect();
                    p.folders = shared;
                    p.heard = true;
                }
                for f in sorted {
                    out.extend(self.request(store, peer, &f, now));
                }
                // Changes indexed before we knew the peer shares these were
                // hinted to no one: hint them now.
                let seq = store.durable_seq().0;
                for folder in new {
                    out.push(Action::Send {
                        peer,
                        message: SyncMessage::IndexHint { folder, seq },
                    });
                }
            }
            SyncMessage::IndexHint { folder, seq } => {
                let shares = self
                    .peers
                    .get(&peer)
                    .is_some_and(|p| p.folders.contains(&folder));
                let behind = Self::cursor(store, peer, &folder) < seq;
                let asking = self
                    .peers
                    .get(&peer)
                    .is_some_and(|p| p.requests.contains_key(&folder));
                if shares && behind && !asking {
                    out.extend(self.request(store, peer, &folder, now));
                } else if shares
                    && behind
                    && let Some(p) = self.peers.get_mut(&peer)
                {
                    // The answer under way may predate this change.
                    p.rehint.insert(folder);
                }
            }
            SyncMessage::IndexRequest { folder, since } => {
                if Self::local_folders(store)?.contains(&folder) {
                    out.push(Action::Send {
                        peer,
                        message: self.page(store, &folder, since),
                    });
                }
            }
            SyncMessage::IndexPage {
                folder,
                since,
                upto,
                records,
                more,
                values,
            } => {
                let expected = self
                    .peers
                    .get(&peer)
                    .and_then(|p| p.requests.get(&folder))
                    .map(|r| r.since);
                let cursor = Self::cursor(store, peer, &folder);
                // Only the answer to the outstanding request, from where we
                // stand: a late duplicate or a reordered page is dropped
                // (what it holds is asked for again).
                if expected == Some(since) && since == cursor && upto >= since {
                    self.take_page(store, peer, &folder, upto, records, values, now, &mut out)?;
                    let mut again = more;
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.requests.remove(&folder);
                        again |= p.rehint.remove(&folder);
                    }
                    if again {
                        out.extend(self.request(store, peer, &folder, now));
                    }
                }
            }
        }
        Ok(out)
    }

    /// One page of `folder`'s records changed after `since`: only those
    /// the log has made durable — a record a crash could still take back
    /// would leave the peer with a sequence this node may reuse.
    fn page(&self, store: &Store, folder: &str, since: u64) -> SyncMessage {
        let durable = store.durable_seq().0;
        let prefix = format!("{folder}/");
        // In sequence order straight from the store's by-version index: a
        // page costs its own records, not a walk of the whole index (which
        // made a large index sent page by page quadratic). Only the page's
        // own records are decoded.
        let mut later = store
            .changed_since(ns::FILES, crate::core::Seq(since))
            .take_while(|(_, e)| e.version.0 <= durable)
            .filter_map(|(k, e)| {
                Some((
                    e.version.0,
                    k.strip_prefix(prefix.as_str())?,
                    e.value.as_deref()?,
                ))
            })
            .peekable();
        let mut changed: Vec<(u64, String, FileRecord)> = Vec::new();
        while changed.len() < self.config.page_records {
            let Some((seq, path, value)) = later.next() else {
                break;
            };
            if let Ok(rec) = postcard::from_bytes::<FileRecord>(value) {
                changed.push((seq, path.to_string(), rec));
            }
        }
        let unread = later.peek().is_some();
        // App values travel inline: a page also ends at a byte budget
        // (always holding at least one record).
        let mut values = Vec::new();
        let mut take = changed.len();
        if folder == APP_SPACE {
            let mut bytes = 0;
            for (i, (_, path, rec)) in changed.iter().take(take).enumerate() {
                if rec.deleted {
                    continue;
                }
                let value = values::get(store, path).unwrap_or_default();
                if i > 0 && bytes + value.len() > PAGE_VALUE_BYTES {
                    take = i;
                    break;
                }
                bytes += value.len();
                values.push((path.clone(), value.to_vec()));
            }
        }
        let more = unread || changed.len() > take;
        changed.truncate(take);
        // Nothing changed: the cursor may still move to where the index is,
        // so the next request does not look at the same range again.
        let upto = if more {
            changed.last().map_or(since, |c| c.0)
        } else {
            durable.max(since)
        };
        SyncMessage::IndexPage {
            folder: folder.to_string(),
            since,
            upto,
            records: changed.into_iter().map(|(_, p, r)| (p, r)).collect(),
            more,
            values,
        }
    }

    /// The local state of a path: the need being worked on, else the index entry.
    /// The work still wanted for `path` of `folder`, if any.
    pub fn need(store: &Store, folder: &str, path: &str) -> Option<Need> {
        Self::local_state(store, folder, path).0
    }

    fn local_state(store: &Store, folder: &str, path: &str) -> (Option<Need>, Option<FileRecord>) {
        let key = folder::file_key(folder, path);
        let need = store
            .get(NEED_NS, &key)
            .and_then(|e| e.value.as_deref())
            .and_then(|v| postcard::from_bytes::<Need>(v).ok());
        (need, folder::record(store, folder, path))
    }

    #[allow(clippy::too_many_arguments)]
    fn take_page(
        &mut self,
        store: &mut Store,
        peer: NodeId,
        folder: &str,
        upto: u64,
        records: Vec<(String, FileRecord)>,
        values: Vec<(String, Vec<u8>)>,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Result<(), SyncError> {
        let app = folder == APP_SPACE;
        let mut inline: std::collections::HashMap<String, Vec<u8>> = values.into_iter().collect();
        let mut app_changed = false;
        let mut ops = Vec::new();
        let mut touched = Vec::new();
        let origin = self.node;
        let ts = store.wall_time();
        let put = |ns: &str, key: String, value: Vec<u8>| Op::Put {
            ns: ns.into(),
            key,
            value,
            origin,
            timestamp: ts,
        };
        for (path, remote) in records {
            let valid = if app {
                values::validate_key(&path).map_err(|e| e.to_string())
            } else {
                crate::fs::path::validate(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        // The agent's own files (trash, temporary files)
                        // are never anyone's to name.
                        if crate::fs::ignore::is_builtin_ignored(&path) {
                            Err(format!("{path:?} is the agent's own file"))
                        } else {
                            Ok(())
                        }
                    })
            };
            let value = if app && !remote.deleted {
                inline.remove(&path)
            } else {
                None
            };
            let problem = match valid {
                Err(e) => Some(e),
                Ok(()) if (remote.kind == EntryKind::Value) != app => {
                    Some("an application value outside the app space, or a file inside it".into())
                }
                Ok(())
                    if !remote.deleted
                        && remote.kind == EntryKind::File
                        && !remote.chunks_tile() =>
                {
                    Some("a file whose chunks do not cover it exactly".into())
                }
                Ok(()) if app && !remote.deleted => match &value {
                    None => Some("a value record without its bytes".into()),
                    Some(v) if Some(ContentHash::of(v)) != remote.hash => {
                        Some("value bytes that do not match the record's hash".into())
                    }
                    Some(_) => None,
                },
                Ok(()) => None,
            };
            if let Some(e) = problem {
                self.refused_paths += 1;
                tracing::warn!(%peer, %folder, path = ?path, error = %e, "refused a record from a peer");
                continue;
            }
            let key = folder::file_key(folder, &path);
            let (need, local) = Self::local_state(store, folder, &path);
            if let Some(mut n) = need {
                // Work in progress: its content is not on this disk.
                match n.record.version.compare(&remote.version) {
                    Causality::Before => {
                        // Newer: aim for that instead. Whatever was settled
                        // against the disk is settled again when the work
                        // is handed out (the disk may not be older than it).
                        n.record = remote;
                        n.sources = vec![peer];
                        n.resolves = None;
                        n.conflict_copy = None;
                        ops.push(put(NEED_NS, key, encode(&n)));
                        touched.push((path, DirEffect::of(&n.record)));
                        continue;
                    }
                    Causality::Equal => {
                        // Someone else has the content: one more source.
                        if !n.sources.contains(&peer) {
                            n.sources.push(peer);
                            ops.push(put(NEED_NS, key, encode(&n)));
                        }
                        continue;
                    }
                    Causality::After => continue,
                    Causality::Concurrent if resolve::same_substance(&n.record, &remote) => {
                        n.record.version.merge(&remote.version);
                        if !n.sources.contains(&peer) {
                            n.sources.push(peer);
                        }
                        ops.push(put(NEED_NS, key, encode(&n)));
                        continue;
                    }
                    Causality::Concurrent => {
                        // A conflict with an intention, not with content we
                        // hold: drop the intention and decide against the
                        // disk; the record it aimed for is held, to be
                        // decided again against whatever the disk becomes.
                        ops.push(Op::Remove {
                            ns: NEED_NS.into(),
                            key: key.clone(),
                            origin,
                            timestamp: ts,
                        });
                        let from = n.sources.first().copied().unwrap_or(peer);
                        ops.push(put(
                            HELD_NS,
                            held_key(&key, from),
                            encode(&(from, &n.record)),
                        ));
                    }
                }
            }
            match resolve::decide(self.node, &path, local.as_ref(), &remote) {
                Decision::Ignore => {
                    if local.as_ref().is_some_and(|l| {
                        l.version.compare(&remote.version) == Causality::Concurrent
                    }) {
                        ops.push(put(HELD_NS, held_key(&key, peer), encode(&(peer, &remote))));
                        if let Some(v) = value {
                            ops.push(put(HELD_VALUE_NS, held_key(&key, peer), v));
                        }
                    }
                }
                Decision::Take {
                    record,
                    conflict_copy,
                } if app => {
                    ops.extend(self.value_ops(
                        store,
                        &path,
                        record,
                        conflict_copy,
                        local.as_ref(),
                        value,
                    ));
                    app_changed = true;
                }
                Decision::Keep { record } => {
                    let mut rec = record;
                    if let Some(l) = &local {
                        rec.inode = l.inode;
                    }
                    ops.push(put(ns::FILES, key, encode(&rec)));
                }
                Decision::Take {
                    record,
                    conflict_copy,
                } => {
                    let on_disk = local.as_ref().filter(|l| !l.deleted);
                    let no_file_work = match (&record.deleted, on_disk) {
                        // A deletion of something we do not have.
                        (true, None) => true,
                        // The same bytes, kind and permissions already here.
                        (false, Some(l)) => {
                            resolve::same_substance(l, &record)
                                && l.mode == record.mode
                                && conflict_copy.is_none()
                        }
                        _ => false,
                    };
                    if no_file_work {
                        let mut rec = record;
                        if let Some(l) = on_disk {
                            rec.inode = l.inode;
                        }
                        ops.push(put(ns::FILES, key, encode(&rec)));
                    } else {
                        let resolves = (record.version != remote.version)
                            .then(|| local.as_ref().map(|l| l.version.clone()))
                            .flatten();
                        let n = Need {
                            record: remote,
                            conflict_copy,
                            sources: vec![peer],
                            resolves,
                        };
                        ops.push(put(NEED_NS, key, encode(&n)));
                        touched.push((path, DirEffect::of(&n.record)));
                    }
                }
            }
        }
        ops.push(put(
            CURSOR_NS,
            cursor_key(peer, folder),
            upto.to_le_bytes().to_vec(),
        ));
        store.apply_batch(ops)?;
        if app_changed {
            // A settled conflict is a change of ours peers must learn.
            self.mark_dirty(store, APP_SPACE.to_string());
        }
        for (path, effect) in touched {
            // New information: hand it out again even if work was under way
            // (the older run finds itself overtaken before it writes).
            let key = (folder.to_string(), path);
            self.note_dir_effect(&key, effect);
            self.work_due(key, now);
        }
        out.extend(self.due_work(store, now)?.0);
        Ok(())
    }

    /// Remember what the work on `key` does to a directory.
    fn note_dir_effect(&mut self, key: &(String, String), effect: DirEffect) {
        self.dir_work.remove(key);
        self.dir_removals.remove(key);
        match effect {
            DirEffect::Creates => self.dir_work.insert(key.clone()),
            DirEffect::Removes => self.dir_removals.insert(key.clone()),
            DirEffect::None => false,
        };
    }

    /// Whether `key` removes a directory while work on paths inside it is
    /// still pending: it waits for them (removed first, the directory can
    /// go; removed before them, it could not, and would stay on disk while
    /// the index said it was gone).
    fn awaits_contents(&self, key: &(String, String)) -> bool {
        if !self.dir_removals.contains(key) {
            return false;
        }
        let (folder, path) = key;
        // Every path under `path/` sorts in [`path/`, `path0`): '0' follows '/'.
        let inside = (folder.clone(), format!("{path}/"))..(folder.clone(), format!("{path}0"));
        self.work.range(inside).next().is_some()
    }

    /// Whether a directory above `path` is still to be created by pending
    /// work. Such a path waits for it (it is handed out when the directory
    /// completes): placing it first would make the executor create the
    /// directory itself, which the watcher would then record as a local
    /// addition and send back to peers as this node's edit.
    /// `seen` remembers the answer per directory for one pass over the work.
    fn awaits_dir<'a>(
        &self,
        folder: &'a str,
        path: &'a str,
        seen: &mut HashMap<(&'a str, &'a str), bool>,
    ) -> bool {
        let mut at = path;
        while let Some((parent, _)) = at.rsplit_once('/') {
            let pending = *seen.entry((folder, parent)).or_insert_with(|| {
                self.dir_work
                    .contains(&(folder.to_string(), parent.to_string()))
            });
            if pending {
                return true;
            }
            at = parent;
        }
        false
    }

    /// File work whose time has come. A need whose path changed locally
    /// since it was decided (the scan recorded an edit) is decided again
    /// first: the edit is never overwritten, it becomes a conflict.
    fn due_work(
        &mut self,
        store: &mut Store,
        now: Instant,
    ) -> Result<(Vec<Action>, usize, usize), SyncError> {
        let mut out = Vec::new();
        let mut retried = 0;
        let mut done = Vec::new();
        let mut changed_folders = HashSet::new();
        let slots = self.config.max_out.saturating_sub(self.out_count);
        // Work of a paused folder waits (work of a removed one is dropped
        // by `tick`).
        let active = Self::local_folders(store)?;
        let ready =
            |k: &(String, String), w: &Work| !w.out && w.due <= now && active.contains(&k.0);
        // Directories first: the paths inside them wait for them.
        let mut due: Vec<(String, String)> = self
            .dir_work
            .iter()
            .filter(|k| self.work.get(*k).is_some_and(|w| ready(k, w)))
            .take(slots)
            .cloned()
            .collect();
        let mut dirs = HashMap::new();
        due.extend(
            self.work
                .iter()
                .filter(|(k, w)| {
                    ready(k, w)
                        && !self.dir_work.contains(*k)
                        && !self.awaits_dir(&k.0, &k.1, &mut dirs)
                        && !self.awaits_contents(k)
                })
                .map(|(k, _)| k.clone())
                .take(slots - due.len()),
        );
        for (folder, path) in due {
            let (need, local) = Self::local_state(store, &folder, &path);
            let Some(mut need) = need else {
                done.push((folder, path));
                continue;
            };
            // Changed since decided: for a plain update the local version
            // is no longer older; for a conflict it is no longer the one the
            // conflict was with.
            let changed = |l: &FileRecord| match &need.resolves {
                Some(against) => l.version != *against,
                None => l.version.compare(&need.record.version) != Causality::Before,
            };
            if let Some(l) = local.as_ref().filter(|l| changed(l)) {
                let key = folder::file_key(&folder, &path);
                let (origin, ts) = (self.node, store.wall_time());
                let drop_need = Op::Remove {
                    ns: NEED_NS.into(),
                    key: key.clone(),
                    origin,
                    timestamp: ts,
                };
                match resolve::decide(self.node, &path, Some(l), &need.record) {
                    Decision::Ignore => {
                        store.apply(drop_need)?;
                        done.push((folder, path));
                        continue;
                    }
                    Decision::Keep { mut record } => {
                        record.inode = l.inode;
                        let put = Op::Put {
                            ns: ns::FILES.into(),
                            key,
                            value: encode(&record),
                            origin,
                            timestamp: ts,
                        };
                        store.apply_batch(vec![put, drop_need])?;
                        changed_folders.insert(folder.clone());
                        done.push((folder, path));
                        continue;
                    }
                    Decision::Take {
                        record,
                        conflict_copy,
                    } => {
                        let resolves =
                            (record.version != need.record.version).then(|| l.version.clone());
                        need = Need {
                            record: need.record,
                            conflict_copy: conflict_copy.or(need.conflict_copy),
                            sources: need.sources,
                            resolves,
                        };
                        store.apply(Op::Put {
                            ns: NEED_NS.into(),
                            key,
                            value: encode(&need),
                            origin,
                            timestamp: ts,
                        })?;
                    }
                }
            }
            let key = (folder.clone(), path.clone());
            let Some(w) = self.work.get(&key) else {
                continue;
            };
            if w.attempts > 0 {
                retried += 1;
            }
            self.set_out(&key, true);
            out.push(if need.record.deleted {
                Action::Remove {
                    folder,
                    path,
                    need,
                    expect: local,
                }
            } else {
                Action::Place {
                    folder,
                    path,
                    need,
                    expect: local,
                }
            });
        }
        let pruned = done.len();
        for k in done {
            self.remove_work(&k);
        }
        for f in changed_folders {
            out.extend(self.local_changed(store, &f));
        }
        Ok((out, retried, pruned))
    }

    /// The executor finished a [`Action::Place`] or [`Action::Remove`] for
    /// `done`: `record` (the need's record with this node's local metadata)
    /// is now what is on disk. Records it (settling a conflict if `done`
    /// resolves one) and drops the need, in one batch — unless the need
    /// changed meanwhile, which is then handed out again.
    #[allow(clippy::too_many_arguments)]
    pub fn completed(
        &mut self,
        store: &mut Store,
        folder: &str,
        path: &str,
        done: &Need,
        record: FileRecord,
        conflict_copy: Option<(String, FileRecord)>,
        now: Instant,
    ) -> Result<Vec<Action>, SyncError> {
        let one = Completed {
            folder: folder.to_string(),
            path: path.to_string(),
            done: done.clone(),
            record,
            conflict_copy,
        };
        self.completed_all(store, vec![one], now)
    }

    /// [`SyncEngine::completed`] for many pieces of work at once (distinct
    /// paths): their records go to the log as one batch, and the work that
    /// is due next is handed out once for all of them.
    pub fn completed_all(
        &mut self,
        store: &mut Store,
        all: Vec<Completed>,
        now: Instant,
    ) -> Result<Vec<Action>, SyncError> {
        let origin = self.node;
        let ts = store.wall_time();
        let mut ops = Vec::new();
        let mut folders = Vec::new();
        for Completed {
            folder,
            path,
            done,
            mut record,
            conflict_copy,
        } in all
        {
            let key = folder::file_key(&folder, &path);
            let (need, local) = Self::local_state(store, &folder, &path);
            record.version = done.record.version.clone();
            if let Some(against) = &done.resolves {
                // The conflict is settled now, on disk: merged versions plus
                // one event of this node.
                record.version.merge(against);
                if let Some(l) = &local {
                    record.version.merge(&l.version);
                }
                record.version.bump(self.node);
            }
            let copied = conflict_copy.is_some();
            if let Some((copy_path, copy)) = conflict_copy {
                ops.push(Op::Put {
                    ns: ns::FILES.into(),
                    key: folder::file_key(&folder, &copy_path),
                    value: encode(&copy),
                    origin,
                    timestamp: ts,
                });
            }
            ops.push(Op::Put {
                ns: ns::FILES.into(),
                key: key.clone(),
                value: encode(&record),
                origin,
                timestamp: ts,
            });
            let superseded = need
                .as_ref()
                .is_some_and(|n| n.record != done.record || n.resolves != done.resolves);
            let work = (folder, path);
            if superseded {
                // The work done is still true of the disk; the newer need
                // stays — without the conflict copy, which is made: doing it
                // again would copy the bytes just placed over the kept ones.
                if let Some(mut n) = need.filter(|_| copied) {
                    n.conflict_copy = None;
                    ops.push(Op::Put {
                        ns: NEED_NS.into(),
                        key: key.clone(),
                        value: encode(&n),
                        origin,
                        timestamp: ts,
                    });
                }
                folders.push(work.0.clone());
                self.work_due(work, now);
            } else {
                ops.push(Op::Remove {
                    ns: NEED_NS.into(),
                    key,
                    origin,
                    timestamp: ts,
                });
                self.remove_work(&work);
                folders.push(work.0);
            }
        }
        store.apply_batch(ops)?;
        for f in folders {
            self.mark_dirty(store, f);
        }
        Ok(self.due_work(store, now)?.0)
    }

    /// Whether `need` is still the work wanted for `path`. The executor
    /// asks right before it changes the disk: work overtaken by newer
    /// information (a later record, a settled conflict) is discarded, never
    /// written over the newer state.
    /// The index entry must also still be `expect`: a local edit recorded
    /// meanwhile (even one that left the disk as it was, like a file
    /// created and deleted again) is decided about first.
    pub fn is_current(
        store: &Store,
        folder: &str,
        path: &str,
        need: &Need,
        expect: Option<&FileRecord>,
    ) -> bool {
        let (n, local) = Self::local_state(store, folder, path);
        n.is_some_and(|n| n.record == need.record && n.resolves == need.resolves)
            && local.map(|l| l.version) == expect.map(|e| e.version.clone())
    }

    /// The executor could not finish the work on `path` (content not
    /// available, disk changed meanwhile, I/O error; `why` says which, for
    /// [`progress`](Self::progress)): retry later with exponential backoff
    /// and jitter.
    pub fn failed(&mut self, folder: &str, path: &str, now: Instant, why: &str) {
        let (min, max) = (self.config.retry_min, self.config.retry_max);
        let key = (folder.to_string(), path.to_string());
        self.set_out(&key, false);
        if let Some(w) = self.work.get_mut(&key) {
            w.attempts += 1;
            w.why = Some(why.to_string());
            let base = min.saturating_mul(1 << w.attempts.min(16)).min(max);
            let jitter = Duration::from_millis(self.rng.u64(..=base.as_millis() as u64 / 2));
            w.due = now + base + jitter;
        }
    }

    /// Drop a need whose file work cannot ever be done here (for example
    /// the path is taken by a directory the user made): the path keeps its
    /// local state, and the next change on either side decides again.
    pub fn abandon(
        &mut self,
        store: &mut Store,
        folder: &str,
        path: &str,
    ) -> Result<(), SyncError> {
        self.remove_work(&(folder.to_string(), path.to_string()));
        store.apply(Op::Remove {
            ns: NEED_NS.into(),
            key: folder::file_key(folder, path),
            origin: self.node,
            timestamp: store.wall_time(),
        })?;
        Ok(())
    }

    /// Advance time: re-send unanswered requests (backoff with jitter),
    /// poll folders not asked for a while, hand out due file work.
    pub fn tick(&mut self, store: &mut Store, now: Instant) -> Result<TickReport, SyncError> {
        let mut report = TickReport::default();
        // Work of a folder no longer shared here is dropped with its need.
        let known: HashSet<String> = folder::list(store)?.into_iter().map(|f| f.id).collect();
        let gone: Vec<(String, String)> = self
            .work
            .keys()
            .filter(|(f, _)| !known.contains(f))
            .cloned()
            .collect();
        for (f, p) in gone {
            store.apply(Op::Remove {
                ns: NEED_NS.into(),
                key: folder::file_key(&f, &p),
                origin: self.node,
                timestamp: store.wall_time(),
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

    /// Decide again about held conflicting records whose path changed
    /// locally: drop those now superseded, turn into work those that win
    /// against the new local version.
    fn revisit_held(&mut self, store: &mut Store, now: Instant) -> Result<Vec<Action>, SyncError> {
        let held: Vec<(String, (NodeId, FileRecord))> = store
            .list(HELD_NS, "")
            .filter_map(|(k, e)| {
                Some((
                    k.to_string(),
                    postcard::from_bytes(e.value.as_deref()?).ok()?,
                ))
            })
            .collect();
        let (origin, ts) = (self.node, store.wall_time());
        let mut ops = Vec::new();
        let mut changed = BTreeSet::new();
        for (key, (peer, remote)) in held {
            let Some((folder, path)) = key.split_once('\0').and_then(|(fk, _)| fk.split_once('/'))
            else {
                continue;
            };
            let (need, local) = Self::local_state(store, folder, path);
            if need.is_some() {
                continue; // settled when that work is done
            }
            let app = folder == APP_SPACE;
            let drop_value = app.then(|| Op::Remove {
                ns: HELD_VALUE_NS.into(),
                key: key.clone(),
                origin,
                timestamp: ts,
            });
            let drop = Op::Remove {
                ns: HELD_NS.into(),
                key: key.clone(),
                origin,
                timestamp: ts,
            };
            let Some(l) = local else {
                ops.push(drop);
                ops.extend(drop_value);
                continue;
            };
            match l.version.compare(&remote.version) {
                Causality::Concurrent => {}
                // Superseded (or newer, which the index exchange brings).
                _ => {
                    ops.push(drop);
                    ops.extend(drop_value);
                    continue;
                }
            }
            match resolve::decide(self.node, path, Some(&l), &remote) {
                Decision::Ignore => {}
                Decision::Take {
                    record,
                    conflict_copy,
                } if app => {
                    let value = store.get(HELD_VALUE_NS, &key).and_then(|e| e.value.clone());
                    if record.deleted || value.is_some() {
                        ops.extend(self.value_ops(
                            store,
                            path,
                            record,
                            conflict_copy,
                            Some(&l),
                            value,
                        ));
                        changed.insert(folder.to_string());
                    }
                    ops.push(drop);
                    ops.extend(drop_value);
                }
                Decision::Keep { mut record } => {
                    record.inode = l.inode;
                    ops.push(Op::Put {
                        ns: ns::FILES.into(),
                        key: folder::file_key(folder, path),
                        value: encode(&record),
                        origin,
                        timestamp: ts,
                    });
                    ops.push(drop);
                    ops.extend(drop_value);
                    changed.insert(folder.to_string());
                }
                Decision::Take { conflict_copy, .. } => {
                    let n = Need {
                        record: remote,
                        conflict_copy,
                        sources: vec![peer],
                        resolves: Some(l.version.clone()),
                    };
                    ops.push(Op::Put {
                        ns: NEED_NS.into(),
                        key: folder::file_key(folder, path),
                        value: encode(&n),
                        origin,
                        timestamp: ts,
                    });
                    ops.push(drop);
                    let key = (folder.to_string(), path.to_string());
                    self.note_dir_effect(&key, DirEffect::of(&n.record));
                    self.work_due(key, now);
                }
            }
        }
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        store.apply_batch(ops)?;
        Ok(changed
            .iter()
            .flat_map(|f| self.local_changed(store, f))
            .collect())
    }

    /// Make app key `key` hold `record` (a value taken from a peer, whose
    /// bytes are `value`, or a deletion): no file work, so it is done at
    /// once, in the caller's batch. The losing local value of a conflict
    /// is kept under `conflict_copy` first (unless that key already holds
    /// the same bytes).
    fn value_ops(
        &self,
        store: &Store,
        key: &str,
        record: FileRecord,
        conflict_copy: Option<String>,
        local: Option<&FileRecord>,
        value: Option<Vec<u8>>,
    ) -> Vec<Op> {
        let (origin, timestamp) = (self.node, store.wall_time());
        let mut ops = Vec::new();
        let losing = local
            .filter(|l| !l.deleted)
            .zip(values::get(store, key))
            .zip(conflict_copy);
        if let Some(((l, bytes), name)) = losing {
            let target = copy_target(&name, |p| match values::get(store, p) {
                None => Probe::Free,
                Some(b) if Some(ContentHash::of(b)) == l.hash => Probe::Same,
                Some(_) => Probe::Different,
            });
            if let Some(copy_key) = target {
                let mut copy = l.clone();
                let mut version = values::record(store, &copy_key)
                    .ok()
                    .flatten()
                    .map(|r| r.version)
                    .unwrap_or_default();
                version.bump(self.node);
                copy.version = version;
                copy.modified_by = self.node;
                tracing::info!(key = %key, copy = %copy_key, "conflict: kept the other value under a new key");
                ops.extend(values::ops(
                    origin,
                    timestamp,
                    &copy_key,
                    &copy,
                    Some(bytes),
                ));
            }
        }
        let value = value.filter(|_| !record.deleted);
        ops.extend(values::ops(
            origin,
            timestamp,
            key,
            &record,
            value.as_deref(),
        ));
        ops
    }

    /// Pending file work: (folder, path, need).
    pub fn needs(store: &Store) -> Vec<(String, String, Need)> {
        store
            .list(NEED_NS, "")
            .filter_map(|(k, e)| {
                let (f, p) = k.split_once('/')?;
                let n = postcard::from_bytes::<Need>(e.value.as_deref()?).ok()?;
                Some((f.to_string(), p.to_string(), n))
            })
            .collect()
    }

    /// What is still to do for `folder`, for people: files and bytes still
    /// needed, how many are queued, in flight, or failing (waiting for a
    /// retry), with the last paths that fail.
    pub fn progress(&self, store: &Store, folder: &str) -> FolderProgress {
        let mut p = FolderProgress::default();
        for (f, path, need) in Self::needs(store) {
            if f != folder {
                continue;
            }
            p.needed_files += 1;
            if !need.record.deleted {
                p.needed_bytes += need.record.size;
            }
            match self.work.get(&(f, path.clone())) {
                Some(w) if w.out => p.in_flight += 1,
                Some(w) if w.attempts > 0 => {
                    p.failing += 1;
                    if p.failing_files.len() < 5 {
                        p.failing_files.push(Failing {
                            path,
                            why: w.why.clone().unwrap_or_default(),
                            attempts: w.attempts,
                        });
                    }
                }
                _ => p.queued += 1,
            }
        }
        p
    }

    /// Connected peers.
    pub fn peers(&self) -> impl Iterator<Item = &NodeId> {
        self.peers.keys()
    }

    /// The node this engine runs for.
    pub fn node(&self) -> NodeId {
        self.node
    }

    fn set_out(&mut self, key: &(String, String), out: bool) {
        if let Some(w) = self.work.get_mut(key)
            && w.out != out
        {
            w.out = out;
            if out {
                self.out_count += 1;
            } else {
                self.out_count = self.out_count.saturating_sub(1);
            }
        }
    }

    fn remove_work(&mut self, key: &(String, String)) {
        self.dir_work.remove(key);
        self.dir_removals.remove(key);
        if self.work.remove(key).is_some_and(|w| w.out) {
            self.out_count = self.out_count.saturating_sub(1);
        }
    }

    /// Work for `key` is due now (new, or new information about it).
    fn work_due(&mut self, key: (String, String), now: Instant) {
        let was_out = match self.work.entry(key) {
            std::collections::btree_map::Entry::Occupied(mut e) => {
                let w = e.get_mut();
                w.due = now;
                std::mem::replace(&mut w.out, false)
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(Work {
                    due: now,
                    attempts: 0,
                    out: false,
                    why: None,
                });
                false
            }
        };
        if was_out {
            self.out_count = self.out_count.saturating_sub(1);
        }
    }
}

/// What reaching a record does to a directory at its path (what orders
/// file work: a directory is made before the paths inside it, and removed
/// after them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirEffect {
    /// Makes one.
    Creates,
    /// Removes one (if that is what is there).
    Removes,
    /// Neither.
    None,
}

impl DirEffect {
    fn of(record: &FileRecord) -> DirEffect {
        match (record.kind == EntryKind::Dir, record.deleted) {
            (true, false) => DirEffect::Creates,
            (true, true) => DirEffect::Removes,
            _ => DirEffect::None,
        }
    }
}
