//! The tray against a live agent, on a virtual X display with a system
//! tray: it follows the agent through its states — not running, offline,
//! needs attention (deletions held back), paused, not running again — each
//! photographed (PNG under the test's output directory, the icon's pixels
//! must change between states), and it is driven as a person would, with
//! the mouse and keyboard (`xdotool`): "Pause" in one folder's submenu
//! pauses just that folder (checked with `status --json`), "Let them go
//! ahead" under "Needs attention" accepts the held deletions, "Stop sync
//! agent" stops the agent. The menu model it prints (`--print-menu`) is
//! checked along the way. See `common::desktop` for when it is skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::desktop::{Desktop, Killed, Lines, differing, find_colour, skip, tray_binary};
use common::{bin, json, run, wait};
use serde_json::Value;

const OFFLINE: [u8; 3] = [0xd2, 0x99, 0x22];
const ATTENTION: [u8; 3] = [0xe8, 0x6a, 0x17];

/// The entry `id` in the newest menu the tray printed.
fn entry(lines: &mut Lines, id: &str) -> Option<Value> {
    lines.drain();
    let last = lines
        .seen
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("tray-menu: "))?;
    let items: Value = serde_json::from_str(last).ok()?;
    fn find(items: &Value, id: &str) -> Option<Value> {
        items.as_array()?.iter().find_map(|i| {
            let e = i.get("entry")?;
            if e["id"] == id {
                Some(e.clone())
            } else {
                find(&e["children"], id)
            }
        })
    }
    find(&items, id)
}

fn folder(home: &Path, id: &str) -> Value {
    let s = json(&run(home, &["status", "--json"]));
    s["folders"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["id"] == id).cloned())
        .unwrap_or(Value::Null)
}

/// Open the tray's menu (a click on the icon, found by its colour in
/// `shot`), then press `keys`.
fn use_menu(desk: &Desktop, shot: &[u8], colour: [u8; 3], keys: &[&str]) {
    let (x, y) = find_colour(shot, colour).expect("the icon is in the tray");
    desk.xdotool(&["mousemove", &x.to_string(), &y.to_string(), "click", "1"]);
    std::thread::sleep(Duration::from_millis(800));
    for k in keys {
        desk.xdotool(&["key", k]);
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn the_tray_follows_the_agent_and_runs_it_from_its_menu() {
    if skip(&["Xvfb", "trayer", "import", "convert", "xdotool"]) {
        return;
    }
    let tray_bin = tray_binary();
    let out: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tray");
    std::fs::create_dir_all(&out).unwrap();
    let desk = Desktop::start(0, true);

    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let (docs, photos) = (h.join("docs"), h.join("photos"));
    std::fs::create_dir(&docs).unwrap();
    std::fs::create_dir(&photos).unwrap();
    for i in 0..150 {
        std::fs::write(photos.join(format!("p{i:03}.jpg")), format!("photo {i}")).unwrap();
    }
    assert!(run(h, &["init", "--name", "traytest"]).status.success());
    for (dir, id) in [(&docs, "docs"), (&photos, "photos")] {
        let added = run(h, &["folder", "add", dir.to_str().unwrap(), "--id", id]);
        assert!(added.status.success());
    }

    let mut tray = Command::new(&tray_bin)
        .arg("--home")
        .arg(h)
        .args(["tray", "--exit-after", "90", "--print-menu"])
        .env("DISPLAY", &desk.display)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = Lines::of(&mut tray);
    let _tray = Killed(tray);
    said.wait_for("tray: Softadastra: agent not running", 20);
    std::thread::sleep(Duration::from_millis(800));
    let not_running = desk.shoot(&out, "1-not-running.png");

    let mut agent = Killed(
        Command::new(bin())
            .arg("--home")
            .arg(h)
            .args(["run", "--listen", "127.0.0.1:0"])
            .env("SOFTADASTRA_NO_DISCOVERY", "1")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    said.wait_for("tray: Offline · no peer connected", 20);
    std::thread::sleep(Duration::from_millis(800));
    let offline = desk.shoot(&out, "2-offline.png");
    wait(
        "the menu lists both folders",
        Duration::from_secs(10),
        || entry(&mut said, "folder:photos/pause").is_some(),
    );
    assert_eq!(
        entry(&mut said, "folder:docs/pause").unwrap()["label"],
        "Pause"
    );

    // docs ▸ Pause: the first entry that can be chosen, its submenu's second.
    use_menu(
        &desk,
        &offline,
        OFFLINE,
        &["Down", "Right", "Down", "Return"],
    );
    wait("docs paused, photos not", Duration::from_secs(10), || {
        folder(h, "docs")["paused"] == true && folder(h, "photos")["paused"] == false
    });
    wait(
        "the menu offers to resume docs",
        Duration::from_secs(10),
        || entry(&mut said, "folder:docs/pause").is_some_and(|e| e["label"] == "Resume"),
    );
    assert_eq!(
        entry(&mut said, "folder:photos/pause").unwrap()["label"],
        "Pause"
    );

    // 120 of 150 photos deleted: held back, waiting for a person.
    for i in 0..120 {
        std::fs::remove_file(photos.join(format!("p{i:03}.jpg"))).unwrap();
    }
    said.wait_for("photos: 120 deletion(s) held back", 30);
    std::thread::sleep(Duration::from_millis(800));
    let attention = desk.shoot(&out, "3-needs-attention.png");
    let held = entry(&mut said, "held:photos/accept").expect("an entry for the held deletions");
    assert_eq!(
        held["action"]["requests"][0],
        serde_json::json!({"cmd": "folder_deletions", "id": "photos", "decision": "accept"})
    );
    // The menu, open on "Needs attention": the README's picture.
    // (headline, docs, photos, Recent changes, Needs attention)
    use_menu(
        &desk,
        &attention,
        ATTENTION,
        &["Down", "Down", "Down", "Down", "Right"],
    );
    desk.shoot(&out, "menu-needs-attention.png");
    // The README's crop of it (docs/images/tray-menu.png is this file).
    let cropped = Command::new("convert")
        .arg(out.join("menu-needs-attention.png"))
        .args(["-crop", "840x280+184+0"])
        .arg(out.join("readme-tray-menu.png"))
        .status()
        .unwrap();
    assert!(cropped.success());
    // ▸ photos: 120 deletion(s) held back ▸ Let them go ahead.
    for k in ["Right", "Return"] {
        desk.xdotool(&["key", k]);
        std::thread::sleep(Duration::from_millis(300));
    }
    wait("the deletions went ahead", Duration::from_secs(15), || {
        let f = folder(h, "photos");
        f["deletions_held"]["local"] == 0 && f["files"] == 30
    });

    assert!(run(h, &["folder", "pause", "photos"]).status.success());
    said.wait_for("tray: Paused", 20);
    std::thread::sleep(Duration::from_millis(800));
    let paused = desk.shoot(&out, "4-paused.png");

    // "Stop sync agent", the last entry.
    use_menu(&desk, &paused, [0x8b, 0x94, 0x9e], &["Up", "Return"]);
    let stopped = agent.0.wait_timeout_secs(20);
    assert!(stopped, "the agent did not stop from the menu");
    said.wait_for("tray: Softadastra: agent not running", 20);

    let changes = [
        differing(&not_running, &offline),
        differing(&offline, &attention),
        differing(&attention, &paused),
    ];
    eprintln!(
        "tray screenshots in {}: {changes:?} pixels changed",
        out.display()
    );
    for (n, what) in changes
        .iter()
        .zip(["came up", "needed attention", "paused"])
    {
        assert!(
            *n > 50,
            "the icon did not change when the agent {what} ({n} pixels)"
        );
    }
}

trait WaitTimeout {
    fn wait_timeout_secs(&mut self, secs: u64) -> bool;
}

impl WaitTimeout for std::process::Child {
    /// Whether it exited within `secs`.
    fn wait_timeout_secs(&mut self, secs: u64) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if matches!(self.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}
