//! Desktop notifications for what needs a person: a conflict, a folder
//! error, files waiting for space or a permission, a folder offered,
//! deletions held back — once per event, rate
//! limited, off with `[desktop] notifications = false`.
//!
//! [`Notifier`] decides (pure: events and the time in, notices out); on
//! Linux `send` hands a notice to the freedesktop notification service
//! over the session D-Bus (through GIO, which the tray's GTK already
//! links). Elsewhere there is no notification service behind it yet: the
//! tray says so once and the menu's "Needs attention" remains. Nothing
//! here touches the agent.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use softadastra::runtime::events::{Event, What};

/// At most this many notifications per [`WINDOW`]; the rest are told in
/// one summary when the window allows another.
pub const BURST: usize = 3;
/// See [`BURST`].
pub const WINDOW: Duration = Duration::from_secs(30);

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Its title.
    pub summary: String,
    /// Its text.
    pub body: String,
}

/// The notice an event deserves, if any.
pub fn notice_of(what: &What) -> Option<Notice> {
    let (summary, body) = match what {
        What::ConflictMade { folder, path, copy } => (
            format!("Conflict in {folder}"),
            format!(
                "{path} was changed on two devices. Both versions are kept: the other one as {copy}."
            ),
        ),
        What::Error { folder, message } => (format!("{folder} cannot sync"), message.clone()),
        What::FilesWaiting { folder, files, why } => (
            format!("{folder}: {files} file(s) cannot sync"),
            format!("They wait until something changes: {why}."),
        ),
        What::Offer { folder, by } => (
            format!("Folder {folder} offered"),
            format!(
                "{} shares {folder} with you. Accept it from the tray's \"Needs attention\" menu.",
                by.join(", ")
            ),
        ),
        What::DeletionsHeld {
            folder,
            local,
            remote,
        } => (
            format!("Deletions held back in {folder}"),
            format!(
                "{} file(s) would be deleted. Nothing is removed until you decide (tray: \"Needs attention\").",
                local + remote
            ),
        ),
        _ => return None,
    };
    Some(Notice { summary, body })
}

/// Which events become notifications, and when.
#[derive(Debug)]
pub struct Notifier {
    enabled: bool,
    /// When the notifications of the current window went out.
    sent: VecDeque<Instant>,
    /// Notices held back by the rate limit, not yet summed up.
    held: u64,
    /// The newest event number already looked at.
    seen: u64,
}

impl Notifier {
    /// A notifier; `enabled` false: it never gives a notice.
    pub fn new(enabled: bool) -> Notifier {
        Notifier {
            enabled,
            sent: VecDeque::new(),
            held: 0,
            seen: 0,
        }
    }

    /// Whether notices are given at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The notices `events` give at `now`: one per event that needs a
    /// person and was not looked at before, as the rate limit allows, then
    /// a summary of those it held back once it allows again.
    pub fn take(&mut self, events: &[Event], now: Instant) -> Vec<Notice> {
        let mut out = Vec::new();
        if !self.enabled {
            return out;
        }
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.sent.pop_front();
        }
        if self.held > 0 && self.sent.len() < BURST {
            out.push(Notice {
                summary: "Softadastra needs you".into(),
                body: format!(
                    "{} more thing(s) need your attention: see the tray's \"Needs attention\" menu.",
                    self.held
                ),
            });
            self.sent.push_back(now);
            self.held = 0;
        }
        for e in events {
            if e.seq <= self.seen {
                continue;
            }
            self.seen = e.seq;
            let Some(notice) = notice_of(&e.what) else {
                continue;
            };
            if self.sent.len() < BURST {
                self.sent.push_back(now);
                out.push(notice);
            } else {
                self.held += 1;
            }
        }
        out
    }
}

/// Show `notice` through the desktop's notification service.
#[cfg(all(feature = "tray", target_os = "linux"))]
pub fn send(notice: &Notice) -> anyhow::Result<()> {
    use gtk::gio;
    use gtk::glib::{ToVariant, Variant};
    let bus = gio::bus_get_sync(gio::BusType::Session, None::<&gio::Cancellable>)
        .map_err(|e| anyhow::anyhow!("no session D-Bus for notifications: {e}"))?;
    let hints: std::collections::HashMap<String, Variant> = Default::default();
    let args = (
        "Softadastra",
        0u32,
        "softadastra",
        notice.summary.as_str(),
        notice.body.as_str(),
        Vec::<String>::new(),
        hints,
        -1i32,
    )
        .to_variant();
    bus.call_sync(
        Some("org.freedesktop.Notifications"),
        "/org/freedesktop/Notifications",
        "org.freedesktop.Notifications",
        "Notify",
        Some(&args),
        None,
        gio::DBusCallFlags::NONE,
        5_000,
        None::<&gio::Cancellable>,
    )
    .map_err(|e| anyhow::anyhow!("the notification service refused: {e}"))?;
    Ok(())
}

/// Off Linux: no notification service is wired in yet.
#[cfg(all(feature = "tray", not(target_os = "linux")))]
pub fn send(_notice: &Notice) -> anyhow::Result<()> {
    anyhow::bail!("desktop notifications are only built for Linux so far")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, what: What) -> Event {
        Event {
            seq,
            at_ms: 0,
            what,
        }
    }

    fn conflict(seq: u64) -> Event {
        event(
            seq,
            What::ConflictMade {
                folder: "docs".into(),
                path: format!("f{seq}.txt"),
                copy: format!("f{seq}.sync-conflict-20261204-100000-ABCDEFG.txt"),
            },
        )
    }

    #[test]
    fn one_notice_per_event_that_needs_a_person() {
        let mut n = Notifier::new(true);
        let t = Instant::now();
        let file = event(
            1,
            What::FileIn {
                folder: "docs".into(),
                path: "a".into(),
                size: 1,
            },
        );
        let got = n.take(&[file, conflict(2)], t);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].summary, "Conflict in docs");
        assert!(got[0].body.contains("f2.txt"), "{:?}", got[0]);
        // The same events again (a client re-reading): nothing.
        assert!(n.take(&[conflict(2)], t).is_empty());
    }

    #[test]
    fn a_burst_is_limited_and_the_rest_summed_up_later() {
        let mut n = Notifier::new(true);
        let t = Instant::now();
        let burst: Vec<Event> = (1..=10).map(conflict).collect();
        assert_eq!(n.take(&burst, t).len(), BURST);
        assert!(n.take(&[], t + WINDOW / 2).is_empty());
        let later = n.take(&[], t + WINDOW);
        assert_eq!(later.len(), 1);
        assert!(later[0].body.starts_with("7 more"), "{:?}", later[0]);
    }

    #[test]
    fn turned_off_it_says_nothing() {
        let mut n = Notifier::new(false);
        assert!(n.take(&[conflict(1)], Instant::now()).is_empty());
    }
}
