//! Folder-level events made by comparing one status of the node with the
//! one seen before: a folder's state, an error, files waiting for a
//! person, more deletions held back, a folder gone, an offer. Pure: it
//! reads statuses and returns events; [`super::EventLog::observe`] records
//! them.

use std::collections::{HashMap, HashSet};

use super::What;
use crate::runtime::status::{FolderState, NodeStatus};

/// The last status seen, as far as events are made from it.
#[derive(Default)]
pub(super) struct Seen {
    states: HashMap<String, FolderState>,
    errors: HashMap<String, String>,
    held: HashMap<String, (u64, u64)>,
    waiting: HashMap<String, u64>,
    offers: HashSet<String>,
}

/// What differs between `seen` and `status`; `seen` becomes `status`.
pub(super) fn changes(seen: &mut Seen, status: &NodeStatus) -> Vec<What> {
    let mut out = Vec::new();
    let mut states = HashMap::new();
    let mut errors = HashMap::new();
    let mut held = HashMap::new();
    let mut waiting = HashMap::new();
    for f in &status.folders {
        let from = seen.states.get(&f.id).copied();
        if from != Some(f.state) {
            out.push(What::FolderState {
                folder: f.id.clone(),
                from,
                to: f.state,
            });
        }
        states.insert(f.id.clone(), f.state);
        if let Some(message) = &f.error {
            if seen.errors.get(&f.id) != Some(message) {
                out.push(What::Error {
                    folder: f.id.clone(),
                    message: message.clone(),
                });
            }
            errors.insert(f.id.clone(), message.clone());
        }
        let now = (f.deletions_held.local, f.deletions_held.remote);
        let before = seen.held.get(&f.id).copied().unwrap_or((0, 0));
        if now.0 + now.1 > before.0 + before.1 {
            out.push(What::DeletionsHeld {
                folder: f.id.clone(),
                local: now.0,
                remote: now.1,
            });
        }
        held.insert(f.id.clone(), now);
        let blocked = f.progress.blocked;
        if blocked > seen.waiting.get(&f.id).copied().unwrap_or(0) {
            let why = f
                .progress
                .failing_files
                .iter()
                .find(|x| x.waits_for_change)
                .map(|x| format!("{}: {}", x.path, x.why))
                .unwrap_or_default();
            out.push(What::FilesWaiting {
                folder: f.id.clone(),
                files: blocked,
                why,
            });
        }
        waiting.insert(f.id.clone(), blocked);
    }
    for gone in seen.states.keys().filter(|id| !states.contains_key(*id)) {
        out.push(What::FolderGone {
            folder: gone.clone(),
        });
    }
    let mut offers = HashSet::new();
    for o in &status.offers {
        if !seen.offers.contains(&o.id) {
            out.push(What::Offer {
                folder: o.id.clone(),
                by: o.offerers(),
            });
        }
        offers.insert(o.id.clone());
    }
    *seen = Seen {
        states,
        errors,
        held,
        waiting,
        offers,
    };
    out
}
