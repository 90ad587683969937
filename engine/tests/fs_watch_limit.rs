//! Hitting the inotify watch limit gives a clear, actionable error.
//!
//! The limit is lowered to 5 inside a private user namespace
//! (`unshare --user --map-root-user`), where it is a per-namespace count:
//! the machine's own limit is untouched. Needs unprivileged user namespaces
//! or root; `.ci/run` sets `SOFTADASTRA_NAMESPACE_TESTS=1`, which makes an
//! unavailable `unshare` a failure instead of a skip.

use std::process::Command;

use softadastra::fs::FsError;
use softadastra::fs::ignore::IgnoreRules;
use softadastra::fs::watch::{WatchConfig, Watcher};

const CHILD_ENV: &str = "SOFTADASTRA_WATCH_LIMIT_CHILD";

/// Runs inside the namespace with the low limit.
#[test]
fn watch_limit_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        std::fs::create_dir_all(dir.path().join(format!("d{i}/sub"))).unwrap();
    }
    match Watcher::new(dir.path(), IgnoreRules::builtin(), WatchConfig::default()) {
        Err(e @ FsError::WatchLimit { .. }) => println!("WATCH-LIMIT-ERROR {e}"),
        Err(e) => println!("OTHER-ERROR {e}"),
        Ok(_) => println!("NO-ERROR"),
    }
}

#[test]
fn watch_limit_error_says_what_to_do() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "echo 5 > /proc/sys/user/max_inotify_watches && exec '{}' watch_limit_child --exact --nocapture --test-threads=1",
        exe.display()
    );
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c", &script])
        .env(CHILD_ENV, "1")
        .output();
    let required = std::env::var_os("SOFTADASTRA_NAMESPACE_TESTS").is_some();
    let out = match out {
        Ok(o) if o.status.success() => o,
        other => {
            assert!(!required, "unshare --user is unavailable: {other:?}");
            eprintln!("skipped: unshare --user unavailable here ({other:?}); .ci/run requires it");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("ERROR") || l.contains("NO-ERROR"))
        .unwrap_or_default();
    assert!(line.contains("WATCH-LIMIT-ERROR"), "{stdout}");
    assert!(
        line.contains("max_user_watches = 5"),
        "the effective limit is named: {line}"
    );
    assert!(
        line.contains("sysctl"),
        "the error says how to raise the limit: {line}"
    );
}
