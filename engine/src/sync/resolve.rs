//! What to do with a record a peer announces: the one place that decides.
//!
//! Version vectors decide causality: a remote record that is newer is
//! taken, an older or equal one is ignored. Concurrent records (neither saw
//! the other) are a conflict, resolved the same way on every node so all
//! of them end up with the same record without talking about it:
//!
//! * a deletion loses to a modification (no edit is silently lost);
//! * otherwise the later modification time wins, ties broken by the
//!   higher id of the node that made the change;
//! * the same bytes reached on both sides is not a conflict at all (the
//!   result carries the element-wise maximum of both version vectors);
//! * a node holding the losing content keeps it beside the file as
//!   `NAME.sync-conflict-YYYYMMDD-HHMMSS-<short node id>.EXT` (which then
//!   syncs like any file) and takes the winner under the merged version
//!   plus one event of its own; two nodes resolving the same conflict then
//!   hold the same bytes under concurrent versions, which merge silently;
//! * a node holding the *winning* content does nothing: publishing the
//!   merged version there would tell the loser's holders that their content
//!   had been seen and kept when it was not. They publish it instead, and
//!   it supersedes the winner's record everywhere (a seeded simulation
//!   found the data loss the other way round).

use crate::core::{Causality, NodeId};
use crate::index::{EntryKind, FileRecord};

/// The decision about one announced record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do: we have this version or a newer one.
    Ignore,
    /// Make `record` the local state (fetching content when it is a live
    /// file whose bytes we lack; removing the local file when it is a
    /// deletion). `conflict_copy`: first keep the local content under this
    /// name.
    Take {
        /// The record to reach.
        record: FileRecord,
        /// Name to keep the losing local content under.
        conflict_copy: Option<String>,
    },
    /// Our content stays; only the version changes (to `record`'s, the
    /// merge of both): a conflict we won, or the same bytes on both sides.
    Keep {
        /// The local record with the merged version.
        record: FileRecord,
    },
}

/// Whether two records describe the same thing on disk (kind, content,
/// permissions, deletion), whatever their versions and local metadata.
pub fn same_substance(a: &FileRecord, b: &FileRecord) -> bool {
    if a.deleted || b.deleted {
        return a.deleted == b.deleted;
    }
    a.kind == b.kind && a.hash == b.hash && a.size == b.size && a.link_target == b.link_target
}

/// Whether `a` beats `b` in a conflict.
pub fn wins(a: &FileRecord, b: &FileRecord) -> bool {
    match (a.deleted, b.deleted) {
        (false, true) => true,
        (true, false) => false,
        _ => (a.mtime_ns, a.modified_by, a.hash) > (b.mtime_ns, b.modified_by, b.hash),
    }
}

/// Decide about `remote`, announced for a path whose local state (or the
/// state we are already fetching) is `local`. `path` names the conflict copy.
pub fn decide(
    node: NodeId,
    path: &str,
    local: Option<&FileRecord>,
    remote: &FileRecord,
) -> Decision {
    let Some(local) = local else {
        return Decision::Take {
            record: remote.clone(),
            conflict_copy: None,
        };
    };
    match local.version.compare(&remote.version) {
        Causality::Equal | Causality::After => Decision::Ignore,
        Causality::Before => Decision::Take {
            record: remote.clone(),
            conflict_copy: None,
        },
        Causality::Concurrent => {
            let mut merged = local.version.clone();
            merged.merge(&remote.version);
            let local_wins = wins(local, remote);
            let mut winner = if local_wins { local } else { remote }.clone();
            if same_substance(local, remote) {
                winner.version = merged;
                winner.chunks_from(local);
                return Decision::Keep { record: winner };
            }
            // A resolution is a change of its own: the merged version plus
            // one event of this node, so two resolutions that happen to
            // merge to the same vector with different winners cannot pass
            // for the same version (a seeded simulation found exactly that).
            merged.bump(node);
            winner.version = merged;
            if local_wins && remote.deleted {
                // Nothing is lost by a record that supersedes both.
                Decision::Keep { record: winner }
            } else if local_wins {
                // The merged version would claim the remote content was seen
                // and kept, but it is not on this disk: the nodes that hold it
                // keep it as a conflict copy and publish the merge.
                Decision::Ignore
            } else {
                let keep_loser =
                    !local.deleted && matches!(local.kind, EntryKind::File | EntryKind::Value);
                Decision::Take {
                    record: winner,
                    conflict_copy: keep_loser.then(|| conflict_name(path, local)),
                }
            }
        }
    }
}

/// `dir/NAME.sync-conflict-YYYYMMDD-HHMMSS-<short id>.EXT` for the losing
/// `record` of `path` (time: its modification time, UTC).
pub fn conflict_name(path: &str, record: &FileRecord) -> String {
    let (dir, file) = match path.rsplit_once('/') {
        Some((d, f)) => (Some(d), f),
        None => (None, path),
    };
    // A leading dot is a hidden file, not an extension.
    let (stem, ext) = match file.rfind('.') {
        Some(i) if i > 0 => (&file[..i], Some(&file[i + 1..])),
        _ => (file, None),
    };
    let stamp = utc_stamp(record.mtime_ns.div_euclid(1_000_000_000));
    let short = record.modified_by.short();
    // A long name's stem is cut so the copy's name still fits on disk.
    let name = match ext {
        Some(ext) => {
            crate::core::path::fit_name(stem, &format!(".sync-conflict-{stamp}-{short}.{ext}"))
        }
        None => crate::core::path::fit_name(stem, &format!(".sync-conflict-{stamp}-{short}")),
    };
    match dir {
        Some(d) => format!("{d}/{name}"),
        None => name,
    }
}

/// What is at a candidate conflict-copy path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Nothing.
    Free,
    /// A file with the very bytes to keep (another node's copy got here first).
    Same,
    /// Something else.
    Different,
}

/// Where to keep a conflict copy meant for `name`: `Some(path)` to write,
/// or `None` when the bytes are already kept there. A taken name gets
/// ` (2)`, ` (3)`… before the extension; after 99 tries, `None` is never
/// returned for a taken name — the last candidate is returned and the
/// caller's no-overwrite rename fails, to be retried.
pub fn copy_target(name: &str, probe: impl Fn(&str) -> Probe) -> Option<String> {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > name.rfind('/').map_or(0, |s| s + 1) => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let mut candidate = name.to_string();
    for n in 2..=100 {
        match probe(&candidate) {
            Probe::Free => return Some(candidate),
            Probe::Same => return None,
            Probe::Different => {
                let (dir, file_stem) = match stem.rsplit_once('/') {
                    Some((d, f)) => (Some(d), f),
                    None => (None, stem),
                };
                // Cut from the user's part of a long name, never the
                // conflict marker (what makes a copy a copy).
                let at = file_stem.find(".sync-conflict-").unwrap_or(file_stem.len());
                let (head, marker) = file_stem.split_at(at);
                let file = crate::core::path::fit_name(head, &format!("{marker} ({n}){ext}"));
                candidate = match dir {
                    Some(d) => format!("{d}/{file}"),
                    None => file,
                };
            }
        }
    }
    Some(candidate)
}

pub use crate::core::path::{CONFLICT_MARKER, is_conflict_copy, original_of_copy};

/// `YYYYMMDD-HHMMSS` of a Unix time in seconds (proleptic Gregorian, UTC).
pub fn utc_stamp(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{ContentHash, VersionVector};
    use proptest::prelude::*;

    fn node(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    fn rec(by: u8, mtime: i64, content: &[u8], deleted: bool, version: &[(u8, u64)]) -> FileRecord {
        let mut v = VersionVector::default();
        for (n, c) in version {
            for _ in 0..*c {
                v.bump(node(*n));
            }
        }
        FileRecord {
            kind: EntryKind::File,
            size: content.len() as u64,
            mtime_ns: mtime,
            mode: 0o644,
            inode: 0,
            hash: Some(ContentHash::of(content)),
            chunks: Vec::new(),
            link_target: None,
            version: v,
            modified_by: node(by),
            deleted,
        }
    }

    #[test]
    fn newer_is_taken_older_and_equal_ignored() {
        let old = rec(1, 10, b"a", false, &[(1, 1)]);
        let new = rec(2, 20, b"b", false, &[(1, 1), (2, 1)]);
        assert!(matches!(
            decide(node(9), "f", Some(&old), &new),
            Decision::Take {
                conflict_copy: None,
                ..
            }
        ));
        assert_eq!(decide(node(9), "f", Some(&new), &old), Decision::Ignore);
        assert_eq!(decide(node(9), "f", Some(&new), &new), Decision::Ignore);
        assert!(matches!(
            decide(node(9), "f", None, &new),
            Decision::Take { .. }
        ));
    }

    #[test]
    fn concurrent_edits_keep_the_loser_beside_the_winner() {
        let a = rec(1, 10, b"from a", false, &[(1, 2)]);
        let b = rec(2, 20, b"from b", false, &[(1, 1), (2, 1)]);
        // On a: b is later, so b takes the path and a's bytes become a copy.
        let Decision::Take {
            record,
            conflict_copy,
        } = decide(node(9), "docs/report.txt", Some(&a), &b)
        else {
            panic!()
        };
        assert_eq!(record.hash, b.hash);
        assert_eq!(record.version.get(node(1)), 2);
        assert_eq!(record.version.get(node(2)), 1);
        assert_eq!(
            record.version.get(node(9)),
            1,
            "the resolution is an event of its own"
        );
        let copy = conflict_copy.unwrap();
        assert!(
            copy.starts_with("docs/report.sync-conflict-19700101-000000-"),
            "{copy}"
        );
        assert!(copy.ends_with(".txt"));
        // On b: b holds the winner and does nothing; a's merged record,
        // once it arrives, supersedes b's.
        assert_eq!(
            decide(node(9), "docs/report.txt", Some(&b), &a),
            Decision::Ignore
        );
        assert!(matches!(
            decide(node(9), "docs/report.txt", Some(&b), &record),
            Decision::Take {
                conflict_copy: None,
                ..
            }
        ));
    }

    #[test]
    fn the_same_bytes_on_both_sides_is_no_conflict() {
        let a = rec(1, 10, b"same", false, &[(1, 1)]);
        let b = rec(2, 20, b"same", false, &[(2, 1)]);
        assert!(matches!(
            decide(node(9), "f", Some(&a), &b),
            Decision::Keep { .. }
        ));
        assert!(matches!(
            decide(node(9), "f", Some(&b), &a),
            Decision::Keep { .. }
        ));
    }

    #[test]
    fn a_modification_survives_a_concurrent_deletion() {
        let modified = rec(1, 10, b"kept", false, &[(1, 1), (3, 1)]);
        let deleted = rec(2, 99, b"kept", true, &[(2, 1), (3, 1)]);
        assert!(matches!(
            decide(node(9), "f", Some(&modified), &deleted),
            Decision::Keep { .. }
        ));
        let Decision::Take {
            record,
            conflict_copy,
        } = decide(node(9), "f", Some(&deleted), &modified)
        else {
            panic!()
        };
        assert!(!record.deleted);
        assert_eq!(conflict_copy, None, "a deletion leaves nothing to keep");
    }

    #[test]
    fn copy_targets_avoid_taken_names_and_repeat_no_copy() {
        let taken = ["a/x.sync-conflict-1.txt", "a/x.sync-conflict-1 (2).txt"];
        let probe = |p: &str| {
            if p == "a/x.sync-conflict-1 (3).txt" {
                Probe::Free
            } else if taken.contains(&p) {
                Probe::Different
            } else {
                Probe::Free
            }
        };
        assert_eq!(
            copy_target("a/x.sync-conflict-1.txt", probe).as_deref(),
            Some("a/x.sync-conflict-1 (3).txt")
        );
        assert_eq!(copy_target("a/x.txt", |_| Probe::Same), None);
        assert_eq!(
            copy_target("Makefile", |_| Probe::Free).as_deref(),
            Some("Makefile")
        );
        let only_first = |p: &str| {
            if p == "Makefile" {
                Probe::Different
            } else {
                Probe::Free
            }
        };
        assert_eq!(
            copy_target("Makefile", only_first).as_deref(),
            Some("Makefile (2)")
        );
    }

    #[test]
    fn conflict_names() {
        let mut r = rec(7, 1_700_000_000_123_000_000, b"x", false, &[]);
        r.modified_by = NodeId::derive(b"n");
        let short = r.modified_by.short();
        assert_eq!(
            conflict_name("a/b/photo.jpeg", &r),
            format!("a/b/photo.sync-conflict-20231114-221320-{short}.jpeg")
        );
        assert_eq!(
            conflict_name("Makefile", &r),
            format!("Makefile.sync-conflict-20231114-221320-{short}")
        );
        assert_eq!(
            conflict_name(".bashrc", &r),
            format!(".bashrc.sync-conflict-20231114-221320-{short}")
        );
        assert!(is_conflict_copy(&conflict_name("x.txt", &r)));
        assert!(!is_conflict_copy("x.txt"));
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
    }

    fn arb_rec() -> impl Strategy<Value = FileRecord> {
        (
            1u8..4,
            0i64..4,
            0u8..3,
            any::<bool>(),
            prop::collection::vec((1u8..4, 0u64..3), 0..3),
        )
            .prop_map(|(by, mtime, content, deleted, v)| rec(by, mtime, &[content], deleted, &v))
    }

    fn outcome(local: &FileRecord, remote: &FileRecord) -> FileRecord {
        match decide(node(9), "f", Some(local), remote) {
            Decision::Ignore => local.clone(),
            Decision::Take { record, .. } | Decision::Keep { record } => record,
        }
    }

    proptest! {
        /// Two nodes exchanging their records reach the same substance and
        /// version, whichever side looks at it.
        #[test]
        fn both_sides_agree(a in arb_rec(), b in arb_rec()) {
            // Two rounds of exchange: after the second both hold the same
            // substance under the same version.
            let (on_a, on_b) = (outcome(&a, &b), outcome(&b, &a));
            let (on_a, on_b) = (outcome(&on_a, &on_b), outcome(&on_b, &on_a));
            if a.version.compare(&b.version) != Causality::Equal {
                prop_assert!(same_substance(&on_a, &on_b), "{on_a:?} vs {on_b:?}");
                prop_assert_eq!(&on_a.version, &on_b.version);
            }
            // Applying the same record again changes nothing.
            prop_assert_eq!(decide(node(9), "f", Some(&on_a), &on_b), Decision::Ignore);
        }
    }
}
