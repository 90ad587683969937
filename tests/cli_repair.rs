//! Issue 21: a node whose store is damaged is not dead. `softadastra
//! repair` keeps a copy of the damaged files, salvages what is readable,
//! says what was lost, indexes the folder again from its disk, and the
//! node then converges with its peer with nothing lost that the disk or
//! the peer still had. Real `softadastra run` processes on 127.0.0.1.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::node::{Node, sharing};
use common::{json, run, stderr, stdout};

/// The files under `dir` (the agent's `.softadastra/` aside).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    common::entries(dir, false)
}

/// Wait (up to 40 s) until both folders hold the same files and `check` holds.
fn converge(a: &Path, b: &Path, check: impl Fn(&BTreeMap<String, Vec<u8>>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (ta, tb) = (tree(a), tree(b));
        if ta == tb && check(&ta) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "folders did not converge:\n  a: {:?}\n  b: {:?}",
            ta.keys().collect::<Vec<_>>(),
            tb.keys().collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The WAL segment files of the store in `home`, oldest first.
fn segments(home: &Path) -> Vec<PathBuf> {
    let mut s: Vec<PathBuf> = std::fs::read_dir(home.join("store/wal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    s.sort();
    s
}

#[test]
fn a_damaged_store_is_repaired_and_the_node_converges_with_nothing_lost() {
    let (mut a, da) = sharing("alpha", &[]);
    let (mut b, db) = sharing("beta", &[]);
    a.trust(&b);
    b.trust(&a);
    for i in 0..30 {
        std::fs::write(da.join(format!("a{i:02}.txt")), format!("from alpha {i}")).unwrap();
    }
    a.start();
    b.start();
    converge(&da, &db, |t| t.len() == 30);
    assert!(
        run(b.home.path(), &["store", "put", "note", "kept by beta"])
            .status
            .success()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(b.signal("-TERM").success());

    // While beta is stopped: a file on its disk only, and a change on alpha.
    std::fs::write(db.join("beta-offline.txt"), b"made while beta was down").unwrap();
    std::fs::write(da.join("a05.txt"), b"alpha edited this").unwrap();

    // Damage in the middle of beta's log — a flipped byte in every segment —
    // and in its on-disk index, which would otherwise still hold every
    // change: the worst case, where records are lost for good.
    let bh = &b.home.path().to_path_buf();
    let index = bh.join("store/index.redb");
    let mut bytes = std::fs::read(&index).unwrap();
    for at in (0..bytes.len()).step_by(4096) {
        bytes[at + 100] ^= 0x5a;
    }
    std::fs::write(&index, &bytes).unwrap();
    for seg in segments(bh) {
        let mut bytes = std::fs::read(&seg).unwrap();
        if bytes.len() > 400 {
            let at = bytes.len() / 2;
            bytes[at] ^= 0x40;
            std::fs::write(&seg, &bytes).unwrap();
        }
    }
    let refused = run(bh, &["store", "list"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("softadastra repair"),
        "{}",
        stderr(&refused)
    );
    let verify = run(bh, &["wal", "verify", "--json"]);
    assert_eq!(verify.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert!(
        v["records"].as_u64().unwrap() > 0,
        "records before the damage are counted: {v}"
    );
    assert!(v["records_after_damage"].as_u64().unwrap() > 0, "{v}");
    assert!(
        v["last_seq"].as_u64().unwrap() > 0,
        "sequences read are named: {v}"
    );

    let places = bh.join("store/chunks.redb");
    assert!(places.is_file(), "the agent kept its chunk places on disk");
    let repaired = run(bh, &["repair", "--json"]);
    assert!(repaired.status.success(), "{}", stderr(&repaired));
    assert!(
        !places.exists(),
        "the chunk places, derived from the index, go with its repair"
    );
    let r = json(&repaired);
    assert!(r["lost_changes"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["records_kept"].as_u64().unwrap() > 0, "{r}");
    assert!(r["index_records_advanced"].as_u64().unwrap() > 0, "{r}");
    let kept = PathBuf::from(r["damaged_files_kept_in"].as_str().unwrap());
    assert!(kept.join("wal").is_dir(), "{r}");
    assert_eq!(r["folders"][0]["error"], serde_json::Value::Null, "{r}");
    // Nothing in the shared folder was touched by the repair.
    assert_eq!(
        std::fs::read(db.join("beta-offline.txt")).unwrap(),
        b"made while beta was down"
    );
    assert!(run(bh, &["store", "list"]).status.success());

    // Started again: the two converge, every file on either disk kept.
    // Beta's records now claim versions newer than any it lost, so alpha's
    // edit of a05 made meanwhile meets one of them as a conflict: both
    // contents are kept (one as a conflict copy), never neither.
    b.start();
    converge(&da, &db, |t| {
        (0..30).all(|i| t.contains_key(&format!("a{i:02}.txt")))
            && t.contains_key("beta-offline.txt")
            && t.values().any(|v| v == b"alpha edited this")
    });
    // The value beta wrote is back: from its own salvaged log or from alpha.
    let deadline = Instant::now() + Duration::from_secs(20);
    while stdout(&run(bh, &["store", "get", "note"])) != "kept by beta" {
        assert!(
            Instant::now() < deadline,
            "beta's value came back from nowhere"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // And new changes flow both ways.
    std::fs::write(db.join("after-repair.txt"), b"new on beta").unwrap();
    converge(&da, &db, |t| t.contains_key("after-repair.txt"));
    assert!(a.signal("-TERM").success());
    assert!(b.signal("-TERM").success());
}

#[test]
fn repair_refuses_while_the_agent_runs() {
    let mut n = Node::new("solo");
    assert!(
        run(n.home.path(), &["store", "put", "k", "v"])
            .status
            .success()
    );
    n.start();
    n.wait_for(&["running"]);
    let busy = run(n.home.path(), &["repair"]);
    assert!(!busy.status.success());
    assert!(
        stderr(&busy).contains("stop the agent first"),
        "{}",
        stderr(&busy)
    );
    assert!(n.signal("-TERM").success());
    // A store with nothing wrong: repair keeps everything and says so.
    let ok = run(n.home.path(), &["repair"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("nothing was lost"), "{}", stdout(&ok));
    assert_eq!(stdout(&run(n.home.path(), &["store", "get", "k"])), "v");
}

/// A home at rest whose index is damaged in the middle of its pages:
/// whatever reads it — here `ls` — fails saying the store is damaged and
/// naming `softadastra repair`, never with the database library's panic
/// (a million-file home printed "internal error: entered unreachable
/// code").
#[test]
fn reading_a_damaged_index_names_the_repair_instead_of_panicking() {
    let (n, dir) = sharing("solo", &[]);
    for d in 0..30 {
        let sub = dir.join(format!("d{d:02}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..100 {
            std::fs::write(sub.join(format!("f{f:03}.txt")), format!("{d} {f}")).unwrap();
        }
    }
    let rescanned = run(n.home.path(), &["folder", "rescan", "docs"]);
    assert!(rescanned.status.success(), "{}", stderr(&rescanned));
    assert!(run(n.home.path(), &["ls"]).status.success());
    let index = n.home.path().join("store/index.redb");
    let mut bytes = std::fs::read(&index).unwrap();
    assert!(bytes.len() > 64 << 10, "{} bytes", bytes.len());
    let (from, to) = (bytes.len() / 3, bytes.len() / 3 + (32 << 10));
    for b in &mut bytes[from..to] {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    std::fs::write(&index, &bytes).unwrap();
    for args in [&["ls"][..], &["ls", "--all"], &["store", "list"]] {
        let out = run(n.home.path(), args);
        let said = stderr(&out);
        assert!(
            !out.status.success(),
            "{args:?} read a damaged index: {said}"
        );
        assert!(said.contains("softadastra repair"), "{args:?}: {said}");
        assert!(!said.contains("panicked"), "{args:?}: {said}");
    }
}

/// A node's index lost whole: the repair brings back how the node is set
/// up — its folder, who it is shared with, its trusted peer — from the
/// copy each checkpoint keeps aside, and indexes the folder again from
/// its disk.
#[test]
fn a_lost_index_keeps_the_nodes_folders_and_peers() {
    let (n, dir) = sharing("solo", &[("a.txt", b"a"), ("b.txt", b"b")]);
    let peer = Node::new("peer");
    n.trust(&peer);
    let shared = run(n.home.path(), &["folder", "share", "docs", &peer.id]);
    assert!(shared.status.success(), "{}", stderr(&shared));
    // Any command that opens the store keeps the setup aside.
    assert!(run(n.home.path(), &["folder", "list"]).status.success());
    assert!(n.home.path().join("store/aside.bin").is_file());
    let index = n.home.path().join("store/index.redb");
    let mut bytes = std::fs::read(&index).unwrap();
    for b in bytes.iter_mut() {
        *b ^= 0x5a;
    }
    std::fs::write(&index, &bytes).unwrap();

    let repaired = run(n.home.path(), &["repair", "--json"]);
    assert!(repaired.status.success(), "{}", stderr(&repaired));
    let r = json(&repaired);
    assert!(r["setup_kept_aside"].is_array(), "{r}");
    assert_eq!(r["folders"][0]["id"], "docs", "{r}");
    let list = json(&run(n.home.path(), &["folder", "list", "--json"]));
    let text = list.to_string();
    assert!(text.contains("docs") && text.contains(&peer.id), "{text}");
    let peers = stdout(&run(n.home.path(), &["peer", "list"]));
    assert!(peers.contains(&peer.id), "{peers}");
    let ls = stdout(&run(n.home.path(), &["ls"]));
    assert!(ls.contains("a.txt") && ls.contains("b.txt"), "{ls}");
    assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"a");
}
