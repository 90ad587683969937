//! Model-based property test: random operation sequences, with clean
//! restarts, snapshots, the index reopened to give its cache back, and
//! simulated power loss, run against the store on the
//! crash-simulating `MemStorage` and against a `BTreeMap` model.
//!
//! After a crash the store must equal the model after *some* prefix of the
//! operations issued — at least every acknowledged (durable) one, never an
//! operation out of order.
//!
//! Cases: `PROPTEST_CASES` (default 1,000). On failure proptest prints the
//! minimal failing sequence and saves its seed under `proptest-regressions/`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use softadastra::core::{Clock, ManualClock, Seq};
use softadastra::store::{Store, StoreConfig, ns};
use softadastra::wal::{Durability, MemStorage};

#[derive(Debug, Clone)]
enum Step {
    Put(u8, u8),
    Remove(u8),
    Batch(Vec<(u8, u8)>),
    Flush,
    Tick,
    Snapshot,
    /// Checkpoint, then close and open the index again (its cache given
    /// back, as a node at rest does).
    ReleaseCache,
    /// The store told of a peer, whose id a quarter of the values hold.
    KnowPeer,
    Restart,
    Crash(u64),
}

/// A peer's id: values holding it are kept with the id as a number once
/// the store knows the peer.
const PEER: softadastra::core::NodeId = softadastra::core::NodeId([0x5A; 32]);

/// The value `v` stands for: a quarter of them hold the peer's id.
fn value(v: u8) -> Vec<u8> {
    if v.is_multiple_of(4) {
        [vec![v], PEER.0.to_vec(), vec![v]].concat()
    } else {
        vec![v]
    }
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => (0u8..16, any::<u8>()).prop_map(|(k, v)| Step::Put(k, v)),
        4 => (0u8..16).prop_map(Step::Remove),
        2 => prop::collection::vec((0u8..16, any::<u8>()), 1..6).prop_map(Step::Batch),
        1 => Just(Step::Flush),
        1 => Just(Step::Tick),
        1 => Just(Step::Snapshot),
        1 => Just(Step::ReleaseCache),
        1 => Just(Step::KnowPeer),
        1 => Just(Step::Restart),
        1 => any::<u64>().prop_map(Step::Crash),
    ]
}

type Model = BTreeMap<String, Vec<u8>>;

/// Ops as issued, so the state after any prefix can be rebuilt.
#[derive(Clone, Debug)]
enum Issued {
    Put(String, Vec<u8>),
    Remove(String),
}

fn model_after(ops: &[Issued]) -> Model {
    let mut m = Model::new();
    for op in ops {
        match op {
            Issued::Put(k, v) => {
                m.insert(k.clone(), v.clone());
            }
            Issued::Remove(k) => {
                m.remove(k);
            }
        }
    }
    m
}

/// Each key's last change (the sequence of the last op issued on it),
/// keys removed included: what `changed_since` must list, oldest first.
fn changes_after(ops: &[Issued], since: usize) -> Vec<(String, u64)> {
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        let (Issued::Put(k, _) | Issued::Remove(k)) = op;
        last.insert(k.clone(), i as u64 + 1);
    }
    let mut out: Vec<(String, u64)> = last
        .into_iter()
        .filter(|(_, s)| *s > since as u64)
        .collect();
    out.sort_by_key(|(_, s)| *s);
    out
}

/// The store's by-version index agrees with the ops issued, from a few
/// starting points.
fn check_changes(store: &Store, issued: &[Issued]) -> Result<(), TestCaseError> {
    for since in [
        0,
        issued.len() / 2,
        issued.len().saturating_sub(1),
        issued.len(),
    ] {
        let got: Vec<(String, u64)> = store
            .changed_since(ns::APP, Seq(since as u64))
            .map(|(k, e)| (k.to_string(), e.version.0))
            .collect();
        prop_assert_eq!(got, changes_after(issued, since), "changed since {}", since);
    }
    Ok(())
}

fn store_state(store: &Store) -> Model {
    store
        .list(ns::APP, "")
        .map(|(k, e)| (k.to_string(), e.value.clone().unwrap_or_default()))
        .collect()
}

fn config(durability: Durability) -> StoreConfig {
    let mut c = StoreConfig::new("/model");
    c.durability = durability;
    c.segment_bytes = 512; // many segments, so rotation and compaction are exercised
    c
}

fn run(steps: Vec<Step>, durability: Durability) -> Result<(), TestCaseError> {
    let storage = MemStorage::new();
    let clock = ManualClock::new();
    let open = || {
        Store::open(
            config(durability),
            Arc::new(storage.clone()),
            Arc::new(clock.clone()),
        )
    };
    let (mut store, _) = open().map_err(|e| TestCaseError::fail(e.to_string()))?;
    // `issued[i]` has sequence i+1; `durable` counts issued ops known durable.
    let mut issued: Vec<Issued> = Vec::new();
    let mut durable = 0usize;
    for step in steps {
        match step {
            Step::Put(k, v) => {
                let key = format!("k{k}");
                store
                    .put(ns::APP, &key, value(v))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                issued.push(Issued::Put(key, value(v)));
            }
            Step::Remove(k) => {
                let key = format!("k{k}");
                if store
                    .remove(ns::APP, &key)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                    .is_some()
                {
                    issued.push(Issued::Remove(key));
                }
            }
            Step::Batch(items) => {
                let ops = items
                    .iter()
                    .map(|(k, v)| softadastra::store::Op::Put {
                        ns: ns::APP.into(),
                        key: format!("k{k}"),
                        value: value(*v),
                        origin: softadastra::core::NodeId::LOCAL,
                        timestamp: clock.wall(),
                    })
                    .collect();
                store
                    .apply_batch(ops)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                issued.extend(
                    items
                        .iter()
                        .map(|(k, v)| Issued::Put(format!("k{k}"), value(*v))),
                );
            }
            Step::Flush => {
                store
                    .flush()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Step::Tick => {
                clock.advance(Duration::from_millis(3));
                store
                    .poll_flush(clock.now())
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Step::Snapshot => {
                store
                    .checkpoint()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Step::KnowPeer => {
                store
                    .know_devices(&[PEER])
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Step::ReleaseCache => {
                let done = store
                    .release_cache()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(done, "nothing holds the state: the cache is given back");
            }
            Step::Restart => {
                store
                    .flush()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                drop(store);
                store = open().map_err(|e| TestCaseError::fail(e.to_string()))?.0;
                prop_assert_eq!(store_state(&store), model_after(&issued));
                check_changes(&store, &issued)?;
            }
            Step::Crash(seed) => {
                durable = durable.max(store.durable_seq().0 as usize);
                drop(store);
                storage.crash(seed);
                store = open()
                    .map_err(|e| TestCaseError::fail(format!("reopen after crash: {e}")))?
                    .0;
                let recovered = store.last_seq().0 as usize;
                prop_assert!(
                    recovered >= durable,
                    "lost acknowledged ops: recovered {} < durable {}",
                    recovered,
                    durable
                );
                prop_assert!(recovered <= issued.len());
                issued.truncate(recovered);
                prop_assert_eq!(store_state(&store), model_after(&issued));
                check_changes(&store, &issued)?;
                durable = recovered;
                continue;
            }
        }
        durable = durable.max(store.durable_seq().0 as usize);
        prop_assert_eq!(store.last_seq(), Seq(issued.len() as u64));
        prop_assert_eq!(store_state(&store), model_after(&issued));
        check_changes(&store, &issued)?;
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model_every_append(steps in prop::collection::vec(step(), 1..60)) {
        run(steps, Durability::EveryAppend)?;
    }

    #[test]
    fn store_matches_model_group_commit(steps in prop::collection::vec(step(), 1..60)) {
        run(steps, Durability::Group { max_batch: 4, max_delay: Duration::from_millis(5) })?;
    }
}
