//! # runtime — the composed node: folders, sync and transport together
//!
//! [`SyncRuntime`] wires the layers into a running node. It owns no policy
//! of its own: the [`SyncEngine`] decides, this
//! module carries out.
//!
//! * Mesh events in: a connection, a message, a bulk stream → engine.
//! * Engine actions out: messages go to peers; file work goes to the
//!   executor ([`exec`]).
//! * Each shared folder is watched (watcher first, then a catch-up scan);
//!   every settled change is indexed and hinted to peers at once.
//! * Peers' chunk requests are answered from local files, each chunk
//!   checked against its hash before it leaves.
//!
//! Files: this one holds the shared state and the event loop; [`node`]
//! composes a whole node (transport, sync, discovery, trust, folder
//! lifecycle) around it; [`status`] is what a node reports; [`trust`] the
//! stored trusted-peer list and device names; [`offers`] the folders
//! other devices offer; [`exec`] the executor; [`echoes`] the
//! watcher's filter for the agent's own writes; [`events`] the stream of
//! what happened, for clients to follow; `watching` the folder
//! watcher threads; `housekeeping` the timed tidy-ups.

pub mod conflicts;
pub mod echoes;
pub mod events;
pub mod exec;
pub mod guard;
pub mod history;
mod housekeeping;
pub mod node;
pub mod offers;
pub mod repair;
pub mod status;
pub mod trust;
mod watching;

use housekeeping::*;
use watching::*;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::core::NodeId;
use crate::folder::{self, Indexer};
use crate::fs::watch::{WatchConfig, Watcher};
use crate::store::Store;
use crate::sync::{Action, SyncConfig, SyncEngine, SyncMessage};
use crate::transport::mesh::MeshEvent;
use crate::transport::quic::PeerHandle;

/// Shared state of a running node.
pub struct Shared {
    /// This node.
    pub node: NodeId,
    /// The store (index, needs, cursors).
    pub store: Arc<Mutex<Store>>,
    /// The sync state machine.
    pub engine: Mutex<SyncEngine>,
    /// Connected peers.
    pub peers: Mutex<HashMap<NodeId, PeerHandle>>,
    /// Where local chunks are.
    pub chunks: Mutex<exec::ChunkIndex>,
    /// Local changes and finished work to report to the engine.
    local: mpsc::UnboundedSender<Local>,
    /// File work ready to be committed (see [`exec::committer`]).
    commits: exec::CommitQueue,
    /// Limits files being assembled at once (files larger than
    /// [`exec::SMALL_FILE`]).
    pub transfers: tokio::sync::Semaphore,
    /// Limits small files being assembled at once: many, since each holds
    /// little memory and their chunks travel together (see
    /// [`exec::SmallFetches`]).
    pub small_transfers: tokio::sync::Semaphore,
    /// Limits chunk requests being served at once (`SERVING`).
    pub serving: tokio::sync::Semaphore,
    /// Shared folders' roots, as looked up in the store: file work needs
    /// its folder's root, and the store's lock may be held through a
    /// commit batch's flush. Forgotten when a folder is added or dropped.
    pub roots: Mutex<HashMap<String, std::path::PathBuf>>,
    /// Chunk fetches of small runs, gathered per peer.
    pub small_fetches: exec::SmallFetches,
    /// The threads small files are written on.
    pub writers: exec::Writers,
    /// Limits chunk jobs running at once over all files: a local chunk
    /// being read, or a run of chunks being fetched (at most 1 MiB).
    pub chunk_slots: tokio::sync::Semaphore,
    /// How long a peer may send nothing before requests to it are given
    /// up ([`RuntimeOptions::stall`]).
    pub stall: Duration,
    /// Free space kept on each folder's file system
    /// ([`RuntimeOptions::min_free`]).
    pub min_free: exec::MinFree,
    /// When each peer last sent chunk bytes.
    pub heard: exec::Heard,
    /// Large files whose transfer broke part-way, to resume.
    pub partials: exec::Partials,
    /// Content bytes received from peers since start.
    pub bytes_fetched: std::sync::atomic::AtomicU64,
    /// Bytes taken from local files instead (renames, copies, reused chunks).
    pub bytes_reused: std::sync::atomic::AtomicU64,
    /// Files placed and removed since start.
    pub files_done: std::sync::atomic::AtomicU64,
    /// Folders whose catch-up scan is running.
    pub scanning: Mutex<std::collections::HashSet<String>>,
    /// Folders that cannot be watched, and why.
    pub folder_errors: Mutex<HashMap<String, String>>,
    /// Files the agent just placed, as they were right after (see
    /// [`echoes::Echoes`]): the watcher's event for each is recognised
    /// without reconciling it against the index.
    pub echoes: echoes::Echoes,
    /// Paths whose file work found the disk other than the index says
    /// ([`crate::sync::Cause::ChangedOnDisk`]), by folder: the folder's
    /// watcher reconciles them as if it had seen them change. The work
    /// waits for the scan to decide, so the scan must come even when no
    /// event does (one lost, or taken for the agent's own).
    pub look_again: Mutex<HashMap<String, std::collections::BTreeSet<String>>>,
    /// This node's home (the directory holding its store): nothing a peer
    /// sends is ever written or removed there, even when a shared folder
    /// contains it (its scan leaves it out, see
    /// [`crate::fs::ignore::is_node_home`]).
    pub home: Option<std::path::PathBuf>,
    /// What each folder's scans left out for good — names that cannot be
    /// synced, special files, node homes — by folder, then path: shown by
    /// `status`, so nobody takes such a file for safe on the other machine.
    pub not_synced: Mutex<HashMap<String, std::collections::BTreeMap<String, String>>>,
    /// What happened, for clients to follow ([`events::EventLog`]).
    pub events: events::EventLog,
}

enum Local {
    Changed(String),
    Actions(Vec<Action>),
}

pub use crate::core::lock;

/// Most threads a node's async runtime may start for blocking work
/// (`max_blocking_threads`). Blocking work is file I/O, which a few
/// threads keep the disk busy with; hundreds (tokio's default bound is
/// 512, and a burst of small files reaches it) cost a stack and a malloc
/// arena each. Two kinds of blocking work wait on something else while
/// they hold a thread: a large file's writer (for chunks, some of them
/// read locally by other blocking work) and a chunk request being served
/// (for the peer to read). Both are bounded (`LARGE_TRANSFERS`,
/// `SERVING`) well below this, so the rest — work that never waits on
/// a peer — always finds a thread, however many peers fetch at once.
pub const BLOCKING_THREADS: usize = 64;

/// Large files assembled at once (see [`BLOCKING_THREADS`]).
const LARGE_TRANSFERS: usize = 16;

/// Chunk requests served at once, over all peers (see
/// [`BLOCKING_THREADS`]); more wait, holding no thread.
const SERVING: usize = 16;

/// How a node behaves, beyond what the store holds.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeOptions {
    /// Replaced and deleted files stay in each folder's trash this long.
    pub trash_keep: Duration,
    /// A chunk request is given up (its chunks asked of another source, or
    /// the file retried later) when the peer has sent nothing, on any of
    /// this node's chunk requests, for this long. Only silence counts: a
    /// request crawling over a slow link, or waiting at a busy peer behind
    /// others that are flowing, is never cut.
    pub stall: Duration,
    /// A file is not started unless it fits in its folder's file system
    /// with this much left free.
    pub min_free: exec::MinFree,
}

/// [`RuntimeOptions::stall`] unless set.
pub const DEFAULT_STALL: Duration = Duration::from_secs(30);

impl Default for RuntimeOptions {
    /// Trash kept 30 days; a peer silent for [`DEFAULT_STALL`] is given up.
    fn default() -> Self {
        RuntimeOptions {
            trash_keep: Duration::from_secs(30 * 24 * 3600),
            stall: DEFAULT_STALL,
            min_free: exec::MinFree::default(),
        }
    }
}

/// A running sync runtime.
pub struct SyncRuntime {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    watchers: HashMap<String, FolderWatch>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl SyncRuntime {
    /// Start syncing every shared folder in `store` over the mesh whose
    /// events arrive on `events`. Must be called within a tokio runtime.
    pub fn start(
        node: NodeId,
        store: Arc<Mutex<Store>>,
        mut events: mpsc::UnboundedReceiver<MeshEvent>,
        options: RuntimeOptions,
    ) -> SyncRuntime {
        let (local_tx, mut local_rx) = mpsc::unbounded_channel();
        let (commits, inbox) = std::sync::mpsc::channel();
        let mut engine = SyncEngine::new(node, SyncConfig::default(), u64::from(node.0[0]));
        if let Err(e) = crate::folder::values::reconcile(&mut lock(&store), node) {
            warn!(error = %e, "cannot check app values against the index");
        }
        {
            let mut held = lock(&store);
            if let Err(e) = crate::sync::purge_bookkeeping_tombstones(&mut held) {
                warn!(error = %e, "could not drop old bookkeeping tombstones");
            }
            engine.resume(&held, Instant::now());
        }
        let home = lock(&store)
            .config()
            .dir
            .parent()
            .and_then(|h| std::fs::canonicalize(h).ok());
        // The chunk places go beside the store's index, when it is on disk
        // (a store in memory keeps them in memory too).
        let store_dir = lock(&store).config().dir.clone();
        let chunks = if store_dir.join(crate::store::state::FILE_NAME).is_file() {
            exec::ChunkIndex::open(&store_dir.join(exec::CHUNK_PLACES_FILE))
        } else {
            exec::ChunkIndex::default()
        };
        let shared = Arc::new(Shared {
            node,
            store: store.clone(),
            engine: Mutex::new(engine),
            peers: Mutex::default(),
            chunks: Mutex::new(chunks),
            local: local_tx,
            commits,
            transfers: tokio::sync::Semaphore::new(LARGE_TRANSFERS),
            small_transfers: tokio::sync::Semaphore::new(256),
            serving: tokio::sync::Semaphore::new(SERVING),
            small_fetches: Default::default(),
            writers: exec::Writers::new(4),
            roots: Mutex::default(),
            chunk_slots: tokio::sync::Semaphore::new(24),
            stall: options.stall,
            min_free: options.min_free,
            heard: Default::default(),
            partials: Default::default(),
            bytes_fetched: Default::default(),
            bytes_reused: Default::default(),
            files_done: Default::default(),
            scanning: Mutex::default(),
            folder_errors: Mutex::default(),
            echoes: Default::default(),
            look_again: Mutex::default(),
            home,
            not_synced: Mutex::default(),
            events: events::EventLog::default(),
        });
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watchers = start_watchers(&shared, &stop);
        // Detached: it ends when the node is dropped (its inbox closes).
        let weak = Arc::downgrade(&shared);
        // As `thread::spawn`: a node without its committer cannot run.
        std::thread::Builder::new()
            .name("sync-committer".into())
            .spawn(move || exec::committer(weak, inbox))
            .expect("cannot start the committer thread");
        let mut tasks = vec![
            tokio::spawn(prune_trash_hourly(shared.clone(), options.trash_keep)),
            tokio::spawn(drop_unwanted_partials(shared.clone())),
            tokio::spawn(wake_when_space_frees(shared.clone())),
            tokio::spawn(gather_local_versions(shared.clone())),
            tokio::spawn(flush_chunk_places_when_quiet(shared.clone())),
            tokio::spawn(compact_index_when_quiet(shared.clone())),
            tokio::spawn(release_store_cache_when_still(shared.clone())),
        ];
        let s = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Some(ev) => on_mesh_event(&s, ev),
                        None => break,
                    },
                    Some(l) = local_rx.recv() => match l {
                        Local::Changed(folder) => {
                            let actions = {
                                let store = lock(&s.store);
                                let mut engine = lock(&s.engine);
                                // A change in the folder (a permission
                                // given, a file deleted, a rescan, the
                                // folder resumed) may cure work that
                                // waits for one.
                                engine.retry_blocked(&folder, |_| true, Instant::now());
                                engine.local_changed(&store, &folder)
                            };
                            dispatch(&s, actions);
                        }
                        Local::Actions(actions) => dispatch(&s, actions),
                    },
                    _ = tick.tick() => {
                        if let Err(e) = step(&s) {
                            warn!(error = %e, "sync tick failed");
                        }
                    }
                }
            }
        }));
        SyncRuntime {
            shared,
            tasks,
            watchers,
            stop,
        }
    }

    /// The shared state (for status).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Start syncing a folder added while running (already in the store):
    /// watch it and tell every peer.
    pub fn add_folder(&mut self, config: folder::FolderConfig) {
        let id = config.id.clone();
        lock(&self.shared.roots).remove(&id);
        if let Some(old) = self.watchers.remove(&id) {
            old.stop();
        }
        let watch = watch_folder(&self.shared, &self.stop, config, None);
        self.watchers.insert(id, watch);
        self.announce_folders();
    }

    /// Stop watching and syncing a folder (paused or removed in the store
    /// already): its watcher ends, peers are told.
    pub fn drop_folder(&mut self, id: &str) {
        lock(&self.shared.roots).remove(id);
        if let Some(w) = self.watchers.remove(id) {
            w.stop();
        }
        self.announce_folders();
    }

    /// Scan a folder again now (whatever the watcher saw). False if it is
    /// not being watched (paused or unknown).
    pub fn rescan_folder(&self, id: &str) -> bool {
        match self.watchers.get(id) {
            Some(w) => {
                w.rescan.store(true, std::sync::atomic::Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Tell every peer the folders shared with it (after a change of
    /// folders or of their members).
    pub fn announce_folders(&self) {
        let actions = {
            let store = lock(&self.shared.store);
            lock(&self.shared.engine).folders_changed(&store, Instant::now())
        };
        match actions {
            Ok(a) => dispatch(&self.shared, a),
            Err(e) => warn!(error = %e, "cannot announce the new folder"),
        }
    }

    /// Stop watching and syncing.
    pub fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in self.tasks {
            t.abort();
        }
        for (_, w) in self.watchers {
            let _ = w.thread.join();
        }
    }
}

fn on_mesh_event(s: &Arc<Shared>, ev: MeshEvent) {
    let now = Instant::now();
    let actions = match ev {
        MeshEvent::Connected(handle) => {
            let id = handle.id;
            let mut store = lock(&s.store);
            // Its own name, unless one was given: devices can be named
            // wherever an id is asked for.
            if let Err(e) = trust::set_name(&mut store, id, &handle.name, false) {
                debug!(peer = %id, error = %e, "did not record the device's name");
            }
            s.events.push(events::What::PeerConnected {
                peer: id.to_string(),
                name: handle.name.clone(),
            });
            lock(&s.peers).insert(id, handle);
            lock(&s.engine).connected(&store, id, now)
        }
        MeshEvent::Disconnected(id) => {
            let gone = lock(&s.peers).remove(&id);
            s.events.push(events::What::PeerDisconnected {
                peer: id.to_string(),
                name: gone.map(|h| h.name).unwrap_or_default(),
            });
            lock(&s.engine).disconnected(id);
            Ok(Vec::new())
        }
        MeshEvent::Message(id, bytes) => match SyncMessage::decode(&bytes) {
            Ok(m) => {
                let mut store = lock(&s.store);
                lock(&s.engine).received(&mut store, id, m, now)
            }
            Err(e) => {
                warn!(peer = %id, error = %e, "ignored a sync message");
                Ok(Vec::new())
            }
        },
        MeshEvent::Bulk(id, stream) => {
            let s = s.clone();
            tokio::spawn(async move { exec::serve_bulk(s, id, stream).await });
            Ok(Vec::new())
        }
    };
    match actions {
        Ok(a) => dispatch(s, a),
        Err(e) => warn!(error = %e, "sync step failed"),
    }
}

/// Act on what LAN discovery hears until it stops: a trusted peer heard
/// at an address is dialled there (the mesh's TLS pin decides, not the
/// announcement); an expired one is forgotten.
pub async fn follow_discovery(
    mesh: crate::transport::mesh::Mesh,
    mut changes: mpsc::UnboundedReceiver<crate::discovery::Change>,
) {
    use crate::discovery::Change;
    while let Some(change) = changes.recv().await {
        match change {
            Change::Found(id, addr)
            | Change::Moved(id, addr)
            | Change::Restarted(id, addr)
            | Change::Returned(id, addr) => {
                let trusted = mesh.discovered(id, addr);
                info!(peer = %id, %addr, trusted, "discovered on the LAN");
            }
            Change::Stale(id) => info!(peer = %id, "stale on the LAN: not heard for a while"),
            Change::Expired(id) => {
                mesh.undiscovered(id);
                info!(peer = %id, "expired on the LAN: forgotten");
            }
        }
    }
}

/// One sync step now (what the event loop does every 200 ms): the engine's
/// `tick`, its actions carried out. The report comes back without them.
pub fn step(s: &Arc<Shared>) -> Result<crate::sync::TickReport, crate::sync::SyncError> {
    let mut report = {
        let mut store = lock(&s.store);
        lock(&s.engine).tick(&mut store, Instant::now())?
    };
    if report.retried > 0 {
        debug!(
            retried = report.retried,
            pruned = report.pruned,
            batch = report.batch_size,
            "sync tick"
        );
    }
    dispatch(s, std::mem::take(&mut report.actions));
    Ok(report)
}

/// Carry out engine actions: small files' places in batches of
/// [`exec::SMALL_BATCH`], each batch one task; any other work one task each.
pub fn dispatch(s: &Arc<Shared>, actions: Vec<Action>) {
    let mut small = Vec::new();
    for a in actions {
        match a {
            Action::Send { peer, message } => {
                if let Some(h) = lock(&s.peers).get(&peer) {
                    h.send(message.encode());
                }
            }
            work if exec::is_small_place(&work) => {
                small.push(work);
                if small.len() == exec::SMALL_BATCH {
                    let (s, batch) = (s.clone(), std::mem::take(&mut small));
                    tokio::spawn(async move { exec::run_small(s, batch).await });
                }
            }
            work => {
                let s = s.clone();
                tokio::spawn(async move { exec::run(s, work).await });
            }
        }
    }
    if !small.is_empty() {
        let s = s.clone();
        tokio::spawn(async move { exec::run_small(s, small).await });
    }
}

impl Shared {
    /// Report actions produced outside the event loop (by the executor).
    pub fn report(&self, actions: Vec<Action>) {
        if !actions.is_empty() {
            let _ = self.local.send(Local::Actions(actions));
        }
    }

    /// The local index of `folder` (or the app space) changed outside the
    /// watchers — an app wrote a value: peers are hinted at once.
    pub fn changed(&self, folder: &str) {
        let _ = self.local.send(Local::Changed(folder.to_string()));
    }
}
