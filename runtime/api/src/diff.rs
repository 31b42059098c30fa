//! `POST /v1/diff`: comparing two alert streams by the input records they
//! point at.

use serde::{Deserialize, Serialize};

/// `POST /v1/diff` body: what to compare.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffRequest {
    /// A deployment name (its alert topic, only its records) or a topic name.
    pub a: String,
    /// Same for the other side.
    pub b: String,
    /// Largest source-offset distance at which two alerts still match.
    #[serde(default)]
    pub window: i64,
    /// Only source offsets at or after this.
    pub from: Option<i64>,
    /// Only source offsets before this.
    pub to: Option<i64>,
}

impl DiffRequest {
    /// Checks what can be checked without the log; the message says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.window < 0 {
            return Err(format!("window must be >= 0 (got {})", self.window));
        }
        if let (Some(f), Some(t)) = (self.from, self.to) {
            if f > t {
                return Err(format!("from ({f}) is after to ({t})"));
            }
        }
        Ok(())
    }

    /// The source-offset range to compare, `None` for everything.
    pub fn range(&self) -> Option<(i64, i64)> {
        match (self.from, self.to) {
            (None, None) => None,
            (f, t) => Some((f.unwrap_or(i64::MIN), t.unwrap_or(i64::MAX))),
        }
    }
}

/// One source partition of a [`DiffReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PartitionDiff {
    /// Source (input) topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// A alerts without a B match.
    pub only_a: u64,
    /// B alerts without an A match.
    pub only_b: u64,
    /// Matched pairs.
    pub both: u64,
    /// Lowest source offsets of unmatched A alerts.
    pub sample_only_a: Vec<i64>,
    /// Lowest source offsets of unmatched B alerts.
    pub sample_only_b: Vec<i64>,
    /// Source offsets compared here when both sides are deployments: the
    /// offsets both have processed (`[from, to)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered: Option<(i64, i64)>,
}

/// Sums over all partitions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DiffTotal {
    /// A alerts without a B match.
    pub only_a: u64,
    /// B alerts without an A match.
    pub only_b: u64,
    /// Matched pairs.
    pub both: u64,
}

/// `POST /v1/diff` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DiffReport {
    /// A as requested.
    pub a: String,
    /// B as requested.
    pub b: String,
    /// Match window in source offsets.
    pub window: i64,
    /// Source-offset range compared, if restricted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
    /// Exclusive end of that range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<i64>,
    /// Per source topic and partition, in order; a partition shows up when
    /// either side alerted on it.
    pub partitions: Vec<PartitionDiff>,
    /// Sums.
    pub total: DiffTotal,
}
