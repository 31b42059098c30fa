//! Threads for background work that must yield to the request path.
//!
//! Not tokio's blocking pool: the work here (detector calls, replays, the
//! local object store's writes) is bulk, and on a small box it competes with
//! the threads that answer produce and fetch. These threads run at a lower
//! scheduling priority, so when the CPU is contended the broker's own request
//! path wins and the background work absorbs the delay (measured with
//! `cargo bench -p vigil-benches --bench detectors`, section 3, and the
//! broker bench's upload rows).
//!
//! Niceness shares CPU time; it does not guarantee that a woken request
//! thread runs before a busy low-priority one (the replay bench saw the
//! request path's run-queue waits double during a nice-19 replay).
//! Threads in Linux's `SCHED_IDLE` class are preempted as soon as a normal
//! thread wakes, and a core running only them counts as idle when a woken
//! thread is placed, so replay threads (bulk background work) run in that
//! class by default (design 0020, "Replay below the request path").

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A job could not run: the pool is gone or the job panicked. Retrying
/// cannot help: the pool stops only when its owner shuts down.
#[derive(Debug, thiserror::Error)]
#[error("thread pool {pool}: {why}")]
pub struct PoolError {
    pool: String,
    why: &'static str,
}

/// Low-priority threads that run jobs and hand their results back.
pub struct ThreadPool {
    name: String,
    tx: Mutex<mpsc::Sender<Job>>,
}

impl ThreadPool {
    /// Starts `threads` threads named `<name>-<i>` at `priority` (Linux;
    /// elsewhere the priority is left alone).
    pub fn new(name: &str, threads: usize, priority: Priority) -> Result<Self, std::io::Error> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    lower_priority(priority);
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
        Ok(ThreadPool {
            name: name.to_string(),
            tx: Mutex::new(tx),
        })
    }

    /// Runs `f` on a pool thread and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // A panic in a job must not take the thread (and every queued
            // job) with it; the caller gets an error instead.
            let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
        });
        let error = |why| PoolError {
            pool: self.name.clone(),
            why,
        };
        self.tx
            .lock()
            .map_err(|_| error("poisoned"))?
            .send(job)
            .map_err(|_| error("stopped"))?;
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(error("a job panicked")),
            Err(_) => Err(error("stopped")),
        }
    }
}

/// How a pool's threads are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    /// Niceness, -20..=19 (it orders the pool's threads among other
    /// `SCHED_OTHER` threads; in the idle class it has no effect).
    pub nice: i32,
    /// Run in the `SCHED_IDLE` class: any normal thread that wakes takes
    /// the core at once.
    pub idle: bool,
}

#[cfg(target_os = "linux")]
fn lower_priority(p: Priority) {
    // SAFETY: gettid has no preconditions; setpriority with PRIO_PROCESS and
    // a thread id changes only this thread's niceness on Linux, and a
    // failure (e.g. not permitted) is reported through the return value,
    // which we log and otherwise ignore.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, p.nice)
    };
    if rc != 0 {
        tracing::debug!(nice = p.nice, error = %std::io::Error::last_os_error(), "cannot lower a background thread's priority");
    }
    if p.idle {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` is a valid
        // sched_param that outlives the call; lowering a thread's own
        // class needs no privilege, and a failure only leaves the thread
        // at its niceness, which we log.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if rc != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot move a background thread to SCHED_IDLE; it keeps its niceness");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_p: Priority) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_panics() {
        let pool = ThreadPool::new(
            "test-detector",
            2,
            Priority {
                nice: 10,
                idle: false,
            },
        )
        .unwrap();
        assert_eq!(pool.run(|| 2 + 2).await.unwrap(), 4);
        let e = pool.run(|| -> i32 { panic!("boom") }).await.unwrap_err();
        assert!(e.to_string().contains("panicked"));
        // Both threads are still there.
        let (a, b) = tokio::join!(pool.run(|| 1), pool.run(|| 2));
        assert_eq!((a.unwrap(), b.unwrap()), (1, 2));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn threads_take_the_niceness_and_class_they_are_given() {
        // SAFETY: both calls only read the calling thread's scheduling
        // attributes (pid 0 / who 0 = this thread on Linux).
        let sched = || unsafe {
            (
                libc::sched_getscheduler(0),
                libc::getpriority(libc::PRIO_PROCESS, 0),
            )
        };
        let idle = ThreadPool::new(
            "test-idle",
            1,
            Priority {
                nice: 19,
                idle: true,
            },
        )
        .unwrap();
        assert_eq!(idle.run(sched).await.unwrap(), (libc::SCHED_IDLE, 19));
        let normal = ThreadPool::new(
            "test-nice",
            1,
            Priority {
                nice: 10,
                idle: false,
            },
        )
        .unwrap();
        assert_eq!(normal.run(sched).await.unwrap(), (libc::SCHED_OTHER, 10));
    }
}
