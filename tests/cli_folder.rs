//! `softadastra folder …`, `ls` and `scan`, driven through the real binary.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{bin, json, open_store, run};

fn write(p: &Path, data: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

#[test]
fn add_list_ls_rescan_and_remove() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("My Photos");
    write(&root.join("a.txt"), b"alpha");
    write(&root.join("sub/b.txt"), b"beta");
    let h = home.path();
    let add = run(h, &["folder", "add", root.to_str().unwrap()]);
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    assert!(
        String::from_utf8_lossy(&add.stderr).contains("\"my-photos\""),
        "id derived from the name"
    );

    let list = json(&run(h, &["folder", "list", "--json"]));
    assert_eq!(list[0]["id"], "my-photos");
    assert_eq!(list[0]["files"], 2);
    assert_eq!(list[0]["dirs"], 1);

    let ls = json(&run(h, &["ls", "my-photos", "--json"]));
    let paths: Vec<_> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec!["a.txt", "sub", "sub/b.txt"]);
    assert_eq!(ls[0]["hash"].as_str().unwrap().len(), 64);

    // Rescan sees a modification and a deletion; unchanged files are not re-read.
    write(&root.join("a.txt"), b"alpha, edited");
    std::fs::remove_file(root.join("sub/b.txt")).unwrap();
    let scan = json(&run(h, &["scan", root.to_str().unwrap(), "--json"]));
    assert_eq!(scan["recorded"], true);
    assert_eq!(scan["modified"], 1);
    assert_eq!(scan["deleted"], 1);
    assert_eq!(scan["hashed_files"], 1);
    let all = json(&run(h, &["ls", "--all", "--json"]));
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|r| r["path"] == "sub/b.txt" && r["deleted"] == true)
    );

    // Overlapping or duplicate folders, bad ids and missing paths are refused.
    let again = run(h, &["folder", "add", root.join("sub").to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("overlaps"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let bad_id = run(
        h,
        &[
            "folder",
            "add",
            dir.path().to_str().unwrap(),
            "--id",
            "../x",
        ],
    );
    assert!(String::from_utf8_lossy(&bad_id.stderr).contains("invalid folder id"));
    let missing = run(h, &["folder", "add", "/definitely/not/here"]);
    assert!(!missing.status.success());
    assert!(!run(h, &["ls", "nope"]).status.success());

    assert!(run(h, &["folder", "remove", "my-photos"]).status.success());
    assert_eq!(
        json(&run(h, &["folder", "list", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert!(
        root.join("a.txt").exists(),
        "removing a folder leaves its files alone"
    );
}

#[test]
fn scan_of_an_unshared_directory_records_nothing() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("x/y.bin"), &[1u8; 100_000]);
    let scan = json(&run(
        home.path(),
        &["scan", dir.path().to_str().unwrap(), "--json"],
    ));
    assert_eq!(scan["recorded"], false);
    assert_eq!(scan["entries"], 2);
    assert_eq!(scan["hashed_bytes"], 100_000);
    assert_eq!(
        json(&run(home.path(), &["ls", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert!(
        !dir.path().join(".softadastra").exists(),
        "nothing is written into a directory only looked at (no folder marker)"
    );
    assert!(!run(home.path(), &["scan", "/no/such/dir"]).status.success());
}

/// Unreadable paths are reported per path; the scan goes on, and what
/// cannot be read is never taken as deleted.
#[cfg(unix)]
#[test]
fn permission_denied_paths_are_reported_not_deleted() {
    use std::os::unix::fs::PermissionsExt;
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    // Root reads everything; drop to `nobody` to meet a real EACCES.
    let prefix: Vec<&str> = if is_root {
        vec![
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]
    } else {
        vec![]
    };
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let home = base.path().join("home");
    let root = base.path().join("shared");
    write(&root.join("open.txt"), b"readable");
    write(&root.join("locked/inside.txt"), b"hidden");
    write(&root.join("secret.txt"), b"secret");
    for p in [&root, &root.join("locked")] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    for p in [
        root.join("open.txt"),
        root.join("locked/inside.txt"),
        root.join("secret.txt"),
    ] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    let sa = |args: &[&str]| -> Output {
        let mut cmd = Command::new(prefix.first().copied().unwrap_or(bin()));
        if !prefix.is_empty() {
            cmd.args(&prefix[1..]).arg(bin());
        }
        cmd.arg("--home")
            .arg(&home)
            .args(args)
            .env_remove("SOFTADASTRA_HOME")
            .output()
            .unwrap()
    };
    let add = sa(&["folder", "add", root.to_str().unwrap(), "--id", "p"]);
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );

    // secret.txt changes size (so it must be re-read), then becomes unreadable.
    std::fs::write(root.join("secret.txt"), b"secret, longer now").unwrap();
    std::fs::set_permissions(
        root.join("secret.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::set_permissions(root.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    write(&root.join("new.txt"), b"new");
    std::fs::set_permissions(root.join("new.txt"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = sa(&["scan", root.to_str().unwrap(), "--json"]);
    let report = json(&out);
    let issues = report["issues"].as_array().unwrap();
    assert!(
        issues
            .iter()
            .any(|i| i["rel"] == "locked" && i["kind"] == "Unreadable"),
        "{issues:?}"
    );
    assert!(
        issues
            .iter()
            .any(|i| i["rel"] == "secret.txt" && i["kind"] == "Unreadable"),
        "{issues:?}"
    );
    assert_eq!(
        report["deleted"], 0,
        "unreadable paths must not become deletions: {report}"
    );
    assert_eq!(report["added"], 1, "the rest of the folder was scanned");
    std::fs::set_permissions(root.join("locked"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let ls = json(&sa(&["ls", "p", "--json"]));
    let ls = ls.as_array().unwrap();
    assert!(ls.iter().any(|r| r["path"] == "locked/inside.txt"));
    assert!(
        ls.iter().any(|r| r["path"] == "secret.txt"),
        "still indexed with its last known content"
    );
}

/// `softadastra watch` records changes as they happen and prints each batch.
#[test]
fn watch_records_changes_as_they_happen() {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    use std::time::Duration;
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("before.txt"), b"1");
    assert!(
        run(
            home.path(),
            &["folder", "add", dir.path().to_str().unwrap(), "--id", "w"]
        )
        .status
        .success()
    );
    write(&dir.path().join("while-away.txt"), b"2");
    let mut child = Command::new(bin())
        .arg("--home")
        .arg(home.path())
        .args(["watch", "w"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx2.send(l)))
    });
    std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx.send(l)))
    });
    let wait_for = |needle: &str| -> String {
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no line containing {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    };
    let caught_up = wait_for("caught up");
    assert!(caught_up.contains("1 added"), "{caught_up}");
    wait_for("watching 1 folder");
    write(&dir.path().join("new.txt"), b"fresh");
    let line = wait_for("new.txt");
    assert!(line.contains("1 added"), "{line}");
    std::fs::remove_file(dir.path().join("before.txt")).unwrap();
    let line = wait_for("before.txt");
    assert!(line.contains("1 deleted"), "{line}");
    child.kill().unwrap();
    child.wait().unwrap();
    // Killed at any moment, the recorded changes are durable.
    let ls = json(&run(home.path(), &["ls", "w", "--json"]));
    let paths: Vec<_> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, vec!["new.txt", "while-away.txt"]);
}

/// An agent holds the store from its first moment, a little before its
/// control socket answers; a one-shot command holds it for a moment too.
/// A folder command meeting a store in use waits for it (or for the agent
/// to answer) instead of failing at once; so do `status` and `peers`.
#[test]
fn a_folder_command_waits_for_a_store_held_for_a_moment() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    write(&first.join("a.txt"), b"alpha");
    write(&second.join("b.txt"), b"beta");
    let h = home.path();
    assert!(
        run(h, &["folder", "add", first.to_str().unwrap()])
            .status
            .success()
    );
    let held = open_store(h);
    let start = std::time::Instant::now();
    let commands: Vec<Vec<String>> = vec![
        vec!["folder".into(), "add".into(), second.display().to_string()],
        vec!["status".into()],
        vec!["peers".into()],
    ];
    let running: Vec<_> = commands
        .into_iter()
        .map(|args| {
            let h = h.to_path_buf();
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                (args.join(" "), run(&h, &args))
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    drop(held);
    for command in running {
        let (args, out) = command.join().unwrap();
        assert!(
            out.status.success(),
            "{args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(start.elapsed() >= std::time::Duration::from_millis(1500));
    let list = json(&run(h, &["folder", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

/// Issue 21: `folder add` and `folder rescan` keep the running totals a
/// node keeps and leave them saved, and other commands keep them saved
/// through what they write, so the agent's next start takes them back
/// instead of counting every record (1–1.5 s at a million files, with
/// `status` waiting) — and they are the true totals.
#[test]
fn folder_commands_leave_the_running_totals_saved() {
    use softadastra::index::{CONFLICT_TOTALS, FILE_TOTALS};
    use softadastra::store::ns;
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("docs");
    write(&root.join("a.txt"), b"alpha");
    write(&root.join("sub/b.txt"), b"beta!");
    let h = home.path();
    let saved_totals = |expect: (u64, u64)| {
        let mut store = open_store(h);
        assert!(
            store
                .tally_later(ns::FILES, &[FILE_TOTALS, CONFLICT_TOTALS])
                .is_none(),
            "the totals are taken back as saved, not counted again"
        );
        let t = store.tally(ns::FILES, Some("t"), FILE_TOTALS.count);
        assert_eq!((t.items, t.bytes), expect);
    };
    let add = run(h, &["folder", "add", root.to_str().unwrap(), "--id", "t"]);
    assert!(add.status.success(), "{}", common::stderr(&add));
    saved_totals((2, 10));
    // Commands that write something else keep them saved (as the bench's
    // `folder share` after `folder add` did not).
    for args in [
        ["folder", "guard", "t", "off"],
        ["folder", "guard", "t", "on"],
    ] {
        let out = run(h, &args);
        assert!(out.status.success(), "{}", common::stderr(&out));
        saved_totals((2, 10));
    }

    write(&root.join("c.txt"), b"gamma");
    std::fs::remove_file(root.join("a.txt")).unwrap();
    let rescan = run(h, &["folder", "rescan", "t"]);
    assert!(rescan.status.success(), "{}", common::stderr(&rescan));
    saved_totals((2, 10));
    write(&root.join("sub/d.txt"), b"delta!");
    let rescan = run(h, &["folder", "rescan", "t"]);
    assert!(rescan.status.success(), "{}", common::stderr(&rescan));
    saved_totals((3, 16));
}
