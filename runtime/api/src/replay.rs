//! Replay jobs: a module version run over a stretch of a topic's history.

use serde::{Deserialize, Serialize};

use crate::spec::{Budget, FailurePolicy, StartPosition};
use crate::status::DeploymentState;
use crate::Limits;

/// `POST /v1/replays`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaySpec {
    /// Module reference (`NAME@VERSION`, `NAME`, hash or prefix).
    pub module: String,
    /// Input topic.
    pub topic: String,
    /// First record (default: the log start).
    #[serde(default)]
    pub from: Option<StartPosition>,
    /// Exclusive end (default: the high watermark when the job starts).
    #[serde(default)]
    pub to: Option<StartPosition>,
    /// Partitions to replay (default: all).
    #[serde(default)]
    pub partitions: Option<Vec<i32>>,
    /// Alert topic (default `<topic>.replay.<id>`).
    #[serde(default)]
    pub output: Option<String>,
    /// Job id (default `r<milliseconds>`).
    #[serde(default)]
    pub id: Option<String>,
    /// Detector config.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Value schema, as for deployments.
    #[serde(default)]
    pub value_schema: Option<serde_json::Value>,
    /// Per-instance limits.
    #[serde(default)]
    #[schemars(with = "crate::openapi::LimitsDoc")]
    pub limits: Limits,
    /// Failure policy (default `skip`: a replay should get through history).
    #[serde(default)]
    pub on_failure: Option<FailurePolicy>,
    /// Most input bytes per module call.
    #[serde(default)]
    pub max_batch_bytes: Option<usize>,
    /// CPU/IO budget.
    #[serde(default)]
    pub budget: Option<Budget>,
    /// The principal the job runs as (set by the broker from the admin
    /// API's credentials; what a client sends is replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

/// `GET /v1/replays/ID`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReplayStatus {
    /// Job id.
    pub id: String,
    /// Module hash.
    pub module: String,
    /// `NAME@VERSION` of the module, when known.
    pub module_label: Option<String>,
    /// Input topic.
    pub topic: String,
    /// Alert topic.
    pub output: String,
    /// running, paused, failed or completed.
    #[serde(flatten)]
    pub state: DeploymentState,
    /// Input offsets in the job's range.
    pub records_total: i64,
    /// Input offsets covered so far (survives restarts).
    pub records_done: i64,
    /// Alerts written.
    pub alerts: u64,
    /// Batches that failed and were skipped or dead-lettered (since this
    /// broker started the job).
    pub failed_batches: u64,
    /// Records that did not match the value schema (same).
    pub bad_records: u64,
    /// Records per second: since this broker started the job while it
    /// runs, over the whole job once completed.
    pub rows_per_sec: f64,
    /// Seconds left at the current rate.
    pub eta_secs: Option<f64>,
    /// Milliseconds since the job was created (to completion when done).
    pub elapsed_ms: i64,
    /// The CPU/IO budget it runs under (`None`: the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Per partition.
    pub partitions: Vec<ReplayPartition>,
}

/// One partition of a replay.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReplayPartition {
    /// Partition.
    pub partition: i32,
    /// First offset.
    pub from: i64,
    /// Exclusive end.
    pub to: i64,
    /// Next offset to process.
    pub offset: i64,
    /// Offset of the last checkpoint: where a restarted broker resumes.
    pub committed_offset: i64,
    /// Records processed.
    pub records: u64,
    /// Alerts written.
    pub alerts: u64,
    /// Whether the partition reached `to`.
    pub done: bool,
    /// Batches that failed under the failure policy.
    pub failed_batches: u64,
    /// Records that did not match the value schema.
    pub bad_records: u64,
    /// Last error, if any.
    pub last_error: Option<String>,
    /// Milliseconds its runner here rested under the job's budget or to
    /// leave the CPU to live writes (`replay-live-share`).
    #[serde(default)]
    pub throttled_ms: u64,
}
