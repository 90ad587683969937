//! How a log behaves: when appends are made durable ([`Durability`]) and
//! where the log lives ([`WalConfig`]). Types only; no I/O.

use std::path::PathBuf;
use std::time::Duration;

/// When appended records are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync after every append.
    EveryAppend,
    /// fsync pending appends together: after `max_batch` of them, or once the
    /// oldest has waited `max_delay`.
    Group {
        /// Pending appends that force an fsync.
        max_batch: usize,
        /// Longest an append waits for its fsync.
        max_delay: Duration,
    },
    /// Never fsync. Tests and benchmarks only.
    None,
}

impl Durability {
    /// Group commit with the defaults the agent uses: 512 records or 5 ms.
    pub const GROUP_DEFAULT: Durability = Durability::Group {
        max_batch: 512,
        max_delay: Duration::from_millis(5),
    };
}

/// Where the log lives and how it behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    /// Directory holding the segment files.
    pub dir: PathBuf,
    /// When appends become durable.
    pub durability: Durability,
    /// A segment is closed and a new one started once it reaches this size.
    pub segment_bytes: u64,
}

impl WalConfig {
    /// fsync-per-append, 64 MiB segments, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalConfig {
            dir: dir.into(),
            durability: Durability::EveryAppend,
            segment_bytes: 64 << 20,
        }
    }
}
