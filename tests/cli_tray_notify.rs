//! Desktop notifications end to end: two agents make a conflict (both
//! edit one file apart, then meet) while the tray follows one of them on a
//! virtual display, inside a test session bus (`dbus-run-session`) with a
//! real notification server (`dunst`) and `dbus-monitor` watching. The
//! notification service gets exactly one `Notify` call, for the conflict,
//! and takes it; with `[desktop] notifications = false` in the
//! config it sees none, while the tray still says the conflict needs
//! attention. See `common::desktop` for when it is skipped.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::desktop::{Desktop, Killed, Lines, skip, tray_binary};
use common::node::{conflict_apart, sharing};
use common::{entries, wait};

/// The `Notify` calls the monitor saw, each as its lines.
fn notify_calls(monitor: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(monitor).unwrap_or_default();
    text.split("method call ")
        .filter(|m| m.contains("member=Notify"))
        .map(str::to_string)
        .collect()
}

/// Two agents sharing docs make a conflict while a tray follows alpha;
/// the monitor's output and the tray's lines back.
fn conflict_under_a_tray(notifications: bool, offset: u32) -> (Vec<String>, Vec<String>) {
    let desk = Desktop::start(offset, false);
    let (mut alpha, da) = sharing("alpha", &[("shared.txt", b"version 0\n")]);
    let (mut beta, db) = sharing("beta", &[]);
    if !notifications {
        std::fs::write(
            alpha.home.path().join("config.toml"),
            "[desktop]\nnotifications = false\n",
        )
        .unwrap();
    }
    alpha.trust(&beta);
    beta.trust(&alpha);
    alpha.start();
    beta.start();
    wait("beta has shared.txt", Duration::from_secs(30), || {
        entries(&db, false) == entries(&da, false)
    });

    let monitor = alpha.home.path().join("dbus-monitor.txt");
    let pid_file = alpha.home.path().join("tray.pid");
    let script = format!(
        "dunst >/dev/null 2>&1 &
         dbus-monitor --session \"interface='org.freedesktop.Notifications',member='Notify'\" > '{}' 2>/dev/null &
         sleep 1
         echo $$ > '{}'
         exec '{}' --home '{}' tray --exit-after 90",
        monitor.display(),
        pid_file.display(),
        tray_binary().display(),
        alpha.home.path().display(),
    );
    let mut session = Command::new("dbus-run-session")
        .args(["--", "sh", "-c", &script])
        .env("DISPLAY", &desk.display)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = Lines::of(&mut session);
    let session = Killed(session);
    said.wait_for("tray: Up to date", 30);

    // Apart, both edit shared.txt; alpha's edit is the later one.
    conflict_apart(&mut beta, &da, &db, "shared.txt");
    if notifications {
        said.wait_for("tray: notified: Conflict in docs", 20);
    } else {
        said.wait_for("tray: needs attention: Conflict in docs", 20);
    }
    // Anything more would come now.
    std::thread::sleep(Duration::from_secs(4));
    said.drain();
    let calls = notify_calls(&monitor);
    // The tray ends; the session bus and its monitor with it.
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
    let mut session = session;
    let _ = session.0.wait();
    (calls, said.seen.clone())
}

#[test]
fn a_conflict_is_notified_once_and_not_at_all_when_turned_off() {
    if skip(&["Xvfb", "dbus-run-session", "dbus-monitor", "dunst"]) {
        return;
    }
    let (calls, said) = conflict_under_a_tray(true, 1);
    assert_eq!(
        calls.len(),
        1,
        "one Notify for one conflict; the monitor saw:\n{calls:#?}\nthe tray said:\n{}",
        said.join("\n")
    );
    assert!(
        calls[0].contains("string \"Conflict in docs\""),
        "{}",
        calls[0]
    );
    assert!(calls[0].contains("shared.txt"), "{}", calls[0]);

    let (calls, said) = conflict_under_a_tray(false, 2);
    assert!(
        calls.is_empty(),
        "notifications are off, yet:\n{calls:#?}\nthe tray said:\n{}",
        said.join("\n")
    );
    assert!(said.iter().any(|l| l.contains("notifications are off")));
}
