//! # transport — who may talk to this node, and how it proves who it is
//!
//! Transport moves messages between peers; it never decides application
//! state (sync's messages travel as opaque `Message::App` bytes).
//!
//! * [`identity`] — the node's self-signed certificate and private key. The
//!   node id is the blake3 of the certificate's DER, so a peer that pins an
//!   id pins exactly one key: a node presenting another certificate under a
//!   trusted name is a stranger.
//! * [`trust`] — the explicit list of peers this node trusts, by node id,
//!   with an optional address.
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
