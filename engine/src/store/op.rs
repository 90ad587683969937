//! What the store holds and how it changes: an [`Entry`] per key, and
//! the [`Op`]s the WAL records, each checked ([`validate`]) before it is
//! logged. Types and checks only; no I/O.

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::core::{NodeId, Seq, Timestamp};

/// One key's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The value, or `None` for a tombstone (the key was removed).
    #[serde(with = "crate::core::bytes::option")]
    pub value: Option<Vec<u8>>,
    /// WAL sequence of the operation that last changed this key.
    pub version: Seq,
    /// Wall-clock time of that operation.
    pub timestamp: Timestamp,
    /// Node that made that change.
    pub origin: NodeId,
}

impl Entry {
    /// Whether this entry records a removal.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// A change to the store, as recorded in the WAL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Set `key` to `value`.
    Put {
        /// Namespace.
        ns: String,
        /// Key.
        key: String,
        /// New value.
        #[serde(with = "crate::core::bytes")]
        value: Vec<u8>,
        /// Node the change comes from.
        origin: NodeId,
        /// When it was made.
        timestamp: Timestamp,
    },
    /// Remove `key`, leaving a tombstone.
    Remove {
        /// Namespace.
        ns: String,
        /// Key.
        key: String,
        /// Node the change comes from.
        origin: NodeId,
        /// When it was made.
        timestamp: Timestamp,
    },
    /// Forget tombstones in `ns` older than `before`.
    PurgeTombstones {
        /// Namespace.
        ns: String,
        /// Cut-off time.
        before: Timestamp,
    },
    /// Forget `key` entirely, leaving no tombstone: for local bookkeeping
    /// that must not look like a deletion to peers (a path that became ignored).
    Forget {
        /// Namespace.
        ns: String,
        /// Key.
        key: String,
    },
    /// Forget every key starting with `prefix`, leaving no tombstones (a
    /// folder removed from this node; its files stay on disk and on peers).
    DropPrefix {
        /// Namespace.
        ns: String,
        /// Key prefix (non-empty).
        prefix: String,
    },
}

impl Op {
    pub(super) fn ns(&self) -> &str {
        match self {
            Op::Put { ns, .. }
            | Op::Remove { ns, .. }
            | Op::PurgeTombstones { ns, .. }
            | Op::Forget { ns, .. }
            | Op::DropPrefix { ns, .. } => ns,
        }
    }
    fn key(&self) -> Option<&str> {
        match self {
            Op::Put { key, .. } | Op::Remove { key, .. } | Op::Forget { key, .. } => Some(key),
            Op::DropPrefix { prefix, .. } => Some(prefix),
            Op::PurgeTombstones { .. } => None,
        }
    }
}

/// Refuse an op whose namespace or key the store does not accept.
pub(super) fn validate(op: &Op) -> Result<(), StoreError> {
    let bad = |reason| StoreError::InvalidKey {
        ns: op.ns().to_string(),
        key: op.key().unwrap_or("").to_string(),
        reason,
    };
    if op.ns().is_empty() {
        return Err(bad("namespace is empty"));
    }
    match op.key() {
        Some("") => Err(bad("key is empty")),
        Some(k) if k.len() > 4096 => Err(bad("key is longer than 4096 bytes")),
        _ => Ok(()),
    }
}
