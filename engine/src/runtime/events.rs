//! What happened on a running node, as a numbered stream a client can
//! follow and resume: files synced in and out, deletions, conflicts made
//! and settled, folder states, peers coming and going, errors, offers and
//! deletions the guard holds back.
//!
//! [`EventLog`] owns the stream: a bounded ring of the newest
//! [`CAPACITY`] events, each with a sequence number, and a wake-up for
//! clients waiting on the next one ([`EventLog::wait`]). Clients pull; the
//! node never waits for one, so a slow or stuck client costs it nothing —
//! a client that fell behind the ring, or that resumes from a number given
//! out before the agent restarted, is told so ([`Page::gap`]) and resyncs
//! from the status. Sequence numbers grow across restarts: a run's first
//! one is the wall clock in microseconds when the log was made, so a
//! number from an earlier run is always below this run's.
//!
//! Most events are pushed where they happen (the committer, the watcher,
//! the mesh); the folder-level ones (state, error, offer, held deletions,
//! files waiting for a person)
//! come from comparing successive statuses ([`EventLog::observe`]). This
//! module records and serves; it never decides anything about syncing and
//! never blocks on a reader.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::status::{FolderState, NodeStatus};
use crate::core::lock;

/// Events kept for clients to catch up on: at ~150 bytes each, well under
/// a megabyte.
pub const CAPACITY: usize = 4096;

/// One numbered event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Its number: greater than every earlier event's, this run or before.
    pub seq: u64,
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub what: What,
}

/// Which side made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// This node (a change found on its disk).
    Here,
    /// A peer (its change carried out here).
    Peer,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum What {
    /// A peer's version of a file was placed here.
    FileIn {
        /// Folder id.
        folder: String,
        /// Folder-relative path.
        path: String,
        /// Its size in bytes.
        size: u64,
    },
    /// A file changed here was recorded and offered to the folder's peers.
    FileOut {
        /// Folder id.
        folder: String,
        /// Folder-relative path.
        path: String,
        /// Its size in bytes.
        size: u64,
    },
    /// A file was deleted: here (and the deletion offered to peers), or by
    /// a peer (and carried out here).
    Deleted {
        /// Folder id.
        folder: String,
        /// Folder-relative path.
        path: String,
        /// Who deleted it.
        by: Side,
    },
    /// More files changed in one go than are listed one by one.
    ManyChanged {
        /// Folder id.
        folder: String,
        /// How many more than were listed.
        more: u64,
        /// Who changed them.
        by: Side,
    },
    /// Two versions of a file met: the local one was kept as a conflict
    /// copy beside the file.
    ConflictMade {
        /// Folder id.
        folder: String,
        /// Folder-relative path of the file.
        path: String,
        /// Folder-relative path of the conflict copy.
        copy: String,
    },
    /// A conflict was settled.
    ConflictResolved {
        /// Folder id.
        folder: String,
        /// Folder-relative path of the file.
        path: String,
    },
    /// A folder's state changed.
    FolderState {
        /// Folder id.
        folder: String,
        /// The state before (none: the folder was not known).
        from: Option<FolderState>,
        /// The state now.
        to: FolderState,
    },
    /// A folder is no longer shared here.
    FolderGone {
        /// Folder id.
        folder: String,
    },
    /// A folder hit an error (it cannot be watched, or its marker is gone).
    Error {
        /// Folder id.
        folder: String,
        /// What is wrong.
        message: String,
    },
    /// More of a folder's files than before cannot be synced until
    /// something changes that a person may have to change: space freed, a
    /// permission given.
    FilesWaiting {
        /// Folder id.
        folder: String,
        /// How many files wait.
        files: u64,
        /// Why the first of them waits.
        why: String,
    },
    /// A peer connected.
    PeerConnected {
        /// Its id.
        peer: String,
        /// Its name.
        name: String,
    },
    /// A peer disconnected.
    PeerDisconnected {
        /// Its id.
        peer: String,
        /// Its name, if known.
        name: String,
    },
    /// A connected device offers a folder this node does not have.
    Offer {
        /// Folder id.
        folder: String,
        /// The devices offering it (names, or ids when unnamed).
        by: Vec<String>,
    },
    /// The deletion guard holds back more deletions in a folder than
    /// before, waiting for a person.
    DeletionsHeld {
        /// Folder id.
        folder: String,
        /// Deletions found here.
        local: u64,
        /// Deletions a peer made.
        remote: u64,
    },
}

/// What [`EventLog::page`] gives a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The events after the client's number, oldest first.
    pub events: Vec<Event>,
    /// The number to resume from next time: the last event's here, or the
    /// newest given out when there are none.
    pub last: u64,
    /// Events after the client's number are no longer kept (it fell
    /// behind, or the agent restarted since): resync from the status.
    pub gap: bool,
}

/// The last status seen, as far as events are made from it.
#[derive(Default)]
struct Seen {
    states: HashMap<String, FolderState>,
    errors: HashMap<String, String>,
    held: HashMap<String, (u64, u64)>,
    waiting: HashMap<String, u64>,
    offers: HashSet<String>,
}

struct Ring {
    events: VecDeque<Event>,
    /// The number the next event gets.
    next: u64,
    /// The first number this run gave (or will give).
    first: u64,
    capacity: usize,
    seen: Seen,
}

/// The node's event stream (see the module docs).
pub struct EventLog {
    ring: Mutex<Ring>,
    newest: tokio::sync::watch::Sender<u64>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog::with_capacity(CAPACITY)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl EventLog {
    /// A log keeping the newest `capacity` events (at least one).
    pub fn with_capacity(capacity: usize) -> EventLog {
        let first = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64)
            .max(1);
        EventLog {
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                next: first,
                first,
                capacity: capacity.max(1),
                seen: Seen::default(),
            }),
            newest: tokio::sync::watch::Sender::new(first - 1),
        }
    }

    /// Record one event.
    pub fn push(&self, what: What) {
        self.push_all(std::iter::once(what));
    }

    /// Record events in order, waking waiting clients once.
    pub fn push_all(&self, whats: impl IntoIterator<Item = What>) {
        let newest = {
            let mut ring = lock(&self.ring);
            let at_ms = now_ms();
            for what in whats {
                if ring.events.len() == ring.capacity {
                    ring.events.pop_front();
                }
                let seq = ring.next;
                ring.next += 1;
                ring.events.push_back(Event { seq, at_ms, what });
            }
            ring.next - 1
        };
        self.newest.send_if_modified(|n| {
            let changed = *n != newest;
            *n = newest;
            changed
        });
    }

    /// The number of the newest event given out (or one below the first
    /// this run will give).
    pub fn last(&self) -> u64 {
        *self.newest.borrow()
    }

    /// At most `max` events after `since` (none: from now on, so nothing
    /// yet), with whether some after it are gone.
    pub fn page(&self, since: Option<u64>, max: usize) -> Page {
        let ring = lock(&self.ring);
        let last = ring.next - 1;
        let Some(since) = since else {
            return Page {
                events: Vec::new(),
                last,
                gap: false,
            };
        };
        let oldest = ring.events.front().map_or(ring.next, |e| e.seq);
        // Below this run's first number: the client's events were an
        // earlier run's. Above the newest: given out by a run since gone
        // (the clock went back). Between, but before the oldest kept:
        // overwritten.
        let from_before = since + 1 < ring.first && since != 0;
        let from_future = since > last;
        let overwritten = since + 1 < oldest && since + 1 >= ring.first;
        let gap = from_before || from_future || overwritten;
        let after = if from_future { 0 } else { since };
        let events: Vec<Event> = ring
            .events
            .iter()
            .filter(|e| e.seq > after)
            .take(max)
            .cloned()
            .collect();
        let last = events.last().map_or(last, |e| e.seq);
        Page { events, last, gap }
    }

    /// As [`page`](Self::page), but waiting up to `timeout` for an event
    /// when there is none yet.
    pub async fn wait(&self, since: Option<u64>, max: usize, timeout: Duration) -> Page {
        let mut newest = self.newest.subscribe();
        let since = Some(since.unwrap_or_else(|| *newest.borrow_and_update()));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let page = self.page(since, max);
            if !page.events.is_empty() || page.gap {
                return page;
            }
            if tokio::time::timeout_at(deadline, newest.changed())
                .await
                .is_err()
            {
                return page;
            }
        }
    }

    /// Compare `status` with the one seen before and record what changed:
    /// folder states, errors, new offers, more deletions held back, more
    /// files waiting for a person.
    pub fn observe(&self, status: &NodeStatus) {
        let whats = {
            let mut ring = lock(&self.ring);
            changes(&mut ring.seen, status)
        };
        if !whats.is_empty() {
            self.push_all(whats);
        }
    }
}

/// What differs between `seen` and `status`; `seen` becomes `status`.
fn changes(seen: &mut Seen, status: &NodeStatus) -> Vec<What> {
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
                by: o
                    .by
                    .iter()
                    .map(|b| b.name.clone().unwrap_or_else(|| b.device.clone()))
                    .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(n: u64) -> What {
        What::FileIn {
            folder: "docs".into(),
            path: format!("f{n}"),
            size: n,
        }
    }

    #[test]
    fn a_client_resumes_where_it_left_off_and_misses_nothing() {
        let log = EventLog::with_capacity(100);
        let start = log.page(None, 10);
        assert!(start.events.is_empty() && !start.gap);
        log.push_all((0..25).map(file));
        let mut since = start.last;
        let mut got = Vec::new();
        loop {
            let page = log.page(Some(since), 10);
            assert!(!page.gap);
            if page.events.is_empty() {
                break;
            }
            since = page.last;
            got.extend(page.events);
        }
        assert_eq!(got.len(), 25);
        assert!(got.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        assert_eq!(got[0].what, file(0));
        assert_eq!(got[24].what, file(24));
    }

    #[test]
    fn a_client_behind_the_ring_or_from_an_earlier_run_is_told() {
        let log = EventLog::with_capacity(10);
        let start = log.last();
        log.push_all((0..30).map(file));
        let behind = log.page(Some(start), 100);
        assert!(behind.gap);
        assert_eq!(behind.events.len(), 10, "what is kept is still given");
        assert_eq!(behind.events[0].what, file(20));
        // Caught up: no gap.
        assert!(!log.page(Some(behind.last), 100).gap);
        // Zero means "everything kept", not a gap.
        let all = log.page(Some(0), 100);
        assert!(!all.gap && all.events.len() == 10);
        // A number from before this run, or from a run whose clock was
        // ahead: a gap, and this run's events.
        assert!(log.page(Some(start - 5), 100).gap);
        let future = log.page(Some(log.last() + 1000), 100);
        assert!(future.gap && future.events.len() == 10);
    }

    #[test]
    fn a_later_run_numbers_above_an_earlier_one() {
        let a = EventLog::default();
        a.push_all((0..1000).map(file));
        std::thread::sleep(Duration::from_millis(2));
        let b = EventLog::default();
        b.push(file(1));
        assert!(b.last() > a.last());
    }

    #[tokio::test]
    async fn a_waiting_client_wakes_on_the_next_event_and_a_quiet_one_times_out() {
        let log = std::sync::Arc::new(EventLog::default());
        let since = log.last();
        let quiet = log.wait(Some(since), 10, Duration::from_millis(50)).await;
        assert!(quiet.events.is_empty() && !quiet.gap && quiet.last == since);
        let pusher = log.clone();
        let t = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            pusher.push(file(7));
        });
        let woke = log.wait(Some(since), 10, Duration::from_secs(10)).await;
        t.await.unwrap();
        assert_eq!(woke.events.len(), 1);
        assert_eq!(woke.events[0].what, file(7));
    }

    fn folder(id: &str, state: FolderState, held: u64) -> super::super::status::FolderStatus {
        let mut f = super::super::status::FolderStatus {
            id: id.into(),
            state,
            error: (state == FolderState::Error).then(|| "cannot watch".into()),
            ..Default::default()
        };
        f.deletions_held.local = held;
        f
    }

    fn node(folders: Vec<super::super::status::FolderStatus>, offers: &[&str]) -> NodeStatus {
        let offered_by = |id: &&str| super::super::offers::Offer {
            id: id.to_string(),
            by: vec![super::super::offers::OfferedBy {
                device: "D".into(),
                name: Some("laptop".into()),
            }],
        };
        NodeStatus {
            folders,
            offers: offers.iter().map(offered_by).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn statuses_compared_give_each_change_once() {
        let log = EventLog::default();
        let whats = |log: &EventLog, since| -> Vec<What> {
            log.page(Some(since), 100)
                .events
                .into_iter()
                .map(|e| e.what)
                .collect()
        };
        let mark = log.last();
        log.observe(&node(vec![folder("docs", FolderState::Scanning, 0)], &[]));
        log.observe(&node(vec![folder("docs", FolderState::Scanning, 0)], &[]));
        assert_eq!(
            whats(&log, mark),
            [What::FolderState {
                folder: "docs".into(),
                from: None,
                to: FolderState::Scanning
            }]
        );
        let mark = log.last();
        let held = node(
            vec![folder("docs", FolderState::DeletionsHeld, 3)],
            &["photos"],
        );
        log.observe(&held);
        log.observe(&held);
        assert_eq!(
            whats(&log, mark),
            [
                What::FolderState {
                    folder: "docs".into(),
                    from: Some(FolderState::Scanning),
                    to: FolderState::DeletionsHeld
                },
                What::DeletionsHeld {
                    folder: "docs".into(),
                    local: 3,
                    remote: 0
                },
                What::Offer {
                    folder: "photos".into(),
                    by: vec!["laptop".into()]
                },
            ]
        );
        // Files that wait for a person: told when more wait.
        let mark = log.last();
        let mut full = folder("docs", FolderState::DeletionsHeld, 3);
        full.progress.blocked = 2;
        full.progress.failing_files.push(crate::sync::Failing {
            path: "big.iso".into(),
            why: "no space left".into(),
            cause: crate::sync::Cause::NoSpace { needed: 1 },
            waits_for_change: true,
            attempts: 1,
        });
        let full = node(vec![full], &["photos"]);
        log.observe(&full);
        log.observe(&full);
        assert_eq!(
            whats(&log, mark),
            [What::FilesWaiting {
                folder: "docs".into(),
                files: 2,
                why: "big.iso: no space left".into()
            }]
        );
        // Fewer held is no news; an error is, once; a folder gone is.
        let mark = log.last();
        log.observe(&node(
            vec![folder("docs", FolderState::Error, 1)],
            &["photos"],
        ));
        log.observe(&node(
            vec![folder("docs", FolderState::Error, 1)],
            &["photos"],
        ));
        log.observe(&node(Vec::new(), &[]));
        assert_eq!(
            whats(&log, mark),
            [
                What::FolderState {
                    folder: "docs".into(),
                    from: Some(FolderState::DeletionsHeld),
                    to: FolderState::Error
                },
                What::Error {
                    folder: "docs".into(),
                    message: "cannot watch".into()
                },
                What::FolderGone {
                    folder: "docs".into()
                },
            ]
        );
    }

    #[test]
    fn events_read_back_from_json_with_their_type() {
        let log = EventLog::default();
        log.push(What::ConflictMade {
            folder: "docs".into(),
            path: "a.txt".into(),
            copy: "a.sync-conflict.txt".into(),
        });
        let page = log.page(Some(0), 10);
        let json = serde_json::to_value(&page).unwrap();
        assert_eq!(json["events"][0]["type"], "conflict_made");
        assert_eq!(json["events"][0]["copy"], "a.sync-conflict.txt");
        assert_eq!(serde_json::from_value::<Page>(json).unwrap(), page);
    }
}
