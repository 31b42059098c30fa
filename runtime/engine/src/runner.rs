//! One runner per (deployment, input partition): waits for new records,
//! hands them to the module one batch at a time, appends the alerts, applies
//! the failure policy and commits checkpoints.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use bytes::Bytes;
use object_store::ObjectStore;
use tokio::sync::{mpsc, watch};
use vigil_host::{BuiltBatch, Instance};
use vigil_storage::{Log, Partition, StorageError};

use super::batch::{last_offset_in, process, BatchFailure};
use super::checkpoint::{self, Checkpoint};
use super::output::{self, DeadLetter, Provenance};
use super::spec::FailurePolicy;
use super::store::{CommitError, DeploymentStore, Version};
use super::supervisor::Msg;
use super::Deployment;

mod call;
mod gate;
mod lend;
mod linger;
mod settle;
mod write;

/// What a runner reports to the supervisor, tagged with the run it belongs
/// to: a report from runners the supervisor has since stopped (an older
/// `epoch`) is stale and ignored.
#[derive(Debug)]
pub(crate) struct RunnerEvent {
    pub(crate) deployment: String,
    pub(crate) epoch: u64,
    pub(crate) report: RunnerReport,
}

/// What happened in a runner.
#[derive(Debug)]
pub(crate) enum RunnerReport {
    /// A checkpoint was committed (durable) under `key`.
    Committed { key: String, checkpoint: Checkpoint },
    /// A bounded run covered its whole range on one partition, committed
    /// as `checkpoint`.
    Finished { key: String, checkpoint: Checkpoint },
    /// The `fail` policy stopped the deployment.
    Failed { error: String },
    /// The checkpoint was written elsewhere (a cluster: another broker
    /// leads the partition now, or a command there rewrote it); this
    /// runner stopped without committing.
    Fenced,
}

/// A runner's one route to the supervisor.
pub(crate) struct Reporter {
    pub(crate) tx: mpsc::UnboundedSender<Msg>,
    pub(crate) deployment: String,
    pub(crate) epoch: u64,
}

impl Reporter {
    fn send(&self, report: RunnerReport) {
        // The supervisor gone means the engine closed; nobody is listening.
        let _ = self.tx.send(Msg::Runner(RunnerEvent {
            deployment: self.deployment.clone(),
            epoch: self.epoch,
            report,
        }));
    }
}

/// What a runner leaves behind: its last committed checkpoint, which the
/// supervisor takes as the partition's progress when it stops the runner
/// (reports still queued behind the stop are stale by then).
pub(crate) struct RunnerExit {
    pub(crate) key: String,
    pub(crate) checkpoint: Checkpoint,
}

/// Everything one runner needs.
pub(crate) struct Runner {
    pub log: Arc<Log>,
    pub store: Arc<dyn ObjectStore>,
    /// Where the checkpoint is committed.
    pub records: Arc<dyn DeploymentStore>,
    pub deployment: Arc<Deployment>,
    pub pool: Arc<vigil_storage::pool::ThreadPool>,
    pub topic: String,
    pub input: Arc<Partition>,
    pub alerts: Arc<Partition>,
    pub dead_letters: Option<Arc<Partition>>,
    pub status: Arc<parking_lot::Mutex<crate::rate::LivePartition>>,
    pub checkpoint: Checkpoint,
    /// The stored version of `checkpoint`: commits are fenced on it.
    pub version: Version,
    pub stop: watch::Receiver<bool>,
    pub report: Reporter,
    /// Alerts with source offsets up to here are already in the alert topic.
    pub suppress_through: i64,
    /// The deployment's CPU/IO budget, shared with its other runners.
    pub throttle: Option<Arc<super::budget::Throttle>>,
    /// Key of this partition's checkpoint.
    pub key: String,
    /// How often progress is committed.
    pub checkpoint_every: Duration,
    /// How long to wait before retrying a failed read or write.
    pub retry_backoff: Duration,
    /// Whether gated calls may run on the runner's own task (`call.rs`).
    pub gated_inline: bool,
    /// Whether a gated runner lends its detector to the appending task
    /// (`lend.rs`).
    pub gated_on_append: bool,
    /// How long an ungated live runner lets a busy tail accumulate
    /// (`linger.rs`).
    pub tail_linger: Duration,
}

/// Why a runner stopped early.
enum Stop {
    /// Shutdown, pause or undeploy.
    Requested,
    /// The `fail` policy, with the error.
    Failed(String),
}

impl Runner {
    fn provenance(&self) -> Provenance<'_> {
        Provenance {
            deployment: &self.deployment.spec.name,
            module: &self.deployment.module.hash,
            topic: &self.topic,
            partition: self.input.index,
            principal: self.deployment.spec.principal.as_deref(),
        }
    }

    fn note_error(&self, e: &str) {
        self.status.lock().last_error = Some(e.to_string());
    }

    /// Runs until stopped; reports the end of a bounded run and a
    /// `fail`-policy stop to the supervisor, and returns the last commit.
    pub(crate) async fn run(mut self) -> RunnerExit {
        let name = self.deployment.spec.name.clone();
        match self.run_inner().await {
            Ok(()) if self.checkpoint.done() => {
                self.report.send(RunnerReport::Finished {
                    key: self.key.clone(),
                    checkpoint: self.checkpoint.clone(),
                });
            }
            Ok(()) | Err(Stop::Requested) => {}
            Err(Stop::Failed(error)) => {
                tracing::warn!(deployment = %name, topic = %self.topic, partition = self.input.index, %error, "deployment failed");
                self.note_error(&error);
                self.report.send(RunnerReport::Failed { error });
            }
        }
        RunnerExit {
            key: self.key,
            checkpoint: self.checkpoint,
        }
    }

    async fn stopped(stop: &mut watch::Receiver<bool>) {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                return;
            }
        }
    }

    /// Sleeps unless asked to stop first.
    /// Rests `d` that the deployment's budget asks for, counted in status.
    async fn rest_for_budget(&self, d: Duration) -> Result<(), Stop> {
        if d.is_zero() {
            return Ok(());
        }
        self.status.lock().throttled_rest += d;
        self.pause(d).await
    }

    async fn pause(&self, d: Duration) -> Result<(), Stop> {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = Self::stopped(&mut stop) => Err(Stop::Requested),
        }
    }

    /// A fresh instance with `state` restored into it. Returns whether the
    /// state was restored; after a hot swap (`declinable`) a restore error
    /// means "rebuild" rather than a failure.
    async fn instantiate(
        &self,
        state: Option<&str>,
        declinable: bool,
    ) -> Result<(Instance, bool), Stop> {
        let d = self.deployment.clone();
        let label = format!("{}/{}-{}", d.spec.name, self.topic, self.input.index);
        let config = d.spec.config.to_string();
        let mut instance = self
            .pool
            .run(move || d.module.instantiate(&d.spec.limits, &config, &label))
            .await
            .map_err(|e| Stop::Failed(format!("instantiation task failed: {e}")))?
            .map_err(|e| Stop::Failed(format!("cannot start the module: {e}")))?;
        if let Some(key) = state {
            let bytes = loop {
                match checkpoint::get_state(&self.store, key).await {
                    Ok(b) => break b,
                    Err(e) => {
                        // The state is needed for correct output; wait for
                        // the store rather than starting from nothing.
                        self.note_error(&e.to_string());
                        self.pause(self.retry_backoff).await?;
                    }
                }
            };
            let (inst, restored) = self
                .pool
                .run(move || {
                    let r = instance.restore(&bytes);
                    (instance, r)
                })
                .await
                .map_err(|e| Stop::Failed(format!("restore task failed: {e}")))?;
            instance = inst;
            return match restored {
                Ok(true) => Ok((instance, true)),
                Ok(false) => {
                    tracing::info!(state = %key, "module declined the state; starting fresh");
                    Ok((instance, false))
                }
                Err(e) if declinable => {
                    tracing::info!(state = %key, error = %e, "new module version cannot read the previous version's state; rebuilding");
                    // The failed restore may have left partial state behind.
                    let (fresh, _) = Box::pin(self.instantiate(None, false)).await?;
                    Ok((fresh, false))
                }
                Err(e) => Err(Stop::Failed(format!("restoring state {key}: {e}"))),
            };
        }
        Ok((instance, false))
    }

    async fn run_inner(&mut self) -> Result<(), Stop> {
        let swap = self.checkpoint.swap_rebuild;
        let (first, restored) = self
            .instantiate(self.checkpoint.state.clone().as_deref(), swap.is_some())
            .await?;
        let mut instance = Some(first);
        let prov_suppress = {
            let p = self.provenance();
            checkpoint::emitted_through(&self.log, &self.alerts, self.checkpoint.alert_hw, &p)
                .await
                .map_err(|e| Stop::Failed(format!("recovery scan of the alert topic: {e}")))?
        };
        // Written after the checkpoint, so not in its count either.
        self.status.lock().alerts += prov_suppress.count;
        let suppress_through = prov_suppress
            .through
            .into_iter()
            .chain(self.checkpoint.alerted_through)
            .max()
            .unwrap_or(i64::MIN);
        self.suppress_through = suppress_through;
        let mut next = self.checkpoint.offset;
        if let (Some(rebuild), false) = (swap, restored) {
            // The new version starts without state: re-warm it on the input
            // just before the swap point; those records were scored by the
            // previous version, so their alerts are suppressed.
            let from = (next - rebuild).max(self.input.log_start_offset());
            self.suppress_through = self.suppress_through.max(next - 1);
            tracing::info!(deployment = %self.deployment.spec.name, topic = %self.topic, partition = self.input.index, from, to = next, "rebuilding detector state after a hot swap");
            next = from;
        }
        if let Some(rebuild) = swap {
            let how = match (restored, rebuild) {
                (true, _) => "carried over".to_string(),
                (false, 0) => "started empty".to_string(),
                (false, n) => format!(
                    "rebuilt from up to {n} records before {}",
                    self.checkpoint.offset
                ),
            };
            if let Some(v) = self.checkpoint.versions.last_mut() {
                v.state = Some(how);
            }
            self.status.lock().versions = super::deployment::version_statuses(&self.checkpoint);
        }
        if let Some(t) = prov_suppress.through {
            tracing::info!(deployment = %self.deployment.spec.name, topic = %self.topic, partition = self.input.index, from = self.checkpoint.offset, through = t, "re-processing input already alerted on; its alerts are suppressed");
        }
        let end = self.checkpoint.end.unwrap_or(i64::MAX);
        let mut last_commit = Instant::now();
        let mut hw_rx = self.input.watch_high_watermark();
        let budget = self.deployment.spec.ack_budget();
        let mut gated: Option<gate::Gated> = None;
        let mut place = call::Placement::new(self.gated_inline);
        // Bounded runs (replays) read history and never linger; with no
        // linger set a read costs nothing extra.
        let mut linger = (self.checkpoint.end.is_none() && !self.tail_linger.is_zero())
            .then(|| linger::TailLinger::new(self.tail_linger));
        // Set when the gate was dropped for falling behind; cleared once
        // the runner reaches the log end again.
        let mut behind = false;
        loop {
            if *self.stop.borrow() {
                break;
            }
            let hw = (*hw_rx.borrow_and_update()).min(end);
            if next >= end {
                break;
            }
            // Gated, the runner reads ahead of durability up to the log end.
            let readable = match &mut gated {
                Some(g) => {
                    g.seen();
                    self.input.log_end_offset().min(end)
                }
                None => hw,
            };
            {
                let mut s = self.status.lock();
                s.offset = next;
                s.high_watermark = hw;
                s.lag = (hw - next).max(0);
                s.ack_gate = gated.is_some();
            }
            if next >= readable {
                behind = behind && next < self.input.log_end_offset();
                if let (None, Some(budget), false) = (&gated, budget, behind) {
                    // Caught up: from here on producers' acknowledgements
                    // wait for this runner's alerts, up to the budget.
                    // Only a runner whose calls run inline is quick enough
                    // for the WAL writer to wait for its alerts.
                    gated = Some(gate::Gated::open(
                        &self.log,
                        &self.input,
                        next,
                        budget,
                        !place.demoted(),
                    ));
                    continue;
                }
                if last_commit.elapsed() >= self.checkpoint_every && self.committable(next) {
                    self.commit(&mut instance, next).await?;
                    last_commit = Instant::now();
                }
                if let (Some(g), true) = (&gated, self.may_lend(&place)) {
                    // Until the next checkpoint; with one overdue (records
                    // not yet durable, or nothing new), a whole interval.
                    let now = Instant::now();
                    let due = Some(last_commit + self.checkpoint_every)
                        .filter(|d| *d > now)
                        .unwrap_or(now + self.checkpoint_every);
                    // A stop breaks out as the wait below does, also when
                    // the supervisor is gone without saying so.
                    if self
                        .lend(&mut instance, &mut next, g, &mut place, due)
                        .await?
                    {
                        break;
                    }
                    continue;
                }
                let ungated = gated.is_none();
                tokio::select! {
                    r = hw_rx.changed() => {
                        if r.is_err() {
                            break;
                        }
                        if let (true, Some(l)) = (ungated, linger.as_mut()) {
                            l.woke();
                        }
                    }
                    _ = gate::appended(&mut gated) => {}
                    _ = Self::stopped(&mut self.stop) => break,
                    _ = tokio::time::sleep(self.checkpoint_every) => {}
                }
                continue;
            }
            let wait = linger
                .as_mut()
                .map_or(Duration::ZERO, |l| l.before_read(Instant::now()));
            if !wait.is_zero() {
                // A stop while lingering still commits the progress made.
                if self.pause(wait).await.is_err() {
                    break;
                }
                continue;
            }
            let _slot = match &self.throttle {
                Some(t) => t.slot().await,
                None => None,
            };
            let max_bytes = self
                .throttle
                .as_ref()
                .map_or(self.deployment.spec.max_batch_bytes, |t| {
                    t.read_cap(self.deployment.spec.max_batch_bytes)
                });
            let fetched = match self.read_input(gated.is_some(), next, max_bytes).await {
                Ok(f) => f,
                Err(StorageError::OffsetOutOfRange { start, .. }) if next < start => {
                    tracing::warn!(deployment = %self.deployment.spec.name, topic = %self.topic, partition = self.input.index, from = next, to = start, "input was deleted by retention before it was processed; skipping ahead");
                    next = start;
                    continue;
                }
                Err(e) => {
                    self.note_error(&format!("reading input: {e}"));
                    self.pause(self.retry_backoff).await?;
                    continue;
                }
            };
            let Some(wire_end) = last_offset_in(&fetched.records) else {
                // Below the high watermark a read returns at least one
                // batch; if it ever does not, wait rather than skip input.
                self.pause(Duration::from_millis(10)).await?;
                continue;
            };
            if let Some(t) = &self.throttle {
                self.rest_for_budget(t.pay(fetched.records.len())).await?;
            }
            let wire_end = wire_end.min(end - 1);
            let inst = instance.take();
            let wire = fetched.records.clone();
            let from = next;
            let ((inst, built, result), busy) = self
                .call(&mut place, gated.is_some(), inst, wire, from, end)
                .await?;
            instance = inst;
            if let (Some(g), true) = (&gated, place.demoted()) {
                g.gate.release_groups();
            }
            let gate = gated.as_ref().map(|g| &*g.gate);
            next = self
                .settle(&mut instance, built.as_ref(), result, from, wire_end, gate)
                .await?;
            if let Some(g) = &gated {
                g.gate.advance(next);
                if next < readable {
                    // One read did not reach the log end: behind, the
                    // runner would only make acknowledgements wait.
                    gated = None;
                    behind = true;
                }
            }
            settle::note_progress(&self.status, next, built.as_ref());
            drop(_slot);
            if let Some(t) = &self.throttle {
                self.rest_for_budget(t.rest(busy)).await?;
            }
            if (last_commit.elapsed() >= self.checkpoint_every || next >= end)
                && self.committable(next)
            {
                self.commit(&mut instance, next).await?;
                last_commit = Instant::now();
            }
        }
        self.status.lock().ack_gate = false;
        if gated.take().is_some() && next > self.input.high_watermark() {
            // Stopping with records processed ahead of durability: commit
            // them if they land soon, else the last checkpoint stands and a
            // restart re-processes them (their alerts suppressed if written).
            let _ = tokio::time::timeout(self.retry_backoff, hw_rx.wait_for(|h| *h >= next)).await;
        }
        if self.committable(next) {
            self.commit(&mut instance, next).await?;
        }
        // A bounded run is only finished once its end is committed; a
        // failed commit (store down) is retried rather than left behind.
        while next >= end && self.checkpoint.offset < next {
            self.pause(self.retry_backoff).await?;
            self.commit(&mut instance, next).await?;
        }
        Ok(())
    }

    /// Snapshots the detector and commits `next` with it.
    async fn commit(&mut self, instance: &mut Option<Instance>, next: i64) -> Result<(), Stop> {
        let Some(inst) = instance.take() else {
            return Ok(());
        };
        let (inst, snap) = self
            .pool
            .run(move || {
                let mut inst = inst;
                let r = inst.snapshot();
                (inst, r)
            })
            .await
            .map_err(|e| Stop::Failed(format!("snapshot task failed: {e}")))?;
        *instance = Some(inst);
        let name = &self.deployment.spec.name;
        let state = match snap {
            Ok(Some(bytes)) => Some(
                match checkpoint::put_state(&self.store, name, &self.input, next, bytes).await {
                    Ok(k) => k,
                    Err(e) => {
                        // Retried at the next commit; progress is only delayed.
                        self.note_error(&e.to_string());
                        return Ok(());
                    }
                },
            ),
            Ok(None) => None,
            Err(e) => {
                self.note_error(&format!("snapshot: {e}"));
                return Ok(());
            }
        };
        let (records, alerts) = {
            let s = self.status.lock();
            (s.records, s.alerts)
        };
        let cp = Checkpoint {
            offset: next,
            alert_hw: self.alerts.high_watermark(),
            state,
            module: self.deployment.module.hash.clone(),
            alerted_through: (self.suppress_through >= next).then_some(self.suppress_through),
            records,
            alerts,
            swap_rebuild: None,
            ..self.checkpoint.clone()
        };
        let json = match cp.encode() {
            Ok(j) => j,
            // A checkpoint that cannot be encoded is a bug; committing
            // nothing is safe (the previous one stands), so say so and go on.
            Err(e) => {
                self.note_error(&e.to_string());
                return Ok(());
            }
        };
        match self.records.commit(&self.key, json, self.version).await {
            Ok(v) => self.version = v,
            Err(CommitError::Fenced { key }) => {
                tracing::info!(deployment = %name, %key, "checkpoint written elsewhere; this runner stops");
                if self.records.shared() {
                    self.report.send(RunnerReport::Fenced);
                }
                return Err(Stop::Requested);
            }
            Err(CommitError::Failed(e)) => {
                self.note_error(&format!("committing checkpoint: {e}"));
                return Ok(());
            }
        }
        if let Some(old) = &self.checkpoint.state {
            if cp.state.as_ref() != Some(old) {
                checkpoint::delete_state(&self.store, old).await;
            }
        }
        self.status.lock().committed_offset = next;
        self.report.send(RunnerReport::Committed {
            key: self.key.clone(),
            checkpoint: cp.clone(),
        });
        self.checkpoint = cp;
        Ok(())
    }
}
