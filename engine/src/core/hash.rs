use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The largest chunk any node makes, asks for or accepts. The chunker
/// makes none above 256 KiB; the margin lets its limits change without a
/// new protocol version, and a peer's record announcing more is refused.
pub const MAX_CHUNK_LEN: u32 = 1 << 20;

/// A chunk list may hold at most one chunk per this many bytes of its
/// file, plus one: every chunker cuts far larger pieces (but a file's
/// last), and a peer cannot make a node hold a list longer than the file
/// justifies.
pub const MIN_LISTED_CHUNK: u64 = 4096;

/// Zeros, for chunks of zeros: a hash computed once, bytes never allocated.
static ZEROS: [u8; MAX_CHUNK_LEN as usize] = [0; MAX_CHUNK_LEN as usize];

/// `len` zero bytes (at most [`MAX_CHUNK_LEN`]), borrowed from a static.
pub fn zeros(len: u32) -> &'static [u8] {
    &ZEROS[..(len.min(MAX_CHUNK_LEN)) as usize]
}

/// Whether `bytes` are all zeros.
pub fn is_zeros(bytes: &[u8]) -> bool {
    // OR-ing a block at a time lets the compiler use wide registers; the
    // first block with a non-zero byte ends the look (at once, for most data).
    bytes
        .chunks(4096)
        .all(|block| block.iter().fold(0u8, |acc, b| acc | b) == 0)
}

/// A blake3 digest of some content: a whole file, a chunk, a snapshot.
///
/// Its text form is 64 lowercase hex characters and round-trips through
/// [`FromStr`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// Hash a byte slice.
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }
    /// The hash of `len` zero bytes, for the lengths a run of zeros is
    /// cut in: a chunker cuts a long run at its largest chunk, and every
    /// chunker's largest is a power of two from 4 KiB to [`MAX_CHUNK_LEN`].
    /// Other lengths (a run's ragged ends) give `None`. Each is hashed once.
    pub fn of_zeros(len: u32) -> Option<Self> {
        const FIRST: u32 = 12; // 4 KiB
        const LAST: u32 = MAX_CHUNK_LEN.trailing_zeros();
        static HASHES: std::sync::OnceLock<Vec<ContentHash>> = std::sync::OnceLock::new();
        if !len.is_power_of_two() || !(FIRST..=LAST).contains(&len.trailing_zeros()) {
            return None;
        }
        let hashes = HASHES.get_or_init(|| {
            (FIRST..=LAST)
                .map(|bits| ContentHash::of(&ZEROS[..1 << bits]))
                .collect()
        });
        hashes.get((len.trailing_zeros() - FIRST) as usize).copied()
    }
    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// The first 8 hex characters, for human output.
    pub fn short(&self) -> String {
        self.to_string()[..8].to_string()
    }
}

impl From<blake3::Hash> for ContentHash {
    fn from(h: blake3::Hash) -> Self {
        ContentHash(*h.as_bytes())
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.short())
    }
}

/// A content hash's text form was not 64 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid content hash {input:?}: expected 64 hex characters")]
pub struct ParseHashError {
    /// What was given.
    pub input: String,
}

impl FromStr for ContentHash {
    type Err = ParseHashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex32(s)
            .map(ContentHash)
            .ok_or_else(|| ParseHashError {
                input: s.to_string(),
            })
    }
}

/// Parse exactly 64 hex characters into 32 bytes.
pub(crate) fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_rejects_garbage() {
        let h = ContentHash::of(b"softadastra");
        assert_eq!(h.to_string().len(), 64);
        assert_eq!(h.to_string().parse::<ContentHash>(), Ok(h));
        assert!("zz".parse::<ContentHash>().is_err());
        assert!("g".repeat(64).parse::<ContentHash>().is_err());
        assert_eq!(h.short().len(), 8);
    }
}
