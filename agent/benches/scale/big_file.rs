//! The large-file part of the scale benchmark (issue 21): one file of
//! `SOFTADASTRA_SCALE_BIG_GB` GB (default 100; 0 skips it), sparse — a
//! MiB of random bytes at the start of each GiB, holes between — shared
//! by alpha and synced to beta; then one byte of it changed.
//!
//! Prints, each next to its target where the issue sets one: the first
//! index (GB/s), the initial sync (wall time, bytes fetched, what beta's
//! copy takes on disk), each node's peak memory, and the re-sync of the
//! one-byte change (wall time, bytes fetched: at most 1 % of the file).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::common::*;
use super::{allocated, folder_field, ms, report};

const GIB: u64 = 1 << 30;

/// Make `path` a sparse file of `gb` GB: a MiB of random bytes at the
/// start of each GiB. Returns where the random MiBs are.
fn make_sparse(path: &Path, gb: u64) -> Vec<u64> {
    let size = gb * 1_000_000_000;
    let mut f = std::fs::File::create(path).expect("create");
    f.set_len(size).expect("size");
    let mut rng = fastrand::Rng::with_seed(100);
    let marks: Vec<u64> = (0..size.div_ceil(GIB)).map(|i| i * GIB).collect();
    for &at in &marks {
        let n = (size - at).min(1 << 20) as usize;
        f.seek(SeekFrom::Start(at)).expect("seek");
        f.write_all(&random_bytes(&mut rng, n)).expect("write");
    }
    f.sync_all().expect("sync");
    marks
}

/// The byte at `at` in `path`, if the file is that long.
fn byte_at(path: &Path, at: u64) -> Option<u8> {
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(SeekFrom::Start(at)).ok()?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b).ok()?;
    Some(b[0])
}

/// Whether `copy` has `original`'s size and the same bytes around each
/// of `marks` (where the data is; the rest is holes on both).
fn same_at_marks(original: &Path, copy: &Path, marks: &[u64]) -> bool {
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
    if len(original).is_none() || len(original) != len(copy) {
        return false;
    }
    let read = |p: &Path, at: u64| -> Option<Vec<u8>> {
        let mut f = std::fs::File::open(p).ok()?;
        f.seek(SeekFrom::Start(at)).ok()?;
        let mut v = Vec::new();
        f.take(1 << 20).read_to_end(&mut v).ok()?;
        Some(v)
    };
    marks
        .iter()
        .all(|&at| read(original, at).is_some_and(|v| Some(v) == read(copy, at)))
}

/// Run the large-file part under `root`.
pub fn run(root: &Path) {
    let gb: u64 = std::env::var("SOFTADASTRA_SCALE_BIG_GB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    if gb == 0 {
        return;
    }
    println!("large file: {gb} GB, sparse (1 MiB of data per GiB), two nodes on 127.0.0.1");
    let root = root.join("big");
    let (mut a, mut b) = pair(&root);
    let file = a.dir.join("disk.img");
    let marks = make_sparse(&file, gb);
    let size = gb * 1_000_000_000;

    let t = Instant::now();
    a.share();
    let index = t.elapsed().as_secs_f64();
    println!(
        "first index: {:.1} s = {:.2} GB/s",
        index,
        gb as f64 / index
    );

    b.share();
    a.start();
    b.start();
    let copy = b.dir.join("disk.img");
    let limit = Duration::from_secs(3600);
    let took = wait_for("large file sync", limit, || {
        folder_field(&b.status(), "state") == "up to date" && same_at_marks(&file, &copy, &marks)
    });
    let fetched = b.fetched();
    println!(
        "initial sync: {:.1} s, {:.1} MB fetched, beta's copy takes {:.1} MB on disk{}",
        took.as_secs_f64(),
        fetched as f64 / 1e6,
        allocated(&b.dir) as f64 / 1e6,
        if same_at_marks(&file, &copy, &marks) {
            ""
        } else {
            "  (INCOMPLETE)"
        }
    );

    // One byte changed in the middle.
    let at = size / 2 + 12_345;
    let before = b.fetched();
    let t = Instant::now();
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .expect("open");
        f.seek(SeekFrom::Start(at)).expect("seek");
        f.write_all(b"Z").expect("write");
    }
    wait_for("one-byte change", limit, || {
        byte_at(&copy, at) == Some(b'Z')
    });
    let resync = t.elapsed();
    let sent = b.fetched().saturating_sub(before);
    report(
        "re-sync after a 1-byte change: bytes fetched",
        sent as f64 / 1e6,
        &format!(
            "MB = {:.4} % of the file, in {:.1} s",
            sent as f64 * 100.0 / size as f64,
            resync.as_secs_f64()
        ),
        "<= 1 %",
        (sent as f64) <= size as f64 / 100.0,
    );
    println!("  ({:.0} ms)", ms(resync));
    let (peak_a, peak_b) = (a.peak_rss_mb(), b.peak_rss_mb());
    report(
        "  peak RSS alpha / beta (large file)",
        peak_a.max(peak_b),
        &format!("MB (alpha {peak_a:.1}, beta {peak_b:.1})"),
        "<= 150 MiB",
        peak_a.max(peak_b) <= 157.3,
    );
    a.stop();
    b.stop();
    let _ = std::fs::remove_dir_all(&root);
}
