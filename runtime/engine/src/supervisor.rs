//! The one task that owns every deployment's and replay's state: the
//! deployment map, each deployment's life-cycle state and runner handles,
//! and the committed-checkpoint view. Commands and runner reports reach it
//! through one channel and are handled one at a time, so no check-then-act
//! race between two commands, or between a command and a runner's report,
//! can happen. Status reads never come here: after each change it publishes
//! a snapshot (see `View`) on a watch channel. See
//! docs/design/0006-engine-supervisor.md.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::checkpoint::Checkpoint;
use super::context::Context;
use super::deployment::{Deployment, View};
use super::runner::{RunnerEvent, RunnerExit, RunnerReport};
use super::status::{DeploymentState, DeploymentStatus};
use super::DetectorError;
use vigil_storage::kvkeys;

/// The reply route of a command.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, DetectorError>>;

/// Start offsets for some partitions (`"topic/partition"` → offset) that
/// override a spec's start position.
pub(crate) type Starts = HashMap<String, i64>;

/// What the supervisor publishes: every deployment by name.
pub(crate) type Snapshot = Arc<BTreeMap<String, View>>;

/// Everything the supervisor hears, on its one channel.
pub(crate) enum Msg {
    /// An admin command, with its reply route.
    Command(Command),
    /// A runner's report.
    Runner(RunnerEvent),
    /// The engine handle was dropped: stop every runner and exit.
    Close,
}

/// A state-changing request. Anything slow that does not depend on the
/// current state (module compile, spec validation) is done by the sender
/// first, so a command holds the supervisor only for state work and the
/// writes that make it durable.
pub(crate) enum Command {
    /// Persist and start a new deployment (its module already checked).
    Deploy {
        deployment: Arc<Deployment>,
        starts: Starts,
        reply: Reply<DeploymentStatus>,
    },
    /// Deploy beside live deployment `live`, from its committed offsets.
    Shadow {
        live: String,
        deployment: Arc<Deployment>,
        reply: Reply<DeploymentStatus>,
    },
    /// Stop the runners (each commits) and persist `Paused`.
    Pause {
        name: String,
        reply: Reply<DeploymentStatus>,
    },
    /// Persist `Running` and start from the committed offsets; `reload`
    /// replaces a deployment that could not be loaded at open.
    Resume {
        name: String,
        reload: Option<Arc<Deployment>>,
        reply: Reply<DeploymentStatus>,
    },
    /// Replace the module: runners commit, checkpoints record the new
    /// version, the new one continues from them.
    Swap {
        name: String,
        deployment: Arc<Deployment>,
        rebuild: i64,
        reply: Reply<DeploymentStatus>,
    },
    /// Stop and forget a deployment (replay cancel is this too).
    Undeploy { name: String, reply: Reply<()> },
    /// Stop every runner, letting each commit.
    Shutdown { reply: oneshot::Sender<()> },
    /// A cluster's shared records as listed at `listed_at`, with the
    /// deployments whose module the follower loaded: apply what other
    /// brokers changed, then [`Command::Settle`].
    Sync {
        listing: crate::follow::Listing,
        reply: oneshot::Sender<()>,
    },
    /// Stop a running deployment as failed: its principal lost an ACL
    /// (`authz.rs`).
    Revoke {
        name: String,
        why: String,
        reply: Reply<DeploymentStatus>,
    },
    /// Restart the runners of deployments whose runnable partitions
    /// changed (a partition moved in or out), so that a partition handed
    /// over has no runner left here once this answers.
    Settle { reply: oneshot::Sender<()> },
}

/// One deployment as the supervisor owns it.
pub(crate) struct Entry {
    pub(crate) view: View,
    /// Tells this run's runners to stop; `Some` while runners run.
    pub(crate) stop: Option<watch::Sender<bool>>,
    pub(crate) tasks: Vec<JoinHandle<RunnerExit>>,
    /// The current run; reports from older runs are stale.
    pub(crate) epoch: u64,
    /// Keys of records that could not be decoded at open: undeploy deletes
    /// them, resume refuses while any is left (it would restart from zero).
    pub(crate) corrupt: Vec<String>,
    /// The partitions this run covers, with the leader epochs they were
    /// served at: when what this broker can run differs, the runners
    /// restart (a partition moved in or out).
    pub(crate) running: BTreeSet<super::start::RunKey>,
    /// When a command here last changed this entry: a listing of the
    /// shared records taken before that is older than what it knows.
    pub(crate) changed: std::time::Instant,
    /// A runner found its checkpoint written elsewhere: start again from
    /// the stored one.
    pub(crate) restart: bool,
}

impl Entry {
    pub(crate) fn new(view: View) -> Self {
        Entry {
            view,
            stop: None,
            tasks: Vec::new(),
            epoch: 0,
            corrupt: Vec::new(),
            running: BTreeSet::new(),
            changed: std::time::Instant::now(),
            restart: false,
        }
    }
}

/// The owner of all deployment state.
pub(crate) struct Supervisor {
    pub(crate) ctx: Arc<Context>,
    pub(crate) entries: BTreeMap<String, Entry>,
    /// Committed checkpoints by key: the log only hands out its key/value
    /// state as of open, so the live view is kept here, fed by runner
    /// reports and by the runners' exits.
    pub(crate) checkpoints: HashMap<String, Checkpoint>,
    /// Runner reports go here (the supervisor's own channel).
    pub(crate) tx: mpsc::UnboundedSender<Msg>,
    published: watch::Sender<Snapshot>,
    pub(crate) next_epoch: u64,
    /// Deployments a command here removed, and when (see `touched`).
    pub(crate) removed: HashMap<String, std::time::Instant>,
    /// Shut down: runners stay stopped.
    closing: bool,
}

impl Supervisor {
    pub(crate) fn new(
        ctx: Arc<Context>,
        checkpoints: HashMap<String, Checkpoint>,
        tx: mpsc::UnboundedSender<Msg>,
        published: watch::Sender<Snapshot>,
    ) -> Self {
        Supervisor {
            ctx,
            entries: BTreeMap::new(),
            checkpoints,
            tx,
            published,
            next_epoch: 1,
            removed: HashMap::new(),
            closing: false,
        }
    }

    /// Handles messages until the engine is closed.
    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        while let Some(msg) = rx.recv().await {
            let changed = match msg {
                Msg::Command(c) => {
                    self.command(c).await;
                    true
                }
                Msg::Runner(ev) => self.runner_event(ev).await,
                Msg::Close => {
                    self.stop_all().await;
                    return;
                }
            };
            if changed {
                self.publish();
            }
        }
    }

    /// Publishes the current views for status reads.
    pub(crate) fn publish(&self) {
        let snapshot: BTreeMap<String, View> = self
            .entries
            .iter()
            .map(|(k, e)| (k.clone(), e.view.clone()))
            .collect();
        self.published.send_replace(Arc::new(snapshot));
    }

    /// Notes that a command here changed `name` (or removed it), so a
    /// listing of the shared records taken before does not undo it.
    pub(crate) fn touched(&mut self, name: &str) {
        let now = std::time::Instant::now();
        match self.entries.get_mut(name) {
            Some(e) => e.changed = now,
            None => {
                self.removed.insert(name.to_string(), now);
            }
        }
    }

    async fn command(&mut self, c: Command) {
        let name = match &c {
            Command::Deploy { deployment, .. } | Command::Shadow { deployment, .. } => {
                Some(deployment.spec.name.clone())
            }
            Command::Pause { name, .. }
            | Command::Resume { name, .. }
            | Command::Swap { name, .. }
            | Command::Undeploy { name, .. }
            | Command::Revoke { name, .. } => Some(name.clone()),
            _ => None,
        };
        self.handle(c).await;
        if let Some(n) = name {
            self.touched(&n);
        }
    }

    async fn handle(&mut self, c: Command) {
        // A dropped reply means the caller gave up waiting; the command has
        // been applied regardless, so there is nothing to undo. The new
        // state is published before the reply, so a caller that reads
        // status right after its command sees the command's effect.
        match c {
            Command::Deploy {
                deployment,
                starts,
                reply,
            } => {
                let r = self.deploy(deployment, &starts).await;
                self.publish();
                let _ = reply.send(r);
            }
            Command::Shadow {
                live,
                deployment,
                reply,
            } => {
                let r = self.shadow(&live, deployment).await;
                self.publish();
                let _ = reply.send(r);
            }
            Command::Pause { name, reply } => {
                let r = self.pause(&name).await;
                self.publish();
                let _ = reply.send(r);
            }
            Command::Revoke { name, why, reply } => {
                let r = self.revoke(&name, why).await;
                self.publish();
                let _ = reply.send(r);
            }
            Command::Resume {
                name,
                reload,
                reply,
            } => {
                let r = self.resume(&name, reload).await;
                self.publish();
                let _ = reply.send(r);
            }
            Command::Swap {
                name,
                deployment,
                rebuild,
                reply,
            } => {
                let r = self.swap(&name, deployment, rebuild).await;
                self.publish();
                let _ = reply.send(r);
            }
            Command::Undeploy { name, reply } => {
                let r = self.undeploy(&name).await;
                self.publish();
                let _ = reply.send(r);
            }
            Command::Shutdown { reply } => {
                self.closing = true;
                self.stop_all().await;
                let _ = reply.send(());
            }
            // After shutdown nothing starts again: a cluster drains (and
            // settles) after the engine stopped its runners.
            Command::Sync { reply, .. } | Command::Settle { reply } if self.closing => {
                let _ = reply.send(());
            }
            Command::Sync { listing, reply } => {
                self.sync(listing).await;
                self.settle().await;
                self.publish();
                let _ = reply.send(());
            }
            Command::Settle { reply } => {
                self.settle().await;
                self.publish();
                let _ = reply.send(());
            }
        }
    }

    /// Applies a runner's report; returns whether the views changed.
    async fn runner_event(&mut self, ev: RunnerEvent) -> bool {
        let current = self
            .entries
            .get(&ev.deployment)
            .is_some_and(|e| e.epoch == ev.epoch && e.stop.is_some());
        if !current {
            // From runners stopped since: their final commit came back with
            // their exit, and undeploy may have deleted the key already.
            return false;
        }
        match ev.report {
            RunnerReport::Committed { key, checkpoint } => {
                self.checkpoints.insert(key, checkpoint);
                false
            }
            RunnerReport::Finished { key, checkpoint } => {
                self.checkpoints.insert(key, checkpoint);
                self.maybe_completed(&ev.deployment).await
            }
            RunnerReport::Failed { error } => {
                self.failed(&ev.deployment, error).await;
                self.touched(&ev.deployment);
                true
            }
            RunnerReport::Fenced => {
                if let Some(e) = self.entries.get_mut(&ev.deployment) {
                    e.restart = true;
                }
                false
            }
        }
    }

    /// A bounded run whose every partition committed its end is completed.
    /// In a cluster other brokers ran some partitions: the follower decides
    /// from the shared checkpoints instead.
    async fn maybe_completed(&mut self, name: &str) -> bool {
        if self.ctx.shared() {
            return false;
        }
        let prefix = kvkeys::checkpoint_prefix(name);
        let all_done = self
            .checkpoints
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .all(|(_, cp)| cp.done());
        all_done && self.complete(name).await
    }

    /// Records a running bounded run as completed; returns whether it was.
    pub(crate) async fn complete(&mut self, name: &str) -> bool {
        let Some(e) = self.entries.get_mut(name) else {
            return false;
        };
        if e.view.state != DeploymentState::Running {
            return false;
        }
        let finished = self.ctx.log.clock().now_ms();
        let mut view = e.view.clone();
        view.finished_ms = Some(finished);
        let Some(stored) = view.stored(DeploymentState::Completed) else {
            return false;
        };
        // In memory only once durable, so what status shows is what a
        // restart would show.
        let persisted = match stored.encode() {
            Ok(json) => {
                self.ctx
                    .persist(vec![(kvkeys::deployment(name), Some(json))])
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = persisted {
            tracing::error!(deployment = %name, error = %e, "cannot persist the completed state; it stays running until the next restart finds it done");
            return false;
        }
        if let Some(e) = self.entries.get_mut(name) {
            e.view.state = DeploymentState::Completed;
            e.view.finished_ms = Some(finished);
            e.changed = std::time::Instant::now();
        }
        tracing::info!(deployment = %name, "bounded run completed");
        true
    }

    /// The `fail` policy stopped one runner: stop the rest and record why.
    pub(crate) async fn failed(&mut self, name: &str, error: String) {
        let running = self
            .entries
            .get(name)
            .is_some_and(|e| e.view.state == DeploymentState::Running);
        if !running {
            return;
        }
        self.stop_runners(name).await;
        let state = DeploymentState::Failed(error);
        if let Some(e) = self.entries.get_mut(name) {
            // Failed in memory even if the write below fails: the runners
            // are stopped, and showing `running` would be a lie. A restart
            // before the write lands runs it again, and it fails again.
            e.view.state = state.clone();
        }
        if let Err(e) = self.persist_state(name, state).await {
            tracing::error!(deployment = %name, error = %e, "cannot persist the failed state");
        }
    }

    /// Writes `name`'s record with `state` (its other fields as they are).
    pub(crate) async fn persist_state(
        &self,
        name: &str,
        state: DeploymentState,
    ) -> Result<(), DetectorError> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| DetectorError::NotFound(name.to_string()))?;
        let stored = e
            .view
            .stored(state)
            .ok_or_else(|| corrupt_spec(name, &e.view))?;
        self.ctx
            .persist(vec![(kvkeys::deployment(name), Some(stored.encode()?))])
            .await
    }

    /// Stops a deployment's runners and waits for them; each commits on
    /// the way out, and its last commit becomes the partition's progress.
    pub(crate) async fn stop_runners(&mut self, name: &str) {
        let Some(e) = self.entries.get_mut(name) else {
            return;
        };
        if let Some(tx) = e.stop.take() {
            let _ = tx.send(true);
        }
        let tasks = std::mem::take(&mut e.tasks);
        e.running.clear();
        e.restart = false;
        for t in tasks {
            match t.await {
                Ok(exit) => {
                    self.checkpoints.insert(exit.key, exit.checkpoint);
                }
                // Its last report (if any) was applied; a panic in a runner
                // leaves the previous commit standing.
                Err(err) => {
                    tracing::error!(deployment = %name, error = %err, "a runner task ended abnormally")
                }
            }
        }
    }

    async fn stop_all(&mut self) {
        let names: Vec<String> = self.entries.keys().cloned().collect();
        for n in names {
            self.stop_runners(&n).await;
        }
    }

    /// A deployment's status as it is now.
    pub(crate) fn status_of(&self, name: &str) -> Result<DeploymentStatus, DetectorError> {
        self.entries
            .get(name)
            .map(|e| e.view.status())
            .ok_or_else(|| DetectorError::NotFound(name.to_string()))
    }
}

/// The error for a deployment whose record could not be read at open.
pub(crate) fn corrupt_spec(name: &str, view: &View) -> DetectorError {
    let why = match &view.state {
        DeploymentState::Failed(w) => w.clone(),
        _ => "it could not be loaded at open".to_string(),
    };
    DetectorError::Corrupt {
        key: kvkeys::deployment(name),
        message: why,
    }
}
