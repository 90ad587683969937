//! sync: retry with exponential backoff and jitter. A request the peer
//! never answers (a lost message) is sent again by `tick`, later each
//! time; `TickReport` counts what was retried. Time is passed in, so this
//! runs instantly.
//!
//! Run: `cargo run -p softadastra --example sync_retry`

use std::time::{Duration, Instant};

use softadastra::core::NodeId;
use softadastra::folder::values::APP_SPACE;
use softadastra::store::{Store, StoreConfig};
use softadastra::sync::{Action, SyncConfig, SyncEngine, SyncMessage};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let me = NodeId::derive(b"me");
    let peer = NodeId::derive(b"peer");
    let mut config = StoreConfig::new(dir.path());
    config.node = me;
    let (mut store, _) = Store::open_dir(config)?;
    let mut engine = SyncEngine::new(me, SyncConfig::default(), 7);
    let start = Instant::now();
    engine.connected(&store, peer, start)?;
    let folders = SyncMessage::Folders {
        ids: vec![APP_SPACE.into()],
        reply: false,
    };
    let first = engine.received(&mut store, peer, folders, start)?;
    println!(
        "t=0s: sent {} message(s); the peer never answers",
        first.len()
    );
    let mut last = Duration::ZERO;
    for step in 1..=600 {
        let at = Duration::from_millis(step * 250);
        let report = engine.tick(&mut store, start + at)?;
        let asked = report.actions.iter().any(|a| {
            matches!(
                a,
                Action::Send {
                    message: SyncMessage::IndexRequest { .. },
                    ..
                }
            )
        });
        if report.retried > 0 && asked {
            println!(
                "t={:>6.2}s: retried {} (batch of {}), {:.2}s after the previous try",
                at.as_secs_f64(),
                report.retried,
                report.batch_size,
                (at - last).as_secs_f64()
            );
            last = at;
        }
    }
    Ok(())
}
