//! A list of folder-relative paths stored front-coded: each path as the
//! length of the prefix it shares with the one before and the rest of it,
//! with a full path every [`RESTART`] entries to start decoding from.
//! Read from the index in key order, the paths of a folder share most of
//! their bytes with their neighbours (`dir00042/file0004216.txt`, then
//! `…17.txt`): at a million such paths this holds ~8 bytes each where a
//! plain list of the names and where each ends held the whole name plus 4
//! (28) — ~20 MB of the catch-up scan's peak at a node's start (issue 21).
//!
//! Paths are compared and read back without being decoded whole into a
//! new buffer. It holds text only; it never touches the disk.

/// Every this many paths, one is stored whole (shares nothing).
pub const RESTART: usize = 16;

/// Paths, in the order they were pushed (see the module documentation).
#[derive(Default, Clone)]
pub struct PackedPaths {
    /// Each path: varint shared length, varint rest length, the rest.
    bytes: Vec<u8>,
    /// Where each run of [`RESTART`] paths starts in `bytes`.
    restarts: Vec<usize>,
    len: usize,
    /// The last path pushed (what the next one shares a prefix with).
    last: String,
}

impl std::fmt::Debug for PackedPaths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        let mut c = self.cursor();
        while let Some(p) = c.next_path() {
            list.entry(&p);
        }
        list.finish()
    }
}

/// One stored path: how many bytes it shares with the one before, and
/// where the rest of it is in `bytes`.
#[derive(Debug, Clone, Copy, Default)]
struct Stored {
    shared: usize,
    rest_at: usize,
    rest_len: usize,
}

fn put_varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint(bytes: &[u8], at: &mut usize) -> Option<usize> {
    let mut v = 0usize;
    for shift in (0..usize::BITS).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= usize::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

impl PackedPaths {
    /// Add `path` at the end.
    pub fn push(&mut self, path: &str) {
        let shared = if self.len.is_multiple_of(RESTART) {
            crate::core::grow::reserve(&mut self.restarts, 1);
            self.restarts.push(self.bytes.len());
            0
        } else {
            common_prefix(&self.last, path)
        };
        let rest = &path.as_bytes()[shared..];
        crate::core::grow::reserve(&mut self.bytes, rest.len() + 8);
        put_varint(&mut self.bytes, shared);
        put_varint(&mut self.bytes, rest.len());
        self.bytes.extend_from_slice(rest);
        self.last.clear();
        self.last.push_str(path);
        self.len += 1;
    }

    /// How many paths.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Read the one stored entry at `at`, moving past it.
    fn stored(&self, at: &mut usize) -> Option<Stored> {
        let shared = varint(&self.bytes, at)?;
        let rest_len = varint(&self.bytes, at)?;
        let rest_at = *at;
        *at = rest_at.checked_add(rest_len)?;
        (*at <= self.bytes.len()).then_some(Stored {
            shared,
            rest_at,
            rest_len,
        })
    }

    /// The entries of the run holding path `i`, from the run's start up
    /// to `i`: how many, in `out`.
    fn run_up_to(&self, i: usize, out: &mut [Stored; RESTART]) -> Option<usize> {
        if i >= self.len {
            return None;
        }
        let mut at = *self.restarts.get(i / RESTART)?;
        let upto = i % RESTART;
        for slot in out.iter_mut().take(upto + 1) {
            *slot = self.stored(&mut at)?;
        }
        Some(upto + 1)
    }

    /// Whether the `i`th path pushed is `path`: compared from its end
    /// back to the run's whole path, nothing decoded into a buffer.
    pub fn is_at(&self, i: usize, path: &str) -> bool {
        let mut run = [Stored::default(); RESTART];
        let Some(n) = self.run_up_to(i, &mut run) else {
            return false;
        };
        let path = path.as_bytes();
        let last = run[n - 1];
        if last.shared + last.rest_len != path.len() {
            return false;
        }
        // `need`: the bytes of `path` still to check, all at its start.
        let mut need = path.len();
        for s in run[..n].iter().rev() {
            if need > s.shared {
                let take = need - s.shared;
                let (Some(mine), Some(theirs)) = (
                    path.get(s.shared..need),
                    self.bytes.get(s.rest_at..s.rest_at + take.min(s.rest_len)),
                ) else {
                    return false;
                };
                if take > s.rest_len || mine != theirs {
                    return false;
                }
                need = s.shared;
            }
            if need == 0 {
                return true;
            }
        }
        // The run's first path shares nothing: only a damaged list.
        false
    }

    /// The `i`th path pushed.
    pub fn get(&self, i: usize) -> Option<String> {
        let mut run = [Stored::default(); RESTART];
        let n = self.run_up_to(i, &mut run)?;
        let mut out: Vec<u8> = Vec::new();
        for s in &run[..n] {
            out.truncate(s.shared);
            out.extend_from_slice(self.bytes.get(s.rest_at..s.rest_at + s.rest_len)?);
        }
        String::from_utf8(out).ok()
    }

    /// A reader of the paths in order, one buffer for all.
    pub fn cursor(&self) -> Cursor<'_> {
        Cursor {
            paths: self,
            at: 0,
            read: 0,
            buf: Vec::new(),
        }
    }
}

/// The paths of a [`PackedPaths`] in order, each readable until the next
/// is read ([`Cursor::next_path`]).
pub struct Cursor<'a> {
    paths: &'a PackedPaths,
    at: usize,
    read: usize,
    buf: Vec<u8>,
}

impl Cursor<'_> {
    /// The next path, or `None` at the end (or in a damaged list).
    pub fn next_path(&mut self) -> Option<&str> {
        if self.read >= self.paths.len {
            return None;
        }
        let s = self.paths.stored(&mut self.at)?;
        self.buf.truncate(s.shared);
        let rest = self.paths.bytes.get(s.rest_at..s.rest_at + s.rest_len)?;
        self.buf.extend_from_slice(rest);
        self.read += 1;
        std::str::from_utf8(&self.buf).ok()
    }
}

/// How many leading bytes `a` and `b` share, ending on a character
/// boundary of both (so every stored rest is whole characters).
fn common_prefix(a: &str, b: &str) -> usize {
    let mut n = a
        .as_bytes()
        .iter()
        .zip(b.as_bytes())
        .take_while(|(x, y)| x == y)
        .count();
    while !b.is_char_boundary(n) {
        n -= 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<String> {
        let mut v: Vec<String> = vec![
            "".into(),
            "a".into(),
            "a/b é.txt".into(),
            "a/b ê.txt".into(),
            "a/b".into(),
            "ab".into(),
            "z".into(),
        ];
        for d in 0..3 {
            for f in 0..40 {
                v.push(format!("dir{d:05}/file{f:07}.txt"));
            }
        }
        v.push("x".repeat(300));
        v.push(format!("{}y", "x".repeat(300)));
        v
    }

    /// Paths come back in order, each found where it was pushed and
    /// nowhere else — across runs, at shared prefixes ending inside a
    /// character, and for names longer than a varint's byte.
    #[test]
    fn front_coded_paths_read_back_and_compare_exactly() {
        let paths = sample();
        let mut p = PackedPaths::default();
        assert!(p.is_empty() && p.get(0).is_none() && !p.is_at(0, ""));
        for s in &paths {
            p.push(s);
        }
        assert_eq!(p.len(), paths.len());
        let mut c = p.cursor();
        for s in &paths {
            assert_eq!(c.next_path(), Some(s.as_str()));
        }
        assert_eq!(c.next_path(), None);
        for (i, s) in paths.iter().enumerate() {
            assert_eq!(p.get(i).as_deref(), Some(s.as_str()), "{i}");
            assert!(p.is_at(i, s), "{i} {s}");
            for (j, other) in paths.iter().enumerate() {
                if other != s {
                    assert!(!p.is_at(i, other), "{i} {s} is not {j} {other}");
                }
            }
            assert!(!p.is_at(i, &format!("{s}/")));
        }
        assert!(p.get(paths.len()).is_none() && !p.is_at(paths.len(), "z"));
    }

    /// Neighbouring names take a few bytes each, not their whole length
    /// (24 here).
    #[test]
    fn neighbouring_paths_take_a_few_bytes() {
        let mut p = PackedPaths::default();
        for i in 0..10_000 {
            p.push(&format!("dir{:05}/file{i:07}.txt", i / 100));
        }
        let per_path = (p.bytes.len() + p.restarts.len() * 8) / p.len();
        assert!(per_path <= 9, "{per_path} bytes a path");
    }
}
