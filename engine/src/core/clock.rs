use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Wall-clock time in nanoseconds since the Unix epoch.
///
/// Stored in log records and store entries; compared across nodes only as a
/// tie-breaker, never trusted for ordering (version vectors do that).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Nanoseconds since the Unix epoch.
    pub fn as_nanos(self) -> u64 {
        self.0
    }
}

/// Source of time for everything above `core`.
///
/// Two readings are offered: a monotonic [`Instant`] for deadlines and
/// timeouts, and a wall-clock [`Timestamp`] for records. Logic takes a
/// `&dyn Clock` (or the current time as an argument) rather than calling the
/// system clock, so it can be driven by [`ManualClock`] in tests.
pub trait Clock: Send + Sync {
    /// Monotonic time, for deadlines.
    fn now(&self) -> Instant;
    /// Wall-clock time, for records.
    fn wall(&self) -> Timestamp;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> Timestamp {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// A clock that only moves when told to: virtual time for tests and
/// simulations. Cloning shares the same time.
///
/// ```
/// use softadastra::core::{Clock, ManualClock};
/// use std::time::Duration;
/// let clock = ManualClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_millis(5));
/// assert_eq!(clock.now() - t0, Duration::from_millis(5));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    base: Instant,
    offset_ns: Arc<AtomicU64>,
    wall_base: u64,
}

impl ManualClock {
    /// A clock starting at an arbitrary instant, wall time 2020-01-01.
    pub fn new() -> Self {
        ManualClock {
            base: Instant::now(),
            offset_ns: Arc::new(AtomicU64::new(0)),
            wall_base: 1_577_836_800_000_000_000,
        }
    }
    /// Move time forward.
    pub fn advance(&self, by: Duration) {
        let ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_ns.fetch_add(ns, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.offset_ns.load(Ordering::SeqCst))
    }
    fn wall(&self) -> Timestamp {
        Timestamp(self.wall_base + self.offset_ns.load(Ordering::SeqCst))
    }
}
