//! What `vigil detector status` shows, kept up to date by the runners.

use serde::{Deserialize, Serialize};

/// Lifecycle of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase", tag = "state", content = "error")]
pub enum DeploymentState {
    /// Processing input.
    #[default]
    Running,
    /// Paused by a user; resume continues from the committed offset.
    Paused,
    /// Stopped by the `fail` policy; the string says why.
    Failed(String),
    /// A bounded run (replay) covered its whole range.
    Completed,
}

impl DeploymentState {
    /// The state as the API writes it: `running`, `paused`, `failed` or
    /// `completed`.
    pub fn name(&self) -> &'static str {
        match self {
            DeploymentState::Running => "running",
            DeploymentState::Paused => "paused",
            DeploymentState::Failed(_) => "failed",
            DeploymentState::Completed => "completed",
        }
    }

    /// Why a failed deployment or replay stopped.
    pub fn error(&self) -> Option<&str> {
        match self {
            DeploymentState::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// Live progress of one input partition.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, schemars::JsonSchema)]
pub struct PartitionStatus {
    /// Input topic.
    pub topic: String,
    /// Input partition.
    pub partition: i32,
    /// Next input offset to process.
    pub offset: i64,
    /// High watermark of the input partition.
    pub high_watermark: i64,
    /// Records between `offset` and the high watermark.
    pub lag: i64,
    /// Milliseconds between now and the timestamp of the newest processed
    /// record (None before the first).
    pub event_age_ms: Option<i64>,
    /// Batches per second over the last few seconds.
    pub batches_per_sec: f64,
    /// Records processed over the deployment's life.
    pub records: u64,
    /// Alerts written over the deployment's life.
    pub alerts: u64,
    /// Batches skipped or dead-lettered under the failure policy.
    pub failed_batches: u64,
    /// Records whose value did not match the value schema.
    pub bad_records: u64,
    /// Last error seen, with its cause (`trap`, `cpu`, `memory`, `stack`,
    /// `alerts`, `error`, `schema`, ...).
    pub last_error: Option<String>,
    /// Input offset of the last committed checkpoint.
    pub committed_offset: i64,
    /// First input offset the deployment covers here.
    pub start: i64,
    /// Exclusive end of a bounded run (replays).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
    /// Which module version scored which offsets, oldest first.
    pub versions: Vec<VersionStatus>,
    /// Whether producers' acknowledgements of this partition wait (up to
    /// the deployment's `ack_budget_ms`) for its alerts: the runner is live
    /// and caught up.
    #[serde(default)]
    pub ack_gate: bool,
    /// Batches the detector processed on the producers' own tasks as they
    /// were appended, since the runner started here (a gated runner lends
    /// its detector to the partition while it is caught up; design 0019).
    #[serde(default)]
    pub on_append_batches: u64,
    /// Milliseconds the runner here rested to stay within its deployment's
    /// budget (`cpu_share`, byte rate) or, for a replay, to leave the CPU
    /// to live writes (`replay-live-share`), since it started here.
    #[serde(default)]
    pub throttled_ms: u64,
}

/// The offsets one module version scored on a partition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct VersionStatus {
    /// Module hash.
    pub module: String,
    /// `NAME@VERSION`, when the module has them.
    pub module_label: Option<String>,
    /// First offset it scored.
    pub from: i64,
    /// First offset it did not score (`None`: the current version).
    pub to: Option<i64>,
    /// After a hot swap: whether the state was carried over or rebuilt.
    pub state: Option<String>,
}

/// A deployment as `GET /v1/deployments/NAME` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct DeploymentStatus {
    /// Name.
    pub name: String,
    /// Module hash.
    pub module: String,
    /// Module name and version from its metadata, when known.
    pub module_label: Option<String>,
    /// Running, paused or failed.
    #[serde(flatten)]
    pub state: DeploymentState,
    /// Input topics.
    pub inputs: Vec<String>,
    /// Alert topic.
    pub output: String,
    /// Live, replay or shadow (of a live deployment).
    pub kind: crate::spec::Kind,
    /// Failure policy.
    pub on_failure: String,
    /// Per input partition.
    pub partitions: Vec<PartitionStatus>,
}
