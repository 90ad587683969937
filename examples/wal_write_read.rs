//! wal: append records durably, read them back, replay from a sequence.
//!
//! Run: `cargo run -p softadastra --example wal_write_read`

use std::sync::Arc;

use softadastra::core::{Seq, SystemClock};
use softadastra::wal::{Durability, StdStorage, Wal, WalConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut config = WalConfig::new(dir.path().join("wal"));
    config.durability = Durability::GROUP_DEFAULT;

    // Write: three single appends and a batch made durable with one fsync.
    let (mut wal, _) = Wal::open(
        Arc::new(StdStorage),
        config.clone(),
        Arc::new(SystemClock),
        Seq(1),
        |_| Ok(()),
    )?;
    for text in ["first", "second", "third"] {
        let seq = wal.append(1, text.as_bytes())?;
        println!(
            "appended {text:?} as {seq} (durable up to {})",
            wal.durable_seq()
        );
    }
    let batch = wal.append_batch(&[(1, b"fourth"), (1, b"fifth")])?;
    println!(
        "batch {}..={} durable up to {}",
        batch.start(),
        batch.end(),
        wal.durable_seq()
    );
    drop(wal);

    // Read: reopening recovers every record in order.
    let (wal, report) = Wal::open(
        Arc::new(StdStorage),
        config,
        Arc::new(SystemClock),
        Seq(1),
        |r| {
            println!(
                "recovered {} = {:?}",
                r.seq,
                String::from_utf8_lossy(r.payload)
            );
            Ok(())
        },
    )?;
    println!(
        "{} records in {} segment(s)",
        report.records, report.segments
    );

    // Replay from a sequence, e.g. to resend what a peer has not seen.
    wal.replay(Seq(4), |r| {
        println!(
            "replay {} = {:?}",
            r.seq,
            String::from_utf8_lossy(r.payload)
        )
    })?;
    Ok(())
}
