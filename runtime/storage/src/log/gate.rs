//! Ack gates: a produce acknowledgement that also waits, for a bounded
//! time, for the detectors reading the partition (design 0019).
//!
//! A gate is "processed through offset N, with its outputs durable", owned
//! by one reader (a live detector runner) through an [`AckGate`] handle,
//! plus a budget. [`PendingAppend::wait`] waits for the batch to be durable
//! and then for every gate of its partition to reach the batch's end, each
//! at most its budget after durability; a gate that misses its budget lets
//! the acknowledgement go (the reader goes on asynchronously) and counts a
//! miss. Dropping the handle removes the gate, so a reader that stops,
//! pauses, fails or moves never holds acknowledgements.
//!
//! A gated reader works ahead of durability: it reads the tail between the
//! high watermark and the log end ([`Log::read_unacked`]) as soon as a batch
//! is queued on the WAL. What makes that safe is that the WAL is one ordered
//! stream whose durable part is always a prefix: a failed group is retried
//! until it is written or the broker stops, never skipped, and a replay stops
//! at the first entry that did not make it (local segments truncate a torn
//! tail; object groups are written one after the other). Outputs appended
//! after the input was queued are behind it in that stream, so they are
//! never durable (nor readable: completions run in order) unless the input
//! is; offsets are only ever reused after a restart, by which time no output
//! computed from the lost records survived. Readers keep their own
//! checkpoints at or below the high watermark.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};

use super::ownership::AckCheck;
use super::{Log, OnDurable};
use crate::error::{Result, StorageError};
use crate::partition::{AppendError, AppendOutcome, Partition};
use crate::producer::SeqEntry;
use crate::read::FetchedBatches;
use crate::wal::GroupWake;

/// The gates of one partition.
#[derive(Debug)]
pub(crate) struct Gates {
    open: Mutex<Vec<Entry>>,
    /// `open.len()`, readable without the lock: appends and acks skip all
    /// gate work while it is zero.
    count: AtomicUsize,
    /// Bumped on every append while a gate is open, so gated readers wake
    /// before the batch is durable.
    appended: watch::Sender<u64>,
    next_id: AtomicU64,
    /// Acknowledgements a gate let go because it missed its budget.
    misses: AtomicU64,
}

#[derive(Debug, Clone)]
struct Entry {
    id: u64,
    done: watch::Receiver<i64>,
    budget: Duration,
    /// Shared with the gate's [`Holding`].
    holding: Arc<Holding>,
}

/// How far a gate's reader has queued its outputs, for the WAL writer's
/// group holds (`wal/hold.rs`).
#[derive(Debug)]
struct Holding {
    /// Exclusive end of what the reader processed with its outputs queued
    /// on the WAL (not yet durable).
    queued: AtomicI64,
    /// Whether the writer waits for this reader at all: a reader whose
    /// calls turned slow lets its holds go.
    holds: AtomicBool,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            open: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            appended: watch::Sender::new(0),
            next_id: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }
}

impl Gates {
    /// Called after a batch is queued on the WAL.
    pub(crate) fn note_appended(&self) {
        if self.any() {
            self.appended.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn snapshot(&self) -> Vec<Entry> {
        if !self.any() {
            return Vec::new();
        }
        self.open.lock().clone()
    }

    fn remove(&self, id: u64) {
        let mut open = self.open.lock();
        open.retain(|e| e.id != id);
        self.count.store(open.len(), Ordering::SeqCst);
    }

    /// Whether a gate is open now (read under the partition lock when a
    /// batch is queued, to decide whether its group holds for it).
    pub(crate) fn any(&self) -> bool {
        self.count.load(Ordering::SeqCst) > 0
    }

    /// Whether every reader that holds groups has queued its outputs for
    /// the records below `end`.
    pub(crate) fn queued_through(&self, end: i64) -> bool {
        self.open.lock().iter().all(|e| {
            !e.holding.holds.load(Ordering::SeqCst)
                || e.holding.queued.load(Ordering::SeqCst) >= end
        })
    }
}

/// A reader's hold on its partition's acknowledgements; dropping it
/// releases them.
#[derive(Debug)]
pub struct AckGate {
    partition: Arc<Partition>,
    id: u64,
    done: Arc<watch::Sender<i64>>,
    holding: Arc<Holding>,
    wake: Arc<GroupWake>,
}

/// Moves a gate's "done" forward (never back).
fn advance_done(done: &watch::Sender<i64>, to: i64) {
    done.send_if_modified(|d| {
        let moved = to > *d;
        if moved {
            *d = to;
        }
        moved
    });
}

impl AckGate {
    /// Everything below `to` is processed and its outputs are durable:
    /// acknowledgements of batches ending there may go.
    pub fn advance(&self, to: i64) {
        advance_done(&self.done, to);
        self.queued(to);
    }

    /// A hook for [`Log::start_append_then`]: advances the gate to `to` from
    /// the WAL completion of the reader's outputs, so the acknowledgements
    /// waiting for them go as the outputs become durable instead of after
    /// the reader's task is next scheduled.
    pub fn advance_on_durable(&self, to: i64) -> OnDurable {
        self.advance_on_durable_to(move || to)
    }

    /// [`advance_on_durable`](AckGate::advance_on_durable) to the offset
    /// `to` computes when the outputs are durable: a reader that went on
    /// processing batches without outputs meanwhile (`engine`'s loan) lets
    /// the gate pass those too, and no further.
    pub fn advance_on_durable_to(&self, to: impl FnOnce() -> i64 + Send + 'static) -> OnDurable {
        let done = self.done.clone();
        Box::new(move || advance_done(&done, to()))
    }

    /// Everything below `to` is processed and its outputs are queued on the
    /// WAL (not yet durable): the WAL writer holding a group for those
    /// records may write it, outputs included.
    pub fn queued(&self, to: i64) {
        if self.holding.queued.fetch_max(to, Ordering::SeqCst) < to {
            self.wake.wake();
        }
    }

    /// From now on the WAL writer does not hold groups for this reader
    /// (its calls turned slow); acknowledgements still wait for the gate.
    pub fn release_groups(&self) {
        if self.holding.holds.swap(false, Ordering::SeqCst) {
            self.wake.wake();
        }
    }

    /// Where the gate stands (exclusive end of what was processed).
    pub fn position(&self) -> i64 {
        *self.done.borrow()
    }
}

impl Drop for AckGate {
    fn drop(&mut self) {
        self.partition.gates.remove(self.id);
        self.wake.wake();
    }
}

impl Log {
    /// Opens an ack gate on `p` standing at `from` (batches ending at or
    /// below it pass at once): from now on each acknowledgement of `p` also
    /// waits, at most `budget` after durability, for the gate to pass the
    /// batch's end. With `holds_groups`, the WAL writer also waits (up to
    /// its group hold) for the reader to queue its outputs about a batch
    /// before writing the batch's group, so both share one fsync.
    pub fn ack_gate(
        &self,
        p: &Arc<Partition>,
        from: i64,
        budget: Duration,
        holds_groups: bool,
    ) -> AckGate {
        let id = p.gates.next_id.fetch_add(1, Ordering::Relaxed);
        let (done, rx) = watch::channel(from);
        let holding = Arc::new(Holding {
            queued: AtomicI64::new(from),
            holds: AtomicBool::new(holds_groups),
        });
        let mut open = p.gates.open.lock();
        open.push(Entry {
            id,
            done: rx,
            budget,
            holding: holding.clone(),
        });
        p.gates.count.store(open.len(), Ordering::SeqCst);
        AckGate {
            partition: p.clone(),
            id,
            done: Arc::new(done),
            holding,
            wake: self.wal.group_wake().clone(),
        }
    }
}

impl Partition {
    /// A receiver that changes whenever a batch is queued while a gate is
    /// open (subscribe after opening the gate, then read
    /// [`log_end_offset`](Partition::log_end_offset)).
    pub fn watch_appends(&self) -> watch::Receiver<u64> {
        self.gates.appended.subscribe()
    }

    /// Log end offset: the next offset to assign (above the high watermark
    /// while appends are on their way to disk).
    pub fn log_end_offset(&self) -> i64 {
        self.next_offset()
    }

    /// Acknowledgements that went without a gate because it missed its
    /// budget.
    pub fn ack_gate_misses(&self) -> u64 {
        self.gates.misses.load(Ordering::Relaxed)
    }
}

impl Log {
    /// Like [`read`](Log::read), but from the high watermark on it reads the
    /// batches queued and not yet durable, up to the log end: for gated
    /// readers only (see the module doc for why that is safe for them and
    /// for no one else).
    pub async fn read_unacked(
        &self,
        p: &Partition,
        offset: i64,
        max_bytes: usize,
    ) -> Result<FetchedBatches> {
        let hw = p.high_watermark();
        if !p.is_serving() {
            return Err(p.not_leader("it was handed over"));
        }
        match read_cached(p, offset, max_bytes, hw) {
            Some(read) => read,
            None => self.read(p, offset, max_bytes).await,
        }
    }
}

/// The read [`Log::read_unacked`] serves from the cache, or `None` where
/// `offset` is below the watermark and no longer cached (a plain read
/// serves it). Below the watermark, too, the cache is used when it holds
/// `offset`: a plain read would stop at the watermark, and a gated runner
/// just behind it would count itself behind and drop its gate.
fn read_cached(
    p: &Partition,
    offset: i64,
    max_bytes: usize,
    hw: i64,
) -> Option<Result<FetchedBatches>> {
    let st = p.state.lock();
    let cached = st
        .cache
        .front()
        .is_some_and(|b| b.header.base_offset <= offset);
    if offset < hw && !cached {
        return None;
    }
    if offset > st.next_offset {
        return Some(Err(StorageError::OffsetOutOfRange {
            topic: p.topic.clone(),
            partition: p.index,
            offset,
            start: st.log_start_offset,
            end: st.next_offset,
        }));
    }
    // The cache holds every batch at or above the uploaded end, which
    // never passes the high watermark: all of the tail is in it.
    let mut out = BytesMut::new();
    for b in st.cached_from(offset) {
        if !out.is_empty() && out.len() + b.bytes.len() > max_bytes {
            break;
        }
        out.extend_from_slice(&b.bytes);
    }
    Some(Ok(FetchedBatches {
        records: out.freeze(),
        high_watermark: hw,
        log_start_offset: st.log_start_offset,
        from_object_store: false,
    }))
}

/// An append whose offsets are assigned; await [`PendingAppend::wait`] for
/// durability (and the partition's ack gates).
pub struct PendingAppend {
    kind: Kind,
}

enum Kind {
    /// Newly queued on the WAL; completes when the WAL has fsync'd it.
    Queued {
        base_offset: i64,
        /// Exclusive end of the batch, for the gates.
        end: i64,
        rx: oneshot::Receiver<Result<()>>,
        partition: Arc<Partition>,
        check: AckCheck,
        /// The batch as written, for the partition's append taps
        /// (`log/tap.rs`), called when the append is first awaited.
        tapped: Option<Bytes>,
    },
    /// A retry of an earlier batch (maybe not yet durable).
    Duplicate {
        entry: SeqEntry,
        hw: watch::Receiver<i64>,
    },
}

impl PendingAppend {
    pub(crate) fn queued(
        partition: Arc<Partition>,
        base_offset: i64,
        end: i64,
        rx: oneshot::Receiver<Result<()>>,
        check: AckCheck,
    ) -> Self {
        PendingAppend {
            kind: Kind::Queued {
                base_offset,
                end,
                rx,
                partition,
                check,
                tapped: None,
            },
        }
    }

    /// The same append, with `bytes` for the partition's taps.
    pub(crate) fn tapped(mut self, bytes: Bytes) -> Self {
        if let Kind::Queued { tapped, .. } = &mut self.kind {
            *tapped = Some(bytes);
        }
        self
    }

    pub(crate) fn duplicate(entry: SeqEntry, hw: watch::Receiver<i64>) -> Self {
        PendingAppend {
            kind: Kind::Duplicate { entry, hw },
        }
    }

    /// Waits until the batch is durable, then until every ack gate of the
    /// partition passed its end or missed its budget.
    pub async fn wait(self) -> std::result::Result<AppendOutcome, AppendError> {
        match self.kind {
            Kind::Queued {
                base_offset,
                end,
                rx,
                partition,
                check,
                tapped,
            } => {
                if let Some(bytes) = tapped {
                    partition.taps.call(base_offset, end, &bytes);
                }
                match rx.await.map_err(|_| StorageError::WalClosed)? {
                    Ok(()) => {}
                    Err(e @ StorageError::OwnershipUnconfirmed { .. }) => {
                        check.await_confirmation(&partition, end, e).await?
                    }
                    Err(e) => return Err(e.into()),
                }
                wait_gates(&partition, end).await;
                Ok(AppendOutcome::Appended { base_offset })
            }
            Kind::Duplicate { entry, mut hw } => {
                // The original may still be on its way to disk; its own
                // acknowledgement waited for the gates.
                hw.wait_for(|h| *h > entry.last_offset)
                    .await
                    .map_err(|_| StorageError::WalClosed)?;
                Ok(AppendOutcome::Duplicate {
                    base_offset: entry.base_offset,
                })
            }
        }
    }
}

/// Waits for each open gate of `p` to reach `end`, each at most its budget
/// from now (the batch just became durable).
async fn wait_gates(p: &Partition, end: i64) {
    let gates = p.gates.snapshot();
    if gates.is_empty() {
        return;
    }
    let durable = tokio::time::Instant::now();
    for g in gates {
        let mut done = g.done;
        let passed = tokio::time::timeout_at(durable + g.budget, done.wait_for(|d| *d >= end));
        // An error means the gate was dropped: nothing to wait for.
        if passed.await.is_err() {
            p.gates.misses.fetch_add(1, Ordering::Relaxed);
        }
    }
}
