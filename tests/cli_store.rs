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
    // Each put is one WAL batch of two records (the value and its index
    // record): user:1's second put is sequence 4.
    assert_eq!(rows[0]["version"], 4);

    let table = stdout(&run(h, &["store", "list"]));
    assert!(table.starts_with("KEY"), "{table}");
    assert!(table.contains("other"));

    assert!(run(h, &["store", "rm", "user:1"]).status.success());
    let missing = run(h, &["store", "get", "user:1"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("not found"));
    assert_eq!(run(h, &["store", "rm", "user:1"]).status.code(), Some(2));

    // The engine's own namespaces can be read, not written: a put is an
    // app key/value, indexed in the app space so it syncs.
    assert!(
        run(h, &["store", "put", "--ns", "files", "user:2", "F"])
            .status
            .code()
            == Some(2),
        "--ns is not a flag of put"
    );
    let index = run(h, &["store", "list", "--ns", "files", "--prefix", "@app/"]);
    assert!(stdout(&index).contains("@app/user:2"), "{}", stdout(&index));
}

#[test]
fn app_values_sync_between_running_agents() {
    use common::node::Node;
    let (mut a, mut b) = (Node::new("alpha"), Node::new("beta"));
    a.trust(&b);
    b.trust(&a);
    // Written before the agent runs: on disk, synced once it does.
    assert!(
        run(a.home.path(), &["store", "put", "before", "1"])
            .status
            .success()
    );
    a.start();
    b.start();
    a.connected_to(&b);
    // Written through the running agent's control socket.
    let put = run(a.home.path(), &["store", "put", "user:1", "Gaspard"]);
    assert!(put.status.success(), "{}", stderr(&put));
    let get = |home: &Path, key: &str| stdout(&run(home, &["store", "get", key]));
    common::wait("values on beta", std::time::Duration::from_secs(20), || {
        get(b.home.path(), "user:1") == "Gaspard" && get(b.home.path(), "before") == "1"
    });
    assert!(
        run(b.home.path(), &["store", "rm", "before"])
            .status
            .success()
    );
    common::wait(
        "the removal on alpha",
        std::time::Duration::from_secs(20),
        || {
            run(a.home.path(), &["store", "get", "before"])
                .status
                .code()
                == Some(2)
        },
    );
    let list = common::json(&run(a.home.path(), &["store", "list", "--json"]));
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["user:1"]);
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
    // Two records per put: the value and its index record.
    assert_eq!(report["records"], 10);
    assert_eq!(report["last_seq"], 10);
    assert_eq!(report["ok"], true);

    // Torn tail: cut the last record short. Verify says so but succeeds;
    // the store opens, warns, and loses nothing: the on-disk index took
    // every change before the log was cut (a clean close makes it durable),
    // so k4's value is still there.
    let seg = segment(h);
    let bytes = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &bytes[..bytes.len() - 3]).unwrap();
    let torn = run(h, &["wal", "verify"]);
    assert!(torn.status.success(), "{}", stdout(&torn));
    assert!(stdout(&torn).contains("torn tail"), "{}", stdout(&torn));
    let get = run(h, &["store", "get", "k3"]);
    assert!(get.status.success());
    assert!(stderr(&get).contains("torn WAL tail"), "{}", stderr(&get));
    assert_eq!(stdout(&run(h, &["store", "get", "k4"])), "some value");

    // Corruption in the middle: verify exits non-zero naming the offset; the
    // store refuses to open rather than guess. (The log went on in a new
    // segment after the torn one: that is the one damaged.)
    for i in 5..8 {
        assert!(
            run(h, &["store", "put", &format!("k{i}"), "some value"])
                .status
                .success()
        );
    }
    let seg = segment(h);
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
        stderr(&empty_key).contains("key cannot be empty"),
        "{}",
        stderr(&empty_key)
    );
    let no_wal = run(h.join("nowhere").as_path(), &["wal", "verify"]);
    assert!(!no_wal.status.success());
    assert!(stderr(&no_wal).contains("no WAL"), "{}", stderr(&no_wal));
}

/// A home made by the release before the on-disk index (a snapshot at
/// sequence 8 — written by that release's `repair` — and a log after it:
/// a value and a file indexed later) is moved to the index at its first
/// open, keeping everything, and said once.
#[test]
fn a_home_from_before_the_index_is_moved_to_it_at_first_open() {
    let (_dir, h) = common::old_home("before-index");
    let first = run(&h, &["store", "get", "greeting"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(stdout(&first), "hi");
    assert!(
        stderr(&first).contains("moved this home's store to the on-disk index"),
        "{}",
        stderr(&first)
    );
    assert!(stderr(&first).contains("sequence 8"), "{}", stderr(&first));
    let store = h.join("store");
    assert!(store.join("index.redb").is_file());
    assert!(
        !store.join("snapshots").exists()
            || std::fs::read_dir(store.join("snapshots")).unwrap().count() == 0,
        "the snapshots are gone once the index holds them"
    );
    // Said once; the log's changes after the snapshot are there too.
    let again = run(&h, &["store", "get", "after"]);
    assert_eq!(stdout(&again), "tail");
    assert!(!stderr(&again).contains("moved"), "{}", stderr(&again));
    let ls = run(&h, &["ls", "docs"]);
    assert!(ls.status.success(), "{}", stderr(&ls));
    for path in ["a.txt", "b.txt", "d.txt", "sub/c.txt"] {
        assert!(stdout(&ls).contains(path), "{path}: {}", stdout(&ls));
    }
    // New changes take sequences after the old home's (it ended at 11).
    let put = run(&h, &["store", "put", "next", "v"]);
    let said = stderr(&put);
    let seq: u64 = said
        .split("sequence ")
        .nth(1)
        .and_then(|t| {
            t.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{said}"));
    assert!(seq > 11, "{said}");
}

/// A home made by the release before the stored record form
/// (`index::stored`, format 2): its records, in the plain form, read as
/// they are — `ls`, `status`, the store — and a record written now takes
/// the new form beside them.
#[test]
fn a_home_with_records_in_the_plain_form_reads_and_writes_the_new_one_beside_them() {
    use softadastra::index::{self, stored::STORED_TAG};
    let (_dir, h) = common::old_home("before-stored-records");
    let aside = h.join("store").join(softadastra::store::aside::FILE_NAME);
    assert!(!aside.exists(), "made before the setup was kept aside");
    let ls = run(&h, &["ls", "docs"]);
    assert!(ls.status.success(), "{}", stderr(&ls));
    // Its first open keeps the setup aside (the folder, at least).
    let kept = softadastra::store::aside::decode(&std::fs::read(&aside).unwrap()).unwrap();
    assert!(
        kept.rows
            .iter()
            .any(|(ns, key, _)| ns == "folders" && key == "docs"),
        "{kept:?}"
    );
    for line in ["a.txt", "b.txt", "link -> a.txt", "sub/", "300.0 KB"] {
        assert!(stdout(&ls).contains(line), "{line}: {}", stdout(&ls));
    }
    let totals = || {
        let list = common::json(&run(&h, &["folder", "list", "--json"]));
        (
            list[0]["files"].clone(),
            list[0]["dirs"].clone(),
            list[0]["bytes"].clone(),
        )
    };
    // As the release that made the home counts them.
    let made = (4.into(), 1.into(), 300_021.into());
    assert_eq!(totals(), made);
    let raw = |store: &softadastra::store::Store, key: &str| {
        store
            .value(softadastra::store::ns::FILES, key)
            .unwrap_or_else(|| panic!("{key}"))
    };
    let mut store = common::open_store(&h);
    assert_ne!(raw(&store, "docs/a.txt")[0], STORED_TAG, "made before it");
    let big = index::record(&store, "docs", "sub/big.bin").unwrap();
    assert_eq!(big.size, 300_000);
    assert!(big.chunks_tile() && big.chunks.len() > 1);
    assert_eq!(
        softadastra::folder::values::get(&store, "greeting"),
        Some(b"hi".to_vec())
    );
    let node = softadastra::core::NodeId([9; 32]);
    softadastra::folder::values::put(&mut store, node, "greeting", b"hello").unwrap();
    let key = index::file_key(softadastra::index::values::APP_SPACE, "greeting");
    assert_eq!(raw(&store, &key)[0], STORED_TAG, "written now");
    assert_eq!(
        softadastra::folder::values::get(&store, "greeting"),
        Some(b"hello".to_vec())
    );
    assert_eq!(index::records(&store, "docs").count(), 5);
    drop(store);
    assert_eq!(totals(), made);
}
