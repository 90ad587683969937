//! The discovery sockets: announce, listen, keep the registry.
//!
//! One UDP socket per address family on the discovery port (shared with
//! other nodes on the same machine through `SO_REUSEADDR`/`SO_REUSEPORT`).
//! Announcements go to the IPv4 group [`GROUP_V4`] on every chosen
//! interface (to the interface's broadcast address when multicast fails
//! there) and to the IPv6 link-local group [`GROUP_V6`]. The interface
//! list is read again before every announcement, so an interface that
//! comes up later is used from then on. Nothing here is fatal to the node:
//! a socket that cannot be opened is reported by [`Discovery::start`], a
//! send that fails is counted and logged.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{Change, Kind, MAX_PACKET, Nearby, Packet, Registry, Timing};
use crate::core::{Clock, NodeId, SystemClock, lock};

/// The default discovery port.
pub const DEFAULT_PORT: u16 = 7421;
/// IPv4 multicast group (organisation-local scope).
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(239, 255, 74, 21);
/// IPv6 multicast group (link-local scope).
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0x5ad, 0x7421);

/// How discovery runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// UDP port announcements are sent to and heard on.
    pub port: u16,
    /// Interface names to announce on; empty: every interface that is up,
    /// loopback aside.
    pub interfaces: Vec<String>,
    /// Announcement interval and the registry's verdicts.
    pub timing: Timing,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            port: DEFAULT_PORT,
            interfaces: Vec::new(),
            timing: Timing::default(),
        }
    }
}

/// Traffic counters.
#[derive(Debug, Default)]
struct Counters {
    sent_packets: AtomicU64,
    sent_bytes: AtomicU64,
    received: AtomicU64,
    bad: AtomicU64,
    send_errors: AtomicU64,
}

/// Traffic so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Announcements sent (each interface and group counts).
    pub sent_packets: u64,
    /// Their bytes (UDP payload).
    pub sent_bytes: u64,
    /// Announcements received from other nodes.
    pub received: u64,
    /// Packets refused as malformed.
    pub bad: u64,
    /// Sends that failed.
    pub send_errors: u64,
    /// Seconds since discovery started.
    pub uptime_secs: u64,
}

/// Running discovery. Stops when dropped.
pub struct Discovery {
    registry: Arc<Mutex<Registry>>,
    counters: Arc<Counters>,
    started: Instant,
    config: DiscoveryConfig,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Discovery {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn bind(domain: Domain, addr: SocketAddr) -> std::io::Result<Socket> {
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    s.set_reuse_port(true)?;
    if domain == Domain::IPV6 {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

/// The interfaces announcements go out on.
#[derive(Debug, Default)]
struct Interfaces {
    v4: Vec<(Ipv4Addr, Option<Ipv4Addr>)>,
    v6: Vec<u32>,
}

fn interfaces(names: &[String]) -> Interfaces {
    let mut out = Interfaces::default();
    let Ok(all) = if_addrs::get_if_addrs() else {
        return out;
    };
    for i in all {
        let chosen = if names.is_empty() {
            !i.is_loopback() && i.is_oper_up()
        } else {
            names.contains(&i.name)
        };
        if !chosen {
            continue;
        }
        match &i.addr {
            if_addrs::IfAddr::V4(a) => out.v4.push((a.ip, a.broadcast)),
            if_addrs::IfAddr::V6(a) => {
                if let Some(ix) = i.index.filter(|_| a.is_link_local())
                    && !out.v6.contains(&ix)
                {
                    out.v6.push(ix);
                }
            }
        }
    }
    out
}

struct Sockets {
    v4: Option<(Socket, UdpSocket)>,
    v6: Option<(Socket, UdpSocket)>,
    joined_v4: Mutex<HashSet<Ipv4Addr>>,
    joined_v6: Mutex<HashSet<u32>>,
}

impl Sockets {
    /// Join the groups on interfaces not joined yet.
    fn join(&self, ifs: &Interfaces) {
        if let Some((s, _)) = &self.v4 {
            let mut joined = lock(&self.joined_v4);
            for (ip, _) in &ifs.v4 {
                if !joined.contains(ip) {
                    match s.join_multicast_v4(&GROUP_V4, ip) {
                        Ok(()) => {
                            joined.insert(*ip);
                        }
                        Err(e) => debug!(interface = %ip, error = %e, "cannot join the IPv4 group"),
                    }
                }
            }
        }
        if let Some((s, _)) = &self.v6 {
            let mut joined = lock(&self.joined_v6);
            for ix in &ifs.v6 {
                if !joined.contains(ix) {
                    match s.join_multicast_v6(&GROUP_V6, *ix) {
                        Ok(()) => {
                            joined.insert(*ix);
                        }
                        Err(e) => debug!(interface = ix, error = %e, "cannot join the IPv6 group"),
                    }
                }
            }
        }
    }
}

struct Announcer {
    sockets: Arc<Sockets>,
    counters: Arc<Counters>,
    names: Vec<String>,
    port: u16,
    packet: Packet,
}

impl Announcer {
    fn count(&self, sent: std::io::Result<usize>, to: SocketAddr) -> bool {
        match sent {
            Ok(n) => {
                self.counters.sent_packets.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .sent_bytes
                    .fetch_add(n as u64, Ordering::Relaxed);
                true
            }
            Err(e) => {
                self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
                debug!(%to, error = %e, "announcement not sent");
                false
            }
        }
    }

    async fn announce(&self, kind: Kind) {
        let ifs = interfaces(&self.names);
        self.sockets.join(&ifs);
        let bytes = Packet {
            kind,
            ..self.packet
        }
        .encode();
        if let Some((raw, s)) = &self.sockets.v4 {
            for (ip, broadcast) in &ifs.v4 {
                let group = SocketAddr::from((GROUP_V4, self.port));
                let sent = match raw.set_multicast_if_v4(ip) {
                    Ok(()) => s.send_to(&bytes, group).await,
                    Err(e) => Err(e),
                };
                if !self.count(sent, group) {
                    // No multicast here: the interface's broadcast address.
                    let to =
                        SocketAddr::from((broadcast.unwrap_or(Ipv4Addr::BROADCAST), self.port));
                    let sent = s.send_to(&bytes, to).await;
                    self.count(sent, to);
                }
            }
        }
        if let Some((raw, s)) = &self.sockets.v6 {
            for ix in &ifs.v6 {
                let to = SocketAddr::V6(SocketAddrV6::new(GROUP_V6, self.port, 0, *ix));
                let sent = match raw.set_multicast_if_v6(*ix) {
                    Ok(()) => s.send_to(&bytes, to).await,
                    Err(e) => Err(e),
                };
                self.count(sent, to);
            }
        }
    }
}

impl Discovery {
    /// Start announcing node `own` (QUIC on `quic_port`) and listening;
    /// registry changes are sent on `changes`. Fails only if no socket at
    /// all can be opened. Must be called within a tokio runtime.
    pub fn start(
        own: NodeId,
        quic_port: u16,
        config: DiscoveryConfig,
        changes: mpsc::UnboundedSender<Change>,
    ) -> std::io::Result<Discovery> {
        let open = |domain, addr: SocketAddr| -> std::io::Result<(Socket, UdpSocket)> {
            let raw = bind(domain, addr)?;
            let std_socket: std::net::UdpSocket = raw.try_clone()?.into();
            Ok((raw, UdpSocket::from_std(std_socket)?))
        };
        let v4 = open(
            Domain::IPV4,
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, config.port)),
        )
        .and_then(|(raw, s)| {
            raw.set_multicast_loop_v4(true)?;
            raw.set_multicast_ttl_v4(1)?;
            raw.set_broadcast(true)?;
            Ok((raw, s))
        });
        let v6 = open(
            Domain::IPV6,
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, config.port)),
        )
        .and_then(|(raw, s)| {
            raw.set_multicast_loop_v6(true)?;
            raw.set_multicast_hops_v6(1)?;
            Ok((raw, s))
        });
        let (v4, v6) = match (v4, v6) {
            (Err(e), Err(_)) => return Err(e),
            (v4, v6) => {
                if let Err(e) = &v4 {
                    warn!(port = config.port, error = %e, "discovery: no IPv4 socket");
                }
                if let Err(e) = &v6 {
                    debug!(port = config.port, error = %e, "discovery: no IPv6 socket");
                }
                (v4.ok(), v6.ok())
            }
        };
        let sockets = Arc::new(Sockets {
            v4,
            v6,
            joined_v4: Mutex::default(),
            joined_v6: Mutex::default(),
        });
        let counters = Arc::new(Counters::default());
        let registry = Arc::new(Mutex::new(Registry::new(own, config.timing)));
        let announcer = Arc::new(Announcer {
            sockets: sockets.clone(),
            counters: counters.clone(),
            names: config.interfaces.clone(),
            port: config.port,
            packet: Packet {
                kind: Kind::Announce,
                node: own,
                port: quic_port,
                instance: fastrand::u64(..),
            },
        });
        // Probes heard: answer soon, at most once per 200 ms.
        let (answer_tx, mut answer_rx) = mpsc::unbounded_channel::<()>();
        let mut tasks = Vec::new();
        for family in [0usize, 1] {
            let present = if family == 0 {
                sockets.v4.is_some()
            } else {
                sockets.v6.is_some()
            };
            if !present {
                continue;
            }
            let (sockets, registry, counters, changes, answer_tx) = (
                sockets.clone(),
                registry.clone(),
                counters.clone(),
                changes.clone(),
                answer_tx.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let socket = if family == 0 {
                    sockets.v4.as_ref().map(|s| &s.1)
                } else {
                    sockets.v6.as_ref().map(|s| &s.1)
                };
                let Some(socket) = socket else { return };
                let mut buf = vec![0u8; MAX_PACKET + 1];
                loop {
                    let (n, from) = match socket.recv_from(&mut buf).await {
                        Ok(r) => r,
                        Err(e) => {
                            debug!(error = %e, "discovery receive failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let packet = match Packet::decode(&buf[..n]) {
                        Ok(p) => p,
                        Err(e) => {
                            counters.bad.fetch_add(1, Ordering::Relaxed);
                            debug!(%from, error = %e, "ignored a discovery packet");
                            continue;
                        }
                    };
                    let change = {
                        let mut r = lock(&registry);
                        if packet.node == r.own {
                            continue;
                        }
                        counters.received.fetch_add(1, Ordering::Relaxed);
                        r.observe(&packet, from, Instant::now(), SystemClock.wall())
                    };
                    if packet.kind == Kind::Probe {
                        let _ = answer_tx.send(());
                    }
                    if let Some(c) = change {
                        let _ = changes.send(c);
                    }
                }
            }));
        }
        {
            let announcer = announcer.clone();
            let interval = config.timing.interval;
            tasks.push(tokio::spawn(async move {
                announcer.announce(Kind::Probe).await;
                let mut next = Instant::now() + jittered(interval);
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(next.into()) => {
                            announcer.announce(Kind::Announce).await;
                            next = Instant::now() + jittered(interval);
                        }
                        Some(()) = answer_rx.recv() => {
                            announcer.announce(Kind::Announce).await;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            while answer_rx.try_recv().is_ok() {}
                        }
                    }
                }
            }));
        }
        {
            let registry = registry.clone();
            let every = (config.timing.interval / 4).max(Duration::from_millis(50));
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let out = lock(&registry).tick(Instant::now());
                    for c in out {
                        let _ = changes.send(c);
                    }
                }
            }));
        }
        Ok(Discovery {
            registry,
            counters,
            started: Instant::now(),
            config,
            tasks,
        })
    }

    /// Every node heard and not expired, in id order.
    pub fn nearby(&self) -> Vec<Nearby> {
        lock(&self.registry).list()
    }

    /// What is known of `id`.
    pub fn get(&self, id: &NodeId) -> Option<Nearby> {
        lock(&self.registry).get(id).cloned()
    }

    /// The configuration in force.
    pub fn config(&self) -> &DiscoveryConfig {
        &self.config
    }

    /// Traffic so far.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            sent_packets: c.sent_packets.load(Ordering::Relaxed),
            sent_bytes: c.sent_bytes.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            bad: c.bad.load(Ordering::Relaxed),
            send_errors: c.send_errors.load(Ordering::Relaxed),
            uptime_secs: self.started.elapsed().as_secs(),
        }
    }
}

/// `interval` ± 10 %, so nodes started together do not announce in step.
fn jittered(interval: Duration) -> Duration {
    let ms = interval.as_millis() as u64;
    Duration::from_millis(ms - ms / 10 + fastrand::u64(..=ms / 5))
}
