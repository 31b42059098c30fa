//! The detector engine: modules from the registry running on input
//! partitions, one runner per partition, with state and progress committed
//! beside the log (see `checkpoint` for how alerts stay exactly-once).
//! Deployments, replay jobs, hot swap, shadow runs and alert diffs live
//! here; no HTTP does (the server's admin routes call in).

mod batch;
pub mod budget;
pub mod checkpoint;
mod deployment;
pub mod diff;
pub mod output;
pub mod pool;
mod rate;
pub mod registry;
pub mod replay;
mod runner;
pub mod versions;

pub use vigil_api::{spec, status};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use vigil_host::{Host, HostConfig, Module, ValueSchema};
use vigil_storage::{Log, Partition, StorageError, Topic, TopicConfig};

use checkpoint::Checkpoint;
pub(crate) use deployment::version_statuses;
pub use deployment::Deployment;
use registry::{Registry, RegistryError};
use runner::{Runner, RunnerEvent};
use spec::{DeploymentSpec, FailurePolicy, Kind, SpecError, StartPosition};
use status::{DeploymentState, DeploymentStatus, PartitionStatus};

/// Why a deployment operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    /// The spec is invalid (not retriable).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Module registry problem.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The module refused the config, or could not start.
    #[error("module {module} refused to start: {message}")]
    Init {
        /// Module hash prefix.
        module: String,
        /// What the detector said.
        message: String,
    },
    /// The value schema is invalid.
    #[error("invalid value_schema: {0}")]
    Schema(String),
    /// No deployment by that name.
    #[error("no deployment named {0:?}")]
    NotFound(String),
    /// No replay job by that id.
    #[error("no replay job with id {0:?}")]
    ReplayNotFound(String),
    /// A deployment by that name exists.
    #[error("a deployment named {0:?} already exists (undeploy it first)")]
    Exists(String),
    /// An input topic does not exist.
    #[error("input topic {0:?} does not exist; create it first")]
    UnknownTopic(String),
    /// The log refused (retriable unless it says otherwise).
    #[error("log error: {0}")]
    Storage(#[from] StorageError),
    /// The object store failed while reading or writing state (retriable).
    #[error("object store: {0} (retry may help)")]
    Store(String),
}

/// How a deployment is persisted in the log's key/value state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    spec: DeploymentSpec,
    #[serde(flatten)]
    state: DeploymentState,
    /// When the deployment was created (ms since the epoch).
    #[serde(default)]
    created_ms: i64,
    /// When a bounded run completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    finished_ms: Option<i64>,
}

/// Committed checkpoints by key, shared with the runners: the log only hands
/// out its key/value state as of open, so the live view is kept here, and a
/// runner updates it in the same step as its commit so that whoever stopped
/// the runner (pause, swap, shadow) sees where it stopped.
pub(crate) type Checkpoints = Arc<parking_lot::Mutex<HashMap<String, Checkpoint>>>;

/// An input partition with its topic.
type InputPartition = (Arc<Topic>, Arc<Partition>);

/// All deployments of this broker.
pub struct Detectors {
    log: Arc<Log>,
    store: Arc<dyn ObjectStore>,
    registry: Registry,
    deployments: tokio::sync::Mutex<BTreeMap<String, Arc<Deployment>>>,
    /// Current committed checkpoints by key (the log only hands out its
    /// key/value state as of open, so the live view is kept here).
    checkpoints: Checkpoints,
    events: mpsc::UnboundedSender<RunnerEvent>,
    pool: Arc<pool::DetectorPool>,
    /// Replays' threads: one fewer than the cores (at least one) and a
    /// lower priority than live deployments, so a replay can neither take
    /// every core from the request path nor delay live alerts much.
    replay_pool: Arc<pool::DetectorPool>,
}

impl Detectors {
    /// Starts the host and every deployment persisted in the log.
    pub async fn open(log: Arc<Log>, host: HostConfig) -> Result<Arc<Self>, DetectorError> {
        let host = Host::new(host)
            .map_err(|e| DetectorError::Store(format!("cannot start the wasm host: {e}")))?;
        let store = log.object_store();
        let (events, rx) = mpsc::unbounded_channel();
        let mut checkpoints = HashMap::new();
        let mut stored = Vec::new();
        for (k, v) in log.kv_at_open().iter() {
            if k.starts_with("detectors/checkpoint/") {
                if let Ok(cp) = serde_json::from_str::<Checkpoint>(v) {
                    checkpoints.insert(k.clone(), cp);
                }
            } else if checkpoint::parse_spec_key(k).is_some() {
                match serde_json::from_str::<Stored>(v) {
                    Ok(s) => stored.push(s),
                    Err(e) => {
                        tracing::error!(key = %k, error = %e, "unreadable deployment record; ignoring it")
                    }
                }
            }
        }
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pool = pool::DetectorPool::new("vigil-detector", threads, 10)
            .map_err(|e| DetectorError::Store(format!("cannot start detector threads: {e}")))?;
        let replay_pool =
            pool::DetectorPool::new("vigil-replay", threads.saturating_sub(1).max(1), 19)
                .map_err(|e| DetectorError::Store(format!("cannot start replay threads: {e}")))?;
        let me = Arc::new(Detectors {
            pool: Arc::new(pool),
            replay_pool: Arc::new(replay_pool),
            registry: Registry::new(store.clone(), host),
            log,
            store,
            deployments: tokio::sync::Mutex::new(BTreeMap::new()),
            checkpoints: Arc::new(parking_lot::Mutex::new(checkpoints)),
            events,
        });
        tokio::spawn(Self::handle_events(Arc::downgrade(&me), rx));
        for s in stored {
            let name = s.spec.name.clone();
            if let Err(e) = me.restore(s).await {
                tracing::error!(deployment = %name, error = %e, "cannot restore deployment");
            }
        }
        Ok(me)
    }

    /// The module registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    async fn handle_events(
        me: std::sync::Weak<Self>,
        mut rx: mpsc::UnboundedReceiver<RunnerEvent>,
    ) {
        while let Some(ev) = rx.recv().await {
            let Some(me) = me.upgrade() else { return };
            match ev {
                RunnerEvent::Finished { deployment } => {
                    let d = me.deployments.lock().await.get(&deployment).cloned();
                    let Some(d) = d else { continue };
                    // From the committed checkpoints, not a count of events:
                    // a runner stopped by a pause may report after the
                    // resume started the others again.
                    let prefix = checkpoint::checkpoint_prefix(&deployment);
                    let all_done = me
                        .checkpoints
                        .lock()
                        .iter()
                        .filter(|(k, _)| k.starts_with(&prefix))
                        .all(|(_, cp)| cp.done());
                    if all_done && matches!(*d.state.lock(), DeploymentState::Running) {
                        *d.state.lock() = DeploymentState::Completed;
                        *d.finished_ms.lock() = Some(chrono::Utc::now().timestamp_millis());
                        tracing::info!(deployment = %deployment, "bounded run completed");
                        if let Err(e) = me.persist(&d).await {
                            tracing::error!(deployment = %deployment, error = %e, "cannot persist the completed state");
                        }
                    }
                }
                RunnerEvent::Failed { deployment, error } => {
                    let d = me.deployments.lock().await.get(&deployment).cloned();
                    if let Some(d) = d {
                        if matches!(*d.state.lock(), DeploymentState::Running) {
                            *d.state.lock() = DeploymentState::Failed(error);
                            d.stop_runners().await;
                            if let Err(e) = me.persist(&d).await {
                                tracing::error!(deployment = %deployment, error = %e, "cannot persist the failed state");
                            }
                        }
                    }
                }
            }
        }
    }

    async fn restore(&self, s: Stored) -> Result<(), DetectorError> {
        let module = self.registry.module(&s.spec.module).await?;
        let schema = parse_schema(&s.spec)?;
        let d = Arc::new(Deployment::new(
            s.spec,
            module,
            schema,
            s.state,
            s.created_ms,
        ));
        *d.finished_ms.lock() = s.finished_ms;
        if matches!(
            *d.state.lock(),
            DeploymentState::Running | DeploymentState::Completed
        ) {
            // Completed runs start no runner, only their status.
            self.start(&d).await?;
        }
        self.deployments.lock().await.insert(d.spec.name.clone(), d);
        Ok(())
    }

    async fn persist(&self, d: &Deployment) -> Result<(), DetectorError> {
        let stored = d.stored();
        let json =
            serde_json::to_string(&stored).map_err(|e| DetectorError::Store(e.to_string()))?;
        self.log
            .kv_put(vec![(checkpoint::spec_key(&d.spec.name), Some(json))])
            .await?;
        Ok(())
    }

    /// The output topic `name`, created if missing with as many partitions
    /// as the widest input and the first input's retention: alerts carry
    /// their source record's timestamp, so they age with their input (a
    /// replay over years-old data must not write alerts that default
    /// retention deletes on its next pass).
    async fn ensure_topic(
        &self,
        name: &str,
        inputs: &[Arc<Topic>],
    ) -> Result<Arc<Topic>, DetectorError> {
        if let Some(t) = self.log.topic(name) {
            return Ok(t);
        }
        let partitions = inputs.iter().map(|t| t.partitions.len()).max().unwrap_or(1) as i32;
        let configs = inputs
            .first()
            .map(|t| {
                t.configs
                    .iter()
                    .filter(|(k, _)| k.starts_with("retention."))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let cfg = TopicConfig {
            partitions,
            configs,
        };
        match self.log.create_topic(name, cfg).await {
            Ok(t) => Ok(t),
            Err(StorageError::TopicExists(_)) => self
                .log
                .topic(name)
                .ok_or_else(|| DetectorError::UnknownTopic(name.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    fn inputs(&self, spec: &DeploymentSpec) -> Result<Vec<Arc<Topic>>, DetectorError> {
        spec.inputs
            .iter()
            .map(|t| {
                self.log
                    .topic(t)
                    .ok_or_else(|| DetectorError::UnknownTopic(t.clone()))
            })
            .collect()
    }

    /// The input partitions a spec covers, refusing partitions that exist
    /// in none of its inputs.
    fn input_partitions(
        &self,
        spec: &DeploymentSpec,
    ) -> Result<Vec<InputPartition>, DetectorError> {
        let mut out = Vec::new();
        for t in self.inputs(spec)? {
            for p in &t.partitions {
                if spec
                    .partitions
                    .as_ref()
                    .is_none_or(|ps| ps.contains(&p.index))
                {
                    out.push((t.clone(), p.clone()));
                }
            }
        }
        if let Some(ps) = &spec.partitions {
            if let Some(missing) = ps.iter().find(|i| !out.iter().any(|(_, p)| p.index == **i)) {
                return Err(DetectorError::Spec(SpecError(format!(
                    "partition {missing} does not exist in {:?}",
                    spec.inputs
                ))));
            }
        }
        Ok(out)
    }

    async fn start_offset(
        &self,
        p: &Partition,
        start: StartPosition,
    ) -> Result<i64, DetectorError> {
        let (lo, hi) = (p.log_start_offset(), p.high_watermark());
        Ok(match start {
            StartPosition::Earliest => lo,
            StartPosition::Latest => hi,
            StartPosition::Offset(o) => o.clamp(lo, hi),
            StartPosition::Timestamp(ts) => self
                .log
                .offset_for_timestamp(p, ts)
                .await?
                .map_or(hi, |l| l.offset),
        })
    }

    /// Resolves and loads the spec's module and checks that it starts with
    /// the spec's config (a bad config shows now, not on the first batch).
    async fn checked_module(
        &self,
        spec: &mut DeploymentSpec,
    ) -> Result<Arc<Module>, DetectorError> {
        spec.module = self.registry.resolve(&spec.module).await?;
        let module = self.registry.module(&spec.module).await?;
        let (m, limits, config) = (module.clone(), spec.limits.clone(), spec.config.to_string());
        let label = format!("{}/deploy-check", spec.name);
        tokio::task::spawn_blocking(move || m.instantiate(&limits, &config, &label))
            .await
            .map_err(|e| DetectorError::Store(format!("instantiation task failed: {e}")))?
            .map_err(|e| DetectorError::Init {
                module: module.hash[..12].to_string(),
                message: e.to_string(),
            })?;
        Ok(module)
    }

    /// Validates, persists and starts a deployment.
    pub async fn deploy(&self, spec: DeploymentSpec) -> Result<DeploymentStatus, DetectorError> {
        self.deploy_at(spec, &HashMap::new()).await
    }

    /// [`deploy`](Self::deploy), with start offsets for some partitions
    /// (`"topic/partition"` → offset) overriding the spec's start position.
    async fn deploy_at(
        &self,
        mut spec: DeploymentSpec,
        starts: &HashMap<String, i64>,
    ) -> Result<DeploymentStatus, DetectorError> {
        spec.validate()?;
        if self.deployments.lock().await.contains_key(&spec.name) {
            return Err(DetectorError::Exists(spec.name));
        }
        let module = self.checked_module(&mut spec).await?;
        let schema = parse_schema(&spec)?;
        let inputs = self.inputs(&spec)?;
        let alerts = self.ensure_topic(&spec.output, &inputs).await?;
        if spec.on_failure == FailurePolicy::DeadLetter {
            self.ensure_topic(&spec.dead_letter_topic(), &inputs)
                .await?;
        }
        let mut entries = Vec::new();
        let mut initial = Vec::new();
        for (t, p) in self.input_partitions(&spec)? {
            let start = match starts.get(&format!("{}/{}", t.name, p.index)) {
                Some(o) => *o,
                None => self.start_offset(&p, spec.start).await?,
            };
            let end = match spec.end {
                Some(e) => Some(self.start_offset(&p, e).await?.max(start)),
                None => None,
            };
            let alert_hw =
                alerts.partitions[p.index as usize % alerts.partitions.len()].high_watermark();
            let cp = Checkpoint::new(start, alert_hw, &spec.module, module.label(), end);
            let key = checkpoint::checkpoint_key(&spec.name, &t.name, p.index);
            entries.push((
                key.clone(),
                Some(serde_json::to_string(&cp).unwrap_or_default()),
            ));
            initial.push((key, cp));
        }
        let now = chrono::Utc::now().timestamp_millis();
        let d = Arc::new(Deployment::new(
            spec,
            module,
            schema,
            DeploymentState::Running,
            now,
        ));
        entries.push((
            checkpoint::spec_key(&d.spec.name),
            Some(
                serde_json::to_string(&d.stored())
                    .map_err(|e| DetectorError::Store(e.to_string()))?,
            ),
        ));
        self.log.kv_put(entries).await?;
        self.checkpoints.lock().extend(initial);
        // In the map before its runners start: a short bounded run may
        // finish before `start` returns, and its completion looks it up.
        self.deployments
            .lock()
            .await
            .insert(d.spec.name.clone(), d.clone());
        self.start(&d).await?;
        tracing::info!(deployment = %d.spec.name, module = %d.spec.module, inputs = ?d.spec.inputs, output = %d.spec.output, "deployed");
        Ok(d.status())
    }

    /// Starts one runner per input partition from its committed checkpoint.
    async fn start(&self, d: &Arc<Deployment>) -> Result<(), DetectorError> {
        let inputs = self.inputs(&d.spec)?;
        let alerts = self.ensure_topic(&d.spec.output, &inputs).await?;
        let dlq = match d.spec.on_failure {
            FailurePolicy::DeadLetter => Some(
                self.ensure_topic(&d.spec.dead_letter_topic(), &inputs)
                    .await?,
            ),
            _ => None,
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let throttle = d.spec.budget.as_ref().and_then(budget::Throttle::new);
        let mut statuses = Vec::new();
        let mut tasks = Vec::new();
        let mut covered = 0;
        for (t, p) in self.input_partitions(&d.spec)? {
            let p = &p;
            let key = checkpoint::checkpoint_key(&d.spec.name, &t.name, p.index);
            let committed = self.checkpoints.lock().get(&key).cloned();
            let cp = match committed {
                Some(cp) => cp,
                // A partition without a checkpoint (added after deploy)
                // starts at the deployment's start position.
                None => Checkpoint::new(
                    self.start_offset(p, d.spec.start).await?,
                    0,
                    &d.spec.module,
                    d.module.label(),
                    None,
                ),
            };
            let hw = cp.end.unwrap_or(i64::MAX).min(p.high_watermark());
            covered += cp.offset - cp.start;
            let status = Arc::new(parking_lot::Mutex::new(rate::LivePartition {
                status: PartitionStatus {
                    topic: t.name.clone(),
                    partition: p.index,
                    offset: cp.offset,
                    committed_offset: cp.offset,
                    // Until the runner's first pass, show where it starts.
                    high_watermark: hw,
                    lag: (hw - cp.offset).max(0),
                    records: cp.records,
                    alerts: cp.alerts,
                    start: cp.start,
                    end: cp.end,
                    versions: version_statuses(&cp),
                    ..Default::default()
                },
                ..Default::default()
            }));
            statuses.push(status.clone());
            if cp.done() {
                continue;
            }
            let pick = |topic: &Arc<Topic>| {
                topic.partitions[p.index as usize % topic.partitions.len()].clone()
            };
            let runner = Runner {
                log: self.log.clone(),
                store: self.store.clone(),
                deployment: d.clone(),
                pool: match d.spec.kind {
                    Kind::Replay => self.replay_pool.clone(),
                    _ => self.pool.clone(),
                },
                topic: t.name.clone(),
                input: p.clone(),
                alerts: pick(&alerts),
                dead_letters: dlq.as_ref().map(pick),
                status,
                checkpoint: cp,
                stop: stop_rx.clone(),
                events: self.events.clone(),
                suppress_through: i64::MIN,
                throttle: throttle.clone(),
                checkpoints: self.checkpoints.clone(),
            };
            tasks.push(tokio::spawn(runner.run()));
        }
        *d.started.lock() = (std::time::Instant::now(), covered);
        // A bounded run with every partition at its end starts no runner.
        if tasks.is_empty() && d.spec.end.is_some() {
            *d.state.lock() = DeploymentState::Completed;
        }
        *d.partitions.lock() = statuses;
        *d.stop.lock() = Some(stop_tx);
        *d.tasks.lock() = tasks;
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Arc<Deployment>, DetectorError> {
        self.deployments
            .lock()
            .await
            .get(name)
            .cloned()
            .ok_or_else(|| DetectorError::NotFound(name.to_string()))
    }

    /// Status of every deployment.
    pub async fn list(&self) -> Vec<DeploymentStatus> {
        self.deployments
            .lock()
            .await
            .values()
            .map(|d| d.status())
            .collect()
    }

    /// Status of one deployment.
    pub async fn status(&self, name: &str) -> Result<DeploymentStatus, DetectorError> {
        Ok(self.get(name).await?.status())
    }

    /// Stops a deployment's runners (each commits first); resume continues.
    pub async fn pause(&self, name: &str) -> Result<DeploymentStatus, DetectorError> {
        let d = self.get(name).await?;
        d.stop_runners().await;
        *d.state.lock() = DeploymentState::Paused;
        self.persist(&d).await?;
        Ok(d.status())
    }

    /// Restarts a paused or failed deployment from its committed offsets.
    pub async fn resume(&self, name: &str) -> Result<DeploymentStatus, DetectorError> {
        let d = self.get(name).await?;
        if matches!(*d.state.lock(), DeploymentState::Running) {
            return Ok(d.status());
        }
        d.stop_runners().await;
        *d.state.lock() = DeploymentState::Running;
        self.persist(&d).await?;
        self.start(&d).await?;
        Ok(d.status())
    }

    /// Stops and forgets a deployment: its spec, checkpoints and state
    /// objects. The alert topic stays.
    pub async fn undeploy(&self, name: &str) -> Result<(), DetectorError> {
        let d = self.get(name).await?;
        d.stop_runners().await;
        let prefix = checkpoint::checkpoint_prefix(name);
        let keys: Vec<String> = {
            let mut cps = self.checkpoints.lock();
            let keys: Vec<String> = cps
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            for k in &keys {
                cps.remove(k);
            }
            keys
        };
        let mut entries: Vec<(String, Option<String>)> =
            keys.into_iter().map(|k| (k, None)).collect();
        entries.push((checkpoint::spec_key(name), None));
        self.log.kv_put(entries).await?;
        self.deployments.lock().await.remove(name);
        self.delete_states(name).await;
        tracing::info!(deployment = %name, "undeployed");
        Ok(())
    }

    async fn delete_states(&self, name: &str) {
        use futures::TryStreamExt;
        let prefix = vigil_storage::paths::deployment_prefix(name);
        let listed: Result<Vec<_>, _> = self.store.list(Some(&prefix)).try_collect().await;
        if let Ok(objects) = listed {
            for o in objects {
                checkpoint::delete_state(&self.store, o.location.as_ref()).await;
            }
        }
    }

    /// Stops every runner, letting each commit its progress.
    pub async fn shutdown(&self) {
        let all: Vec<_> = self.deployments.lock().await.values().cloned().collect();
        for d in all {
            d.stop_runners().await;
        }
    }
}

fn parse_schema(spec: &DeploymentSpec) -> Result<Option<ValueSchema>, DetectorError> {
    spec.value_schema
        .as_ref()
        .map(ValueSchema::from_json)
        .transpose()
        .map_err(|e| DetectorError::Schema(e.to_string()))
}
