//! # discovery — which nodes are on this LAN, without typing addresses
//!
//! "Discovery finds peers. Transport connects peers. Sync sends
//! operations." A node announces itself on the LAN by UDP (IPv4 multicast,
//! IPv6 link-local multicast, IPv4 broadcast where multicast fails) and
//! listens for others' announcements. Finding a node decides nothing about
//! trust: the runtime dials a discovered node only if it is trusted, and
//! the TLS pin still decides who answers — a forged announcement for a
//! trusted id that points at a stranger leads to a refused handshake.
//!
//! * [`Packet`] — the announcement: magic, version, kind, node id, QUIC
//!   port, instance id. Fixed layout, decoded without trusting a byte; a
//!   newer version's extra fields are ignored.
//! * [`Registry`] — sans-IO: packets and a clock in, [`Change`]s out.
//!   Every node it knows is `discovered` (one packet), `alive` (heard
//!   again), or `stale` (silent for `stale_after`); silent for
//!   `expire_after`, it is expired and forgotten, and comes back as new.
//! * [`service`] — the sockets: periodic announcements, a probe at start
//!   that every node answers at once (a new node is found in well under a
//!   second), the registry's pruning timer.
//!
//! The peer's address is the packet's *source* address with the announced
//! port: a node never has to know (or guess) its own address.

pub mod service;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::core::{NodeId, Timestamp};

/// First bytes of every announcement.
pub const MAGIC: [u8; 4] = *b"SADV";
/// The packet version this node writes.
pub const VERSION: u8 = 1;
/// Bytes of a version-1 packet.
pub const PACKET_LEN: usize = 48;
/// Longest packet read (a newer version may append fields).
pub const MAX_PACKET: usize = 1024;

/// What an announcement asks of its receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// "I am here."
    Announce,
    /// "I am here, and just started: announce yourselves now."
    Probe,
}

/// One announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Announce or probe.
    pub kind: Kind,
    /// The sender's node id (a claim: only the TLS handshake proves it).
    pub node: NodeId,
    /// The sender's QUIC port.
    pub port: u16,
    /// Random per process start: a new value means the node restarted.
    pub instance: u64,
}

/// Why bytes are not an announcement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than a version-1 packet.
    #[error("too short: {0} bytes, an announcement has at least {PACKET_LEN}")]
    TooShort(usize),
    /// Longer than any version writes.
    #[error("too long: {0} bytes, at most {MAX_PACKET}")]
    TooLong(usize),
    /// Not ours (another protocol on the same port).
    #[error("not a softadastra announcement (bad magic)")]
    BadMagic,
    /// Version 0 does not exist.
    #[error("invalid packet version {0}")]
    BadVersion(u8),
    /// A kind this version does not know.
    #[error("unknown packet kind {0}")]
    BadKind(u8),
    /// Port 0 cannot be dialled.
    #[error("announced port 0")]
    BadPort,
}

impl Packet {
    /// The packet's bytes (version [`VERSION`]).
    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let mut b = [0u8; PACKET_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5] = match self.kind {
            Kind::Announce => 1,
            Kind::Probe => 2,
        };
        b[6..38].copy_from_slice(&self.node.0);
        b[38..40].copy_from_slice(&self.port.to_le_bytes());
        b[40..48].copy_from_slice(&self.instance.to_le_bytes());
        b
    }

    /// Read a packet. Versions above 1 keep version 1's layout as a prefix
    /// and may append fields, which are ignored here.
    pub fn decode(b: &[u8]) -> Result<Packet, PacketError> {
        if b.len() > MAX_PACKET {
            return Err(PacketError::TooLong(b.len()));
        }
        if b.len() < PACKET_LEN {
            return Err(PacketError::TooShort(b.len()));
        }
        if b[..4] != MAGIC {
            return Err(PacketError::BadMagic);
        }
        if b[4] == 0 {
            return Err(PacketError::BadVersion(0));
        }
        let kind = match b[5] {
            1 => Kind::Announce,
            2 => Kind::Probe,
            k => return Err(PacketError::BadKind(k)),
        };
        let mut node = [0u8; 32];
        node.copy_from_slice(&b[6..38]);
        let port = u16::from_le_bytes([b[38], b[39]]);
        if port == 0 {
            return Err(PacketError::BadPort);
        }
        let mut instance = [0u8; 8];
        instance.copy_from_slice(&b[40..48]);
        Ok(Packet {
            kind,
            node: NodeId(node),
            port,
            instance: u64::from_le_bytes(instance),
        })
    }
}

/// Timing of announcements and of the registry's verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Between two announcements.
    pub interval: Duration,
    /// Silent this long: stale.
    pub stale_after: Duration,
    /// Silent this long: expired and forgotten.
    pub expire_after: Duration,
}

impl Timing {
    /// Announce every `interval`; stale after three missed announcements,
    /// expired after eight.
    pub fn every(interval: Duration) -> Timing {
        Timing {
            interval,
            stale_after: interval * 3,
            expire_after: interval * 8,
        }
    }
}

impl Default for Timing {
    /// Every 5 s: stale after 15 s, expired after 40 s.
    fn default() -> Self {
        Timing::every(Duration::from_secs(5))
    }
}

/// How present a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// One announcement so far.
    Discovered,
    /// Heard again since.
    Alive,
    /// Silent for `stale_after`.
    Stale,
}

impl Presence {
    /// Lower-case name, as shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Discovered => "discovered",
            Presence::Alive => "alive",
            Presence::Stale => "stale",
        }
    }
}

/// A node the registry knows.
#[derive(Debug, Clone, Serialize)]
pub struct Nearby {
    /// Its claimed id (shown in its text form).
    #[serde(serialize_with = "NodeId::serialize_text")]
    pub id: NodeId,
    /// Source address of its last packet, with the announced port.
    pub addr: SocketAddr,
    /// Its instance id.
    pub instance: u64,
    /// Presence.
    pub presence: Presence,
    /// Wall time of its last packet.
    pub last_seen: Timestamp,
    /// Packets received from it.
    pub packets: u64,
    #[serde(skip)]
    heard: Instant,
    /// When an IPv4 packet last came: IPv4 is preferred while it is heard
    /// (a node announcing on both families would otherwise seem to move
    /// with every packet).
    #[serde(skip)]
    heard_v4: Option<Instant>,
}

/// What the registry learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A node not known (or expired) announced itself.
    Found(NodeId, SocketAddr),
    /// A known node announced a different address.
    Moved(NodeId, SocketAddr),
    /// A known node restarted (new instance id).
    Restarted(NodeId, SocketAddr),
    /// A stale node was heard again.
    Returned(NodeId, SocketAddr),
    /// A node went silent for `stale_after`.
    Stale(NodeId),
    /// A node went silent for `expire_after`; it is forgotten.
    Expired(NodeId),
}

/// Nodes heard on the LAN. Sans-IO: time comes in as arguments.
#[derive(Debug)]
pub struct Registry {
    own: NodeId,
    timing: Timing,
    nodes: HashMap<NodeId, Nearby>,
}

impl Registry {
    /// An empty registry for node `own` (whose packets are ignored).
    pub fn new(own: NodeId, timing: Timing) -> Registry {
        Registry {
            own,
            timing,
            nodes: HashMap::new(),
        }
    }

    /// The timing in force.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// A packet arrived from `from` (its source address) at `now` (`wall`).
    pub fn observe(
        &mut self,
        packet: &Packet,
        from: SocketAddr,
        now: Instant,
        wall: Timestamp,
    ) -> Option<Change> {
        if packet.node == self.own {
            return None;
        }
        let mut addr = from;
        addr.set_port(packet.port);
        let id = packet.node;
        let Some(n) = self.nodes.get_mut(&id) else {
            self.nodes.insert(
                id,
                Nearby {
                    id,
                    addr,
                    instance: packet.instance,
                    presence: Presence::Discovered,
                    last_seen: wall,
                    packets: 1,
                    heard: now,
                    heard_v4: addr.is_ipv4().then_some(now),
                },
            );
            return Some(Change::Found(id, addr));
        };
        let keep_v4 = n.addr.is_ipv4()
            && addr.is_ipv6()
            && n.heard_v4
                .is_some_and(|t| now.saturating_duration_since(t) < self.timing.stale_after);
        if keep_v4 {
            addr = n.addr;
        } else if addr.is_ipv4() {
            n.heard_v4 = Some(now);
        }
        let change = if n.presence == Presence::Stale {
            Some(Change::Returned(id, addr))
        } else if n.instance != packet.instance {
            Some(Change::Restarted(id, addr))
        } else if n.addr != addr {
            Some(Change::Moved(id, addr))
        } else {
            None
        };
        n.presence = Presence::Alive;
        n.addr = addr;
        n.instance = packet.instance;
        n.last_seen = wall;
        n.heard = now;
        n.packets += 1;
        change
    }

    /// Mark the silent stale and forget the long silent.
    pub fn tick(&mut self, now: Instant) -> Vec<Change> {
        let mut out = Vec::new();
        let t = self.timing;
        self.nodes.retain(|id, n| {
            let silent = now.saturating_duration_since(n.heard);
            if silent >= t.expire_after {
                out.push(Change::Expired(*id));
                return false;
            }
            if silent >= t.stale_after && n.presence != Presence::Stale {
                n.presence = Presence::Stale;
                out.push(Change::Stale(*id));
            }
            true
        });
        out.sort_by_key(|c| match c {
            Change::Stale(id) | Change::Expired(id) => *id,
            _ => NodeId::LOCAL,
        });
        out
    }

    /// What is known of `id`.
    pub fn get(&self, id: &NodeId) -> Option<&Nearby> {
        self.nodes.get(id)
    }

    /// Every known node, in id order.
    pub fn list(&self) -> Vec<Nearby> {
        let mut v: Vec<Nearby> = self.nodes.values().cloned().collect();
        v.sort_by_key(|n| n.id);
        v
    }
}

#[cfg(test)]
mod tests;
