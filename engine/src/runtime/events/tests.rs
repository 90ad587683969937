//! The event log's tests: resuming, gaps, waking, and events made by
//! comparing statuses.

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

fn folder(id: &str, state: FolderState, held: u64) -> crate::runtime::status::FolderStatus {
    let mut f = crate::runtime::status::FolderStatus {
        id: id.into(),
        state,
        error: (state == FolderState::Error).then(|| "cannot watch".into()),
        ..Default::default()
    };
    f.deletions_held.local = held;
    f
}

fn node(folders: Vec<crate::runtime::status::FolderStatus>, offers: &[&str]) -> NodeStatus {
    let offered_by = |id: &&str| crate::runtime::offers::Offer {
        id: id.to_string(),
        by: vec![crate::runtime::offers::OfferedBy {
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
