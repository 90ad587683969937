//! Byte strings for serde as one run of bytes rather than a sequence of
//! `u8`s. In postcard both are the same on disk and on the wire (a varint
//! length, then the bytes), so using it changes no format; decoding takes
//! the run whole instead of visiting every byte, which at a million
//! stored entries is a large part of a walk of the store. Serde plumbing
//! only: no I/O, no policy.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;

/// `#[serde(with = "crate::core::bytes")]` for a `Vec<u8>`.
pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(v)
}

/// See [`serialize`].
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    d.deserialize_byte_buf(ByteBuf)
}

/// The same for an `Option<Vec<u8>>`.
pub mod option {
    use super::*;

    /// `#[serde(with = "crate::core::bytes::option")]`.
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&Bytes(b)),
            None => s.serialize_none(),
        }
    }

    /// See [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        d.deserialize_option(OptionalByteBuf)
    }

    struct Bytes<'a>(&'a [u8]);

    impl serde::Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    struct OptionalByteBuf;

    impl<'de> Visitor<'de> for OptionalByteBuf {
        type Value = Option<Vec<u8>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes or nothing")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

struct ByteBuf;

impl<'de> Visitor<'de> for ByteBuf {
    type Value = Vec<u8>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("bytes")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
    // Formats that write bytes as a list of numbers (JSON).
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(b) = seq.next_element()? {
            v.push(b);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsSeq {
        a: Vec<u8>,
        b: Option<Vec<u8>>,
        c: Option<Vec<u8>>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsBytes {
        #[serde(with = "super")]
        a: Vec<u8>,
        #[serde(with = "super::option")]
        b: Option<Vec<u8>>,
        #[serde(with = "super::option")]
        c: Option<Vec<u8>>,
    }

    /// The same bytes in postcard either way, both ways round; JSON too.
    #[test]
    fn bytes_encode_as_a_sequence_of_u8_does_in_postcard() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let seq = AsSeq {
                a: bytes.clone(),
                b: Some(bytes.clone()),
                c: None,
            };
            let run = AsBytes {
                a: bytes.clone(),
                b: Some(bytes.clone()),
                c: None,
            };
            let encoded = postcard::to_allocvec(&seq).unwrap();
            assert_eq!(postcard::to_allocvec(&run).unwrap(), encoded);
            assert_eq!(postcard::from_bytes::<AsBytes>(&encoded).unwrap(), run);
            let json = serde_json::to_string(&seq).unwrap();
            assert_eq!(serde_json::from_str::<AsBytes>(&json).unwrap(), run);
        }
    }
}
