//! `softadastra events`: follow what the running agent does — files synced
//! in and out, deletions, conflicts, folder states, peers, errors, offers,
//! held deletions — one line each, or one JSON object per line.
//!
//! It long-polls the control API ([`Request::Events`]) and resumes from
//! the last number it printed, so it misses nothing the agent still keeps;
//! when the agent no longer has some (this client fell behind its ring, or
//! the agent restarted) it says so — a `{"type":"gap"}` line in JSON — and
//! goes on. It also owns the one-line wording of an event that the tray
//! and its notifications show.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, bail};
use softadastra::runtime::events::{Event, Page, Side, What};

use crate::control::{self, Request};
use crate::home::Home;

/// How long one request waits for an event.
const LONG_POLL_MS: u64 = 25_000;

/// The agent's events after `since` (none: from now on), waiting up to
/// `wait_ms` for one. `Ok(None)`: no agent runs.
pub fn fetch(home: &Home, since: Option<u64>, wait_ms: u64) -> Result<Option<Page>> {
    let Some(answer) = control::call(home, &Request::Events { since, wait_ms })? else {
        return Ok(None);
    };
    Ok(Some(serde_json::from_value(answer).map_err(|e| {
        anyhow::anyhow!("the agent's events are not in a form this client reads: {e}")
    })?))
}

/// `events [--json] [--since N] [--no-follow]`.
pub fn run_events(home: &Home, json: bool, since: Option<u64>, follow: bool) -> Result<ExitCode> {
    let mut since = since;
    let mut out = std::io::stdout().lock();
    let mut followed = false;
    loop {
        let wait = if follow { LONG_POLL_MS } else { 0 };
        let Some(page) = fetch(home, since, wait)? else {
            if followed {
                writeln!(out, "{}", gap_line(json, "the agent stopped"))?;
                return Ok(ExitCode::from(1));
            }
            bail!("the agent is not running (start it with `softadastra run`)");
        };
        if page.gap {
            writeln!(
                out,
                "{}",
                gap_line(
                    json,
                    "some events were dropped; resync with `softadastra status`"
                )
            )?;
        }
        for e in &page.events {
            if json {
                writeln!(out, "{}", serde_json::to_string(e)?)?;
            } else {
                writeln!(out, "{}", line(e))?;
            }
        }
        out.flush()?;
        followed = true;
        let done = page.events.is_empty() || since == Some(page.last);
        since = Some(page.last);
        if !follow && done {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

fn gap_line(json: bool, why: &str) -> String {
    if json {
        serde_json::json!({"type": "gap", "why": why}).to_string()
    } else {
        format!("-- {why}")
    }
}

/// `#SEQ HH:MM:SS  what`, times in UTC.
fn line(e: &Event) -> String {
    let stamp = softadastra::sync::resolve::utc_stamp((e.at_ms / 1000) as i64);
    let time = stamp.get(9..).unwrap_or(&stamp);
    let hms = format!(
        "{}:{}:{}",
        time.get(0..2).unwrap_or("??"),
        time.get(2..4).unwrap_or("??"),
        time.get(4..6).unwrap_or("??")
    );
    format!("#{} {hms}  {}", e.seq, describe(&e.what))
}

/// One line a person reads: "docs: a.txt came in (12 B)".
pub fn describe(what: &What) -> String {
    let size = |n: u64| crate::folder_cmd::human_bytes(n);
    match what {
        What::FileIn {
            folder,
            path,
            size: n,
        } => format!("{folder}: {path} came in ({})", size(*n)),
        What::FileOut {
            folder,
            path,
            size: n,
        } => {
            format!("{folder}: {path} changed here, sent out ({})", size(*n))
        }
        What::Deleted {
            folder,
            path,
            by: Side::Here,
        } => format!("{folder}: {path} deleted here"),
        What::Deleted {
            folder,
            path,
            by: Side::Peer,
        } => format!("{folder}: {path} deleted by a peer"),
        What::ManyChanged { folder, more, by } => format!(
            "{folder}: {more} more file(s) changed {}",
            match by {
                Side::Here => "here",
                Side::Peer => "by peers",
            }
        ),
        What::ConflictMade { folder, path, copy } => {
            format!("{folder}: conflict on {path}; the other version is kept as {copy}")
        }
        What::ConflictResolved { folder, path } => format!("{folder}: conflict on {path} settled"),
        What::FolderState { folder, from, to } => match from {
            Some(from) => format!("{folder}: {} -> {}", from.as_str(), to.as_str()),
            None => format!("{folder}: {}", to.as_str()),
        },
        What::FolderGone { folder } => format!("{folder}: no longer shared here"),
        What::Error { folder, message } => format!("{folder}: error: {message}"),
        What::FilesWaiting { folder, files, why } => {
            format!("{folder}: {files} file(s) wait for you ({why}; softadastra sync status)")
        }
        What::PeerConnected { peer, name } => format!("{} connected", who(name, peer)),
        What::PeerDisconnected { peer, name } => format!("{} disconnected", who(name, peer)),
        What::Offer { folder, by } => format!(
            "{} offers folder {folder} (softadastra folder accept {folder} PATH)",
            by.join(", ")
        ),
        What::DeletionsHeld {
            folder,
            local,
            remote,
        } => format!(
            "{folder}: {} deletion(s) held back (softadastra folder accept-deletions {folder}, or restore-deletions)",
            local + remote
        ),
    }
}

fn who(name: &str, peer: &str) -> String {
    if name.is_empty() {
        format!("device {}", peer.get(..12).unwrap_or(peer))
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_when_and_what() {
        let e = Event {
            seq: 42,
            at_ms: 1_764_876_543_000,
            what: What::FileIn {
                folder: "docs".into(),
                path: "a.txt".into(),
                size: 12,
            },
        };
        let text = line(&e);
        assert!(text.starts_with("#42 "), "{text}");
        assert!(text.ends_with("docs: a.txt came in (12 B)"), "{text}");
        assert_eq!(text.split(' ').nth(1).map(str::len), Some(8), "{text}");
    }
}
