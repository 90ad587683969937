//! Helpers shared by the end-to-end tests that drive the real binary.
// Each test file uses a different subset.
#![allow(dead_code)]

pub mod desktop;
pub mod netns;
pub mod node;

use std::path::Path;
use std::process::{Command, Output};

/// The `softadastra` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_softadastra")
}

/// Run `softadastra --home HOME ARGS…` (ignoring any SOFTADASTRA_HOME of the caller).
pub fn run(home: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("SOFTADASTRA_HOME")
        // Network safety: no LAN multicast outside a test's namespaces.
        .env("SOFTADASTRA_NO_DISCOVERY", "1")
        .output()
        .expect("run softadastra")
}

/// A home made by an earlier release, `data/homes/NAME.tar`, extracted
/// into a new temporary directory: the directory (kept alive by the
/// caller) and the home in it.
pub fn old_home(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let tar = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/homes")
        .join(format!("{name}.tar"));
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(dir.path())
        .output()
        .expect("run tar");
    assert!(out.status.success(), "{}", stderr(&out));
    let home = dir.path().join("home");
    (dir, home)
}

/// Open the store in `home` from the test process. A child that another
/// test thread is starting holds a copy of every open descriptor until it
/// execs — a store lock just released here among them — so a store that
/// looks held is asked again for a few seconds.
pub fn open_store(home: &Path) -> softadastra::store::Store {
    use softadastra::store::{Store, StoreConfig, StoreError};
    let t0 = std::time::Instant::now();
    loop {
        match Store::open_dir(StoreConfig::new(home.join("store"))) {
            Ok((store, _)) => return store,
            Err(StoreError::Locked { .. }) if t0.elapsed().as_secs() < 5 => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("cannot open the store in {}: {e}", home.display()),
        }
    }
}

/// Poll `done` (every 20 ms) until it holds, failing the test after
/// `limit`; returns how long it took.
pub fn wait(
    what: &str,
    limit: std::time::Duration,
    mut done: impl FnMut() -> bool,
) -> std::time::Duration {
    let t0 = std::time::Instant::now();
    while !done() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    t0.elapsed()
}

/// Standard output as text, untouched.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Standard output parsed as JSON; the command must have succeeded.
pub fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "stderr: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// Every entry under `dir`: a directory as `path/` (no bytes), a regular
/// file with its bytes; the agent's own `.softadastra/` aside unless
/// `meta` (then its trash is listed too).
pub fn entries(dir: &Path, meta: bool) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for e in walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .flatten()
    {
        let rel = e
            .path()
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if !meta && (rel == ".softadastra" || rel.starts_with(".softadastra/")) {
            continue;
        }
        if e.file_type().is_dir() {
            out.insert(format!("{rel}/"), Vec::new());
        } else if e.file_type().is_file()
            && let Ok(bytes) = std::fs::read(e.path())
        {
            out.insert(rel, bytes);
        }
    }
    out
}

/// Put a file into `dir` in one step (written beside `dir`, then renamed
/// in), so a watcher sees one change.
pub fn drop_in(dir: &Path, name: &str, bytes: &[u8]) {
    let aside = dir
        .parent()
        .expect("a folder inside a directory")
        .join(format!(".{name}.new"));
    std::fs::write(&aside, bytes).unwrap();
    std::fs::rename(&aside, dir.join(name)).unwrap();
}
