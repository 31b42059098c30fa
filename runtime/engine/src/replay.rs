//! Replay jobs: a module version run over a stretch of a topic's history,
//! read straight from the log's segments (block cache, object store) rather
//! than through Fetch, one runner per partition under the job's budget.
//!
//! A replay is a bounded deployment (`kind: replay`, `end` set): it reuses
//! the runners, checkpoints and exactly-once alert writing of live
//! deployments, so a replay interrupted by a broker crash resumes from its
//! last checkpoint without losing or repeating alerts.

use super::deployment::View;
use super::spec::REPLAY_PREFIX;
use super::spec::{DeploymentSpec, FailurePolicy, Kind, SpecError, StartPosition};
use super::status::PartitionStatus;
use super::{DetectorError, Detectors};
use vigil_api::{ReplayPartition, ReplaySpec, ReplayStatus};

/// A new replay job id, for a spec without one (`r<milliseconds>`).
pub fn default_id() -> String {
    format!("r{}", chrono::Utc::now().timestamp_millis())
}

/// The alert topic of replay `id` over `topic`, for a spec without one.
pub fn default_output(topic: &str, id: &str) -> String {
    format!("{topic}.replay.{id}")
}

/// The name of replay `id`'s deployment.
pub fn deployment_name(id: &str) -> String {
    format!("{REPLAY_PREFIX}{id}")
}

impl Detectors {
    /// Starts a replay job.
    pub async fn replay(&self, r: ReplaySpec) -> Result<ReplayStatus, DetectorError> {
        let id = r.id.unwrap_or_else(default_id);
        let spec = DeploymentSpec {
            name: deployment_name(&id),
            module: r.module,
            output: r.output.unwrap_or_else(|| default_output(&r.topic, &id)),
            inputs: vec![r.topic],
            config: r.config,
            value_schema: r.value_schema,
            limits: r.limits,
            on_failure: r.on_failure.unwrap_or(FailurePolicy::Skip),
            dead_letter_topic: None,
            start: r.from.unwrap_or(StartPosition::Earliest),
            max_batch_bytes: r.max_batch_bytes.unwrap_or(1 << 20),
            ack_budget_ms: None,
            partitions: r.partitions,
            end: Some(r.to.unwrap_or(StartPosition::Latest)),
            budget: r.budget,
            kind: Kind::Replay,
            principal: r.principal,
        };
        if spec.name.len() > 64 {
            return Err(SpecError(format!(
                "replay id {id:?} is too long (at most 57 characters)"
            ))
            .into());
        }
        self.deploy(spec).await.map_err(|e| match e {
            DetectorError::Exists(_) => DetectorError::Exists(format!("replay {id}")),
            e => e,
        })?;
        self.replay_status(&id).await
    }

    /// Every replay job this broker knows, running or finished.
    pub async fn replays(&self) -> Vec<ReplayStatus> {
        let snapshot = self.snapshot.borrow().clone();
        snapshot
            .values()
            .filter(|v| v.kind() == Kind::Replay)
            .map(replay_status)
            .collect()
    }

    /// One replay job.
    pub async fn replay_status(&self, id: &str) -> Result<ReplayStatus, DetectorError> {
        let v = self
            .view(&deployment_name(id))
            .ok_or_else(|| DetectorError::ReplayNotFound(id.to_string()))?;
        Ok(replay_status(&v))
    }

    /// Stops a replay and forgets it (its alert topic stays).
    pub async fn cancel_replay(&self, id: &str) -> Result<(), DetectorError> {
        let name = deployment_name(id);
        if self.view(&name).is_none() {
            return Err(DetectorError::ReplayNotFound(id.to_string()));
        }
        self.undeploy(&name).await.map_err(|e| match e {
            // Cancelled by someone else meanwhile.
            DetectorError::NotFound(_) => DetectorError::ReplayNotFound(id.to_string()),
            e => e,
        })
    }
}

fn replay_status(v: &View) -> ReplayStatus {
    let s = v.status();
    let parts: Vec<ReplayPartition> = s.partitions.iter().map(partition_status).collect();
    let total: i64 = parts.iter().map(|p| p.to - p.from).sum();
    let done: i64 = parts.iter().map(|p| p.offset.min(p.to) - p.from).sum();
    let finished = v.finished_ms;
    let now = chrono::Utc::now().timestamp_millis();
    let elapsed_ms = finished.unwrap_or(now) - v.created_ms;
    let rows_per_sec = match finished {
        Some(_) => total as f64 / (elapsed_ms.max(1) as f64 / 1000.0),
        None => {
            let (since, covered) = v.started;
            (done - covered).max(0) as f64 / since.elapsed().as_secs_f64().max(1e-3)
        }
    };
    let eta_secs = (finished.is_none() && rows_per_sec > 0.0)
        .then(|| ((total - done) as f64 / rows_per_sec * 10.0).round() / 10.0);
    ReplayStatus {
        id: v
            .name
            .strip_prefix(REPLAY_PREFIX)
            .unwrap_or(&v.name)
            .to_string(),
        module: s.module,
        module_label: s.module_label,
        topic: s.inputs.first().cloned().unwrap_or_default(),
        output: s.output,
        state: s.state,
        records_total: total,
        records_done: done,
        alerts: parts.iter().map(|p| p.alerts).sum(),
        failed_batches: parts.iter().map(|p| p.failed_batches).sum(),
        bad_records: parts.iter().map(|p| p.bad_records).sum(),
        rows_per_sec: rows_per_sec.round(),
        eta_secs,
        elapsed_ms,
        budget: v.spec().and_then(|spec| spec.budget),
        partitions: parts,
    }
}

fn partition_status(p: &PartitionStatus) -> ReplayPartition {
    let to = p.end.unwrap_or(p.high_watermark);
    ReplayPartition {
        partition: p.partition,
        from: p.start,
        to,
        offset: p.offset,
        committed_offset: p.committed_offset,
        records: p.records,
        alerts: p.alerts,
        done: p.offset >= to,
        failed_batches: p.failed_batches,
        bad_records: p.bad_records,
        last_error: p.last_error.clone(),
        throttled_ms: p.throttled_ms,
    }
}
