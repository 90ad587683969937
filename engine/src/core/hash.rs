use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The largest chunk any node makes, asks for or accepts. The chunker
/// makes none above 256 KiB; the margin lets its limits change without a
/// new protocol version, and a peer's record announcing more is refused.
pub const MAX_CHUNK_LEN: u32 = 1 << 20;

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
