//! Append taps: readers that process a partition's batches on the task that
//! appended them, with the batch in hand (design 0019, "Detectors on the
//! appending task").
//!
//! A gated detector otherwise pays a whole cycle per produced batch: a task
//! wake-up, a tail read under the partition lock, the call, status updates.
//! A tap is called when the append [`Log::start_append_then`](super::Log::start_append_then) queued is
//! first awaited ([`PendingAppend::wait`](crate::PendingAppend::wait)): on
//! the producer's own request, after the batch is on the WAL, so the work
//! overlaps the batch's fsync; and not on the connection's ordered half,
//! which goes on reading requests meanwhile. Taps are called outside the
//! partition lock: calls for one partition may come from several tasks at
//! once and out of offset order, and a tap puts them in order itself. An
//! append that is never awaited (a client gone) never reaches the taps,
//! which then see a gap. A tap's own appends
//! ([`Log::try_start_append_then`](super::Log::try_start_append_then)) call no taps, so no tap runs inside
//! another's call and no lock is held across partitions.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use crate::partition::Partition;

/// A reader called with each batch queued on its partition.
pub trait AppendTap: Send + Sync {
    /// `records`, offsets `base..end` as written to the WAL, was just queued
    /// and is not yet durable (the same guarantees as a gated reader's
    /// [`Log::read_unacked`](super::Log::read_unacked)). Must not block: the producer's request waits.
    fn appended(&self, base: i64, end: i64, records: &Bytes);
}

/// The taps of one partition.
#[derive(Default)]
pub(crate) struct Taps {
    list: RwLock<Vec<(u64, Arc<dyn AppendTap>)>>,
    /// `list.len()`, readable without the lock: appends skip all tap work
    /// while it is zero.
    count: AtomicUsize,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Taps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Taps")
            .field("count", &self.count.load(Ordering::Relaxed))
            .finish()
    }
}

impl Taps {
    /// Whether a tap is registered now.
    pub(crate) fn any(&self) -> bool {
        self.count.load(Ordering::SeqCst) > 0
    }

    /// Calls every tap with a batch just queued.
    pub(crate) fn call(&self, base: i64, end: i64, records: &Bytes) {
        // Cloned out so a tap that removes itself (or another) does not
        // deadlock on the list.
        let taps: Vec<Arc<dyn AppendTap>> =
            self.list.read().iter().map(|(_, t)| t.clone()).collect();
        for t in taps {
            t.appended(base, end, records);
        }
    }

    fn remove(&self, id: u64) {
        let mut list = self.list.write();
        list.retain(|(i, _)| *i != id);
        self.count.store(list.len(), Ordering::SeqCst);
    }
}

/// A registered tap; dropping it unregisters the tap (calls already under
/// way may still finish).
pub struct TapHandle {
    partition: Arc<Partition>,
    id: u64,
}

impl Drop for TapHandle {
    fn drop(&mut self) {
        self.partition.taps.remove(self.id);
    }
}

impl Partition {
    /// Registers `tap` for every batch queued from now on.
    pub fn add_tap(self: &Arc<Self>, tap: Arc<dyn AppendTap>) -> TapHandle {
        let id = self.taps.next_id.fetch_add(1, Ordering::Relaxed);
        let mut list = self.taps.list.write();
        list.push((id, tap));
        self.taps.count.store(list.len(), Ordering::SeqCst);
        TapHandle {
            partition: self.clone(),
            id,
        }
    }
}
