//! The deletion guard end to end, with two agents: a deletion of most of
//! a folder waits on the node where it happened and, accepted there, on
//! each node it reaches, until a person accepts it; restoring instead
//! brings every file back on both; a folder whose root is gone or
//! replaced by an empty directory (an unmounted drive) stops — no
//! deletion leaves it, nothing is written into it — and goes on when it
//! is back.

mod common;

use std::path::Path;
use std::time::Duration;

use common::node::{Node, sharing};
use common::{entries, json, run, stderr, wait};

fn ok(home: &Path, args: &[&str]) -> serde_json::Value {
    let out = run(home, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    json(&out)
}

fn docs(n: &Node) -> serde_json::Value {
    let s = json(&run(n.home.path(), &["status", "--json"]));
    s["folders"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["id"] == "docs").cloned())
        .unwrap_or_else(|| panic!("no docs in {s}"))
}

/// Regular files in `dir`, the agent's own (and files it is still
/// assembling) left out.
fn count(dir: &Path) -> usize {
    entries(dir, false)
        .keys()
        .filter(|p| !p.ends_with('/') && !p.contains(".softadastra-tmp-"))
        .count()
}

/// Wait until both folders hold the same entries.
fn same(a: &Path, b: &Path) {
    wait("both folders the same", Duration::from_secs(30), || {
        entries(a, false) == entries(b, false)
    });
}

/// Where file `i` of a test folder is: the first `SUB` in `sub/`.
fn name(i: usize) -> String {
    if i < SUB {
        format!("sub/f{i:04}.txt")
    } else {
        format!("f{i:04}.txt")
    }
}

const SUB: usize = 250;

/// Two agents sharing docs, alpha's `n` files synced to beta.
fn synced_pair(n: usize) -> (Node, std::path::PathBuf, Node, std::path::PathBuf) {
    let files: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| (name(i), format!("file {i}\n").into_bytes()))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    let (mut alpha, a_dir) = sharing("alpha", &[]);
    for (p, b) in &refs {
        let at = a_dir.join(p);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(at, b).unwrap();
    }
    let (mut beta, b_dir) = sharing("beta", &[]);
    alpha.trust(&beta);
    beta.trust(&alpha);
    alpha.start();
    beta.start();
    wait("beta has alpha's files", Duration::from_secs(60), || {
        count(&b_dir) == n
    });
    (alpha, a_dir, beta, b_dir)
}

fn remove(dir: &Path, range: std::ops::Range<usize>) {
    for i in range {
        std::fs::remove_file(dir.join(name(i))).unwrap();
    }
}

#[test]
fn most_of_a_folder_deleted_waits_for_a_person_on_each_node() {
    let (alpha, a_dir, beta, b_dir) = synced_pair(300);

    // Alpha loses 250 of its 300 files (a directory moved out of the
    // folder): nothing is sent.
    std::fs::rename(a_dir.join("sub"), alpha.home.path().join("sub")).unwrap();
    wait("alpha holds its deletions", Duration::from_secs(20), || {
        docs(&alpha)["deletions_held"]["local"] == 251
    });
    let a = docs(&alpha);
    assert_eq!(a["state"], "deletions held", "{a}");
    let text = common::stdout(&run(alpha.home.path(), &["status"]));
    assert!(text.contains("accept-deletions docs"), "{text}");
    alpha.wait_for(&["most of the folder is gone"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&b_dir), 300, "beta lost files to a held deletion");
    assert!(b_dir.join("sub").is_dir());

    // Accepted on alpha: recorded and sent; beta holds them in turn.
    let said = ok(
        alpha.home.path(),
        &["folder", "accept-deletions", "docs", "--json"],
    );
    assert_eq!(said["decided"]["local"], 251, "{said}");
    wait(
        "beta holds alpha's deletions",
        Duration::from_secs(20),
        || docs(&beta)["deletions_held"]["remote"] == 250,
    );
    beta.wait_for(&["would delete most of the folder"]);
    wait("alpha's hold is over", Duration::from_secs(20), || {
        docs(&alpha)["deletions_held"]["local"] == 0
    });
    // A file alpha adds meanwhile still reaches beta.
    std::fs::write(a_dir.join("new.txt"), b"still syncing").unwrap();
    wait("new.txt reaches beta", Duration::from_secs(20), || {
        b_dir.join("new.txt").exists()
    });
    assert_eq!(count(&b_dir), 301);

    // Accepted on beta: the files go there too.
    let said = ok(
        beta.home.path(),
        &["folder", "accept-deletions", "docs", "--json"],
    );
    assert_eq!(said["decided"]["remote"], 250, "{said}");
    wait("beta deletes them", Duration::from_secs(30), || {
        count(&b_dir) == 51 && !b_dir.join("sub").exists()
    });
    wait("beta's hold is over", Duration::from_secs(20), || {
        docs(&beta)["state"] == "up to date"
    });
    // Nothing is held now: a second answer says so.
    let again = run(beta.home.path(), &["folder", "accept-deletions", "docs"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("holds back no deletions"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn held_deletions_restored_come_back_everywhere() {
    let (alpha, a_dir, beta, b_dir) = synced_pair(600);
    // Alpha's guard is off: its deletion of 500 goes out at once.
    let said = ok(
        alpha.home.path(),
        &["folder", "guard", "docs", "off", "--json"],
    );
    assert_eq!(said["guard"], false);
    remove(&a_dir, 0..500);
    wait("beta holds them", Duration::from_secs(20), || {
        docs(&beta)["deletions_held"]["remote"] == 500
    });
    assert_eq!(count(&b_dir), 600);

    // Beta restores: its files win back, and alpha gets them again.
    let said = ok(
        beta.home.path(),
        &["folder", "restore-deletions", "docs", "--json"],
    );
    assert_eq!(said["decided"]["remote"], 500, "{said}");
    wait("alpha has every file back", Duration::from_secs(30), || {
        count(&a_dir) == 600
    });
    same(&a_dir, &b_dir);
    wait("both up to date", Duration::from_secs(20), || {
        docs(&alpha)["state"] == "up to date" && docs(&beta)["state"] == "up to date"
    });

    // A bad answer: no such folder, a bad switch.
    let bad = run(beta.home.path(), &["folder", "restore-deletions", "nope"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("no folder"), "{}", stderr(&bad));
    let bad = run(beta.home.path(), &["folder", "guard", "docs", "maybe"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("`on` or `off`"), "{}", stderr(&bad));
}

#[test]
fn a_folder_whose_root_goes_stops_and_deletes_nothing_anywhere() {
    // Fewer files than the deletion guard counts: the marker alone
    // protects them.
    let (alpha, a_dir, _beta, b_dir) = synced_pair(40);
    let away = a_dir.with_file_name("docs-away");

    // The root goes (a drive unplugged, a folder moved): alpha stops.
    std::fs::rename(&a_dir, &away).unwrap();
    wait("alpha stops docs", Duration::from_secs(20), || {
        docs(&alpha)["state"] == "error"
    });
    let a = docs(&alpha);
    let why = a["error"].as_str().unwrap_or("");
    assert!(
        why.contains("marker") && why.contains("folder rescan docs"),
        "{a}"
    );
    // An empty directory in its place (an empty mount point): still
    // stopped, and nothing beta adds is written into it.
    std::fs::create_dir(&a_dir).unwrap();
    std::fs::write(b_dir.join("from-beta.txt"), b"later").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(docs(&alpha)["state"], "error");
    assert_eq!(count(&a_dir), 0, "written into a stopped folder");
    assert_eq!(count(&b_dir), 41, "a deletion left the stopped folder");

    // The drive is back: alpha goes on, and beta's file arrives.
    std::fs::remove_dir(&a_dir).unwrap();
    std::fs::rename(&away, &a_dir).unwrap();
    wait(
        "from-beta.txt reaches alpha",
        Duration::from_secs(30),
        || a_dir.join("from-beta.txt").exists(),
    );
    wait("alpha up to date", Duration::from_secs(20), || {
        docs(&alpha)["state"] == "up to date"
    });
    same(&a_dir, &b_dir);
    assert_eq!(count(&b_dir), 41);

    // Only the marker goes (a cleanup too eager): stopped again, and a
    // person takes the folder as it is with `folder rescan`.
    std::fs::remove_dir_all(a_dir.join(".softadastra")).unwrap();
    std::fs::write(a_dir.join("touch.txt"), b"x").unwrap();
    wait("alpha stops docs again", Duration::from_secs(20), || {
        docs(&alpha)["state"] == "error"
    });
    let out = run(alpha.home.path(), &["folder", "rescan", "docs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(a_dir.join(".softadastra/marker").is_file());
    wait("alpha syncs again", Duration::from_secs(30), || {
        docs(&alpha)["state"] == "up to date" && b_dir.join("touch.txt").is_file()
    });
    assert_eq!(count(&b_dir), 42, "nothing was deleted");
}
