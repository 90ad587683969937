//! File history end to end, with two agents: a version alpha's change
//! replaced on beta is in beta's history (time, size, hash, device, why)
//! and restored there — in place, an ordinary change both then have — or
//! to another path; a file a peer deleted is listed as deleted and comes
//! back; a version kept before the history existed (a trash file) is
//! listed and restorable; bad requests say what is wrong.

mod common;

use std::path::Path;
use std::time::Duration;

use common::node::sharing;
use common::{json, run, stderr, stdout, wait};

fn ok(home: &Path, args: &[&str]) -> serde_json::Value {
    let out = run(home, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    json(&out)
}

fn done(home: &Path, args: &[&str]) -> String {
    let out = run(home, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stderr(&out)
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

#[test]
fn a_replaced_version_is_restored_on_both_nodes_and_a_deleted_file_comes_back() {
    let (mut alpha, da) = sharing(
        "alpha",
        &[
            ("report.txt", b"first draft\n"),
            ("gone.txt", b"soon gone\n"),
        ],
    );
    let (mut beta, db) = sharing("beta", &[]);
    alpha.trust(&beta);
    beta.trust(&alpha);
    alpha.start();
    beta.start();
    wait("beta has both", Duration::from_secs(30), || {
        read(&db.join("report.txt")) == b"first draft\n" && db.join("gone.txt").is_file()
    });

    // Alpha rewrites the report twice and deletes gone.txt: beta keeps
    // each version it gives up.
    std::fs::write(da.join("report.txt"), b"second draft\n").unwrap();
    wait("beta has the second", Duration::from_secs(30), || {
        read(&db.join("report.txt")) == b"second draft\n"
    });
    // Apart by whole seconds, so a time (to the second) falls between.
    std::thread::sleep(Duration::from_millis(2100));
    std::fs::write(da.join("report.txt"), b"third draft, bad\n").unwrap();
    std::fs::remove_file(da.join("gone.txt")).unwrap();
    wait(
        "beta has the third, gone.txt gone",
        Duration::from_secs(30),
        || read(&db.join("report.txt")) == b"third draft, bad\n" && !db.join("gone.txt").exists(),
    );

    let report = db.join("report.txt");
    let versions = ok(
        beta.home.path(),
        &["history", report.to_str().unwrap(), "--json"],
    );
    let list = versions.as_array().unwrap();
    assert_eq!(list.len(), 2, "{versions}");
    assert_eq!(list[0]["n"], 1);
    assert_eq!(list[0]["size"], 13, "newest kept: the second draft");
    assert_eq!(list[1]["size"], 12, "then the first");
    assert_eq!(list[0]["why"], "replaced");
    assert_eq!(
        list[1]["device"],
        alpha.id.as_str(),
        "alpha made the first draft"
    );
    let hash = list[1]["hash"].as_str().unwrap();
    assert_eq!(hash, blake3::hash(b"first draft\n").to_hex().as_str());
    let text = stdout(&run(
        beta.home.path(),
        &["history", report.to_str().unwrap()],
    ));
    assert!(
        text.contains("replaced") && text.contains("restore"),
        "{text}"
    );

    // Version 2 (the first draft) back in place on beta: alpha follows,
    // and what beta had is kept too.
    let restored = ok(
        beta.home.path(),
        &[
            "restore",
            report.to_str().unwrap(),
            "--version",
            "2",
            "--json",
        ],
    );
    assert_eq!(read(&report), b"first draft\n");
    let replaced = restored["replaced"].as_str().unwrap();
    assert_eq!(read(Path::new(replaced)), b"third draft, bad\n");
    wait(
        "alpha has the first draft again",
        Duration::from_secs(30),
        || read(&da.join("report.txt")) == b"first draft\n",
    );
    let after = ok(
        beta.home.path(),
        &["history", report.to_str().unwrap(), "--json"],
    );
    assert_eq!(after[0]["why"], "restored over", "{after}");

    // To another path, by time: the version that was the file then.
    // A second after the first draft was kept, the file was the second.
    let kept_first = list[1]["kept_ns"].as_u64().unwrap();
    let at = (kept_first / 1_000_000_000 + 1).to_string();
    let elsewhere = beta.home.path().join("second.txt");
    let said = done(
        beta.home.path(),
        &[
            "restore",
            report.to_str().unwrap(),
            "--at",
            &at,
            "--to",
            elsewhere.to_str().unwrap(),
        ],
    );
    assert!(said.contains("13 bytes"), "{said}");
    assert_eq!(read(&elsewhere), b"second draft\n");

    // The deleted file is listed and comes back, on both.
    let deleted = ok(
        beta.home.path(),
        &["history", "--deleted", "docs", "--json"],
    );
    assert_eq!(deleted[0]["path"], "gone.txt", "{deleted}");
    done(
        beta.home.path(),
        &["restore", db.join("gone.txt").to_str().unwrap()],
    );
    wait("gone.txt back on alpha", Duration::from_secs(30), || {
        read(&da.join("gone.txt")) == b"soon gone\n"
    });
    let deleted = ok(
        beta.home.path(),
        &["history", "--deleted", "docs", "--json"],
    );
    assert_eq!(deleted, serde_json::json!([]));

    // Bad requests.
    let report_s = report.to_string_lossy().into_owned();
    let elsewhere_s = elsewhere.to_string_lossy().into_owned();
    for (args, says) in [
        (
            vec!["restore", &report_s, "--version", "9"],
            "has no version 9",
        ),
        (
            vec!["restore", &report_s, "--version", "0"],
            "numbered from 1",
        ),
        (vec!["restore", &report_s, "--at", "soon"], "--at"),
        (
            vec!["restore", &report_s, "--version", "1", "--to", &elsewhere_s],
            "already exists",
        ),
        (vec!["history", "/etc/hostname"], "not in a shared folder"),
        (vec!["history", "--deleted", "nope"], "no folder"),
    ] {
        let out = run(beta.home.path(), &args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }

    // With the agent stopped, a trash file kept before the history existed
    // is listed and restorable from the store and the disk.
    beta.signal("-TERM");
    alpha.signal("-TERM");
    let old = db.join(".softadastra/trash/1700000000/old.txt");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::write(&old, b"kept long ago\n").unwrap();
    let listed = ok(
        beta.home.path(),
        &["history", db.join("old.txt").to_str().unwrap(), "--json"],
    );
    assert_eq!(listed[0]["why"], "trash", "{listed}");
    done(
        beta.home.path(),
        &["restore", db.join("old.txt").to_str().unwrap()],
    );
    assert_eq!(read(&db.join("old.txt")), b"kept long ago\n");
    let ls = stdout(&run(beta.home.path(), &["ls", "docs"]));
    assert!(ls.contains("old.txt"), "indexed at once: {ls}");

    // Retention: shown, set (applied at once), refused when malformed.
    let shown = ok(beta.home.path(), &["folder", "versions", "docs", "--json"]);
    assert_eq!(shown["policy"], serde_json::Value::Null, "{shown}");
    let set = ok(
        beta.home.path(),
        &[
            "folder",
            "versions",
            "docs",
            "staggered",
            "--cap",
            "1GB",
            "--json",
        ],
    );
    assert_eq!(set["removed"], 0, "every version is recent: {set}");
    let shown = done(beta.home.path(), &["folder", "versions", "docs"]);
    assert!(
        shown.contains("staggered") && shown.contains("1000000000 bytes"),
        "{shown}"
    );
    for (args, says) in [
        (vec!["folder", "versions", "docs", "forever"], "staggered"),
        (
            vec!["folder", "versions", "docs", "30d", "--cap", "lots"],
            "cap",
        ),
        (
            vec!["folder", "versions", "docs", "--cap", "5%"],
            "goes with a policy",
        ),
        (vec!["folder", "versions", "nope", "30d"], "no folder"),
    ] {
        let out = run(beta.home.path(), &args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(
        read(&report),
        b"first draft\n",
        "nothing kept in the folder changed"
    );
}
