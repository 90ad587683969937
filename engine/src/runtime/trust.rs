//! Trusted peers, persisted: trust is explicit, by node id.
//!
//! Kept in the store's `peers` namespace (key: the node id's hex form,
//! value: a postcard [`TrustedPeer`]), so the list is durable and recovers
//! like everything else. The transport never reads it: it only asks its
//! in-memory [`TrustedIds`](crate::transport::tls::TrustedIds) "is this id
//! trusted?", and the [`Node`](super::node::Node) keeps the two in step.
//! This module reads and writes the store; it opens no connection.

use serde::{Deserialize, Serialize};

use std::collections::BTreeSet;

use crate::core::NodeId;
use crate::index::{FolderError, members};
use crate::store::{Op, Store, StoreError};

/// Namespace of trusted peers.
pub const PEERS_NS: &str = "peers";
/// Namespace of devices' names: key the hex id, value the name (UTF-8):
/// the one given with `peer add --name`, else the one the device gave
/// itself when it last connected.
pub const NAMES_NS: &str = "peers.name";

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
    /// No trusted device has that id or name.
    #[error("no trusted device is called {0:?} (give its id or name, see `softadastra peer list`)")]
    UnknownDevice(String),
    /// More than one trusted device has that name.
    #[error("{name:?} names {count} trusted devices: give the id instead")]
    AmbiguousName {
        /// The name given.
        name: String,
        /// How many devices have it.
        count: usize,
    },
    /// A name that cannot be used.
    #[error("invalid device name {0:?}: use 1-64 characters, not all spaces")]
    BadName(String),
    /// A stored entry does not decode.
    #[error("corrupt trusted-peer entry {0}")]
    Corruption(String),
    /// A folder's membership could not be read or changed.
    #[error(transparent)]
    Folder(#[from] FolderError),
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
    let new = !is_trusted(store, id);
    let peer = TrustedPeer { id, addr };
    store.put(
        PEERS_NS,
        &id.to_hex(),
        postcard::to_allocvec(&peer).unwrap_or_default(),
    )?;
    if new {
        // A device you pair with shares the app's key/values, as before
        // folders had members; no folder is shared with it by this.
        members::set_member(store, crate::index::values::APP_SPACE, id, true)?;
    }
    // Its id fills the records it sends: the index keeps it as a number.
    store.know_devices(&[id])?;
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
    // Trusting it again later shares nothing by itself.
    members::forget_device(store, id)?;
    if store.contains(NAMES_NS, &id.to_hex()) {
        store.apply(Op::Forget {
            ns: NAMES_NS.into(),
            key: id.to_hex(),
        })?;
    }
    Ok(())
}

/// Settle, once, what a home from a release before folder membership
/// means: each folder it shared becomes shared with the devices trusted
/// now (it synced with all of them), and so does the app space; said
/// once in the log. Returns the folders settled and whether the app
/// space was. Nothing to do (the usual case) costs a look at the folder
/// list.
pub fn upgrade_membership(store: &mut Store) -> Result<(Vec<String>, bool), TrustError> {
    let (legacy, app) = members::unsettled(store)?;
    if legacy.is_empty() && (!app || store.list(PEERS_NS, "").next().is_none()) {
        return Ok((Vec::new(), false));
    }
    let trusted: BTreeSet<NodeId> = list(store)?.into_iter().map(|p| p.id).collect();
    let (folders, app) = members::settle_upgrade(store, &trusted)?;
    if !folders.is_empty() || (app && !trusted.is_empty()) {
        tracing::info!(
            folders = ?folders,
            devices = trusted.len(),
            "upgrade: folders now have members; each folder shared before, and the app's values, stay shared with the devices trusted now (as they synced); a folder added from now on is shared with no device until you say so (`softadastra folder share`)"
        );
    }
    Ok((folders, app))
}

/// Record `name` for `id`. A name already given is replaced only when
/// `chosen` (the user named it); a device's own name fills a gap only.
pub fn set_name(store: &mut Store, id: NodeId, name: &str, chosen: bool) -> Result<(), TrustError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err(TrustError::BadName(name.to_string()));
    }
    let key = id.to_hex();
    let same = store.value(NAMES_NS, &key).map(|v| v == name.as_bytes());
    if same == Some(true) || (same.is_some() && !chosen) {
        return Ok(());
    }
    store.put(NAMES_NS, &key, name.as_bytes().to_vec())?;
    Ok(())
}

/// The name recorded for `id`, if any.
pub fn name_of(store: &Store, id: NodeId) -> Option<String> {
    store
        .value(NAMES_NS, &id.to_hex())
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// The trusted device `text` names: its id (in any form `NodeId` reads),
/// or its name, compared without case.
pub fn resolve(store: &Store, text: &str) -> Result<NodeId, TrustError> {
    if let Ok(id) = text.parse::<NodeId>() {
        return if id == store.config().node {
            Err(TrustError::SelfTrust(id))
        } else if is_trusted(store, id) {
            Ok(id)
        } else {
            Err(TrustError::NotTrusted(id))
        };
    }
    let wanted = text.trim().to_lowercase();
    let found: Vec<NodeId> = list(store)?
        .into_iter()
        .map(|p| p.id)
        .filter(|id| name_of(store, *id).is_some_and(|n| n.to_lowercase() == wanted))
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(TrustError::UnknownDevice(text.to_string())),
        many => Err(TrustError::AmbiguousName {
            name: text.to_string(),
            count: many.len(),
        }),
    }
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
