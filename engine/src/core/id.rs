use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::hash::parse_hex32;

/// The identity of a node: 32 bytes.
///
/// Text form: 64 lowercase hex characters. (The human-friendly, check-summed
/// form used when pairing lives in the identity layer.)
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The all-zero id, used for operations made before a node has an identity
    /// (local tools working on a fresh home directory).
    pub const LOCAL: NodeId = NodeId([0; 32]);

    /// Derive a node id from arbitrary bytes (e.g. a certificate's DER).
    pub fn derive(bytes: &[u8]) -> Self {
        NodeId(*blake3::hash(bytes).as_bytes())
    }
    /// The first 7 hex characters, used in conflict file names and logs.
    pub fn short(&self) -> String {
        self.to_string()[..7].to_string()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// A node id's text form was not 64 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node id {input:?}: expected 64 hex characters")]
pub struct ParseNodeIdError {
    /// What was given.
    pub input: String,
}

impl FromStr for NodeId {
    type Err = ParseNodeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex32(s).map(NodeId).ok_or_else(|| ParseNodeIdError {
            input: s.to_string(),
        })
    }
}

/// A position in a node's write-ahead log.
///
/// Sequences start at 1 (0 means "nothing yet"), grow by one per record and
/// are never reused, across restarts and compaction.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Seq(pub u64);

impl Seq {
    /// "Nothing recorded yet."
    pub const ZERO: Seq = Seq(0);
    /// The sequence after this one.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_text_round_trip() {
        let id = NodeId::derive(b"cert");
        assert_eq!(id.to_string().parse::<NodeId>(), Ok(id));
        assert!("abc".parse::<NodeId>().is_err());
        assert_eq!(id.short().len(), 7);
    }
}
