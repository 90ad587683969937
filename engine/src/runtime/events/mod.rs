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

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::status::{FolderState, NodeStatus};

mod observe;
use crate::core::lock;
use observe::{Seen, changes};

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

#[cfg(test)]
mod tests;
