//! The wire format: the one encoder and the one decoder of peer messages.
//!
//! A stream carries frames: a `u32` little-endian length, then that many
//! bytes of a postcard-encoded [`Message`]. The protocol and its version
//! are named by the TLS ALPN value [`ALPN`]; peers with another version do
//! not complete the handshake, and each side reports the mismatch.
//!
//! [`FrameDecoder`] is sans-IO: bytes go in as they arrive, whole messages
//! come out. It checks the announced length against its limit *before*
//! buffering a byte of the body, so a hostile peer cannot make it allocate
//! more than the limit, and it never panics on any input (property-tested).
//!
//! ```
//! use softadastra::transport::wire::{encode, FrameDecoder, Message, MAX_CONTROL_FRAME};
//! let mut bytes = Vec::new();
//! encode(&Message::Ping { nonce: 7 }, MAX_CONTROL_FRAME, &mut bytes).unwrap();
//! let mut decoder = FrameDecoder::new(MAX_CONTROL_FRAME);
//! decoder.push(&bytes[..3]);
//! assert_eq!(decoder.poll().unwrap(), None); // incomplete
//! decoder.push(&bytes[3..]);
//! assert_eq!(decoder.poll().unwrap(), Some(Message::Ping { nonce: 7 }));
//! ```

use serde::{Deserialize, Serialize};

pub use crate::core::MAX_CHUNK_LEN;
use crate::core::NodeId;

mod bulk;
pub use bulk::*;

/// TLS ALPN protocol name: protocol and wire version.
pub const ALPN: &[u8] = b"softadastra/1";
/// TLS ALPN of pairing connections: a node that does not trust the dialler
/// yet accepts its certificate only for this, only while an invite is
/// outstanding, and tells it nothing before the invite secret is proved.
pub const JOIN_ALPN: &[u8] = b"softadastra-join/1";
/// Wire protocol version carried in [`Hello`]. 2: index pages carry app
/// values inline (a version-1 node could not read them, so the two refuse
/// each other by name instead of syncing nothing). 3: a bulk stream asks
/// for a run of chunks ([`ChunkRequest`]), not one. 4: an index page may
/// announce a file without its chunk list, fetched on a bulk stream
/// ([`ChunkListRequest`]), and ends at a byte budget (a version-3 node
/// would refuse such records, and could not send a folder of large files).
pub const PROTOCOL_VERSION: u32 = 4;
/// Largest frame accepted on the control stream (1 MiB).
pub const MAX_CONTROL_FRAME: usize = 1 << 20;

/// What a node says about itself when a connection opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Wire protocol version.
    pub protocol: u32,
    /// The sender's node id (must match its certificate).
    pub node: NodeId,
    /// Display name.
    pub name: String,
    /// Host name.
    pub hostname: String,
    /// Operating system.
    pub os: String,
    /// Softadastra version.
    pub version: String,
    /// Everything else the node says about itself (capabilities, start
    /// time…): an opaque, versioned, append-only byte string that the
    /// transport carries and `metadata::NodeMeta` reads.
    pub meta: Vec<u8>,
}

/// A message between peers. New variants are only ever added at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// First message on a connection's control stream, each way.
    Hello(Hello),
    /// Liveness probe.
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
    /// Answer to a ping.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// The sender is closing the connection, and why.
    Goodbye {
        /// Machine-readable reason (see [`close_code`]).
        code: u32,
        /// Human-readable reason.
        reason: String,
    },
    /// First message of a pairing connection (ALPN [`JOIN_ALPN`]): the
    /// joiner proves it holds an invite's one-time secret.
    Join {
        /// The invite's secret.
        secret: [u8; 16],
        /// Who the joiner is.
        hello: Hello,
        /// The QUIC port the joiner listens on (0: not listening).
        port: u16,
    },
    /// The inviter accepted a [`Message::Join`]: both sides now trust each other.
    Welcome {
        /// Who the inviter is.
        hello: Hello,
        /// The folder the invite shares, if any.
        folder: Option<String>,
    },
    /// The inviter refused a [`Message::Join`].
    JoinRefused {
        /// Why (expired, already used, unknown).
        reason: String,
    },
    /// A message of the layer above (sync), opaque to transport.
    App(Vec<u8>),
}

/// Connection close codes.
pub mod close_code {
    /// Normal shutdown.
    pub const NORMAL: u32 = 0;
    /// The peer sent bytes that are not a valid frame or message.
    pub const MALFORMED: u32 = 1;
    /// The peer sent a frame over the size limit.
    pub const OVERSIZED: u32 = 2;
    /// The peer sent a message that is not valid at this point.
    pub const UNEXPECTED: u32 = 3;
    /// Incompatible protocol versions.
    pub const VERSION: u32 = 4;
    /// The peer's certificate is not trusted here (it got in only to pair).
    pub const NOT_TRUSTED: u32 = 5;
    /// A join was refused (expired, reused or unknown invite).
    pub const JOIN_REFUSED: u32 = 6;
}

/// A frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A frame larger than the stream's limit.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Announced or encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame whose body is not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl WireError {
    /// The close code this error calls for.
    pub fn close_code(&self) -> u32 {
        match self {
            WireError::Oversized { .. } => close_code::OVERSIZED,
            WireError::Malformed(_) => close_code::MALFORMED,
        }
    }
}

/// Append `message` as one frame to `out`. On error nothing is appended.
pub fn encode(message: &Message, max: usize, out: &mut Vec<u8>) -> Result<(), WireError> {
    let body = postcard::to_allocvec(message).map_err(|e| WireError::Malformed(e.to_string()))?;
    if body.len() > max {
        return Err(WireError::Oversized {
            len: body.len(),
            max,
        });
    }
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Incremental frame decoder. See the [module documentation](self).
#[derive(Debug)]
pub struct FrameDecoder {
    max: usize,
    buf: Vec<u8>,
    failed: bool,
}

impl FrameDecoder {
    /// A decoder that refuses frames over `max` bytes.
    pub fn new(max: usize) -> Self {
        FrameDecoder {
            max,
            buf: Vec::new(),
            failed: false,
        }
    }

    /// Add received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole message, `None` if more bytes are needed. After an
    /// error the decoder stays failed: the connection is to be closed.
    pub fn poll(&mut self) -> Result<Option<Message>, WireError> {
        if self.failed {
            return Err(WireError::Malformed("decoder already failed".into()));
        }
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > self.max {
            self.failed = true;
            self.buf = Vec::new();
            return Err(WireError::Oversized { len, max: self.max });
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let decoded = postcard::from_bytes::<Message>(&self.buf[4..4 + len]);
        self.buf.drain(..4 + len);
        match decoded {
            Ok(m) => Ok(Some(m)),
            Err(e) => {
                self.failed = true;
                self.buf = Vec::new();
                Err(WireError::Malformed(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hello() -> Message {
        Message::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            node: NodeId([4; 32]),
            name: "laptop".into(),
            hostname: "laptop.local".into(),
            os: "linux".into(),
            version: "0.1.0".into(),
            meta: vec![1, 0, 0],
        })
    }

    fn every_message() -> Vec<Message> {
        vec![
            hello(),
            Message::Ping { nonce: u64::MAX },
            Message::Pong { nonce: 0 },
            Message::Goodbye {
                code: close_code::NORMAL,
                reason: "bye".into(),
            },
            Message::Join {
                secret: [9; 16],
                hello: match hello() {
                    Message::Hello(h) => h,
                    _ => unreachable!(),
                },
                port: 7420,
            },
            Message::Welcome {
                hello: match hello() {
                    Message::Hello(h) => h,
                    _ => unreachable!(),
                },
                folder: Some("photos".into()),
            },
            Message::JoinRefused {
                reason: "expired".into(),
            },
            Message::App(vec![1, 2, 3]),
        ]
    }

    #[test]
    fn every_message_round_trips_back_to_back() {
        let mut bytes = Vec::new();
        for m in every_message() {
            encode(&m, MAX_CONTROL_FRAME, &mut bytes).unwrap();
        }
        let mut d = FrameDecoder::new(MAX_CONTROL_FRAME);
        d.push(&bytes);
        for m in every_message() {
            assert_eq!(d.poll().unwrap(), Some(m));
        }
        assert_eq!(d.poll().unwrap(), None);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn oversized_frames_are_refused_before_buffering() {
        let mut d = FrameDecoder::new(100);
        d.push(&1_000_000u32.to_le_bytes());
        assert!(matches!(
            d.poll(),
            Err(WireError::Oversized {
                len: 1_000_000,
                max: 100
            })
        ));
        d.push(&[0; 1000]);
        assert_eq!(d.buffered(), 0, "a failed decoder keeps nothing");
        let mut out = Vec::new();
        let big = Message::Goodbye {
            code: 0,
            reason: "x".repeat(200),
        };
        assert!(matches!(
            encode(&big, 100, &mut out),
            Err(WireError::Oversized { .. })
        ));
        assert!(out.is_empty(), "a refused frame leaves nothing behind");
    }

    #[test]
    fn garbage_is_malformed() {
        let mut d = FrameDecoder::new(MAX_CONTROL_FRAME);
        d.push(&[3, 0, 0, 0, 0xff, 0xff, 0xff]);
        assert!(matches!(d.poll(), Err(WireError::Malformed(_))));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Arbitrary bytes, split anywhere: never a panic, and once drained
        /// the decoder holds at most one incomplete frame (header + limit).
        #[test]
        fn arbitrary_bytes_never_panic_or_overbuffer(data in prop::collection::vec(any::<u8>(), 0..4096), cuts in prop::collection::vec(0usize..4096, 0..8)) {
            let max = 512;
            let mut d = FrameDecoder::new(max);
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            points.push(data.len());
            points.sort_unstable();
            let mut at = 0;
            for p in points {
                d.push(&data[at..p]);
                at = p;
                while let Ok(Some(_)) = d.poll() {}
                prop_assert!(d.buffered() <= 4 + max, "{} bytes buffered", d.buffered());
            }
        }

        /// Encoded messages survive any split into pieces.
        #[test]
        fn round_trip_under_any_split(nonce in any::<u64>(), reason in ".{0,300}", cut in 0usize..400) {
            let msgs = vec![Message::Ping { nonce }, Message::Goodbye { code: 3, reason }, hello()];
            let mut bytes = Vec::new();
            for m in &msgs {
                encode(m, MAX_CONTROL_FRAME, &mut bytes).unwrap();
            }
            let cut = cut.min(bytes.len());
            let mut d = FrameDecoder::new(MAX_CONTROL_FRAME);
            d.push(&bytes[..cut]);
            let mut got = Vec::new();
            while let Some(m) = d.poll().unwrap() { got.push(m); }
            d.push(&bytes[cut..]);
            while let Some(m) = d.poll().unwrap() { got.push(m); }
            prop_assert_eq!(got, msgs);
        }
    }
}
