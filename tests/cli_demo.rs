//! `softadastra demo --once`: two real nodes on loopback sync two folders
//! through every narrated step, then stop — what a newcomer runs first.

mod common;

use std::process::Command;

use common::{bin, stderr, stdout};

#[test]
fn the_demo_runs_every_step_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("demo");
    let out = Command::new(bin())
        .args(["demo", "--once", "--dir"])
        .arg(&at)
        .env_remove("SOFTADASTRA_HOME")
        .output()
        .unwrap();
    let said = stdout(&out);
    assert!(out.status.success(), "{said}\n{}", stderr(&out));
    for step in [
        "1. both agents",
        "2. wrote",
        "3. edited",
        "4. a 4 MiB",
        "5. moved",
        "6. deleted",
    ] {
        assert!(said.contains(step), "missing {step:?} in:\n{said}");
    }
    assert!(
        said.contains(", 0 bytes sent"),
        "a move sends no content:\n{said}"
    );
    assert_eq!(
        std::fs::read(at.join("beta/Documents/2026/photo.raw")).unwrap(),
        std::fs::read(at.join("alpha/Documents/2026/photo.raw")).unwrap()
    );
    assert!(
        !at.join("alpha/home/control.sock").exists(),
        "nodes stopped"
    );

    // A directory that is not empty is refused: the demo never mixes in.
    let again = Command::new(bin())
        .args(["demo", "--once", "--dir"])
        .arg(&at)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("is not empty"),
        "{}",
        stderr(&again)
    );
}
