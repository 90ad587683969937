//! App values through the sync engine, two nodes, messages passed by hand:
//! a value written on one node reaches the other; values travel inline in
//! pages bounded in bytes; a concurrent write is one winner on both nodes
//! plus the losing value kept under a conflict key; a removal syncs.

use std::sync::Arc;
use std::time::Instant;

use softadastra::core::{ManualClock, NodeId};
use softadastra::folder::values::{self, APP_SPACE, MAX_VALUE};
use softadastra::index::members;
use softadastra::store::{Store, StoreConfig};
use softadastra::sync::{Action, SyncConfig, SyncEngine, SyncMessage};
use softadastra::wal::MemStorage;

struct Node {
    id: NodeId,
    store: Store,
    engine: SyncEngine,
}

fn node(name: &str, clock: &ManualClock) -> Node {
    let id = NodeId::derive(name.as_bytes());
    let mut config = StoreConfig::new(format!("/{name}"));
    config.node = id;
    let (store, _) =
        Store::open(config, Arc::new(MemStorage::new()), Arc::new(clock.clone())).unwrap();
    Node {
        id,
        store,
        engine: SyncEngine::new(id, SyncConfig::default(), 1),
    }
}

/// Deliver messages between `a` and `b` until none is left; returns every
/// index page that went over the wire.
fn pump(a: &mut Node, b: &mut Node, first: Vec<(usize, Action)>) -> Vec<SyncMessage> {
    let now = Instant::now();
    let mut queue = first;
    let mut pages = Vec::new();
    while let Some((from, action)) = queue.pop() {
        let Action::Send { message, .. } = action else {
            panic!("file work for app values: {action:?}");
        };
        if matches!(message, SyncMessage::IndexPage { .. }) {
            pages.push(message.clone());
        }
        let (to, sender) = if from == 0 {
            (&mut *b, a.id)
        } else {
            (&mut *a, b.id)
        };
        let out = to
            .engine
            .received(&mut to.store, sender, message, now)
            .unwrap();
        queue.extend(out.into_iter().map(|a| (1 - from, a)));
    }
    pages
}

fn connect(a: &mut Node, b: &mut Node) -> Vec<SyncMessage> {
    let now = Instant::now();
    // Each shares the app space with the other (as a pairing does).
    members::set_member(&mut a.store, APP_SPACE, b.id, true).unwrap();
    members::set_member(&mut b.store, APP_SPACE, a.id, true).unwrap();
    let mut first: Vec<(usize, Action)> = a
        .engine
        .connected(&a.store, b.id, now)
        .unwrap()
        .into_iter()
        .map(|x| (0, x))
        .collect();
    first.extend(
        b.engine
            .connected(&b.store, a.id, now)
            .unwrap()
            .into_iter()
            .map(|x| (1, x)),
    );
    pump(a, b, first)
}

fn hint(a: &mut Node, b: &mut Node) -> Vec<SyncMessage> {
    let first = a
        .engine
        .local_changed(&a.store, APP_SPACE)
        .into_iter()
        .map(|x| (0, x))
        .collect();
    pump(a, b, first)
}

fn value(store: &Store, key: &str) -> Option<Vec<u8>> {
    values::get(store, key)
}

#[test]
fn values_sync_in_byte_bounded_pages() {
    let clock = ManualClock::new();
    let (mut a, mut b) = (node("a", &clock), node("b", &clock));
    let big = vec![7u8; 200 * 1024];
    for k in ["big1", "big2", "big3"] {
        values::put(&mut a.store, a.id, k, &big).unwrap();
    }
    values::put(&mut a.store, a.id, "small", b"hello").unwrap();
    let pages = connect(&mut a, &mut b);
    for k in ["big1", "big2", "big3"] {
        assert_eq!(value(&b.store, k).as_deref(), Some(&big[..]), "{k}");
    }
    assert_eq!(value(&b.store, "small").as_deref(), Some(&b"hello"[..]));
    // 600 KiB of values do not fit one 512 KiB page.
    let app_pages: Vec<usize> = pages
        .iter()
        .filter_map(|p| match p {
            SyncMessage::IndexPage {
                folder, records, ..
            } if folder == APP_SPACE && !records.is_empty() => Some(records.len()),
            _ => None,
        })
        .collect();
    assert!(app_pages.len() >= 2, "pages: {app_pages:?}");
    for p in &pages {
        let bytes = postcard::to_allocvec(p).unwrap();
        assert!(bytes.len() < 1 << 20, "a page of {} bytes", bytes.len());
    }

    // A removal syncs as a tombstone.
    values::remove(&mut a.store, a.id, "small").unwrap();
    hint(&mut a, &mut b);
    assert_eq!(value(&b.store, "small"), None);
    assert!(values::record(&b.store, "small").unwrap().unwrap().deleted);
}

#[test]
fn concurrent_writes_keep_one_winner_and_a_conflict_key() {
    let clock = ManualClock::new();
    let (mut a, mut b) = (node("a", &clock), node("b", &clock));
    values::put(&mut a.store, a.id, "title", b"from a").unwrap();
    clock.advance(std::time::Duration::from_secs(1));
    values::put(&mut b.store, b.id, "title", b"from b").unwrap();
    connect(&mut a, &mut b);
    // Settle: each side hints what it changed.
    for _ in 0..3 {
        hint(&mut a, &mut b);
        hint(&mut b, &mut a);
        let now = Instant::now();
        for n in [&mut a, &mut b] {
            n.engine.tick(&mut n.store, now).unwrap();
        }
    }
    let all = |s: &Store| -> Vec<(String, Vec<u8>)> {
        values::list(s, "")
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    };
    assert_eq!(all(&a.store), all(&b.store));
    // The later write wins the key; the other is kept beside it.
    assert_eq!(value(&a.store, "title").as_deref(), Some(&b"from b"[..]));
    let copies: Vec<(String, Vec<u8>)> = all(&a.store)
        .into_iter()
        .filter(|(k, _)| k.starts_with("title.sync-conflict-"))
        .collect();
    assert_eq!(copies.len(), 1, "{:?}", all(&a.store));
    assert_eq!(copies[0].1, b"from a");
    assert_eq!(
        values::record(&a.store, "title").unwrap().unwrap().version,
        values::record(&b.store, "title").unwrap().unwrap().version
    );
}

#[test]
fn bad_keys_and_oversized_values_are_refused_locally() {
    let clock = ManualClock::new();
    let mut a = node("a", &clock);
    let too_big = vec![0u8; MAX_VALUE + 1];
    let e = values::put(&mut a.store, a.id, "k", &too_big).unwrap_err();
    assert!(e.to_string().contains("exceeds"), "{e}");
    for key in ["", "nul\0", " padded", &"x".repeat(2000)] {
        assert!(
            values::put(&mut a.store, a.id, key, b"v").is_err(),
            "{key:?}"
        );
    }
    assert_eq!(values::list(&a.store, "").count(), 0);
    // Writing the same bytes again is not a new version.
    let s1 = values::put(&mut a.store, a.id, "k", b"v").unwrap();
    let s2 = values::put(&mut a.store, a.id, "k", b"v").unwrap();
    assert_eq!(s1, s2);
}

#[test]
fn a_write_cut_in_half_by_a_crash_is_reconciled_from_the_value() {
    use softadastra::core::VersionVector;
    use softadastra::folder::file_key;
    use softadastra::store::{Op, ns};
    let clock = ManualClock::new();
    let mut a = node("a", &clock);
    values::put(&mut a.store, a.id, "kept", b"v1").unwrap();
    // The first half of a put's batch only (the index record of "v2"),
    // as a torn WAL tail can leave it.
    let mut version = values::record(&a.store, "kept").unwrap().unwrap().version;
    version.bump(a.id);
    let half = values::value_record(b"v2", version, a.id, 5);
    a.store
        .apply(Op::Put {
            ns: ns::FILES.into(),
            key: file_key(APP_SPACE, "kept"),
            value: postcard::to_allocvec(&half).unwrap(),
            origin: a.id,
            timestamp: a.store.wall_time(),
        })
        .unwrap();
    // And an index record whose value never arrived at all.
    let orphan = values::value_record(b"never", VersionVector::default(), a.id, 5);
    a.store
        .apply(Op::Put {
            ns: ns::FILES.into(),
            key: file_key(APP_SPACE, "orphan"),
            value: postcard::to_allocvec(&orphan).unwrap(),
            origin: a.id,
            timestamp: a.store.wall_time(),
        })
        .unwrap();
    assert_eq!(values::reconcile(&mut a.store, a.id).unwrap(), 2);
    let kept = values::record(&a.store, "kept").unwrap().unwrap();
    assert_eq!(kept.hash, Some(softadastra::core::ContentHash::of(b"v1")));
    assert_eq!(
        kept.version.compare(&half.version),
        softadastra::core::Causality::After,
        "a new version, past the half-written one"
    );
    assert!(values::record(&a.store, "orphan").unwrap().unwrap().deleted);
    assert_eq!(
        values::reconcile(&mut a.store, a.id).unwrap(),
        0,
        "now consistent"
    );
}
