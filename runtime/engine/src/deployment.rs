//! One deployment: what never changes while it exists (spec, module,
//! schema), the view of it the supervisor publishes for status reads, and
//! what is persisted for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use vigil_host::{Module, ValueSchema};

use super::checkpoint::Checkpoint;
use super::rate::LivePartition;
use super::spec::{DeploymentSpec, FailurePolicy, Kind, REPLAY_PREFIX};
use super::status::{DeploymentState, DeploymentStatus, PartitionStatus, VersionStatus};
use super::DetectorError;

/// A deployment's fixed part. A swap replaces the whole value; nothing in it
/// changes in place, so runners share it without locks.
pub struct Deployment {
    /// The spec, with `module` resolved to the full hash.
    pub spec: DeploymentSpec,
    /// The compiled module.
    pub module: Arc<Module>,
    /// Decoded value schema.
    pub schema: Option<ValueSchema>,
}

/// Live progress of one input partition: written by its runner, read by
/// status. The supervisor hands it out; only the runner writes it.
pub(crate) type LiveStatus = Arc<parking_lot::Mutex<LivePartition>>;

/// How a deployment is persisted in the log's key/value state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) spec: DeploymentSpec,
    #[serde(flatten)]
    pub(crate) state: DeploymentState,
    /// When the deployment was created (ms since the epoch).
    #[serde(default)]
    pub(crate) created_ms: i64,
    /// When a bounded run completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) finished_ms: Option<i64>,
    /// The last hot swap's rebuild length: a broker that first runs a
    /// partition after the swap applies it to that partition's checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) swap_rebuild: Option<i64>,
}

impl Stored {
    /// Decodes the record stored under `key`; a failure names the key.
    pub(crate) fn decode(key: &str, json: &str) -> Result<Self, DetectorError> {
        serde_json::from_str(json).map_err(|e| DetectorError::Corrupt {
            key: key.to_string(),
            message: format!("unreadable deployment record: {e}"),
        })
    }

    /// The JSON stored for this record.
    pub(crate) fn encode(&self) -> Result<String, DetectorError> {
        serde_json::to_string(self).map_err(|e| DetectorError::encode("a deployment record", e))
    }
}

/// A deployment as the supervisor last published it. Cloning is cheap
/// (Arcs and small fields); status is computed from it without asking the
/// supervisor, so reads never wait behind a command.
#[derive(Clone)]
pub(crate) struct View {
    /// Deployment name.
    pub(crate) name: String,
    /// `None` when the deployment could not be loaded at open (unreadable
    /// record, module unavailable); its state is then `Failed` with why.
    pub(crate) deployment: Option<Arc<Deployment>>,
    /// The spec of a deployment that could not be loaded, when it is known.
    pub(crate) unloaded_spec: Option<DeploymentSpec>,
    pub(crate) state: DeploymentState,
    /// When it was created and (bounded runs) completed, ms since the epoch.
    pub(crate) created_ms: i64,
    pub(crate) finished_ms: Option<i64>,
    /// See [`Stored::swap_rebuild`].
    pub(crate) swap_rebuild: Option<i64>,
    /// In a cluster, every partition as last committed (status prefers
    /// this broker's live view of a partition it runs).
    pub(crate) remote: Arc<Vec<PartitionStatus>>,
    /// When the runners last started, with the offsets covered then (for
    /// the rate since, which survives neither restarts nor swaps).
    pub(crate) started: (Instant, i64),
    pub(crate) partitions: Vec<LiveStatus>,
}

impl View {
    /// A view of a loaded deployment with no runners yet.
    pub(crate) fn new(
        d: Arc<Deployment>,
        state: DeploymentState,
        created_ms: i64,
        finished_ms: Option<i64>,
    ) -> Self {
        View {
            name: d.spec.name.clone(),
            deployment: Some(d),
            unloaded_spec: None,
            state,
            created_ms,
            finished_ms,
            swap_rebuild: None,
            remote: Arc::default(),
            started: (Instant::now(), 0),
            partitions: Vec::new(),
        }
    }

    /// The view of a stored record whose module is loaded.
    pub(crate) fn from_stored(d: Arc<Deployment>, s: &Stored) -> Self {
        View {
            swap_rebuild: s.swap_rebuild,
            ..View::new(d, s.state.clone(), s.created_ms, s.finished_ms)
        }
    }

    /// A deployment that could not be loaded: listed as failed with why.
    pub(crate) fn unloaded(
        name: &str,
        spec: Option<DeploymentSpec>,
        created_ms: i64,
        why: String,
    ) -> Self {
        View {
            name: name.to_string(),
            deployment: None,
            unloaded_spec: spec,
            state: DeploymentState::Failed(why),
            created_ms,
            finished_ms: None,
            swap_rebuild: None,
            remote: Arc::default(),
            started: (Instant::now(), 0),
            partitions: Vec::new(),
        }
    }

    /// The spec, when known.
    pub(crate) fn spec(&self) -> Option<&DeploymentSpec> {
        self.deployment
            .as_ref()
            .map(|d| &d.spec)
            .or(self.unloaded_spec.as_ref())
    }

    /// The kind; an unloaded record without a spec is told by its name.
    pub(crate) fn kind(&self) -> Kind {
        match self.spec() {
            Some(s) => s.kind.clone(),
            None if self.name.starts_with(REPLAY_PREFIX) => Kind::Replay,
            None => Kind::Live,
        }
    }

    /// What is persisted for this deployment (none without a spec).
    pub(crate) fn stored(&self, state: DeploymentState) -> Option<Stored> {
        Some(Stored {
            spec: self.spec()?.clone(),
            state,
            created_ms: self.created_ms,
            finished_ms: self.finished_ms,
            swap_rebuild: self.swap_rebuild,
        })
    }

    /// A point-in-time status.
    pub(crate) fn status(&self) -> DeploymentStatus {
        let now = Instant::now();
        let wall = chrono::Utc::now().timestamp_millis();
        let mut partitions: Vec<PartitionStatus> = self
            .partitions
            .iter()
            .map(|s| {
                let s = s.lock();
                let mut out = s.status.clone();
                out.batches_per_sec = (s.rate.per_sec(now) * 100.0).round() / 100.0;
                out.event_age_ms = s.newest_timestamp.map(|t| (wall - t).max(0));
                out.throttled_ms = u64::try_from(s.throttled_rest.as_millis()).unwrap_or(u64::MAX);
                out
            })
            .collect();
        // Runners that stopped here (completed, paused, moved away) keep
        // their last status while the cluster's checkpoints list the same
        // partitions: each partition is listed once, as far as the
        // furthest of the two got (a tie keeps this broker's, which has
        // the rates).
        let here: HashMap<(String, i32), usize> = partitions
            .iter()
            .enumerate()
            .map(|(i, l)| ((l.topic.clone(), l.partition), i))
            .collect();
        for r in self.remote.iter() {
            match here.get(&(r.topic.clone(), r.partition)) {
                Some(&i) if r.offset > partitions[i].offset => partitions[i] = r.clone(),
                Some(_) => {}
                None => partitions.push(r.clone()),
            }
        }
        let spec = self.spec();
        DeploymentStatus {
            name: self.name.clone(),
            module: spec.map(|s| s.module.clone()).unwrap_or_default(),
            module_label: self.deployment.as_ref().and_then(|d| d.module.label()),
            state: self.state.clone(),
            inputs: spec.map(|s| s.inputs.clone()).unwrap_or_default(),
            output: spec.map(|s| s.output.clone()).unwrap_or_default(),
            kind: self.kind(),
            on_failure: spec
                .map_or(FailurePolicy::default(), |s| s.on_failure)
                .as_str()
                .to_string(),
            partitions,
        }
    }
}

/// A checkpoint's version history as status shows it.
pub(crate) fn version_statuses(cp: &Checkpoint) -> Vec<VersionStatus> {
    let mut out: Vec<VersionStatus> = Vec::with_capacity(cp.versions.len());
    for (i, v) in cp.versions.iter().enumerate() {
        out.push(VersionStatus {
            module: v.module.clone(),
            module_label: v.label.clone(),
            from: v.from,
            to: cp.versions.get(i + 1).map(|n| n.from),
            state: v.state.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(p: i32, offset: i64) -> PartitionStatus {
        PartitionStatus {
            topic: "in".to_string(),
            partition: p,
            offset,
            committed_offset: offset,
            ..Default::default()
        }
    }

    fn local(p: i32, offset: i64) -> LiveStatus {
        Arc::new(parking_lot::Mutex::new(LivePartition {
            status: partition(p, offset),
            ..Default::default()
        }))
    }

    /// A broker whose runners stopped (a replay that completed here, a
    /// pause) keeps their last statuses, while the cluster's checkpoints
    /// list the same partitions as run elsewhere: each must count once, or
    /// a replay's `records_total` is more than its topic holds.
    #[test]
    fn a_partition_shown_here_and_by_the_cluster_is_listed_once() {
        let mut v = View::unloaded("replay-x", None, 0, "test".to_string());
        v.partitions = vec![local(0, 10), local(1, 5)];
        // Partition 1 moved on after this broker stopped running it.
        v.remote = Arc::new(vec![partition(0, 10), partition(1, 8), partition(2, 7)]);
        let s = v.status();
        let got: Vec<(i32, i64)> = s
            .partitions
            .iter()
            .map(|p| (p.partition, p.offset))
            .collect();
        assert_eq!(got, vec![(0, 10), (1, 8), (2, 7)]);
    }
}
