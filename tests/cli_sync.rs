//! Folder sync end to end: real `softadastra run` processes on 127.0.0.1
//! keep a shared folder identical — initial sync both ways, edits, deletes
//! and replaced content (kept in the trash), renames (no content bytes moved), offline edits
//! caught up on reconnect, a simultaneous edit (one winner, one conflict
//! copy, the same on both nodes), modify-versus-delete (the modification
//! survives), and kill -9 of the receiver in the middle of a large file
//! and, again and again, of a sync of many small files.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::node::Node;
use common::{json, run};

/// A node sharing folder `docs` at `<home>/docs`.
fn node(name: &str) -> (Node, PathBuf) {
    common::node::sharing(name, &[])
}

fn pair() -> ((Node, PathBuf), (Node, PathBuf)) {
    let (a, b) = (node("alpha"), node("beta"));
    a.0.trust(&b.0);
    b.0.trust(&a.0);
    (a, b)
}

/// A started pair whose folders converged on `files` (written on alpha).
fn synced_pair(files: &[(&str, &[u8])]) -> ((Node, PathBuf), (Node, PathBuf)) {
    let ((mut a, da), (mut b, db)) = pair();
    for (name, bytes) in files {
        std::fs::write(da.join(name), bytes).unwrap();
    }
    a.start();
    b.start();
    converge(&da, &db, |t| t.len() == files.len());
    ((a, da), (b, db))
}

/// Every file under `dir` (relative path → bytes), the agent's own
/// `.softadastra/` directory aside.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if rel == ".softadastra" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.insert(rel, bytes);
            }
        }
    }
    out
}

fn names(t: &BTreeMap<String, Vec<u8>>) -> Vec<&str> {
    t.keys().map(String::as_str).collect()
}

fn assert_no_temp_files(t: &BTreeMap<String, Vec<u8>>) {
    assert!(
        !t.keys().any(|k| k.contains(".softadastra-tmp-")),
        "temporary files left: {:?}",
        names(t)
    );
}

/// Wait (up to 30 s) until both folders hold the same files and `check`
/// holds for them.
fn converge(
    a: &Path,
    b: &Path,
    check: impl Fn(&BTreeMap<String, Vec<u8>>) -> bool,
) -> BTreeMap<String, Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ta, tb) = (tree(a), tree(b));
        if ta == tb && check(&ta) {
            return ta;
        }
        assert!(
            Instant::now() < deadline,
            "folders did not converge:\n  a: {:?}\n  b: {:?}",
            names(&ta),
            names(&tb)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status(n: &Node) -> serde_json::Value {
    json(&run(n.home.path(), &["status", "--json"]))
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

fn stop(n: &mut Node) {
    assert!(n.signal("-TERM").success());
}

#[test]
fn edits_deletes_and_renames_propagate_and_renames_move_no_bytes() {
    let ((mut a, da), (mut b, db)) = pair();
    // Initial content on both sides.
    std::fs::write(da.join("hello.txt"), b"hello from alpha\n").unwrap();
    std::fs::create_dir_all(da.join("photos/2026")).unwrap();
    std::fs::write(da.join("photos/2026/big.bin"), random_bytes(3 << 20, 1)).unwrap();
    std::fs::write(db.join("notes.md"), b"# from beta\n").unwrap();
    a.start();
    b.start();
    let t = converge(&da, &db, |t| t.len() == 3);
    assert_eq!(t["notes.md"], b"# from beta\n");

    // An edit on b reaches a, where the replaced content is kept in the
    // version store.
    std::fs::write(db.join("hello.txt"), b"edited on beta\n").unwrap();
    converge(&da, &db, |t| t["hello.txt"] == b"edited on beta\n");
    let replaced = tree(&da.join(".softadastra/versions"));
    assert!(
        replaced.values().any(|v| v == b"hello from alpha\n"),
        "replaced content kept in a's versions: {:?}",
        names(&replaced)
    );

    // A delete on a reaches b, where the file is kept too.
    std::fs::remove_file(da.join("notes.md")).unwrap();
    converge(&da, &db, |t| !t.contains_key("notes.md"));
    assert!(
        tree(&db.join(".softadastra/versions"))
            .values()
            .any(|v| v == b"# from beta\n"),
        "deleted file kept in b's versions"
    );

    // A rename on a moves no content bytes to b.
    let before = status(&b)["sync_bytes_fetched"].as_u64().unwrap();
    std::fs::rename(
        da.join("photos/2026/big.bin"),
        da.join("photos/big-renamed.bin"),
    )
    .unwrap();
    converge(&da, &db, |t| {
        t.contains_key("photos/big-renamed.bin") && !t.contains_key("photos/2026/big.bin")
    });
    let after = status(&b)["sync_bytes_fetched"].as_u64().unwrap();
    assert_eq!(after, before, "a rename fetched {} bytes", after - before);

    // Nothing is left pending, and nothing echoes back.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status(&a)["sync_pending"], 0);
    assert_eq!(status(&b)["sync_pending"], 0);
    let folder = &status(&b)["folders"][0];
    assert_eq!(folder["state"], "up to date", "{folder}");
    assert_eq!(folder["files"], 2, "{folder}");
    assert_eq!(folder["progress"]["needed_files"], 0, "{folder}");
    let human = common::stdout(&run(b.home.path(), &["sync", "status"]));
    assert!(
        human.contains("docs at") && human.contains("up to date · 2 files"),
        "{human}"
    );
    // The index can be listed while the agent holds the store.
    let ls = json(&run(b.home.path(), &["ls", "docs", "--json"]));
    let paths: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["path"].as_str())
        .collect();
    assert!(paths.contains(&"photos/big-renamed.bin"), "{paths:?}");
    let text = common::stdout(&run(b.home.path(), &["ls", "docs"]));
    assert!(text.contains("photos/big-renamed.bin"), "{text}");
    assert!(!run(b.home.path(), &["ls", "nope"]).status.success());
    stop(&mut a);
    stop(&mut b);
}

#[test]
fn offline_edits_conflicts_and_modify_versus_delete() {
    let ((mut a, da), (mut b, db)) = synced_pair(&[
        ("shared.txt", b"version 0\n"),
        ("doomed.txt", b"original\n"),
    ]);
    stop(&mut b);

    // Apart: both edit shared.txt differently (a later), a edits doomed.txt
    // while b deletes it, and each makes a new file.
    std::fs::write(db.join("shared.txt"), b"beta's edit\n").unwrap();
    std::fs::remove_file(db.join("doomed.txt")).unwrap();
    std::fs::write(db.join("from-beta.txt"), b"offline on beta\n").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(da.join("shared.txt"), b"alpha's edit\n").unwrap();
    std::fs::write(da.join("doomed.txt"), b"modified while b deleted it\n").unwrap();
    std::fs::write(da.join("from-alpha.txt"), b"offline on alpha\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));

    b.start();
    let t = converge(&da, &db, |t| {
        t.contains_key("from-beta.txt")
            && t.contains_key("from-alpha.txt")
            && t.keys().any(|k| k.contains(".sync-conflict-"))
            && t.get("doomed.txt")
                .is_some_and(|v| v == b"modified while b deleted it\n")
    });
    // The later edit (alpha's) wins the path; beta's is kept beside it.
    assert_eq!(t["shared.txt"], b"alpha's edit\n");
    let copies: Vec<(&String, &Vec<u8>)> = t
        .iter()
        .filter(|(k, _)| k.contains(".sync-conflict-"))
        .collect();
    assert_eq!(copies.len(), 1, "{:?}", names(&t));
    assert!(copies[0].0.starts_with("shared.sync-conflict-") && copies[0].0.ends_with(".txt"));
    assert_eq!(copies[0].1, b"beta's edit\n");
    stop(&mut a);
    stop(&mut b);
}

#[test]
fn a_receiver_killed_mid_transfer_converges_with_no_temp_files() {
    let ((mut a, da), (mut b, db)) = pair();
    let big = random_bytes(96 << 20, 7);
    std::fs::write(da.join("large.bin"), &big).unwrap();
    a.start();
    b.start();
    // Kill b as soon as the transfer has begun.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let started = std::fs::read_dir(&db).unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".softadastra-tmp-")
        });
        if started {
            break;
        }
        assert!(Instant::now() < deadline, "transfer never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    b.signal("-KILL");
    // Never a half file at the real path.
    if let Ok(bytes) = std::fs::read(db.join("large.bin")) {
        assert_eq!(
            bytes.len(),
            big.len(),
            "a partial file appeared at the final path"
        );
    }
    b.start();
    let t = converge(&da, &db, |t| {
        t.get("large.bin").is_some_and(|v| v.len() == big.len())
    });
    assert!(t["large.bin"] == big);
    assert_no_temp_files(&t);
    stop(&mut a);
    stop(&mut b);
}

/// Files under `dir` that are not temporary files, by relative path.
fn placed(dir: &Path) -> usize {
    tree(dir)
        .keys()
        .filter(|k| !k.contains(".softadastra-tmp-"))
        .count()
}

#[test]
fn a_receiver_killed_again_and_again_during_a_small_file_sync_converges() {
    let ((mut a, da), (mut b, db)) = pair();
    let mut rng = fastrand::Rng::with_seed(5);
    for d in 0..20 {
        let dir = da.join(format!("d{d:02}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..100 {
            let len = rng.usize(1..=8192);
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            std::fs::write(dir.join(format!("f{f:03}.txt")), bytes).unwrap();
        }
    }
    let want = tree(&da);
    a.start();
    b.start();
    // Kill b (-9) whenever some more files have arrived, four times: small
    // files are placed in batches, so each kill lands in the middle of some.
    let mut kills = 0;
    let mut seen = 0;
    while kills < 4 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let now = loop {
            let n = placed(&db);
            if n >= seen + 50 || n == want.len() {
                break n;
            }
            assert!(Instant::now() < deadline, "no progress after {kills} kills");
            std::thread::sleep(Duration::from_millis(5));
        };
        if now == want.len() {
            break;
        }
        b.signal("-KILL");
        kills += 1;
        seen = now;
        // Never a partial or wrong file at a real path.
        for (path, bytes) in tree(&db) {
            if !path.contains(".softadastra-tmp-") {
                assert!(want.get(&path) == Some(&bytes), "{path} is not alpha's");
            }
        }
        b.start();
    }
    eprintln!(
        "killed {kills} times, the last at {seen} of {} files",
        want.len()
    );
    assert!(kills > 0, "the sync ended before a kill");
    let t = converge(&da, &db, |t| t.len() == want.len());
    assert_no_temp_files(&t);
    assert!(
        !t.keys().any(|k| k.contains("sync-conflict")),
        "a conflict copy where nothing conflicts"
    );
    stop(&mut a);
    stop(&mut b);
}

#[test]
fn a_file_whose_rename_a_power_cut_lost_is_finished_at_start() {
    let ((mut a, da), (mut b, db)) = synced_pair(&[
        ("kept.txt", b"placed before the cut\n"),
        ("gone.txt", b"doomed one\n"),
    ]);
    stop(&mut b);
    // What a power cut right after a commit batch of new files may leave:
    // the index entry is durable, the rename of the temporary file is not.
    std::fs::rename(
        db.join("kept.txt"),
        db.join(".softadastra-tmp-0badc0de-kept.txt"),
    )
    .unwrap();
    // A download cut short, and a temporary file of the right size whose
    // bytes are not what the index says (gone.txt was deleted while b was
    // down): both simply removed, and the deletion syncs.
    std::fs::write(db.join(".softadastra-tmp-12345678-partial.bin"), b"half").unwrap();
    std::fs::remove_file(db.join("gone.txt")).unwrap();
    std::fs::write(
        db.join(".softadastra-tmp-11111111-gone.txt"),
        b"DOOMED ONE\n",
    )
    .unwrap();
    b.clear_log();
    b.start();
    b.wait_for(&["finished placing a file a crash interrupted", "kept.txt"]);
    b.wait_for(&["scanned", "deleted=1"]);
    let t = converge(&da, &db, |t| !t.contains_key("gone.txt"));
    assert_eq!(names(&t), ["kept.txt"]);
    assert_eq!(t["kept.txt"], b"placed before the cut\n");
    assert_no_temp_files(&t);
    stop(&mut a);
    stop(&mut b);
}

#[test]
fn three_nodes_in_a_chain_relay_changes_both_ways() {
    // a and c do not know each other: b carries everything between them.
    let ((mut a, da), (mut b, db), (mut c, dc)) = (node("alpha"), node("beta"), node("gamma"));
    a.trust(&b);
    b.trust(&a);
    b.trust(&c);
    c.trust(&b);
    std::fs::write(da.join("from-a.txt"), b"a\n").unwrap();
    std::fs::write(dc.join("from-c.txt"), b"c\n").unwrap();
    for n in [&mut a, &mut b, &mut c] {
        n.start();
    }
    converge(&da, &dc, |t| t.len() == 2);
    converge(&da, &db, |t| t.len() == 2);
    std::fs::write(dc.join("from-a.txt"), b"changed on c\n").unwrap();
    converge(&da, &dc, |t| t["from-a.txt"] == b"changed on c\n");
    for n in [&mut a, &mut b, &mut c] {
        stop(n);
    }
}

#[test]
fn a_folder_shared_while_running_syncs_at_once() {
    let ((mut a, _), (mut b, _)) = pair();
    a.start();
    b.start();
    a.connected_to(&b);
    let (ma, mb) = (a.home.path().join("music"), b.home.path().join("music"));
    for (n, dir, other) in [(&a, &ma, &b), (&b, &mb, &a)] {
        std::fs::create_dir(dir).unwrap();
        let out = run(
            n.home.path(),
            &[
                "folder",
                "add",
                dir.to_str().unwrap(),
                "--id",
                "music",
                "--share",
                &other.id,
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("running agent"));
    }
    std::fs::write(ma.join("song.txt"), b"la la\n").unwrap();
    converge(&ma, &mb, |t| {
        t.get("song.txt").is_some_and(|v| v == b"la la\n")
    });
    stop(&mut a);
    stop(&mut b);
}

#[test]
fn pause_resume_rescan_and_remove_a_folder_while_running() {
    let ((mut a, da), (mut b, db)) = pair();
    a.start();
    b.start();
    a.connected_to(&b);
    std::fs::write(da.join("one.txt"), b"1").unwrap();
    converge(&da, &db, |t| t.len() == 1);

    // Paused on b: a's edits wait.
    let out = run(b.home.path(), &["folder", "pause", "docs"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("paused"));
    assert_eq!(status(&b)["folders"][0]["state"], "paused");
    std::fs::write(da.join("two.txt"), b"2").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !db.join("two.txt").exists(),
        "a paused folder is not synced"
    );

    // Resumed: it catches up.
    assert!(
        run(b.home.path(), &["folder", "resume", "docs"])
            .status
            .success()
    );
    converge(&da, &db, |t| t.len() == 2);
    let out = run(b.home.path(), &["folder", "rescan", "docs"]);
    assert!(
        common::stderr(&out).contains("rescanning"),
        "{}",
        common::stderr(&out)
    );
    let bad = run(b.home.path(), &["folder", "rescan", "nope"]);
    assert!(!bad.status.success());

    // Removed on b: files stay, nothing more arrives.
    assert!(
        run(b.home.path(), &["folder", "remove", "docs"])
            .status
            .success()
    );
    assert_eq!(status(&b)["folders"].as_array().map(Vec::len), Some(0));
    std::fs::write(da.join("three.txt"), b"3").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!db.join("three.txt").exists());
    assert_eq!(std::fs::read(db.join("one.txt")).unwrap(), b"1");
    stop(&mut a);
    stop(&mut b);
}
