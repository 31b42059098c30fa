//! Appends: admission, offsets and the WAL queue, then the partition's
//! append taps (`log/tap.rs`).

use super::*;
use tokio::sync::OwnedSemaphorePermit;
use vigil_protocol::batch::BatchHeader;

/// What [`Log::queue`] queued, for the taps.
struct Queued {
    pending: PendingAppend,
    /// The batch as written (offsets assigned), if the partition had taps
    /// when it was queued.
    tapped: Option<Bytes>,
}

impl Log {
    /// Appends one record batch to a partition and waits until it is durable
    /// (fsync'd in the WAL). A retried idempotent batch is answered with its
    /// original offset.
    pub async fn append(
        &self,
        p: &Arc<Partition>,
        records: Bytes,
    ) -> std::result::Result<AppendOutcome, AppendError> {
        self.start_append(p, records).await?.wait().await
    }

    /// The ordered half of an append: validates the batch, assigns its offsets
    /// and queues it on the WAL. Call it in request order; await the returned
    /// [`PendingAppend`] concurrently.
    pub async fn start_append(
        &self,
        p: &Arc<Partition>,
        records: Bytes,
    ) -> std::result::Result<PendingAppend, AppendError> {
        self.start_append_then(p, records, None).await
    }

    /// [`start_append`](Log::start_append) with `then` run by the WAL
    /// completion once the batch is durable and readable (not on failure):
    /// a gated reader advances its gate there (`log/gate.rs`). The
    /// partition's append taps see the batch when the returned append is
    /// first awaited, so their work stays off the caller's ordered half
    /// (a connection's request reader).
    pub async fn start_append_then(
        &self,
        p: &Arc<Partition>,
        records: Bytes,
        then: Option<OnDurable>,
    ) -> std::result::Result<PendingAppend, AppendError> {
        let header = self.admit(p, &records)?;
        let permit = self.wal.reserve(records.len()).await?;
        let queued = self.queue(p, header, records, then, permit)?;
        Ok(match queued.tapped {
            Some(bytes) => queued.pending.tapped(bytes),
            None => queued.pending,
        })
    }

    /// [`start_append_then`](Log::start_append_then) for an append tap's
    /// own outputs: never waits (`Ok(None)` while the WAL's in-flight bytes
    /// are at their bound) and calls no taps, so no tap ever runs inside
    /// another's call.
    pub fn try_start_append_then(
        &self,
        p: &Arc<Partition>,
        records: Bytes,
        then: Option<OnDurable>,
    ) -> std::result::Result<Option<PendingAppend>, AppendError> {
        let header = self.admit(p, &records)?;
        let Some(permit) = self.wal.try_reserve(records.len()) else {
            return Ok(None);
        };
        Ok(Some(self.queue(p, header, records, then, permit)?.pending))
    }

    /// Everything that refuses an append before it takes WAL room.
    fn admit(
        &self,
        p: &Arc<Partition>,
        records: &Bytes,
    ) -> std::result::Result<BatchHeader, AppendError> {
        if self.fenced.load(Ordering::SeqCst) {
            return Err(self.fence.fenced_error().into());
        }
        if !p.is_serving() {
            return Err(p.not_leader("it was handed over").into());
        }
        // Disk full / upload backlog: refuse at once (log/pressure.rs).
        self.admit_append(records.len())?;
        p.validate(records)
    }

    /// Assigns the batch's offsets and queues it on the WAL.
    fn queue(
        &self,
        p: &Arc<Partition>,
        header: BatchHeader,
        records: Bytes,
        then: Option<OnDurable>,
        permit: OwnedSemaphorePermit,
    ) -> std::result::Result<Queued, AppendError> {
        let (tx, rx) = oneshot::channel();
        let producers = ProducerCheck {
            issued_below: self.issued_below(header.producer_id),
            now_ms: self.clock.now_ms(),
        };
        let leadership = self.leadership.read().clone();
        let check = ownership::AckCheck {
            leadership: leadership.clone(),
            fence: self.fence.clone(),
            epoch: p.leader_epoch(),
        };
        let mut tapped = None;
        let begun = p
            .begin_append(header, &records, producers, |bytes, last| {
                if p.taps.any() {
                    tapped = Some(bytes.clone());
                }
                let p2 = p.clone();
                let fenced = self.fenced.clone();
                // Gated readers' outputs about this batch may join its group
                // (wal/hold.rs).
                let holds = self.wal.group_wake().enabled() && p.gates.any();
                let hold = holds.then(|| {
                    let p3 = p.clone();
                    Box::new(move || p3.gates.queued_through(last + 1)) as crate::wal::Hold
                });
                self.wal.append_held(
                    WalEntry::Batch {
                        topic_id: p.topic_id,
                        partition: p.index,
                        batch: bytes,
                    },
                    Box::new(move |res| {
                        // Durable; acknowledged only if this broker still leads
                        // the partition at the epoch that wrote it.
                        let res = res.and_then(|()| ownership::confirm(&*leadership, &p2));
                        match &res {
                            Ok(()) => {
                                p2.advance_high_watermark(last + 1);
                                if let Some(then) = then {
                                    then();
                                }
                            }
                            Err(StorageError::Fenced { .. }) => {
                                fenced.store(true, Ordering::SeqCst)
                            }
                            Err(StorageError::OwnershipUnconfirmed { .. }) => {
                                p2.note_written_unconfirmed(last + 1)
                            }
                            Err(_) => {}
                        }
                        p2.note_settled(last + 1);
                        drop(permit);
                        let _ = tx.send(res);
                    }),
                    hold,
                );
            })
            .map_err(|e| ownership::refusal(&**self.leadership.read(), p, e))?;
        self.stats
            .appended_bytes
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(match begun {
            Begun::Queued { base_offset, end } => {
                p.gates.note_appended();
                Queued {
                    pending: PendingAppend::queued(p.clone(), base_offset, end, rx, check),
                    tapped,
                }
            }
            Begun::Duplicate(e) => Queued {
                pending: PendingAppend::duplicate(e, p.watch_high_watermark()),
                tapped: None,
            },
        })
    }
}
