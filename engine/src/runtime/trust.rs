//! Trusted peers, persisted: trust is explicit, by node id.
//!
//! Kept in the store's `peers` namespace (key: the node id's hex form,
//! value: a postcard [`TrustedPeer`]), so the list is durable and recovers
//! like everything else. The transport never reads it: it only asks its
//! in-memory [`TrustedIds`](crate::transport::tls::TrustedIds) "is this id
//! trusted?", and the [`Node`](super::node::Node) keeps the two in step.
//! This module reads and writes the store; it opens no connection.

use serde::{Deserialize, Serialize};

use crate::core::NodeId;
use crate::store::{Op, Store, StoreError};

/// Namespace of trusted peers.
pub const PEERS_NS: &str = "peers";

/// A peer this node trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedPeer {
    /// Its node id.
    pub id: NodeId,
    /// Where to reach it (`host:port`), if known; discovery can fill it in.
    pub addr: Option<String>,
}

/// Why a trust change is refused.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A node cannot trust itself.
    #[error("{0} is this node's own id")]
    SelfTrust(NodeId),
    /// The address is not `host:port`.
    #[error(
        "invalid peer address {0:?}: expected HOST:PORT, e.g. 192.168.1.20:7420 or laptop.local:7420 or [fe80::1]:7420"
    )]
    BadAddress(String),
    /// Not a trusted peer.
    #[error("{0} is not a trusted peer (see `softadastra peer list`)")]
    NotTrusted(NodeId),
    /// A stored entry does not decode.
    #[error("corrupt trusted-peer entry {0}")]
    Corruption(String),
}

/// Check a `host:port` address (host: name, IPv4, or bracketed IPv6).
pub fn validate_addr(addr: &str) -> Result<(), TrustError> {
    let bad = || TrustError::BadAddress(addr.to_string());
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if host_ok { Ok(()) } else { Err(bad()) }
}

/// Trust `id`. Re-adding with an address updates it; without, keeps it.
pub fn add(
    store: &mut Store,
    own: NodeId,
    id: NodeId,
    addr: Option<String>,
) -> Result<TrustedPeer, TrustError> {
    if id == own {
        return Err(TrustError::SelfTrust(id));
    }
    if let Some(a) = &addr {
        validate_addr(a)?;
    }
    // Re-adding without an address keeps the one already known.
    let addr = addr.or_else(|| list(store).ok()?.into_iter().find(|p| p.id == id)?.addr);
    let peer = TrustedPeer { id, addr };
    store.put(
        PEERS_NS,
        &id.to_hex(),
        postcard::to_allocvec(&peer).unwrap_or_default(),
    )?;
    Ok(peer)
}

/// Stop trusting `id`.
pub fn remove(store: &mut Store, id: NodeId) -> Result<(), TrustError> {
    if !store.contains(PEERS_NS, &id.to_hex()) {
        return Err(TrustError::NotTrusted(id));
    }
    store.apply(Op::Forget {
        ns: PEERS_NS.into(),
        key: id.to_hex(),
    })?;
    Ok(())
}

/// Every trusted peer.
pub fn list(store: &Store) -> Result<Vec<TrustedPeer>, TrustError> {
    store
        .list(PEERS_NS, "")
        .map(|(k, e)| {
            postcard::from_bytes(e.value.as_deref().unwrap_or_default())
                .map_err(|_| TrustError::Corruption(k.to_string()))
        })
        .collect()
}

/// Whether `id` is trusted.
pub fn is_trusted(store: &Store, id: NodeId) -> bool {
    store.contains(PEERS_NS, &id.to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for good in [
            "127.0.0.1:7420",
            "[::1]:7420",
            "laptop.local:9",
            "nas:65535",
        ] {
            assert!(validate_addr(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "host",
            "host:",
            "host:0",
            "host:70000",
            ":80",
            "-bad:80",
            "a b:80",
            "1.2.3.4",
        ] {
            assert!(validate_addr(bad).is_err(), "{bad}");
        }
    }
}
