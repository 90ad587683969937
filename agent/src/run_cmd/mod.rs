//! `softadastra run`: the node in the foreground, and the commands that
//! talk to it (`invite`, `join`, `peers`, `status`, `shutdown`).
//!
//! `run` opens the store (holding its lock, so a second `run` on the same
//! home is refused), listens for QUIC, keeps a connection to every trusted
//! peer through the engine's `Mesh`, serves the control socket, logs each
//! state change, and stops cleanly on SIGINT, SIGTERM or `shutdown`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde_json::json;
use softadastra::core::{Clock, NodeId, SystemClock, lock};
use softadastra::discovery::service::{Discovery, DiscoveryConfig};
use softadastra::discovery::{Nearby, Timing};
use softadastra::folder;
use softadastra::metadata::{NodeInfo, NodeMeta};
use softadastra::runtime::RuntimeOptions;
use softadastra::runtime::node::{Node, NodeError, NodeOptions};
use softadastra::runtime::status::{FolderState, FolderStatus, NodeStatus};
use softadastra::runtime::trust;
use softadastra::store::Store;
use softadastra::transport::identity::Identity;
use softadastra::transport::mesh::{JoinHandler, PeerStatus};
use softadastra::transport::pairing::{DEFAULT_INVITE_TTL, Invitations, Invite};
use softadastra::transport::quic::{Endpoint, QuicConfig};
use softadastra::transport::tls::TrustedIds;
use softadastra::transport::wire::Hello;
use tracing::{info, warn};

use crate::control::{self, FolderChange, Reached, Request};
use crate::home::Home;
use crate::store_cmd::open_store;

mod handler;
mod log;
pub(crate) mod memory;
mod pairing;
mod render;

use handler::*;
pub use log::*;
pub use pairing::*;
pub use render::*;

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
    let config = folder::share(store, &root, id.as_deref())?;
    eprintln!(
        "now sharing {} as folder {:?} (share it under the same id on your other machines)",
        root.display(),
        config.id
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
        min_free: config.min_free()?,
    };
    let identity = home.identity()?;
    let mut store = open_store_waiting(home)?;
    if let Some(path) = &share {
        share_first(&mut store, path, id)?;
    }
    for warning in config.apply_policies(&mut store)? {
        tracing::warn!("{warning}");
    }
    let listen: SocketAddr = match listen {
        Some(l) => l.parse().with_context(|| {
            format!("invalid --listen {l:?}: expected IP:PORT, e.g. 0.0.0.0:{DEFAULT_PORT}")
        })?,
        None => SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
    };
    let runtime = softadastra::runtime::node::async_runtime("softadastra")?;
    let store = Arc::new(Mutex::new(store));
    let result = runtime.block_on(async {
        let trusted_at_start = trust::list(&lock(&store))?.len();
        let trusted = TrustedIds::default();
        let invitations = Arc::new(Invitations::new(trusted.clone()));
        let node = Node::start(
            &identity,
            hello_of(&identity),
            store.clone(),
            NodeOptions {
                listen,
                runtime: options,
                quic: QuicConfig::default(),
                on_join: Some(on_join(identity.node_id(), &invitations, &store, &trusted)),
                trusted,
            },
        )?;
        start_discovery(&node, &lan);
        let own = node.id();
        let bound = node.addr();
        let daemon = Arc::new(Daemon {
            identity: identity.clone(),
            node,
            invitations,
            stop: tokio::sync::Notify::new(),
        });
        let control = control::serve(home, daemon.clone())?;
        let observer = tokio::spawn(observe_every_second(daemon.clone()));
        let give_back = tokio::spawn(memory::give_back_every_period());
        info!(node = %own, name = %identity.name(), listen = %bound, trusted = trusted_at_start, "running");
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
        observer.abort();
        give_back.abort();
        control.stop();
        daemon.node.stop(Duration::from_secs(2)).await;
        Ok::<_, anyhow::Error>(())
    });
    drop(runtime);
    result?;
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Record the folder-level events (states, errors, files waiting, offers,
/// held deletions) from the node's status, once a second, off the async
/// workers.
async fn observe_every_second(daemon: Arc<handler::Daemon>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let d = daemon.clone();
        match tokio::task::spawn_blocking(move || d.node.observe()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "cannot read the status for the event stream"),
            Err(_) => return,
        }
    }
}

/// LAN discovery settings in force (flags over config file over defaults).
struct LanSettings {
    enabled: bool,
    port: u16,
    interval: f64,
    interfaces: Vec<String>,
}

/// Start LAN discovery (unless disabled): trusted peers heard are dialled
/// at the address they were heard from. A failure is logged and changes
/// nothing else.
fn start_discovery(node: &Node, args: &LanSettings) {
    if !args.enabled {
        info!("LAN discovery is off (--no-discovery or discovery.enabled = false)");
        return;
    }
    let config = DiscoveryConfig {
        port: args.port,
        interfaces: args.interfaces.clone(),
        timing: Timing::every(Duration::from_secs_f64(args.interval)),
    };
    match node.start_discovery(config) {
        Ok(()) => info!(
            port = args.port,
            interval_s = args.interval,
            "LAN discovery on"
        ),
        Err(e) => {
            warn!(port = args.port, error = %e, "LAN discovery is off: cannot open its socket")
        }
    }
}

/// What the node does with a peer presenting an invitation's secret: the
/// invitation is redeemed (once), the peer trusted (stored, admitted by
/// TLS) and the folder it shared, if any, named.
fn on_join(
    own: NodeId,
    invitations: &Arc<Invitations>,
    store: &Arc<Mutex<Store>>,
    trusted: &TrustedIds,
) -> JoinHandler {
    let (invitations, store, trusted) = (invitations.clone(), store.clone(), trusted.clone());
    Arc::new(move |j| {
        let folder = invitations
            .redeem(&j.secret, SystemClock.wall())
            .map_err(|e| e.to_string())?;
        let back = j.dial_back_addr().map(|a| a.to_string());
        let mut held = lock(&store);
        trust::add(&mut held, own, j.id, back)
            .map_err(|e| format!("cannot record the new peer: {e}"))?;
        // The folder the invite names is shared with the joiner (and only it).
        if let Some(id) = &folder {
            softadastra::index::members::set_member(&mut held, id, j.id, true)
                .map_err(|e| format!("cannot share folder {id:?} with the new peer: {e}"))?;
        }
        drop(held);
        trusted.insert(j.id);
        Ok(folder)
    })
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
