//! What a deployment is: the spec a user submits, validated before anything
//! runs, and persisted as given (plus the resolved module hash).

use crate::Limits;
use serde::{Deserialize, Serialize};

/// Where a new deployment starts reading each input partition.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum StartPosition {
    /// The log start.
    Earliest,
    /// The high watermark at deploy time (only new records).
    #[default]
    Latest,
    /// A fixed offset (clamped into the log).
    Offset(i64),
    /// The first record with a timestamp ≥ this (ms since the epoch).
    Timestamp(i64),
}

/// What happens when a batch cannot be processed (the module trapped, ran out
/// of CPU or memory, returned an error) or a record's value does not match
/// the value schema.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Stop the deployment and show the error; resume retries the batch.
    #[default]
    Fail,
    /// Skip the batch (or the bad records) and go on; the offsets are logged.
    Skip,
    /// Copy the input records to the dead-letter topic with headers saying
    /// why, and go on.
    DeadLetter,
}

impl FailurePolicy {
    /// Name as written in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Fail => "fail",
            FailurePolicy::Skip => "skip",
            FailurePolicy::DeadLetter => "dead-letter",
        }
    }
}

/// A deployment as submitted through the admin API or the CLI.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Unique name: letters, digits, `.`, `_`, `-`; at most 64 characters.
    pub name: String,
    /// Module: sha256 hex, a unique hash prefix of at least 8 digits,
    /// `NAME@VERSION`, or `NAME` (its latest upload); stored resolved.
    pub module: String,
    /// Input topics; one instance runs per input partition.
    pub inputs: Vec<String>,
    /// Alert topic (created with the input's partition count if missing).
    pub output: String,
    /// Detector config, handed to the module's constructor as JSON.
    #[serde(default)]
    pub config: serde_json::Value,
    /// JSON field → type of record values; the host decodes these into
    /// typed Arrow columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_schema: Option<serde_json::Value>,
    /// Per-instance memory, CPU per batch and alerts per batch.
    #[serde(default)]
    #[schemars(with = "crate::openapi::LimitsDoc")]
    pub limits: Limits,
    /// What to do when a batch fails.
    #[serde(default)]
    pub on_failure: FailurePolicy,
    /// Dead-letter topic (default `<name>.dlq`) for `dead-letter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    /// Where to start reading.
    #[serde(default)]
    pub start: StartPosition,
    /// Most input bytes handed to the module per call.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// How long a producer's acknowledgement may wait, after its batch is
    /// durable, for this deployment's alerts about it to be durable too
    /// (so an acknowledged record's alerts are already readable), in
    /// milliseconds. A runner that misses it lets the acknowledgement go and
    /// catches up asynchronously. Default [`DEFAULT_ACK_BUDGET_MS`]; `0`
    /// turns it off (alerts follow the acknowledgement, one WAL group
    /// commit later). Live deployments only: replays and shadows never hold
    /// acknowledgements, nor do deployments with a `budget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_budget_ms: Option<u64>,
    /// Only these input partitions (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<i32>>,
    /// Where to stop (exclusive): a bounded run, e.g. a replay. Resolved per
    /// partition when the deployment is created; `Latest` means the high
    /// watermark at that moment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<StartPosition>,
    /// Resources this deployment may take from live traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// What created the deployment (set by the broker, not by users).
    #[serde(default, skip_serializing_if = "Kind::is_live")]
    pub kind: Kind,
    /// The principal (`User:NAME`) that created the deployment and whose
    /// ACLs it runs under; named in its alerts' `vigil.principal` header.
    /// Set by the broker from the admin API's credentials (what a client
    /// sends is replaced); absent in specs stored before ACLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

/// Why a deployment exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A live detector.
    #[default]
    Live,
    /// A replay job (`/v1/replays`).
    Replay,
    /// A shadow of the named live deployment, writing to its own topic.
    Shadow(String),
}

impl Kind {
    fn is_live(&self) -> bool {
        *self == Kind::Live
    }
}

/// CPU and I/O a deployment may use, so that replays do not take latency
/// from live produce, fetch and other deployments.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Input partitions processed at the same time (default: one per core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<usize>,
    /// Input bytes read per second across the deployment (default: no cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes_per_sec: Option<u64>,
    /// Cores the deployment's module work may use in total, e.g. 0.5: the
    /// module time of its batches is paid for back to back at this rate, and
    /// a runner rests until its batch is paid (default: no cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_share: Option<f64>,
}

/// `ack_budget_ms` when a spec does not say.
pub const DEFAULT_ACK_BUDGET_MS: u64 = 5;
/// Largest `ack_budget_ms`: a producer's acknowledgement must not wait on a
/// detector for long.
pub const MAX_ACK_BUDGET_MS: u64 = 10_000;

/// Deployment names starting with this are replay jobs.
pub const REPLAY_PREFIX: &str = "replay-";

/// Largest `limits.cpu_ms_per_batch`: one guest call may take at most a
/// minute of CPU (the runner, its checkpoint and the admin answers wait on it).
pub const MAX_CPU_MS_PER_BATCH: u64 = 60_000;
/// Largest `limits.max_alerts_per_batch`: the host buffers a call's alerts
/// before writing them, so this bounds that buffer's length.
pub const MAX_ALERTS_PER_BATCH: u32 = 1_000_000;
/// Largest `limits.memory_mb`: a wasm32 linear memory cannot grow past
/// 4 GiB (the host's own `max_memory_bytes` may cap it further).
pub const MAX_MEMORY_MB: u64 = 4096;
/// Most input topics of one deployment.
pub const MAX_INPUTS: usize = 64;
/// Most entries of `partitions` (the broker's partition limit is lower).
pub const MAX_LISTED_PARTITIONS: usize = 10_000;
/// Largest `budget.parallelism`: one runner slot per partition at most, and
/// no machine this runs on has more cores.
pub const MAX_PARALLELISM: usize = 1024;

fn default_max_batch_bytes() -> usize {
    1 << 20
}

/// Why a spec was refused (HTTP 400).
#[derive(Debug, thiserror::Error)]
#[error("invalid deployment spec: {0}")]
pub struct SpecError(pub String);

impl DeploymentSpec {
    /// Checks everything that can be checked without the log or the module.
    pub fn validate(&self) -> Result<(), SpecError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(SpecError(format!(
                "name {:?} must be 1–64 letters, digits, '.', '_' or '-'",
                self.name
            )));
        }
        if self.kind != Kind::Replay && self.name.starts_with(REPLAY_PREFIX) {
            return Err(SpecError(format!(
                "name {:?}: names starting with {REPLAY_PREFIX:?} are reserved for replay jobs",
                self.name
            )));
        }
        if self.inputs.is_empty() {
            return Err(SpecError("`inputs` needs at least one topic".into()));
        }
        if self.inputs.contains(&self.output) {
            return Err(SpecError(format!(
                "output topic {:?} is also an input: alerts would feed the detector",
                self.output
            )));
        }
        if self.output.is_empty() {
            return Err(SpecError("`output` (the alert topic) is required".into()));
        }
        if self.on_failure == FailurePolicy::DeadLetter {
            let dlq = self.dead_letter_topic();
            if self.inputs.contains(&dlq) || dlq == self.output {
                return Err(SpecError(format!(
                    "dead-letter topic {dlq:?} must differ from the input and output topics"
                )));
            }
        }
        self.validate_sizes()?;
        if let Some(b) = &self.budget {
            if b.parallelism == Some(0) || b.max_bytes_per_sec == Some(0) {
                return Err(SpecError(
                    "budget.parallelism and budget.max_bytes_per_sec must be at least 1".into(),
                ));
            }
            if b.cpu_share.is_some_and(|s| !(s > 0.0 && s <= 1024.0)) {
                return Err(SpecError(
                    "budget.cpu_share must be a positive number of cores, e.g. 0.5".into(),
                ));
            }
        }
        if let Some(ps) = &self.partitions {
            if ps.is_empty() || ps.iter().any(|p| *p < 0) {
                return Err(SpecError(
                    "`partitions` must list at least one partition, none negative".into(),
                ));
            }
        }
        if !(1024..=64 << 20).contains(&self.max_batch_bytes) {
            return Err(SpecError(format!(
                "max_batch_bytes is {}; it must be between 1 KiB and 64 MiB",
                self.max_batch_bytes
            )));
        }
        Ok(())
    }

    /// Bounds every limit a client sizes (CPU, memory, alerts, fan-out), so
    /// that no spec can make the broker allocate, wait or spawn without
    /// bound. The message names the field, its value and the bound.
    fn validate_sizes(&self) -> Result<(), SpecError> {
        let range = |field: &str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(SpecError(format!(
                    "{field} is {value}; it must be between {min} and {max}"
                )))
            }
        };
        let l = &self.limits;
        range("limits.memory_mb", l.memory_bytes >> 20, 1, MAX_MEMORY_MB)?;
        let cpu_ms = u64::try_from(l.cpu_per_batch.as_millis()).unwrap_or(u64::MAX);
        range("limits.cpu_ms_per_batch", cpu_ms, 1, MAX_CPU_MS_PER_BATCH)?;
        range(
            "limits.max_alerts_per_batch",
            u64::from(l.max_alerts_per_batch),
            1,
            u64::from(MAX_ALERTS_PER_BATCH),
        )?;
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        // Per-field maxima on lists: `inputs` is checked non-empty elsewhere.
        if self.inputs.len() > MAX_INPUTS {
            return Err(SpecError(format!(
                "inputs lists {} topics; at most {MAX_INPUTS} are allowed",
                self.inputs.len()
            )));
        }
        if let Some(ps) = &self.partitions {
            if ps.len() > MAX_LISTED_PARTITIONS {
                return Err(SpecError(format!(
                    "partitions lists {} partitions; at most {MAX_LISTED_PARTITIONS} are allowed",
                    ps.len()
                )));
            }
        }
        if let Some(n) = self.budget.as_ref().and_then(|b| b.parallelism) {
            range("budget.parallelism", count(n), 1, count(MAX_PARALLELISM))?;
        }
        if let Some(ms) = self.ack_budget_ms {
            range("ack_budget_ms", ms, 0, MAX_ACK_BUDGET_MS)?;
        }
        Ok(())
    }

    /// How long acknowledgements of this deployment's input may wait for its
    /// alerts (see `ack_budget_ms`); `None` when they never wait.
    pub fn ack_budget(&self) -> Option<std::time::Duration> {
        let live = self.kind == Kind::Live && self.end.is_none() && self.budget.is_none();
        let ms = self.ack_budget_ms.unwrap_or(DEFAULT_ACK_BUDGET_MS);
        (live && ms > 0).then(|| std::time::Duration::from_millis(ms))
    }

    /// The dead-letter topic this spec writes to.
    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DeploymentSpec {
        serde_json::from_value(serde_json::json!({
            "name": "fraud", "module": "abcdef12", "inputs": ["payments"], "output": "alerts",
            "start": {"offset": 5}, "on_failure": "dead-letter"
        }))
        .unwrap()
    }

    #[test]
    fn spec_parses_with_defaults_and_validates() {
        let s = spec();
        assert_eq!(s.start, StartPosition::Offset(5));
        assert_eq!(s.on_failure, FailurePolicy::DeadLetter);
        assert_eq!(s.dead_letter_topic(), "fraud.dlq");
        s.validate().unwrap();
        let latest: DeploymentSpec = serde_json::from_value(serde_json::json!({
            "name": "x", "module": "m", "inputs": ["a"], "output": "b", "start": "earliest"
        }))
        .unwrap();
        assert_eq!(latest.start, StartPosition::Earliest);
    }

    #[test]
    fn only_live_unbounded_unbudgeted_deployments_hold_acks() {
        let ms = std::time::Duration::from_millis;
        let mut s = spec();
        assert_eq!(s.ack_budget(), Some(ms(DEFAULT_ACK_BUDGET_MS)));
        s.ack_budget_ms = Some(0);
        assert_eq!(s.ack_budget(), None, "0 turns it off");
        s.ack_budget_ms = Some(20);
        assert_eq!(s.ack_budget(), Some(ms(20)));
        let cases: [&dyn Fn(&mut DeploymentSpec); 4] = [
            &|s| s.kind = Kind::Replay,
            &|s| s.kind = Kind::Shadow("fraud".into()),
            &|s| s.end = Some(StartPosition::Latest),
            &|s| s.budget = Some(Budget::default()),
        ];
        for edit in cases {
            let mut t = s.clone();
            edit(&mut t);
            assert_eq!(t.ack_budget(), None, "{t:?}");
        }
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let mut s = spec();
        s.output = "payments".into();
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("also an input"));
        let mut s = spec();
        s.name = "no spaces".into();
        assert!(s.validate().unwrap_err().to_string().contains("name"));
        let unknown = serde_json::from_value::<DeploymentSpec>(serde_json::json!({
            "name": "x", "module": "m", "inputs": ["a"], "output": "b", "colour": 1
        }));
        assert!(unknown.unwrap_err().to_string().contains("colour"));
    }

    /// Every client-sized limit has an upper bound, and the refusal names
    /// the field and the bound.
    #[test]
    fn client_sized_limits_have_upper_bounds() {
        let refused = |edit: &dyn Fn(&mut DeploymentSpec), field: &str, bound: &str| {
            let mut s = spec();
            edit(&mut s);
            let e = s.validate().expect_err(field).to_string();
            assert!(e.contains(field), "{field} not named in {e:?}");
            assert!(e.contains(bound), "bound {bound} not named in {e:?}");
        };
        refused(
            &|s| s.limits.cpu_per_batch = std::time::Duration::from_millis(u64::MAX),
            "limits.cpu_ms_per_batch",
            "60000",
        );
        refused(
            &|s| s.limits.cpu_per_batch = std::time::Duration::ZERO,
            "limits.cpu_ms_per_batch",
            "1",
        );
        refused(
            &|s| s.limits.max_alerts_per_batch = u32::MAX,
            "limits.max_alerts_per_batch",
            "1000000",
        );
        refused(
            &|s| s.limits.memory_bytes = 1 << 40,
            "limits.memory_mb",
            "4096",
        );
        refused(
            &|s| s.inputs = (0..65).map(|i| format!("t{i}")).collect(),
            "inputs",
            "64",
        );
        refused(
            &|s| s.partitions = Some((0..10_001).collect()),
            "partitions",
            "10000",
        );
        refused(
            &|s| {
                s.budget = Some(Budget {
                    parallelism: Some(1 << 20),
                    ..Budget::default()
                })
            },
            "budget.parallelism",
            "1024",
        );
        refused(
            &|s| s.max_batch_bytes = 1 << 30,
            "max_batch_bytes",
            "64 MiB",
        );
        refused(
            &|s| s.ack_budget_ms = Some(60_000),
            "ack_budget_ms",
            "10000",
        );
        // The bounds themselves are accepted.
        let mut s = spec();
        s.ack_budget_ms = Some(MAX_ACK_BUDGET_MS);
        s.limits.cpu_per_batch = std::time::Duration::from_millis(MAX_CPU_MS_PER_BATCH);
        s.limits.max_alerts_per_batch = MAX_ALERTS_PER_BATCH;
        s.limits.memory_bytes = MAX_MEMORY_MB << 20;
        s.validate().expect("the bounds themselves are allowed");
    }
}
