//! # store::state::stored — an entry as the index keeps it
//!
//! Format 2 of the index ([`super::FORMAT`]) keeps each entry as the byte
//! [`ENTRY_TAG`], the postcard of the *number* of its origin device, its
//! version and its timestamp, then `0` for a tombstone or `1` and the
//! value's bytes to the end. A device's number is its place in the
//! `nodes` table (number → 32-byte id), given when an entry first names
//! it; a home names a handful. That is 31 bytes less per entry than the
//! id itself, and one less for the value's length (issue 21: the home's
//! size per file).
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
#[derive(Debug, Default)]
pub(super) struct Nodes {
    ids: Vec<NodeId>,
    numbers: HashMap<NodeId, u32>,
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
        n
    }

    /// `id`'s number, given now (and written in `txn`) if it has none.
    fn number(&mut self, txn: &WriteTransaction, id: NodeId) -> Result<u32, StoreError> {
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
    match &entry.value {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(v);
        }
        None => out.push(0),
    }
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
        _ => return Err("has no value marker".into()),
    };
    Ok(Entry {
        value,
        version: Seq(version),
        timestamp: Timestamp(timestamp),
        origin,
    })
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
}
