//! The runner's writes: alerts, dead letters and records that failed the
//! value schema, each appended with the failure policy applied, retried
//! until the log takes them or the runner is stopped.
//!
//! An append refused *after* it reached the WAL (ownership unconfirmed, or
//! a leadership check that failed once the batch was durable) is never
//! retried: its first copy may still become visible, here once ownership is
//! confirmed or on the next leader after recovery, and a retry would then
//! be a duplicate alert. The runner waits for the first copy's fate instead.

use super::*;

use vigil_storage::log::gate::AckGate;
use vigil_storage::{AppendError, StorageError};

/// Most alerts of one batch a gated runner encodes on its own task.
pub(super) const INLINE_ALERTS: usize = 64;

/// What a refused append tells the runner to do.
enum Refusal {
    /// Nothing reached the log: try again after the backoff.
    Retry,
    /// Written, not yet acknowledged: wait until it is visible.
    Unconfirmed,
    /// Written or not, this broker no longer leads the partition: stop, and
    /// let the partition's leader re-run from the checkpoint (its recovery
    /// scan finds whatever of ours reached the topic).
    Lost,
}

fn refusal(e: &AppendError) -> Refusal {
    match e {
        AppendError::Storage(StorageError::OwnershipUnconfirmed { .. }) => Refusal::Unconfirmed,
        AppendError::Storage(StorageError::NotLeader { .. } | StorageError::Fenced { .. }) => {
            Refusal::Lost
        }
        _ => Refusal::Retry,
    }
}

impl Runner {
    /// Appends `bytes` to `p`; `queued` is told once they are queued on the
    /// WAL (the gate's group hold, `log/gate.rs`), before they are durable.
    pub(super) async fn append(
        &self,
        p: &Arc<Partition>,
        bytes: Bytes,
        what: &str,
        queued: Option<(&AckGate, i64)>,
    ) -> Result<(), Stop> {
        loop {
            // The gate advances from the alerts' WAL completion: the
            // producer's ack then goes as they become durable, without
            // waiting for this task to be scheduled again.
            let then = queued.map(|(gate, to)| gate.advance_on_durable(to));
            let appended = match self.log.start_append_then(p, bytes.clone(), then).await {
                Ok(pending) => {
                    if let Some((gate, to)) = queued {
                        gate.queued(to);
                    }
                    pending.wait().await
                }
                Err(e) => Err(e),
            };
            let e = match appended {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            self.note_error(&format!("appending {what}: {e}"));
            if self.log.is_fenced() {
                return Err(Stop::Requested);
            }
            match refusal(&e) {
                Refusal::Retry => self.pause(self.retry_backoff).await?,
                Refusal::Unconfirmed => return self.await_confirmation(p, what).await,
                Refusal::Lost => return Err(self.lost(p, what)),
            }
        }
    }

    /// Waits for an append of `what` to `p` queued on the runner's behalf
    /// (by its loan, `lend.rs`) to settle. A refusal after the WAL took it
    /// is never retried, as in [`append`](Runner::append): an unconfirmed
    /// write is waited for, and any other leaves its fate unknown, so the
    /// runner stops without committing and the restart's recovery scan
    /// finds whatever of it reached the topic.
    pub(super) async fn settle_queued(
        &self,
        p: &Arc<Partition>,
        pending: vigil_storage::PendingAppend,
        what: &str,
    ) -> Result<(), Stop> {
        let Err(e) = pending.wait().await else {
            return Ok(());
        };
        self.note_error(&format!("appending {what}: {e}"));
        if self.log.is_fenced() {
            return Err(Stop::Requested);
        }
        match refusal(&e) {
            Refusal::Unconfirmed => self.await_confirmation(p, what).await,
            Refusal::Retry | Refusal::Lost => Err(self.lost(p, what)),
        }
    }

    /// Waits until what this broker wrote to `p` while its ownership was
    /// unconfirmed is visible (the append then succeeded), or until `p` is
    /// no longer this broker's.
    async fn await_confirmation(&self, p: &Arc<Partition>, what: &str) -> Result<(), Stop> {
        // Taken after the refusal: the callback recorded our write's end
        // before answering, so this mark covers it.
        let mark = p.written_unconfirmed();
        let mut hw = p.watch_high_watermark();
        loop {
            if *hw.borrow_and_update() >= mark {
                tracing::info!(deployment = %self.deployment.spec.name, topic = %p.topic, partition = p.index, "{what} written while ownership was unconfirmed are now visible");
                return Ok(());
            }
            if self.log.is_fenced() {
                return Err(Stop::Requested);
            }
            if !p.is_serving() {
                return Err(self.lost(p, what));
            }
            // Published by the next ownership check (each lease interval)
            // or by a later confirmed write; the backoff bounds how long a
            // lost partition goes unnoticed.
            tokio::select! {
                _ = hw.changed() => {}
                r = self.pause(self.retry_backoff) => r?,
            }
        }
    }

    /// The runner cannot write to `p` any more: stop without committing and
    /// have the supervisor restart the deployment where it still runs.
    fn lost(&self, p: &Partition, what: &str) -> Stop {
        tracing::info!(deployment = %self.deployment.spec.name, topic = %p.topic, partition = p.index, "{what} partition is no longer led here; the runner stops");
        self.report.send(RunnerReport::Fenced);
        Stop::Requested
    }

    /// Encodes on the detector threads (JSON for thousands of alerts is
    /// real CPU, and at their priority, not the request path's), then
    /// appends. A gated runner's few alerts are encoded on its own task: the
    /// producer's acknowledgement (and the WAL group holding for them)
    /// waits for them, and a pool hop would cost more than the encoding.
    pub(super) async fn append_alerts(
        &self,
        alerts: Vec<vigil_abi::Alert>,
        input: RecordBatch,
        input_end: i64,
        gate: Option<&AckGate>,
    ) -> Result<(), Stop> {
        let count = alerts.len() as u64;
        let inline = gate.is_some() && alerts.len() <= INLINE_ALERTS;
        let (d, topic, partition) = (
            self.deployment.clone(),
            self.topic.clone(),
            self.input.index,
        );
        let encode = move || {
            let p = Provenance {
                deployment: &d.spec.name,
                module: &d.module.hash,
                topic: &topic,
                partition,
                principal: d.spec.principal.as_deref(),
            };
            output::alert_batch(&p, &alerts, &input, input_end)
        };
        let encoded = if inline {
            encode()
        } else {
            self.pool
                .run(encode)
                .await
                .map_err(|e| Stop::Failed(format!("alert encoding task failed: {e}")))?
        };
        let bytes = encoded.map_err(|e| Stop::Failed(format!("encoding alerts: {e}")))?;
        let queued = gate.map(|g| (g, input_end + 1));
        self.append(&self.alerts, bytes, "alerts", queued).await?;
        self.status.lock().alerts += count;
        Ok(())
    }

    pub(super) async fn dead_letter(
        &self,
        records: &[DeadLetter],
        cause: &str,
    ) -> Result<(), Stop> {
        let Some(dlq) = &self.dead_letters else {
            return Ok(());
        };
        if records.is_empty() {
            return Ok(());
        }
        let bytes = output::dead_letter_batch(&self.provenance(), records, cause)
            .map_err(|e| Stop::Failed(format!("encoding dead letters: {e}")))?;
        self.append(dlq, bytes, "dead letters", None).await
    }

    pub(super) async fn bad_records(&self, b: &BuiltBatch) -> Result<(), Stop> {
        let first = &b.bad_records[0];
        let msg = format!(
            "schema: {} record(s) did not match the value schema (first at offset {}: {})",
            b.bad_records.len(),
            first.offset,
            first.error
        );
        self.status.lock().bad_records += b.bad_records.len() as u64;
        self.note_error(&msg);
        match self.deployment.spec.on_failure {
            FailurePolicy::Fail => Err(Stop::Failed(msg)),
            FailurePolicy::Skip => {
                let offsets: Vec<i64> = b.bad_records.iter().map(|r| r.offset).collect();
                tracing::warn!(deployment = %self.deployment.spec.name, topic = %self.topic, partition = self.input.index, ?offsets, "skipped records that do not match the value schema");
                Ok(())
            }
            FailurePolicy::DeadLetter => {
                let letters: Vec<DeadLetter> = b
                    .bad_records
                    .iter()
                    .map(|r| DeadLetter {
                        offset: r.offset,
                        timestamp: r.timestamp,
                        key: r.key.clone(),
                        value: r.value.clone(),
                        headers: r.headers.clone(),
                        error: r.error.clone(),
                    })
                    .collect();
                self.dead_letter(&letters, "schema").await
            }
        }
    }

    pub(super) async fn batch_failed(
        &self,
        e: BatchFailure,
        built: Option<&BuiltBatch>,
        from: i64,
        to: i64,
    ) -> Result<(), Stop> {
        let (cause, text) = (e.cause(), e.to_string());
        let msg = format!("{cause}: offsets {from}..={to}: {text}");
        self.note_error(&msg);
        match self.deployment.spec.on_failure {
            FailurePolicy::Fail => Err(Stop::Failed(msg)),
            FailurePolicy::Skip => {
                self.status.lock().failed_batches += 1;
                tracing::warn!(deployment = %self.deployment.spec.name, topic = %self.topic, partition = self.input.index, from, to, error = %text, "batch skipped");
                Ok(())
            }
            FailurePolicy::DeadLetter => {
                self.status.lock().failed_batches += 1;
                let letters = built
                    .map(|b| output::records_of(&b.batch, &text))
                    .unwrap_or_default();
                self.dead_letter(&letters, cause).await
            }
        }
    }
}
