//! Whether the local WAL writer can write right now.
//!
//! The writer thread sets this when a write or fsync fails (ENOSPC, EIO, ...)
//! and clears it when a retry succeeds. Appenders read it so that a produce
//! is refused at once with a retriable error while the disk fails, instead of
//! queueing behind a group that cannot be written (issue 11 item 5).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::error::{Result, StorageError};

/// The last write failure, kept to tell appenders what is wrong.
#[derive(Debug, Clone)]
struct Failure {
    path: PathBuf,
    kind: std::io::ErrorKind,
    raw: Option<i32>,
    message: String,
}

/// Health of the local WAL writer.
#[derive(Debug, Default)]
pub struct WalHealth {
    failing: AtomicBool,
    last: Mutex<Option<Failure>>,
    failures: AtomicU64,
    recoveries: AtomicU64,
}

impl WalHealth {
    /// Records a failed write of `path`.
    pub(super) fn failed(&self, path: &Path, e: &std::io::Error) {
        *self.last.lock() = Some(Failure {
            path: path.to_path_buf(),
            kind: e.kind(),
            raw: e.raw_os_error(),
            message: e.to_string(),
        });
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.failing.store(true, Ordering::SeqCst);
    }

    /// Records a successful write; true if it ended a failing spell.
    pub(super) fn ok(&self) -> bool {
        let was = self.failing.swap(false, Ordering::SeqCst);
        if was {
            self.recoveries.fetch_add(1, Ordering::Relaxed);
        }
        was
    }

    /// Whether the last write failed.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::SeqCst)
    }

    /// Failed write attempts so far (each retry counts).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Times the writer recovered after failing.
    pub fn recoveries(&self) -> u64 {
        self.recoveries.load(Ordering::Relaxed)
    }

    /// `Ok` unless the writer is failing; then a retriable `WalIo` naming
    /// the segment and the OS error.
    pub(super) fn check(&self) -> Result<()> {
        if !self.is_failing() {
            return Ok(());
        }
        let last = self.last.lock().clone();
        let (path, source) = match last {
            Some(f) => {
                let source = match f.raw {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(f.kind, f.message),
                };
                (f.path, source)
            }
            None => (
                PathBuf::from("wal"),
                std::io::Error::other("the WAL writer is failing"),
            ),
        };
        Err(StorageError::WalIo { path, source })
    }
}
