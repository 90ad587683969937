//! History benchmark: what keeping versions costs on disk. Prints figures,
//! asserts nothing but that every version read back is the one kept.
//!
//! `cargo bench -p softadastra --bench history` keeps 100 versions of a
//! 1 GiB file, each a one-byte edit of the last, exactly as sync keeps a
//! version it replaces (moved aside, filed into the version store), and
//! prints the bytes the version store holds against what keeping each
//! version whole (the old trash) would hold. `HISTORY_BENCH_MIB` and
//! `HISTORY_BENCH_EDITS` change the size and the count; `-- --quick` is
//! 64 MiB and 10 edits. The files live in `HISTORY_BENCH_DIR` (default
//! `/dev/shm` when there, so the figure is the store's, not the disk's).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use softadastra::core::{NodeId, SystemClock};
use softadastra::folder::{self, Indexer};
use softadastra::index::history::Why;
use softadastra::runtime::exec::ChunkIndex;
use softadastra::runtime::exec::versions::{read_version, set_aside, store_dir};
use softadastra::store::{Store, StoreConfig};
use softadastra::wal::{Durability, StdStorage};

fn env_or(name: &str, quick: u64, full: u64) -> u64 {
    let quick_run = std::env::args().any(|a| a == "--quick");
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick_run { quick } else { full })
}

fn bytes_under(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

fn main() {
    let mib = env_or("HISTORY_BENCH_MIB", 64, 1024);
    let edits = env_or("HISTORY_BENCH_EDITS", 10, 100);
    let base: PathBuf = std::env::var_os("HISTORY_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            if Path::new("/dev/shm").is_dir() {
                "/dev/shm".into()
            } else {
                env!("CARGO_TARGET_TMPDIR").into()
            }
        });
    let dir = tempfile::Builder::new()
        .prefix("history-bench")
        .tempdir_in(&base)
        .expect("temp dir");
    let root = dir.path().join("folder");
    std::fs::create_dir_all(&root).expect("folder");
    let mut config = StoreConfig::new(dir.path().join("store"));
    config.durability = Durability::GROUP_DEFAULT;
    let (mut store, _) =
        Store::open(config, Arc::new(StdStorage), Arc::new(SystemClock)).expect("store");
    let folder = folder::add(&mut store, "bench", &root).expect("folder");
    let me = NodeId([1; 32]);
    let chunks = Mutex::new(ChunkIndex::default());

    let size = (mib << 20) as usize;
    let mut rng = fastrand::Rng::with_seed(11);
    let mut content = vec![0u8; size];
    for word in content.chunks_mut(8) {
        let x = rng.u64(..).to_le_bytes();
        word.copy_from_slice(&x[..word.len()]);
    }
    let live = root.join("big.bin");
    std::fs::write(&live, &content).expect("write");
    Indexer::new(folder.clone(), me)
        .scan(&mut store, &Default::default())
        .expect("index");
    let first = content.clone();
    let mut keep_secs = 0f64;
    let started = Instant::now();
    for _ in 0..edits {
        let old = softadastra::index::record(&store, "bench", "big.bin").expect("record");
        let t = Instant::now();
        set_aside(
            &mut store,
            &chunks,
            &root,
            "bench",
            "big.bin",
            &live,
            Some(&old),
            Why::Replaced,
        )
        .expect("keep");
        keep_secs += t.elapsed().as_secs_f64();
        let at = rng.usize(..size);
        content[at] = content[at].wrapping_add(1);
        std::fs::write(&live, &content).expect("write");
        Indexer::new(folder.clone(), me)
            .scan(&mut store, &Default::default())
            .expect("index");
    }
    let kept = bytes_under(&store_dir(&root));
    let whole = edits * size as u64;
    let after_first = kept.saturating_sub(size as u64);
    println!("history: {edits} one-byte edits of a {mib} MiB file");
    println!(
        "  version store: {kept} bytes ({:.1} MiB); each version kept whole would be {whole} bytes ({:.1} GiB), {:.0}x more",
        kept as f64 / (1 << 20) as f64,
        whole as f64 / (1 << 30) as f64,
        whole as f64 / kept.max(1) as f64
    );
    println!(
        "  beyond the first version (kept whole, moved in): {after_first} bytes, {:.1} KiB per edit",
        after_first as f64 / edits.max(1) as f64 / 1024.0
    );
    println!(
        "  filing a version away: {:.1} ms on average; run {:.1} s",
        keep_secs * 1000.0 / edits.max(1) as f64,
        started.elapsed().as_secs_f64()
    );
    // The oldest version, read back through its chunks, is the first.
    let all = softadastra::index::history::versions(&store, "bench", "big.bin").expect("history");
    if let (Some(oldest), Some(newest)) = (all.first(), all.last()) {
        // One output buffer, its pages touched before anything is timed.
        let mut out = vec![1u8; size];
        for (k, want) in [(oldest, Some(&first)), (newest, None)] {
            out.clear();
            let t = Instant::now();
            read_version(&root, k, &all, &mut out).expect("read back");
            if let Some(want) = want {
                assert!(out == *want, "the oldest version reads back as it was");
            }
            println!(
                "  reading back the {} version: {:.0} ms",
                if want.is_some() { "oldest" } else { "newest" },
                t.elapsed().as_secs_f64() * 1000.0
            );
        }
    }
}
