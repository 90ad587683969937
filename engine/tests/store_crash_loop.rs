//! Crash loop (in the style of sled's crash tests): a child process writes to
//! a real on-disk store and reports each operation to the parent over a pipe
//! only once the WAL says it is durable. The parent SIGKILLs the child at a
//! random moment, reopens the store and checks that every acknowledged
//! operation is present with its value. Repeated `SOFTADASTRA_CRASH_CYCLES`
//! times (default 300); the seed is printed and `SOFTADASTRA_CRASH_SEED`
//! replays the same kill timings.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use softadastra::store::{Store, StoreConfig, ns};
use softadastra::wal::Durability;

const CHILD_ENV: &str = "SOFTADASTRA_CRASH_CHILD_DIR";

fn config(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.durability = Durability::Group {
        max_batch: 8,
        max_delay: Duration::from_millis(2),
    };
    c.segment_bytes = 16 << 10;
    c.checkpoint_after_ops = 250;
    c
}

/// The child's body; a no-op unless the parent started this process.
#[test]
fn crash_loop_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let (mut store, _) = Store::open_dir(config(&dir)).expect("child open");
    let mut n = store.len(ns::APP) as u64;
    let mut unacked: Vec<(u64, softadastra::core::Seq)> = Vec::new();
    loop {
        let seq = store
            .put(ns::APP, &format!("k{n:08}"), n.to_le_bytes().to_vec())
            .expect("put");
        unacked.push((n, seq));
        n += 1;
        store.poll_flush(Instant::now()).expect("flush");
        let durable = store.durable_seq();
        unacked.retain(|(k, s)| {
            if *s <= durable {
                println!("ack {k}");
                false
            } else {
                true
            }
        });
        store.maybe_checkpoint().expect("snapshot");
    }
}

#[test]
fn acknowledged_operations_survive_sigkill() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let cycles: u32 = std::env::var("SOFTADASTRA_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("SOFTADASTRA_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!(
        "crash loop: {cycles} cycles, seed {seed} (replay with SOFTADASTRA_CRASH_SEED={seed})"
    );
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: BTreeMap<u64, ()> = BTreeMap::new();
    let mut total_recovered = 0;
    for cycle in 0..cycles {
        let mut child = Command::new(&exe)
            .args([
                "crash_loop_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let ack = line
                    .strip_prefix("ack ")
                    .and_then(|n| n.parse::<u64>().ok());
                if let Some(n) = ack
                    && tx.send(n).is_err()
                {
                    break;
                }
            }
        });
        // Wait for the first acknowledgement (the child is running), then
        // kill it at a random moment.
        let first = rx.recv_timeout(Duration::from_secs(30));
        assert!(
            first.is_ok(),
            "cycle {cycle} (seed {seed}): child made no progress"
        );
        std::thread::sleep(Duration::from_micros(rng.u64(0..15_000)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        for n in first.into_iter().chain(rx.try_iter()) {
            acked.insert(n, ());
        }
        let (store, recovery) = Store::open_dir(config(dir.path()))
            .unwrap_or_else(|e| panic!("cycle {cycle} (seed {seed}): reopen failed: {e}"));
        for n in acked.keys() {
            let entry = store.get(ns::APP, &format!("k{n:08}"));
            assert_eq!(
                entry.and_then(|e| e.value.clone()),
                Some(n.to_le_bytes().to_vec()),
                "cycle {cycle} (seed {seed}): acknowledged op {n} lost (recovery: {recovery:?})"
            );
        }
        total_recovered = store.len(ns::APP);
    }
    eprintln!(
        "crash loop: {cycles} cycles, {} acknowledged ops, {} recovered, 0 lost",
        acked.len(),
        total_recovered
    );
}
