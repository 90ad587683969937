//! store recovery: state = the on-disk index at its last checkpoint + the
//! WAL after it, and a torn tail from a crash is cut and reported, never
//! invented.
//!
//! Run: `cargo run -p softadastra --example store_recovery`

use softadastra::store::{Store, StoreConfig, ns};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = StoreConfig::new(dir.path());
    {
        let (mut store, _) = Store::open_dir(config.clone())?;
        for i in 0..1000 {
            store.apply_batch(vec![softadastra::store::Op::Put {
                ns: ns::APP.into(),
                key: format!("key:{i:04}"),
                value: i.to_string().into_bytes(),
                origin: config.node,
                timestamp: softadastra::core::Timestamp(0),
            }])?;
        }
        let cp = store.checkpoint()?;
        println!(
            "checkpoint at {} with {} entries (index file {} bytes)",
            cp.seq, cp.entries, cp.bytes
        );
        store.put(ns::APP, "after-checkpoint", b"kept in the WAL".to_vec())?;
    }

    // Simulate a crash in the middle of an append: a few stray bytes at the end.
    let wal_dir = config.wal_dir();
    let mut segments: Vec<_> = std::fs::read_dir(&wal_dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    segments.sort();
    if let Some(last) = segments.last() {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(last)?
            .write_all(&[0x13, 0x37, 0, 0, 9])?;
    }

    let (store, recovery) = Store::open_dir(config)?;
    println!(
        "index opened at {:?}, replayed {} WAL record(s)",
        recovery.checkpoint, recovery.wal.replayed
    );
    if let Some(t) = recovery.wal.truncated {
        println!(
            "cut torn tail: {} bytes at offset {} ({})",
            t.discarded, t.offset, t.reason
        );
    }
    println!(
        "{} keys; after-checkpoint present: {}",
        store.len(ns::APP),
        store.contains(ns::APP, "after-checkpoint")
    );
    Ok(())
}
