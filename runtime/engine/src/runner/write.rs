//! The runner's writes: alerts, dead letters and records that failed the
//! value schema, each appended with the failure policy applied, retried
//! until the log takes them or the runner is stopped.

use super::*;

impl Runner {
    pub(super) async fn append(
        &self,
        p: &Arc<Partition>,
        bytes: Bytes,
        what: &str,
    ) -> Result<(), Stop> {
        loop {
            match self.log.append(p, bytes.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let msg = format!("appending {what}: {e}");
                    if self.log.is_fenced() {
                        return Err(Stop::Requested);
                    }
                    self.note_error(&msg);
                    self.pause(self.retry_backoff).await?;
                }
            }
        }
    }

    /// Encodes on the detector threads (JSON for thousands of alerts is
    /// real CPU, and at their priority, not the request path's), then appends.
    pub(super) async fn append_alerts(
        &self,
        alerts: Vec<vigil_abi::Alert>,
        input: RecordBatch,
        input_end: i64,
    ) -> Result<(), Stop> {
        let count = alerts.len() as u64;
        let (d, topic, partition) = (
            self.deployment.clone(),
            self.topic.clone(),
            self.input.index,
        );
        let bytes = self
            .pool
            .run(move || {
                let p = Provenance {
                    deployment: &d.spec.name,
                    module: &d.module.hash,
                    topic: &topic,
                    partition,
                    principal: d.spec.principal.as_deref(),
                };
                output::alert_batch(&p, &alerts, &input, input_end)
            })
            .await
            .map_err(|e| Stop::Failed(format!("alert encoding task failed: {e}")))?
            .map_err(|e| Stop::Failed(format!("encoding alerts: {e}")))?;
        self.append(&self.alerts, bytes, "alerts").await?;
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
        self.append(dlq, bytes, "dead letters").await
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
