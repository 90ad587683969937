//! `softadastra run`: the node in the foreground, and the commands that
//! talk to it (`invite`, `join`, `peers`, `status`, `shutdown`).
//!
//! `run` opens the store (holding its lock, so a second `run` on the same
//! home is refused), listens for QUIC, keeps a connection to every trusted
//! peer through the engine's [`Mesh`], serves the control socket, logs each
//! state change, and stops cleanly on SIGINT, SIGTERM or `shutdown`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde_json::json;
use softadastra::core::{Clock, NodeId, SystemClock, lock};
use softadastra::discovery::service::{Discovery, DiscoveryConfig};
use softadastra::discovery::{Nearby, Timing};
use softadastra::folder;
use softadastra::metadata::{NodeInfo, NodeMeta};
use softadastra::runtime::{RuntimeOptions, SyncRuntime};
use softadastra::store::Store;
use softadastra::sync::SyncEngine;
use softadastra::transport::identity::Identity;
use softadastra::transport::mesh::{JoinHandler, Mesh, PeerStatus};
use softadastra::transport::pairing::{DEFAULT_INVITE_TTL, Invitations, Invite};
use softadastra::transport::quic::{Endpoint, QuicConfig};
use softadastra::transport::tls::TrustedIds;
use softadastra::transport::trust;
use softadastra::transport::wire::Hello;
use tracing::{info, warn};

use crate::control::{self, FolderChange, Reached, Request};
use crate::home::Home;
use crate::store_cmd::open_store;

/// The default QUIC port.
pub const DEFAULT_PORT: u16 = 7420;

fn hello_of(identity: &Identity) -> Hello {
    softadastra::metadata::local_hello(identity, started_at_ms())
}

/// When this process started (Unix milliseconds).
fn started_at_ms() -> u64 {
    static AT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *AT.get_or_init(|| SystemClock.wall().as_nanos() / 1_000_000)
}

/// LAN discovery options of `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct DiscoveryArgs {
    /// Do not announce this node on the LAN nor listen for others
    /// (configured peers are still dialled).
    #[arg(
        long,
        env = "SOFTADASTRA_NO_DISCOVERY",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    no_discovery: bool,
    /// UDP port of LAN discovery (default 7421).
    #[arg(long, value_name = "PORT")]
    discovery_port: Option<u16>,
    /// Seconds between announcements (default 5; a node is stale after 3
    /// missed, and forgotten after 8).
    #[arg(long, value_name = "SECONDS", value_parser = parse_interval)]
    discovery_interval: Option<f64>,
    /// Announce only on this interface (repeatable; default: every
    /// interface that is up, loopback aside).
    #[arg(long, value_name = "NAME")]
    discovery_interface: Vec<String>,
}

fn parse_interval(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.05..=3600.0).contains(&s) => Ok(s),
        Ok(s) => Err(format!("{s} s is out of range: 0.05 to 3600 seconds")),
        Err(_) => Err(format!("{text:?} is not a number of seconds")),
    }
}

/// The running agent, as the control socket sees it.
struct Daemon {
    identity: Identity,
    sync: Arc<softadastra::runtime::Shared>,
    runtime: Mutex<Option<SyncRuntime>>,
    store: Arc<Mutex<Store>>,
    mesh: Mesh,
    trusted: TrustedIds,
    invitations: Arc<Invitations>,
    listen: SocketAddr,
    started: Instant,
    stop: tokio::sync::Notify,
    discovery: Option<Discovery>,
}

/// What a successful join did.
#[derive(Debug, Serialize)]
struct Joined {
    inviter: String,
    name: String,
    addr: String,
    folder: Option<String>,
    path: Option<PathBuf>,
}

/// Redeem `code` from `endpoint`, then trust the inviter (and share its
/// folder at `path`) in `store`.
async fn join(
    endpoint: &Endpoint,
    port: u16,
    store: &Mutex<Store>,
    code: &str,
    path: Option<PathBuf>,
) -> Result<(Joined, NodeId, String)> {
    let invite = Invite::parse(code)?;
    let own = endpoint.node_id();
    if invite.inviter == own {
        bail!(
            "this invite was issued by this very node; run `softadastra join` on the other machine"
        );
    }
    if path.is_some() && invite.folder.is_none() {
        bail!(
            "this invite shares no folder, so there is nowhere to put {}: join without a path, or ask for `softadastra invite --folder ID`",
            path.as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    let (hello, folder, addr) = endpoint.join(&invite, port).await?;
    let addr_text = addr.to_string();
    {
        let mut store = lock(store);
        trust::add(&mut store, own, invite.inviter, Some(addr_text.clone()))?;
        if let (Some(id), Some(p)) = (&folder, &path) {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
            folder::add(&mut store, id, p)?;
        }
    }
    Ok((
        Joined {
            inviter: invite.inviter.to_string(),
            name: hello.name,
            addr: addr_text.clone(),
            folder,
            path,
        },
        invite.inviter,
        addr_text,
    ))
}

/// Addresses to put in an invite: the listening address, or when it is a
/// wildcard, every non-loopback address of the machine (loopback if there
/// is nothing else), each with the listening port.
fn invite_addrs(listen: SocketAddr, extra: &[String]) -> Result<Vec<SocketAddr>> {
    let mut addrs = Vec::new();
    for a in extra {
        addrs.push(
            a.parse::<SocketAddr>()
                .with_context(|| format!("invalid --addr {a:?}: expected IP:PORT"))?,
        );
    }
    if !listen.ip().is_unspecified() {
        addrs.push(listen);
        return Ok(addrs);
    }
    let v4_only = listen.is_ipv4();
    let mut found: Vec<SocketAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| !(ip.is_loopback() || v4_only && ip.is_ipv6()))
        // Link-local IPv6 needs a scope id the code cannot carry.
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
        .map(|ip| SocketAddr::new(ip, listen.port()))
        .collect();
    if found.is_empty() {
        found.push(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), listen.port()));
    }
    addrs.extend(found);
    Ok(addrs)
}

impl Daemon {
    /// One folder's state for `status`: up to date, scanning, syncing (with
    /// what is left), paused or error; its size; what is failing.
    fn folder_status(&self, store: &Store, f: &folder::FolderConfig) -> serde_json::Value {
        let (mut files, mut bytes) = (0u64, 0u64);
        for (_, r) in folder::records(store, &f.id).flatten() {
            if !r.deleted && r.kind == softadastra::fs::scan::EntryKind::File {
                files += 1;
                bytes += r.size;
            }
        }
        let progress = lock(&self.sync.engine).progress(store, &f.id);
        let error = lock(&self.sync.folder_errors).get(&f.id).cloned();
        // What the scans leave out for good, and why (a name that cannot
        // be synced, a special file, a node's home).
        let (not_synced, not_synced_files) = lock(&self.sync.not_synced)
            .get(&f.id)
            .map(|list| {
                let shown: Vec<_> = list
                    .iter()
                    .take(NOT_SYNCED_SHOWN)
                    .map(|(path, why)| json!({"path": path, "why": why}))
                    .collect();
                (list.len(), shown)
            })
            .unwrap_or_default();
        let state = if f.paused {
            "paused"
        } else if error.is_some() {
            "error"
        } else if lock(&self.sync.scanning).contains(&f.id) {
            "scanning"
        } else if progress.needed_files > 0 {
            "syncing"
        } else {
            "up to date"
        };
        json!({
            "id": f.id,
            "path": f.path,
            "paused": f.paused,
            "state": state,
            "error": error,
            "files": files,
            "bytes": bytes,
            "progress": progress,
            "not_synced": not_synced,
            "not_synced_files": not_synced_files,
        })
    }
}

/// How many of a folder's paths that are not synced `status` lists.
const NOT_SYNCED_SHOWN: usize = 20;

impl control::Handler for Daemon {
    async fn handle(&self, request: Request) -> Result<serde_json::Value> {
        let own = self.identity.node_id();
        Ok(match request {
            Request::Status => {
                let peers = self.mesh.statuses();
                let store = lock(&self.store);
                let folders = folder::list(&store)?;
                json!({
                    "node": own.to_string(),
                    "name": self.identity.name(),
                    "listen": self.listen.to_string(),
                    "uptime_secs": self.started.elapsed().as_secs(),
                    "peers_trusted": peers.len(),
                    "peers_connected": peers.iter().filter(|p| p.state == softadastra::transport::mesh::PeerState::Connected).count(),
                    "folders": folders.iter().map(|f| self.folder_status(&store, f)).collect::<Vec<_>>(),
                    "wal_dir": store.config().wal_dir(),
                    "wal_last_seq": store.last_seq().0,
                    "sync_pending": SyncEngine::needs(&store).len(),
                    "sync_files_done": self.sync.files_done.load(std::sync::atomic::Ordering::Relaxed),
                    "sync_bytes_fetched": self.sync.bytes_fetched.load(std::sync::atomic::Ordering::Relaxed),
                    "sync_bytes_reused": self.sync.bytes_reused.load(std::sync::atomic::Ordering::Relaxed),
                    "invites_outstanding": self.invitations.outstanding(SystemClock.wall()),
                    "discovery": self.discovery.as_ref().map(|d| json!({
                        "port": d.config().port,
                        "interval_s": d.config().timing.interval.as_secs_f64(),
                        "nearby": d.nearby().len(),
                        "stats": d.stats(),
                    })),
                })
            }
            Request::Node => {
                let now_ms = SystemClock.wall().as_nanos() / 1_000_000;
                let mut info =
                    serde_json::to_value(NodeInfo::from_hello(&hello_of(&self.identity), now_ms))?;
                info["running"] = json!(true);
                info["listen"] = json!(self.listen.to_string());
                info
            }
            Request::Peers => serde_json::to_value(peer_rows(
                self.mesh.statuses(),
                self.discovery
                    .as_ref()
                    .map(Discovery::nearby)
                    .unwrap_or_default(),
            ))?,
            Request::Invite {
                folder: shared,
                ttl_secs,
                addrs,
            } => {
                if let Some(id) = &shared {
                    folder::get(&lock(&self.store), id)?;
                }
                let ttl = Duration::from_secs(ttl_secs.clamp(10, 7 * 24 * 3600));
                let invite = self.invitations.issue(
                    own,
                    invite_addrs(self.listen, &addrs)?,
                    shared,
                    ttl,
                    SystemClock.wall(),
                )?;
                info!(folder = ?invite.folder, ttl_secs = ttl.as_secs(), "invite issued");
                json!({
                    "code": invite.to_code(),
                    "expires_in_secs": ttl.as_secs(),
                    "addrs": invite.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "folder": invite.folder,
                })
            }
            Request::Join { code, path } => {
                let (joined, id, addr) = join(
                    self.mesh.endpoint(),
                    self.listen.port(),
                    &self.store,
                    &code,
                    path,
                )
                .await?;
                self.trusted.insert(id);
                self.mesh.add_peer(id, Some(addr));
                if let Some(f) = &joined.folder
                    && joined.path.is_some()
                {
                    let config = folder::get(&lock(&self.store), f)?;
                    if let Some(rt) = lock(&self.runtime).as_mut() {
                        rt.add_folder(config);
                    }
                }
                serde_json::to_value(joined)?
            }
            Request::PeerAdd { id, addr } => {
                let id: NodeId = id.parse()?;
                let peer = trust::add(&mut lock(&self.store), own, id, addr)?;
                self.trusted.insert(id);
                self.mesh.add_peer(id, peer.addr.clone());
                // Heard on the LAN already: no address needed.
                let seen = self.discovery.as_ref().and_then(|d| d.get(&id));
                if let Some(n) = &seen {
                    self.mesh.discovered(id, n.addr);
                }
                json!({"id": id.to_string(), "addr": peer.addr, "discovered": seen.map(|n| n.addr.to_string())})
            }
            Request::PeerRemove { id } => {
                let id: NodeId = id.parse()?;
                trust::remove(&mut lock(&self.store), id)?;
                let remaining = trust::list(&lock(&self.store))?;
                self.trusted.replace(remaining.iter().map(|p| p.id));
                self.mesh.remove_peer(id);
                json!({"id": id.to_string()})
            }
            Request::FolderAdd { path, id } => {
                let id = id.unwrap_or_else(|| folder::derive_id(&path));
                let config = folder::add(&mut lock(&self.store), &id, &path)?;
                if let Some(rt) = lock(&self.runtime).as_mut() {
                    rt.add_folder(config.clone());
                }
                info!(folder = %config.id, path = %config.path.display(), "sharing a new folder");
                json!({"id": config.id, "path": config.path})
            }
            Request::FolderSet { id, change } => {
                let mut rt = lock(&self.runtime);
                let said = match change {
                    FolderChange::Pause => {
                        folder::set_paused(&mut lock(&self.store), &id, true)?;
                        if let Some(rt) = rt.as_mut() {
                            rt.drop_folder(&id);
                        }
                        format!(
                            "paused {id:?}: not synced until `softadastra folder resume {id}`; peers are told"
                        )
                    }
                    FolderChange::Resume => {
                        let config = folder::set_paused(&mut lock(&self.store), &id, false)?;
                        if let Some(rt) = rt.as_mut() {
                            rt.add_folder(config);
                        }
                        format!("resumed {id:?}: scanning, then syncing")
                    }
                    FolderChange::Remove => {
                        let config = folder::remove(&mut lock(&self.store), &id)?;
                        if let Some(rt) = rt.as_mut() {
                            rt.drop_folder(&id);
                        }
                        format!(
                            "stopped sharing {id:?}; files in {} are untouched",
                            config.path.display()
                        )
                    }
                    FolderChange::Rescan => {
                        let config = folder::get(&lock(&self.store), &id)?;
                        if config.paused {
                            bail!(
                                "{id:?} is paused; `softadastra folder resume {id}` scans and syncs it"
                            );
                        }
                        if !rt.as_ref().is_some_and(|rt| rt.rescan_folder(&id)) {
                            bail!("{id:?} is not being watched (see `softadastra status`)");
                        }
                        format!("rescanning {id:?}; `softadastra status` shows when it is done")
                    }
                };
                info!(folder = %id, change = ?change, "folder changed");
                json!({"id": id, "said": said})
            }
            Request::StoreRead { ns, key, prefix } => {
                let store = lock(&self.store);
                json!(crate::store_cmd::read_rows(
                    &store,
                    &ns,
                    key.as_deref(),
                    &prefix
                ))
            }
            Request::StoreWrite { key, value } => {
                let seq = crate::store_cmd::write_value(
                    &mut lock(&self.store),
                    self.identity.node_id(),
                    &key,
                    value.as_deref(),
                )?;
                if seq.is_some() {
                    self.sync.changed(softadastra::folder::values::APP_SPACE);
                }
                json!(seq)
            }
            Request::Shutdown => {
                self.stop.notify_one();
                json!({"stopping": true})
            }
        })
    }
}

/// A peer as `peers` shows it.
#[derive(Debug, Serialize)]
struct PeerRow {
    id: String,
    name: Option<String>,
    state: String,
    addr: Option<String>,
    remote: Option<String>,
    since_unix_ms: u64,
    version: Option<String>,
    os: Option<String>,
    last_error: Option<String>,
    retry_in_ms: Option<u64>,
    /// Trusted peers first; nearby untrusted nodes (heard on the LAN,
    /// listed for pairing, never synced with) after.
    trusted: bool,
    /// How the live connection came about (configured, discovered, incoming).
    found_by: Option<&'static str>,
    /// LAN discovery's view: discovered, alive or stale (none: not heard).
    lan: Option<&'static str>,
    /// Where discovery heard it.
    lan_addr: Option<String>,
    /// When discovery last heard it.
    last_seen_unix_ms: Option<u64>,
    /// What it said about itself on the last connection.
    info: Option<NodeInfo>,
}

fn peer_rows(statuses: Vec<PeerStatus>, nearby: Vec<Nearby>) -> Vec<PeerRow> {
    let heard: HashMap<NodeId, &Nearby> = nearby.iter().map(|n| (n.id, n)).collect();
    let now_ms = SystemClock.wall().as_nanos() / 1_000_000;
    let mut rows: Vec<PeerRow> = statuses
        .iter()
        .map(|s| {
            let lan = heard.get(&s.id);
            PeerRow {
                id: s.id.to_string(),
                name: s.hello.as_ref().map(|h| h.name.clone()),
                state: s.state.as_str().to_string(),
                addr: s.addr.clone(),
                remote: s.remote.map(|r| r.to_string()),
                since_unix_ms: s.since.as_nanos() / 1_000_000,
                version: s.hello.as_ref().map(|h| h.version.clone()),
                os: s.hello.as_ref().map(|h| h.os.clone()),
                last_error: s.last_error.clone(),
                retry_in_ms: s.retry_in_ms,
                trusted: true,
                found_by: s.found_by,
                lan: lan.map(|n| n.presence.as_str()),
                lan_addr: lan.map(|n| n.addr.to_string()),
                last_seen_unix_ms: lan.map(|n| n.last_seen.as_nanos() / 1_000_000),
                info: s.hello.as_ref().map(|h| NodeInfo::from_hello(h, now_ms)),
            }
        })
        .collect();
    let known: std::collections::HashSet<NodeId> = statuses.iter().map(|s| s.id).collect();
    rows.extend(
        nearby
            .iter()
            .filter(|n| !known.contains(&n.id))
            .map(|n| PeerRow {
                id: n.id.to_string(),
                name: None,
                state: "nearby".into(),
                addr: None,
                remote: None,
                since_unix_ms: n.last_seen.as_nanos() / 1_000_000,
                version: None,
                os: None,
                last_error: None,
                retry_in_ms: None,
                trusted: false,
                found_by: None,
                lan: Some(n.presence.as_str()),
                lan_addr: Some(n.addr.to_string()),
                last_seen_unix_ms: Some(n.last_seen.as_nanos() / 1_000_000),
                info: None,
            }),
    );
    rows
}

/// What `run` was asked to do.
pub struct RunOptions {
    /// Share this directory first.
    pub share: Option<PathBuf>,
    /// Its folder id.
    pub id: Option<String>,
    /// Listening address.
    pub listen: Option<String>,
    /// Trash retention.
    pub trash_days: Option<u32>,
    /// LAN discovery.
    pub lan: DiscoveryArgs,
    /// Show the tray icon too.
    pub tray: bool,
}

/// Open the store for the agent. A one-shot command (`status`, `ls`…)
/// holds the store lock for a moment when no agent runs; starting the
/// agent at that moment waits for it (up to 3 s) instead of failing. A
/// store held longer — another agent — is refused as before.
fn open_store_waiting(home: &Home) -> Result<Store> {
    crate::store_cmd::while_store_in_use(Duration::from_secs(3), || open_store(home))
}

/// `run PATH`: share PATH unless it is already shared (under `id`, if
/// given).
fn share_first(store: &mut Store, path: &std::path::Path, id: Option<String>) -> Result<()> {
    let root = std::fs::canonicalize(path).with_context(|| {
        format!(
            "cannot share {}: it does not exist or cannot be read",
            path.display()
        )
    })?;
    if let Some(f) = folder::list(store)?.into_iter().find(|f| f.path == root) {
        if let Some(want) = id.filter(|want| *want != f.id) {
            bail!(
                "{} is already shared as folder {:?}, not {want:?}; remove it first with `softadastra folder remove {}`",
                root.display(),
                f.id,
                f.id
            );
        }
        eprintln!("sharing {} as folder {:?}", root.display(), f.id);
        return Ok(());
    }
    let id = id.unwrap_or_else(|| folder::derive_id(&root));
    folder::add(store, &id, &root)?;
    eprintln!(
        "now sharing {} as folder {id:?} (share it under the same id on your other machines)",
        root.display()
    );
    Ok(())
}

pub fn run(home: &Home, opts: RunOptions) -> Result<ExitCode> {
    let RunOptions {
        share,
        id,
        listen,
        trash_days,
        lan,
        tray,
    } = opts;
    if tray && !cfg!(feature = "tray") {
        bail!(
            "this softadastra was built without the tray icon; run without --tray, or build with `--features tray`"
        );
    }
    // Flags and environment first, then the config file, then defaults.
    let config = crate::config::Config::load(&home.config)?;
    let listen = Some(listen.unwrap_or(config.node.listen.clone()));
    let trash_days = trash_days.unwrap_or(config.sync.trash_days);
    let lan = LanSettings {
        enabled: !lan.no_discovery && config.discovery.enabled,
        port: lan.discovery_port.unwrap_or(config.discovery.port),
        interval: lan
            .discovery_interval
            .unwrap_or(config.discovery.interval_secs),
        interfaces: if lan.discovery_interface.is_empty() {
            config.discovery.interfaces.clone()
        } else {
            lan.discovery_interface
        },
    };
    let options = RuntimeOptions {
        trash_keep: Duration::from_secs(u64::from(trash_days) * 24 * 3600),
        stall: Duration::from_secs_f64(config.sync.stall_secs),
    };
    let identity = home.identity()?;
    let mut store = open_store_waiting(home)?;
    if let Some(path) = &share {
        share_first(&mut store, path, id)?;
    }
    let peers = trust::list(&store)?;
    let trusted = TrustedIds::new(peers.iter().map(|p| p.id));
    let listen: SocketAddr = match listen {
        Some(l) => l.parse().with_context(|| {
            format!("invalid --listen {l:?}: expected IP:PORT, e.g. 0.0.0.0:{DEFAULT_PORT}")
        })?,
        None => SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(softadastra::runtime::BLOCKING_THREADS)
        .enable_all()
        .build()?;
    let store = Arc::new(Mutex::new(store));
    let result = runtime.block_on(async {
        let endpoint = Endpoint::bind(
            listen,
            identity.clone(),
            trusted.clone(),
            hello_of(&identity),
            QuicConfig::default(),
        )?;
        let bound = endpoint.local_addr()?;
        let own = identity.node_id();
        let invitations = Arc::new(Invitations::new(trusted.clone()));
        let on_join: JoinHandler = {
            let (invitations, store, trusted) =
                (invitations.clone(), store.clone(), trusted.clone());
            Arc::new(move |j| {
                let folder = invitations
                    .redeem(&j.secret, SystemClock.wall())
                    .map_err(|e| e.to_string())?;
                let back = j.dial_back_addr().map(|a| a.to_string());
                trust::add(&mut lock(&store), own, j.id, back)
                    .map_err(|e| format!("cannot record the new peer: {e}"))?;
                trusted.insert(j.id);
                Ok(folder)
            })
        };
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let mesh = Mesh::start(
            endpoint,
            peers.iter().map(|p| (p.id, p.addr.clone())),
            on_join,
            Some(events_tx),
        );
        let sync = SyncRuntime::start(own, store.clone(), events_rx, options);
        let discovery = start_discovery(own, bound.port(), &lan, &mesh);
        for p in peers.iter().filter(|p| p.addr.is_none()) {
            info!(peer = %p.id, "no address known; waiting for it to connect");
        }
        let daemon = Arc::new(Daemon {
            identity: identity.clone(),
            sync: sync.shared().clone(),
            runtime: Mutex::new(None),
            store: store.clone(),
            mesh: mesh.clone(),
            trusted,
            invitations,
            listen: bound,
            started: Instant::now(),
            stop: tokio::sync::Notify::new(),
            discovery,
        });
        let control = control::serve(home, daemon.clone())?;
        *lock(&daemon.runtime) = Some(sync);
        info!(node = %own, name = %identity.name(), listen = %bound, trusted = peers.len(), "running");
        // The tray is a process of its own (GTK wants its own main loop);
        // it follows this agent over the control socket.
        let mut tray_child = if tray {
            match std::env::current_exe().and_then(|exe| {
                std::process::Command::new(exe)
                    .arg("--home")
                    .arg(&home.root)
                    .arg("tray")
                    .spawn()
            }) {
                Ok(c) => Some(c),
                Err(e) => {
                    warn!(error = %e, "cannot start the tray icon");
                    None
                }
            }
        } else {
            None
        };
        eprintln!(
            "softadastra running as {} ({own}) on {bound}; Ctrl-C stops",
            identity.name()
        );
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = daemon.stop.notified() => {}
        }
        info!("stopping");
        if let Some(c) = tray_child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        control.stop();
        if let Some(sync) = lock(&daemon.runtime).take() {
            sync.stop();
        }
        mesh.shutdown(Duration::from_secs(2)).await;
        Ok::<_, anyhow::Error>(())
    });
    drop(runtime);
    result?;
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Start LAN discovery (unless disabled) and act on what it hears:
/// trusted peers are dialled at the address they were heard from. A
/// failure is logged and changes nothing else.
/// LAN discovery settings in force (flags over config file over defaults).
struct LanSettings {
    enabled: bool,
    port: u16,
    interval: f64,
    interfaces: Vec<String>,
}

fn start_discovery(own: NodeId, port: u16, args: &LanSettings, mesh: &Mesh) -> Option<Discovery> {
    if !args.enabled {
        info!("LAN discovery is off (--no-discovery or discovery.enabled = false)");
        return None;
    }
    let config = DiscoveryConfig {
        port: args.port,
        interfaces: args.interfaces.clone(),
        timing: Timing::every(Duration::from_secs_f64(args.interval)),
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let started = match Discovery::start(own, port, config, tx) {
        Ok(d) => d,
        Err(e) => {
            warn!(port = args.port, error = %e, "LAN discovery is off: cannot open its socket");
            return None;
        }
    };
    info!(
        port = args.port,
        interval_s = args.interval,
        "LAN discovery on"
    );
    tokio::spawn(softadastra::runtime::follow_discovery(mesh.clone(), rx));
    Some(started)
}

/// No agent on this home: say so, and how to start one.
fn not_running(home: &Home, what: &str) -> anyhow::Error {
    anyhow!(
        "the agent is not running on {}: {what}; start it with `softadastra run`",
        home.root.display()
    )
}

pub fn run_invite(
    home: &Home,
    folder: Option<String>,
    minutes: Option<u64>,
    addrs: Vec<String>,
) -> Result<ExitCode> {
    let ttl_secs = minutes.map_or(DEFAULT_INVITE_TTL.as_secs(), |m| m * 60);
    let request = Request::Invite {
        folder,
        ttl_secs,
        addrs,
    };
    let answer = control::call(home, &request)?
        .ok_or_else(|| not_running(home, "the joining machine connects to the running agent"))?;
    let code = answer["code"].as_str().unwrap_or_default();
    let mins = answer["expires_in_secs"].as_u64().unwrap_or(0) / 60;
    eprintln!(
        "On the other machine run (valid {mins} min, once{}):",
        answer["folder"]
            .as_str()
            .map(|f| format!(", shares folder {f:?}"))
            .unwrap_or_default()
    );
    eprintln!();
    let path = if answer["folder"].is_string() {
        " PATH"
    } else {
        ""
    };
    eprintln!("  softadastra join {code}{path}");
    eprintln!();
    println!("{code}");
    Ok(ExitCode::SUCCESS)
}

pub fn run_join(
    home: &Home,
    code: String,
    path: Option<PathBuf>,
    port: Option<u16>,
) -> Result<ExitCode> {
    let request = Request::Join {
        code: code.clone(),
        path: path.clone(),
    };
    let joined: Joined = match control::call_or_open(home, &request)? {
        Reached::Agent(answer) => Joined {
            inviter: answer["inviter"].as_str().unwrap_or_default().into(),
            name: answer["name"].as_str().unwrap_or_default().into(),
            addr: answer["addr"].as_str().unwrap_or_default().into(),
            folder: answer["folder"].as_str().map(String::from),
            path: answer["path"].as_str().map(PathBuf::from),
        },
        Reached::Store(store) => {
            // No agent here: pair from a temporary endpoint and record the
            // trust in the store directly.
            let store = Mutex::new(*store);
            let identity = home.identity()?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let endpoint = Endpoint::bind(
                    SocketAddr::from(([0, 0, 0, 0], 0)),
                    identity.clone(),
                    TrustedIds::default(),
                    hello_of(&identity),
                    QuicConfig::default(),
                )?;
                let result =
                    join(&endpoint, port.unwrap_or(DEFAULT_PORT), &store, &code, path).await;
                endpoint.shutdown(Duration::from_millis(500)).await;
                result.map(|(j, _, _)| j)
            })?
        }
    };
    eprintln!(
        "paired with {} ({}) at {}",
        joined.name, joined.inviter, joined.addr
    );
    match (&joined.folder, &joined.path) {
        (Some(f), Some(p)) => eprintln!("sharing folder {f:?} at {}", p.display()),
        (Some(f), None) => eprintln!(
            "the inviter shares folder {f:?}; keep it here with `softadastra folder add PATH --id {f}`"
        ),
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_peers(home: &Home, json: bool) -> Result<ExitCode> {
    use std::io::Write;
    let rows: Vec<serde_json::Value> = match control::call_or_open(home, &Request::Peers)? {
        Reached::Agent(serde_json::Value::Array(rows)) => rows,
        Reached::Agent(other) => bail!("unexpected answer from the agent: {other}"),
        Reached::Store(store) => trust::list(&store)?
            .into_iter()
            .map(|p| json!({"id": p.id.to_string(), "addr": p.addr, "state": "agent not running"}))
            .collect(),
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!(
            "no trusted peers; pair with `softadastra invite` here and `softadastra join CODE` there"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (trusted, nearby): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r["trusted"] != false);
    writeln!(
        out,
        "{:<16} {:<12} {:<24} {:<11} DETAIL",
        "PEER", "STATE", "ADDRESS", "LAN"
    )?;
    for r in trusted {
        let id = r["id"].as_str().unwrap_or_default();
        let name = r["name"]
            .as_str()
            .map_or_else(|| id[..7.min(id.len())].to_string(), String::from);
        let addr = r["remote"]
            .as_str()
            .or(r["addr"].as_str())
            .unwrap_or("(waiting for it)");
        let detail = match (r["last_error"].as_str(), r["retry_in_ms"].as_u64()) {
            (Some(e), Some(ms)) if r["state"] != "connected" => {
                format!("{e} (retry in {:.1} s)", ms as f64 / 1000.0)
            }
            (Some(e), _) if r["state"] != "connected" => e.to_string(),
            _ => r["version"]
                .as_str()
                .map(|v| format!("softadastra {v}"))
                .unwrap_or_default(),
        };
        writeln!(
            out,
            "{name:<16} {:<12} {addr:<24} {:<11} {detail}",
            r["state"].as_str().unwrap_or("?"),
            r["lan"].as_str().unwrap_or("-"),
        )?;
    }
    if !nearby.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "Nearby on the LAN, not trusted (pair with `softadastra invite`, or `softadastra peer add ID`):"
        )?;
        for r in nearby {
            writeln!(
                out,
                "  {}  at {} ({})",
                r["id"].as_str().unwrap_or_default(),
                r["lan_addr"].as_str().unwrap_or("?"),
                r["lan"].as_str().unwrap_or("?")
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_node(home: &Home, json: bool) -> Result<ExitCode> {
    use std::io::Write;
    let info = match control::call(home, &Request::Node)? {
        Some(info) => info,
        None => {
            let identity = Identity::load(&home.root)?.ok_or_else(|| {
                anyhow!(
                    "no node in {} yet: create one with `softadastra init`",
                    home.root.display()
                )
            })?;
            let hello = Hello {
                meta: NodeMeta::local(0).encode(),
                ..hello_of(&identity)
            };
            let mut info = serde_json::to_value(NodeInfo::from_hello(&hello, 0))?;
            info["running"] = json!(false);
            info
        }
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&info)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let text = |k: &str| info[k].as_str().unwrap_or("").to_string();
    writeln!(out, "id            {}", text("id"))?;
    writeln!(out, "name          {}", text("name"))?;
    writeln!(out, "host          {} ({})", text("hostname"), text("os"))?;
    writeln!(
        out,
        "version       softadastra {} (wire protocol {}, metadata {})",
        text("version"),
        info["protocol"],
        info["meta_version"]
    )?;
    writeln!(
        out,
        "capabilities  {}",
        strings(&info["capabilities"]).join(", ")
    )?;
    match info["uptime_secs"].as_u64() {
        Some(up) if info["running"] == true => writeln!(
            out,
            "agent         running for {up} s, listening on {}",
            text("listen")
        )?,
        _ => writeln!(out, "agent         not running")?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_status(home: &Home, json: bool) -> Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match control::call_or_open(home, &Request::Status)? {
        Reached::Agent(s) => {
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
            } else {
                writeln!(
                    out,
                    "node     {} ({})",
                    s["name"].as_str().unwrap_or(""),
                    s["node"].as_str().unwrap_or("")
                )?;
                writeln!(
                    out,
                    "agent    running {} s, listening on {}",
                    s["uptime_secs"],
                    s["listen"].as_str().unwrap_or("")
                )?;
                writeln!(
                    out,
                    "peers    {} connected of {} trusted",
                    s["peers_connected"], s["peers_trusted"]
                )?;
                writeln!(
                    out,
                    "store    WAL at sequence {} in {}",
                    s["wal_last_seq"],
                    s["wal_dir"].as_str().unwrap_or("?")
                )?;
                match s["discovery"].as_object() {
                    Some(d) => writeln!(
                        out,
                        "lan      discovery on UDP {}, every {} s, {} node(s) heard",
                        d["port"], d["interval_s"], d["nearby"]
                    )?,
                    None => writeln!(out, "lan      discovery off")?,
                }
                for f in s["folders"].as_array().into_iter().flatten() {
                    writeln!(out, "{}", folder_line(f))?;
                }
            }
        }
        Reached::Store(store) => {
            let node = Identity::load(&home.root)?;
            let folders = folder::list(&store)?;
            let peers = trust::list(&store)?;
            if json {
                let s = json!({
                    "running": false,
                    "node": node.as_ref().map(|i| i.node_id().to_string()),
                    "name": node.as_ref().map(|i| i.name().to_string()),
                    "peers_trusted": peers.len(),
                    "folders": folders.iter().map(|f| json!({"id": f.id, "path": f.path, "paused": f.paused})).collect::<Vec<_>>(),
                    "wal_last_seq": store.last_seq().0,
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
            } else {
                match &node {
                    Some(i) => writeln!(out, "node     {} ({})", i.name(), i.node_id())?,
                    None => writeln!(out, "node     not initialised (`softadastra init`)")?,
                }
                writeln!(
                    out,
                    "agent    not running (start it with `softadastra run`)"
                )?;
                writeln!(out, "peers    {} trusted", peers.len())?;
                writeln!(out, "store    WAL at sequence {}", store.last_seq().0)?;
                for f in &folders {
                    writeln!(out, "folder   {} at {}", f.id, f.path.display())?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The strings of a JSON array (nothing for anything else).
fn strings(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str())
        .collect()
}

/// One folder of `status`, for people: "folder docs at PATH — up to date ·
/// 1204 files, 3.2 GB" or "… — syncing 14 files (3.2 MB left) · 2 failing".
fn folder_line(f: &serde_json::Value) -> String {
    use crate::folder_cmd::human_bytes;
    let p = &f["progress"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let state = match f["state"].as_str().unwrap_or("?") {
        "syncing" => format!(
            "syncing {} files ({} left; {} in flight, {} queued)",
            n(&p["needed_files"]),
            human_bytes(n(&p["needed_bytes"])),
            n(&p["in_flight"]),
            n(&p["queued"])
        ),
        "error" => format!("error: {}", f["error"].as_str().unwrap_or("?")),
        other => other.to_string(),
    };
    let mut line = format!(
        "folder   {} at {} — {state} · {} files, {}",
        f["id"].as_str().unwrap_or(""),
        f["path"].as_str().unwrap_or(""),
        n(&f["files"]),
        human_bytes(n(&f["bytes"]))
    );
    if n(&f["not_synced"]) > 0 {
        line.push_str(&format!(
            "\n         {} not synced (left out on purpose; they stay on this machine only):",
            n(&f["not_synced"])
        ));
        for f in f["not_synced_files"].as_array().into_iter().flatten() {
            line.push_str(&format!(
                "\n           {}: {}",
                f["path"].as_str().unwrap_or("?"),
                f["why"].as_str().unwrap_or("?"),
            ));
        }
    }
    if n(&p["failing"]) > 0 {
        line.push_str(&format!(
            "\n         {} failing, retried with backoff:",
            n(&p["failing"])
        ));
        for f in p["failing_files"].as_array().into_iter().flatten() {
            let tries = match n(&f["attempts"]) {
                1 => "failed once".to_string(),
                k => format!("failed {k} times"),
            };
            line.push_str(&format!(
                "\n           {}: {} ({tries})",
                f["path"].as_str().unwrap_or("?"),
                f["why"].as_str().unwrap_or("?"),
            ));
        }
    }
    line
}

/// `sync status`: what each folder still needs, and what fails.
pub fn run_sync_status(home: &Home, json_out: bool) -> Result<ExitCode> {
    use std::io::Write;
    let s = control::call(home, &Request::Status)?.ok_or_else(|| {
        not_running(
            home,
            "sync progress lives in the agent; `softadastra status` shows what is on disk",
        )
    })?;
    let mut out = std::io::stdout().lock();
    if json_out {
        let folders = s["folders"].clone();
        writeln!(out, "{}", serde_json::to_string_pretty(&folders)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "peers    {} connected of {} trusted",
        s["peers_connected"], s["peers_trusted"]
    )?;
    for f in s["folders"].as_array().into_iter().flatten() {
        writeln!(out, "{}", folder_line(f))?;
    }
    writeln!(
        out,
        "since start: {} files placed or removed, {} fetched, {} reused locally",
        s["sync_files_done"],
        crate::folder_cmd::human_bytes(s["sync_bytes_fetched"].as_u64().unwrap_or(0)),
        crate::folder_cmd::human_bytes(s["sync_bytes_reused"].as_u64().unwrap_or(0))
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `log`: the newest log file's last `lines` lines, then (with `follow`)
/// whatever is appended, across the daily rotation.
pub fn run_log(home: &Home, lines: usize, follow: bool) -> Result<ExitCode> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let dir = home.log_dir();
    let newest = || -> Option<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("softadastra") && n.ends_with(".log"))
            })
            .collect();
        files.sort();
        files.pop()
    };
    let Some(mut path) = newest() else {
        bail!(
            "no log file in {}: the agent writes one when run with `--log-file` (as `softadastra install` sets up) or with `log.file = true` in {}",
            dir.display(),
            home.config.display()
        );
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let all: Vec<&str> = text.lines().collect();
    let mut out = std::io::stdout().lock();
    for l in &all[all.len().saturating_sub(lines)..] {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut at = text.len() as u64;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        if let Some(n) = newest().filter(|n| *n != path) {
            path = n;
            at = 0;
        }
        let Ok(mut f) = std::fs::File::open(&path) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < at {
            at = 0;
        }
        if len > at {
            f.seek(SeekFrom::Start(at))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            at += buf.len() as u64;
            out.write_all(&buf)?;
            out.flush()?;
        }
    }
}

pub fn run_shutdown(home: &Home) -> Result<ExitCode> {
    control::call(home, &Request::Shutdown)?.ok_or_else(|| not_running(home, "nothing to stop"))?;
    eprintln!("the agent is stopping");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
