//! # Softadastra engine
//!
//! Softadastra is a local-first file-sync engine. A folder on disk is observed
//! (`fs`), every accepted change is recorded durably in a write-ahead log
//! (`wal`), applied to a recoverable key/value state (`store`), and — in the
//! layers above — tracked for propagation (`sync`) and moved to peers
//! (`transport`).
//!
//! The engine follows one rule: **local correctness first, network later.**
//! Each module answers one question, depends only on modules below it, and
//! reports failures explicitly through its own typed error enum.
//!
//! | module  | question it answers                              |
//! |---------|--------------------------------------------------|
//! | [`core`]   | which primitives are shared everywhere?       |
//! | [`fs`]     | what changed on the file system?              |
//! | [`wal`]    | which operations were durably recorded?       |
//! | [`store`]  | what is the current local state?              |
//! | [`folder`] | what does a change on disk mean for the index?|
//! | [`sync`]   | what should be sent, fetched, kept or removed? |
//! | [`runtime`] | the composed node: watch, sync, transfer       |
//! | [`transport`] | who is this node, and whom does it trust?  |
//! | [`discovery`] | which nodes are on this LAN?              |
//! | [`metadata`] | what does a node say about itself?          |
//! | [`client`] | the SDK: one node behind a small API         |
//!
//! See `ARCHITECTURE.md` at the repository root for the codemap and the
//! invariants that hold between modules.
#![warn(missing_docs)]

pub mod client;
pub mod core;
pub mod discovery;
pub mod folder;
pub mod fs;
pub mod index;
pub mod metadata;
pub mod runtime;
pub mod store;
pub mod sync;
pub mod transport;
pub mod wal;
