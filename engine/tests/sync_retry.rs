//! When file work is handed out: work that failed waits out a backoff,
//! unless a peer connects (then it has a source again and goes at once: a
//! transfer broken by a replaced connection resumes without waiting a
//! second); work that failed for want of a change (a full disk, a denied
//! permission) waits for that change, not for a peer; a path inside a
//! directory still to be created waits for it; work beyond the window kept
//! in memory waits in the store, and is taken in as the window drains.

mod common;

use std::time::{Duration, Instant};

use common::{docs_node, docs_node_with, page, record};
use softadastra::core::NodeId;
use softadastra::sync::{Action, Cause, Failing, SyncEngine, WorkError};

/// The paths the actions hand out to be placed, in order.
fn placed(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Place { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

/// Each placing `actions` hand out, done exactly as asked (in `docs`).
fn placed_as_asked(actions: &[Action]) -> Vec<softadastra::sync::Completed> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Place { path, need, .. } => Some(softadastra::sync::Completed {
                folder: "docs".into(),
                path: path.clone(),
                done: need.clone(),
                record: need.record.clone(),
                conflict_copy: None,
            }),
            _ => None,
        })
        .collect()
}

fn places(actions: &[Action]) -> usize {
    placed(actions).iter().filter(|p| *p == "a.txt").count()
}

/// A node that has just been told of `a.txt` by `peer` and handed out its
/// placing: (store, engine, peer, when).
fn a_txt_handed_out() -> (softadastra::store::Store, SyncEngine, NodeId, Instant) {
    let me = NodeId::derive(b"me");
    let peer = NodeId::derive(b"peer");
    let (mut store, mut engine): (_, SyncEngine) = docs_node(me, peer);
    let t0 = Instant::now();
    let actions = engine
        .received(
            &mut store,
            peer,
            page(vec![("a.txt".into(), record(peer))]),
            t0,
        )
        .unwrap();
    assert_eq!(places(&actions), 1, "{actions:?}");
    (store, engine, peer, t0)
}

#[test]
fn a_peer_connecting_makes_failed_work_due_at_once() {
    let (mut store, mut engine, peer, t0) = a_txt_handed_out();

    // The transfer failed: nothing is handed out during the backoff.
    engine.failed(
        "docs",
        "a.txt",
        t0,
        &WorkError::transfer("simulated failure"),
    );
    let later = t0 + Duration::from_millis(100);
    assert_eq!(places(&engine.tick(&mut store, later).unwrap().actions), 0);

    // The peer comes back on a new connection: the work is due now.
    engine.disconnected(peer);
    engine.connected(&store, peer, later).unwrap();
    let report = engine.tick(&mut store, later).unwrap();
    assert_eq!(places(&report.actions), 1, "{:?}", report.actions);
    assert_eq!(report.retried, 1);

    // Failing again backs off further: a connection is no busy loop.
    engine.failed(
        "docs",
        "a.txt",
        later,
        &WorkError::transfer("peer sent nothing for 30s"),
    );
    let soon = later + Duration::from_millis(100);
    assert_eq!(places(&engine.tick(&mut store, soon).unwrap().actions), 0);

    // What fails, and why, is there for `status` to show.
    let p = engine.progress(&mut store, "docs");
    assert_eq!(p.failing, 1);
    assert_eq!(
        p.failing_files,
        vec![Failing {
            path: "a.txt".into(),
            why: "peer sent nothing for 30s".into(),
            cause: Cause::Transfer,
            waits_for_change: false,
            attempts: 2,
        }]
    );
}

/// A full disk is not cured by time or by a peer: the work waits for the
/// runtime to report a change (or the long backoff), and status says it
/// waits for one.
#[test]
fn work_blocked_by_a_full_disk_waits_for_a_change_not_a_peer() {
    let (mut store, mut engine, peer, t0) = a_txt_handed_out();
    let full = WorkError::new(
        Cause::NoSpace { needed: 4096 },
        "not enough space for a.txt",
    );
    engine.failed("docs", "a.txt", t0, &full);

    // Not after the short backoff's longest delay, nor when a peer connects.
    let later = t0 + Duration::from_secs(31);
    engine.disconnected(peer);
    engine.connected(&store, peer, later).unwrap();
    assert_eq!(places(&engine.tick(&mut store, later).unwrap().actions), 0);
    let p = engine.progress(&mut store, "docs");
    assert_eq!((p.failing, p.blocked), (1, 1));
    assert!(p.failing_files[0].waits_for_change);
    assert_eq!(engine.waiting_for_space().get("docs"), Some(&4096));

    // Space freed in another folder wakes nothing here; in this one, it does.
    assert_eq!(engine.retry_blocked("other", |_| true, later), 0);
    let woken = engine.retry_blocked("docs", |c| matches!(c, Cause::NoSpace { .. }), later);
    assert_eq!(woken, 1);
    assert_eq!(places(&engine.tick(&mut store, later).unwrap().actions), 1);

    // With no change reported, the long backoff still tries again.
    let t1 = later + Duration::from_secs(1);
    engine.failed("docs", "a.txt", t1, &full);
    let before = t1 + engine_config_blocked() - Duration::from_secs(1);
    assert_eq!(places(&engine.tick(&mut store, before).unwrap().actions), 0);
    let after = t1 + engine_config_blocked() * 5 / 4 + Duration::from_secs(1);
    assert_eq!(places(&engine.tick(&mut store, after).unwrap().actions), 1);

    // A write that found the disk full mid-way does not know the size it
    // needs; the engine does, and waits for that much.
    let mid_write = WorkError::io(
        "write /docs/a.txt",
        &std::io::Error::from(std::io::ErrorKind::StorageFull),
    );
    engine.failed("docs", "a.txt", after, &mid_write);
    assert_eq!(
        engine.waiting_for_space().get("docs"),
        Some(&record(peer).size)
    );
}

fn engine_config_blocked() -> Duration {
    softadastra::sync::SyncConfig::default().retry_blocked
}

/// A file inside a directory that is itself still to be created waits for
/// it: the executor never makes the directory on its own (the watcher
/// would record it as this node's addition and echo it back to peers).
#[test]
fn a_file_waits_for_its_directory_to_be_placed() {
    use softadastra::fs::scan::EntryKind;
    let me = NodeId::derive(b"me");
    let peer = NodeId::derive(b"peer");
    let (mut store, mut engine): (_, SyncEngine) = docs_node(me, peer);
    let t0 = Instant::now();
    let mut dir = record(peer);
    dir.kind = EntryKind::Dir;
    dir.size = 0;
    dir.hash = None;
    dir.chunks.clear();
    let actions = engine
        .received(
            &mut store,
            peer,
            page(vec![
                ("d".into(), dir.clone()),
                ("d/e/a.txt".into(), record(peer)),
                ("top.txt".into(), record(peer)),
            ]),
            t0,
        )
        .unwrap();
    assert_eq!(placed(&actions), ["d", "top.txt"]);
    let need = match actions
        .iter()
        .find(|a| matches!(a, Action::Place { path, .. } if path == "d"))
    {
        Some(Action::Place { need, .. }) => need.clone(),
        _ => unreachable!(),
    };
    let after = engine
        .completed(&mut store, "docs", "d", &need, dir, None, t0)
        .unwrap();
    assert_eq!(placed(&after), ["d/e/a.txt"]);
}

/// Work finished together is recorded together, and the slots it frees
/// are filled once for all of it: with more files than may be out at once,
/// completing a batch hands out exactly the rest, and the completed paths
/// are recorded and never handed out again.
#[test]
fn work_completed_together_is_recorded_and_refilled_once() {
    use softadastra::sync::Completed;
    let me = NodeId::derive(b"me");
    let peer = NodeId::derive(b"peer");
    let (mut store, mut engine): (_, SyncEngine) = docs_node(me, peer);
    let t0 = Instant::now();
    let files: Vec<(String, _)> = (0..600)
        .map(|i| (format!("f{i:03}.txt"), record(peer)))
        .collect();
    let first = engine.received(&mut store, peer, page(files), t0).unwrap();
    assert_eq!(placed(&first).len(), 512, "at most max_out at once");
    let done: Vec<Completed> = placed_as_asked(&first).into_iter().take(300).collect();
    let finished: Vec<String> = done.iter().map(|c| c.path.clone()).collect();
    let next = engine.completed_all(&mut store, done, t0).unwrap();
    let mut rest = placed(&next);
    rest.sort();
    let expected: Vec<String> = (512..600).map(|i| format!("f{i:03}.txt")).collect();
    assert_eq!(rest, expected, "the files never handed out, once each");
    for path in &finished {
        let rec = softadastra::folder::record(&store, "docs", path).expect("recorded");
        assert_eq!(rec.version, record(peer).version);
    }
    let later = engine
        .tick(&mut store, t0 + Duration::from_secs(60))
        .unwrap();
    assert!(
        placed(&later.actions).iter().all(|p| !finished.contains(p)),
        "completed work is not handed out again: {:?}",
        later.actions
    );
}

/// Issue 21: a sync that brings more files than the window of work kept
/// in memory holds at most the window (and the directories) in memory; the
/// rest waits in the store and is taken in as work completes, in path
/// order, until every file is placed once — a directory before what it
/// holds, even when it arrives after the window filled.
#[test]
fn work_beyond_the_window_waits_in_the_store_and_is_all_done() {
    use softadastra::fs::scan::EntryKind;
    use softadastra::sync::SyncConfig;
    let me = NodeId::derive(b"me");
    let peer = NodeId::derive(b"peer");
    let config = SyncConfig {
        work_window: 8,
        max_out: 3,
        ..SyncConfig::default()
    };
    let (mut store, mut engine): (_, SyncEngine) = docs_node_with(me, peer, config);
    let t0 = Instant::now();
    let mut files: Vec<(String, _)> = (0..40)
        .map(|i| (format!("f{i:02}.txt"), record(peer)))
        .collect();
    files.push(("m/inside.txt".into(), record(peer)));
    // The directory comes last, once the window is full.
    let mut dir = record(peer);
    dir.kind = EntryKind::Dir;
    dir.size = 0;
    dir.hash = None;
    dir.chunks.clear();
    files.push(("m".into(), dir));
    let mut out = engine.received(&mut store, peer, page(files), t0).unwrap();
    assert!(
        engine.work_in_memory() <= 8 + 1,
        "{} in memory",
        engine.work_in_memory()
    );
    assert_eq!(engine.progress(&mut store, "docs").needed_files, 42);
    let mut order = Vec::new();
    for _ in 0..100 {
        let done = placed_as_asked(&out);
        if done.is_empty() {
            break;
        }
        order.extend(done.iter().map(|c| c.path.clone()));
        out = engine.completed_all(&mut store, done, t0).unwrap();
        assert!(
            engine.work_in_memory() <= 8 + 1,
            "{} in memory",
            engine.work_in_memory()
        );
    }
    let mut placed_once = order.clone();
    placed_once.sort();
    placed_once.dedup();
    assert_eq!(placed_once.len(), 42, "every path once: {order:?}");
    assert_eq!(order.len(), 42, "none twice: {order:?}");
    let at = |p: &str| order.iter().position(|o| o == p).unwrap();
    assert!(at("m") < at("m/inside.txt"), "{order:?}");
    assert_eq!(engine.progress(&mut store, "docs").needed_files, 0);
    assert_eq!(engine.work_in_memory(), 0);
}
