//! Helpers shared by the end-to-end tests that drive the real binary.
// Each test file uses a different subset.
#![allow(dead_code)]

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
