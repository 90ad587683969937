//! The SDK client, local first: open a node, write and read values with no
//! network at all, close it, and find everything again on reopening.
//!
//! Run: `cargo run -p softadastra --example client_basics`

use softadastra::client::{Client, ClientOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let options = ClientOptions::new(dir.path().join("node")).name("notebook");
    let client = Client::open(options.clone())?;
    println!("node {} ({})", client.node_info().name, client.node_id());
    client.put("user:1", "Gaspard")?;
    client.put("user:2", "Ada")?;
    client.remove("user:2")?;
    let tick = client.tick()?;
    println!(
        "tick: WAL at sequence {}, {} peer(s), {} file(s) pending",
        tick.last_seq, tick.peers_connected, tick.pending_files
    );
    client.close();

    let client = Client::open(options)?;
    for (key, value) in client.list("user:") {
        println!(
            "after reopening: {key} = {}",
            String::from_utf8_lossy(&value)
        );
    }
    if let Err(e) = client.put("", "no key") {
        println!("refused: {e}");
    }
    Ok(())
}
