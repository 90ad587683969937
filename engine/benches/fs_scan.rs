//! Scanner and watcher benchmark: prints figures, asserts nothing.
//!
//! `cargo bench -p softadastra --bench fs_scan` (`-- --quick` for a smaller
//! run). Datasets are generated deterministically under the target dir and
//! scanned with their data in the page cache, as the issue asks.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use softadastra::core::{NodeId, SystemClock};
use softadastra::folder::{self, Indexer};
use softadastra::fs::ignore::IgnoreRules;
use softadastra::fs::scan::ScanProgress;
use softadastra::fs::watch::{WatchConfig, Watcher};
use softadastra::store::{Store, StoreConfig};
use softadastra::wal::{Durability, StdStorage};

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("fs-bench")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}

fn store(dir: &Path) -> Store {
    let mut c = StoreConfig::new(dir.join("store"));
    c.durability = Durability::GROUP_DEFAULT;
    Store::open(c, Arc::new(StdStorage), Arc::new(SystemClock))
        .expect("store")
        .0
}

fn fill(rng: &mut fastrand::Rng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for chunk in v.chunks_mut(8) {
        let x = rng.u64(..).to_le_bytes();
        chunk.copy_from_slice(&x[..chunk.len()]);
    }
    v
}

fn scan_once(root: &Path, label: &str) -> (Store, Indexer, tempfile::TempDir) {
    let home = tmp();
    let mut st = store(home.path());
    let config = folder::add(&mut st, "bench", root).expect("add");
    let mut indexer = Indexer::new(config, NodeId([1; 32]));
    let start = Instant::now();
    let r = indexer
        .scan(&mut st, &ScanProgress::default())
        .expect("scan");
    let s = start.elapsed().as_secs_f64();
    println!(
        "{label:<42} {:>7} entries, {:>8.1} MB in {:>6.3} s: {:>8.0} files/s {:>8.1} MB/s",
        r.entries,
        r.hashed_bytes as f64 / 1e6,
        s,
        r.entries as f64 / s,
        r.hashed_bytes as f64 / 1e6 / s
    );
    (st, indexer, home)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let mut rng = fastrand::Rng::with_seed(42);
    println!(
        "softadastra scan/watch benchmark ({}; {} cores)",
        if quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // 1 GiB in 8 files.
    let big = tmp();
    let file_len = if quick { 16 << 20 } else { 128 << 20 };
    for i in 0..8 {
        std::fs::write(
            big.path().join(format!("big{i}.bin")),
            fill(&mut rng, file_len),
        )
        .expect("write");
    }
    scan_once(
        big.path(),
        &format!("cold scan, 8 x {} MiB", file_len >> 20),
    );
    drop(big);

    // One large file: chunking and hashing are one stream (no other file
    // to hash beside it), random data and a sparse file's zeros.
    let one = tmp();
    let one_len: usize = if quick { 256 << 20 } else { 2 << 30 };
    {
        use std::io::Write;
        let mut f = std::fs::File::create(one.path().join("random.bin")).expect("create");
        for _ in 0..one_len >> 26 {
            f.write_all(&fill(&mut rng, 64 << 20)).expect("write");
        }
    }
    scan_once(
        one.path(),
        &format!("one file of {} MiB, random", one_len >> 20),
    );
    drop(one);
    let sparse = tmp();
    let sparse_len: u64 = if quick { 1 << 30 } else { 16 << 30 };
    std::fs::File::create(sparse.path().join("sparse.img"))
        .and_then(|f| f.set_len(sparse_len))
        .expect("sparse file");
    scan_once(
        sparse.path(),
        &format!("one sparse file of {} GiB, all holes", sparse_len >> 30),
    );
    drop(sparse);

    // 20,000 small files of 1-8 KiB in 200 dirs.
    let small = tmp();
    for i in 0..20_000 {
        let dir = small.path().join(format!("d{:03}", i % 200));
        if i < 200 {
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        let len = 1024 + rng.usize(0..7 * 1024);
        std::fs::write(dir.join(format!("f{i:05}.txt")), fill(&mut rng, len)).expect("write");
    }
    scan_once(small.path(), "cold scan, 20,000 files of 1-8 KiB");
    drop(small);

    // Warm rescan of 100,000 unchanged files.
    let many = tmp();
    let n = if quick { 10_000 } else { 100_000 };
    for i in 0..n {
        let dir = many.path().join(format!("d{:03}", i % 500));
        if i < 500 {
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        std::fs::write(dir.join(format!("f{i:06}")), i.to_string()).expect("write");
    }
    let (mut st, mut indexer, _home) =
        scan_once(many.path(), &format!("cold scan, {n} tiny files"));
    let start = Instant::now();
    let r = indexer
        .scan(&mut st, &ScanProgress::default())
        .expect("rescan");
    println!(
        "{:<42} {:>7} entries, {} re-read, {} ops in {:.3} s (target <= 1 s for 100,000)",
        "WARM rescan, nothing changed",
        r.entries,
        r.hashed_files,
        r.ops,
        start.elapsed().as_secs_f64()
    );
    drop(many);

    // Watcher: write a 4 KiB file -> durable store operation.
    let watched = tmp();
    let home = tmp();
    let mut st = store(home.path());
    let config = folder::add(&mut st, "w", watched.path()).expect("add");
    let mut indexer = Indexer::new(config, NodeId([1; 32]));
    let mut watcher = Watcher::new(
        watched.path(),
        IgnoreRules::load(watched.path()).0,
        WatchConfig::default(),
    )
    .expect("watch");
    let mut lat = Vec::new();
    let samples = if quick { 20 } else { 100 };
    for i in 0..samples {
        let data = fill(&mut rng, 4096);
        let t0 = Instant::now();
        std::fs::write(watched.path().join(format!("w{i}.txt")), &data).expect("write");
        loop {
            let batch = watcher.next_batch(Duration::from_secs(5)).expect("event");
            indexer.apply(&mut st, &batch).expect("apply");
            st.flush().expect("flush");
            if batch.paths.iter().any(|p| p == &format!("w{i}.txt")) {
                break;
            }
        }
        lat.push(t0.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "{:<42} p50 {:.1} ms, p99 {:.1} ms over {} writes (settle window {} ms; target p50 <= 50 ms)",
        "WATCH change -> durable store op",
        pct(0.5),
        pct(0.99),
        lat.len(),
        WatchConfig::default().settle.as_millis()
    );
}
