//! Unit tests for the running totals ([`crate::store::Store::tally`]):
//! kept as entries change, counted beside changes, saved at close.

use super::super::tests::{config, cut_power, fill_and_thin, open};
use super::*;
use crate::store::{Op, Store, StoreConfig, Totals, ns};
use crate::wal::{Durability, MemStorage};

/// A value counts for its length, unless it is "skip".
fn by_len(_key: &str, v: &[u8]) -> Option<u64> {
    (v != b"skip").then_some(v.len() as u64)
}

/// The totals kept as entries change always equal a recount.
#[test]
fn running_totals_follow_every_kind_of_change() {
    let storage = MemStorage::new();
    let (mut store, _) = open(&storage, config()).unwrap();
    let ns = "things";
    store.put(ns, "a/1", b"xx".to_vec()).unwrap();
    let t = store.tally(ns, Some("a"), by_len);
    assert_eq!((t.items, t.bytes), (1, 2));
    store.put(ns, "a/2", b"yyy".to_vec()).unwrap();
    store.put(ns, "a/1", b"zzzz".to_vec()).unwrap(); // replaced
    store.put(ns, "b/1", b"skip".to_vec()).unwrap(); // not counted
    store.put(ns, "b/2", b"q".to_vec()).unwrap();
    let recount = |store: &Store, group: &str| {
        let mut t = Totals::default();
        for (_, e) in store.list(ns, &format!("{group}/")) {
            if let Some(b) = e.value.as_deref().and_then(|v| by_len("", v)) {
                t.items += 1;
                t.bytes += b;
            }
        }
        t
    };
    let check = |store: &mut Store| {
        for g in ["a", "b"] {
            let want = recount(store, g);
            assert_eq!(store.tally(ns, Some(g), by_len), want, "group {g}");
        }
    };
    check(&mut store);
    store.remove(ns, "a/2").unwrap(); // tombstone
    check(&mut store);
    store
        .apply(Op::Forget {
            ns: ns.into(),
            key: "a/1".into(),
        })
        .unwrap();
    check(&mut store);
    store
        .apply(Op::DropPrefix {
            ns: ns.into(),
            prefix: "b/".into(),
        })
        .unwrap();
    check(&mut store);
    assert_eq!(store.tally(ns, None, by_len), Totals::default());
}

/// Values of one byte, counted as one byte each.
fn only_short(_key: &str, v: &[u8]) -> Option<u64> {
    (v.len() == 1).then_some(1)
}

const BY_LEN: SavedTally = SavedTally {
    name: "by_len.v1",
    count: by_len,
};

const ONLY_SHORT: SavedTally = SavedTally {
    name: "only_short.v1",
    count: only_short,
};

/// One namespace counted two ways keeps two sets of totals, each true
/// after later changes.
#[test]
fn a_namespace_counted_two_ways_keeps_both() {
    let storage = MemStorage::new();
    let (mut store, _) = open(&storage, config()).unwrap();
    let ns = "things";
    store.put(ns, "a/1", b"xx".to_vec()).unwrap();
    store.put(ns, "a/2", b"y".to_vec()).unwrap();
    assert_eq!(store.tally(ns, Some("a"), by_len).items, 2);
    assert_eq!(store.tally(ns, Some("a"), only_short).items, 1);
    store.put(ns, "a/3", b"z".to_vec()).unwrap();
    store.remove(ns, "a/1").unwrap();
    let (all, short) = (
        store.tally(ns, Some("a"), by_len),
        store.tally(ns, Some("a"), only_short),
    );
    assert_eq!((all.items, all.bytes), (2, 2));
    assert_eq!((short.items, short.bytes), (2, 2));
}

/// Totals counted over a snapshot, without the store, while the store
/// goes on changing — a counted entry replaced, removed, forgotten, new
/// ones — come out equal to a recount; a thread asking for them waits
/// until they are counted; a count dropped unrun is done again later.
#[test]
fn totals_counted_beside_changes_equal_a_recount() {
    let storage = MemStorage::new();
    let (mut store, _) = open(&storage, config()).unwrap();
    let ns = "things";
    for i in 0..50 {
        store.put(ns, &format!("a/{i}"), vec![b'x'; i + 1]).unwrap();
    }
    let walk = store.tally_later(ns, &[BY_LEN, ONLY_SHORT]).unwrap();
    assert!(store.tally_later(ns, &[BY_LEN]).is_none(), "kept already");
    // Changes after the snapshot, before it is counted.
    store.put(ns, "a/0", b"longer".to_vec()).unwrap(); // replaced
    store.remove(ns, "a/1").unwrap(); // counted in the snapshot, gone
    store.put(ns, "a/new", b"z".to_vec()).unwrap();
    store
        .apply(Op::Forget {
            ns: ns.into(),
            key: "a/2".into(),
        })
        .unwrap();
    let gate = store.tally_gate();
    let waiter = std::thread::spawn(move || gate.wait());
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(!waiter.is_finished(), "the gate waits for the count");
    walk.run();
    waiter.join().unwrap();
    let mut want = Totals::default();
    for (_, e) in store.list(ns, "a/") {
        if let Some(b) = e.value.as_deref().and_then(|v| by_len("", v)) {
            want.items += 1;
            want.bytes += b;
        }
    }
    assert_eq!(store.tally(ns, Some("a"), by_len), want);
    assert_eq!(
        store.tally(ns, Some("a"), only_short).items,
        1,
        "a/0 no longer, a/new"
    );
    // Dropped unrun: forgotten, and counted whole when next asked for.
    let other = "others";
    store.put(other, "g/1", b"abc".to_vec()).unwrap();
    drop(store.tally_later(other, &[BY_LEN]).unwrap());
    store.tally_gate().wait();
    assert_eq!(store.tally(other, Some("g"), by_len).bytes, 3);
}

/// A running node keeps a gate on its totals for its whole life, and
/// counts them once over a snapshot: neither may keep its index from
/// being compacted (compaction needs the state alone; it never ran on a
/// running node while the gate held the state).
#[test]
fn totals_kept_and_waited_on_do_not_stop_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let always = StoreConfig {
        compact_from_bytes: 0,
        durability: Durability::None,
        ..StoreConfig::new(dir.path().join("always"))
    };
    let (mut store, _) = Store::open_dir(always).unwrap();
    let gate = store.tally_gate();
    if let Some(walk) = store.tally_later(ns::APP, &[BY_LEN]) {
        walk.run();
    }
    gate.wait();
    fill_and_thin(&mut store);
    let compacted = store.compact_when_wasteful().unwrap();
    assert!(compacted.is_some(), "not compacted");
    assert_eq!(store.tally(ns::APP, None, by_len).items, 500);
    drop(gate);
}

/// The sum of `count` over the live entries of `ns` under `prefix`,
/// walked.
fn recount(store: &Store, ns: &str, prefix: &str, count: TallyFn) -> Totals {
    let mut want = Totals::default();
    for (k, e) in store.list(ns, prefix) {
        if let Some(b) = e.value.as_deref().and_then(|v| count(&k, v)) {
            want.items += 1;
            want.bytes += b;
        }
    }
    want
}

/// Issue 21: totals kept under a name are saved at close and taken back,
/// uncounted, at the next open — only while the index is as it was then.
/// A change made by a process that did not keep them, a replay after a
/// power cut, or a change before they are asked for makes them count
/// again; taken back, they keep following changes.
#[test]
fn totals_saved_at_close_come_back_only_while_nothing_changed() {
    let storage = MemStorage::new();
    let ns = "things";
    saved_after_count(&storage, ns, 40, 3, &[BY_LEN, ONLY_SHORT], |store| {
        store.put(ns, "g0/short", b"s".to_vec()).unwrap();
    });
    // Nothing changed: taken back, equal to a recount, and kept in step.
    {
        let (mut store, _) = open(&storage, config()).unwrap();
        taken_back_and_true(&mut store, ns, &[BY_LEN, ONLY_SHORT]);
        store.remove(ns, "g0/short").unwrap();
        assert_eq!(
            store.tally(ns, None, only_short),
            recount(&store, ns, "", only_short)
        );
    }
    // Changed by a process that kept no totals: counted again.
    {
        let (mut store, _) = open(&storage, config()).unwrap();
        store.put(ns, "g2/late", b"late".to_vec()).unwrap();
    }
    {
        let (mut store, _) = open(&storage, config()).unwrap();
        let walk = store.tally_later(ns, &[BY_LEN]).expect("counted again");
        walk.run();
        assert_eq!(
            store.tally(ns, None, by_len),
            recount(&store, ns, "", by_len)
        );
        // A change before they are asked for: the saved ONLY_SHORT are
        // of the index before it.
        store.put(ns, "g2/x", b"x".to_vec()).unwrap();
        assert!(
            store.tally_later(ns, &[ONLY_SHORT]).is_some(),
            "counted again"
        );
    }
    // Saved, then changed and cut off before a clean close: the replay
    // makes them count again.
    {
        let (mut store, _) = open(&storage, config()).unwrap();
        assert!(store.tally_later(ns, &[BY_LEN]).is_none());
    }
    let (mut store, _) = open(&storage, config()).unwrap();
    store
        .put(ns, "g1/lost?", b"kept by the log".to_vec())
        .unwrap();
    store.flush().unwrap();
    cut_power(store, &storage, 7);
    let (mut store, recovery) = open(&storage, config()).unwrap();
    assert!(
        recovery.wal.replayed > 0,
        "the cut lost the index's last commit"
    );
    let walk = store.tally_later(ns, &[BY_LEN]);
    walk.expect("a replayed index counts its totals again")
        .run();
    assert_eq!(
        store.tally(ns, None, by_len),
        recount(&store, ns, "", by_len)
    );
}

/// A process that keeps only the saved totals (a CLI command) counts
/// none, keeps them in step with what it writes, and leaves them saved;
/// one that writes nothing leaves them as they were. Totals that were not
/// saved are not kept by it, and are counted by the next that asks.
#[test]
fn saved_totals_kept_without_counting_stay_true_and_saved() {
    let storage = MemStorage::new();
    let ns = "things";
    saved_after_count(&storage, ns, 30, 2, &[BY_LEN], |_| {});
    // Kept without counting, through writes to this namespace and to
    // another one.
    {
        let (mut store, _) = open(&storage, config()).unwrap();
        store.keep_saved_totals(ns, &[BY_LEN, ONLY_SHORT]);
        store.put(ns, "g0/new", b"nn".to_vec()).unwrap();
        store.remove(ns, "g1/1").unwrap();
        store.put("elsewhere", "k", b"v".to_vec()).unwrap();
    }
    // Only read.
    {
        let (mut store, _) = open(&storage, config()).unwrap();
        store.keep_saved_totals(ns, &[BY_LEN]);
    }
    let (mut store, _) = open(&storage, config()).unwrap();
    taken_back_and_true(&mut store, ns, &[BY_LEN]);
    assert!(
        store.tally_later(ns, &[ONLY_SHORT]).is_some(),
        "never saved: counted"
    );
}

/// In `storage`: `n` values of 1 to `n` bytes in `ns`, spread over
/// `groups` groups, their totals by `counts` counted, then `then` done,
/// and the store closed (the totals saved).
fn saved_after_count(
    storage: &MemStorage,
    ns: &str,
    n: usize,
    groups: usize,
    counts: &[SavedTally],
    then: impl FnOnce(&mut Store),
) {
    let (mut store, _) = open(storage, config()).unwrap();
    for i in 0..n {
        store
            .put(ns, &format!("g{}/{i}", i % groups), vec![b'x'; i + 1])
            .unwrap();
    }
    store.tally_later(ns, counts).unwrap().run();
    then(&mut store);
}

/// `counts` are taken back as saved (not counted), and the totals by
/// length, whole and of group `g1`, equal a recount.
fn taken_back_and_true(store: &mut Store, ns: &str, counts: &[SavedTally]) {
    assert!(
        store.tally_later(ns, counts).is_none(),
        "taken back as saved, not counted"
    );
    assert_eq!(
        store.tally(ns, None, by_len),
        recount(store, ns, "", by_len)
    );
    assert_eq!(
        store.tally(ns, Some("g1"), by_len),
        recount(store, ns, "g1/", by_len)
    );
}
