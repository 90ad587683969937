//! store: put, get, remove (tombstones), list by prefix.
//!
//! Run: `cargo run -p softadastra --example store_put_get`

use softadastra::store::{Store, StoreConfig, ns};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (mut store, _) = Store::open_dir(StoreConfig::new(dir.path()))?;
    store.put(ns::APP, "user:1", b"Gaspard".to_vec())?;
    store.put(ns::APP, "user:1", b"Softadastra".to_vec())?;
    store.put(ns::APP, "user:2", b"Ada".to_vec())?;
    if let Some(e) = store.get(ns::APP, "user:1") {
        println!(
            "user:1 = {:?} (version {}, from {})",
            String::from_utf8_lossy(e.value.as_deref().unwrap_or_default()),
            e.version,
            e.origin.short()
        );
    }
    store.remove(ns::APP, "user:1")?;
    println!(
        "user:1 present after remove: {}",
        store.contains(ns::APP, "user:1")
    );
    println!(
        "tombstone kept for sync: {}",
        store
            .entry(ns::APP, "user:1")
            .is_some_and(|e| e.is_tombstone())
    );
    for (key, e) in store.list(ns::APP, "user:") {
        println!("{key} -> {} bytes", e.value.as_ref().map_or(0, Vec::len));
    }
    Ok(())
}
