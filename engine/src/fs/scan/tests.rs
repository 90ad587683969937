//! The scanner's own tests: observations kept lean, and stats not trusted
//! within the racy window.

use super::*;
use std::collections::HashMap;

/// A file found as the caller knew it is noted to the caller and only
/// counted; others are kept whole; a case collision with an unchanged
/// file is still seen.
#[test]
fn unchanged_files_are_noted_and_counted_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("d")).unwrap();
    for name in ["same.txt", "d/same2.txt", "edited.txt"] {
        age(&root.join(name), name);
    }
    let stat =
        |rel: &str| FileStat::from_metadata(&std::fs::symlink_metadata(root.join(rel)).unwrap());
    let mut known: HashMap<String, FileStat> = ["same.txt", "d/same2.txt", "edited.txt"]
        .iter()
        .map(|p| (p.to_string(), stat(p)))
        .collect();
    known.get_mut("edited.txt").unwrap().size += 1;
    std::fs::write(root.join("SAME.txt"), "new").unwrap();
    let (obs, mut names) = observe_all(root, &known);
    names.sort();
    assert_eq!(names, ["d/same2.txt", "same.txt"]);
    assert_eq!(obs.unchanged, 2);
    let mut entries: Vec<&str> = obs.entries.iter().map(|o| o.path.as_str()).collect();
    entries.sort();
    assert_eq!(entries, ["SAME.txt", "d", "edited.txt"]);
    assert!(
        obs.entries
            .iter()
            .all(|o| o.stat.kind != EntryKind::File || o.content.is_some())
    );
    assert!(
        obs.issues
            .iter()
            .any(|i| i.kind == IssueKind::CaseCollision),
        "{:?}",
        obs.issues
    );
    let mut less = obs;
    less.retain(|p| !p.starts_with("d"));
    let mut entries: Vec<&str> = less.entries.iter().map(|o| o.path.as_str()).collect();
    entries.sort();
    assert_eq!(entries, ["SAME.txt", "edited.txt"]);
}

/// Write `bytes` to `path`, dated an hour ago: past the racy window.
fn age(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::write(path, bytes).unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
}

/// A file whose mtime is within the racy window is read again even
/// when its stat is exactly as recorded: a second write of the same
/// size in the same clock tick leaves the stat unchanged. Once older,
/// its stat is trusted.
#[test]
fn a_file_modified_just_now_is_read_again_whatever_its_stat() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("fresh.txt"), "v1").unwrap();
    age(&root.join("old.txt"), "v1");
    let stat =
        |rel: &str| FileStat::from_metadata(&std::fs::symlink_metadata(root.join(rel)).unwrap());
    let known: HashMap<String, FileStat> = ["fresh.txt", "old.txt"]
        .iter()
        .map(|p| (p.to_string(), stat(p)))
        .collect();
    let (obs, names) = observe_all(root, &known);
    assert_eq!(names, ["old.txt"]);
    let read: Vec<&str> = obs.entries.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(read, ["fresh.txt"]);
    assert!(obs.entries[0].content.is_some());
}

/// A whole-folder scan holds one `Observed` per file: it stays small,
/// its content (rare: only files re-read) out of line.
#[test]
fn an_observation_is_small() {
    let size = std::mem::size_of::<Observed>();
    assert!(size <= 96, "{size} bytes (144 with the content inline)");
}

/// The whole folder at `root` observed against `known`, with the built-in
/// rules and chunker, and the paths it noted found as recorded.
fn observe_all(root: &Path, known: &HashMap<String, FileStat>) -> (Observation, Vec<String>) {
    let noted = std::sync::Mutex::new(Vec::new());
    let as_recorded = |rel: &str, stat: &FileStat| {
        let same = known.get(rel) == Some(stat);
        if same {
            noted.lock().unwrap().push(rel.to_string());
        }
        same
    };
    let obs = observe(
        root,
        &[Scope::All],
        &IgnoreRules::builtin(),
        &as_recorded,
        ChunkerConfig::default(),
        &ScanProgress::default(),
    );
    (obs, noted.into_inner().unwrap())
}

/// Names that differ only in case are reported wherever they are: two
/// files deep in the folder, two directories (once, not each pair of
/// files below them), and two paths of one batch looked at alone. Names
/// that are equal when folded but in different directories are not.
#[test]
fn case_collisions_are_found_among_siblings_at_every_depth() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["a/b", "a/B", "other"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for f in [
        "a/b/x.txt",
        "a/B/x.txt",
        "a/b/Deep.TXT",
        "a/b/deep.txt",
        "a/deep.txt",
        "other/deep.txt",
        "Top.txt",
        "top.txt",
    ] {
        age(&root.join(f), f);
    }
    let collisions = |obs: &Observation| {
        let mut found: Vec<String> = obs
            .issues
            .iter()
            .filter(|i| i.kind == IssueKind::CaseCollision)
            .filter_map(|i| i.rel.clone())
            .collect();
        found.sort();
        found
    };
    let (obs, _) = observe_all(root, &HashMap::new());
    let mut pairs = collisions(&obs);
    // Which of two names is met first depends on the listing order.
    for p in &mut pairs {
        *p = p.to_lowercase();
    }
    assert_eq!(
        pairs,
        ["a/b", "a/b/deep.txt", "top.txt"],
        "{:?}",
        obs.issues
    );

    let batch = observe(
        root,
        &[
            Scope::Tree("Top.txt".into()),
            Scope::Tree("top.txt".into()),
            Scope::Tree("other/deep.txt".into()),
        ],
        &IgnoreRules::builtin(),
        &|_: &str, _: &FileStat| false,
        ChunkerConfig::default(),
        &ScanProgress::default(),
    );
    assert_eq!(collisions(&batch), ["top.txt"], "{:?}", batch.issues);
}
