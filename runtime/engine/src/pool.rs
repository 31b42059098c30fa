//! The threads detector modules run on.
//!
//! Not tokio's blocking pool: detectors are CPU-bound, and on a small box
//! they compete with the threads that answer produce and fetch. These
//! threads run at a lower scheduling priority (nice +10), so when the CPU is
//! contended the broker's own request path wins and detectors absorb the
//! delay (measured with `cargo bench -p vigil-benches --bench detectors`,
//! section 3). At most one thread per core runs modules; more deployments
//! queue for them.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A job could not run: the pool is gone or the job panicked.
#[derive(Debug, thiserror::Error)]
#[error("detector thread pool: {0}")]
pub struct PoolError(String);

/// Low-priority threads for detector calls.
pub struct DetectorPool {
    tx: Mutex<mpsc::Sender<Job>>,
}

impl DetectorPool {
    /// Starts `threads` threads named `<name>-<i>` at niceness `nice`
    /// (Linux; elsewhere the priority is left alone).
    pub fn new(name: &str, threads: usize, nice: i32) -> Result<Self, std::io::Error> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    lower_priority(nice);
                    loop {
                        // The lock is held only while waiting for the next
                        // job, never while running one.
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // pool dropped
                        }
                    }
                })?;
        }
        Ok(DetectorPool { tx: Mutex::new(tx) })
    }

    /// Runs `f` on a pool thread and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // A panic in host code must not take the thread (and every
            // queued deployment) with it; the caller gets an error instead.
            let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
        });
        self.tx
            .lock()
            .map_err(|_| PoolError("poisoned".into()))?
            .send(job)
            .map_err(|_| PoolError("stopped".into()))?;
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(PoolError("a detector call panicked in the host".into())),
            Err(_) => Err(PoolError("stopped".into())),
        }
    }
}

#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    // SAFETY: gettid has no preconditions; setpriority with PRIO_PROCESS and
    // a thread id changes only this thread's niceness on Linux, and a
    // failure (e.g. not permitted) is reported through the return value,
    // which we log and otherwise ignore.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
    if rc != 0 {
        tracing::debug!(nice, error = %std::io::Error::last_os_error(), "cannot lower detector thread priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_panics() {
        let pool = DetectorPool::new("test-detector", 2, 10).unwrap();
        assert_eq!(pool.run(|| 2 + 2).await.unwrap(), 4);
        let e = pool.run(|| -> i32 { panic!("boom") }).await.unwrap_err();
        assert!(e.to_string().contains("panicked"));
        // Both threads are still there.
        let (a, b) = tokio::join!(pool.run(|| 1), pool.run(|| 2));
        assert_eq!((a.unwrap(), b.unwrap()), (1, 2));
    }
}
