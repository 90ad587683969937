//! core: typed results. Every engine call returns `Result<T, LayerError>`;
//! the error says what failed, where, and whether retrying can help.
//!
//! Run: `cargo run -p softadastra --example core_result`

use softadastra::core::{ContentHash, ErrorContext, NodeId};
use softadastra::store::{Store, StoreConfig, StoreError, ns};

fn main() {
    // Primitives with stable text forms.
    let hash = ContentHash::of(b"hello, softadastra");
    println!("content hash: {hash} (short {})", hash.short());
    match "not-a-node-id".parse::<NodeId>() {
        Ok(id) => println!("parsed {id}"),
        Err(e) => println!("refused: {e}"),
    }

    // An error that carries its context.
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut store, _) = Store::open_dir(StoreConfig::new(dir.path())).expect("open store");
    match store.put(ns::APP, "", b"value".to_vec()) {
        Ok(seq) => println!("stored at {seq}"),
        Err(e @ StoreError::InvalidKey { .. }) => {
            println!(
                "refused: {e} (retry: {}, corruption: {})",
                e.retry(),
                e.is_corruption()
            )
        }
        Err(e) => println!("failed: {e}"),
    }
}
