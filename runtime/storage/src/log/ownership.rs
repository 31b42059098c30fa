//! Handing partitions over: the per-partition leadership check before each
//! acknowledgement, and [`Log::release_partition`] /
//! [`Log::acquire_partition`], which a cluster's placement calls when a
//! partition moves (see [`crate::leadership`]).

use std::sync::Arc;
use std::time::Duration;

use super::Log;
use crate::error::{Result, StorageError};
use crate::fence::Fence;
use crate::leadership::{LeaderCheckError, Leadership};
use crate::partition::{AppendError, Partition};

/// How long an append written while ownership was unconfirmed waits for a
/// check to pass before it is refused (the request's own timeout may cut
/// it shorter).
pub(crate) const UNCONFIRMED_WAIT: Duration = Duration::from_secs(3);
/// How often such an append asks again.
const RECHECK_EVERY: Duration = Duration::from_millis(20);

/// How long a release waits for appends already queued on the WAL.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a release looks at appends that settled without an ack.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// The per-acknowledgement check: `Ok` if this broker still leads `p` at
/// its current epoch.
pub(super) fn confirm(l: &dyn Leadership, p: &Partition) -> Result<()> {
    match l.check(&p.topic, p.index, p.leader_epoch()) {
        Ok(()) => Ok(()),
        Err(LeaderCheckError::NotLeader(reason)) => Err(p.not_leader(&reason)),
        Err(LeaderCheckError::Unconfirmed(reason)) => Err(StorageError::OwnershipUnconfirmed {
            epoch: u64::try_from(p.leader_epoch()).unwrap_or(0),
            reason,
        }),
    }
}

/// What an acknowledgement asks (the log's fence and the partition's
/// leadership at the epoch that wrote the batch), kept by an append so that
/// it can ask again when the first answer was "unconfirmed".
pub(crate) struct AckCheck {
    pub(super) leadership: Arc<dyn Leadership>,
    pub(super) fence: Arc<Fence>,
    pub(super) epoch: i32,
}

impl AckCheck {
    /// The same check the WAL's completion made, from cached state only
    /// (the lease renewal and the next WAL group refresh the fence).
    fn now(&self, p: &Partition) -> Result<()> {
        if self.fence.is_fenced() {
            return Err(self.fence.fenced_error());
        }
        if !p.is_serving() || p.leader_epoch() != self.epoch {
            return Err(p.not_leader("it was handed over"));
        }
        if !self.fence.valid_now() {
            return Err(StorageError::OwnershipUnconfirmed {
                epoch: self.fence.epoch(),
                reason: "the log's ownership was not confirmed recently".to_string(),
            });
        }
        confirm(&*self.leadership, p)
    }

    /// Waits, at most [`UNCONFIRMED_WAIT`], until the batch ending at `end`
    /// (durable, refused with `refused` because ownership was unconfirmed)
    /// is published, by a later acknowledgement or the lease renewal, or
    /// until the check passes again, which publishes it here. Answering at
    /// once instead made pipelining clients see the next batch succeed
    /// first and count this one as delivered without an offset.
    pub(crate) async fn await_confirmation(
        &self,
        p: &Partition,
        end: i64,
        refused: StorageError,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + UNCONFIRMED_WAIT;
        let mut hw = p.watch_high_watermark();
        loop {
            if *hw.borrow_and_update() >= end {
                return Ok(());
            }
            match self.now(p) {
                Ok(()) => {
                    // Everything below `end` is settled (the WAL completes
                    // in order), so this is what `publish_written` does.
                    p.advance_high_watermark(end);
                    return Ok(());
                }
                Err(StorageError::OwnershipUnconfirmed { .. }) => {}
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(refused);
            }
            // The watermark's sender lives in the partition this wait
            // holds; should it close anyway, poll instead of spinning.
            if let Ok(Err(_)) = tokio::time::timeout(RECHECK_EVERY, hw.changed()).await {
                tokio::time::sleep(RECHECK_EVERY).await;
            }
        }
    }
}

/// The answer to an append the partition's producer state refused (a
/// sequence gap, a stale producer epoch): if this broker no longer leads
/// the partition, its producer state is stale, and the leadership error
/// (retriable: the client refreshes metadata and goes to the new leader)
/// replaces the sequence error, which an idempotent producer treats as
/// fatal.
pub(super) fn refusal(l: &dyn Leadership, p: &Partition, e: AppendError) -> AppendError {
    match confirm(l, p) {
        Ok(()) => e,
        Err(lost) => lost.into(),
    }
}

impl Partition {
    /// Notes that the appends below `to` finished their WAL write, whether
    /// or not they were acknowledged.
    pub(crate) fn note_settled(&self, to: i64) {
        self.settled
            .fetch_max(to, std::sync::atomic::Ordering::SeqCst);
    }

    /// End of the appends that finished (see [`Partition::note_settled`]).
    fn settled_end(&self) -> i64 {
        self.settled.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Log {
    /// Installs the leadership check every acknowledgement asks from now
    /// on (the default leads every partition).
    pub fn set_leadership(&self, leadership: Arc<dyn Leadership>) {
        *self.leadership.write() = leadership;
    }

    /// Hands a partition over: refuses new appends and reads to it
    /// (NOT_LEADER_OR_FOLLOWER), waits for the appends already queued, and
    /// uploads, so the next leader finds everything this broker acknowledged
    /// in the object store (also in local-WAL mode). Call it before giving
    /// up the partition's leadership.
    pub async fn release_partition(&self, topic: &str, index: i32) -> Result<()> {
        let p = self.partition(topic, index)?;
        p.stop_serving();
        let mut hw = p.watch_high_watermark();
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            loop {
                let end = p.next_offset();
                if *hw.borrow_and_update() >= end || p.settled_end() >= end {
                    return;
                }
                // Appends refused at acknowledgement (not the leader any
                // more) settle without moving the high watermark: look
                // again now and then.
                if let Ok(Err(_)) = tokio::time::timeout(DRAIN_POLL, hw.changed()).await {
                    return;
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                topic,
                partition = index,
                "appends still in flight after the drain timeout; uploading what is durable"
            );
        }
        self.upload_once().await?;
        tracing::info!(
            topic,
            partition = index,
            epoch = p.leader_epoch(),
            uploaded_next = p.high_watermark(),
            "partition released"
        );
        Ok(())
    }

    /// Takes a partition (over) at `leader_epoch`: its state is read afresh
    /// from its partition manifest in the object store, which the previous
    /// leader (another broker, or this one before) wrote, and a new leader
    /// epoch starts at its end. A partition this broker already serves only
    /// starts the new epoch. Epochs must grow: a `leader_epoch` not above the
    /// partition's newest is refused.
    pub async fn acquire_partition(
        &self,
        topic: &str,
        index: i32,
        leader_epoch: i32,
    ) -> Result<Arc<Partition>> {
        let mut old = self.partition(topic, index)?;
        if old.is_serving() && self.layout.node_id().is_some() {
            // In a cluster another node may have led it meanwhile (this one
            // was paused or cut off): hand over what is ours, then read the
            // partition afresh like any new leader.
            self.release_partition(topic, index).await?;
            old = self.partition(topic, index)?;
        }
        if old.is_serving() {
            if old.leader_epoch() >= leader_epoch && leader_epoch >= 0 {
                return Err(stale_epoch(&old, leader_epoch));
            }
            old.start_epoch(leader_epoch);
            return Ok(old);
        }
        let mut state =
            crate::parts::load_partition(self.store.as_ref(), old.topic_id, index).await?;
        crate::state::load_producers(self.store.as_ref(), old.topic_id, index, &mut state).await?;
        let fresh = Arc::new(Partition::new(topic, old.topic_id, index, &state));
        if self.layout.node_id().is_some() {
            let recovered = self.recover_from_wal_objects(&fresh).await?;
            if recovered > 0 {
                tracing::info!(
                    topic,
                    partition = index,
                    recovered,
                    log_end = fresh.next_offset(),
                    "recovered batches a previous leader acknowledged but did not upload"
                );
            }
        }
        if !fresh.start_epoch(leader_epoch) {
            return Err(stale_epoch(&fresh, leader_epoch));
        }
        {
            // Under the manifest lock, so no upload cycle commits between
            // the manifest's view and the partition's.
            let mut m = self.manifest.lock().await;
            match m.partition_mut(&old) {
                Some(pm) => *pm = state,
                None => return Err(StorageError::UnknownTopic(topic.to_string())),
            }
            let mut topics = self.topics.write();
            let t = topics
                .get(topic)
                .filter(|t| t.id == old.topic_id)
                .cloned()
                .ok_or_else(|| StorageError::UnknownTopic(topic.to_string()))?;
            let mut partitions = t.partitions.clone();
            if let Some(slot) = partitions.get_mut(index as usize) {
                *slot = fresh.clone();
            }
            topics.insert(topic.to_string(), Arc::new(t.with_partitions(partitions)));
        }
        tracing::info!(
            topic,
            partition = index,
            leader_epoch,
            log_end = fresh.high_watermark(),
            "partition acquired"
        );
        Ok(fresh)
    }
}

fn stale_epoch(p: &Partition, asked: i32) -> StorageError {
    StorageError::Invalid(format!(
        "{}-{}: leader epoch {asked} is not above the partition's epoch {}",
        p.topic,
        p.index,
        p.leader_epoch()
    ))
}
