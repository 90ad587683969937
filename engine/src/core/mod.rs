//! # core — the primitives every other layer shares
//!
//! `core` holds the small, policy-free types the rest of the engine speaks in:
//!
//! * [`NodeId`] — who made a change. 32 bytes (in later layers, the blake3 of
//!   the node's certificate), printed as lowercase hex.
//! * [`Seq`] — a position in a node's write-ahead log. Sequences start at 1
//!   and never repeat, across restarts and log compaction.
//! * [`ContentHash`] — a blake3 digest with a stable text form, used for file
//!   contents and chunks.
//! * [`VersionVector`] — per-item change counts per node; comparing two
//!   tells newer, older, equal or concurrent (a conflict).
//! * [`Clock`] — the only way logic above `core` learns the time, so tests can
//!   drive it with [`ManualClock`] (virtual time) while the runtime uses
//!   [`SystemClock`].
//! * [`ErrorContext`] — the shape every layer's error follows: *what* failed,
//!   *where*, and whether retrying can help.
//!
//! `core` does no I/O and knows nothing about files, logs, peers or the CLI.
//!
//! ```
//! use softadastra::core::{ContentHash, Seq};
//! let h = ContentHash::of(b"hello");
//! let parsed: ContentHash = h.to_string().parse().unwrap();
//! assert_eq!(h, parsed);
//! assert_eq!(Seq(1).next(), Seq(2));
//! ```

pub(crate) mod bytes;
mod clock;
mod error;
pub(crate) mod grow;
mod hash;
mod id;
pub mod path;
mod size;
mod version;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{ErrorContext, Retry};
pub use hash::{ContentHash, MAX_CHUNK_LEN, MIN_LISTED_CHUNK, ParseHashError, is_zeros, zeros};
pub use id::{NodeId, ParseNodeIdError, Seq, base32_decode, base32_encode};
pub use size::parse_size;
pub use version::{Causality, VersionVector};

/// Lock a mutex, surviving a panicked holder: every holder in this project
/// leaves the data consistent (changes go through the store's WAL first, or
/// are plain registries), so a panic elsewhere must not stop the node.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A byte count as people read it: `532 B`, `3.2 MB`, `1.0 TB` (powers of
/// 1,000).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
