//! The tray's menu as data: what entries it has, which are enabled, and
//! what each does when clicked — built from the agent's status, its recent
//! events and its conflicts, with no GUI in sight, so it is tested as is.
//! The GUI ([`super::gui`]) only draws it and hands a click's [`Action`]
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
use crate::guard_cmd::Decision;

/// Files listed under "Recent changes".
pub const RECENT: usize = 10;

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
        items.push(click(
            "all/pause",
            label,
            !folders.is_empty(),
            send(folders.iter().map(|f| set(&f.id, change)).collect()),
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
            format!("{path} ({folder}) — {how}"),
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

/// Everything that waits for a person, each entry with what settles it.
pub fn attention(status: Option<&NodeStatus>, conflicts: &[Conflict], log_dir: &Path) -> Vec<Item> {
    let Some(s) = status else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in conflicts {
        let dir = c.copy_at.parent().unwrap_or(&c.copy_at);
        out.push(click(
            &format!("conflict:{}/{}", c.folder, c.path),
            format!("Conflict: {} ({}) — open its folder", c.path, c.folder),
            true,
            open(dir),
        ));
    }
    for f in &s.folders {
        if let Some(e) = &f.error {
            out.push(click(
                &format!("error:{}", f.id),
                format!("{}: {e} — open the log", f.id),
                true,
                open(log_dir),
            ));
        }
        if f.progress.blocked > 0 {
            // Where the first waiting file is: its directory is where a
            // permission is missing, or on the disk that is full.
            let first = f.progress.failing_files.iter().find(|x| x.waits_for_change);
            let dir = match first.and_then(|x| x.path.rsplit_once('/')) {
                Some((d, _)) => f.path.join(d),
                None => f.path.clone(),
            };
            let why = first.map_or(String::new(), |x| format!(" ({})", x.why));
            out.push(click(
                &format!("waiting:{}", f.id),
                format!(
                    "{}: {} file(s) wait for space or a permission{why} — open the folder",
                    f.id, f.progress.blocked
                ),
                true,
                open(&dir),
            ));
        }
        let held = f.deletions_held.local + f.deletions_held.remote;
        if held > 0 {
            let decide = |decision| {
                send(vec![Request::FolderDeletions {
                    id: f.id.clone(),
                    decision,
                }])
            };
            out.push(submenu(
                &format!("held:{}", f.id),
                format!("{}: {held} deletion(s) held back", f.id),
                vec![
                    click(
                        &format!("held:{}/accept", f.id),
                        "Let them go ahead",
                        true,
                        decide(Decision::Accept),
                    ),
                    click(
                        &format!("held:{}/restore", f.id),
                        "Restore the files",
                        true,
                        decide(Decision::Restore),
                    ),
                ],
            ));
        }
        // A one-way folder's changes that did not travel.
        let id = || f.id.clone();
        let one_way = [
            (
                f.locally_changed,
                "revert",
                "local change(s) not sent — revert them",
                Request::FolderRevert { id: id() },
            ),
            (
                f.remote_differs,
                "override",
                "remote change(s) not taken — override them",
                Request::FolderOverride { id: id() },
            ),
        ];
        for (n, what, text, request) in one_way.into_iter().filter(|c| c.0 > 0) {
            out.push(click(
                &format!("{what}:{}", f.id),
                format!("{} ({}): {n} {text}", f.id, f.kind),
                true,
                send(vec![request]),
            ));
        }
    }
    for o in &s.offers {
        let by: Vec<String> =
            o.by.iter()
                .map(|b| b.name.clone().unwrap_or_else(|| b.device.clone()))
                .collect();
        let mut children = Vec::new();
        match offer_home(s, &o.id) {
            Some(path) => children.push(click(
                &format!("offer:{}/accept", o.id),
                format!("Accept into {}", path.display()),
                true,
                send(vec![Request::OfferAccept {
                    id: o.id.clone(),
                    path,
                    kind: None,
                }]),
            )),
            None => children.push(line(
                &format!("offer:{}/accept", o.id),
                format!("Accept with: softadastra folder accept {} PATH", o.id),
            )),
        }
        children.push(click(
            &format!("offer:{}/decline", o.id),
            "Decline",
            true,
            send(vec![Request::OfferDecline { id: o.id.clone() }]),
        ));
        out.push(submenu(
            &format!("offer:{}", o.id),
            format!("Folder {} offered by {}", o.id, by.join(", ")),
            children,
        ));
    }
    out
}

/// Where a click accepts an offered folder: beside this node's first
/// folder, under the offer's id — unless something is already there (then
/// the person picks a place with the CLI).
fn offer_home(s: &NodeStatus, id: &str) -> Option<PathBuf> {
    let parent = match s.folders.first() {
        Some(f) => f.path.parent()?.to_path_buf(),
        None => directories::UserDirs::new()?.home_dir().join("Sync"),
    };
    let path = parent.join(id);
    (!path.exists()).then_some(path)
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
mod tests {
    use super::super::tests::{folder, node};
    use super::*;

    fn json(a: &Option<Action>) -> serde_json::Value {
        serde_json::to_value(a).unwrap()
    }

    fn view<'a>(s: Option<&'a NodeStatus>, recent: &'a [Event], c: &'a [Conflict]) -> Vec<Item> {
        model(&View {
            status: s,
            recent,
            conflicts: c,
            headline: "Up to date",
            log_dir: Path::new("/home/logs"),
        })
    }

    #[test]
    fn each_folder_has_its_own_pause_and_the_agent_can_be_stopped() {
        let mut photos = folder(FolderState::UpToDate, (0, 0));
        photos.id = "photos".into();
        photos.path = "/photos".into();
        let s = node(
            1,
            vec![folder(FolderState::Syncing, (14, 3_200_000)), photos],
        );
        let items = view(Some(&s), &[], &[]);
        let docs = find(&items, "folder:docs").unwrap();
        assert_eq!(
            docs.label,
            "docs — syncing, 14 file(s) (3.2 MB) left · send-receive"
        );
        let pause = find(&items, "folder:docs/pause").unwrap();
        assert_eq!(pause.label, "Pause");
        assert_eq!(
            json(&pause.action),
            serde_json::json!({"do": "send", "requests": [
                {"cmd": "folder_set", "id": "docs", "change": "pause"}]})
        );
        let open = find(&items, "folder:photos/open").unwrap();
        assert_eq!(
            json(&open.action),
            serde_json::json!({"do": "open", "path": "/photos"})
        );
        // No conflicts: the entry is there, greyed.
        assert!(!find(&items, "folder:docs/conflicts").unwrap().enabled);
        let all = find(&items, "all/pause").unwrap();
        assert_eq!(all.label, "Pause all");
        assert_eq!(
            json(&all.action)["requests"].as_array().unwrap().len(),
            2,
            "one request per folder"
        );
        let stop = find(&items, "stop").unwrap();
        assert!(stop.enabled);
        assert_eq!(
            json(&stop.action),
            serde_json::json!({"do": "send", "requests": [{"cmd": "shutdown"}]})
        );
        assert!(matches!(
            find(&items, "quit").unwrap().action,
            Some(Action::QuitTray)
        ));
        assert_eq!(
            find(&items, "attention").unwrap().label,
            "Nothing needs you"
        );
    }

    #[test]
    fn a_paused_folder_offers_resume_and_no_rescan() {
        let s = node(1, vec![folder(FolderState::Paused, (0, 0))]);
        let items = view(Some(&s), &[], &[]);
        assert_eq!(find(&items, "folder:docs/pause").unwrap().label, "Resume");
        assert!(!find(&items, "folder:docs/rescan").unwrap().enabled);
        assert_eq!(find(&items, "all/pause").unwrap().label, "Resume all");
    }

    #[test]
    fn without_an_agent_only_quit_and_the_log_work() {
        let items = view(None, &[], &[]);
        assert!(find(&items, "all/pause").is_none());
        assert!(!find(&items, "stop").unwrap().enabled);
        assert!(find(&items, "quit").unwrap().enabled);
        assert!(find(&items, "log").unwrap().enabled);
    }

    #[test]
    fn recent_changes_list_the_newest_files_first_and_open_their_directory() {
        let s = node(1, vec![folder(FolderState::UpToDate, (0, 0))]);
        let mut events: Vec<Event> = (0..15)
            .map(|i| Event {
                seq: i,
                at_ms: 0,
                what: What::FileIn {
                    folder: "docs".into(),
                    path: format!("sub/f{i}"),
                    size: 1,
                },
            })
            .collect();
        events.push(Event {
            seq: 99,
            at_ms: 0,
            what: What::PeerConnected {
                peer: "P".into(),
                name: "laptop".into(),
            },
        });
        let items = view(Some(&s), &events, &[]);
        let recent = find(&items, "recent").unwrap();
        assert_eq!(recent.children.len(), RECENT);
        let Item::Entry(first) = &recent.children[0] else {
            panic!()
        };
        assert_eq!(first.label, "sub/f14 (docs) — came in");
        assert_eq!(
            json(&first.action),
            serde_json::json!({"do": "open", "path": "/docs/sub"})
        );
    }

    #[test]
    fn what_needs_a_person_is_listed_with_what_settles_it() {
        let mut f = folder(FolderState::DeletionsHeld, (0, 0));
        f.deletions_held.local = 500;
        f.conflicts = 1;
        let mut broken = folder(FolderState::Error, (0, 0));
        broken.id = "usb".into();
        broken.path = "/usb".into();
        broken.progress.blocked = 1;
        broken
            .progress
            .failing_files
            .push(softadastra::sync::Failing {
                path: "ro/a.txt".into(),
                why: "permission denied".into(),
                cause: softadastra::sync::Cause::Denied,
                waits_for_change: true,
                attempts: 2,
            });
        let mut s = node(1, vec![f, broken]);
        s.offers.push(softadastra::runtime::offers::Offer {
            id: "photos".into(),
            by: vec![softadastra::runtime::offers::OfferedBy {
                device: "D".into(),
                name: Some("laptop".into()),
            }],
        });
        let conflict = Conflict {
            folder: "docs".into(),
            path: "a/x.txt".into(),
            copy: "a/x.sync-conflict-20261204-100000-ABCDEFG.txt".into(),
            copy_at: "/docs/a/x.sync-conflict-20261204-100000-ABCDEFG.txt".into(),
            original: None,
            conflicting: softadastra::runtime::conflicts::Version {
                device: "ABCDEFG".into(),
                modified: "20261204-100000".into(),
                size: 3,
            },
            mine: None,
        };
        let items = view(Some(&s), &[], std::slice::from_ref(&conflict));
        assert_eq!(
            find(&items, "attention").unwrap().label,
            "Needs attention (5)"
        );
        let waiting = find(&items, "waiting:usb").unwrap();
        assert_eq!(
            waiting.label,
            "usb: 1 file(s) wait for space or a permission (permission denied) — open the folder"
        );
        assert_eq!(
            json(&waiting.action),
            serde_json::json!({"do": "open", "path": "/usb/ro"})
        );
        let c = find(&items, "conflict:docs/a/x.txt").unwrap();
        assert_eq!(
            json(&c.action),
            serde_json::json!({"do": "open", "path": "/docs/a"})
        );
        let shown = find(&items, "folder:docs/conflicts").unwrap();
        assert!(shown.enabled);
        assert_eq!(shown.label, "Show conflicts (1)");
        assert_eq!(
            json(&find(&items, "held:docs/accept").unwrap().action),
            serde_json::json!({"do": "send", "requests": [
                {"cmd": "folder_deletions", "id": "docs", "decision": "accept"}]})
        );
        assert_eq!(
            json(&find(&items, "error:usb").unwrap().action),
            serde_json::json!({"do": "open", "path": "/home/logs"})
        );
        let accept = find(&items, "offer:photos/accept").unwrap();
        assert_eq!(accept.label, "Accept into /photos");
        assert_eq!(
            json(&find(&items, "offer:photos/decline").unwrap().action),
            serde_json::json!({"do": "send", "requests": [
                {"cmd": "offer_decline", "id": "photos"}]})
        );
    }
}
