//! Folder sync benchmark: two real `softadastra run` nodes on 127.0.0.1.
//!
//! `cargo bench -p softadastra-agent --bench sync` prints: initial sync of
//! 20,000 small files (1–8 KiB in 200 directories), of a ~300 MiB
//! source-tree-like mix and of 8 × 128 MiB random files (wall time,
//! files/s, MB/s, with `cp -a` and `rsync -a` of the same data as
//! floors), propagation latency of one 4 KiB file (p50/p99 over 20
//! writes), bytes fetched after a 1-byte insert at offset 0 of a 128 MiB
//! synced file, after appending 1 MiB, and after a rename, and each node's
//! peak RSS. `SOFTADASTRA_BENCH_SKIP_LARGE=1` skips the 1 GiB dataset;
//! `SOFTADASTRA_BENCH_ONLY_LARGE=1` runs it alone;
//! `SOFTADASTRA_BENCH_ONLY_SMALL=1` runs the 20,000 small files alone.
//! `SOFTADASTRA_BENCH_BIN=PATH` measures another build of the agent (to
//! compare builds in interleaved runs).
//!
//! On ext4 without a journal (as on the CI machines), creating files soon
//! after tens of thousands were deleted is several times slower (the
//! allocator skips recently freed inodes for a minute or more), so run it
//! on a quiet file system, not right after a previous run.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn floors(src: &Path, scratch: &Path) -> String {
    let mut out = Vec::new();
    let cp_dst = scratch.join("cp-floor");
    let t = Instant::now();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(&cp_dst)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        out.push(format!("cp -a {:.2} s", t.elapsed().as_secs_f64()));
    }
    let _ = std::fs::remove_dir_all(&cp_dst);
    let rs_dst = scratch.join("rsync-floor");
    let t = Instant::now();
    match Command::new("rsync")
        .arg("-a")
        .arg(format!("{}/", src.display()))
        .arg(&rs_dst)
        .status()
    {
        Ok(s) if s.success() => out.push(format!("rsync -a {:.2} s", t.elapsed().as_secs_f64())),
        _ => out.push("rsync -a: not installed".into()),
    }
    let _ = std::fs::remove_dir_all(&rs_dst);
    out.join(", ")
}

fn initial_sync(root: &Path, label: &str, fill: impl FnOnce(&Path)) -> (Node, Node) {
    let (mut a, mut b) = pair(root);
    fill(&a.dir);
    let (files, bytes) = count(&a.dir);
    // Start from a quiet disk: the generated data and the previous
    // dataset's writes are flushed first, not during the measurement.
    let _ = Command::new("sync").status();
    a.share();
    b.share();
    a.start();
    b.start();
    let mut want = layout(&a.dir);
    let took = wait_for(label, Duration::from_secs(600), || {
        arrived(&b.dir, &mut want) && count(&b.dir) == (files, bytes)
    });
    let secs = took.as_secs_f64();
    // The floors run after the sync: on ext4, creating files right after
    // tens of thousands were deleted is several times slower, and the
    // floors' own copies are deleted when they are done.
    let floor = floors(&a.dir, root);
    println!(
        "{label}: {files} files, {:.1} MB in {secs:.2} s = {:.0} files/s, {:.0} MB/s  (floors: {floor})",
        bytes as f64 / 1e6,
        files as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
    println!(
        "  peak RSS: alpha {:.1} MB, beta {:.1} MB",
        a.peak_rss_mb(),
        b.peak_rss_mb()
    );
    (a, b)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    println!("softadastra sync benchmark (two nodes on 127.0.0.1, same machine)");
    if std::env::var_os("SOFTADASTRA_BENCH_ONLY_LARGE").is_none() {
        // 20,000 small files.
        let root = scratch.path().join("small");
        let (mut a, mut b) = initial_sync(&root, "20,000 small files", |dir| {
            let mut rng = fastrand::Rng::with_seed(1);
            for i in 0..20_000 {
                let d = dir.join(format!("d{:03}", i % 200));
                std::fs::create_dir_all(&d).expect("mkdir");
                let len = rng.usize(1024..=8192);
                std::fs::write(d.join(format!("f{i:05}.txt")), random_bytes(&mut rng, len))
                    .expect("write");
            }
        });

        if std::env::var_os("SOFTADASTRA_BENCH_ONLY_SMALL").is_some() {
            return;
        }

        // Propagation latency of one 4 KiB file.
        let mut lat = propagation(&a.dir, &b.dir, 20);
        lat.sort();
        println!(
            "propagation of one 4 KiB file: p50 {:.1} ms, p99 {:.1} ms (over {} writes)",
            lat[lat.len() / 2].as_secs_f64() * 1e3,
            lat[lat.len() - 1].as_secs_f64() * 1e3,
            lat.len()
        );
        a.stop();
        b.stop();
        drop((a, b));

        // A source-tree-like mix, ~300 MiB: many small files, some medium,
        // a few large, three directory levels.
        let root = scratch.path().join("mix");
        let (mut a, mut b) = initial_sync(&root, "~300 MiB source-tree mix", |dir| {
            let mut rng = fastrand::Rng::with_seed(4);
            for i in 0..6000u32 {
                let d = dir.join(format!(
                    "src/m{:02}/s{:02}/{}",
                    i % 40,
                    (i / 40) % 8,
                    if i % 3 == 0 { "gen" } else { "lib" }
                ));
                std::fs::create_dir_all(&d).expect("mkdir");
                let len = match i % 100 {
                    0 => rng.usize(1 << 20..=6 << 20),
                    1..=14 => rng.usize(40 << 10..=160 << 10),
                    _ => rng.usize(1 << 10..=16 << 10),
                };
                std::fs::write(d.join(format!("f{i:04}.rs")), random_bytes(&mut rng, len))
                    .expect("write");
            }
        });
        a.stop();
        b.stop();
        drop((a, b));
    }
    if std::env::var_os("SOFTADASTRA_BENCH_SKIP_LARGE").is_some() {
        return;
    }
    let root = scratch.path().join("large");
    let (mut a, mut b) = initial_sync(&root, "8 x 128 MiB files", |dir| {
        let mut rng = fastrand::Rng::with_seed(3);
        for i in 0..8 {
            std::fs::write(
                dir.join(format!("big-{i}.bin")),
                random_bytes(&mut rng, 128 << 20),
            )
            .expect("write");
        }
    });
    let file = a.dir.join("big-0.bin");
    let target = b.dir.join("big-0.bin");
    let delta = |label: &str, change: &dyn Fn(), check: &dyn Fn() -> bool| {
        let before = b.fetched();
        change();
        wait_for(label, Duration::from_secs(120), check);
        std::thread::sleep(Duration::from_millis(300));
        let moved = b.fetched() - before;
        println!(
            "{label}: {moved} bytes fetched ({:.3} % of 128 MiB)",
            moved as f64 * 100.0 / (128u64 << 20) as f64
        );
    };
    delta(
        "insert 1 byte at offset 0 of a 128 MiB file",
        &|| {
            let mut v = std::fs::read(&file).expect("read");
            v.insert(0, b'!');
            std::fs::write(&file, v).expect("write");
        },
        &|| std::fs::metadata(&target).is_ok_and(|m| m.len() == (128 << 20) + 1),
    );
    delta(
        "append 1 MiB",
        &|| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&file)
                .expect("open");
            f.write_all(&vec![7u8; 1 << 20]).expect("append");
        },
        &|| std::fs::metadata(&target).is_ok_and(|m| m.len() == (128 << 20) + 1 + (1 << 20)),
    );
    let renamed = b.dir.join("renamed.bin");
    delta(
        "rename",
        &|| std::fs::rename(a.dir.join("big-1.bin"), a.dir.join("renamed.bin")).expect("rename"),
        &|| renamed.exists() && !b.dir.join("big-1.bin").exists(),
    );
    a.stop();
    b.stop();
}
