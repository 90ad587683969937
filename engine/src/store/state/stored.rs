//! # store::state::stored — an entry as the index keeps it
//!
//! Format 2 of the index ([`super::FORMAT`]) keeps each entry as the byte
//! [`ENTRY_TAG`], the postcard of the *number* of its origin device, its
//! version and its timestamp, then the value:
//! - `0`: none (a tombstone);
//! - `1`, then the value's bytes to the end;
//! - `2`, then how many device ids the value holds, each as the bytes
//!   before it (a varint count) and its number, then the value's other
//!   bytes to the end.
//!
//! A device's number is its place in the `nodes` table (number → 32-byte
//! id), given when an entry first names it as its origin or when the
//! store is told of it ([`super::State::know_devices`]: the node's peers,
//! whose ids fill the records they send); a home numbers a handful. Any
//! copy of a numbered id in a value — a version vector's, a source's — is
//! kept as its number, whatever the value is: the value is opaque here
//! and comes back byte for byte. That is ~30 bytes less per device named
//! (issue 21: the home's size per file).
//!
//! Format 1's entries — the plain postcard of [`Entry`] — read as before:
//! their first byte is an `Option`'s tag, 0 or 1, never [`ENTRY_TAG`]. An
//! index of format 1 is so one of format 2 as it is: its number is raised
//! at its first open (an older release then refuses it rather than
//! misread it), and each entry takes the new form when next written.
//!
//! It never decides what is stored. A device number the table does not
//! hold is a typed corruption, never an id made up.

use std::collections::HashMap;

use memchr::memmem::Finder;
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use super::err;
use crate::core::{NodeId, Seq, Timestamp};
use crate::store::{Entry, StoreError};

/// The first byte of an entry in format 2's form.
pub(super) const ENTRY_TAG: u8 = 0xE2;

/// The devices entries name: number → id.
pub(super) const NODES: TableDefinition<u32, &[u8]> = TableDefinition::new("nodes");

/// The devices the index numbered, both ways (loaded at open; a number
/// given in a transaction is written in it, in the `nodes` table).
#[derive(Default)]
pub(super) struct Nodes {
    ids: Vec<NodeId>,
    numbers: HashMap<NodeId, u32>,
    /// A search for each id, by number.
    finders: Vec<Finder<'static>>,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nodes")
            .field("ids", &self.ids.len())
            .finish()
    }
}

impl Nodes {
    /// The devices `read`'s index numbered; none if it has no table yet.
    pub(super) fn load(read: &ReadTransaction) -> Result<Nodes, StoreError> {
        let mut nodes = Nodes::default();
        let table = match read.open_table(NODES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(nodes),
            Err(e) => return Err(err("read the index")(e)),
        };
        for row in table.iter().map_err(err("read the index"))? {
            let (n, id) = row.map_err(err("read the index"))?;
            let id = <[u8; 32]>::try_from(id.value()).map_err(|_| {
                StoreError::Corruption(format!("device number {} is not a device id", n.value()))
            })?;
            if n.value() as usize != nodes.ids.len() {
                return Err(StoreError::Corruption(format!(
                    "device numbers skip from {} to {}",
                    nodes.ids.len(),
                    n.value()
                )));
            }
            nodes.push(NodeId(id));
        }
        Ok(nodes)
    }

    fn push(&mut self, id: NodeId) -> u32 {
        let n = self.ids.len() as u32;
        self.ids.push(id);
        self.numbers.insert(id, n);
        self.finders.push(Finder::new(&id.0).into_owned());
        n
    }

    /// Whether `id` has a number.
    pub(super) fn is_numbered(&self, id: &NodeId) -> bool {
        self.numbers.contains_key(id)
    }

    /// `id`'s number, given now (and written in `txn`) if it has none.
    pub(super) fn number(&mut self, txn: &WriteTransaction, id: NodeId) -> Result<u32, StoreError> {
        if let Some(n) = self.numbers.get(&id) {
            return Ok(*n);
        }
        let n = self.ids.len() as u32;
        txn.open_table(NODES)
            .map_err(err("write the index"))?
            .insert(n, id.0.as_slice())
            .map_err(err("write the index"))?;
        Ok(self.push(id))
    }

    /// Where `value` holds a numbered device's id: (offset, number), in
    /// order, none overlapping.
    fn ids_in(&self, value: &[u8]) -> Vec<(usize, u32)> {
        let mut found: Vec<(usize, u32)> = Vec::new();
        if value.len() < 32 {
            return found;
        }
        for (n, finder) in self.finders.iter().enumerate() {
            found.extend(finder.find_iter(value).map(|at| (at, n as u32)));
        }
        found.sort_unstable();
        let mut end = 0;
        found.retain(|(at, _)| {
            let keep = *at >= end;
            if keep {
                end = at + 32;
            }
            keep
        });
        found
    }
}

/// `entry` in format 2's form; its origin numbered in `txn` if new.
pub(super) fn encode(
    txn: &WriteTransaction,
    nodes: &mut Nodes,
    entry: &Entry,
) -> Result<Vec<u8>, StoreError> {
    let origin = nodes.number(txn, entry.origin)?;
    let value_len = entry.value.as_ref().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(24 + value_len);
    out.push(ENTRY_TAG);
    let head = (origin, entry.version.0, entry.timestamp.0);
    out = postcard::to_extend(&head, out).map_err(|e| StoreError::Corruption(e.to_string()))?;
    let Some(v) = &entry.value else {
        out.push(0);
        return Ok(out);
    };
    let ids = nodes.ids_in(v);
    if ids.is_empty() {
        out.push(1);
        out.extend_from_slice(v);
        return Ok(out);
    }
    out.push(2);
    let mut refs: Vec<(u64, u32)> = Vec::with_capacity(ids.len());
    let mut from = 0;
    for (at, n) in &ids {
        refs.push(((at - from) as u64, *n));
        from = at + 32;
    }
    out = postcard::to_extend(&refs, out).map_err(|e| StoreError::Corruption(e.to_string()))?;
    let mut from = 0;
    for (at, _) in &ids {
        out.extend_from_slice(&v[from..*at]);
        from = at + 32;
    }
    out.extend_from_slice(&v[from..]);
    Ok(out)
}

/// The entry `bytes` hold, in either format.
pub(super) fn decode(nodes: &Nodes, bytes: &[u8]) -> Result<Entry, String> {
    let Some(rest) = bytes.strip_prefix(&[ENTRY_TAG]) else {
        return postcard::from_bytes(bytes).map_err(|e| e.to_string());
    };
    let ((origin, version, timestamp), rest) =
        postcard::take_from_bytes::<(u32, u64, u64)>(rest).map_err(|e| e.to_string())?;
    let origin = *(nodes.ids.get(origin as usize))
        .ok_or_else(|| format!("names device number {origin}, which the index does not hold"))?;
    let value = match rest.split_first() {
        Some((0, [])) => None,
        Some((1, v)) => Some(v.to_vec()),
        Some((2, rest)) => Some(with_ids(nodes, rest)?),
        _ => return Err("has no value marker".into()),
    };
    Ok(Entry {
        value,
        version: Seq(version),
        timestamp: Timestamp(timestamp),
        origin,
    })
}

/// A value kept with its devices' ids as numbers, whole again.
fn with_ids(nodes: &Nodes, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let (refs, mut literal) =
        postcard::take_from_bytes::<Vec<(u64, u32)>>(bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(literal.len() + 32 * refs.len());
    for (gap, n) in refs {
        let id = (nodes.ids.get(n as usize))
            .ok_or_else(|| format!("holds device number {n}, which the index does not hold"))?;
        let gap = usize::try_from(gap)
            .ok()
            .filter(|g| *g <= literal.len())
            .ok_or("holds a device id past its end")?;
        out.extend_from_slice(&literal[..gap]);
        out.extend_from_slice(&id.0);
        literal = &literal[gap..];
    }
    out.extend_from_slice(literal);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableDatabase;

    fn db() -> redb::Database {
        redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap()
    }

    fn entry(origin: u8, value: Option<&[u8]>) -> Entry {
        Entry {
            value: value.map(<[u8]>::to_vec),
            version: Seq(1_234_567),
            timestamp: Timestamp(1_764_900_000_123_456_789),
            origin: NodeId([origin; 32]),
        }
    }

    /// Entries read back exactly in both forms, the devices' numbers
    /// survive a commit, and the form is 30–31 bytes shorter.
    #[test]
    fn entries_read_back_exactly_and_shorter() {
        let db = db();
        let mut nodes = Nodes::default();
        let cases = [
            entry(7, Some(b"a value")),
            entry(8, None),
            entry(7, Some(b"")),
            entry(9, Some(&[0xE2; 300])),
        ];
        let txn = db.begin_write().unwrap();
        let stored: Vec<Vec<u8>> = (cases.iter())
            .map(|e| encode(&txn, &mut nodes, e).unwrap())
            .collect();
        txn.commit().unwrap();
        let loaded = Nodes::load(&db.begin_read().unwrap()).unwrap();
        assert_eq!(
            loaded.ids,
            [NodeId([7; 32]), NodeId([8; 32]), NodeId([9; 32])]
        );
        for (e, bytes) in cases.iter().zip(&stored) {
            assert_eq!(decode(&loaded, bytes).as_ref(), Ok(e));
            let plain = postcard::to_allocvec(e).unwrap();
            assert_ne!(plain[0], ENTRY_TAG);
            assert_eq!(decode(&loaded, &plain).as_ref(), Ok(e), "format 1");
            assert!(
                bytes.len() + 30 <= plain.len(),
                "{} vs {}",
                bytes.len(),
                plain.len()
            );
        }
    }

    /// A damaged entry, or one naming a device the table lacks, is an
    /// error.
    #[test]
    fn a_damaged_entry_or_an_unknown_device_is_an_error() {
        let db = db();
        let mut nodes = Nodes::default();
        let txn = db.begin_write().unwrap();
        let bytes = encode(&txn, &mut nodes, &entry(7, Some(b"v"))).unwrap();
        let other = encode(&txn, &mut nodes, &entry(8, None)).unwrap();
        txn.abort().unwrap();
        // The numbers given in a transaction that did not commit are not
        // in the table.
        let loaded = Nodes::load(&db.begin_read().unwrap()).unwrap();
        assert!(
            decode(&loaded, &bytes)
                .unwrap_err()
                .contains("device number 0")
        );
        for cut in 1..other.len() {
            assert!(decode(&nodes, &other[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_marker = other.clone();
        *bad_marker.last_mut().unwrap() = 5;
        assert!(decode(&nodes, &bad_marker).is_err());
    }

    /// Copies of numbered devices' ids anywhere in a value — at its
    /// start, its end, side by side, overlapping — come back byte for
    /// byte, each kept in a few bytes; an unnumbered id stays as it is.
    #[test]
    fn ids_inside_a_value_are_kept_as_numbers_and_come_back() {
        let db = db();
        let mut nodes = Nodes::default();
        let txn = db.begin_write().unwrap();
        for b in [1u8, 2, 3] {
            nodes.number(&txn, NodeId([b; 32])).unwrap();
        }
        let id = |b: u8| [b; 32].to_vec();
        let mut overlapping = id(1);
        overlapping.extend([1; 16]);
        let values: Vec<Vec<u8>> = vec![
            id(1),
            [id(2), id(3)].concat(),
            [
                b"head".to_vec(),
                id(3),
                b"middle".to_vec(),
                id(1),
                b"tail".to_vec(),
            ]
            .concat(),
            overlapping,
            [id(9), id(2)].concat(),
            [vec![7; 31], id(2)[..31].to_vec()].concat(),
        ];
        for v in values {
            let e = Entry {
                value: Some(v.clone()),
                ..entry(1, None)
            };
            let bytes = encode(&txn, &mut nodes, &e).unwrap();
            assert_eq!(decode(&nodes, &bytes), Ok(e), "{v:?}");
            let whole = postcard::to_allocvec(&Entry {
                value: Some(v.clone()),
                ..entry(1, None)
            })
            .unwrap();
            let ids = nodes.ids_in(&v).len();
            assert!(
                bytes.len() + 31 + 28 * ids <= whole.len(),
                "{} bytes for {} ({ids} ids)",
                bytes.len(),
                whole.len()
            );
        }
    }

    /// A value whose kept ids name a number the table lacks, or point
    /// past its end, is an error.
    #[test]
    fn a_value_with_a_bad_id_reference_is_an_error() {
        let db = db();
        let mut nodes = Nodes::default();
        let txn = db.begin_write().unwrap();
        nodes.number(&txn, NodeId([1; 32])).unwrap();
        let mut head = vec![ENTRY_TAG];
        head = postcard::to_extend(&(0u32, 1u64, 1u64), head).unwrap();
        let with = |refs: Vec<(u64, u32)>, literal: &[u8]| {
            let mut b = head.clone();
            b.push(2);
            b = postcard::to_extend(&refs, b).unwrap();
            b.extend_from_slice(literal);
            decode(&nodes, &b)
        };
        assert_eq!(
            with(vec![(2, 0)], b"abcd").unwrap().value.unwrap().len(),
            36
        );
        assert!(with(vec![(0, 5)], b"").unwrap_err().contains("number 5"));
        assert!(
            with(vec![(9, 0)], b"abc")
                .unwrap_err()
                .contains("past its end")
        );
    }

    use proptest::prelude::Strategy;

    proptest::proptest! {
        /// Any value made of literal bytes and numbered ids, in any mix,
        /// comes back exactly.
        #[test]
        fn any_value_comes_back_exactly(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)
                        .prop_map(Err),
                    (0u8..4).prop_map(Ok),
                ],
                0..12,
            )
        ) {
            let db = db();
            let mut nodes = Nodes::default();
            let txn = db.begin_write().unwrap();
            for b in 0u8..3 {
                nodes.number(&txn, NodeId([b; 32])).unwrap();
            }
            let v: Vec<u8> = parts
                .into_iter()
                .flat_map(|p| match p {
                    Ok(b) => vec![b; 32],
                    Err(bytes) => bytes,
                })
                .collect();
            let e = Entry { value: Some(v), ..entry(2, None) };
            let bytes = encode(&txn, &mut nodes, &e).unwrap();
            proptest::prop_assert_eq!(decode(&nodes, &bytes), Ok(e));
        }
    }
}
