//! Admission of appends: refuse at once, with a retriable error, when the
//! write cannot make progress or would only grow memory (issue 11 items 5
//! and 6).
//!
//! - The local WAL cannot write (disk full, I/O errors): an append queued now
//!   would wait behind the failing group; `KAFKA_STORAGE_ERROR` tells the
//!   client to retry, which it does until the disk recovers.
//! - More than `max_unuploaded_bytes` wait for upload (object store slow or
//!   down): every un-uploaded batch is held in memory, so accepting more
//!   would grow the broker until it is killed. The count goes up with each
//!   admitted append and is replaced by an exact recount after every upload
//!   attempt, so refused or failed appends never leave it too high for long.

use std::sync::atomic::Ordering;

use super::Log;
use crate::error::{Result, StorageError};

impl Log {
    /// Whether an append of `bytes` may be queued now.
    pub(crate) fn admit_append(&self, bytes: usize) -> Result<()> {
        self.wal.check_writable()?;
        let limit = self.config.max_unuploaded_bytes;
        let held = self.stats.unuploaded_bytes.load(Ordering::Relaxed);
        if held >= limit {
            return Err(StorageError::Backpressure { held, limit });
        }
        let now = held + bytes as u64;
        self.stats
            .unuploaded_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        let due = self.config.upload_bytes;
        if due > 0 && now >= due {
            // A stored permit: an uploader busy right now runs again at once.
            self.upload_due.notify_one();
        }
        Ok(())
    }

    /// Bytes of batches appended (durable or still queued) and not yet in
    /// the object store, counted exactly across partitions.
    pub fn unuploaded_bytes(&self) -> u64 {
        self.topics()
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.unuploaded_bytes()))
            .sum()
    }

    /// Replaces the running count by an exact one (after each upload
    /// attempt, and at start for what the WAL replayed).
    pub(crate) fn recount_unuploaded(&self) {
        self.stats
            .unuploaded_bytes
            .store(self.unuploaded_bytes(), Ordering::Relaxed);
    }

    /// Whether the local WAL is currently failing to write.
    pub fn wal_failing(&self) -> bool {
        self.wal.health().is_failing()
    }
}
