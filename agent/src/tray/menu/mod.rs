//! The tray's menu as data: what entries it has, which are enabled, and
//! what each does when clicked — built from the agent's status, its recent
//! events and its conflicts, with no GUI in sight, so it is tested as is.
//! The GUI (`super::gui`) only draws it and hands a click's [`Action`]
//! to [`super::perform`].
//!
//! Layout: the overall line; one entry per folder (its state, what is
//! left, its type) with a submenu — open, pause or resume, rescan, show
//! conflicts; "Recent changes" (the last files synced, each opening its
//! directory); "Needs attention" (conflicts, errors, files waiting for
//! space or a permission, offers, held deletions, changes a one-way folder
//! did not take — each with the action
//! that settles it); "Pause all" / "Resume all"; "Open log"; "Quit tray";
//! "Stop sync agent".

use std::path::{Path, PathBuf};

use serde::Serialize;
use softadastra::runtime::conflicts::Conflict;
use softadastra::runtime::events::{Event, Side, What};
use softadastra::runtime::status::{FolderState, FolderStatus, NodeStatus};

use crate::control::{FolderChange, Request};

/// Files listed under "Recent changes".
pub const RECENT: usize = 10;

mod attention;
pub use attention::attention;

/// What a click does.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum Action {
    /// Open a directory (or file) in the desktop's file manager.
    Open {
        /// What to open.
        path: PathBuf,
    },
    /// Send these requests to the agent, in order.
    Send {
        /// The requests.
        requests: Vec<Request>,
    },
    /// Quit the tray (the agent runs on).
    QuitTray,
}

/// One menu entry.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// A stable name, e.g. `folder:docs/pause` (what tests name it by,
    /// and what a click is matched to).
    pub id: String,
    /// What it says.
    pub label: String,
    /// Whether it can be clicked.
    pub enabled: bool,
    /// What a click does (none for a submenu or a plain line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Its submenu.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Item>,
}

/// An entry or a separator line.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Item {
    /// An entry.
    Entry(Entry),
    /// A line between groups.
    Separator,
}

fn line(id: &str, label: impl Into<String>) -> Item {
    Item::Entry(Entry {
        id: id.into(),
        label: label.into(),
        enabled: false,
        action: None,
        children: Vec::new(),
    })
}

fn click(id: &str, label: impl Into<String>, enabled: bool, action: Action) -> Item {
    Item::Entry(Entry {
        id: id.into(),
        label: label.into(),
        enabled,
        action: Some(action),
        children: Vec::new(),
    })
}

fn submenu(id: &str, label: impl Into<String>, children: Vec<Item>) -> Item {
    Item::Entry(Entry {
        id: id.into(),
        label: label.into(),
        enabled: !children.is_empty(),
        action: None,
        children,
    })
}

fn send(requests: Vec<Request>) -> Action {
    Action::Send { requests }
}

fn set(id: &str, change: FolderChange) -> Request {
    Request::FolderSet {
        id: id.to_string(),
        change,
    }
}

fn open(path: &Path) -> Action {
    Action::Open {
        path: path.to_path_buf(),
    }
}

/// What the menu is built from.
pub struct View<'a> {
    /// The agent's status (none: it is not running).
    pub status: Option<&'a NodeStatus>,
    /// The agent's latest events, oldest first.
    pub recent: &'a [Event],
    /// Its conflicts.
    pub conflicts: &'a [Conflict],
    /// The overall line (the tooltip's first line).
    pub headline: &'a str,
    /// Where the agent's log files are.
    pub log_dir: &'a Path,
}

/// The whole menu.
pub fn model(v: &View) -> Vec<Item> {
    let mut items = vec![line("headline", v.headline), Item::Separator];
    let folders: &[FolderStatus] = v.status.map_or(&[], |s| &s.folders);
    for f in folders {
        items.push(folder_menu(f, v.conflicts));
    }
    if v.status.is_some() {
        items.push(recent_menu(v.recent, folders));
        let attention = attention(v.status, v.conflicts, v.log_dir);
        let label = match attention.len() {
            0 => "Nothing needs you".to_string(),
            n => format!("Needs attention ({n})"),
        };
        items.push(submenu("attention", label, attention));
        items.push(Item::Separator);
        let all_paused = !folders.is_empty() && folders.iter().all(|f| f.paused);
        let (label, change) = if all_paused {
            ("Resume all", FolderChange::Resume)
        } else {
            ("Pause all", FolderChange::Pause)
        };
        // Only the folders not already so.
        let to_change = folders.iter().filter(|f| f.paused == all_paused);
        items.push(click(
            "all/pause",
            label,
            !folders.is_empty(),
            send(to_change.map(|f| set(&f.id, change)).collect()),
        ));
    }
    items.push(click("log", "Open log", true, open(v.log_dir)));
    items.push(Item::Separator);
    items.push(click("quit", "Quit tray", true, Action::QuitTray));
    items.push(click(
        "stop",
        "Stop sync agent",
        v.status.is_some(),
        send(vec![Request::Shutdown]),
    ));
    items
}

/// "docs — syncing, 14 files (3.2 MB) left · send-only".
fn folder_line(f: &FolderStatus) -> String {
    let state = match f.state {
        FolderState::Syncing => format!(
            "syncing, {} file(s) ({}) left",
            f.progress.needed_files,
            crate::folder_cmd::human_bytes(f.progress.needed_bytes)
        ),
        other => other.as_str().to_string(),
    };
    format!("{} — {state} · {}", f.id, f.kind)
}

fn folder_menu(f: &FolderStatus, conflicts: &[Conflict]) -> Item {
    let key = |what: &str| format!("folder:{}/{what}", f.id);
    let (label, change) = if f.paused {
        ("Resume", FolderChange::Resume)
    } else {
        ("Pause", FolderChange::Pause)
    };
    let mine: Vec<&Conflict> = conflicts.iter().filter(|c| c.folder == f.id).collect();
    let conflicts_label = match f.conflicts {
        0 => "No conflicts".to_string(),
        n => format!("Show conflicts ({n})"),
    };
    let children = vec![
        click(&key("open"), "Open in file manager", true, open(&f.path)),
        click(&key("pause"), label, true, send(vec![set(&f.id, change)])),
        click(
            &key("rescan"),
            "Rescan",
            !f.paused,
            send(vec![set(&f.id, FolderChange::Rescan)]),
        ),
        click(
            &key("conflicts"),
            conflicts_label,
            !mine.is_empty(),
            open(&conflicts_dir(&mine, &f.path)),
        ),
    ];
    submenu(&format!("folder:{}", f.id), folder_line(f), children)
}

/// The directory holding every one of `conflicts`' copies, if one does;
/// else the folder's root.
fn conflicts_dir(conflicts: &[&Conflict], root: &Path) -> PathBuf {
    let mut dirs = conflicts.iter().filter_map(|c| c.copy_at.parent());
    match dirs.next() {
        Some(first) if dirs.all(|d| d == first) => first.to_path_buf(),
        _ => root.to_path_buf(),
    }
}

fn recent_menu(events: &[Event], folders: &[FolderStatus]) -> Item {
    let root = |id: &str| folders.iter().find(|f| f.id == id).map(|f| &f.path);
    let mut children = Vec::new();
    for e in events.iter().rev() {
        let (folder, path, how) = match &e.what {
            What::FileIn { folder, path, .. } => (folder, path, "came in"),
            What::FileOut { folder, path, .. } => (folder, path, "sent out"),
            What::Deleted {
                folder,
                path,
                by: Side::Peer,
            } => (folder, path, "deleted by a peer"),
            What::Deleted {
                folder,
                path,
                by: Side::Here,
            } => (folder, path, "deleted here"),
            _ => continue,
        };
        let Some(root) = root(folder) else { continue };
        // Its directory: the file itself may be gone.
        let dir = match path.rsplit_once('/') {
            Some((d, _)) => root.join(d),
            None => root.clone(),
        };
        // Named by position: a new file relabels the entries in place
        // instead of rebuilding the menu.
        children.push(click(
            &format!("recent:{}", children.len()),
            format!("{} ({folder}) — {how}", elide(path)),
            true,
            open(&dir),
        ));
        if children.len() == RECENT {
            break;
        }
    }
    if children.is_empty() {
        children.push(line("recent:none", "Nothing synced yet"));
    }
    submenu("recent", "Recent changes", children)
}

/// Longest path a menu label shows whole.
const LABEL_PATH: usize = 60;

/// `path` shortened in the middle to [`LABEL_PATH`] characters, so a deep
/// path does not make a menu as wide as the screen; its file name stays.
fn elide(path: &str) -> String {
    let n = path.chars().count();
    if n <= LABEL_PATH {
        return path.to_string();
    }
    let tail = LABEL_PATH * 2 / 3;
    let head = LABEL_PATH - tail - 1;
    let start: String = path.chars().take(head).collect();
    let end: String = path.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

/// The entry named `id`, anywhere in `items`.
pub fn find<'a>(items: &'a [Item], id: &str) -> Option<&'a Entry> {
    items.iter().find_map(|i| match i {
        Item::Entry(e) if e.id == id => Some(e),
        Item::Entry(e) => find(&e.children, id),
        Item::Separator => None,
    })
}

#[cfg(test)]
mod tests;
