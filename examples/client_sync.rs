//! Two SDK clients syncing a value: each is a whole node (identity, WAL,
//! store, sync, QUIC transport). They trust each other by node id, connect
//! on 127.0.0.1, and a value written on one appears on the other.
//!
//! Run: `cargo run -p softadastra --example client_sync`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use softadastra::client::{Client, ClientOptions};

fn open(dir: &std::path::Path, name: &str) -> Result<Client, Box<dyn std::error::Error>> {
    let options = ClientOptions::new(dir.join(name))
        .name(name)
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)));
    Ok(Client::open(options)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut alice = open(dir.path(), "alice")?;
    let mut bob = open(dir.path(), "bob")?;
    // Written while offline: accepted locally, sent once connected.
    alice.put("shopping", "bread, olives")?;

    let (at_alice, at_bob) = (alice.start_transport()?, bob.start_transport()?);
    alice.trust(bob.node_id(), Some(at_bob))?;
    bob.trust(alice.node_id(), Some(at_alice))?;
    println!("alice on {at_alice}, bob on {at_bob}");

    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let t0 = Instant::now();
        while !done() {
            if t0.elapsed() > Duration::from_secs(20) {
                return Err(format!("{what}: not within 20 s"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        println!("{what} in {:?}", t0.elapsed());
        Ok(())
    };
    wait("bob got alice's offline write", &|| {
        bob.get("shopping").is_some()
    })?;
    bob.put("shopping", "bread, olives, figs")?;
    wait("alice got bob's edit", &|| {
        alice.get("shopping").as_deref() == Some(b"bread, olives, figs")
    })?;
    println!(
        "alice: shopping = {}",
        String::from_utf8_lossy(&alice.get("shopping").unwrap_or_default())
    );
    for p in alice.peers()? {
        println!("alice sees {} as {}", p.id.short(), p.state.as_str());
    }
    alice.close();
    bob.close();
    Ok(())
}
