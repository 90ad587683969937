//! Names that differ only in case: two such names in one directory are
//! one file on a case-insensitive file system (macOS, Windows), so a
//! scan reports them ([`IssueKind::CaseCollision`]) — and still indexes
//! both. Each directory's names are compared only with their siblings',
//! as the walk lists them: a whole-folder scan keeps the names of the
//! directories it is inside, never one entry per path of the folder (at a
//! million files a map of every path was a quarter of a scan's memory).
//! Two directories that collide are reported once, not each pair of files
//! below them. It compares text only; it never touches the disk.

use std::collections::HashMap;
use std::path::Path;

use super::{IssueKind, ScanIssue, issue};

/// The names met so far in each directory the walk is inside, by depth:
/// `levels[d]` holds the names at depth `d` of the directory being listed
/// there, keyed by a hash of the name lower-cased.
#[derive(Default)]
pub(super) struct SiblingNames {
    levels: Vec<HashMap<u64, String>>,
}

impl SiblingNames {
    /// Note `rel`, found at `depth` of a depth-first walk (everything
    /// deeper met before it is finished with). Returns the trouble when a
    /// sibling met before differs from it only in case.
    pub(super) fn note(&mut self, root: &Path, depth: usize, rel: &str) -> Option<ScanIssue> {
        self.levels.truncate(depth + 1);
        while self.levels.len() <= depth {
            self.levels.push(HashMap::new());
        }
        let (parent, name) = match rel.rsplit_once('/') {
            Some((parent, name)) => (Some(parent), name),
            None => (None, rel),
        };
        let siblings = self.levels.get_mut(depth)?;
        let other = match siblings.entry(lower_hash(name)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(name.to_string());
                return None;
            }
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
        };
        if !differ_only_in_case(other, name) {
            return None;
        }
        let other = match parent {
            Some(parent) => format!("{parent}/{other}"),
            None => other.clone(),
        };
        Some(collision(root, &other, rel))
    }
}

/// The trouble of every path among `paths` whose name differs from one
/// before it only in case: for paths that are not listed by one walk (the
/// tops of a whole folder's parts, the paths of a watcher's batch).
pub(super) fn among<'a>(root: &Path, paths: impl Iterator<Item = &'a str>) -> Vec<ScanIssue> {
    let mut seen: HashMap<u64, &str> = HashMap::new();
    let mut found = Vec::new();
    for path in paths {
        match seen.entry(lower_hash(path)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(path);
            }
            std::collections::hash_map::Entry::Occupied(o) => {
                let other = *o.get();
                if differ_only_in_case(other, path) {
                    found.push(collision(root, other, path));
                }
            }
        }
    }
    found
}

/// Whether `a` and `b` are two names that fold to one.
fn differ_only_in_case(a: &str, b: &str) -> bool {
    a != b && lower(a).eq(lower(b))
}

fn collision(root: &Path, other: &str, path: &str) -> ScanIssue {
    issue(
        &root.join(path),
        Some(path),
        IssueKind::CaseCollision,
        format!(
            "{other:?} and {path:?} differ only in case and collide on case-insensitive file systems"
        ),
    )
}

/// `text` lower-cased, character by character (as case-insensitive file
/// systems fold names).
fn lower(text: &str) -> impl Iterator<Item = char> + '_ {
    text.chars().flat_map(char::to_lowercase)
}

/// A hash of `text` lower-cased, made without a copy; the same in every
/// scan (fixed keys). Two names of one hash are compared exactly.
fn lower_hash(text: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for c in lower(text) {
        h.write_u32(c as u32);
    }
    h.finish()
}
