//! Bulk streams: what a node asks for on a stream of its own, and how the
//! answer is laid out. A bulk stream opens with one request and carries
//! its answer back; bytes too many for the control stream travel here, on
//! streams QUIC runs side by side, so a large transfer never holds up the
//! control messages (pings, index pages) behind it.
//!
//! Two requests exist:
//! * [`ChunkRequest`] — a run of chunks by hash and length; the answer is
//!   the chunks' bytes.
//! * [`ChunkListRequest`] — a file's chunk list, by folder, path and
//!   content hash. A file of many chunks is announced in an index page
//!   without its list (which would not fit in a control frame: a 100 GB
//!   file has ~400,000 chunks), and a node about to fetch it asks one of
//!   the peers that have it.
//!
//! This module only encodes and decodes (sans-IO), checking every length
//! against its limit before anything is read or allocated; it never
//! panics on any input (property-tested).

use super::{MAX_CHUNK_LEN, WireError};
use crate::core::ContentHash;
pub use crate::core::MIN_LISTED_CHUNK;

/// Most chunks one [`ChunkRequest`] may ask for.
pub const MAX_REQUEST_CHUNKS: usize = 64;
/// Most bytes one [`ChunkRequest`] may ask for (the sum of the lengths).
pub const MAX_REQUEST_BYTES: u64 = 4 << 20;
/// Answer to one chunk: its bytes follow.
pub const CHUNK_FOLLOWS: u8 = 0;
/// Answer to one chunk: the node does not have it.
pub const CHUNK_MISSING: u8 = 1;

/// What a bulk stream opens with: the chunks wanted, in the order they are
/// to come back. Encoded as a `u16` LE count, then per chunk its 32-byte
/// blake3 hash and `u32` LE length. The answer is, per chunk in order, one
/// status byte — [`CHUNK_FOLLOWS`] and then exactly the chunk's length in
/// bytes, or [`CHUNK_MISSING`] — and then the end of the stream. One
/// request carries many chunks, so a large file costs a stream per few
/// MiB, not per chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRequest {
    /// Hash and length of each chunk wanted.
    pub chunks: Vec<(ContentHash, u32)>,
}

/// Bytes per chunk in an encoded [`ChunkRequest`].
const REQUEST_ENTRY: usize = 36;

impl ChunkRequest {
    /// The encoded request, or an error if it breaks the limits above.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        self.check()?;
        let mut out = Vec::with_capacity(2 + self.chunks.len() * REQUEST_ENTRY);
        out.extend_from_slice(&(self.chunks.len() as u16).to_le_bytes());
        for (hash, len) in &self.chunks {
            push_entry(&mut out, hash, *len);
        }
        Ok(out)
    }

    /// The body length announced by the request's first two bytes, checked
    /// against the limit before any of it is read.
    pub fn body_len(head: [u8; 2]) -> Result<usize, WireError> {
        let n = usize::from(u16::from_le_bytes(head));
        Self::check_count(n)?;
        Ok(n * REQUEST_ENTRY)
    }

    /// Decode the body that followed `head` (see [`ChunkRequest::body_len`]).
    pub fn decode(head: [u8; 2], body: &[u8]) -> Result<ChunkRequest, WireError> {
        if body.len() != Self::body_len(head)? {
            return Err(WireError::Malformed(format!(
                "a chunk request body of {} bytes",
                body.len()
            )));
        }
        let chunks = body.chunks_exact(REQUEST_ENTRY).map(parse_entry).collect();
        let request = ChunkRequest { chunks };
        request.check()?;
        Ok(request)
    }

    fn check_count(n: usize) -> Result<(), WireError> {
        if n == 0 || n > MAX_REQUEST_CHUNKS {
            return Err(WireError::Malformed(format!(
                "a chunk request for {n} chunks (1 to {MAX_REQUEST_CHUNKS} allowed)"
            )));
        }
        Ok(())
    }

    fn check(&self) -> Result<(), WireError> {
        Self::check_count(self.chunks.len())?;
        if let Some((h, len)) = self
            .chunks
            .iter()
            .find(|(_, len)| *len == 0 || *len > MAX_CHUNK_LEN)
        {
            return Err(WireError::Malformed(format!(
                "chunk {h} of {len} bytes (1 to {MAX_CHUNK_LEN} allowed)"
            )));
        }
        let total: u64 = self.chunks.iter().map(|(_, l)| u64::from(*l)).sum();
        if total > MAX_REQUEST_BYTES {
            return Err(WireError::Oversized {
                len: total as usize,
                max: MAX_REQUEST_BYTES as usize,
            });
        }
        Ok(())
    }
}

/// The first two bytes of a [`ChunkListRequest`]: a chunk count no
/// [`ChunkRequest`] may have.
pub const CHUNK_LIST_HEAD: [u8; 2] = [0, 0];
/// Longest body of a [`ChunkListRequest`]: a folder id (64), a path (up to
/// 4096 bytes), their lengths and the hash.
pub const MAX_LIST_REQUEST: usize = 2 + 64 + 2 + 4096 + 32;

/// "Send me the chunk list of `path` in `folder`, if its content is still
/// `hash`." Encoded as [`CHUNK_LIST_HEAD`], a `u16` LE body length, then
/// the body: `u16` LE folder length, the folder id, `u16` LE path length,
/// the path (UTF-8), and the 32-byte hash. The answer is one status byte:
/// [`CHUNK_MISSING`] (the node has no such file now, or does not share the
/// folder with the asker), or [`CHUNK_FOLLOWS`] and then a `u32` LE count
/// and, per chunk in file order, its hash and `u32` LE length (see
/// [`encode_chunk_list`]; offsets follow from the lengths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkListRequest {
    /// Folder id.
    pub folder: String,
    /// Path in the folder.
    pub path: String,
    /// The content whose list is wanted.
    pub hash: ContentHash,
}

impl ChunkListRequest {
    /// The encoded request (head included), or an error if a name is too long.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let (folder, path) = (self.folder.as_bytes(), self.path.as_bytes());
        if folder.len() > 64 || path.len() > 4096 {
            return Err(WireError::Malformed(format!(
                "a chunk list request for a folder id of {} and a path of {} bytes",
                folder.len(),
                path.len()
            )));
        }
        let body = 2 + folder.len() + 2 + path.len() + 32;
        let mut out = Vec::with_capacity(4 + body);
        out.extend_from_slice(&CHUNK_LIST_HEAD);
        out.extend_from_slice(&(body as u16).to_le_bytes());
        for part in [folder, path] {
            out.extend_from_slice(&(part.len() as u16).to_le_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&self.hash.0);
        Ok(out)
    }

    /// The body length announced by the two bytes after the head, checked
    /// against [`MAX_LIST_REQUEST`] before any of it is read.
    pub fn body_len(len: [u8; 2]) -> Result<usize, WireError> {
        let n = usize::from(u16::from_le_bytes(len));
        if n > MAX_LIST_REQUEST {
            return Err(WireError::Oversized {
                len: n,
                max: MAX_LIST_REQUEST,
            });
        }
        Ok(n)
    }

    /// Decode a body (see [`ChunkListRequest::body_len`]).
    pub fn decode(body: &[u8]) -> Result<ChunkListRequest, WireError> {
        let bad = |what: &str| WireError::Malformed(format!("a chunk list request: {what}"));
        let mut rest = body;
        let mut text = |what: &str| -> Result<String, WireError> {
            let (len, tail) = rest.split_first_chunk::<2>().ok_or_else(|| bad(what))?;
            let len = usize::from(u16::from_le_bytes(*len));
            if tail.len() < len {
                return Err(bad(what));
            }
            let (bytes, tail) = tail.split_at(len);
            rest = tail;
            String::from_utf8(bytes.to_vec()).map_err(|_| bad(what))
        };
        let folder = text("its folder id")?;
        let path = text("its path")?;
        let hash: [u8; 32] = rest.try_into().map_err(|_| bad("its hash"))?;
        Ok(ChunkListRequest {
            folder,
            path,
            hash: ContentHash(hash),
        })
    }
}

/// Bytes per chunk in a chunk list answer.
pub const LIST_ENTRY: usize = REQUEST_ENTRY;

/// The answer to a [`ChunkListRequest`] holding `chunks` (hash and length
/// of each, in file order): [`CHUNK_FOLLOWS`], the count, the entries.
pub fn encode_chunk_list(chunks: impl ExactSizeIterator<Item = (ContentHash, u32)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + chunks.len() * LIST_ENTRY);
    out.push(CHUNK_FOLLOWS);
    out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    for (hash, len) in chunks {
        push_entry(&mut out, &hash, len);
    }
    out
}

/// Reads a chunk list answer's entries as they arrive, for a file of a
/// known size: every chunk 1 to [`MAX_CHUNK_LEN`] bytes, none past the
/// file's end, and together exactly the file. The count is checked before
/// any entry is read, so a peer cannot make this node allocate more than
/// the file's size justifies (see [`MIN_LISTED_CHUNK`]).
#[derive(Debug)]
pub struct ChunkListReader {
    size: u64,
    at: u64,
    left: u32,
}

impl ChunkListReader {
    /// A reader for `count` entries (the answer's count) of a file of
    /// `size` bytes; an error if that many cannot tile such a file.
    pub fn new(count: u32, size: u64) -> Result<ChunkListReader, WireError> {
        let most = 1 + size / MIN_LISTED_CHUNK;
        if u64::from(count) > most || (count == 0) != (size == 0) {
            return Err(WireError::Malformed(format!(
                "a chunk list of {count} chunks for a file of {size} bytes"
            )));
        }
        Ok(ChunkListReader {
            size,
            at: 0,
            left: count,
        })
    }

    /// Entries still to read.
    pub fn left(&self) -> u32 {
        self.left
    }

    /// Take whole entries (`bytes` is a multiple of [`LIST_ENTRY`], at
    /// most [`ChunkListReader::left`] of them), handing each chunk's
    /// offset, hash and length to `each` once checked (the list is not
    /// kept here: a large file's is megabytes, built once by the caller).
    pub fn push(
        &mut self,
        bytes: &[u8],
        mut each: impl FnMut(u64, ContentHash, u32),
    ) -> Result<(), WireError> {
        let n = bytes.len() / LIST_ENTRY;
        if !bytes.len().is_multiple_of(LIST_ENTRY) || n > self.left as usize {
            return Err(WireError::Malformed(format!(
                "{} bytes of chunk list entries with {} to come",
                bytes.len(),
                self.left
            )));
        }
        for e in bytes.chunks_exact(LIST_ENTRY) {
            let (hash, len) = parse_entry(e);
            let end = self.at + u64::from(len);
            if len == 0 || len > MAX_CHUNK_LEN || end > self.size {
                return Err(WireError::Malformed(format!(
                    "a listed chunk of {len} bytes at byte {} of a {}-byte file",
                    self.at, self.size
                )));
            }
            each(self.at, hash, len);
            self.at = end;
        }
        self.left -= n as u32;
        Ok(())
    }

    /// Whether every entry was read and they cover the file.
    pub fn finish(self) -> Result<(), WireError> {
        if self.left > 0 || self.at != self.size {
            return Err(WireError::Malformed(format!(
                "a chunk list covering {} of a {}-byte file",
                self.at, self.size
            )));
        }
        Ok(())
    }
}

fn push_entry(out: &mut Vec<u8>, hash: &ContentHash, len: u32) {
    out.extend_from_slice(&hash.0);
    out.extend_from_slice(&len.to_le_bytes());
}

fn parse_entry(e: &[u8]) -> (ContentHash, u32) {
    let mut h = [0u8; 32];
    h.copy_from_slice(&e[..32]);
    (
        ContentHash(h),
        u32::from_le_bytes([e[32], e[33], e[34], e[35]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chunk_requests_round_trip_and_limits_are_refused() {
        let req = ChunkRequest {
            chunks: vec![
                (ContentHash([1; 32]), 1),
                (ContentHash([2; 32]), MAX_CHUNK_LEN),
            ],
        };
        let bytes = req.encode().unwrap();
        let head = [bytes[0], bytes[1]];
        assert_eq!(ChunkRequest::body_len(head).unwrap(), bytes.len() - 2);
        assert_eq!(ChunkRequest::decode(head, &bytes[2..]).unwrap(), req);
        // A body that is not the announced length.
        assert!(ChunkRequest::decode(head, &bytes[3..]).is_err());
        let bad = [
            vec![],
            vec![(ContentHash([0; 32]), 1); MAX_REQUEST_CHUNKS + 1],
            vec![(ContentHash([0; 32]), 0)],
            vec![(ContentHash([0; 32]), MAX_CHUNK_LEN + 1)],
            vec![(ContentHash([0; 32]), MAX_CHUNK_LEN); 5],
        ];
        for chunks in bad {
            let req = ChunkRequest { chunks };
            assert!(req.encode().is_err(), "{} chunks encoded", req.chunks.len());
            // The same bytes written by hand are refused by the decoder.
            let mut raw = (req.chunks.len() as u16).to_le_bytes().to_vec();
            for (h, l) in &req.chunks {
                raw.extend_from_slice(&h.0);
                raw.extend_from_slice(&l.to_le_bytes());
            }
            assert!(ChunkRequest::decode([raw[0], raw[1]], &raw[2..]).is_err());
        }
        assert!(ChunkRequest::body_len(u16::MAX.to_le_bytes()).is_err());
    }

    #[test]
    fn chunk_list_requests_round_trip_and_bad_ones_are_refused() {
        let req = ChunkListRequest {
            folder: "docs".into(),
            path: "vm/disk é.img".into(),
            hash: ContentHash([9; 32]),
        };
        let bytes = req.encode().unwrap();
        assert_eq!(bytes[..2], CHUNK_LIST_HEAD);
        let len = ChunkListRequest::body_len([bytes[2], bytes[3]]).unwrap();
        assert_eq!(len, bytes.len() - 4);
        assert_eq!(ChunkListRequest::decode(&bytes[4..]).unwrap(), req);
        // Cut short anywhere, or one byte too long: refused.
        for cut in 0..bytes.len() - 4 {
            assert!(
                ChunkListRequest::decode(&bytes[4..4 + cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut long = bytes[4..].to_vec();
        long.push(0);
        assert!(ChunkListRequest::decode(&long).is_err());
        assert!(ChunkListRequest::body_len(u16::MAX.to_le_bytes()).is_err());
        let too_long = ChunkListRequest {
            path: "a".repeat(4097),
            ..req
        };
        assert!(too_long.encode().is_err());
    }

    #[test]
    fn a_chunk_list_is_read_back_and_must_cover_its_file() {
        let list = [(ContentHash([1; 32]), 5000), (ContentHash([2; 32]), 3000)];
        let bytes = encode_chunk_list(list.iter().copied());
        assert_eq!(bytes[0], CHUNK_FOLLOWS);
        let count = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let mut r = ChunkListReader::new(count, 8000).unwrap();
        let mut got = Vec::new();
        // In pieces, as a stream delivers it.
        r.push(&bytes[5..5 + LIST_ENTRY], |at, h, l| got.push((at, h, l)))
            .unwrap();
        assert_eq!(r.left(), 1);
        r.push(&bytes[5 + LIST_ENTRY..], |at, h, l| got.push((at, h, l)))
            .unwrap();
        r.finish().unwrap();
        assert_eq!(
            got,
            vec![(0, list[0].0, list[0].1), (5000, list[1].0, list[1].1)]
        );
        // Short of the file, past its end, or more entries than announced.
        let mut short = ChunkListReader::new(2, 8001).unwrap();
        short.push(&bytes[5..], |_, _, _| {}).unwrap();
        assert!(short.finish().is_err());
        let mut past = ChunkListReader::new(2, 7999).unwrap();
        assert!(past.push(&bytes[5..], |_, _, _| {}).is_err());
        let mut more = ChunkListReader::new(1, 8000).unwrap();
        assert!(more.push(&bytes[5..], |_, _, _| {}).is_err());
        // A count the file's size cannot justify is refused before reading.
        assert!(ChunkListReader::new(3, 8191).is_err());
        assert!(ChunkListReader::new(1, 0).is_err());
        assert!(ChunkListReader::new(0, 0).unwrap().finish().is_ok());
        // A chunk of 0 bytes or over the limit.
        for len in [0, MAX_CHUNK_LEN + 1] {
            let b = encode_chunk_list([(ContentHash([1; 32]), len)].into_iter());
            let mut r = ChunkListReader::new(1, u64::from(len))
                .unwrap_or_else(|_| ChunkListReader::new(1, 1 << 21).unwrap());
            assert!(r.push(&b[5..], |_, _, _| {}).is_err());
        }
    }

    proptest! {
        #[test]
        fn bulk_request_decoding_never_panics(head in any::<[u8; 2]>(), body in proptest::collection::vec(any::<u8>(), 0..3000), size in any::<u64>(), count in any::<u32>()) {
            let _ = ChunkRequest::body_len(head);
            let _ = ChunkRequest::decode(head, &body);
            let _ = ChunkListRequest::body_len(head);
            let _ = ChunkListRequest::decode(&body);
            if let Ok(mut r) = ChunkListReader::new(count, size) {
                let whole = body.len() / LIST_ENTRY * LIST_ENTRY;
                let _ = r.push(&body[..whole], |_, _, _| {});
                let _ = r.finish();
            }
        }
    }
}
