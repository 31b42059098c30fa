//! The supervisor's command handlers. Each runs to completion before the
//! next message is handled. The rule for failures: the in-memory state
//! changes only after the write that makes it durable succeeded, and a
//! handler that stopped runners before a failed write starts them again, so
//! a failed command leaves things as they were.

use std::sync::Arc;

use vigil_storage::kvkeys;

use super::checkpoint::Checkpoint;
use super::context::Context;
use super::deployment::{Deployment, Stored, View};
use super::spec::{FailurePolicy, Kind, SpecError};
use super::start::swapped;
use super::status::{DeploymentState, DeploymentStatus};
use super::supervisor::{corrupt_spec, Entry, Starts, Supervisor};
use super::DetectorError;

impl Supervisor {
    /// Persists and starts a new deployment. The name is checked here, in
    /// the one task that inserts names, so of two concurrent deploys of one
    /// name exactly one gets past this check.
    pub(crate) async fn deploy(
        &mut self,
        d: Arc<Deployment>,
        starts: &Starts,
    ) -> Result<DeploymentStatus, DetectorError> {
        let name = d.spec.name.clone();
        if self.entries.contains_key(&name) {
            return Err(DetectorError::Exists(name));
        }
        // Checked here, against every deployment as of now, so two deploys
        // racing to close one cycle cannot both pass.
        let others = self.entries.values().filter_map(|e| e.view.spec());
        if let Some(path) = super::cycles::find_cycle(others, &d.spec) {
            return Err(DetectorError::Cycle { name, path });
        }
        let ctx = self.ctx.clone();
        let spec = &d.spec;
        let inputs = ctx.inputs(spec)?;
        let alerts = ctx.ensure_topic(&spec.output, &inputs).await?;
        if spec.on_failure == FailurePolicy::DeadLetter {
            ctx.ensure_topic(&spec.dead_letter_topic(), &inputs).await?;
        }
        let mut entries = Vec::new();
        let mut initial = Vec::new();
        for (t, p) in ctx.input_partitions(spec)? {
            let given = starts.get(&format!("{}/{}", t.name, p.index));
            if ctx.shared() && given.is_none() {
                // In a cluster this broker may not lead the partition (its
                // offsets here are stale): the leader's first run resolves
                // the start position (`Supervisor::fresh_checkpoint`).
                continue;
            }
            let start = match given {
                Some(o) => *o,
                None => ctx.start_offset(&p, spec.start).await?,
            };
            let end = match spec.end {
                Some(e) => Some(ctx.start_offset(&p, e).await?.max(start)),
                None => None,
            };
            let alert_hw =
                Context::output_partition(&alerts, p.index).map_or(0, |a| a.high_watermark());
            let cp = Checkpoint::new(start, alert_hw, &spec.module, d.module.label(), end);
            let key = kvkeys::checkpoint(&name, &t.name, p.index);
            entries.push((key.clone(), Some(cp.encode()?)));
            initial.push((key, cp));
        }
        let now = ctx.log.clock().now_ms();
        let view = View::new(d.clone(), DeploymentState::Running, now, None);
        let stored = view
            .stored(DeploymentState::Running)
            .ok_or_else(|| corrupt_spec(&name, &view))?;
        entries.push((kvkeys::deployment(&name), Some(stored.encode()?)));
        ctx.persist(entries).await?;
        self.checkpoints.extend(initial);
        self.entries.insert(name.clone(), Entry::new(view));
        if let Err(e) = self.start(&name).await {
            // Persisted as running but cannot run (e.g. its output topic
            // could not be created): listed as failed with why, and
            // `resume` tries again.
            self.mark_failed(&name, format!("cannot start: {e}")).await;
            return Err(e);
        }
        tracing::info!(deployment = %name, module = %d.spec.module, inputs = ?d.spec.inputs, output = %d.spec.output, "deployed");
        self.status_of(&name)
    }

    /// Deploys `d` beside the live deployment `live`, starting from its
    /// committed offsets as they are now.
    pub(crate) async fn shadow(
        &mut self,
        live: &str,
        d: Arc<Deployment>,
    ) -> Result<DeploymentStatus, DetectorError> {
        let e = self
            .entries
            .get(live)
            .ok_or_else(|| DetectorError::NotFound(live.to_string()))?;
        if e.view.kind() != Kind::Live {
            return Err(SpecError(format!("{live} is not a live deployment")).into());
        }
        // In a cluster the live deployment's progress is in the shared
        // store (other brokers ran some of its partitions).
        let shared = if self.ctx.shared() {
            self.stored_checkpoints(live)
                .await?
                .into_iter()
                .map(|(k, (cp, _))| (k, cp))
                .collect()
        } else {
            self.checkpoints.clone()
        };
        let starts: Starts = shared
            .iter()
            .filter_map(|(k, cp)| Some((kvkeys::checkpoint_input(live, k)?.to_string(), cp.offset)))
            .collect();
        self.deploy(d, &starts).await
    }

    /// Persists `Paused`, then stops the runners (each commits first).
    pub(crate) async fn pause(&mut self, name: &str) -> Result<DeploymentStatus, DetectorError> {
        self.entry(name)?;
        // Durable first: if the write fails nothing changed, and the
        // runners never stopped.
        self.persist_state(name, DeploymentState::Paused).await?;
        self.stop_runners(name).await;
        if let Some(e) = self.entries.get_mut(name) {
            e.view.state = DeploymentState::Paused;
        }
        self.status_of(name)
    }

    /// Restarts a paused, failed or completed deployment from its committed
    /// offsets.
    pub(crate) async fn resume(
        &mut self,
        name: &str,
        reload: Option<Arc<Deployment>>,
    ) -> Result<DeploymentStatus, DetectorError> {
        let e = self.entry(name)?;
        if let Some(key) = e.corrupt.first() {
            return Err(DetectorError::Corrupt {
                key: key.clone(),
                message: "its checkpoint could not be read at open; resuming would \
                          start that partition over"
                    .into(),
            });
        }
        if e.view.state == DeploymentState::Running && e.stop.is_some() {
            return self.status_of(name);
        }
        let view = match (&e.view.deployment, reload) {
            (Some(_), _) => e.view.clone(),
            (None, Some(d)) if d.spec.name == name => {
                View::new(d, e.view.state.clone(), e.view.created_ms, None)
            }
            (None, _) => return Err(corrupt_spec(name, &e.view)),
        };
        let stored = view
            .stored(DeploymentState::Running)
            .ok_or_else(|| corrupt_spec(name, &view))?;
        self.ctx
            .persist(vec![(kvkeys::deployment(name), Some(stored.encode()?))])
            .await?;
        self.stop_runners(name).await;
        if let Some(e) = self.entries.get_mut(name) {
            e.view = View {
                state: DeploymentState::Running,
                ..view
            };
        }
        if let Err(e) = self.start(name).await {
            self.mark_failed(name, format!("cannot start: {e}")).await;
            return Err(e);
        }
        self.status_of(name)
    }

    /// Replaces the module: every runner commits where it is, the
    /// checkpoints record the new version from there, and (if the
    /// deployment was running) the new version continues from them.
    pub(crate) async fn swap(
        &mut self,
        name: &str,
        d: Arc<Deployment>,
        rebuild: i64,
    ) -> Result<DeploymentStatus, DetectorError> {
        let e = self.entry(name)?;
        let Some(old) = e.view.deployment.clone() else {
            return Err(corrupt_spec(name, &e.view));
        };
        if old.spec.kind == Kind::Replay {
            return Err(SpecError(format!(
                "{name} is a replay job; start a new replay with the other module instead"
            ))
            .into());
        }
        if let Some(key) = e.corrupt.first() {
            return Err(DetectorError::Corrupt {
                key: key.clone(),
                message: "its checkpoint could not be read at open".into(),
            });
        }
        let state = e.view.state.clone();
        let was_running = e.stop.is_some();
        // Each runner commits its offset and state on the way out; the new
        // version starts from those commits.
        self.stop_runners(name).await;
        let prefix = kvkeys::checkpoint_prefix(name);
        // In a cluster each broker applies the swap to the checkpoints of
        // the partitions it runs when it starts them (`start` sees the
        // module differ); rewriting them here could move another broker's
        // progress back.
        let shared = self.ctx.shared();
        let updated: Vec<(String, Checkpoint)> = self
            .checkpoints
            .iter()
            .filter(|(k, _)| !shared && k.starts_with(&prefix))
            .map(|(k, cp)| {
                let mut cp = cp.clone();
                swapped(&mut cp, &d, rebuild);
                (k.clone(), cp)
            })
            .collect();
        let e = self.entry(name)?;
        let stored = Stored {
            spec: d.spec.clone(),
            state: state.clone(),
            created_ms: e.view.created_ms,
            finished_ms: e.view.finished_ms,
            swap_rebuild: Some(rebuild),
        };
        let mut entries = Vec::with_capacity(updated.len() + 1);
        for (k, cp) in &updated {
            entries.push((k.clone(), Some(cp.encode()?)));
        }
        entries.push((kvkeys::deployment(name), Some(stored.encode()?)));
        if let Err(err) = self.ctx.persist(entries).await {
            // Nothing changed: put the old version back to work.
            if was_running {
                if let Err(e) = self.start(name).await {
                    self.mark_failed(name, format!("cannot restart after a failed swap: {e}"))
                        .await;
                }
            }
            return Err(err);
        }
        self.checkpoints.extend(updated);
        if let Some(e) = self.entries.get_mut(name) {
            e.view = View {
                partitions: std::mem::take(&mut e.view.partitions),
                swap_rebuild: Some(rebuild),
                ..View::new(
                    d.clone(),
                    state.clone(),
                    e.view.created_ms,
                    e.view.finished_ms,
                )
            };
        }
        if state == DeploymentState::Running {
            if let Err(e) = self.start(name).await {
                self.mark_failed(name, format!("cannot start the new version: {e}"))
                    .await;
                return Err(e);
            }
        }
        tracing::info!(deployment = %name, from = %old.spec.module, to = %d.spec.module, "module swapped");
        self.status_of(name)
    }

    /// Stops and forgets a deployment: its record, checkpoints and state
    /// objects. The alert topic stays.
    pub(crate) async fn undeploy(&mut self, name: &str) -> Result<(), DetectorError> {
        let was_running = self.entry(name)?.stop.is_some();
        self.stop_runners(name).await;
        let prefix = kvkeys::checkpoint_prefix(name);
        let mut keys: Vec<String> = if self.ctx.shared() {
            // Keys only: an unreadable checkpoint is deleted too.
            self.ctx
                .records
                .list(&prefix)
                .await?
                .into_iter()
                .map(|r| r.key)
                .collect()
        } else {
            self.checkpoints
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect()
        };
        keys.extend(self.entry(name)?.corrupt.iter().cloned());
        let mut entries: Vec<(String, Option<String>)> =
            keys.iter().map(|k| (k.clone(), None)).collect();
        entries.push((kvkeys::deployment(name), None));
        if let Err(err) = self.ctx.persist(entries).await {
            if was_running {
                if let Err(e) = self.start(name).await {
                    self.mark_failed(name, format!("cannot restart after a failed undeploy: {e}"))
                        .await;
                }
            }
            return Err(err);
        }
        for k in &keys {
            self.checkpoints.remove(k);
        }
        self.entries.remove(name);
        self.delete_states(name).await;
        tracing::info!(deployment = %name, "undeployed");
        Ok(())
    }

    /// Deletes a deployment's state objects; failures only leave garbage.
    async fn delete_states(&self, name: &str) {
        use futures::TryStreamExt;
        let prefix = vigil_storage::paths::deployment_prefix(name);
        let listed: Result<Vec<_>, _> = self.ctx.store.list(Some(&prefix)).try_collect().await;
        match listed {
            Ok(objects) => {
                for o in objects {
                    super::checkpoint::delete_state(&self.ctx.store, o.location.as_ref()).await;
                }
            }
            Err(e) => {
                tracing::warn!(deployment = %name, error = %e, "cannot list old detector states; they stay behind as garbage")
            }
        }
    }

    /// Records that a deployment cannot run, in memory and (best effort)
    /// durably.
    async fn mark_failed(&mut self, name: &str, why: String) {
        self.stop_runners(name).await;
        let state = DeploymentState::Failed(why);
        if let Some(e) = self.entries.get_mut(name) {
            e.view.state = state.clone();
        }
        if let Err(e) = self.persist_state(name, state).await {
            tracing::error!(deployment = %name, error = %e, "cannot persist the failed state");
        }
    }

    fn entry(&self, name: &str) -> Result<&Entry, DetectorError> {
        self.entries
            .get(name)
            .ok_or_else(|| DetectorError::NotFound(name.to_string()))
    }

    /// Brings a deployment loaded at open back: running ones start.
    pub(crate) async fn restore(&mut self, view: View, corrupt: Vec<String>) {
        let name = view.name.clone();
        let start = matches!(
            view.state,
            DeploymentState::Running | DeploymentState::Completed
        ) && view.deployment.is_some()
            && corrupt.is_empty();
        let mut entry = Entry::new(view);
        entry.corrupt = corrupt;
        self.entries.insert(name.clone(), entry);
        if start {
            // Completed runs start no runner, only their status.
            if let Err(e) = self.start(&name).await {
                tracing::error!(deployment = %name, error = %e, "cannot restore deployment");
                if let Some(e2) = self.entries.get_mut(&name) {
                    e2.view.state = DeploymentState::Failed(format!("cannot start at open: {e}"));
                }
            }
        }
    }
}
