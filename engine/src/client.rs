//! # client — the developer-facing SDK
//!
//! [`Client`] is a whole node in one value: it hides the wiring of
//! identity, store, sync, transport and discovery behind a small API, as
//! the original design's SDK does (`open`, `put`, `get`, `tick`,
//! `start_transport`, `start_discovery`, `refresh_node_info`):
//!
//! ```no_run
//! use softadastra::client::{Client, ClientOptions};
//!
//! let mut client = Client::open(ClientOptions::new("/tmp/my-node"))?;
//! client.put("user:1", "Gaspard")?;            // durable before it returns
//! assert_eq!(client.get("user:1").as_deref(), Some(&b"Gaspard"[..]));
//! let addr = client.start_transport()?;        // now peers can sync
//! println!("{} listening on {addr}", client.node_id());
//! # Ok::<(), softadastra::client::ClientError>(())
//! ```
//!
//! Local first: `put` and `remove` are accepted once they are in the WAL,
//! with or without a network. Key/values go through the same WAL, store
//! and sync engine as files (see [`crate::folder::values`]): peers that
//! trust each other exchange them over QUIC with mutual TLS, concurrent
//! writes keep one winner everywhere and the other value under a conflict
//! key. [`Client::add_folder`] shares a directory as the agent does.
//!
//! The API is blocking: a client owns its async runtime (two worker
//! threads), so call it from ordinary threads — from async code, through
//! `spawn_blocking`, and drop it outside any async runtime.
//!
//! The home directory has the agent's layout (identity files at its root,
//! the store in `store/`), so a client can open an agent's home while no
//! agent runs on it — the store lock keeps two writers apart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::core::{Clock, ErrorContext, NodeId, Retry, Seq, SystemClock, lock};
use crate::discovery::service::DiscoveryConfig;
use crate::folder::values::{self, APP_SPACE};
use crate::folder::{self, FolderConfig, FolderError};
use crate::metadata::{self, NodeInfo};
use crate::runtime::RuntimeOptions;
use crate::runtime::conflicts::{self, Conflict, Keep, Settled};
use crate::runtime::guard::Decided;
use crate::runtime::history;
use crate::runtime::node::{Node, NodeError, NodeOptions};
use crate::runtime::trust::{self, TrustError};
use crate::store::{Store, StoreConfig, StoreError};
use crate::sync::SyncEngine;
use crate::transport::TransportError;
use crate::transport::identity::Identity;
use crate::transport::mesh::{PeerState, PeerStatus};
use crate::transport::quic::QuicConfig;
use crate::transport::tls::TrustedIds;

/// How to open a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The node's home: identity files and `store/`. Created if missing.
    pub home: PathBuf,
    /// Display name given to a node created now (default: the host name).
    pub name: Option<String>,
    /// Where [`Client::start_transport`] listens (default `0.0.0.0:7420`;
    /// port 0 picks a free one).
    pub listen: SocketAddr,
    /// LAN discovery settings for [`Client::start_discovery`].
    pub discovery: DiscoveryConfig,
    /// How the sync runtime behaves (trash retention).
    pub runtime: RuntimeOptions,
}

impl ClientOptions {
    /// Defaults for a node whose home is `home`.
    pub fn new(home: impl Into<PathBuf>) -> ClientOptions {
        ClientOptions {
            home: home.into(),
            name: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 7420)),
            discovery: DiscoveryConfig::default(),
            runtime: RuntimeOptions::default(),
        }
    }

    /// The same with a display name for a node created now.
    pub fn name(mut self, name: impl Into<String>) -> ClientOptions {
        self.name = Some(name.into());
        self
    }

    /// The same listening on `addr`.
    pub fn listen(mut self, addr: SocketAddr) -> ClientOptions {
        self.listen = addr;
        self
    }
}

/// What went wrong in a [`Client`] call. Each variant keeps the lower
/// layer's error as its source.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The identity could not be created or loaded, or the endpoint could
    /// not start.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The store failed; the call changed nothing.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A folder or key/value operation was refused or failed.
    #[error(transparent)]
    Folder(#[from] FolderError),
    /// The trust list refused the change.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A system resource (async runtime, discovery socket) is unavailable.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being started.
        what: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A decision about held deletions could not be made.
    #[error(transparent)]
    Guard(#[from] crate::runtime::guard::GuardError),
    /// A conflict could not be listed or settled.
    #[error(transparent)]
    Conflict(#[from] crate::runtime::conflicts::ConflictError),
    /// A file's history could not be read or a version restored.
    #[error(transparent)]
    History(#[from] crate::runtime::history::HistoryError),
    /// A call that needs the transport came before [`Client::start_transport`].
    #[error("the transport is not started: call start_transport() first")]
    TransportNotStarted,
}

impl From<NodeError> for ClientError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Transport(e) => ClientError::Transport(e),
            NodeError::Trust(e) => ClientError::Trust(e),
            NodeError::Folder(e) => ClientError::Folder(e),
            NodeError::Sync(crate::sync::SyncError::Store(e)) => ClientError::Store(e),
            NodeError::Sync(crate::sync::SyncError::Folder(e)) => ClientError::Folder(e),
            NodeError::Guard(e) => ClientError::Guard(e),
            NodeError::Conflict(e) => ClientError::Conflict(e),
            NodeError::History(e) => ClientError::History(e),
            // The client asks for no rescan.
            e @ (NodeError::Paused(_)
            | NodeError::NotWatched(_)
            | NodeError::NoOffer(_)
            | NodeError::WrongType { .. }
            | NodeError::Revert(_)) => ClientError::Folder(FolderError::BadPath {
                path: PathBuf::new(),
                reason: e.to_string(),
            }),
        }
    }
}

impl ErrorContext for ClientError {
    fn retry(&self) -> Retry {
        match self {
            ClientError::Store(e) => e.retry(),
            ClientError::Folder(e) => e.retry(),
            ClientError::Io { .. } => Retry::Later,
            ClientError::Guard(e) if e.retry() => Retry::Later,
            ClientError::Conflict(e) if e.retry() => Retry::Later,
            ClientError::History(e) if e.retry() => Retry::Later,
            _ => Retry::Never,
        }
    }
    fn is_corruption(&self) -> bool {
        match self {
            ClientError::Store(e) => e.is_corruption(),
            ClientError::Folder(e) => e.is_corruption(),
            _ => false,
        }
    }
}

/// A peer as the client sees it.
pub type Peer = PeerStatus;

/// What a [`Client::tick`] did and where things stand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickResult {
    /// Sync messages and file work handed out by this step.
    pub batch_size: usize,
    /// Requests and work handed out again after a timeout or failure.
    pub retried: usize,
    /// Work dropped because it was settled meanwhile.
    pub pruned: usize,
    /// Peers connected now.
    pub peers_connected: usize,
    /// Files still to fetch, place or remove, over all folders.
    pub pending_files: usize,
    /// The store's last WAL sequence.
    pub last_seq: u64,
    /// Whether a store checkpoint was made.
    pub checkpointed: bool,
}

/// A Softadastra node embedded in an application.
pub struct Client {
    options: ClientOptions,
    identity: Identity,
    store: Arc<Mutex<Store>>,
    started_at_ms: u64,
    info: NodeInfo,
    // Declared before the runtime, so it is dropped inside it.
    node: Option<Node>,
    rt: tokio::runtime::Runtime,
}

impl Client {
    /// Open (creating if needed) the node whose home is `options.home`:
    /// identity, then the store, recovered from its on-disk index and WAL.
    /// Fails if another process holds the store.
    pub fn open(options: ClientOptions) -> Result<Client, ClientError> {
        let home = &options.home;
        let identity = match Identity::load(home)? {
            Some(i) => i,
            None => {
                let name = options.name.clone().unwrap_or_else(metadata::hostname);
                Identity::create(home, &name)?
            }
        };
        let mut config = StoreConfig::new(home.join("store"));
        config.node = identity.node_id();
        // App values are checked against the index when the sync runtime
        // starts (`start_transport`): only syncing reads the index.
        let (mut store, _recovery) = Store::open_dir(config)?;
        crate::runtime::trust::upgrade_membership(&mut store)?;
        let rt = crate::runtime::node::async_runtime("softadastra-client").map_err(|source| {
            ClientError::Io {
                what: "start the async runtime",
                source,
            }
        })?;
        let started_at_ms = SystemClock.wall().as_nanos() / 1_000_000;
        let info = NodeInfo::from_hello(
            &metadata::local_hello(&identity, started_at_ms),
            started_at_ms,
        );
        Ok(Client {
            options,
            identity,
            store: Arc::new(Mutex::new(store)),
            started_at_ms,
            info,
            node: None,
            rt,
        })
    }

    /// This node's id (what peers trust).
    pub fn node_id(&self) -> NodeId {
        self.identity.node_id()
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        &self.options.home
    }

    /// Set `key` to `value`. Durable in the WAL when this returns; sent to
    /// connected peers at once, to others when they connect. Keys are 1–1024
    /// bytes without control characters; values at most 256 KiB.
    pub fn put(&self, key: &str, value: impl AsRef<[u8]>) -> Result<Seq, ClientError> {
        let seq = values::put(&mut lock(&self.store), self.node_id(), key, value.as_ref())?;
        self.changed();
        Ok(seq)
    }

    /// The value of `key`, if it has one.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        values::get(&lock(&self.store), key)
    }

    /// Remove `key` (the removal syncs as a tombstone). False if it had no
    /// value.
    pub fn remove(&self, key: &str) -> Result<bool, ClientError> {
        let removed = values::remove(&mut lock(&self.store), self.node_id(), key)?.is_some();
        if removed {
            self.changed();
        }
        Ok(removed)
    }

    /// Keys starting with `prefix`, in order, with their values.
    pub fn list(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        values::list(&lock(&self.store), prefix)
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    fn changed(&self) {
        if let Some(node) = &self.node {
            node.shared().changed(APP_SPACE);
        }
    }

    /// One step, now: the sync engine retries what timed out, polls peers
    /// and hands out due work (the transport also does this by itself every
    /// 200 ms); the store checkpoints its index and compacts its WAL when due. Reports
    /// what was done and what is pending.
    pub fn tick(&self) -> Result<TickResult, ClientError> {
        let mut result = TickResult::default();
        if let Some(node) = &self.node {
            let shared = node.shared();
            let _guard = self.rt.enter();
            match crate::runtime::step(shared) {
                Ok(r) => {
                    result.batch_size = r.batch_size;
                    result.retried = r.retried;
                    result.pruned = r.pruned;
                }
                Err(e) => tracing::warn!(error = %e, "sync tick failed"),
            }
            result.peers_connected = lock(&shared.peers).len();
        }
        let mut store = lock(&self.store);
        result.checkpointed = store.maybe_checkpoint()?.is_some();
        result.pending_files = SyncEngine::needs(&store).len();
        result.last_seq = store.last_seq().0;
        Ok(result)
    }

    /// Listen for and connect to trusted peers over QUIC (mutual TLS, each
    /// side pinned to the other's node id) and sync with them: the app's
    /// key/values and every shared folder. Returns the address bound.
    /// Calling it again returns the same address.
    pub fn start_transport(&mut self) -> Result<SocketAddr, ClientError> {
        if let Some(node) = &self.node {
            return Ok(node.addr());
        }
        let hello = metadata::local_hello(&self.identity, self.started_at_ms);
        let options = NodeOptions {
            listen: self.options.listen,
            runtime: self.options.runtime,
            quic: QuicConfig::default(),
            // An embedded node pairs through `trust`, not invitations.
            on_join: None,
            trusted: TrustedIds::default(),
        };
        let _guard = self.rt.enter();
        let node = Node::start(&self.identity, hello, self.store.clone(), options)?;
        let addr = node.addr();
        self.node = Some(node);
        Ok(addr)
    }

    /// Announce this node on the LAN and listen for others (UDP multicast
    /// and broadcast, [`ClientOptions::discovery`]); trusted peers heard
    /// are dialled where they were heard. Needs the transport (it announces
    /// its port). Calling it again changes nothing.
    pub fn start_discovery(&mut self) -> Result<(), ClientError> {
        let Some(node) = &self.node else {
            return Err(ClientError::TransportNotStarted);
        };
        let _guard = self.rt.enter();
        node.start_discovery(self.options.discovery.clone())
            .map_err(|source| ClientError::Io {
                what: "start LAN discovery",
                source,
            })
    }

    /// Trust `peer` (its node id, as its owner reads it from
    /// [`Client::node_id`]), optionally at `addr` (dialled; without one it
    /// must dial us or be discovered). Takes effect at once if the
    /// transport runs.
    pub fn trust(&self, peer: NodeId, addr: Option<SocketAddr>) -> Result<(), ClientError> {
        let addr = addr.map(|a| a.to_string());
        match &self.node {
            Some(node) => {
                let _guard = self.rt.enter();
                node.trust(peer, addr)?;
            }
            None => {
                trust::add(&mut lock(&self.store), self.node_id(), peer, addr)?;
            }
        }
        Ok(())
    }

    /// Stop trusting `peer` (its connection, if any, is closed).
    pub fn untrust(&self, peer: NodeId) -> Result<(), ClientError> {
        match &self.node {
            Some(node) => {
                let _guard = self.rt.enter();
                node.untrust(peer)?;
            }
            None => trust::remove(&mut lock(&self.store), peer)?,
        }
        Ok(())
    }

    /// Every trusted peer and its state. Before the transport starts they
    /// are all `stopped`.
    pub fn peers(&self) -> Result<Vec<Peer>, ClientError> {
        if let Some(node) = &self.node {
            return Ok(node.peers());
        }
        Ok(trust::list(&lock(&self.store))?
            .into_iter()
            .map(|p| PeerStatus::new(p.id, p.addr, PeerState::Stopped))
            .collect())
    }

    /// Peers connected now.
    pub fn connected_peers(&self) -> Vec<NodeId> {
        self.node.as_ref().map_or_else(Vec::new, |n| {
            lock(&n.shared().peers).keys().copied().collect()
        })
    }

    /// What this node says about itself, as of the last
    /// [`Client::refresh_node_info`] (or `open`).
    pub fn node_info(&self) -> &NodeInfo {
        &self.info
    }

    /// Describe this node again now (host name, uptime).
    pub fn refresh_node_info(&mut self) -> &NodeInfo {
        let now_ms = SystemClock.wall().as_nanos() / 1_000_000;
        self.info = NodeInfo::from_hello(
            &metadata::local_hello(&self.identity, self.started_at_ms),
            now_ms,
        );
        &self.info
    }

    /// Share the directory `path` as folder `id` (derived from its name if
    /// `None`), as `softadastra folder add` does; synced at once if the
    /// transport runs, with the devices it is shared with
    /// ([`Client::share_folder`]) that have a folder with that id.
    pub fn add_folder(
        &mut self,
        path: &Path,
        id: Option<&str>,
    ) -> Result<FolderConfig, ClientError> {
        if let Some(node) = &self.node {
            let _guard = self.rt.enter();
            return Ok(node.add_folder(path, id)?);
        }
        Ok(folder::share(&mut lock(&self.store), path, id)?)
    }

    /// Share folder `id` with the trusted device `peer` (`member`), or stop
    /// sharing it, as `softadastra folder share`/`unshare` do. A folder is
    /// shared with no device until this is called. Returns whether
    /// anything changed.
    pub fn share_folder(&self, id: &str, peer: NodeId, member: bool) -> Result<bool, ClientError> {
        if let Some(node) = &self.node {
            let _guard = self.rt.enter();
            return Ok(node.set_member(id, peer, member)?);
        }
        let mut store = lock(&self.store);
        if member && !trust::is_trusted(&store, peer) {
            return Err(TrustError::NotTrusted(peer).into());
        }
        let changed = crate::index::members::set_member(&mut store, id, peer, member)?;
        if changed && !member {
            crate::sync::forget_peer_folder(&mut store, id, peer)?;
        }
        Ok(changed)
    }

    /// Let the deletions the deletion guard holds for folder `id` go
    /// ahead, as `softadastra folder accept-deletions` does.
    pub fn accept_deletions(&self, id: &str) -> Result<Decided, ClientError> {
        if let Some(node) = &self.node {
            let _guard = self.rt.enter();
            return Ok(node.accept_deletions(id)?);
        }
        let mut engine = self.offline_engine();
        Ok(crate::runtime::guard::accept(&mut engine, &mut lock(&self.store), id)?.0)
    }

    /// Undo the deletions the deletion guard holds for folder `id`, as
    /// `softadastra folder restore-deletions` does.
    pub fn restore_deletions(&self, id: &str) -> Result<Decided, ClientError> {
        if let Some(node) = &self.node {
            let _guard = self.rt.enter();
            return Ok(node.restore_deletions(id)?);
        }
        let mut engine = self.offline_engine();
        Ok(crate::runtime::guard::restore(&mut engine, &mut lock(&self.store), id)?.0)
    }

    /// Every conflict of folder `id`, or of every folder, as `softadastra
    /// conflicts` lists them.
    pub fn conflicts(&self, id: Option<&str>) -> Result<Vec<Conflict>, ClientError> {
        Ok(conflicts::list_of(&lock(&self.store), self.node_id(), id)?)
    }

    /// Settle the conflict of the file (or conflict copy) at `path`,
    /// keeping `keep`, as `softadastra conflicts resolve` does.
    pub fn resolve_conflict(&self, path: &Path, keep: Keep) -> Result<Settled, ClientError> {
        if let Some(node) = &self.node {
            let _guard = self.rt.enter();
            return Ok(node.settle_conflict(path, keep)?);
        }
        Ok(conflicts::settle_at(&self.store, None, self.node_id(), path, keep)?.1)
    }

    /// The kept versions of the file at `path` (in a shared folder),
    /// newest first, as `softadastra history` lists them.
    pub fn history(&self, path: &Path) -> Result<Vec<history::Version>, ClientError> {
        Ok(history::versions_at(&lock(&self.store), path)?)
    }

    /// Restore version `pick` of the file at `path`, in place (an ordinary
    /// change that syncs) or to `to`, as `softadastra restore` does.
    pub fn restore(
        &self,
        path: &Path,
        pick: history::Pick,
        to: Option<&Path>,
    ) -> Result<history::Restored, ClientError> {
        if let Some(node) = &self.node {
            let _guard = self.rt.enter();
            return Ok(node.restore(path, pick, to)?);
        }
        Ok(history::restore_at(&self.store, None, self.node_id(), path, pick, to)?.1)
    }

    /// Put folder `id` back as it was at `at` (ns since the epoch; see
    /// [`history::parse_time`]), or with `dry_run` only say what that
    /// would do, as `softadastra restore --folder` does.
    pub fn restore_folder(
        &self,
        id: &str,
        at: u64,
        dry_run: bool,
    ) -> Result<history::FolderRestore, ClientError> {
        if let Some(node) = &self.node {
            let _guard = self.rt.enter();
            return Ok(node.restore_folder(id, at, dry_run)?);
        }
        let chunks = Default::default();
        Ok(history::restore_folder(
            &self.store,
            &chunks,
            self.node_id(),
            id,
            at,
            dry_run,
        )?)
    }

    /// Keep (or not) the versions that edits and deletions made on this
    /// device replace in folder `id`, as `softadastra folder versions ID
    /// --local on|off` does; kept by default.
    pub fn keep_local_versions(&self, id: &str, on: bool) -> Result<(), ClientError> {
        let mut store = lock(&self.store);
        folder::get(&store, id)?;
        Ok(crate::index::retention::set_keeps_local_edits(
            &mut store, id, on,
        )?)
    }

    /// An engine for a decision made while the network is not started:
    /// its bookkeeping is in the store, which the node reads when it starts.
    fn offline_engine(&self) -> crate::sync::SyncEngine {
        crate::sync::SyncEngine::new(self.node_id(), crate::sync::SyncConfig::default(), 0)
    }

    /// The folders this node shares.
    pub fn folders(&self) -> Result<Vec<FolderConfig>, ClientError> {
        Ok(folder::list(&lock(&self.store))?)
    }

    /// Stop discovery, sync and transport (peers are told goodbye), then
    /// release the store. Dropping a client does the same, less politely.
    pub fn close(mut self) {
        self.stop_network();
    }

    fn stop_network(&mut self) {
        if let Some(node) = self.node.take() {
            self.rt.block_on(node.stop(Duration::from_millis(500)));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop_network();
    }
}
