//! One partition: the single place that assigns its offsets.
//!
//! A partition's state sits behind a synchronous mutex (parking_lot, not
//! tokio's) because nothing awaits while it is held: the append path checks
//! producer sequences, assigns offsets, caches the batch and queues it on the
//! WAL, all without yielding. Holding the lock while queuing is what keeps a
//! partition's WAL entries in offset order. The high watermark is published
//! through a `watch` channel so that long-polling fetches wake on new data.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::watch;
use uuid::Uuid;
use vigil_protocol::batch::{self, BatchError, BatchHeader};

use crate::error::{Result, StorageError};
use crate::manifest::{PartitionManifest, SegmentMeta};
use crate::producer::{ProducerStates, SeqCheck, SeqEntry};

pub use crate::log::gate::PendingAppend;

/// A batch held in memory, with its final offsets.
#[derive(Debug, Clone)]
pub struct CachedBatch {
    /// Header with the assigned base offset.
    pub header: BatchHeader,
    /// Wire bytes, base offset rewritten.
    pub bytes: Bytes,
    /// When it was appended (or replayed), for the upload lag metric.
    pub appended: std::time::Instant,
}

/// Mutable state of a partition.
#[derive(Debug)]
pub(crate) struct State {
    /// Log end offset: the next offset to assign.
    pub next_offset: i64,
    /// First readable offset.
    pub log_start_offset: i64,
    /// Everything below is in segment objects.
    pub uploaded_next: i64,
    /// Contiguous batches ending at `next_offset`; always holds every batch
    /// at or above `uploaded_next`.
    pub cache: VecDeque<CachedBatch>,
    /// Bytes in `cache`.
    pub cache_bytes: usize,
    /// Uploaded segments, ascending.
    pub segments: Vec<SegmentMeta>,
    /// Producer state including batches not yet durable.
    pub producers: ProducerStates,
    /// Leader epochs, oldest first; the last one is current.
    pub epochs: Vec<crate::epochs::EpochStart>,
}

impl State {
    /// The cached batches that end at or after `offset`, in order. A binary
    /// search: the cache holds up to tens of thousands of small batches,
    /// and every tail read (consumers, each detector runner) scanned it
    /// from the front under the partition lock that appends take too.
    pub(crate) fn cached_from(&self, offset: i64) -> impl Iterator<Item = &CachedBatch> {
        let first = self
            .cache
            .partition_point(|b| b.header.last_offset() < offset);
        self.cache.range(first..)
    }
}

/// A partition of a topic.
#[derive(Debug)]
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition index.
    pub index: i32,
    pub(crate) state: Mutex<State>,
    hw: watch::Sender<i64>,
    /// End of what the WAL has written whose acknowledgement was refused
    /// because ownership could not be confirmed at the time; published as
    /// the high watermark once a later check confirms it (see
    /// [`crate::fence`]). Without that, an idempotent producer's retries
    /// would wait for a high watermark that nothing advances.
    written_unconfirmed: std::sync::atomic::AtomicI64,
    /// End of the appends whose WAL write finished, acknowledged or not
    /// (see `Log::release_partition`, which waits for them).
    pub(crate) settled: std::sync::atomic::AtomicI64,
    /// Whether this broker serves the partition (leads it). Cleared when it
    /// is handed over; a partition taken over again is a new object.
    serving: std::sync::atomic::AtomicBool,
    /// The current leader epoch (the last of `State::epochs`), readable
    /// without the lock (acknowledgements check it under other locks).
    current_epoch: std::sync::atomic::AtomicI32,
    /// Readers acknowledgements wait for (see `log/gate.rs`).
    pub(crate) gates: crate::log::gate::Gates,
    /// Readers called with each queued batch (see `log/tap.rs`).
    pub(crate) taps: crate::log::tap::Taps,
}

/// Why an append was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The records are not one valid magic-v2 batch.
    #[error("{topic}-{partition}: corrupt record batch: {source}")]
    Corrupt {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// What is wrong.
        source: BatchError,
    },
    /// More or fewer than one batch, or a control batch from a client.
    #[error("{topic}-{partition}: invalid records: {reason}")]
    InvalidRecord {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// What is wrong.
        reason: String,
    },
    /// The producer epoch is older than the partition has seen.
    #[error("{topic}-{partition}: producer {producer_id} epoch {got} is older than current epoch {current}")]
    StaleEpoch {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Producer id.
        producer_id: i64,
        /// Batch epoch.
        got: i16,
        /// Current epoch.
        current: i16,
    },
    /// A sequence gap.
    #[error(
        "{topic}-{partition}: producer {producer_id} sent sequence {got}, expected {expected}"
    )]
    OutOfOrder {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Producer id.
        producer_id: i64,
        /// Expected first sequence.
        expected: i32,
        /// Batch first sequence.
        got: i32,
    },
    /// The producer id was never handed out by this log (forged, or from
    /// another cluster). Not retriable with this id: the producer must ask
    /// for a new one (InitProducerId).
    #[error("{topic}-{partition}: producer id {producer_id} was never handed out by this broker (ids below {issued_below} were); get one with InitProducerId")]
    UnknownProducerId {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Producer id.
        producer_id: i64,
        /// Ids below this have been handed out.
        issued_below: i64,
    },
    /// The partition remembers as many producers as it may, all of them
    /// recent enough that forgetting one could turn its retry into a
    /// duplicate. Retriable: room is made as producers go idle.
    #[error("{topic}-{partition}: producer {producer_id} refused: the partition already tracks {} idempotent producers that all wrote in the last {} s; retry later", crate::producer::MAX_PRODUCERS, crate::producer::PROTECTED_MS / 1000)]
    TooManyProducers {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Producer id.
        producer_id: i64,
    },
    /// The WAL could not take it.
    #[error(transparent)]
    Storage(#[from] crate::error::StorageError),
}

/// What happened to an accepted batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Newly written at this base offset.
    Appended {
        /// First offset of the batch.
        base_offset: i64,
    },
    /// A retry of a batch already written at this base offset.
    Duplicate {
        /// First offset of the original batch.
        base_offset: i64,
    },
}

/// What [`Partition::begin_append`] checks producer ids against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProducerCheck {
    /// Producer ids below this have been handed out by InitProducerId.
    pub issued_below: i64,
    /// Wall-clock time of the append (ms), for the producers' recency.
    pub now_ms: i64,
}

/// What [`Partition::begin_append`] decided, under the lock.
pub(crate) enum Begun {
    /// Queued at this base offset, ending before `end`: wait for its
    /// completion.
    Queued { base_offset: i64, end: i64 },
    /// Already written (maybe not yet durable).
    Duplicate(SeqEntry),
}

impl Partition {
    /// A partition restored from its manifest entry.
    pub(crate) fn new(topic: &str, topic_id: Uuid, index: i32, m: &PartitionManifest) -> Self {
        let (hw, _) = watch::channel(m.uploaded_next);
        Self {
            topic: topic.to_string(),
            topic_id,
            index,
            state: Mutex::new(State {
                next_offset: m.uploaded_next,
                log_start_offset: m.log_start_offset,
                uploaded_next: m.uploaded_next,
                cache: VecDeque::new(),
                cache_bytes: 0,
                segments: m.segments.clone(),
                producers: ProducerStates::from_snapshot(m.producers()),
                epochs: m.leader_epochs.clone(),
            }),
            hw,
            written_unconfirmed: std::sync::atomic::AtomicI64::new(m.uploaded_next),
            settled: std::sync::atomic::AtomicI64::new(m.uploaded_next),
            serving: std::sync::atomic::AtomicBool::new(true),
            current_epoch: std::sync::atomic::AtomicI32::new(
                m.leader_epochs
                    .last()
                    .map_or(crate::epochs::UNDEFINED, |e| e.epoch),
            ),
            gates: Default::default(),
            taps: Default::default(),
        }
    }

    /// Whether this broker serves (leads) the partition.
    pub fn is_serving(&self) -> bool {
        self.serving.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops serving: appends and reads are refused from now on.
    pub(crate) fn stop_serving(&self) {
        self.serving
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// The error for a request to a partition this broker does not serve.
    pub(crate) fn not_leader(&self, reason: &str) -> StorageError {
        StorageError::NotLeader {
            topic: self.topic.clone(),
            partition: self.index,
            reason: reason.to_string(),
        }
    }

    /// Log end offset: the next offset to assign.
    pub(crate) fn next_offset(&self) -> i64 {
        self.state.lock().next_offset
    }

    /// The current leader epoch (`-1` before one started).
    pub fn leader_epoch(&self) -> i32 {
        self.current_epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `(epoch, end offset)` of leader epoch `requested`, as
    /// OffsetsForLeaderEpoch answers it (see [`crate::epochs::end_offset_for`]);
    /// the current epoch ends at the high watermark.
    pub fn end_offset_for_epoch(&self, requested: i32) -> (i32, i64) {
        let hw = self.high_watermark();
        crate::epochs::end_offset_for(&self.state.lock().epochs, hw, requested)
    }

    /// Starts leader epoch `epoch` at the current log end (ignored if not
    /// above the current one). Returns whether it started.
    pub(crate) fn start_epoch(&self, epoch: i32) -> bool {
        let mut st = self.state.lock();
        let end = st.next_offset;
        let started = crate::epochs::start(&mut st.epochs, epoch, end);
        if started {
            self.current_epoch
                .store(epoch, std::sync::atomic::Ordering::SeqCst);
        }
        started
    }

    /// The leader epoch history, for the partition's manifest.
    pub(crate) fn epoch_history(&self) -> Vec<crate::epochs::EpochStart> {
        self.state.lock().epochs.clone()
    }

    /// High watermark: offsets below it are durable and readable.
    pub fn high_watermark(&self) -> i64 {
        *self.hw.borrow()
    }

    /// First readable offset.
    pub fn log_start_offset(&self) -> i64 {
        self.state.lock().log_start_offset
    }

    /// A receiver that changes whenever the high watermark advances.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.hw.subscribe()
    }

    /// Raises the high watermark (never lowers it).
    pub(crate) fn advance_high_watermark(&self, to: i64) {
        self.hw.send_if_modified(|h| {
            if to > *h {
                *h = to;
                true
            } else {
                false
            }
        });
    }

    /// Notes that everything below `to` is written but not yet
    /// acknowledged (ownership unconfirmed).
    pub(crate) fn note_written_unconfirmed(&self, to: i64) {
        self.written_unconfirmed
            .fetch_max(to, std::sync::atomic::Ordering::SeqCst);
    }

    /// End of what was written while ownership was unconfirmed: once the
    /// high watermark reaches it, those writes are visible. A writer refused
    /// with `OwnershipUnconfirmed` waits for that instead of writing again.
    pub fn written_unconfirmed(&self) -> i64 {
        self.written_unconfirmed
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Validates `records` (exactly one batch, CRC) without the lock.
    pub(crate) fn validate(&self, records: &Bytes) -> Result<BatchHeader, AppendError> {
        let corrupt = |source| AppendError::Corrupt {
            topic: self.topic.clone(),
            partition: self.index,
            source,
        };
        let header = BatchHeader::parse(records).map_err(corrupt)?;
        if header.total_len() != records.len() {
            return Err(AppendError::InvalidRecord {
                topic: self.topic.clone(),
                partition: self.index,
                reason: format!(
                    "a produce request must carry exactly one record batch per partition ({} bytes after the first batch)",
                    records.len().saturating_sub(header.total_len())
                ),
            });
        }
        batch::validate(records).map_err(corrupt)?;
        // Kafka decompresses every batch on append to validate its records;
        // so does vigil, through the one bounded decompressor: a compression
        // bomb, or records that do not frame the declared count (which
        // would make decoders reserve memory for them), are refused here
        // instead of being stored for every reader to trip over.
        batch::check_batch(records, batch::DEFAULT_DECOMPRESSED_LIMIT).map_err(corrupt)?;
        if header.is_control() || header.is_transactional() {
            return Err(AppendError::InvalidRecord {
                topic: self.topic.clone(),
                partition: self.index,
                reason: "transactional and control batches are not supported".into(),
            });
        }
        Ok(header)
    }

    /// Checks sequences, assigns offsets, caches the batch and hands it to
    /// `queue` with its last offset (which must queue it on the WAL) — all
    /// under the lock. Producer ids at or above `producers.issued_below`
    /// were never handed out and are refused.
    pub(crate) fn begin_append(
        &self,
        header: BatchHeader,
        records: &Bytes,
        producers: ProducerCheck,
        queue: impl FnOnce(Bytes, i64),
    ) -> Result<Begun, AppendError> {
        let mut st = self.state.lock();
        match st
            .producers
            .check(&header, producers.issued_below, producers.now_ms)
        {
            SeqCheck::Append => {}
            SeqCheck::Duplicate(e) => return Ok(Begun::Duplicate(e)),
            SeqCheck::StaleEpoch { got, current } => {
                return Err(AppendError::StaleEpoch {
                    topic: self.topic.clone(),
                    partition: self.index,
                    producer_id: header.producer_id,
                    got,
                    current,
                })
            }
            SeqCheck::OutOfOrder { expected, got } => {
                return Err(AppendError::OutOfOrder {
                    topic: self.topic.clone(),
                    partition: self.index,
                    producer_id: header.producer_id,
                    expected,
                    got,
                })
            }
            SeqCheck::UnknownProducerId { issued_below } => {
                return Err(AppendError::UnknownProducerId {
                    topic: self.topic.clone(),
                    partition: self.index,
                    producer_id: header.producer_id,
                    issued_below,
                })
            }
            SeqCheck::TooManyProducers => {
                return Err(AppendError::TooManyProducers {
                    topic: self.topic.clone(),
                    partition: self.index,
                    producer_id: header.producer_id,
                })
            }
        }
        let base_offset = st.next_offset;
        let mut owned = BytesMut::from(&records[..]);
        batch::set_base_offset(&mut owned, base_offset);
        // Stamped as Kafka leaders do: clients take a fetched batch's epoch
        // as the epoch of their position (KIP-320).
        let leader_epoch = st
            .epochs
            .last()
            .map_or(header.partition_leader_epoch, |e| e.epoch);
        batch::set_partition_leader_epoch(&mut owned, leader_epoch);
        let bytes = owned.freeze();
        let header = BatchHeader {
            base_offset,
            partition_leader_epoch: leader_epoch,
            ..header
        };
        st.next_offset = header.last_offset() + 1;
        st.producers.record_at(&header, producers.now_ms);
        st.cache_bytes += bytes.len();
        st.cache.push_back(CachedBatch {
            header,
            bytes: bytes.clone(),
            appended: std::time::Instant::now(),
        });
        queue(bytes, header.last_offset());
        Ok(Begun::Queued {
            base_offset,
            end: st.next_offset,
        })
    }

    /// Adds a batch found in the WAL at startup. Batches below the uploaded
    /// end are already in objects and skipped.
    pub(crate) fn replay(&self, bytes: Bytes) -> Result<(), BatchError> {
        let header = batch::validate(&bytes)?;
        let mut st = self.state.lock();
        if header.base_offset < st.next_offset {
            return Ok(());
        }
        if header.base_offset > st.next_offset {
            tracing::error!(
                topic = %self.topic,
                partition = self.index,
                expected = st.next_offset,
                found = header.base_offset,
                "gap in the WAL: offsets jump; keeping the later data"
            );
        }
        st.next_offset = header.last_offset() + 1;
        st.producers.record(&header);
        st.cache_bytes += bytes.len();
        st.cache.push_back(CachedBatch {
            header,
            bytes,
            appended: std::time::Instant::now(),
        });
        let end = st.next_offset;
        drop(st);
        self.advance_high_watermark(end);
        Ok(())
    }

    /// Durable batches not yet uploaded, and the offset they end at.
    pub(crate) fn pending_upload(&self) -> Option<(Vec<CachedBatch>, i64)> {
        let cut = self.high_watermark();
        let st = self.state.lock();
        if cut <= st.uploaded_next {
            return None;
        }
        let batches: Vec<_> = st
            .cache
            .iter()
            .filter(|b| b.header.base_offset >= st.uploaded_next && b.header.last_offset() < cut)
            .cloned()
            .collect();
        (!batches.is_empty()).then_some((batches, cut))
    }

    /// Bytes of cached batches not yet in the object store (the memory an
    /// upload backlog holds; see `log/pressure.rs`).
    pub(crate) fn unuploaded_bytes(&self) -> u64 {
        let st = self.state.lock();
        st.cache
            .iter()
            .rev()
            .take_while(|b| b.header.base_offset >= st.uploaded_next)
            .map(|b| b.bytes.len() as u64)
            .sum()
    }

    /// When the oldest batch not yet in the object store was appended.
    pub(crate) fn oldest_not_uploaded(&self) -> Option<std::time::Instant> {
        let st = self.state.lock();
        st.cache
            .iter()
            .find(|b| b.header.base_offset >= st.uploaded_next)
            .map(|b| b.appended)
    }

    /// Records a committed upload and trims the cache to its budget.
    pub(crate) fn uploaded(&self, segment: SegmentMeta, cache_budget: usize) {
        let mut st = self.state.lock();
        st.uploaded_next = st.uploaded_next.max(segment.next_offset);
        st.segments.push(segment);
        while st.cache_bytes > cache_budget {
            match st.cache.front() {
                Some(b) if b.header.last_offset() < st.uploaded_next => {
                    st.cache_bytes -= b.bytes.len();
                    st.cache.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Uploaded segments (a snapshot, for retention decisions).
    pub(crate) fn segments(&self) -> Vec<SegmentMeta> {
        self.state.lock().segments.clone()
    }

    /// Drops the first `n` segments after retention committed that; the log
    /// now starts at `log_start`. Cached batches below it go too, once
    /// uploaded (see `Partition::advance_log_start`, storage/src/admin.rs).
    pub(crate) fn truncate_front(&self, n: usize, log_start: i64) {
        {
            let mut st = self.state.lock();
            let n = n.min(st.segments.len());
            st.segments.drain(..n);
        }
        self.advance_log_start(log_start);
    }

    /// Replaces the runs named `key@start` in `replaced` (consecutive) by
    /// `merged`, after the compactor committed that.
    pub(crate) fn replace_segments(&self, replaced: &[String], merged: SegmentMeta) {
        let mut st = self.state.lock();
        let name = |s: &SegmentMeta| format!("{}@{}", s.key, s.start);
        if let Some(at) = st
            .segments
            .iter()
            .position(|s| Some(&name(s)) == replaced.first())
        {
            let end = (at + replaced.len()).min(st.segments.len());
            st.segments.splice(at..end, [merged]);
        }
    }
}
