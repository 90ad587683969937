//! Giving memory the agent freed back to the system.
//!
//! glibc's allocator keeps what a thread freed in that thread's arena for
//! reuse, and returns it to the system only from the top of the main heap.
//! An agent that just synced a large folder has many threads that each
//! allocated and freed tens of megabytes (scans, decoding, the network),
//! so its resident memory stayed at its peak long after it went idle:
//! 268 MB for the sender of 200,000 files, of which 108 MB were still in
//! use (`docs/benchmarks.md`, 2026-12-04). Every [`PERIOD`], when the
//! arenas hold more than [`WORTH_IT`] free bytes, this asks glibc to hand
//! free pages back (`malloc_trim`, which drops them from every arena).
//!
//! [`keep_large_blocks_apart`], at the start of every command, fixes the
//! size from which glibc gives a block pages of its own (returned to the
//! system the moment it is freed) at [`OWN_PAGES_FROM`]. Left to itself,
//! glibc raises that size to a block's size each time such a block is
//! freed, up to 32 MiB: after the first large buffers of a scan or a sync,
//! the next ones were carved from the arenas, where what is left around
//! them once freed cannot be handed back. Measured at 200,000 files
//! (`cargo bench --bench scale`): peak 152 / 131 MB and idle 69 / 99 MB
//! for sender / receiver before, 112 / 110 MB and 49 / 66 MB after, the
//! sync as fast.
//!
//! It owns only that setting and the timer. It never frees or moves
//! anything in use, and on a system without glibc it does nothing.

use std::time::Duration;

/// How often the free memory is looked at.
pub const PERIOD: Duration = Duration::from_secs(2);

/// Free bytes in the allocator's arenas below which nothing is done: a
/// trim walks every arena, not worth it for a few megabytes.
pub const WORTH_IT: usize = 16 << 20;

/// Blocks from this size up get pages of their own (see the module's
/// text).
pub const OWN_PAGES_FROM: usize = 1 << 20;

/// Fix the size from which blocks get pages of their own at
/// [`OWN_PAGES_FROM`]; call it once, before the threads start.
pub fn keep_large_blocks_apart() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: a plain glibc call with no pointer arguments, made before
    // any other thread runs. Its result (whether glibc took the value) is
    // ignored: the default only costs memory.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_PAGES_FROM as libc::c_int);
    }
}

/// What the allocator held when it was looked at, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    /// Handed out and not freed.
    pub in_use: usize,
    /// Freed but kept in the arenas (before any give-back).
    pub free: usize,
}

/// Hand free memory back when there is at least `worth_it` bytes of it;
/// returns what the allocator held before, or `None` when this system's
/// allocator cannot say (then nothing is done).
pub fn give_back(worth_it: usize) -> Option<Held> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: both are plain glibc calls with no pointer arguments;
        // they take the arenas' locks themselves.
        let info = unsafe { libc::mallinfo2() };
        let held = Held {
            in_use: info.uordblks + info.hblkhd,
            free: info.fordblks,
        };
        if held.free >= worth_it {
            unsafe { libc::malloc_trim(0) };
        }
        Some(held)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = worth_it;
        None
    }
}

/// [`give_back`] every [`PERIOD`], off the async workers, for as long as
/// the agent runs.
pub async fn give_back_every_period() {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match tokio::task::spawn_blocking(|| give_back(WORTH_IT)).await {
            Ok(Some(held)) => tracing::debug!(
                in_use_mb = held.in_use >> 20,
                free_mb = held.free >> 20,
                "allocator"
            ),
            // Nothing to do here, ever; or the runtime is stopping.
            Ok(None) | Err(_) => return,
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Memory a thread freed is handed back: resident memory falls after a
    /// give-back, which it does not by itself (the arena keeps it).
    #[test]
    fn freed_memory_goes_back_to_the_system() {
        fn resident_kb() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap()
        }
        // Many small blocks (each below the allocator's mmap threshold, so
        // they live in an arena), all touched, then freed — on a thread of
        // its own, so in an arena of its own, as the agent's threads do.
        std::thread::spawn(|| {
            let blocks: Vec<Vec<u8>> = (0..64 * 1024).map(|_| vec![1u8; 1024]).collect();
            std::hint::black_box(&blocks);
            // Keep one block at the arena's top so the free space is not
            // simply the top of the heap being given back on free.
            let last = vec![2u8; 1024];
            drop(blocks);
            std::hint::black_box(&last);
            std::mem::forget(last);
        })
        .join()
        .unwrap();
        let before = resident_kb();
        let free = give_back(1 << 20).unwrap().free;
        let after = resident_kb();
        assert!(
            free >= 32 << 20,
            "only {free} bytes free after freeing 64 MiB"
        );
        assert!(
            after + 32 * 1024 < before,
            "resident {before} kB before giving back, {after} kB after"
        );
    }
}
