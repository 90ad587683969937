//! # transport — who may talk to this node, and how it proves who it is
//!
//! Transport moves messages between peers; it never decides application
//! state (sync's messages travel as opaque `Message::App` bytes).
//!
//! * [`identity`] — the node's self-signed certificate and private key. The
//!   node id is the blake3 of the certificate's DER, so a peer that pins an
//!   id pins exactly one key: a node presenting another certificate under a
//!   trusted name is a stranger.
//! * The list of trusted peers is stored by `runtime::trust`; transport
//!   only holds their ids ([`tls::TrustedIds`]) and asks "is this id
//!   trusted?".
//! * [`tls`] — rustls configurations (TLS 1.3, ring) whose verifiers accept
//!   only certificates whose node id is trusted — and, when dialling, only
//!   the expected peer.
//! * [`wire`] — the message types and the one frame encoder/decoder
//!   (length-prefixed postcard, size-limited, sans-IO).
//! * [`quic`] — quinn endpoints using those configurations: dial a trusted
//!   peer, accept one, exchange hellos on the control stream, open bulk
//!   streams; version mismatches and refusals are reported as such.
//! * [`pairing`] — invite codes with one-time secrets, redeemed over a
//!   separate ALPN while an invite is outstanding.
//! * [`mesh`] — the peer registry: one connection per trusted peer,
//!   reconnect with backoff and jitter, explicit states users can query,
//!   simultaneous dials resolved to one connection.
//!
//! # Design notes
//!
//! (Moved here from ARCHITECTURE.md, which keeps the map.)
//!
//! Identity, trust, wire format, TLS and the first QUIC layer. `identity.rs`: `Identity::create` (rcgen, ECDSA P-256,
//! ring provider; written to a temporary directory and renamed, key 0600 in a
//! 0700 directory; refuses to replace an existing identity) and
//! `Identity::load` (checks the key belongs to the certificate). Node id =
//! blake3 of the certificate DER; its text form (base32 + Luhn mod 32 check
//! character) lives in `core::NodeId`. (The trusted-peer list is stored by
//! `runtime::trust`; transport only holds the ids, `tls::TrustedIds`.)
//! `tls.rs`: rustls server and client configurations (ring provider only,
//! TLS 1.3 only, ALPN `softadastra/1`) with one `PinnedVerifier` for both
//! directions: the peer's node id (blake3 of its certificate) must be in the
//! shared, updatable `TrustedIds`, and equal the expected id when dialling;
//! the handshake signature is checked with the certificate's key. Tested with
//! in-memory handshakes (trusted, untrusted client, wrong server for a pinned
//! id, a pinned certificate without its key, trust changes).
//! `quic/` (`mod.rs` the endpoint, `accept.rs` incoming connections and
//! joins, `peer.rs` control and bulk streams): quinn `Endpoint` (bind, `connect(addr, expected id)`, `accept`
//! returning an `Accepting` whose `establish()` runs the handshake and hello —
//! callers spawn it, so a peer that goes silent mid-handshake never delays
//! anyone else — and `close`), keepalive and idle timeout from `QuicConfig`; the dialler opens
//! the control stream and both sides exchange `Hello`, which must name the
//! certificate's node and this protocol version, or the connection is closed
//! with a close code. `ControlStream` sends and receives framed messages;
//! malformed or oversized input surfaces as `TransportError::Protocol` with
//! the close code to use. `Peer::serve` is the one control-stream loop:
//! answers pings, ends on a goodbye, and closes the connection with the
//! matching code and a log line on malformed, oversized or out-of-order input
//! or a control stream ended mid-frame. `PeerHandle` is what a registry
//! keeps; it opens and accepts `BulkStream`s (raw bytes, any number at once,
//! never blocking the control stream; `read_bytes`/`write_bytes` pass quinn's
//! buffers without copying). The peer registry with reconnect,
//! backoff and simultaneous-dial resolution is `mesh.rs`.
//! Datagram size is the transport's main cost lever (each QUIC packet is
//! encrypted, acknowledged and handed to the kernel on its own): the endpoint
//! announces 65,507-byte UDP payloads (quinn's default of 1,472 caps every
//! path's MTU at Ethernet size, loopback included) and asks for 4 MiB socket
//! buffers; a path to a loopback address probes up to 65,507 bytes and sends
//! one datagram per system call, a LAN path probes up to 6,500 with
//! segmentation offload (quinn hands the kernel up to 10 packets per send,
//! which must stay within 64 KiB). On loopback this takes the bench's bulk
//! stream from ~350 to ~1,100 MB/s at a third of the CPU.
//! A refusal is reported as such: TLS alerts and our close codes are mapped
//! to `TransportError::VersionMismatch` (ALPN `no_application_protocol`, or
//! close code `VERSION`) and `TransportError::Refused` (certificate refused,
//! or `NOT_TRUSTED`), on the dialling and the listening side alike.
//! `pairing.rs`: `Invite` (inviter id, addresses, optional folder, 128-bit
//! secret from the OS CSPRNG, expiry) with a base32 code carrying a 4-byte
//! blake3 check; `Invitations` (in memory: redeem once, refuse expired, used
//! and unknown secrets; keeps `TrustedIds`' *pairing window* open exactly
//! while an unused invite lives). The listener offers a second ALPN,
//! `softadastra-join/1`: an unknown client certificate passes TLS only while
//! the window is open, and `Accepting::establish` then yields
//! `Incoming::Join` (answered with `welcome` or `refuse`), while an unknown
//! id under the normal ALPN is closed with `NOT_TRUSTED` before any hello.
//! `Endpoint::join` dials the invite's addresses pinning the inviter's id.
//! `mesh.rs`: `Mesh` — the accept loop, one dial loop per peer with an
//! address (backoff 0.5 s doubling to 30 s plus up to 50 % jitter; a refusal
//! waits the maximum), per-peer `PeerStatus` with an explicit `PeerState`
//! (waiting, connecting, connected, backing off, refused) and the last error;
//! simultaneous dials keep the one dialled by the lower node id, and a new
//! connection replaces one older than 3 s. A dial still in progress when the
//! peer's own connection is admitted is abandoned: a first packet sent
//! before the peer listened is only resent after about a second, and that
//! late dial would otherwise replace a connection already carrying
//! transfers. `MeshEvent::Connected` and `Disconnected` are sent while the
//! peer slots are held, so the runtime sees connections admitted and released
//! in the order they were (sent after the lock, a replaced connection was
//! sometimes announced after its replacement, and the runtime then talked
//! into a closed connection). `Mesh::discovered` adds the
//! address LAN discovery heard a trusted peer at; each dial attempt takes the
//! next of (configured, discovered) in turn, and `PeerStatus::found_by` says
//! which one the live connection came from (or `incoming`). An untrusted id
//! heard on the LAN is not a slot and is never dialled. Join requests go to a
//! `JoinHandler` supplied by the agent (which owns the store).
//! `wire.rs`: `Message` (Hello — whose last field `meta` is the opaque,
//! versioned metadata blob — Ping/Pong, Goodbye; variants only appended),
//! `encode` and the sans-IO `FrameDecoder` (u32 length + postcard, the length
//! checked against the stream's limit before any body byte is buffered; a
//! failed decoder stays failed and holds nothing). `wire/bulk.rs`: what a
//! bulk stream opens with. `ChunkRequest`: up to 64 chunks (hash + length,
//! each ≤ 1 MiB, 4 MiB in all, checked before anything is read or
//! allocated); the answer is, per chunk in order, a status byte
//! (`CHUNK_FOLLOWS` + the bytes, or `CHUNK_MISSING`). `ChunkListRequest`
//! (head `0x00 0x00`, a count no chunk request may have): a file's chunk
//! list by folder, path and content hash, for a file announced without it;
//! the answer's count is checked against the file's size before an entry
//! is read.

pub mod identity;
pub mod mesh;
pub mod pairing;
pub mod quic;
pub mod tls;
pub mod wire;

use std::path::PathBuf;

use crate::core::{ErrorContext, Retry};

/// Errors of the transport layer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Reading or writing identity files failed.
    #[error("identity {op} failed on {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The stored identity is damaged.
    #[error("identity in {path} is unusable: {reason}")]
    Corruption {
        /// The identity directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An identity already exists where a new one was to be created.
    #[error(
        "this node already has an identity (node id {0}); remove the home's identity/ directory to start over as a new node"
    )]
    AlreadyInitialised(crate::core::NodeId),
    /// Generating the certificate failed.
    #[error("cannot generate the node certificate: {0}")]
    Certificate(String),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// TLS configuration or handshake failed.
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// A connection could not be established (unreachable, refused, or the
    /// peer does not trust this node).
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address dialled.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// The peer broke the protocol; the connection was closed with `code`.
    #[error("protocol error{}: {reason} (close code {code})", peer.map(|p| format!(" from {p}")).unwrap_or_default())]
    Protocol {
        /// The peer, when known.
        peer: Option<crate::core::NodeId>,
        /// What it did.
        reason: String,
        /// The close code sent.
        code: u32,
    },
    /// The connection or stream is closed.
    #[error("connection closed: {0}")]
    Closed(String),
    /// The two nodes speak different versions of the protocol.
    #[error(
        "{addr} speaks another version of the softadastra protocol than this node ({}): {detail}; run the same softadastra release on both machines",
        String::from_utf8_lossy(wire::ALPN)
    )]
    VersionMismatch {
        /// The other node's address.
        addr: std::net::SocketAddr,
        /// What was seen.
        detail: String,
    },
    /// The other node refused this one (it does not trust this node's id),
    /// or this node refused it (not trusted, or not the node expected).
    #[error("{addr} refused: {reason}")]
    Refused {
        /// The other node's address.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// The inviter refused a join.
    #[error("the inviter refused to pair: {0}")]
    JoinRefused(String),
}

impl ErrorContext for TransportError {
    fn retry(&self) -> Retry {
        match self {
            TransportError::Io { .. }
            | TransportError::Connect { .. }
            | TransportError::Closed(_)
            | TransportError::Refused { .. }
            | TransportError::Bind { .. } => Retry::Later,
            _ => Retry::Never,
        }
    }
    fn is_corruption(&self) -> bool {
        matches!(self, TransportError::Corruption { .. })
    }
}
