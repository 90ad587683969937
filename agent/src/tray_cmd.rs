#![cfg_attr(not(feature = "tray"), allow(dead_code))]
//! `softadastra tray`: the sync state in the system tray.
//!
//! The tray follows the running agent over the control API (once a
//! second): a distinct icon per state — up to date (green), syncing
//! (blue), paused (grey), offline: no peer connected (amber), error (red),
//! agent not running (hollow grey) — a tooltip such as "Up to date · 2
//! peers" or "Syncing 14 files (3.2 MB)", and a menu: the status line,
//! open folder, pause/resume, rescan, open log, quit. When the agent is
//! down it says so instead of failing, and picks it up again when it
//! returns. Built only with the `tray` cargo feature.

use std::process::ExitCode;
use std::time::Duration;
#[cfg(feature = "tray")]
use std::time::Instant;

use anyhow::Result;
#[cfg(feature = "tray")]
use anyhow::{Context, anyhow};
#[cfg(test)]
use softadastra::runtime::status::FolderStatus;
use softadastra::runtime::status::{FolderState, NodeStatus};

#[cfg(feature = "tray")]
use crate::control::{self, FolderChange, Request};
use crate::home::Home;

/// What the tray shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayState {
    /// Every folder up to date, a peer connected.
    UpToDate,
    /// Files to fetch or place.
    Syncing,
    /// Every folder paused.
    Paused,
    /// No peer connected.
    Offline,
    /// A folder cannot be synced.
    Error,
    /// No agent answers.
    NotRunning,
}

/// The state and tooltip for an agent's `status` answer (`None`: no agent).
pub fn summarize(status: Option<&NodeStatus>) -> (TrayState, String) {
    let Some(s) = status else {
        return (
            TrayState::NotRunning,
            "Softadastra: agent not running".into(),
        );
    };
    let (state, mut text) = state_of(s);
    // What waits for the user, whatever the state: offers, and remote
    // changes a send-only folder did not take.
    for o in &s.offers {
        text.push_str(&format!(
            "\nFolder {} offered: softadastra folder accept {} PATH",
            o.id, o.id
        ));
    }
    for f in s
        .folders
        .iter()
        .filter(|f| f.state == FolderState::DeletionsHeld)
    {
        let held = f.deletions_held;
        text.push_str(&format!(
            "\n{}: {} deletion(s) held back; softadastra folder accept-deletions {} (or restore-deletions)",
            f.id,
            held.local + held.remote,
            f.id
        ));
    }
    let conflicts: u64 = s.folders.iter().map(|f| f.conflicts).sum();
    if conflicts > 0 {
        text.push_str(&format!("\n{conflicts} conflict(s): softadastra conflicts"));
    }
    for f in s.folders.iter().filter(|f| f.locally_changed > 0) {
        text.push_str(&format!(
            "\n{} ({}): {} local change(s) not sent; softadastra folder revert {}",
            f.id, f.kind, f.locally_changed, f.id
        ));
    }
    for f in s.folders.iter().filter(|f| f.remote_differs > 0) {
        text.push_str(&format!(
            "\n{} ({}): {} remote change(s) not applied; softadastra folder override {}",
            f.id, f.kind, f.remote_differs, f.id
        ));
    }
    (state, text)
}

fn state_of(s: &NodeStatus) -> (TrayState, String) {
    let files: u64 = s.folders.iter().map(|f| f.progress.needed_files).sum();
    let bytes: u64 = s.folders.iter().map(|f| f.progress.needed_bytes).sum();
    let plural = |n: u64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    if let Some(bad) = s.folders.iter().find(|f| f.state == FolderState::Error) {
        return (
            TrayState::Error,
            format!(
                "Error in {}: {}",
                bad.id,
                bad.error.as_deref().unwrap_or("?")
            ),
        );
    }
    if !s.folders.is_empty() && s.folders.iter().all(|f| f.paused) {
        return (TrayState::Paused, "Paused".into());
    }
    if files > 0 {
        return (
            TrayState::Syncing,
            format!(
                "Syncing {} ({})",
                plural(files, "file"),
                crate::folder_cmd::human_bytes(bytes)
            ),
        );
    }
    if s.peers_connected == 0 {
        return (TrayState::Offline, "Offline · no peer connected".into());
    }
    (
        TrayState::UpToDate,
        format!("Up to date · {}", plural(s.peers_connected as u64, "peer")),
    )
}

/// A 32×32 RGBA icon: a filled disc in the state's colour (a ring when
/// the agent is not running), with a white sync arrow when syncing.
pub fn icon_rgba(state: TrayState) -> Vec<u8> {
    const N: i32 = 32;
    let (r, g, b) = match state {
        TrayState::UpToDate => (0x2e, 0xa0, 0x43),
        TrayState::Syncing => (0x1f, 0x6f, 0xeb),
        TrayState::Paused => (0x8b, 0x94, 0x9e),
        TrayState::Offline => (0xd2, 0x99, 0x22),
        TrayState::Error => (0xda, 0x36, 0x33),
        TrayState::NotRunning => (0x8b, 0x94, 0x9e),
    };
    let mut px = vec![0u8; (N * N * 4) as usize];
    for y in 0..N {
        for x in 0..N {
            let (dx, dy) = (x * 2 - N + 1, y * 2 - N + 1);
            let d2 = dx * dx + dy * dy;
            let outer = (N - 2) * (N - 2);
            let inside = d2 <= outer;
            let ring = state == TrayState::NotRunning && d2 < (N - 10) * (N - 10);
            let mark = (9..=22).contains(&y)
                && match state {
                    // Two bars: paused.
                    TrayState::Paused => (11..=13).contains(&x) || (18..=20).contains(&x),
                    // A band across: syncing.
                    TrayState::Syncing => (14..=17).contains(&y) && (8..=23).contains(&x),
                    _ => false,
                };
            let i = ((y * N + x) * 4) as usize;
            if inside && !ring {
                let (cr, cg, cb) = if mark { (255, 255, 255) } else { (r, g, b) };
                px[i..i + 4].copy_from_slice(&[cr, cg, cb, 255]);
            }
        }
    }
    px
}

/// The agent's status, if one answers (an answer of another shape counts
/// as none).
#[cfg(feature = "tray")]
fn status(home: &Home) -> Option<NodeStatus> {
    let answer = control::call(home, &Request::Status).ok().flatten()?;
    serde_json::from_value(answer).ok()
}

#[cfg(feature = "tray")]
fn open(target: &std::path::Path) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    let _ = std::process::Command::new(opener).arg(target).spawn();
}

/// Without the `tray` feature: say how to get one.
#[cfg(not(feature = "tray"))]
pub fn run_tray(_home: &Home, _exit_after: Option<Duration>) -> Result<ExitCode> {
    anyhow::bail!(
        "this softadastra was built without the tray icon; build it with `cargo build --release -p softadastra-agent --features tray` (needs libgtk-3-dev and libayatana-appindicator3-dev)"
    )
}

/// Run the tray until Quit (or, with `exit_after`, that long: for tests).
#[cfg(feature = "tray")]
pub fn run_tray(home: &Home, exit_after: Option<Duration>) -> Result<ExitCode> {
    use tray_icon::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem};
    use tray_icon::{Icon, TrayIconBuilder};

    #[cfg(target_os = "linux")]
    gtk::init().map_err(|e| {
        anyhow!("cannot start the tray: no graphical session ({e}); is DISPLAY set?")
    })?;

    let line = MenuItem::new("Softadastra", false, None);
    let open_folder = MenuItem::new("Open folder", true, None);
    let pause = MenuItem::new("Pause syncing", true, None);
    let rescan = MenuItem::new("Rescan", true, None);
    let open_log = MenuItem::new("Open log", true, None);
    let quit = MenuItem::new("Quit tray", true, None);
    let menu = Menu::new();
    menu.append_items(&[
        &line,
        &PredefinedMenuItem::separator(),
        &open_folder,
        &pause,
        &rescan,
        &open_log,
        &PredefinedMenuItem::separator(),
        &quit,
    ])
    .context("cannot build the tray menu")?;
    let icon = |state| {
        Icon::from_rgba(icon_rgba(state), 32, 32).map_err(|e| anyhow!("bad tray icon: {e}"))
    };
    let (mut shown, mut tip) = summarize(None);
    let tray = TrayIconBuilder::new()
        .with_menu(Box::new(menu))
        .with_tooltip(&tip)
        .with_title("Softadastra")
        .with_icon(icon(shown)?)
        .build()
        .context("cannot create the tray icon (is a system tray running?)")?;
    eprintln!("tray: {tip}");
    let started = Instant::now();
    let mut polled: Option<Instant> = None;
    let mut last: Option<NodeStatus> = None;
    loop {
        #[cfg(target_os = "linux")]
        while gtk::events_pending() {
            gtk::main_iteration_do(false);
        }
        if polled.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            polled = Some(Instant::now());
            last = status(home);
            let (state, text) = summarize(last.as_ref());
            if state != shown || text != tip {
                tray.set_icon(Some(icon(state)?))?;
                tray.set_tooltip(Some(&text))?;
                line.set_text(&text);
                let paused = state == TrayState::Paused;
                pause.set_text(if paused {
                    "Resume syncing"
                } else {
                    "Pause syncing"
                });
                eprintln!("tray: {text}");
                (shown, tip) = (state, text);
            }
        }
        if let Ok(event) = MenuEvent::receiver().try_recv() {
            let folders: Vec<String> = last
                .iter()
                .flat_map(|s| s.folders.iter().map(|f| f.id.clone()))
                .collect();
            let first_path = last
                .as_ref()
                .and_then(|s| s.folders.first().map(|f| f.path.clone()));
            if event.id == quit.id() {
                break;
            } else if event.id == open_folder.id() {
                if let Some(p) = first_path {
                    open(&p);
                }
            } else if event.id == open_log.id() {
                open(&home.log_dir());
            } else if event.id == pause.id() || event.id == rescan.id() {
                let change = if event.id == rescan.id() {
                    FolderChange::Rescan
                } else if shown == TrayState::Paused {
                    FolderChange::Resume
                } else {
                    FolderChange::Pause
                };
                for id in folders {
                    let _ = control::call(home, &Request::FolderSet { id, change });
                }
                polled = None;
            }
        }
        if exit_after.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use softadastra::sync::FolderProgress;

    fn folder(state: FolderState, needed: (u64, u64)) -> FolderStatus {
        FolderStatus {
            id: "docs".into(),
            path: "/docs".into(),
            paused: state == FolderState::Paused,
            state,
            error: (state == FolderState::Error).then(|| "cannot watch".into()),
            files: 3,
            bytes: 300,
            progress: FolderProgress {
                needed_files: needed.0,
                needed_bytes: needed.1,
                ..Default::default()
            },
            not_synced: 0,
            not_synced_files: Vec::new(),
            kind: Default::default(),
            members: Vec::new(),
            remote_differs: 0,
            locally_changed: 0,
            deletions_held: Default::default(),
            conflicts: 0,
        }
    }

    fn node(peers: usize, folders: Vec<FolderStatus>) -> NodeStatus {
        NodeStatus {
            node: "N".into(),
            name: "laptop".into(),
            listen: "127.0.0.1:7420".into(),
            uptime_secs: 5,
            peers_trusted: peers,
            peers_connected: peers,
            folders,
            wal_dir: "/home/wal".into(),
            wal_last_seq: 9,
            sync_pending: 0,
            sync_files_done: 0,
            sync_bytes_fetched: 0,
            sync_bytes_reused: 0,
            invites_outstanding: 0,
            discovery: None,
            offers: Vec::new(),
            refused_not_member: 0,
            refused_paths: 0,
        }
    }

    #[test]
    fn offers_and_remote_changes_are_in_the_tooltip() {
        let mut differs = folder(FolderState::UpToDate, (0, 0));
        differs.kind = softadastra::index::FolderType::SendOnly;
        differs.remote_differs = 3;
        let mut n = node(1, vec![differs]);
        n.offers.push(softadastra::runtime::offers::Offer {
            id: "photos".into(),
            by: Vec::new(),
        });
        let (state, text) = summarize(Some(&n));
        assert_eq!(state, TrayState::UpToDate);
        assert!(
            text.contains("Folder photos offered: softadastra folder accept photos PATH"),
            "{text}"
        );
        assert!(
            text.contains("docs (send-only): 3 remote change(s) not applied"),
            "{text}"
        );
    }

    #[test]
    fn states_and_tooltips() {
        assert_eq!(summarize(None).0, TrayState::NotRunning);
        let ok = || vec![folder(FolderState::UpToDate, (0, 0))];
        assert_eq!(
            summarize(Some(&node(2, ok()))),
            (TrayState::UpToDate, "Up to date · 2 peers".into())
        );
        assert_eq!(summarize(Some(&node(0, ok()))).0, TrayState::Offline);
        let busy = vec![folder(FolderState::Syncing, (14, 3_200_000))];
        assert_eq!(
            summarize(Some(&node(1, busy))),
            (TrayState::Syncing, "Syncing 14 files (3.2 MB)".into())
        );
        let paused = vec![folder(FolderState::Paused, (0, 0))];
        assert_eq!(summarize(Some(&node(1, paused))).0, TrayState::Paused);
        let broken = vec![folder(FolderState::Error, (0, 0))];
        assert_eq!(summarize(Some(&node(1, broken))).0, TrayState::Error);
    }

    #[test]
    fn a_status_survives_the_control_socket_as_json() {
        let s = node(1, vec![folder(FolderState::Syncing, (2, 20))]);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["folders"][0]["state"], "syncing");
        assert_eq!(serde_json::from_value::<NodeStatus>(json).unwrap(), s);
    }

    #[test]
    fn every_state_has_its_own_icon() {
        let all = [
            TrayState::UpToDate,
            TrayState::Syncing,
            TrayState::Paused,
            TrayState::Offline,
            TrayState::Error,
            TrayState::NotRunning,
        ];
        for (i, a) in all.iter().enumerate() {
            assert_eq!(icon_rgba(*a).len(), 32 * 32 * 4);
            for b in &all[i + 1..] {
                assert_ne!(icon_rgba(*a), icon_rgba(*b), "{a:?} and {b:?} look alike");
            }
        }
    }
}
