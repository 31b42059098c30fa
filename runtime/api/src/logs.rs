//! A deployment's recent module log lines (`GET /v1/deployments/NAME/logs`).

use serde::{Deserialize, Serialize};

/// One line a detector module wrote with the SDK's `log` functions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LogLine {
    /// Position in the broker's sequence of module log lines (increasing
    /// across all deployments; pass the last one seen as `after`).
    pub seq: u64,
    /// When the host received it, ms since the epoch.
    pub time_ms: i64,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// Which instance wrote it: `TOPIC-PARTITION`, or `deploy-check` for the
    /// trial start at deploy time.
    pub instance: String,
    /// The module's hash prefix.
    pub module: String,
    /// The message (at most 4 KiB; longer ones end in "… (truncated)").
    pub message: String,
}

/// `GET /v1/deployments/NAME/logs[?after=SEQ&limit=N]` answer: the oldest
/// kept lines after `after`, at most `limit` of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LogsPage {
    /// The deployment.
    pub deployment: String,
    /// The lines, oldest first.
    pub lines: Vec<LogLine>,
    /// What to pass as `after` for the next page (the last line's `seq`,
    /// or the request's `after` when there was none).
    pub next: u64,
    /// Lines after `after` that the bounded buffer no longer holds: the
    /// reader fell behind by this many.
    pub dropped: u64,
}

/// Query parameters of `GET /v1/deployments/NAME/logs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Only lines with a greater `seq` (default 0: everything kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// At most this many lines (default and cap 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}
