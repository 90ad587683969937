//! metadata: what this node says about itself — the hello it sends on
//! every connection and the description a peer builds from it (names,
//! OS, version, capabilities, uptime).
//!
//! Run: `cargo run -p softadastra --example metadata_local_snapshot`

use softadastra::core::{Clock, SystemClock};
use softadastra::metadata::{NodeInfo, NodeMeta, local_hello};
use softadastra::transport::identity::Identity;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let identity = Identity::create(dir.path(), "workstation")?;
    let now_ms = SystemClock.wall().as_nanos() / 1_000_000;
    let started_ms = now_ms - 90_000;
    let hello = local_hello(&identity, started_ms);
    println!("metadata bytes in the hello: {}", hello.meta.len());
    let info = NodeInfo::from_hello(&hello, now_ms);
    println!("{}", serde_json::to_string_pretty(&info)?);
    // Metadata is versioned and append-only: garbage decodes to defaults.
    println!("{:?}", NodeMeta::decode(b"\x07garbage"));
    Ok(())
}
