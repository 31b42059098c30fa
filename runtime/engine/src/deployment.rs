//! One deployment: its spec, module and live status, and what is persisted
//! for it.

use std::sync::Arc;

use tokio::sync::watch;
use vigil_host::{Module, ValueSchema};

use super::checkpoint::Checkpoint;
use super::spec::DeploymentSpec;
use super::status::{DeploymentState, DeploymentStatus, VersionStatus};
use super::Stored;

/// A deployment and its running instances.
pub struct Deployment {
    /// The spec, with `module` resolved to the full hash.
    pub spec: DeploymentSpec,
    /// The compiled module.
    pub module: Arc<Module>,
    /// Decoded value schema.
    pub schema: Option<ValueSchema>,
    pub(super) state: parking_lot::Mutex<DeploymentState>,
    pub(super) partitions:
        parking_lot::Mutex<Vec<Arc<parking_lot::Mutex<crate::rate::LivePartition>>>>,
    pub(super) stop: parking_lot::Mutex<Option<watch::Sender<bool>>>,
    pub(super) tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// When it was created and (bounded runs) completed, ms since the epoch.
    pub(super) created_ms: i64,
    pub(super) finished_ms: parking_lot::Mutex<Option<i64>>,
    /// When the runners last started, with the offsets covered then (for
    /// the rate since, which survives neither restarts nor swaps).
    pub(super) started: parking_lot::Mutex<(std::time::Instant, i64)>,
}

impl Deployment {
    pub(super) fn new(
        spec: DeploymentSpec,
        module: Arc<Module>,
        schema: Option<ValueSchema>,
        state: DeploymentState,
        created_ms: i64,
    ) -> Self {
        Deployment {
            spec,
            module,
            schema,
            state: parking_lot::Mutex::new(state),
            partitions: parking_lot::Mutex::new(Vec::new()),
            stop: parking_lot::Mutex::new(None),
            tasks: parking_lot::Mutex::new(Vec::new()),
            created_ms,
            finished_ms: parking_lot::Mutex::new(None),
            started: parking_lot::Mutex::new((std::time::Instant::now(), 0)),
        }
    }

    /// What is persisted for this deployment.
    pub(super) fn stored(&self) -> Stored {
        Stored {
            spec: self.spec.clone(),
            state: self.state.lock().clone(),
            created_ms: self.created_ms,
            finished_ms: *self.finished_ms.lock(),
        }
    }

    pub(super) async fn stop_runners(&self) {
        if let Some(tx) = self.stop.lock().take() {
            let _ = tx.send(true);
        }
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            let _ = t.await;
        }
    }

    /// A point-in-time status.
    pub fn status(&self) -> DeploymentStatus {
        let now = std::time::Instant::now();
        let wall = chrono::Utc::now().timestamp_millis();
        let partitions = self
            .partitions
            .lock()
            .iter()
            .map(|s| {
                let s = s.lock();
                let mut out = s.status.clone();
                out.batches_per_sec = (s.rate.per_sec(now) * 100.0).round() / 100.0;
                out.event_age_ms = s.newest_timestamp.map(|t| (wall - t).max(0));
                out
            })
            .collect();
        DeploymentStatus {
            name: self.spec.name.clone(),
            module: self.spec.module.clone(),
            module_label: self.module.label(),
            state: self.state.lock().clone(),
            inputs: self.spec.inputs.clone(),
            output: self.spec.output.clone(),
            kind: self.spec.kind.clone(),
            on_failure: self.spec.on_failure.as_str().to_string(),
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
