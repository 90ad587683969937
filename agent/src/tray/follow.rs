//! Following the running agent for the tray, on a thread of its own so
//! the GUI never waits on the control socket.
//!
//! It long-polls the agent's event stream and reads the status (and, when
//! there are conflicts, their list) only when something happened — at
//! most once a second while events flow, and every few seconds when quiet
//! — instead of asking for the whole status every second. The number of
//! the last event seen is kept across the agent's restarts, so events of
//! its new run are not missed (the stream says there was a gap). It never
//! changes anything.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use softadastra::runtime::conflicts::Conflict;
use softadastra::runtime::events::Event;
use softadastra::runtime::status::NodeStatus;

use crate::control::{self, Request};
use crate::home::Home;

/// What the follower tells the GUI.
#[derive(Debug)]
pub enum Update {
    /// The agent's state now (`None`: no agent answers).
    Status {
        /// Its status.
        status: Option<Box<NodeStatus>>,
        /// Its conflicts (read only when the status counts some).
        conflicts: Vec<Conflict>,
    },
    /// New events, oldest first.
    Events(Vec<Event>),
}

/// How long one events request waits.
const POLL: Duration = Duration::from_secs(2);
/// Status read at most this often while events flow.
const BUSY_STATUS: Duration = Duration::from_secs(1);
/// Status read at least this often when quiet.
const QUIET_STATUS: Duration = Duration::from_secs(5);
/// Wait between tries while no agent answers.
const ABSENT_RETRY: Duration = Duration::from_secs(1);

/// Start following the agent of `home`; the thread ends when the receiver
/// is dropped.
pub fn start(home: Home) -> mpsc::Receiver<Update> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("tray-follow".into())
        .spawn(move || follow(&home, &tx));
    if let Err(e) = spawned {
        eprintln!("tray: cannot follow the agent: {e}");
    }
    rx
}

fn follow(home: &Home, tx: &mpsc::Sender<Update>) {
    let mut since: Option<u64> = None;
    let mut status_read: Option<Instant> = None;
    let mut stale = true;
    let mut refused = false;
    loop {
        let due = status_read.is_none_or(|t| {
            let age = t.elapsed();
            age >= QUIET_STATUS || (stale && age >= BUSY_STATUS)
        });
        if due {
            let (status, conflicts) = read_status(home);
            let absent = status.is_none();
            status_read = Some(Instant::now());
            stale = false;
            if tx.send(Update::Status { status, conflicts }).is_err() {
                return;
            }
            if absent {
                std::thread::sleep(ABSENT_RETRY);
                status_read = None;
                continue;
            }
        }
        let wait = if stale { BUSY_STATUS } else { POLL };
        match crate::events_cmd::fetch(home, since, wait.as_millis() as u64) {
            Ok(Some(page)) => {
                since = Some(page.last);
                if page.gap {
                    stale = true;
                }
                if !page.events.is_empty() {
                    stale = true;
                    if tx.send(Update::Events(page.events)).is_err() {
                        return;
                    }
                }
            }
            // Gone: the status read says so at once.
            Ok(None) => status_read = None,
            // Refused (an agent of an older release has no event stream):
            // the status is still read, every few seconds, not in a loop.
            Err(e) => {
                if !refused {
                    eprintln!(
                        "tray: the agent's events cannot be followed ({e:#}); reading its status every few seconds instead"
                    );
                    refused = true;
                }
                std::thread::sleep(POLL);
                stale = true;
            }
        }
    }
}

/// The agent's status and, if it counts any, its conflicts.
fn read_status(home: &Home) -> (Option<Box<NodeStatus>>, Vec<Conflict>) {
    let status: Option<NodeStatus> = control::call(home, &Request::Status)
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_value(v).ok());
    let Some(status) = status else {
        return (None, Vec::new());
    };
    let conflicts = if status.folders.iter().any(|f| f.conflicts > 0) {
        control::call(home, &Request::Conflicts { folder: None })
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    (Some(Box::new(status)), conflicts)
}
