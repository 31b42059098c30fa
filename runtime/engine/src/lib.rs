//! The detector engine: modules from the registry running on input
//! partitions, one runner per partition, with state and progress committed
//! beside the log (see `checkpoint` for how alerts stay exactly-once).
//! Deployments, replay jobs, hot swap, shadow runs and alert diffs live
//! here; no HTTP does (the server's admin routes call in).
//!
//! One supervisor task owns all deployment state (see `supervisor`);
//! [`Detectors`] is its front end: it validates and compiles what a command
//! needs, sends the command, and answers status reads from the snapshot the
//! supervisor publishes.

mod authz;
mod batch;
pub mod budget;
pub mod checkpoint;
mod commands;
mod context;
mod cycles;
mod deployment;
pub mod diff;
mod error;
mod follow;
pub mod logs;
pub mod output;
mod rate;
pub mod registry;
pub mod replay;
mod runner;
pub mod settings;
mod start;
pub mod store;
mod supervisor;
pub mod versions;

pub use vigil_api::{spec, status};

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use vigil_host::{Host, HostConfig, Module, ValueSchema};
use vigil_storage::{kvkeys, Log};

pub use authz::Grant;
pub use store::{DeploymentStore, LogStore};

use checkpoint::Checkpoint;
use context::Context;
pub use deployment::Deployment;
use deployment::{Stored, View};
pub use error::{storage_kind, DetectorError};
use registry::Registry;
pub use settings::{EngineSettings, SettingsError};
use spec::DeploymentSpec;
use status::{DeploymentState, DeploymentStatus};
use supervisor::{Command, Msg, Reply, Snapshot, Starts, Supervisor};

/// All deployments of this broker.
pub struct Detectors {
    ctx: Arc<Context>,
    registry: Arc<Registry>,
    /// The supervisor's one channel.
    tx: mpsc::UnboundedSender<Msg>,
    /// What the supervisor last published.
    snapshot: watch::Receiver<Snapshot>,
    /// Recent module log lines per deployment (the host's log sink).
    logs: Arc<logs::ModuleLogs>,
}

impl Drop for Detectors {
    fn drop(&mut self) {
        // Runners hold senders too, so the channel does not close by itself.
        let _ = self.tx.send(Msg::Close);
    }
}

impl Detectors {
    /// Starts the host and every deployment persisted in the log, with
    /// default [`EngineSettings`].
    pub async fn open(log: Arc<Log>, host: HostConfig) -> Result<Arc<Self>, DetectorError> {
        let host = Host::new(host)
            .map_err(|e| DetectorError::Internal(format!("cannot start the wasm host: {e}")))?;
        Self::open_with(log, host, EngineSettings::default()).await
    }

    /// Starts the engine on the given components: the log (whose object
    /// store also holds modules and detector state) and the wasm host.
    /// Deployments persisted in the log start again; one whose records
    /// cannot be read comes up failed, naming the key, and the rest start.
    pub async fn open_with(
        log: Arc<Log>,
        host: Host,
        settings: EngineSettings,
    ) -> Result<Arc<Self>, DetectorError> {
        let records = Arc::new(store::LogStore::new(log.clone()));
        Self::open_on(log, host, settings, records).await
    }

    /// [`open_with`](Self::open_with), keeping deployment records and
    /// checkpoints in `records`. With a shared store (a cluster) the engine
    /// follows deployments created on other brokers and runs the
    /// partitions this broker serves.
    pub async fn open_on(
        log: Arc<Log>,
        host: Host,
        settings: EngineSettings,
        records: Arc<dyn store::DeploymentStore>,
    ) -> Result<Arc<Self>, DetectorError> {
        settings.validate()?;
        let store = log.object_store();
        let ctx = Arc::new(Context::new(
            log.clone(),
            store.clone(),
            records.clone(),
            settings,
        )?);
        let logs = Arc::new(logs::ModuleLogs::default());
        host.set_log_sink(logs.clone());
        let registry = Arc::new(Registry::new(
            store,
            host,
            ctx.settings.max_compiled_modules,
        ));
        let loaded = load(&*records, &registry).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (published, snapshot) = watch::channel(Snapshot::default());
        let mut sup = Supervisor::new(ctx.clone(), loaded.checkpoints, tx.clone(), published);
        for (view, corrupt) in loaded.deployments {
            sup.restore(view, corrupt).await;
        }
        sup.publish();
        tokio::spawn(sup.run(rx));
        if records.shared() {
            tokio::spawn(follow::follow(
                records,
                registry.clone(),
                snapshot.clone(),
                tx.clone(),
            ));
        }
        Ok(Arc::new(Detectors {
            ctx,
            registry,
            tx,
            snapshot,
            logs,
        }))
    }

    /// The module registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The settings the engine runs with.
    pub fn settings(&self) -> &EngineSettings {
        &self.ctx.settings
    }

    /// Sends a command and waits for its answer, at most the command
    /// timeout. The command is not cancelled when the wait ends: it applies
    /// once the log's write-ahead log gets through, which is why the error
    /// says to look before retrying.
    async fn call<T>(
        &self,
        what: &str,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, DetectorError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Command(make(tx)))
            .map_err(|_| DetectorError::ShutDown)?;
        let timeout = self.ctx.settings.command_timeout();
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(DetectorError::ShutDown),
            Err(_) => Err(DetectorError::Store(format!(
                "{what} did not finish within {timeout:?}: the log's durable state is not \
                 being written; the command stays queued and applies when it is, so check \
                 the status before retrying"
            ))),
        }
    }

    fn view(&self, name: &str) -> Option<View> {
        self.snapshot.borrow().get(name).cloned()
    }

    /// Resolves and loads the spec's module and checks that it starts with
    /// the spec's config (a bad config shows now, not on the first batch).
    /// Runs before any command is sent: compiling takes about a second.
    async fn prepare(&self, mut spec: DeploymentSpec) -> Result<Arc<Deployment>, DetectorError> {
        spec.module = self.registry.resolve(&spec.module).await?;
        let module = self.registry.module(&spec.module).await?;
        let (m, limits, config) = (module.clone(), spec.limits.clone(), spec.config.to_string());
        let label = format!("{}/deploy-check", spec.name);
        tokio::task::spawn_blocking(move || m.instantiate(&limits, &config, &label))
            .await
            .map_err(|e| DetectorError::Internal(format!("instantiation task failed: {e}")))?
            .map_err(|e| DetectorError::Init {
                module: module.hash[..12].to_string(),
                message: e.to_string(),
            })?;
        let schema = parse_schema(&spec)?;
        Ok(Arc::new(Deployment {
            spec,
            module,
            schema,
        }))
    }

    /// Validates, persists and starts a deployment.
    pub async fn deploy(&self, spec: DeploymentSpec) -> Result<DeploymentStatus, DetectorError> {
        self.deploy_at(spec, Starts::new()).await
    }

    /// [`deploy`](Self::deploy), with start offsets for some partitions
    /// (`"topic/partition"` → offset) overriding the spec's start position.
    async fn deploy_at(
        &self,
        spec: DeploymentSpec,
        starts: Starts,
    ) -> Result<DeploymentStatus, DetectorError> {
        spec.validate()?;
        // Cheap early answer; the supervisor checks again, authoritatively.
        if self.view(&spec.name).is_some() {
            return Err(DetectorError::Exists(spec.name));
        }
        let deployment = self.prepare(spec).await?;
        self.ctx.inputs(&deployment.spec)?;
        self.call("deploy", |reply| Command::Deploy {
            deployment,
            starts,
            reply,
        })
        .await
    }

    /// Status of every deployment.
    pub async fn list(&self) -> Vec<DeploymentStatus> {
        let snapshot = self.snapshot.borrow().clone();
        snapshot.values().map(View::status).collect()
    }

    /// Status of one deployment.
    pub async fn status(&self, name: &str) -> Result<DeploymentStatus, DetectorError> {
        self.view(name)
            .map(|v| v.status())
            .ok_or_else(|| DetectorError::NotFound(name.to_string()))
    }

    /// Stops a deployment's runners (each commits first); resume continues.
    pub async fn pause(&self, name: &str) -> Result<DeploymentStatus, DetectorError> {
        let name = name.to_string();
        self.call("pause", |reply| Command::Pause { name, reply })
            .await
    }

    /// Restarts a paused or failed deployment from its committed offsets.
    pub async fn resume(&self, name: &str) -> Result<DeploymentStatus, DetectorError> {
        let view = self
            .view(name)
            .ok_or_else(|| DetectorError::NotFound(name.to_string()))?;
        // A deployment whose module could not be loaded at open gets it
        // loaded now, before the command (compiling is slow).
        let reload = match (&view.deployment, &view.unloaded_spec) {
            (None, Some(spec)) => Some(self.prepare(spec.clone()).await?),
            _ => None,
        };
        let name = name.to_string();
        self.call("resume", |reply| Command::Resume {
            name,
            reload,
            reply,
        })
        .await
    }

    /// Stops and forgets a deployment: its spec, checkpoints and state
    /// objects. The alert topic stays.
    pub async fn undeploy(&self, name: &str) -> Result<(), DetectorError> {
        let name = name.to_string();
        self.call("undeploy", |reply| Command::Undeploy {
            name: name.clone(),
            reply,
        })
        .await?;
        self.logs.forget(&name);
        Ok(())
    }

    /// (input topic, output topic) pairs of every deployment: input
    /// partition `i` writes to output partition `i % n`, so a cluster places
    /// the two together (see `vigil_coord::placement::groups`).
    pub fn colocated(&self) -> Vec<(String, String)> {
        let snapshot = self.snapshot.borrow().clone();
        let mut out = Vec::new();
        for spec in snapshot.values().filter_map(|v| v.spec()) {
            let mut outputs = vec![spec.output.clone()];
            if spec.on_failure == spec::FailurePolicy::DeadLetter {
                outputs.push(spec.dead_letter_topic());
            }
            for i in &spec.inputs {
                for o in &outputs {
                    out.push((i.clone(), o.clone()));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Stops the runners of partitions this broker no longer serves (each
    /// commits) and starts those of partitions it newly serves; a cluster's
    /// placement calls this after handing a partition over, before the new
    /// leader takes it, so the two never run it at once.
    pub async fn settle(&self) {
        self.unbounded(|reply| Command::Settle { reply }).await;
    }

    /// Sends a command that answers with no value and waits for it,
    /// without the command timeout (see the callers for why).
    async fn unbounded(&self, make: impl FnOnce(oneshot::Sender<()>) -> Command) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Command(make(reply))).is_ok() {
            let _ = rx.await;
        }
    }

    /// Stops every runner, letting each commit its progress.
    pub async fn shutdown(&self) {
        // Not bounded by the command timeout: shutdown must not return
        // while runners may still write.
        self.unbounded(|reply| Command::Shutdown { reply }).await;
    }
}

/// What the log's key/value state held for the engine at open.
struct Loaded {
    checkpoints: HashMap<String, Checkpoint>,
    /// Each deployment's view with the keys of its unreadable checkpoints.
    deployments: Vec<(View, Vec<String>)>,
}

/// Reads every deployment and checkpoint record. Nothing unreadable is
/// dropped or replaced by a default: its deployment is listed as failed,
/// naming the key.
async fn load(
    records: &dyn store::DeploymentStore,
    registry: &Registry,
) -> Result<Loaded, DetectorError> {
    let mut checkpoints = HashMap::new();
    let mut bad_checkpoints: Vec<(String, DetectorError)> = Vec::new();
    let mut found = Vec::new();
    for r in records.list(kvkeys::checkpoints_prefix()).await? {
        match Checkpoint::decode(&r.key, &r.value) {
            Ok(cp) => {
                checkpoints.insert(r.key, cp);
            }
            Err(e) => bad_checkpoints.push((r.key, e)),
        }
    }
    for r in records.list(kvkeys::deployments_prefix()).await? {
        if let Some(name) = kvkeys::parse_deployment(&r.key) {
            found.push((name.to_string(), Stored::decode(&r.key, &r.value)));
        }
    }
    let mut deployments = Vec::new();
    for (name, record) in found {
        let corrupt: Vec<&(String, DetectorError)> = bad_checkpoints
            .iter()
            .filter(|(k, _)| kvkeys::checkpoint_input(&name, k).is_some())
            .collect();
        let corrupt_keys: Vec<String> = corrupt.iter().map(|(k, _)| k.clone()).collect();
        let view = match record {
            Err(e) => {
                tracing::error!(deployment = %name, error = %e, "unreadable deployment record");
                View::unloaded(&name, None, 0, e.to_string())
            }
            Ok(s) => match load_one(registry, &s).await {
                Err(e) => {
                    tracing::error!(deployment = %name, error = %e, "cannot load deployment");
                    View::unloaded(&name, Some(s.spec), s.created_ms, e.to_string())
                }
                Ok(d) => {
                    let mut view = View::from_stored(d, &s);
                    if let Some((_, e)) = corrupt.first() {
                        tracing::error!(deployment = %name, error = %e, "unreadable checkpoint; not starting the deployment");
                        view.state = DeploymentState::Failed(e.to_string());
                    }
                    view
                }
            },
        };
        deployments.push((view, corrupt_keys));
    }
    for (k, e) in &bad_checkpoints {
        if !deployments
            .iter()
            .any(|(v, _)| kvkeys::checkpoint_input(&v.name, k).is_some())
        {
            tracing::warn!(key = %k, error = %e, "unreadable checkpoint of no deployment");
        }
    }
    Ok(Loaded {
        checkpoints,
        deployments,
    })
}

pub(crate) async fn load_one(
    registry: &Registry,
    s: &Stored,
) -> Result<Arc<Deployment>, DetectorError> {
    let module: Arc<Module> = registry.module(&s.spec.module).await?;
    let schema = parse_schema(&s.spec)?;
    Ok(Arc::new(Deployment {
        spec: s.spec.clone(),
        module,
        schema,
    }))
}

fn parse_schema(spec: &DeploymentSpec) -> Result<Option<ValueSchema>, DetectorError> {
    spec.value_schema
        .as_ref()
        .map(ValueSchema::from_json)
        .transpose()
        .map_err(|e| DetectorError::Schema(e.to_string()))
}
