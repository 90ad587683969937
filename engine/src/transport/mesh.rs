//! The peer registry: one connection per trusted peer, kept up.
//!
//! [`Mesh`] owns the accept loop and one dial loop per trusted peer with an
//! address. Every peer has an explicit [`PeerState`] — connecting,
//! connected, backing off (with the error and the next attempt), refused
//! (the other side does not trust us, or speaks another protocol version),
//! or waiting (no address: it has to dial us) — that users can query.
//!
//! Simultaneous dials between two nodes end with exactly one connection:
//! both keep the one dialled by the lower node id. A new connection from a
//! peer whose existing connection is older than [`REPLACE_AFTER`] replaces
//! it (the peer restarted; the old connection is dead but not yet timed
//! out). Pairing requests are answered through a [`JoinHandler`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{info, warn};

use super::TransportError;
use super::quic::{BulkStream, Endpoint, Incoming, JoinRequest, Peer, PeerHandle};
use super::wire::{Hello, close_code};
use crate::core::{Clock, NodeId, SystemClock, Timestamp, lock};

/// Connections older than this are replaced by a new one from the same peer.
pub const REPLACE_AFTER: Duration = Duration::from_secs(3);
/// First retry delay after a failed dial.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Where a peer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// No address known: waiting for it to connect to us.
    Waiting,
    /// A dial is under way.
    Connecting,
    /// Connected, hellos exchanged.
    Connected,
    /// The last dial failed; another follows after a delay.
    BackingOff,
    /// The peer refused us (it does not trust this node) or speaks another
    /// protocol version; retried, but slowly and needing a human.
    Refused,
    /// This node's transport is not running (an SDK client before
    /// `start_transport`): trusted, not tried.
    Stopped,
}

impl PeerState {
    /// Lower-case name, as shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Waiting => "waiting",
            PeerState::Connecting => "connecting",
            PeerState::Connected => "connected",
            PeerState::BackingOff => "backing off",
            PeerState::Refused => "refused",
            PeerState::Stopped => "stopped",
        }
    }
}

/// A peer as the registry sees it.
#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    /// Its node id.
    pub id: NodeId,
    /// The configured address, if any.
    pub addr: Option<String>,
    /// Its state.
    pub state: PeerState,
    /// When the state last changed (wall time).
    pub since: Timestamp,
    /// What it said about itself on the last connection.
    pub hello: Option<Hello>,
    /// The address of the live connection.
    pub remote: Option<SocketAddr>,
    /// Whether we dialled the live connection.
    pub outbound: bool,
    /// Why the last attempt or connection failed.
    pub last_error: Option<String>,
    /// When backing off: milliseconds until the next attempt.
    pub retry_in_ms: Option<u64>,
    /// Where LAN discovery last heard it (dialled when no address is
    /// configured, or in turn with a configured one that fails).
    pub discovered: Option<SocketAddr>,
    /// How the live connection came about: `configured` or `discovered`
    /// (we dialled that address) or `incoming` (it dialled us).
    pub found_by: Option<&'static str>,
}

impl PeerStatus {
    /// A peer in `state` since now, with nothing else known yet.
    pub fn new(id: NodeId, addr: Option<String>, state: PeerState) -> PeerStatus {
        PeerStatus {
            id,
            addr,
            state,
            since: now(),
            hello: None,
            remote: None,
            outbound: false,
            last_error: None,
            retry_in_ms: None,
            discovered: None,
            found_by: None,
        }
    }
}

/// What happens on the mesh, for the layers above.
#[derive(Debug)]
pub enum MeshEvent {
    /// A peer is connected (hellos exchanged); send to it through the handle.
    Connected(PeerHandle),
    /// The peer's connection ended (and no newer one replaced it).
    Disconnected(NodeId),
    /// An application message from a peer.
    Message(NodeId, Vec<u8>),
    /// A peer opened a bulk-data stream.
    Bulk(NodeId, BulkStream),
}

/// Decides on pairing requests: redeem the secret and record the new
/// peer's trust, returning the folder the invite shares — or why not.
pub type JoinHandler = Arc<dyn Fn(&JoinRequest) -> Result<Option<String>, String> + Send + Sync>;

struct Slot {
    status: PeerStatus,
    retry_at: Option<Instant>,
    live: Option<(PeerHandle, Instant)>,
    dialer: Option<tokio::task::JoinHandle<()>>,
}

struct Inner {
    endpoint: Endpoint,
    slots: Mutex<HashMap<NodeId, Slot>>,
    on_join: JoinHandler,
    events: Option<tokio::sync::mpsc::UnboundedSender<MeshEvent>>,
}

/// The registry and its loops. Cheap to clone.
#[derive(Clone)]
pub struct Mesh {
    inner: Arc<Inner>,
    acceptor: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

fn now() -> Timestamp {
    SystemClock.wall()
}

impl Mesh {
    /// Start accepting on `endpoint` and keep connections to `peers`
    /// (id, address), reporting connections, messages and bulk streams on
    /// `events`. Must be called within a tokio runtime.
    pub fn start(
        endpoint: Endpoint,
        peers: impl IntoIterator<Item = (NodeId, Option<String>)>,
        on_join: JoinHandler,
        events: Option<tokio::sync::mpsc::UnboundedSender<MeshEvent>>,
    ) -> Mesh {
        let mesh = Mesh {
            inner: Arc::new(Inner {
                endpoint,
                slots: Mutex::default(),
                on_join,
                events,
            }),
            acceptor: Arc::default(),
        };
        for (id, addr) in peers {
            mesh.add_peer(id, addr);
        }
        let accepting = mesh.clone();
        let task = tokio::spawn(async move { accepting.accept_loop().await });
        *lock(&mesh.acceptor) = Some(task);
        mesh
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Slot>> {
        lock(&self.inner.slots)
    }

    /// The endpoint the mesh runs on.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// Keep a connection to `id` (dialling `addr` when given). Re-adding
    /// with a new address restarts its dial loop.
    pub fn add_peer(&self, id: NodeId, addr: Option<String>) {
        let mut slots = self.slots();
        let slot = slots.entry(id).or_insert_with(|| Slot {
            status: PeerStatus::new(id, None, PeerState::Waiting),
            retry_at: None,
            live: None,
            dialer: None,
        });
        if addr.is_none() || slot.status.addr == addr && slot.dialer.is_some() {
            return;
        }
        if let Some(d) = slot.dialer.take() {
            d.abort();
        }
        slot.status.addr = addr;
        let mesh = self.clone();
        slot.dialer = Some(tokio::spawn(async move { mesh.dial_loop(id).await }));
    }

    /// LAN discovery heard `id` at `addr`. For a trusted peer, the address
    /// is dialled (in turn with a configured one); the TLS pin still
    /// decides, so a forged announcement only costs a refused handshake.
    /// Returns whether `id` is a peer of this node.
    pub fn discovered(&self, id: NodeId, addr: SocketAddr) -> bool {
        let mut slots = self.slots();
        let Some(slot) = slots.get_mut(&id) else {
            return false;
        };
        slot.status.discovered = Some(addr);
        if slot.dialer.is_none() {
            let mesh = self.clone();
            slot.dialer = Some(tokio::spawn(async move { mesh.dial_loop(id).await }));
        } else if slot.live.is_none() && slot.status.state != PeerState::Connecting {
            // Heard again while backing off: try now rather than later.
            if let Some(d) = slot.dialer.take() {
                d.abort();
            }
            let mesh = self.clone();
            slot.dialer = Some(tokio::spawn(async move { mesh.dial_loop(id).await }));
        }
        true
    }

    /// Discovery lost `id` (expired): forget the address it heard.
    pub fn undiscovered(&self, id: NodeId) {
        if let Some(slot) = self.slots().get_mut(&id) {
            slot.status.discovered = None;
        }
    }

    /// The addresses to dial `id` at, in the order to try them: the
    /// configured one, then the discovered one.
    fn candidates(&self, id: &NodeId) -> Vec<(String, &'static str)> {
        let slots = self.slots();
        let Some(slot) = slots.get(id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(a) = &slot.status.addr {
            out.push((a.clone(), "configured"));
        }
        if let Some(d) = slot.status.discovered {
            let d = d.to_string();
            if !out.iter().any(|(a, _)| *a == d) {
                out.push((d, "discovered"));
            }
        }
        out
    }

    /// Stop keeping a connection to `id` and close any live one.
    pub fn remove_peer(&self, id: NodeId) {
        if let Some(slot) = self.slots().remove(&id) {
            if let Some(d) = slot.dialer {
                d.abort();
            }
            if let Some((peer, _)) = slot.live {
                peer.close(close_code::NORMAL, "no longer trusted");
            }
        }
    }

    /// Every known peer's status, in id order.
    pub fn statuses(&self) -> Vec<PeerStatus> {
        let at = Instant::now();
        let mut out: Vec<PeerStatus> = self
            .slots()
            .values()
            .map(|s| {
                let mut st = s.status.clone();
                st.retry_in_ms = s
                    .retry_at
                    .filter(|_| matches!(st.state, PeerState::BackingOff | PeerState::Refused))
                    .map(|t| t.saturating_duration_since(at).as_millis() as u64);
                st
            })
            .collect();
        out.sort_by_key(|s| s.id);
        out
    }

    /// Live connections, for the layers above.
    pub fn connected(&self) -> Vec<PeerHandle> {
        self.slots()
            .values()
            .filter_map(|s| s.live.as_ref().map(|(p, _)| p.clone()))
            .collect()
    }

    fn set_state(
        &self,
        id: NodeId,
        state: PeerState,
        error: Option<String>,
        retry: Option<Duration>,
    ) {
        if let Some(slot) = self.slots().get_mut(&id) {
            // A connection made the other way is up: this dial's fate
            // (typically "duplicate connection") changes nothing.
            if slot.live.is_some() && state != PeerState::Connected {
                return;
            }
            if slot.status.state != state {
                slot.status.since = now();
            }
            slot.status.state = state;
            if error.is_some() {
                slot.status.last_error = error;
            }
            slot.retry_at = retry.map(|d| Instant::now() + d);
        }
    }

    /// Register a new connection; false (and it is closed) if it loses to
    /// an existing one or the peer is no longer trusted.
    fn admit(
        &self,
        peer: &PeerHandle,
        hello: &Hello,
        outbound: bool,
        found_by: &'static str,
    ) -> bool {
        let own = self.inner.endpoint.node_id();
        let mut slots = self.slots();
        let Some(slot) = slots.get_mut(&peer.id) else {
            peer.close(close_code::NORMAL, "not a peer of this node any more");
            return false;
        };
        if let Some((existing, since)) = &slot.live {
            let simultaneous = since.elapsed() < REPLACE_AFTER;
            let winner_outbound = own < peer.id;
            if simultaneous
                && (slot.status.outbound == winner_outbound || outbound != winner_outbound)
            {
                peer.close(close_code::NORMAL, "duplicate connection");
                return false;
            }
            existing.close(close_code::NORMAL, "replaced by a newer connection");
        }
        slot.live = Some((peer.clone(), Instant::now()));
        slot.status.state = PeerState::Connected;
        slot.status.since = now();
        slot.status.hello = Some(hello.clone());
        slot.status.remote = Some(peer.remote_addr());
        slot.status.outbound = outbound;
        slot.status.found_by = Some(found_by);
        slot.retry_at = None;
        // Told while the slots are held: two connections admitted one
        // after the other are announced in that order. Announced after
        // the lock, the one replaced could be announced last and taken
        // for the live one by the runtime, which then sent everything
        // into a closed connection (seen under load: a simultaneous dial
        // left two nodes connected and silent).
        self.emit(MeshEvent::Connected(peer.clone()));
        true
    }

    fn emit(&self, event: MeshEvent) {
        if let Some(tx) = &self.inner.events {
            let _ = tx.send(event);
        }
    }

    fn release(&self, peer: &PeerHandle, why: &str) {
        let mut slots = self.slots();
        if let Some(slot) = slots.get_mut(&peer.id)
            && slot
                .live
                .as_ref()
                .is_some_and(|(p, _)| p.same_connection(peer))
        {
            slot.live = None;
            slot.status.remote = None;
            slot.status.last_error = Some(why.to_string());
            slot.status.since = now();
            slot.status.state = if slot.dialer.is_some() {
                PeerState::Connecting
            } else {
                PeerState::Waiting
            };
            // Under the lock, for the reason `admit` gives: a connection
            // admitted right after must not be announced before this end.
            self.emit(MeshEvent::Disconnected(peer.id));
        }
    }

    fn is_connected(&self, id: &NodeId) -> bool {
        self.slots().get(id).is_some_and(|s| s.live.is_some())
    }

    async fn hold(&self, peer: Peer, outbound: bool, found_by: &'static str) {
        let handle = peer.handle();
        if !self.admit(&handle, &peer.hello, outbound, found_by) {
            return;
        }
        info!(peer = %handle.id, name = %handle.name, addr = %handle.remote_addr(), version = %peer.hello.version, "connected");
        let bulk = self.inner.events.clone().map(|tx| {
            let h = handle.clone();
            tokio::spawn(async move {
                while let Ok(stream) = h.accept_bulk().await {
                    if tx.send(MeshEvent::Bulk(h.id, stream)).is_err() {
                        break;
                    }
                }
            })
        });
        let (tx, id) = (self.inner.events.clone(), handle.id);
        let why = peer
            .serve(move |payload| {
                if let Some(tx) = &tx {
                    let _ = tx.send(MeshEvent::Message(id, payload));
                }
            })
            .await;
        if let Some(b) = bulk {
            b.abort();
        }
        self.release(&handle, &why);
        info!(peer = %handle.id, name = %handle.name, reason = %why, "disconnected");
    }

    async fn dial_loop(&self, id: NodeId) {
        let mut backoff = BACKOFF_MIN;
        let mut turn = 0usize;
        loop {
            if self.is_connected(&id) {
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            let candidates = self.candidates(&id);
            if candidates.is_empty() {
                self.set_state(id, PeerState::Waiting, None, None);
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            // Each attempt takes the next address in turn.
            let (addr_text, found_by) = candidates[turn % candidates.len()].clone();
            turn += 1;
            self.set_state(id, PeerState::Connecting, None, None);
            // Resolved on every attempt: a name that fails now may resolve later.
            let attempt = match resolve(&addr_text).await {
                Some(addr) => {
                    info!(peer = %id, %addr, "connecting");
                    // A connection the peer made meanwhile ends this dial:
                    // one finishing later (a first packet sent before the
                    // peer listened is only resent after a second) would
                    // replace that connection and break whatever it carries.
                    let other_way = async {
                        while !self.is_connected(&id) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        r = self.inner.endpoint.connect(addr, id) => r,
                        () = other_way => continue,
                    }
                }
                None => Err(TransportError::Handshake(format!(
                    "cannot resolve {addr_text}"
                ))),
            };
            match attempt {
                Ok(peer) => {
                    backoff = BACKOFF_MIN;
                    self.hold(peer, true, found_by).await;
                }
                Err(_) if self.is_connected(&id) => {}
                Err(e) => {
                    let refused = matches!(
                        e,
                        TransportError::Refused { .. } | TransportError::VersionMismatch { .. }
                    );
                    // A refusal needs a person to fix it: try again slowly.
                    let base = if refused { BACKOFF_MAX } else { backoff };
                    let delay =
                        base + Duration::from_millis(fastrand::u64(..=base.as_millis() as u64 / 2));
                    let state = if refused {
                        PeerState::Refused
                    } else {
                        PeerState::BackingOff
                    };
                    warn!(peer = %id, addr = %addr_text, error = %e, retry_in_ms = delay.as_millis() as u64, "{}", state.as_str());
                    self.set_state(id, state, Some(e.to_string()), Some(delay));
                    tokio::time::sleep(delay).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    async fn accept_loop(&self) {
        while let Some(accepting) = self.inner.endpoint.accept().await {
            let mesh = self.clone();
            tokio::spawn(async move {
                let from = accepting.remote_addr();
                match accepting.establish().await {
                    Ok(Incoming::Peer(peer)) => mesh.hold(peer, false, "incoming").await,
                    Ok(Incoming::Join(join)) => mesh.answer_join(join).await,
                    Err(e) => warn!(%from, error = %e, "incoming connection refused"),
                }
            });
        }
    }

    async fn answer_join(&self, join: JoinRequest) {
        let (id, name, from) = (join.id, join.hello.name.clone(), join.remote_addr());
        match (self.inner.on_join)(&join) {
            Ok(folder) => {
                let back = join.dial_back_addr().map(|a| a.to_string());
                info!(peer = %id, %name, %from, "paired through an invite");
                if let Err(e) = join.welcome(folder).await {
                    warn!(peer = %id, error = %e, "the joiner left before the welcome");
                }
                self.add_peer(id, back);
            }
            Err(reason) => {
                warn!(peer = %id, %name, %from, %reason, "join refused");
                join.refuse(&reason).await;
            }
        }
    }

    /// Stop accepting and dialling, close every connection, and wait (up
    /// to `limit`) until peers have been told.
    pub async fn shutdown(&self, limit: Duration) {
        if let Some(a) = lock(&self.acceptor).take() {
            a.abort();
        }
        for slot in self.slots().values_mut() {
            if let Some(d) = slot.dialer.take() {
                d.abort();
            }
        }
        self.inner.endpoint.shutdown(limit).await;
    }
}

async fn resolve(addr: &str) -> Option<SocketAddr> {
    tokio::net::lookup_host(addr).await.ok()?.next()
}
