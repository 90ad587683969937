//! sync: a local operation becomes something to send. The sync engine is
//! sans-IO: events in, actions out. Here a value written on node A is
//! hinted to B, B asks for the delta since its cursor, A answers with one
//! index page, and B applies it — no network: the messages are passed by
//! hand.
//!
//! Run: `cargo run -p softadastra --example sync_local_operation`

use std::time::Instant;

use softadastra::core::NodeId;
use softadastra::folder::values::{self, APP_SPACE};
use softadastra::store::{Store, StoreConfig};
use softadastra::sync::{Action, SyncConfig, SyncEngine, SyncMessage};

type Error = Box<dyn std::error::Error>;

struct Side {
    name: &'static str,
    id: NodeId,
    store: Store,
    engine: SyncEngine,
}

fn open(dir: &std::path::Path, name: &'static str, seed: u64) -> Result<Side, Error> {
    let id = NodeId::derive(name.as_bytes());
    let mut config = StoreConfig::new(dir.join(name));
    config.node = id;
    Ok(Side {
        name,
        id,
        store: Store::open_dir(config)?.0,
        engine: SyncEngine::new(id, SyncConfig::default(), seed),
    })
}

/// Deliver `wire` (messages for `sides[to]`) until no message is left.
fn pump(sides: &mut [Side; 2], mut wire: Vec<(usize, SyncMessage)>) -> Result<(), Error> {
    let now = Instant::now();
    while !wire.is_empty() {
        let (to, message) = wire.remove(0);
        let from = 1 - to;
        println!(
            "{} -> {}  {}",
            sides[from].name,
            sides[to].name,
            describe(&message)
        );
        let sender = sides[from].id;
        let side = &mut sides[to];
        for x in side
            .engine
            .received(&mut side.store, sender, message, now)?
        {
            if let Action::Send { message, .. } = x {
                wire.push((from, message));
            }
        }
    }
    Ok(())
}

fn sent(to: usize, actions: Vec<Action>) -> Vec<(usize, SyncMessage)> {
    actions
        .into_iter()
        .filter_map(|x| match x {
            Action::Send { message, .. } => Some((to, message)),
            _ => None,
        })
        .collect()
}

fn main() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let mut sides = [open(dir.path(), "A", 1)?, open(dir.path(), "B", 2)?];
    let (a, b) = (sides[0].id, sides[1].id);
    let now = Instant::now();
    // Connecting: each side says which folders it shares (every node
    // shares the app space) and asks for the other's index.
    let mut wire = sent(1, sides[0].engine.connected(&sides[0].store, b, now)?);
    wire.extend(sent(0, sides[1].engine.connected(&sides[1].store, a, now)?));
    pump(&mut sides, wire)?;

    // The local operation: durable in A's WAL before anything is sent.
    let seq = values::put(&mut sides[0].store, a, "greeting", b"hello")?;
    println!("A wrote greeting at sequence {seq}");
    let hint = sides[0].engine.local_changed(&sides[0].store, APP_SPACE);
    pump(&mut sides, sent(1, hint))?;
    println!(
        "B now has greeting = {:?}",
        values::get(&sides[1].store, "greeting").map(|v| String::from_utf8_lossy(&v).into_owned())
    );
    Ok(())
}

fn describe(m: &SyncMessage) -> String {
    match m {
        SyncMessage::Folders { ids, .. } => format!("Folders {ids:?}"),
        SyncMessage::IndexHint { folder, seq } => format!("IndexHint {folder} at {seq}"),
        SyncMessage::IndexRequest { folder, since } => {
            format!("IndexRequest {folder} since {since}")
        }
        SyncMessage::IndexPage {
            folder,
            records,
            upto,
            ..
        } => format!(
            "IndexPage {folder}: {} record(s) up to {upto}",
            records.len()
        ),
    }
}
