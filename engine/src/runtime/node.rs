//! [`Node`]: one running node, composed — the QUIC endpoint and its mesh
//! of trusted peers, the sync runtime, LAN discovery — and the changes
//! that touch several of them at once, each made in one call: trusting a
//! peer (the store, the TLS trust set, the mesh) and a folder's lifecycle
//! (the store's folder entry, its watcher, the peers told). The agent's
//! daemon and the SDK [`Client`](crate::client::Client) both run a node
//! through it; neither wires the pieces by hand.
//!
//! It owns no policy: what to sync is the sync engine's, how to connect
//! the mesh's. It must be started and stopped inside a tokio runtime
//! ([`async_runtime`] builds the one both callers use).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::info;

use super::status::{
    DiscoveryStatus, FolderState, FolderStatus, NOT_SYNCED_SHOWN, NodeStatus, NotSynced,
};
use super::trust::{self, TrustError, TrustedPeer};
use super::{RuntimeOptions, Shared, SyncRuntime, lock};

mod conflicts;
mod deletions;
mod history;
mod sharing;
use crate::core::NodeId;
use crate::discovery::service::{Discovery, DiscoveryConfig};
use crate::folder::{self, FolderConfig, FolderError};
use crate::store::Store;
use crate::sync::SyncEngine;
use crate::transport::TransportError;
use crate::transport::identity::Identity;
use crate::transport::mesh::{JoinHandler, Mesh, PeerState, PeerStatus};
use crate::transport::quic::{Endpoint, QuicConfig};
use crate::transport::tls::TrustedIds;
use crate::transport::wire::Hello;

/// The async runtime a node runs in: two workers (the network is light
/// work), and a bounded pool for file I/O ([`super::BLOCKING_THREADS`]).
pub fn async_runtime(thread_name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(super::BLOCKING_THREADS)
        .thread_name(thread_name)
        .enable_all()
        .build()
}

/// How a node is started.
#[derive(Clone)]
pub struct NodeOptions {
    /// The QUIC address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The sync runtime's options.
    pub runtime: RuntimeOptions,
    /// The transport's timeouts.
    pub quic: QuicConfig,
    /// What to do with a peer that presents an invitation's secret: trust
    /// it and say which folder the invitation shared. `None`: invitations
    /// are refused.
    pub on_join: Option<JoinHandler>,
    /// The set of ids TLS admits. Filled from the store's trusted peers at
    /// start; pass a clone of one that other parts also admit peers
    /// through (invitations), or a new one.
    pub trusted: TrustedIds,
}

/// Why a node could not start, or a change to it failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The endpoint could not be bound or the transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The trusted-peer list could not be read or changed.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A folder change was refused or could not be stored.
    #[error(transparent)]
    Folder(#[from] FolderError),
    /// The sync engine's bookkeeping could not be changed.
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
    /// The folder is not of the type the operation is for.
    #[error(
        "{id:?} is {kind}; this is for {wanted} folders (`softadastra folder type {id} {wanted}`)"
    )]
    WrongType {
        /// Folder id.
        id: String,
        /// Its type.
        kind: crate::index::FolderType,
        /// The type the operation needs.
        wanted: crate::index::FolderType,
    },
    /// A local copy could not be moved to the trash for a revert (nothing
    /// of the revert was recorded).
    #[error("cannot revert: {0}")]
    Revert(String),
    /// A decision about held deletions could not be made.
    #[error(transparent)]
    Guard(#[from] super::guard::GuardError),
    /// A conflict could not be listed or settled.
    #[error(transparent)]
    Conflict(#[from] super::conflicts::ConflictError),
    /// A file's history could not be read or a version restored.
    #[error(transparent)]
    History(#[from] super::history::HistoryError),
    /// No connected device offers that folder.
    #[error("no connected device offers a folder {0:?} (see `softadastra folder offers`)")]
    NoOffer(String),
    /// A rescan was asked of a folder that is paused.
    #[error("{0:?} is paused; resuming it scans and syncs it")]
    Paused(String),
    /// A rescan was asked of a folder that is not being watched (its
    /// watcher could not start; status says why).
    #[error("{0:?} is not being watched (see status)")]
    NotWatched(String),
}

impl NodeError {
    /// Whether trying again as is can help (a folder change refused for
    /// what it asks cannot; a store or transport failure may pass).
    pub fn retry(&self) -> bool {
        match self {
            NodeError::Transport(_) => true,
            NodeError::Guard(e) => e.retry(),
            NodeError::Conflict(e) => e.retry(),
            NodeError::History(e) => e.retry(),
            _ => false,
        }
    }
}

/// A running node (see the module docs).
pub struct Node {
    own: NodeId,
    name: String,
    started: std::time::Instant,
    store: Arc<Mutex<Store>>,
    /// Waited on before the store is taken for totals still being counted.
    tally_gate: crate::store::TallyGate,
    mesh: Mesh,
    trusted: TrustedIds,
    addr: SocketAddr,
    sync: Mutex<Option<SyncRuntime>>,
    shared: Arc<Shared>,
    discovery: Mutex<Option<Discovery>>,
}

impl Node {
    /// Bind the endpoint, connect to every trusted peer and start syncing
    /// every shared folder. Must be called inside a tokio runtime.
    pub fn start(
        identity: &Identity,
        hello: Hello,
        store: Arc<Mutex<Store>>,
        options: NodeOptions,
    ) -> Result<Node, NodeError> {
        let own = identity.node_id();
        trust::upgrade_membership(&mut lock(&store))?;
        let peers = trust::list(&lock(&store))?;
        // Their ids fill the records they send: kept as numbers.
        let ids: Vec<NodeId> = peers.iter().map(|p| p.id).collect();
        lock(&store).know_devices(&ids).map_err(TrustError::from)?;
        let trusted = options.trusted;
        trusted.replace(peers.iter().map(|p| p.id));
        let endpoint = Endpoint::bind(
            options.listen,
            identity.clone(),
            trusted.clone(),
            hello,
            options.quic,
        )?;
        let addr = endpoint.local_addr()?;
        let on_join = options
            .on_join
            .unwrap_or_else(|| Arc::new(|_| Err("this node does not take invitations".into())));
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let mesh = Mesh::start(
            endpoint,
            peers.iter().map(|p| (p.id, p.addr.clone())),
            on_join,
            Some(events_tx),
        );
        let sync = SyncRuntime::start(own, store.clone(), events_rx, options.runtime);
        for p in peers.iter().filter(|p| p.addr.is_none()) {
            info!(peer = %p.id, "no address known; waiting for it to connect");
        }
        // The store's running totals (files, bytes and conflicts per
        // folder, pending work) are taken back as saved at the last close
        // if nothing changed since, or else counted once, off the async
        // workers and without holding the store (a million entries take a
        // second sync and the watchers need not wait for); status waits
        // for them.
        let (walk, tally_gate) = {
            let mut store = lock(&store);
            let walk = store.tally_later(crate::store::ns::FILES, &crate::index::NODE_TOTALS);
            (walk, store.tally_gate())
        };
        let totals_of = store.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(walk) = walk {
                walk.run();
            }
            SyncEngine::pending(&mut lock(&totals_of));
        });
        Ok(Node {
            own,
            name: identity.name().to_string(),
            started: std::time::Instant::now(),
            store,
            tally_gate,
            mesh,
            trusted,
            addr,
            shared: sync.shared().clone(),
            sync: Mutex::new(Some(sync)),
            discovery: Mutex::default(),
        })
    }

    /// Announce this node on the LAN and listen for others; trusted peers
    /// heard are dialled where they were heard. Calling it again changes
    /// nothing. Inside the node's tokio runtime.
    pub fn start_discovery(&self, config: DiscoveryConfig) -> std::io::Result<()> {
        let mut discovery = lock(&self.discovery);
        if discovery.is_some() {
            return Ok(());
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let started = Discovery::start(self.own, self.addr.port(), config, tx)?;
        tokio::spawn(super::follow_discovery(self.mesh.clone(), rx));
        *discovery = Some(started);
        Ok(())
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.own
    }

    /// The address the endpoint is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store.
    pub fn store(&self) -> &Arc<Mutex<Store>> {
        &self.store
    }

    /// The mesh of trusted peers.
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// The ids TLS admits.
    pub fn trusted(&self) -> &TrustedIds {
        &self.trusted
    }

    /// The sync runtime's shared state (progress, peers connected, counters).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Run `f` with LAN discovery, if it runs.
    pub fn with_discovery<T>(&self, f: impl FnOnce(&Discovery) -> T) -> Option<T> {
        lock(&self.discovery).as_ref().map(f)
    }

    /// Trust `peer`, optionally at `addr`: recorded in the store, admitted
    /// by TLS, dialled by the mesh (at `addr`, or where discovery heard it).
    pub fn trust(&self, peer: NodeId, addr: Option<String>) -> Result<TrustedPeer, NodeError> {
        let added = trust::add(&mut lock(&self.store), self.own, peer, addr)?;
        self.trusted.insert(peer);
        self.mesh.add_peer(peer, added.addr.clone());
        if let Some(heard) = self.with_discovery(|d| d.get(&peer)).flatten() {
            self.mesh.discovered(peer, heard.addr);
        }
        Ok(added)
    }

    /// A peer already recorded as trusted (by a pairing) is admitted and
    /// dialled at `addr`.
    pub fn admit(&self, peer: NodeId, addr: Option<String>) {
        self.trusted.insert(peer);
        self.mesh.add_peer(peer, addr);
    }

    /// Stop trusting `peer`: forgotten by the store and TLS, its
    /// connection closed.
    pub fn untrust(&self, peer: NodeId) -> Result<(), NodeError> {
        let mut store = lock(&self.store);
        trust::remove(&mut store, peer)?;
        self.trusted
            .replace(trust::list(&store)?.into_iter().map(|p| p.id));
        drop(store);
        self.mesh.remove_peer(peer);
        Ok(())
    }

    /// Every trusted peer and its state.
    pub fn peers(&self) -> Vec<PeerStatus> {
        self.mesh.statuses()
    }

    /// Share the directory `path` as folder `id` (derived from its name if
    /// `None`): stored, watched and announced to peers.
    pub fn add_folder(&self, path: &Path, id: Option<&str>) -> Result<FolderConfig, NodeError> {
        self.add_folder_as(path, id, crate::index::FolderType::SendReceive)
    }

    /// Start syncing folder `id`, already in the store (shared by a
    /// pairing, say).
    pub fn folder_added(&self, id: &str) -> Result<FolderConfig, NodeError> {
        let config = folder::get(&lock(&self.store), id)?;
        self.watch(config.clone());
        Ok(config)
    }

    /// Pause folder `id`: not watched or synced until resumed; peers told.
    pub fn pause_folder(&self, id: &str) -> Result<FolderConfig, NodeError> {
        let config = folder::set_paused(&mut lock(&self.store), id, true)?;
        self.unwatch(id);
        Ok(config)
    }

    /// Resume folder `id`: scanned, then synced.
    pub fn resume_folder(&self, id: &str) -> Result<FolderConfig, NodeError> {
        let config = folder::set_paused(&mut lock(&self.store), id, false)?;
        self.watch(config.clone());
        Ok(config)
    }

    /// Stop sharing folder `id` (its files are left as they are).
    pub fn remove_folder(&self, id: &str) -> Result<FolderConfig, NodeError> {
        let config = folder::remove(&mut lock(&self.store), id)?;
        self.unwatch(id);
        Ok(config)
    }

    /// Scan folder `id` again now. A folder stopped because its marker is
    /// gone is taken as it is now: the marker is written again (what the
    /// scan then finds gone is still subject to the deletion guard).
    pub fn rescan_folder(&self, id: &str) -> Result<(), NodeError> {
        let config = folder::get(&lock(&self.store), id)?;
        if config.paused {
            return Err(NodeError::Paused(id.to_string()));
        }
        if folder::marker::retake(&lock(&self.store), id, &config.path)? {
            super::watching::marker_back(&self.shared, id);
        }
        let watched = lock(&self.sync)
            .as_ref()
            .is_some_and(|rt| rt.rescan_folder(id));
        if watched {
            Ok(())
        } else {
            Err(NodeError::NotWatched(id.to_string()))
        }
    }

    fn watch(&self, config: FolderConfig) {
        if let Some(rt) = lock(&self.sync).as_mut() {
            rt.add_folder(config);
        }
    }

    fn unwatch(&self, id: &str) {
        if let Some(rt) = lock(&self.sync).as_mut() {
            rt.drop_folder(id);
        }
    }

    /// What happened on this node, for clients to follow.
    pub fn events(&self) -> &super::events::EventLog {
        &self.shared.events
    }

    /// Compare the status now with the one seen last time and record the
    /// folder-level events (states, errors, files waiting, offers, held
    /// deletions): what
    /// a caller that serves the event stream runs every second or so.
    pub fn observe(&self) -> Result<(), NodeError> {
        let status = self.status()?;
        self.shared.events.observe(&status);
        Ok(())
    }

    /// The app's key/values changed (an app wrote one): peers are hinted.
    pub fn values_changed(&self) {
        self.shared.changed(crate::folder::values::APP_SPACE);
    }

    /// The node's state now: every folder's, the peers', the log's and the
    /// transfer counters. `invites_outstanding` is left 0 for the caller
    /// that issues invitations to fill in.
    pub fn status(&self) -> Result<NodeStatus, NodeError> {
        use std::sync::atomic::Ordering::Relaxed;
        let peers = self.mesh.statuses();
        self.tally_gate.wait();
        let mut store = lock(&self.store);
        let folders = folder::list(&store)?
            .iter()
            .map(|f| self.folder_status(&mut store, f))
            .collect();
        let s = &self.shared;
        let (offers, refused_not_member, refused_paths) = {
            let engine = lock(&s.engine);
            (
                super::offers::visible(&store, engine.offers()),
                engine.refused_requests,
                engine.refused_paths,
            )
        };
        Ok(NodeStatus {
            node: self.own.to_string(),
            name: self.name.clone(),
            listen: self.addr.to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            peers_trusted: peers.len(),
            peers_connected: peers
                .iter()
                .filter(|p| p.state == PeerState::Connected)
                .count(),
            folders,
            wal_dir: store.config().wal_dir(),
            wal_last_seq: store.last_seq().0,
            sync_pending: SyncEngine::pending(&mut store) as usize,
            sync_files_done: s.files_done.load(Relaxed),
            sync_bytes_fetched: s.bytes_fetched.load(Relaxed),
            sync_bytes_reused: s.bytes_reused.load(Relaxed),
            invites_outstanding: 0,
            offers,
            refused_not_member,
            refused_paths,
            discovery: self.with_discovery(|d| DiscoveryStatus {
                port: d.config().port,
                interval_s: d.config().timing.interval.as_secs_f64(),
                nearby: d.nearby().len(),
                stats: d.stats(),
            }),
        })
    }

    /// One folder's state: paused, in error, scanning, syncing (with what
    /// is left) or up to date; its size; what fails; what is not synced.
    /// Costs the same whatever the folder's size: the file counts are the
    /// store's running totals, the progress the engine's (see
    /// [`SyncEngine::progress`]).
    fn folder_status(&self, store: &mut Store, f: &FolderConfig) -> FolderStatus {
        let files = store.tally(
            crate::store::ns::FILES,
            Some(&f.id),
            crate::index::file_tally,
        );
        let (files, bytes) = (files.items, files.bytes);
        let s = &self.shared;
        let progress = lock(&s.engine).progress(store, &f.id);
        let error = lock(&s.folder_errors).get(&f.id).cloned();
        let (not_synced, not_synced_files) = lock(&s.not_synced)
            .get(&f.id)
            .map(|list| {
                let shown = list
                    .iter()
                    .take(NOT_SYNCED_SHOWN)
                    .map(|(path, why)| NotSynced {
                        path: path.clone(),
                        why: why.clone(),
                    })
                    .collect();
                (list.len() as u64, shown)
            })
            .unwrap_or_default();
        let deletions_held = super::guard::held(store, &f.id);
        let state = if f.paused {
            FolderState::Paused
        } else if error.is_some() {
            FolderState::Error
        } else if deletions_held != Default::default() {
            FolderState::DeletionsHeld
        } else if lock(&s.scanning).contains(&f.id) {
            FolderState::Scanning
        } else if progress.needed_files > 0 {
            FolderState::Syncing
        } else {
            FolderState::UpToDate
        };
        FolderStatus {
            id: f.id.clone(),
            path: f.path.clone(),
            paused: f.paused,
            state,
            error,
            files,
            bytes,
            progress,
            not_synced,
            not_synced_files,
            kind: f.kind,
            members: f.members.iter().map(|m| m.to_string()).collect(),
            remote_differs: SyncEngine::remote_differs(store, &f.id).items,
            locally_changed: lock(&s.engine).locally_changed(store, &f.id),
            deletions_held,
            conflicts: store
                .tally(
                    crate::store::ns::FILES,
                    Some(&f.id),
                    crate::index::conflict_tally,
                )
                .items,
        }
    }

    /// Stop discovery, syncing and the transport (peers are told goodbye,
    /// waiting at most `grace`).
    pub async fn stop(&self, grace: Duration) {
        *lock(&self.discovery) = None;
        let sync = lock(&self.sync).take();
        if let Some(sync) = sync {
            sync.stop();
        }
        self.mesh.shutdown(grace).await;
    }
}
