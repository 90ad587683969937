//! Versions of edits made here, end to end with two agents: what alpha's
//! own edits and deletions replace is in alpha's history within seconds
//! (gathered from alpha's files and from beta, which kept each version
//! when the change reached it) and comes back byte for byte; a one-byte
//! edit in place of a large file fetches only what alpha no longer has; a
//! version that no connected device has is listed as not here, and a
//! restore of it says so, until a device that kept it connects; the
//! switch turns it off.

mod common;

use std::path::Path;
use std::time::Duration;

use common::node::sharing;
use common::{json, run, stderr, wait};

fn ok(home: &Path, args: &[&str]) -> serde_json::Value {
    let out = run(home, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    json(&out)
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

/// The history of `file` on the node at `home`.
fn history(home: &Path, file: &Path) -> Vec<serde_json::Value> {
    ok(home, &["history", file.to_str().unwrap(), "--json"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The number of the version of `file` (on `home`) with content `bytes`,
/// kept for `why` and here, once there is one.
fn wait_for_version(home: &Path, file: &Path, bytes: &[u8], why: &str) -> u64 {
    let hash = blake3::hash(bytes).to_hex().to_string();
    let mut n = 0;
    wait(
        &format!("{} keeps {why} version {}", file.display(), &hash[..8]),
        Duration::from_secs(30),
        || {
            n = history(home, file)
                .iter()
                .find(|v| v["hash"] == hash.as_str() && v["why"] == why && v["here"] == true)
                .and_then(|v| v["n"].as_u64())
                .unwrap_or(0);
            n > 0
        },
    );
    n
}

fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn what_edits_here_replace_is_kept_here_and_comes_back() {
    let big = noise(6 << 20);
    let (mut alpha, da) = sharing(
        "alpha",
        &[
            ("report.txt", b"first draft\n"),
            ("notes.txt", b"notes\n"),
            ("big.bin", &big),
        ],
    );
    let (mut beta, db) = sharing("beta", &[]);
    alpha.trust(&beta);
    beta.trust(&alpha);
    alpha.start();
    beta.start();
    wait("beta has all three", Duration::from_secs(60), || {
        read(&db.join("big.bin")) == big && db.join("notes.txt").is_file()
    });

    // Alpha edits the report, deletes the notes, and changes one byte in
    // the middle of big.bin, in place.
    std::fs::write(da.join("report.txt"), b"second draft\n").unwrap();
    std::fs::remove_file(da.join("notes.txt")).unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(da.join("big.bin"))
            .unwrap();
        f.write_all_at(&[!big[3 << 20]], 3 << 20).unwrap();
    }
    let mut edited = big.clone();
    edited[3 << 20] = !big[3 << 20];
    wait("beta has the edits", Duration::from_secs(30), || {
        read(&db.join("report.txt")) == b"second draft\n"
            && read(&db.join("big.bin")) == edited
            && !db.join("notes.txt").exists()
    });

    // Alpha's history holds what its own changes replaced.
    let report = da.join("report.txt");
    let n = wait_for_version(alpha.home.path(), &report, b"first draft\n", "edited here");
    let bign = wait_for_version(alpha.home.path(), &da.join("big.bin"), &big, "edited here");
    // Alpha sent everything before: what it fetched now is what it no
    // longer had — the chunk its edit changed, not the 6 MiB file.
    let fetched = ok(alpha.home.path(), &["status", "--json"])["sync_bytes_fetched"]
        .as_u64()
        .unwrap();
    eprintln!("alpha fetched {fetched} bytes to keep its versions");
    assert!(fetched > 0 && fetched <= 2 << 20, "{fetched}");
    let deleted = ok(
        alpha.home.path(),
        &["history", "--deleted", "docs", "--json"],
    );
    assert_eq!(deleted[0]["path"], "notes.txt", "{deleted}");
    assert_eq!(deleted[0]["newest"]["why"], "deleted here", "{deleted}");
    wait(
        "the deleted file's bytes are here",
        Duration::from_secs(30),
        || {
            history(alpha.home.path(), &da.join("notes.txt"))
                .first()
                .is_some_and(|v| v["here"] == true)
        },
    );

    // Each comes back byte for byte, and beta follows.
    ok(
        alpha.home.path(),
        &[
            "restore",
            report.to_str().unwrap(),
            "--version",
            &n.to_string(),
            "--json",
        ],
    );
    assert_eq!(read(&report), b"first draft\n");
    ok(
        alpha.home.path(),
        &[
            "restore",
            da.join("big.bin").to_str().unwrap(),
            "--version",
            &bign.to_string(),
            "--json",
        ],
    );
    assert!(read(&da.join("big.bin")) == big, "big.bin as it was");
    ok(
        alpha.home.path(),
        &["restore", da.join("notes.txt").to_str().unwrap(), "--json"],
    );
    wait("beta follows the restores", Duration::from_secs(30), || {
        read(&db.join("report.txt")) == b"first draft\n"
            && read(&db.join("big.bin")) == big
            && read(&db.join("notes.txt")) == b"notes\n"
    });
    // A restore keeps what it replaced once ("restored over"), not twice.
    let rows = history(alpha.home.path(), &report);
    assert_eq!(rows[0]["why"], "restored over", "{rows:?}");
    assert_eq!(
        rows.iter().filter(|v| v["why"] == "edited here").count(),
        1,
        "{rows:?}"
    );

    // A version only beta has: alpha writes it, beta takes it, beta
    // stops, alpha writes over it.
    std::fs::write(&report, b"third draft\n").unwrap();
    wait("beta has the third", Duration::from_secs(30), || {
        read(&db.join("report.txt")) == b"third draft\n"
    });
    beta.signal("-TERM");
    std::fs::write(&report, b"fourth draft\n").unwrap();
    let third = blake3::hash(b"third draft\n").to_hex().to_string();
    let mut number = 0;
    wait(
        "the third is listed, not here",
        Duration::from_secs(30),
        || {
            number = history(alpha.home.path(), &report)
                .iter()
                .find(|v| v["hash"] == third.as_str() && v["here"] == false)
                .and_then(|v| v["n"].as_u64())
                .unwrap_or(0);
            number > 0
        },
    );
    let out = run(
        alpha.home.path(),
        &[
            "restore",
            report.to_str().unwrap(),
            "--version",
            &number.to_string(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not on this device"),
        "{}",
        stderr(&out)
    );
    assert_eq!(read(&report), b"fourth draft\n", "nothing changed");
    // Beta comes back: alpha fetches the third from it.
    beta.start();
    wait_for_version(alpha.home.path(), &report, b"third draft\n", "edited here");

    // Switched off, an edit here keeps nothing.
    let said = ok(
        alpha.home.path(),
        &["folder", "versions", "docs", "--local", "off", "--json"],
    );
    assert_eq!(said["local"], false, "{said}");
    let before = history(alpha.home.path(), &report).len();
    std::fs::write(&report, b"fifth draft\n").unwrap();
    wait("beta has the fifth", Duration::from_secs(30), || {
        read(&db.join("report.txt")) == b"fifth draft\n"
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(history(alpha.home.path(), &report).len(), before);
    let out = run(
        alpha.home.path(),
        &["folder", "versions", "docs", "--local", "maybe"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("`on` or `off`"), "{}", stderr(&out));
}
