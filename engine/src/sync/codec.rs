//! The sync protocol's encoding: [`SyncMessage`] as postcard bytes, one
//! message per frame of a connection's control stream (the transport
//! frames and limits them; see `transport::wire`). The encoding is pinned
//! by `data/golden/sync-messages-v1.bin`.
//!
//! Version rule (the same for every message on a connection): a change
//! that old nodes would decode differently — a field added, removed or
//! reordered, a variant inserted before others — is a new protocol version
//! (`transport::wire::PROTOCOL_VERSION`, agreed in the hello), never an
//! edit of version 1. New variants go at the end: an old node that cannot
//! decode one logs it and goes on. This module encodes and decodes; it
//! never does I/O.

use super::SyncMessage;

/// A sync message that did not decode (a peer of another version, or a
/// corrupt or hostile frame). Retrying the same bytes cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable sync message ({len} bytes): {reason}")]
pub struct DecodeError {
    /// Length of the frame.
    pub len: usize,
    /// What the decoder said.
    pub reason: String,
}

impl SyncMessage {
    /// The message's bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        // Encoding into a Vec cannot fail for these types (no maps with
        // non-string keys, no sequences of unknown length).
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// A message from its bytes on the wire.
    pub fn decode(bytes: &[u8]) -> Result<SyncMessage, DecodeError> {
        postcard::from_bytes(bytes).map_err(|e| DecodeError {
            len: bytes.len(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let m = SyncMessage::IndexHint {
            folder: "docs".into(),
            seq: 7,
        };
        assert_eq!(SyncMessage::decode(&m.encode()), Ok(m));
        let e = SyncMessage::decode(&[0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(e.len, 3);
        assert!(e.to_string().contains("undecodable sync message"));
    }
}
