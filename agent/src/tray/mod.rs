#![cfg_attr(not(feature = "tray"), allow(dead_code))]
//! `softadastra tray`: run your sync from the system tray.
//!
//! The tray follows the running agent's event stream ([`follow`]) and
//! re-reads its status when something happened: a distinct icon per state
//! — up to date (green), syncing (blue), paused (grey), offline: no peer
//! connected (amber), needs attention (orange, "!"), error (red), agent
//! not running (hollow grey) — a tooltip such as "Up to date · 2 peers",
//! and a menu ([`menu`]): each folder with its own actions, recent
//! changes, what needs attention, pause all, quit tray, stop the agent.
//! What needs a person is also a desktop notification ([`notify`]).
//! When the agent is down it says so instead of failing, and picks it up
//! again when it returns.
//!
//! This file owns the state and its icon, and carries out a click's
//! action ([`perform`]); the GUI itself (`gui`) is built only with the
//! `tray` cargo feature. Nothing here changes the agent but through the
//! control API.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
#[cfg(test)]
use softadastra::runtime::status::FolderStatus;
use softadastra::runtime::status::{FolderState, NodeStatus};

use crate::control;
use crate::home::Home;

pub mod follow;
#[cfg(feature = "tray")]
mod gui;
pub mod menu;
pub mod notify;

/// How `softadastra tray` runs (the hidden flags are for tests and
/// screenshots).
#[derive(Debug, Clone, Default)]
pub struct TrayOptions {
    /// Quit after this long.
    pub exit_after: Option<Duration>,
    /// Print the menu model (JSON, one line) to stderr whenever it changes.
    pub print_menu: bool,
}

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
    /// Something waits for a person: a conflict, an offer, held
    /// deletions, files waiting for space or a permission, changes a
    /// one-way folder did not take.
    NeedsAttention,
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
    let (mut state, mut text) = state_of(s);
    if state != TrayState::Error && needs_attention(s) {
        state = TrayState::NeedsAttention;
    }
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
    for f in s.folders.iter().filter(|f| f.progress.blocked > 0) {
        text.push_str(&format!(
            "\n{}: {} file(s) wait for space or a permission; softadastra sync status",
            f.id, f.progress.blocked
        ));
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

/// Whether anything waits for a person.
fn needs_attention(s: &NodeStatus) -> bool {
    !s.offers.is_empty()
        || s.folders.iter().any(|f| {
            f.conflicts > 0
                || f.progress.blocked > 0
                || f.locally_changed > 0
                || f.remote_differs > 0
                || f.deletions_held.local + f.deletions_held.remote > 0
        })
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
        TrayState::NeedsAttention => (0xe8, 0x6a, 0x17),
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
                    // An exclamation mark: needs attention.
                    TrayState::NeedsAttention => (14..=17).contains(&x) && (y <= 17 || y >= 20),
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
/// Carry out a menu click: open a path in the desktop's file manager, or
/// send the agent its requests (stopping at the first it refuses, whose
/// error is returned). `QuitTray` is the GUI's to handle.
pub fn perform(home: &Home, action: &menu::Action) -> Result<()> {
    match action {
        menu::Action::Open { path } => {
            let opener = if cfg!(target_os = "macos") {
                "open"
            } else if cfg!(windows) {
                "explorer"
            } else {
                "xdg-open"
            };
            std::process::Command::new(opener)
                .arg(path)
                .spawn()
                .map_err(|e| anyhow::anyhow!("cannot run {opener} {}: {e}", path.display()))?;
        }
        menu::Action::Send { requests } => {
            for r in requests {
                if control::call(home, r)?.is_none() {
                    anyhow::bail!("the agent is not running");
                }
            }
        }
        menu::Action::QuitTray => {}
    }
    Ok(())
}

/// Without the `tray` feature: say how to get one.
#[cfg(not(feature = "tray"))]
pub fn run_tray(_home: &Home, _options: TrayOptions) -> Result<ExitCode> {
    anyhow::bail!(
        "this softadastra was built without the tray icon; install the package (it has it) or build it with `cargo build --release -p softadastra-agent --features tray` (needs libgtk-3-dev and libayatana-appindicator3-dev)"
    )
}

/// Run the tray until "Quit tray" (or, with `exit_after`, that long).
#[cfg(feature = "tray")]
pub fn run_tray(home: &Home, options: TrayOptions) -> Result<ExitCode> {
    gui::run(home, options)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use softadastra::sync::FolderProgress;

    pub(crate) fn folder(state: FolderState, needed: (u64, u64)) -> FolderStatus {
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
            ..Default::default()
        }
    }

    pub(crate) fn node(peers: usize, folders: Vec<FolderStatus>) -> NodeStatus {
        NodeStatus {
            node: "N".into(),
            name: "laptop".into(),
            listen: "127.0.0.1:7420".into(),
            peers_trusted: peers,
            peers_connected: peers,
            folders,
            ..Default::default()
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
        assert_eq!(state, TrayState::NeedsAttention);
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
        let mut conflicted = folder(FolderState::UpToDate, (0, 0));
        conflicted.conflicts = 2;
        let (state, text) = summarize(Some(&node(1, vec![conflicted])));
        assert_eq!(state, TrayState::NeedsAttention);
        assert!(text.contains("2 conflict(s)"), "{text}");
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
            TrayState::NeedsAttention,
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
