//! "Needs attention": everything in the agent's status that waits for a
//! person — conflicts, folder errors, files waiting for space or a
//! permission, held deletions, a one-way folder's changes not taken,
//! folders offered — each as an entry with the click that settles it.
//! Builds entries only; it sends nothing.

use std::path::{Path, PathBuf};

use softadastra::runtime::conflicts::Conflict;
use softadastra::runtime::status::NodeStatus;

use super::{Item, click, elide, line, open, send, submenu};
use crate::control::Request;
use crate::guard_cmd::Decision;

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
            format!(
                "Conflict: {} ({}) — open its folder",
                elide(&c.path),
                c.folder
            ),
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
        let by = o.offerers();
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
