//! The menu model's tests: entries, enabled states and actions for
//! statuses made by hand.

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
    // One of two paused: "Pause all" pauses the other only.
    let mut photos = folder(FolderState::UpToDate, (0, 0));
    photos.id = "photos".into();
    let s = node(1, vec![folder(FolderState::Paused, (0, 0)), photos]);
    let items = view(Some(&s), &[], &[]);
    let all = find(&items, "all/pause").unwrap();
    assert_eq!(all.label, "Pause all");
    assert_eq!(
        json(&all.action)["requests"],
        serde_json::json!([{"cmd": "folder_set", "id": "photos", "change": "pause"}])
    );
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
fn a_deep_path_is_shortened_in_the_middle() {
    let deep = format!("{}/photo-2026.jpg", "very long directory name/".repeat(6));
    let short = elide(&deep);
    assert_eq!(short.chars().count(), LABEL_PATH);
    assert!(short.ends_with("/photo-2026.jpg"), "{short}");
    assert!(short.starts_with("very long"), "{short}");
    assert_eq!(elide("a/b.txt"), "a/b.txt");
    assert_eq!(elide(&"é".repeat(80)).chars().count(), LABEL_PATH);
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
