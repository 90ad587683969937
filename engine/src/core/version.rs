use serde::{Deserialize, Serialize};

use super::NodeId;

/// How two versions of the same thing relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Causality {
    /// Same history.
    Equal,
    /// `self` happened before `other` (other is newer).
    Before,
    /// `self` happened after `other` (self is newer).
    After,
    /// Neither saw the other: a conflict.
    Concurrent,
}

/// A version vector: for each node, how many changes it made to one item.
///
/// Kept sorted by node id; nodes with count 0 are absent.
///
/// ```
/// use softadastra::core::{Causality, NodeId, VersionVector};
/// let (a, b) = (NodeId([1; 32]), NodeId([2; 32]));
/// let mut v1 = VersionVector::default();
/// v1.bump(a);
/// let mut v2 = v1.clone();
/// v2.bump(b);
/// assert_eq!(v1.compare(&v2), Causality::Before);
/// v1.bump(a);
/// assert_eq!(v1.compare(&v2), Causality::Concurrent);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionVector(Vec<(NodeId, u64)>);

impl VersionVector {
    /// The count for `node`.
    pub fn get(&self, node: NodeId) -> u64 {
        self.0
            .binary_search_by_key(&node, |(n, _)| *n)
            .map_or(0, |i| self.0[i].1)
    }

    /// Record one more change by `node`.
    pub fn bump(&mut self, node: NodeId) {
        self.advance(node, 1);
    }

    /// Count `by` more changes by `node` at once (a repaired store moves
    /// its own count past any it may have given out in lost records).
    pub fn advance(&mut self, node: NodeId, by: u64) {
        if by == 0 {
            return;
        }
        match self.0.binary_search_by_key(&node, |(n, _)| *n) {
            Ok(i) => self.0[i].1 = self.0[i].1.saturating_add(by),
            Err(i) => self.0.insert(i, (node, by)),
        }
    }

    /// The element-wise maximum of both.
    pub fn merge(&mut self, other: &VersionVector) {
        for (node, count) in &other.0 {
            match self.0.binary_search_by_key(node, |(n, _)| *n) {
                Ok(i) => self.0[i].1 = self.0[i].1.max(*count),
                Err(i) => self.0.insert(i, (*node, *count)),
            }
        }
    }

    /// How `self` relates to `other`.
    pub fn compare(&self, other: &VersionVector) -> Causality {
        let (mut less, mut greater) = (false, false);
        let nodes = self.0.iter().chain(other.0.iter()).map(|(n, _)| *n);
        for node in nodes {
            let (a, b) = (self.get(node), other.get(node));
            less |= a < b;
            greater |= a > b;
        }
        match (less, greater) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Before,
            (false, true) => Causality::After,
            (true, true) => Causality::Concurrent,
        }
    }

    /// Whether no change was ever recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The (node, count) pairs, sorted by node.
    pub fn entries(&self) -> &[(NodeId, u64)] {
        &self.0
    }
}
