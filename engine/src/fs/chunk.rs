//! Content-defined chunking (FastCDC 2020) and hashing of file contents.
//!
//! Chunk boundaries depend only on the bytes near them, so inserting one byte
//! changes one or two chunks and leaves the rest — and their hashes — as
//! they were. That is what lets a peer fetch only what changed.

use std::io::{self, Read};

use crate::core::ContentHash;

/// Chunk size limits, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerConfig {
    /// No chunk is smaller (except a file's last).
    pub min: u32,
    /// Typical chunk size.
    pub avg: u32,
    /// No chunk is larger.
    pub max: u32,
}

impl Default for ChunkerConfig {
    /// 16 KiB / 64 KiB / 256 KiB: a 1-byte edit costs about 64 KiB on the
    /// wire, and a 1 GiB file has about 16,000 chunks in its index entry.
    fn default() -> Self {
        ChunkerConfig {
            min: 16 << 10,
            avg: 64 << 10,
            max: 256 << 10,
        }
    }
}

impl ChunkerConfig {
    /// Files from this size on are cut in chunks four times as large (up
    /// to [`MAX_CHUNK_LEN`](crate::core::MAX_CHUNK_LEN)): a file's chunk
    /// list lives in its index record, which the log takes up to 64 MiB —
    /// at 64 KiB a chunk, about 95 GB of data. Four times larger, a
    /// one-byte edit of a 16 GiB file costs about 256 KiB, not 64 KiB.
    pub const LARGE_FILE: u64 = 16 << 30;

    /// The configuration a file of `size` bytes is cut with (see
    /// [`ChunkerConfig::LARGE_FILE`]). The same for every node: only the
    /// size decides.
    pub fn for_size(self, size: u64) -> ChunkerConfig {
        if size < Self::LARGE_FILE {
            return self;
        }
        let cap = crate::core::MAX_CHUNK_LEN;
        let scaled = ChunkerConfig {
            min: (self.min * 4).min(cap / 4),
            avg: (self.avg * 4).min(cap / 2),
            max: (self.max * 4).min(cap),
        };
        if scaled.min < scaled.avg && scaled.avg < scaled.max {
            scaled
        } else {
            self
        }
    }
}

pub use crate::index::Chunk;

/// A file's content summary: whole-content hash, size and chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// blake3 of the whole content.
    pub hash: ContentHash,
    /// Bytes read.
    pub size: u64,
    /// The chunks, in order, covering the whole content.
    pub chunks: Vec<Chunk>,
}

/// Chunk and hash everything `reader` yields, streaming through a buffer of
/// a few MiB (files are never loaded whole). Boundaries are identical to
/// chunking the whole content at once.
pub fn chunk_reader(mut reader: impl Read, config: ChunkerConfig) -> io::Result<Content> {
    let max = config.max as usize;
    let mut buf = vec![0u8; (4 * max).max(4 << 20)];
    let mut filled = 0usize;
    let mut eof = false;
    let mut whole = blake3::Hasher::new();
    let mut chunks = Vec::new();
    let mut offset = 0u64;
    let zero_cut = zero_run_cut(config);
    loop {
        while !eof && filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => eof = true,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let data = &buf[..filled];
        let mut consumed = 0usize;
        loop {
            // Each chunk starts at a cut, where the chunker starts afresh.
            let rest = &data[consumed..];
            // Without a full `max` of look-ahead the chunker may cut only
            // because the buffer ended: keep those bytes for the next round.
            if !eof && rest.len() < max {
                break;
            }
            let (len, hash) = match zero_cut {
                Some((len, hash)) if rest.len() >= len && crate::core::is_zeros(&rest[..len]) => {
                    (len, hash)
                }
                _ => {
                    let Some(c) =
                        fastcdc::v2020::FastCDC::new(rest, config.min, config.avg, config.max)
                            .next()
                    else {
                        break;
                    };
                    (c.length, ContentHash::of(&rest[..c.length]))
                }
            };
            whole.update(&rest[..len]);
            chunks.push(Chunk {
                offset: offset + consumed as u64,
                len: len as u32,
                hash,
            });
            consumed += len;
        }
        offset += consumed as u64;
        buf.copy_within(consumed..filled, 0);
        filled -= consumed;
        if eof && filled == 0 {
            break;
        }
    }
    Ok(Content {
        hash: whole.finalize().into(),
        size: offset,
        chunks,
    })
}

/// [`chunk_reader`] of a whole file, its holes not read (see
/// [`HoleSkipping`](super::sparse::HoleSkipping)).
/// The configuration is the one for the file's size
/// ([`ChunkerConfig::for_size`]).
pub fn chunk_file(file: &std::fs::File, config: ChunkerConfig) -> io::Result<Content> {
    let size = file.metadata()?.len();
    chunk_reader(
        super::sparse::HoleSkipping::new(file)?,
        config.for_size(size),
    )
}

/// How `config` cuts a run of zeros that starts at a cut: one chunk of
/// its largest size, of a hash known without reading (a sparse file's
/// holes are most of it, and the chunker would otherwise look at each of
/// their bytes). `None` if the chunker does not cut zeros so, or their hash
/// is not kept: then every chunk goes through the chunker.
fn zero_run_cut(config: ChunkerConfig) -> Option<(usize, ContentHash)> {
    type Known = Vec<(ChunkerConfig, Option<(usize, ContentHash)>)>;
    // Found out once per configuration (it runs the chunker over twice
    // its largest chunk).
    static FOUND: std::sync::Mutex<Known> = std::sync::Mutex::new(Vec::new());
    let mut found = crate::core::lock(&FOUND);
    if let Some((_, cut)) = found.iter().find(|(c, _)| *c == config) {
        return *cut;
    }
    let cut = (|| {
        let max = config.max;
        let hash = ContentHash::of_zeros(max)?;
        let two = vec![0u8; 2 * max as usize];
        let first = fastcdc::v2020::FastCDC::new(&two, config.min, config.avg, max).next()?;
        (first.length == max as usize).then_some((max as usize, hash))
    })();
    found.push((config, cut));
    cut
}

/// Chunk and hash an in-memory buffer (no copy, no extra buffer).
pub fn chunk_bytes(data: &[u8], config: ChunkerConfig) -> Content {
    let chunks = fastcdc::v2020::FastCDC::new(data, config.min, config.avg, config.max)
        .map(|c| Chunk {
            offset: c.offset as u64,
            len: c.length as u32,
            hash: ContentHash::of(&data[c.offset..c.offset + c.length]),
        })
        .collect::<Vec<_>>();
    // A single chunk's hash is the whole content's hash: don't hash twice.
    let hash = match chunks.as_slice() {
        [only] => only.hash,
        _ => ContentHash::of(data),
    };
    Content {
        hash,
        size: data.len() as u64,
        chunks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..len).map(|_| rng.u8(..)).collect()
    }

    #[test]
    fn chunks_cover_the_content_and_hash_it() {
        let data = random(3 << 20, 1);
        let c = chunk_bytes(&data, ChunkerConfig::default());
        assert_eq!(c.hash, ContentHash::of(&data));
        assert_eq!(c.size, data.len() as u64);
        let mut next = 0u64;
        for ch in &c.chunks {
            assert_eq!(ch.offset, next);
            assert!(ch.len <= ChunkerConfig::default().max);
            let bytes = &data[ch.offset as usize..(ch.offset + ch.len as u64) as usize];
            assert_eq!(ch.hash, ContentHash::of(bytes));
            next += ch.len as u64;
        }
        assert_eq!(next, data.len() as u64);
    }

    #[test]
    fn streaming_matches_whole_buffer_chunking() {
        let data = random(9 << 20, 2);
        let config = ChunkerConfig::default();
        let whole: Vec<_> = fastcdc::v2020::FastCDC::new(&data, config.min, config.avg, config.max)
            .map(|c| (c.offset as u64, c.length as u32))
            .collect();
        // A reader that returns odd-sized pieces.
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                self.1 += 1;
                let n = out.len().min(self.0.len()).min(7919 * (self.1 % 13 + 1));
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let streamed = chunk_reader(Trickle(&data, 0), config).unwrap();
        let got: Vec<_> = streamed.chunks.iter().map(|c| (c.offset, c.len)).collect();
        assert_eq!(got, whole);
    }

    /// Issue #3: a 1-byte insert at offset 0 of a 16 MiB file leaves at least
    /// 95 % of chunk hashes unchanged.
    #[test]
    fn one_byte_insert_keeps_most_chunks() {
        let data = random(16 << 20, 3);
        let mut edited = vec![0x42];
        edited.extend_from_slice(&data);
        let a = chunk_bytes(&data, ChunkerConfig::default());
        let b = chunk_bytes(&edited, ChunkerConfig::default());
        let before: std::collections::HashSet<_> = a.chunks.iter().map(|c| c.hash).collect();
        let kept = b.chunks.iter().filter(|c| before.contains(&c.hash)).count();
        let ratio = kept as f64 / a.chunks.len() as f64;
        assert!(
            ratio >= 0.95,
            "only {:.1} % of {} chunks unchanged",
            ratio * 100.0,
            a.chunks.len()
        );
    }

    #[test]
    fn in_memory_and_streaming_agree() {
        let data = random(5 << 20, 4);
        let config = ChunkerConfig::default();
        assert_eq!(
            chunk_bytes(&data, config),
            chunk_reader(&data[..], config).unwrap()
        );
        let small = random(5000, 5);
        assert_eq!(
            chunk_bytes(&small, config),
            chunk_reader(&small[..], config).unwrap()
        );
    }

    #[test]
    fn runs_of_zeros_are_cut_as_the_chunker_cuts_them() {
        let config = ChunkerConfig::default();
        assert!(
            zero_run_cut(config).is_some(),
            "the default chunker cuts zeros at its largest"
        );
        // Data, holes of odd lengths, data cut into them: every boundary
        // and hash as the chunker gives for the whole buffer.
        let mut rng = fastrand::Rng::with_seed(6);
        let mut data = Vec::new();
        for _ in 0..12 {
            let len = rng.usize(1..3 << 20);
            if rng.bool() {
                data.resize(data.len() + len, 0);
            } else {
                data.extend(random(len, rng.u64(..)));
            }
        }
        let streamed = chunk_reader(&data[..], config).unwrap();
        assert_eq!(streamed, chunk_bytes(&data, config));
        let zeros = vec![0u8; 5 << 20];
        let z = chunk_reader(&zeros[..], config).unwrap();
        assert_eq!(z, chunk_bytes(&zeros, config));
        assert_eq!(z.chunks.len(), 20);
        // A chunker that cuts zeros elsewhere gets no shortcut.
        let odd = ChunkerConfig {
            min: 64,
            avg: 256,
            max: 1536,
        };
        assert!(zero_run_cut(odd).is_none());
        assert_eq!(
            chunk_reader(&data[..], odd).unwrap(),
            chunk_bytes(&data, odd)
        );
    }

    #[test]
    fn a_very_large_file_is_cut_in_larger_chunks() {
        let small = ChunkerConfig::default();
        assert_eq!(small.for_size(ChunkerConfig::LARGE_FILE - 1), small);
        let large = small.for_size(ChunkerConfig::LARGE_FILE);
        assert_eq!(
            (large.min, large.avg, large.max),
            (64 << 10, 256 << 10, 1 << 20)
        );
        assert_eq!(
            small.for_size(u64::MAX),
            large,
            "one step, whatever the size"
        );
        // Its runs of zeros are cut without the chunker too, as it would.
        assert!(zero_run_cut(large).is_some());
        let mut data = vec![0u8; 5 << 20];
        data[(3 << 20) + 5] = 1;
        assert_eq!(
            chunk_reader(&data[..], large).unwrap(),
            chunk_bytes(&data, large)
        );
        assert!(
            chunk_bytes(&data, large)
                .chunks
                .iter()
                .all(|c| c.len <= 1 << 20)
        );
    }

    #[test]
    fn empty_and_tiny_inputs() {
        let empty = chunk_bytes(&[], ChunkerConfig::default());
        assert_eq!(empty.size, 0);
        assert!(empty.chunks.is_empty());
        assert_eq!(empty.hash, ContentHash::of(&[]));
        let tiny = chunk_bytes(b"hi", ChunkerConfig::default());
        assert_eq!(tiny.chunks.len(), 1);
    }
}
