//! WAL and store benchmark: prints figures, asserts nothing.
//!
//! `cargo bench -p softadastra --bench wal_store` (add `-- --quick` for a
//! smaller run). Data goes to a temp dir on the same disk as `target/`
//! (not tmpfs), so fsync figures are real for this machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use softadastra::core::{NodeId, Seq, SystemClock, Timestamp};
use softadastra::store::{Op, Store, StoreConfig, ns};
use softadastra::wal::{Durability, StdStorage, Wal, WalConfig};

const RECORD: usize = 256;

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("wal-bench")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}

fn open_wal(dir: &std::path::Path, durability: Durability) -> Wal {
    let mut config = WalConfig::new(dir.join("wal"));
    config.durability = durability;
    Wal::open(
        Arc::new(StdStorage),
        config,
        Arc::new(SystemClock),
        Seq(1),
        |_| Ok(()),
    )
    .expect("open wal")
    .0
}

fn report(label: &str, ops: u64, bytes: u64, elapsed: Duration) {
    let s = elapsed.as_secs_f64();
    println!(
        "{label:<44} {ops:>9} ops in {:>8.3} s  {:>11.0} ops/s  {:>8.1} MB/s",
        s,
        ops as f64 / s,
        bytes as f64 / s / 1e6
    );
}

fn append_bench(label: &str, durability: Durability, ops: u64) {
    let dir = tmp();
    let mut wal = open_wal(dir.path(), durability);
    let payload = vec![0xabu8; RECORD];
    let start = Instant::now();
    for _ in 0..ops {
        wal.append(1, &payload).expect("append");
        wal.poll_flush(Instant::now()).expect("flush");
    }
    wal.flush().expect("flush");
    report(label, ops, ops * RECORD as u64, start.elapsed());
}

fn batch_bench(ops: u64, batch: usize) {
    let dir = tmp();
    let mut wal = open_wal(dir.path(), Durability::EveryAppend);
    let payload = vec![0xabu8; RECORD];
    let records: Vec<(u8, &[u8])> = (0..batch).map(|_| (1u8, payload.as_slice())).collect();
    let start = Instant::now();
    for _ in 0..ops / batch as u64 {
        wal.append_batch(&records).expect("batch");
    }
    report(
        &format!("append_batch of {batch}, one fsync per batch"),
        ops,
        ops * RECORD as u64,
        start.elapsed(),
    );
}

fn put_op(i: u64) -> Op {
    Op::Put {
        ns: ns::FILES.into(),
        key: format!("folder/dir{:03}/file{i:08}.txt", i % 200),
        value: vec![(i % 251) as u8; 96],
        origin: NodeId([3; 32]),
        timestamp: Timestamp(i),
    }
}

fn recovery_bench(n: u64) {
    let dir = tmp();
    let mut config = StoreConfig::new(dir.path());
    config.durability = Durability::None;
    config.checkpoint_after_ops = u64::MAX;
    let write = Instant::now();
    {
        let (mut store, _) = Store::open_dir(config.clone()).expect("open");
        let mut batch = Vec::with_capacity(10_000);
        for i in 0..n {
            batch.push(put_op(i));
            if batch.len() == 10_000 {
                store
                    .apply_batch(std::mem::take(&mut batch))
                    .expect("batch");
            }
        }
        store.apply_batch(batch).expect("batch");
        store.flush().expect("flush");
    }
    let wal_bytes: u64 = std::fs::read_dir(config.wal_dir())
        .expect("dir")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum();
    println!(
        "wrote {n} store ops ({:.1} MB of WAL) in {:.2} s",
        wal_bytes as f64 / 1e6,
        write.elapsed().as_secs_f64()
    );

    // Raw log recovery: read, checksum and hand over every record.
    let start = Instant::now();
    let mut count = 0u64;
    let mut wc = WalConfig::new(config.wal_dir());
    wc.durability = Durability::None;
    Wal::open(
        Arc::new(StdStorage),
        wc,
        Arc::new(SystemClock),
        Seq(1),
        |_| {
            count += 1;
            Ok(())
        },
    )
    .expect("wal open");
    let wal_elapsed = start.elapsed();
    println!(
        "RECOVERY  WAL only: {count} records in {:.3} s ({:.0} records/s)",
        wal_elapsed.as_secs_f64(),
        count as f64 / wal_elapsed.as_secs_f64()
    );

    // Full store recovery: WAL replay, op decoding, map rebuild.
    let start = Instant::now();
    let (mut store, rec) = Store::open_dir(config.clone()).expect("open");
    let store_elapsed = start.elapsed();
    println!(
        "RECOVERY  store from WAL: {} ops replayed, {} keys, in {:.3} s",
        rec.wal.replayed,
        store.len(ns::FILES),
        store_elapsed.as_secs_f64()
    );

    // Snapshot write and load for the same 1M keys.
    let start = Instant::now();
    let snap = store.checkpoint().expect("snapshot");
    let snap_elapsed = start.elapsed();
    println!(
        "SNAPSHOT  write {} keys: {:.1} MB in {:.3} s",
        snap.entries,
        snap.bytes as f64 / 1e6,
        snap_elapsed.as_secs_f64()
    );
    drop(store);
    let start = Instant::now();
    let (store, rec) = Store::open_dir(config).expect("open");
    println!(
        "SNAPSHOT  load {} keys (+{} WAL records): {:.3} s",
        store.len(ns::FILES),
        rec.wal.replayed,
        start.elapsed().as_secs_f64()
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    println!(
        "softadastra WAL/store benchmark ({} records of {RECORD} bytes; data in {})",
        if quick { "quick" } else { "full" },
        env!("CARGO_TARGET_TMPDIR")
    );
    append_bench("fsync per append", Durability::EveryAppend, 5_000 / scale);
    append_bench(
        "group commit (512 records / 5 ms)",
        Durability::GROUP_DEFAULT,
        500_000 / scale,
    );
    batch_bench(500_000 / scale, 1_000);
    append_bench("no fsync (tests only)", Durability::None, 1_000_000 / scale);
    recovery_bench(1_000_000 / scale);
}
