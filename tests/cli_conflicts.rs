//! Conflicts end to end, with two agents: two devices edit the same files
//! apart; once they meet, each lists the same conflicts (both versions'
//! devices and times, where the copy is), status counts them, and a
//! conflict settled on either device — keeping mine, or both — is settled
//! everywhere: the copy disappears on both, the version not kept is in the
//! deciding device's trash.

mod common;

use std::path::Path;
use std::time::Duration;

use common::node::{Node, sharing};
use common::{entries, json, run, stderr, stdout, wait};

fn ok(home: &Path, args: &[&str]) -> serde_json::Value {
    let out = run(home, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    json(&out)
}

fn conflicts_in(n: &Node) -> u64 {
    let s = json(&run(n.home.path(), &["status", "--json"]));
    s["folders"][0]["conflicts"].as_u64().unwrap_or(u64::MAX)
}

fn copies(dir: &Path) -> Vec<String> {
    entries(dir, false)
        .into_keys()
        .filter(|k| k.contains(".sync-conflict-") && !k.contains(".softadastra-tmp-"))
        .collect()
}

#[test]
fn conflicts_are_listed_alike_everywhere_and_settled_once_for_all() {
    let (mut alpha, da) = sharing(
        "alpha",
        &[("shared.txt", b"version 0\n"), ("notes.md", b"notes 0\n")],
    );
    let (mut beta, db) = sharing("beta", &[]);
    alpha.trust(&beta);
    beta.trust(&alpha);
    alpha.start();
    beta.start();
    wait("beta has both files", Duration::from_secs(30), || {
        entries(&db, false) == entries(&da, false)
    });
    beta.signal("-TERM");

    // Apart, both edit both files; alpha's edits are the later ones.
    std::fs::write(db.join("shared.txt"), b"beta's edit\n").unwrap();
    std::fs::write(db.join("notes.md"), b"beta's notes\n").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(da.join("shared.txt"), b"alpha's edit\n").unwrap();
    std::fs::write(da.join("notes.md"), b"alpha's notes\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    beta.start();
    wait("two copies on each side", Duration::from_secs(30), || {
        copies(&da).len() == 2 && copies(&db).len() == 2
    });
    wait("status counts them", Duration::from_secs(20), || {
        conflicts_in(&alpha) == 2 && conflicts_in(&beta) == 2
    });

    // Each lists both conflicts, the same way; "mine" differs.
    let on_beta = ok(beta.home.path(), &["conflicts", "--json"]);
    let on_alpha = ok(alpha.home.path(), &["conflicts", "--json"]);
    let list = on_beta.as_array().unwrap();
    assert_eq!(list.len(), 2, "{on_beta}");
    let shared = list.iter().find(|c| c["path"] == "shared.txt").unwrap();
    assert_eq!(shared["original"]["device"], alpha.id.as_str(), "{shared}");
    assert_eq!(shared["mine"], "copy", "beta made the copy's version");
    assert!(
        alpha.id.len() > 7 && !shared["conflicting"]["device"].as_str().unwrap().is_empty(),
        "{shared}"
    );
    let copy_at = shared["copy_at"].as_str().unwrap().to_string();
    assert!(Path::new(&copy_at).is_file(), "{copy_at}");
    let a_shared = on_alpha
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "shared.txt")
        .unwrap();
    assert_eq!(a_shared["copy"], shared["copy"]);
    assert_eq!(a_shared["mine"], "original");
    let text = stdout(&run(beta.home.path(), &["conflicts"]));
    assert!(
        text.contains("docs/shared.txt") && text.contains("this device"),
        "{text}"
    );
    let status = stdout(&run(beta.home.path(), &["status"]));
    assert!(status.contains("2 conflict(s)"), "{status}");

    // Beta keeps its own shared.txt: alpha follows, the copy goes everywhere.
    let settled = ok(
        beta.home.path(),
        &[
            "conflicts",
            "resolve",
            db.join("shared.txt").to_str().unwrap(),
            "--keep",
            "mine",
            "--json",
        ],
    );
    assert_eq!(settled["kept"], "copy", "{settled}");
    let trashed = settled["trashed"][0].as_str().unwrap();
    assert_eq!(std::fs::read(trashed).unwrap(), b"alpha's edit\n");
    wait(
        "alpha takes beta's version",
        Duration::from_secs(30),
        || {
            std::fs::read(da.join("shared.txt")).is_ok_and(|b| b == b"beta's edit\n")
                && copies(&da).len() == 1
        },
    );
    assert_eq!(
        std::fs::read(db.join("shared.txt")).unwrap(),
        b"beta's edit\n"
    );

    // Alpha keeps both notes: the copy gets an ordinary name on both.
    let notes_copy = copies(&da).pop().unwrap();
    let settled = ok(
        alpha.home.path(),
        &[
            "conflicts",
            "resolve",
            da.join(&notes_copy).to_str().unwrap(),
            "--keep",
            "both",
            "--json",
        ],
    );
    let renamed = settled["renamed"][0].as_str().unwrap().to_string();
    assert!(
        renamed.starts_with("notes (from ") && renamed.ends_with(".md"),
        "{renamed}"
    );
    wait(
        "beta has both notes, no copy",
        Duration::from_secs(30),
        || {
            copies(&db).is_empty()
                && std::fs::read(db.join(&renamed)).is_ok_and(|b| b == b"beta's notes\n")
        },
    );
    assert_eq!(
        std::fs::read(db.join("notes.md")).unwrap(),
        b"alpha's notes\n"
    );
    wait("no conflict left", Duration::from_secs(20), || {
        conflicts_in(&alpha) == 0 && conflicts_in(&beta) == 0
    });
    wait("both folders the same", Duration::from_secs(30), || {
        entries(&da, false) == entries(&db, false)
    });
    assert_eq!(
        ok(beta.home.path(), &["conflicts", "--json"]),
        serde_json::json!([])
    );

    // Bad requests say what is wrong.
    for (args, says) in [
        (
            vec!["conflicts", "resolve", "shared.txt", "--keep", "mine"],
            "has no conflict",
        ),
        (
            vec!["conflicts", "resolve", "shared.txt", "--keep", "newest"],
            "--keep takes",
        ),
        (
            vec!["conflicts", "resolve", "/etc/hostname", "--keep", "both"],
            "not in a shared folder",
        ),
        (vec!["conflicts", "--folder", "nope"], "no folder"),
    ] {
        let args: Vec<String> = args
            .into_iter()
            .map(|a| {
                if a == "shared.txt" {
                    db.join(a).to_string_lossy().into_owned()
                } else {
                    a.to_string()
                }
            })
            .collect();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(beta.home.path(), &refs);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}
