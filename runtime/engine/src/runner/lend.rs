//! A gated runner lends its detector to its input partition (design 0019,
//! "Detectors on the appending task").
//!
//! Gated, a runner costs a whole cycle per produced batch: a wake-up, a
//! tail read under the partition lock, the call, status and gate updates.
//! With four deployments on a partition that was most of what busy
//! detectors took from the request path (detectors bench section 3). A
//! caught-up gated runner whose calls run inline therefore hands its
//! instance to the partition as an append tap (`storage/src/log/tap.rs`):
//! the producer's own request calls it with the batch it has just queued,
//! so the call overlaps the batch's fsync with no wake-up and no read.
//!
//! The loan covers the common case only. A batch it cannot finish by
//! itself (records that fail the schema, a failed call, many alerts, an
//! alert append that could not be queued without waiting) ends the loan
//! with the call's outcome handed back, and the runner settles it the way
//! it settles its own calls; a batch too large to call inline, or a gap in
//! the offsets, ends it before the call and the runner reads the input
//! itself. A call over the inline CPU limit sends the runner to the pool
//! for good, as on its own task. The runner recalls the instance to
//! checkpoint or to stop, and lends it again once caught up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering::SeqCst};

use tokio::sync::Notify;
use vigil_storage::log::gate::AckGate;
use vigil_storage::log::tap::AppendTap;
use vigil_storage::PendingAppend;

use super::call::{Placement, INLINE_BYTES, INLINE_CPU};
use super::gate::Gated;
use super::settle::note_progress;
use super::write::INLINE_ALERTS;
use super::*;
use crate::rate::LivePartition;

/// Most batches a loan keeps that reached it ahead of an earlier one still
/// on its way from another producer's task; past this the loan ends and
/// the runner reads the input itself.
const MAX_AHEAD: usize = 16;

/// A runner's detector on loan to its input partition.
struct Loan {
    log: Arc<Log>,
    deployment: Arc<Deployment>,
    topic: String,
    partition: i32,
    alerts: Arc<Partition>,
    status: Arc<parking_lot::Mutex<LivePartition>>,
    suppress_through: i64,
    state: parking_lot::Mutex<Lent>,
    /// Told when the loan ends by itself.
    ended: Notify,
    /// Where the gate may go, shared with the alert appends' WAL
    /// completions (see [`Progress`]).
    progress: Arc<Progress>,
}

/// The gate is one watermark, so a batch without alerts may only move it
/// once every earlier batch's alerts are durable: the loan does not wait
/// for them (the runner did), so a quiet batch processed while an alerting
/// one's alerts are on their way leaves the gate to that append's
/// completion, which moves it through everything processed by then. The
/// loan writes `alerts_queued` before `processed`, and a completion reads
/// them the other way round; with `alerts_durable` written by the
/// completion before it reads `processed`, one of the two always sees the
/// other and moves the gate (SeqCst throughout).
#[derive(Default)]
struct Progress {
    /// Exclusive end of the input processed.
    processed: AtomicI64,
    /// Exclusive input end of the newest batch whose alerts were queued.
    alerts_queued: AtomicI64,
    /// The same for the newest whose alerts are durable (appends of one
    /// partition complete in order).
    alerts_durable: AtomicI64,
}

impl Progress {
    /// The gate's target once the alerts of the batch ending before `end`
    /// are durable.
    fn alerts_durable(&self, end: i64) -> i64 {
        self.alerts_durable.fetch_max(end, SeqCst);
        let processed = self.processed.load(SeqCst);
        if self.alerts_queued.load(SeqCst) > end {
            // Newer alerts are on their way: their completion moves on.
            end
        } else {
            processed.max(end)
        }
    }
}

struct Lent {
    /// `None` once recalled (or lost to a panic): appends are ignored.
    instance: Option<Instance>,
    gate: Option<Arc<AckGate>>,
    /// Next input offset the detector has not seen.
    next: i64,
    /// Batches that arrived before `next` was reached, by base offset.
    ahead: BTreeMap<i64, (i64, Bytes)>,
    end: Option<LoanEnd>,
    /// The newest alert append queued on the loan; the runner settles it
    /// (alert appends of one partition complete in order).
    last_alerts: Option<PendingAppend>,
}

/// Why a loan ended before the runner recalled it.
enum LoanEnd {
    /// A batch the appending task does not call (too large, or behind too
    /// many others): the runner reads it itself.
    Declined,
    /// A call took more than [`INLINE_CPU`]: its batch was settled, and
    /// the runner's calls go to the pool from now on.
    Slow,
    /// The call panicked and took the instance with it.
    Panicked,
    /// A batch whose outcome needs the runner.
    Handback(Handback),
}

/// A call made on the loan that the runner settles.
struct Handback {
    built: Option<BuiltBatch>,
    result: Result<Vec<vigil_abi::Alert>, BatchFailure>,
    from: i64,
    wire_end: i64,
}

impl AppendTap for Loan {
    fn appended(&self, base: i64, end: i64, records: &Bytes) {
        let mut lent = self.state.lock();
        if lent.end.is_some() || lent.instance.is_none() || base < lent.next {
            return;
        }
        if base > lent.next {
            if lent.ahead.len() < MAX_AHEAD {
                lent.ahead.insert(base, (end, records.clone()));
            } else {
                self.end(&mut lent, LoanEnd::Declined);
            }
            return;
        }
        self.run(&mut lent, base, end, records);
        while lent.end.is_none() {
            let next = lent.next;
            let Some((end, records)) = lent.ahead.remove(&next) else {
                break;
            };
            self.run(&mut lent, next, end, &records);
        }
    }
}

impl Loan {
    fn end(&self, lent: &mut Lent, why: LoanEnd) {
        if lent.end.is_none() {
            lent.end = Some(why);
            self.ended.notify_one();
        }
    }

    /// Calls the detector on one batch (offsets `base..end`) and, in the
    /// common case, queues its alerts and moves the gate.
    fn run(&self, lent: &mut Lent, base: i64, end: i64, records: &Bytes) {
        if records.len() > INLINE_BYTES {
            return self.end(lent, LoanEnd::Declined);
        }
        let (Some(gate), Some(inst)) = (lent.gate.clone(), lent.instance.take()) else {
            return self.end(lent, LoanEnd::Declined);
        };
        let cpu0 = vigil_host::thread_cpu();
        let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            process(
                Some(inst),
                &self.deployment,
                self.partition,
                records,
                base,
                i64::MAX,
            )
        }));
        let cpu = cpu0
            .zip(vigil_host::thread_cpu())
            .map(|(a, b)| b.saturating_sub(a));
        let Ok((inst, built, result)) = called else {
            return self.end(lent, LoanEnd::Panicked);
        };
        lent.instance = inst;
        let wire_end = end - 1;
        let (b, alerts) = match (built, result) {
            (Some(b), Ok(alerts)) if b.bad_records.is_empty() => (b, alerts),
            (built, result) => {
                let h = Handback {
                    built,
                    result,
                    from: base,
                    wire_end,
                };
                return self.end(lent, LoanEnd::Handback(h));
            }
        };
        let batch_end = b.last_offset.max(wire_end);
        let alerts: Vec<_> = alerts
            .into_iter()
            .filter(|a| a.source_offset > self.suppress_through)
            .collect();
        if alerts.is_empty() {
            let pr = &self.progress;
            pr.processed.store(batch_end + 1, SeqCst);
            if pr.alerts_durable.load(SeqCst) >= pr.alerts_queued.load(SeqCst) {
                gate.advance(batch_end + 1);
            } else {
                // Only the queued-through mark, for the WAL's group holds.
                gate.queued(batch_end + 1);
            }
        } else {
            match self.queue_alerts(&gate, &alerts, &b, batch_end) {
                Some(pending) => {
                    lent.last_alerts = Some(pending);
                    self.status.lock().alerts += alerts.len() as u64;
                }
                None => {
                    let h = Handback {
                        built: Some(b),
                        result: Ok(alerts),
                        from: base,
                        wire_end,
                    };
                    return self.end(lent, LoanEnd::Handback(h));
                }
            }
        }
        lent.next = batch_end + 1;
        note_progress(&self.status, lent.next, Some(&b));
        self.status.lock().on_append_batches += 1;
        if cpu.is_none_or(|c| c > INLINE_CPU) {
            self.end(lent, LoanEnd::Slow);
        }
    }

    /// Queues the alerts of a batch ending at `batch_end` and has the gate
    /// follow them; `None` if that cannot be done without waiting or
    /// deciding about a refusal, which the runner then does.
    fn queue_alerts(
        &self,
        gate: &AckGate,
        alerts: &[vigil_abi::Alert],
        b: &BuiltBatch,
        batch_end: i64,
    ) -> Option<PendingAppend> {
        if alerts.len() > INLINE_ALERTS {
            return None;
        }
        let p = Provenance {
            deployment: &self.deployment.spec.name,
            module: &self.deployment.module.hash,
            topic: &self.topic,
            partition: self.partition,
            principal: self.deployment.spec.principal.as_deref(),
        };
        let bytes = output::alert_batch(&p, alerts, &b.batch, batch_end).ok()?;
        let end = batch_end + 1;
        let progress = self.progress.clone();
        let then = gate.advance_on_durable_to(move || progress.alerts_durable(end));
        let before = self.progress.alerts_queued.swap(end, SeqCst);
        // A refusal here wrote nothing: the runner appends them its own way.
        let Ok(Some(pending)) = self
            .log
            .try_start_append_then(&self.alerts, bytes, Some(then))
        else {
            self.progress.alerts_queued.store(before, SeqCst);
            return None;
        };
        self.progress.processed.store(end, SeqCst);
        gate.queued(end);
        Some(pending)
    }

    /// Takes the detector back; appends from now on are ignored.
    fn recall(&self) -> Lent {
        let mut lent = self.state.lock();
        Lent {
            instance: lent.instance.take(),
            gate: lent.gate.take(),
            next: lent.next,
            ahead: BTreeMap::new(),
            end: lent.end.take(),
            last_alerts: lent.last_alerts.take(),
        }
    }
}

impl Runner {
    /// Whether this gated runner may lend its detector.
    pub(super) fn may_lend(&self, place: &Placement) -> bool {
        // A deployment under a CPU budget pays for its calls on its own
        // task, where it can rest.
        self.gated_on_append && !place.demoted() && self.throttle.is_none()
    }

    /// Lends the detector to the input partition until `due` (the next
    /// checkpoint), a stop, or the loan's end; returns with the instance
    /// back and `next` past what the loan processed and settled, and
    /// whether the runner was asked to stop (or its supervisor is gone).
    pub(super) async fn lend(
        &self,
        instance: &mut Option<Instance>,
        next: &mut i64,
        gated: &Gated,
        place: &mut Placement,
        due: Instant,
    ) -> Result<bool, Stop> {
        let loan = Arc::new(Loan {
            log: self.log.clone(),
            deployment: self.deployment.clone(),
            topic: self.topic.clone(),
            partition: self.input.index,
            alerts: self.alerts.clone(),
            status: self.status.clone(),
            suppress_through: self.suppress_through,
            state: parking_lot::Mutex::new(Lent {
                instance: instance.take(),
                gate: Some(gated.gate.clone()),
                next: *next,
                ahead: BTreeMap::new(),
                end: None,
                last_alerts: None,
            }),
            ended: Notify::new(),
            progress: Arc::new(Progress {
                processed: AtomicI64::new(*next),
                alerts_queued: AtomicI64::new(*next),
                alerts_durable: AtomicI64::new(*next),
            }),
        });
        let tap = self.input.add_tap(loan.clone());
        // Read after the tap is visible: every batch queued later reaches
        // the loan. One queued earlier is the runner's to read.
        let (mut timed_out, mut stopping) = (false, false);
        if self.input.log_end_offset() == *next {
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = loan.ended.notified() => {}
                _ = Self::stopped(&mut stop) => stopping = true,
                _ = tokio::time::sleep_until(due.into()) => timed_out = true,
            }
        }
        drop(tap);
        let back = loan.recall();
        *instance = back.instance;
        *next = back.next;
        if let Some(pending) = back.last_alerts {
            self.settle_queued(&self.alerts, pending, "alerts").await?;
        }
        match back.end {
            None | Some(LoanEnd::Declined) => {}
            Some(LoanEnd::Slow) => {
                place.demote();
                gated.gate.release_groups();
                tracing::info!(deployment = %self.deployment.spec.name, topic = %self.topic, partition = self.input.index, "a call on the appending task took long; this runner's calls run on the detector pool from now on");
            }
            Some(LoanEnd::Panicked) => return Err(Stop::Failed("detector call panicked".into())),
            Some(LoanEnd::Handback(h)) => {
                let gate = Some(&*gated.gate);
                *next = self
                    .settle(
                        instance,
                        h.built.as_ref(),
                        h.result,
                        h.from,
                        h.wire_end,
                        gate,
                    )
                    .await?;
                gated.gate.advance(*next);
                note_progress(&self.status, *next, h.built.as_ref());
            }
        }
        if timed_out {
            // A checkpoint is due: give the records processed ahead of
            // durability a moment to become committable.
            let mut hw = self.input.watch_high_watermark();
            let target = *next;
            let _ = tokio::time::timeout(self.retry_backoff, hw.wait_for(|h| *h >= target)).await;
        }
        Ok(stopping)
    }
}
