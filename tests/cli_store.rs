//! `softadastra store …` and `softadastra wal verify`, driven through the
//! real binary in temporary home directories.

mod common;

use std::path::Path;
use std::process::Command;

use common::{run, stderr, stdout};

fn segment(home: &Path) -> std::path::PathBuf {
    let dir = home.join("store/wal");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names.pop().unwrap()
}

#[test]
fn put_get_list_rm_round_trip() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    assert!(
        run(h, &["store", "put", "user:1", "Gaspard"])
            .status
            .success()
    );
    assert!(
        run(h, &["store", "put", "user:1", "Softadastra"])
            .status
            .success()
    );
    assert!(run(h, &["store", "put", "user:2", "B"]).status.success());
    assert!(run(h, &["store", "put", "other", "C"]).status.success());
    assert_eq!(stdout(&run(h, &["store", "get", "user:1"])), "Softadastra");

    let list = run(h, &["store", "list", "--prefix", "user:", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let keys: Vec<_> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, vec!["user:1", "user:2"]);
    assert_eq!(rows[0]["version"], 2);

    let table = stdout(&run(h, &["store", "list"]));
    assert!(table.starts_with("KEY"), "{table}");
    assert!(table.contains("other"));

    assert!(run(h, &["store", "rm", "user:1"]).status.success());
    let missing = run(h, &["store", "get", "user:1"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("not found"));
    assert_eq!(run(h, &["store", "rm", "user:1"]).status.code(), Some(2));

    // Namespaces are separate.
    assert!(
        run(h, &["store", "put", "--ns", "files", "user:2", "F"])
            .status
            .success()
    );
    assert_eq!(stdout(&run(h, &["store", "get", "user:2"])), "B");
    assert_eq!(
        stdout(&run(h, &["store", "get", "--ns", "files", "user:2"])),
        "F"
    );
}

#[test]
fn home_comes_from_the_environment_too() {
    let home = tempfile::tempdir().unwrap();
    let put = Command::new(env!("CARGO_BIN_EXE_softadastra"))
        .args(["store", "put", "k", "v"])
        .env("SOFTADASTRA_HOME", home.path())
        .output()
        .unwrap();
    assert!(put.status.success(), "{}", stderr(&put));
    assert_eq!(stdout(&run(home.path(), &["store", "get", "k"])), "v");
}

#[test]
fn wal_verify_reports_clean_torn_and_corrupt_logs() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    for i in 0..5 {
        assert!(
            run(h, &["store", "put", &format!("k{i}"), "some value"])
                .status
                .success()
        );
    }
    let ok = run(h, &["wal", "verify", "--json"]);
    assert!(ok.status.success());
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report["records"], 5);
    assert_eq!(report["last_seq"], 5);
    assert_eq!(report["ok"], true);

    // Torn tail: cut the last record short. Verify says so but succeeds;
    // the store opens, warns, and keeps the first four records.
    let seg = segment(h);
    let bytes = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &bytes[..bytes.len() - 3]).unwrap();
    let torn = run(h, &["wal", "verify"]);
    assert!(torn.status.success(), "{}", stdout(&torn));
    assert!(stdout(&torn).contains("torn tail"), "{}", stdout(&torn));
    let get = run(h, &["store", "get", "k3"]);
    assert!(get.status.success());
    assert!(stderr(&get).contains("torn WAL tail"), "{}", stderr(&get));
    assert_eq!(run(h, &["store", "get", "k4"]).status.code(), Some(2));

    // Corruption in the middle: verify exits non-zero naming the offset; the
    // store refuses to open rather than guess.
    let bytes = std::fs::read(&seg).unwrap();
    let mut damaged = bytes.clone();
    damaged[60] ^= 0xff;
    std::fs::write(&seg, &damaged).unwrap();
    let bad = run(h, &["wal", "verify"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stdout(&bad).contains("CORRUPTION"), "{}", stdout(&bad));
    let get = run(h, &["store", "get", "k0"]);
    assert!(!get.status.success());
    assert!(stderr(&get).contains("WAL corruption"), "{}", stderr(&get));
    // Nothing was lost by looking: restoring the byte restores the data.
    std::fs::write(&seg, &bytes).unwrap();
    assert_eq!(stdout(&run(h, &["store", "get", "k0"])), "some value");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let bad_flag = run(h, &["store", "list", "--bogus"]);
    assert_eq!(bad_flag.status.code(), Some(2));
    assert!(stderr(&bad_flag).contains("--bogus"));
    let empty_key = run(h, &["store", "put", "", "v"]);
    assert!(!empty_key.status.success());
    assert!(
        stderr(&empty_key).contains("key is empty"),
        "{}",
        stderr(&empty_key)
    );
    let no_wal = run(h.join("nowhere").as_path(), &["wal", "verify"]);
    assert!(!no_wal.status.success());
    assert!(stderr(&no_wal).contains("no WAL"), "{}", stderr(&no_wal));
}
