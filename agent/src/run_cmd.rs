//! `softadastra run`: the node in the foreground.
//!
//! Opens the store (holding its lock, so a second `run` on the same home is
//! refused), listens for QUIC, keeps a connection to every trusted peer
//! with a known address (reconnecting with exponential backoff and jitter),
//! logs each state change, and stops cleanly on SIGINT or SIGTERM.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use softadastra::core::NodeId;
use softadastra::transport::quic::{Endpoint, Peer, PeerHandle, QuicConfig};
use softadastra::transport::tls::TrustedIds;
use softadastra::transport::trust;
use softadastra::transport::wire::{Hello, close_code};
use tracing::{info, warn};

use crate::home::{Home, hostname};
use crate::store_cmd::open_store;

/// The default QUIC port.
pub const DEFAULT_PORT: u16 = 7420;

/// One connection per peer pair. When both nodes dial each other at once,
/// both keep the connection dialled by the lower node id. A connection that
/// arrives while an older one (over [`REPLACE_AFTER`]) exists replaces it:
/// the peer evidently restarted and the old connection is dead.
#[derive(Default)]
struct Registry {
    connected: HashMap<NodeId, Held>,
}

struct Held {
    dialled_by_us: bool,
    since: Instant,
    peer: PeerHandle,
}

/// Connections older than this are replaced by a new one from the same peer.
const REPLACE_AFTER: Duration = Duration::from_secs(3);

impl Registry {
    /// Register `peer`; returns false (and closes it) if it loses to an existing connection.
    fn admit(&mut self, own: NodeId, peer: PeerHandle, dialled_by_us: bool) -> bool {
        if let Some(existing) = self.connected.get(&peer.id) {
            let simultaneous = existing.since.elapsed() < REPLACE_AFTER;
            let winner_dialled_by_us = own < peer.id;
            if simultaneous
                && (existing.dialled_by_us == winner_dialled_by_us
                    || dialled_by_us != winner_dialled_by_us)
            {
                peer.close(close_code::NORMAL, "duplicate connection");
                return false;
            }
            existing
                .peer
                .close(close_code::NORMAL, "replaced by a newer connection");
        }
        self.connected.insert(
            peer.id,
            Held {
                dialled_by_us,
                since: Instant::now(),
                peer,
            },
        );
        true
    }
    fn remove(&mut self, peer: &PeerHandle) {
        if self
            .connected
            .get(&peer.id)
            .is_some_and(|h| h.peer.same_connection(peer))
        {
            self.connected.remove(&peer.id);
        }
    }
    fn is_connected(&self, id: &NodeId) -> bool {
        self.connected.contains_key(id)
    }
}

type Shared = Arc<Mutex<Registry>>;

fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Registry> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

async fn hold(registry: Shared, peer: Peer, own: NodeId, dialled_by_us: bool) {
    let handle = peer.handle();
    if !lock(&registry).admit(own, handle.clone(), dialled_by_us) {
        return;
    }
    info!(peer = %handle.id, name = %handle.name, addr = %handle.remote_addr(), version = %peer.hello.version, "connected");
    let why = peer.serve().await;
    lock(&registry).remove(&handle);
    info!(peer = %handle.id, name = %handle.name, reason = %why, "disconnected");
}

async fn dial_loop(endpoint: Endpoint, registry: Shared, id: NodeId, addr_text: String) {
    let own = endpoint.node_id();
    let mut backoff = Duration::from_millis(500);
    loop {
        if lock(&registry).is_connected(&id) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        // Resolved on every attempt: a name that fails now may resolve later.
        let attempt = match resolve(&addr_text).await {
            Some(addr) => {
                info!(peer = %id, %addr, "connecting");
                endpoint.connect(addr, id).await
            }
            None => Err(softadastra::transport::TransportError::Connect {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                reason: format!("cannot resolve {addr_text}"),
            }),
        };
        match attempt {
            Ok(peer) => {
                backoff = Duration::from_millis(500);
                hold(registry.clone(), peer, own, true).await;
            }
            Err(e) => {
                let jitter =
                    Duration::from_millis(fastrand::u64(..=backoff.as_millis() as u64 / 2));
                warn!(peer = %id, addr = %addr_text, error = %e, retry_in_ms = (backoff + jitter).as_millis() as u64, "backing off");
                tokio::time::sleep(backoff + jitter).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn resolve(addr: &str) -> Option<SocketAddr> {
    tokio::net::lookup_host(addr).await.ok()?.next()
}

pub fn run(home: &Home, listen: Option<String>) -> Result<ExitCode> {
    let store = open_store(home)?;
    let identity = home.identity()?;
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
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let hello = Hello {
            protocol: 0,
            node: identity.node_id(),
            name: identity.name().to_string(),
            hostname: hostname(),
            os: std::env::consts::OS.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let endpoint = Endpoint::bind(listen, identity.clone(), trusted, hello, QuicConfig::default())?;
        let bound = endpoint.local_addr()?;
        info!(node = %identity.node_id(), name = %identity.name(), listen = %bound, trusted = peers.len(), "running");
        eprintln!("softadastra running as {} ({}) on {bound}; Ctrl-C stops", identity.name(), identity.node_id());
        let registry: Shared = Arc::default();
        let own = identity.node_id();
        for p in &peers {
            match &p.addr {
                Some(a) => drop(tokio::spawn(dial_loop(endpoint.clone(), registry.clone(), p.id, a.clone()))),
                None => info!(peer = %p.id, "no address known; waiting for it to connect"),
            }
        }
        let acceptor = {
            let (endpoint, registry) = (endpoint.clone(), registry.clone());
            tokio::spawn(async move {
                while let Some(accepting) = endpoint.accept().await {
                    let registry = registry.clone();
                    tokio::spawn(async move {
                        let from = accepting.remote_addr();
                        match accepting.establish().await {
                            Ok(peer) => hold(registry, peer, own, false).await,
                            Err(e) => warn!(%from, error = %e, "incoming connection refused"),
                        }
                    });
                }
            })
        };
        shutdown_signal().await;
        info!("stopping");
        acceptor.abort();
        endpoint.shutdown(Duration::from_secs(2)).await;
        drop(store);
        eprintln!("stopped");
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
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
