//! The threads small files are written on, and what finishing a written
//! file takes (writeback, mtime and permission bits).

use super::*;

/// The threads small files are written on: a few, fed from one queue,
/// instead of a blocking-pool task per file — thousands of small files
/// cost no thread wake-up each while the writers are busy (8 % off the
/// 20,000-file sync). They end when this is dropped.
pub struct Writers {
    pub(super) queue: std::sync::mpsc::Sender<WriteJob>,
}

pub(super) type WriteJob = Box<dyn FnOnce() + Send>;

impl Writers {
    /// `n` writer threads.
    pub fn new(n: usize) -> Writers {
        let (queue, jobs) = std::sync::mpsc::channel::<WriteJob>();
        let jobs = Arc::new(std::sync::Mutex::new(jobs));
        for i in 0..n {
            let jobs = jobs.clone();
            let started = std::thread::Builder::new()
                .name(format!("sync-writer-{i}"))
                .spawn(move || {
                    // The next job, taken under the lock, run outside it;
                    // a job that panics fails its caller, not the thread.
                    let next = || lock(&jobs).recv().ok();
                    while let Some(job) = next() {
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = started {
                warn!(error = %e, "cannot start a writer thread");
            }
        }
        Writers { queue }
    }

    /// Run `work` on a writer thread and wait for its result.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, WorkError> + Send + 'static,
    ) -> Result<T, WorkError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: WriteJob = Box::new(move || {
            let _ = tx.send(work());
        });
        self.queue.send(job).map_err(|_| stopping())?;
        // Dropped unanswered: the job panicked.
        rx.await
            .map_err(|_| WorkError::new(Cause::Io, "writing the file failed unexpectedly"))?
    }
}

impl std::fmt::Debug for Writers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writers")
    }
}

/// A large file being written is handed to the disk in steps this big.
pub(super) const WRITEBACK_STEP: u64 = 8 << 20;
