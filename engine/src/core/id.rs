use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::hash::parse_hex32;

/// The identity of a node: 32 bytes (the blake3 of its certificate).
///
/// Text form, for people: the 32 bytes in base32 (52 characters, `A`–`Z`
/// and `2`–`7`), one Luhn mod-32 check character, grouped by seven with
/// dashes — `MFRGGZD-…-Q`. Parsing ignores case, dashes and spaces, reads
/// the look-alikes `0`, `1` and `8` as `O`, `I` and `B`, and through the
/// check character refuses every single mistyped character and every swap
/// of two neighbours except `A`↔`7` (the one pair Luhn mod 32 cannot see).
/// The 64-hex-character form is accepted too.
///
/// ```
/// use softadastra::core::NodeId;
/// let id = NodeId::derive(b"certificate bytes");
/// let text = id.to_string();
/// assert_eq!(text.parse::<NodeId>().unwrap(), id);
/// assert_eq!(text.to_lowercase().replace('-', "").parse::<NodeId>().unwrap(), id);
/// let mut typo: Vec<char> = text.chars().collect();
/// typo[3] = if typo[3] == 'A' { 'B' } else { 'A' };
/// assert!(typo.iter().collect::<String>().parse::<NodeId>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn base32_value(c: u8) -> Option<u32> {
    match c.to_ascii_uppercase() {
        c @ b'A'..=b'Z' => Some(u32::from(c - b'A')),
        c @ b'2'..=b'7' => Some(u32::from(c - b'2') + 26),
        b'0' => Some(u32::from(b'O' - b'A')),
        b'1' => Some(u32::from(b'I' - b'A')),
        b'8' => Some(u32::from(b'B' - b'A')),
        _ => None,
    }
}

/// Luhn mod N (N = 32) over base32 digit values: catches every single
/// substitution and every transposition of neighbours but values 0 and 31.
fn luhn32(values: &[u32]) -> u32 {
    let mut factor = 2;
    let mut sum = 0;
    for v in values.iter().rev() {
        let addend = factor * v;
        factor = if factor == 2 { 1 } else { 2 };
        sum += addend / 32 + addend % 32;
    }
    (32 - sum % 32) % 32
}

impl NodeId {
    /// Serialise in the text form (for JSON shown to people; `serialize_with`).
    /// The derived `Serialize` stays the 32 bytes, for the wire and the store.
    pub fn serialize_text<S: serde::Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    /// The all-zero id, used for operations made before a node has an identity
    /// (local tools working on a fresh home directory).
    pub const LOCAL: NodeId = NodeId([0; 32]);

    /// Derive a node id from arbitrary bytes (e.g. a certificate's DER).
    pub fn derive(bytes: &[u8]) -> Self {
        NodeId(*blake3::hash(bytes).as_bytes())
    }

    /// The first 7 characters of the text form, for conflict file names and logs.
    pub fn short(&self) -> String {
        self.to_string()[..7].to_string()
    }

    /// The 64-hex-character form.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn digits(&self) -> Vec<u32> {
        to_digits(&self.0)
    }
}

/// Bytes as base32 digit values (5 bits each, the last zero-padded).
fn to_digits(bytes: &[u8]) -> Vec<u32> {
    let mut out = Vec::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in bytes {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push((acc >> bits) & 31);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push((acc << (5 - bits)) & 31);
    }
    out
}

/// Digit values back to bytes; `None` if the padding bits are not zero
/// (not a canonical encoding).
fn from_digits(values: &[u32]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(values.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in values {
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    (acc == 0).then_some(out)
}

/// Base32 (`A`–`Z`, `2`–`7`, no padding): the text form of node ids and
/// invite codes, chosen because it survives being read aloud or retyped.
pub fn base32_encode(bytes: &[u8]) -> String {
    to_digits(bytes)
        .iter()
        .map(|d| BASE32[*d as usize] as char)
        .collect()
}

/// Read [`base32_encode`]'s output, forgivingly: case, dashes and spaces are
/// ignored and `0`, `1`, `8` read as `O`, `I`, `B`.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let values = text
        .bytes()
        .filter(|c| !matches!(c, b'-' | b' '))
        .map(base32_value)
        .collect::<Option<Vec<u32>>>()?;
    from_digits(&values)
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut digits = self.digits();
        digits.push(luhn32(&digits));
        for (i, d) in digits.iter().enumerate() {
            if i > 0 && i % 7 == 0 {
                f.write_str("-")?;
            }
            write!(f, "{}", BASE32[*d as usize] as char)?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// A node id's text form could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node id {input:?}: {reason}")]
pub struct ParseNodeIdError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for NodeId {
    type Err = ParseNodeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseNodeIdError {
            input: s.to_string(),
            reason,
        };
        if let Some(bytes) = parse_hex32(s) {
            return Ok(NodeId(bytes));
        }
        let cleaned: Vec<u8> = s.bytes().filter(|c| !matches!(c, b'-' | b' ')).collect();
        if cleaned.len() != 53 {
            return Err(err(
                "expected 53 characters (52 base32 + 1 check), dashes and spaces aside",
            ));
        }
        let values = cleaned
            .iter()
            .map(|c| base32_value(*c))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| err("only letters A-Z and digits 2-7 are used"))?;
        if luhn32(&values[..52]) != values[52] {
            return Err(err(
                "check character does not match: a character is mistyped or two are swapped",
            ));
        }
        // 52 digits carry 260 bits; the last 4 must be zero in a canonical id.
        let bytes = from_digits(&values[..52])
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| err("not a canonical id (trailing bits set)"))?;
        Ok(NodeId(bytes))
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
        for seed in 0..200u32 {
            let id = NodeId::derive(&seed.to_le_bytes());
            let text = id.to_string();
            assert_eq!(text.len(), 53 + 7, "{text}");
            assert_eq!(text.parse::<NodeId>(), Ok(id));
            assert_eq!(id.to_hex().parse::<NodeId>(), Ok(id));
            assert_eq!(
                text.to_lowercase().replace('-', " ").parse::<NodeId>(),
                Ok(id)
            );
        }
        assert!("abc".parse::<NodeId>().is_err());
        assert_eq!(
            NodeId::LOCAL.to_string().parse::<NodeId>(),
            Ok(NodeId::LOCAL)
        );
    }

    #[test]
    fn every_single_typo_and_neighbour_swap_is_caught() {
        let id = NodeId::derive(b"typo check");
        let clean: Vec<u8> = id.to_string().bytes().filter(|c| *c != b'-').collect();
        for i in 0..clean.len() {
            for c in BASE32 {
                if *c == clean[i] {
                    continue;
                }
                let mut t = clean.clone();
                t[i] = *c;
                assert!(
                    String::from_utf8(t).unwrap().parse::<NodeId>().is_err(),
                    "typo at {i} accepted"
                );
            }
            let pair = [clean[i], *clean.get(i + 1).unwrap_or(&clean[i])];
            let undetectable = pair == *b"A7" || pair == *b"7A";
            if i + 1 < clean.len() && clean[i] != clean[i + 1] && !undetectable {
                let mut t = clean.clone();
                t.swap(i, i + 1);
                assert!(
                    String::from_utf8(t).unwrap().parse::<NodeId>().is_err(),
                    "swap at {i} accepted"
                );
            }
        }
    }

    #[test]
    fn base32_round_trips_any_length() {
        for len in 0..40u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37) ^ len).collect();
            let text = base32_encode(&bytes);
            assert_eq!(base32_decode(&text), Some(bytes.clone()));
            assert_eq!(base32_decode(&text.to_lowercase()), Some(bytes));
        }
        assert_eq!(base32_decode("AB!"), None);
    }

    #[test]
    fn look_alike_digits_are_read_as_letters() {
        let id = NodeId::derive(b"look-alikes");
        let text = id.to_string();
        let relaxed = text.replace('O', "0").replace('I', "1").replace('B', "8");
        assert_eq!(relaxed.parse::<NodeId>(), Ok(id));
    }
}
