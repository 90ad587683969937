//! discovery: what an announcement says and what a listener makes of it.
//! The service sends these packets by UDP multicast on the LAN; this
//! example uses the sans-IO part only (packet format and registry), so it
//! sends nothing on any network.
//!
//! Run: `cargo run -p softadastra --example discovery_announce_listen`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use softadastra::core::{Clock, NodeId, SystemClock};
use softadastra::discovery::{Kind, Packet, Registry, Timing};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let me = NodeId::derive(b"listener");
    let laptop = NodeId::derive(b"laptop");
    let timing = Timing::every(Duration::from_secs(5));
    let mut registry = Registry::new(me, timing);

    let announce = Packet {
        kind: Kind::Announce,
        node: laptop,
        port: 7420,
        instance: 1,
    };
    let bytes = announce.encode();
    println!("announcement: {} bytes on the wire", bytes.len());
    let heard = Packet::decode(&bytes)?;
    let from: SocketAddr = "192.0.2.10:50000".parse()?;
    let t0 = Instant::now();
    let wall = SystemClock.wall();
    println!("{:?}", registry.observe(&heard, from, t0, wall));
    // Heard again, unchanged: nothing new.
    println!(
        "{:?}",
        registry.observe(&heard, from, t0 + timing.interval, wall)
    );
    // The same node restarted (new instance) at another address.
    let restarted = Packet {
        instance: 2,
        ..heard
    };
    let moved: SocketAddr = "192.0.2.11:50000".parse()?;
    println!(
        "{:?}",
        registry.observe(&restarted, moved, t0 + timing.interval * 2, wall)
    );
    // Then silence: stale, and later forgotten.
    for secs in [30, 120, 600] {
        let changes = registry.tick(t0 + Duration::from_secs(secs));
        println!("after {secs:>3}s of silence: {changes:?}");
    }
    // Garbage is refused with a reason, never a panic.
    println!("{:?}", Packet::decode(b"not an announcement"));
    Ok(())
}
