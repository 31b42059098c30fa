//! Starting a deployment's runners: which input partitions this broker can
//! run, and the checkpoint each starts from (committed, stored by another
//! broker of a cluster, or fresh from the spec's start position).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::watch;
use vigil_storage::kvkeys;

use super::budget;
use super::checkpoint::{Checkpoint, VersionSpan};
use super::context::Context;
use super::deployment::{version_statuses, Deployment, LiveStatus};
use super::rate::LivePartition;
use super::runner::{Reporter, Runner};
use super::spec::{DeploymentSpec, FailurePolicy, Kind, StartPosition};
use super::status::{DeploymentState, PartitionStatus};
use super::store::Version;
use super::supervisor::Supervisor;

use super::DetectorError;

/// One runnable input partition: topic, index, and the leader epochs of
/// the input and output partitions it was served at.
pub(crate) type RunKey = (String, i32, i32, i32);

/// An input partition this broker can run, with its topic and [`RunKey`].
pub(crate) type Runnable = (
    Arc<vigil_storage::Topic>,
    Arc<vigil_storage::Partition>,
    RunKey,
);

/// The input partitions of `spec` this broker can run now, each with its
/// [`RunKey`]: those whose input partition and output partitions it serves.
/// Co-location is the cluster placement's job (a deployment's input
/// partition and the alert partition it writes to are placed together), so
/// alerts are always appended locally and fenced by the same leadership.
pub(crate) fn runnable(
    ctx: &Context,
    spec: &DeploymentSpec,
    alerts: &vigil_storage::Topic,
    dlq: Option<&vigil_storage::Topic>,
) -> Result<Vec<Runnable>, DetectorError> {
    let mut out = Vec::new();
    for (t, p) in ctx.input_partitions(spec)? {
        let Some(a) = Context::output_partition(alerts, p.index) else {
            continue;
        };
        let dead = dlq.and_then(|d| Context::output_partition(d, p.index));
        let serving =
            p.is_serving() && a.is_serving() && dead.as_ref().is_none_or(|d| d.is_serving());
        if serving {
            let key = (t.name.clone(), p.index, p.leader_epoch(), a.leader_epoch());
            out.push((t, p, key));
        }
    }
    Ok(out)
}

/// Records in `cp` that module `d` scores from its offset on (a hot swap):
/// its state may be the previous module's, and is rebuilt from up to
/// `rebuild` earlier records if the new one declines it.
pub(crate) fn swapped(cp: &mut Checkpoint, d: &super::Deployment, rebuild: i64) {
    cp.module = d.spec.module.clone();
    let span = VersionSpan {
        module: d.spec.module.clone(),
        label: d.module.label(),
        from: cp.offset,
        state: None,
    };
    // Two swaps at the same offset: the first version scored nothing.
    if cp.versions.last().is_some_and(|v| v.from == cp.offset) {
        cp.versions.pop();
    }
    cp.versions.push(span);
    cp.swap_rebuild = Some(rebuild);
}

impl Supervisor {
    /// Starts one runner per input partition of `name` that this broker
    /// can run (it serves the input partition and the partitions the
    /// runner writes to; on a single broker, all of them), from its
    /// committed checkpoint, as a new run (epoch).
    pub(crate) async fn start(&mut self, name: &str) -> Result<(), DetectorError> {
        let (d, created_ms) = self
            .entries
            .get(name)
            .and_then(|e| Some((e.view.deployment.clone()?, e.view.created_ms)))
            .ok_or_else(|| DetectorError::NotFound(name.to_string()))?;
        let ctx = self.ctx.clone();
        let inputs = ctx.inputs(&d.spec)?;
        let alerts = ctx.ensure_topic(&d.spec.output, &inputs).await?;
        let dlq = match d.spec.on_failure {
            FailurePolicy::DeadLetter => Some(
                ctx.ensure_topic(&d.spec.dead_letter_topic(), &inputs)
                    .await?,
            ),
            _ => None,
        };
        // In a cluster the stored checkpoints are the truth (other brokers
        // ran these partitions before), read with the versions that fence
        // this run's commits.
        let stored = if ctx.shared() {
            self.stored_checkpoints(name).await?
        } else {
            HashMap::new()
        };
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let (stop_tx, stop_rx) = watch::channel(false);
        let live = (d.spec.kind == Kind::Replay).then(|| budget::LiveYield {
            writes: ctx.log.stats.client_writes.clone(),
            share: ctx.settings.replay_share_while_live(),
        });
        let throttle = budget::Throttle::new(&d.spec.budget.unwrap_or_default(), live);
        let mut statuses: Vec<LiveStatus> = Vec::new();
        let mut tasks = Vec::new();
        let mut running = BTreeSet::new();
        let mut covered = 0;
        for (t, p, run) in runnable(&ctx, &d.spec, &alerts, dlq.as_deref())? {
            let key = kvkeys::checkpoint(name, &t.name, p.index);
            let known = match stored.get(&key) {
                Some(found) => Some(found.clone()),
                None if ctx.shared() => None,
                None => self.checkpoints.get(&key).map(|cp| (cp.clone(), None)),
            };
            let (mut cp, version) = match known {
                Some(found) => found,
                None => {
                    let cp = self.fresh_checkpoint(&d, &p, created_ms, &alerts).await?;
                    if !ctx.shared() {
                        (cp, None)
                    } else {
                        // Stored before the runner writes anything, so a
                        // crash before its first commit restarts from the
                        // same alert watermark (its recovery scan must see
                        // whatever it wrote).
                        match ctx.records.commit(&key, cp.encode()?, None).await {
                            Ok(v) => (cp, v),
                            // Another broker created it first: the next
                            // round reads it.
                            Err(e) => {
                                tracing::debug!(deployment = %name, %key, error = %e, "checkpoint created elsewhere; not starting this partition now");
                                continue;
                            }
                        }
                    }
                }
            };
            if cp.module != d.spec.module {
                // The deployment was swapped while no runner here held this
                // partition: record the new version from where it stands.
                swapped(&mut cp, &d, self.swap_rebuild(name));
            }
            self.checkpoints.insert(key.clone(), cp.clone());
            let hw = cp.end.unwrap_or(i64::MAX).min(p.high_watermark());
            covered += cp.offset - cp.start;
            let status = Arc::new(parking_lot::Mutex::new(LivePartition {
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
            running.insert(run);
            if cp.done() {
                continue;
            }
            let (Some(alert_partition), dead_letters) = (
                Context::output_partition(&alerts, p.index),
                dlq.as_ref()
                    .and_then(|t| Context::output_partition(t, p.index)),
            ) else {
                continue;
            };
            let runner = Runner {
                log: ctx.log.clone(),
                store: ctx.store.clone(),
                records: ctx.records.clone(),
                deployment: d.clone(),
                pool: match d.spec.kind {
                    Kind::Replay => ctx.replay_pool.clone(),
                    _ => ctx.pool.clone(),
                },
                topic: t.name.clone(),
                input: p.clone(),
                alerts: alert_partition,
                dead_letters,
                status,
                checkpoint: cp,
                version,
                stop: stop_rx.clone(),
                report: Reporter {
                    tx: self.tx.clone(),
                    deployment: name.to_string(),
                    epoch,
                },
                suppress_through: i64::MIN,
                throttle: throttle.clone(),
                key,
                checkpoint_every: ctx.settings.checkpoint_every(),
                retry_backoff: ctx.settings.retry_backoff(),
                gated_inline: ctx.settings.gated_inline,
                gated_on_append: ctx.settings.gated_on_append,
                tail_linger: ctx.settings.tail_linger(),
            };
            tasks.push(tokio::spawn(runner.run()));
        }
        let Some(e) = self.entries.get_mut(name) else {
            return Err(DetectorError::NotFound(name.to_string()));
        };
        e.view.started = (std::time::Instant::now(), covered);
        // A bounded run with every partition at its end starts no runner.
        // In a cluster other brokers may still be running theirs.
        let nothing_to_run = tasks.is_empty() && d.spec.end.is_some() && !ctx.shared();
        e.view.partitions = statuses;
        e.stop = Some(stop_tx);
        e.tasks = tasks;
        e.epoch = epoch;
        e.running = running;
        if nothing_to_run {
            self.completed_without_runners(name).await;
        }
        Ok(())
    }

    /// A bounded run found at its end when it starts (an empty range, or a
    /// restart after the last checkpoint but before the completion was
    /// recorded) completes like one whose runners finished: with its
    /// finish time recorded and persisted, so status does not count the
    /// elapsed time on from "now" and a restart shows the same.
    async fn completed_without_runners(&mut self, name: &str) {
        if self.complete(name).await {
            return;
        }
        // Already completed (its stored finish time stays), or the record
        // could not be written: completed in memory, as the checkpoints
        // say, and a restart derives it again.
        let now = self.ctx.log.clock().now_ms();
        if let Some(e) = self.entries.get_mut(name) {
            if !matches!(
                e.view.state,
                DeploymentState::Running | DeploymentState::Completed
            ) {
                return;
            }
            e.view.state = DeploymentState::Completed;
            e.view.finished_ms.get_or_insert(now);
        }
    }

    /// The checkpoint of a partition no run has covered yet: the spec's
    /// start position, resolved now on this partition's leader. `latest`
    /// means the deployment's creation time, so a partition first run
    /// after a move or on another broker starts where it would have at
    /// deploy.
    async fn fresh_checkpoint(
        &self,
        d: &Deployment,
        p: &vigil_storage::Partition,
        created_ms: i64,
        alerts: &vigil_storage::Topic,
    ) -> Result<Checkpoint, DetectorError> {
        let at_creation = |pos: StartPosition| match pos {
            StartPosition::Latest if self.ctx.shared() => StartPosition::Timestamp(created_ms),
            pos => pos,
        };
        let start = self.ctx.start_offset(p, at_creation(d.spec.start)).await?;
        let end = match d.spec.end {
            Some(e) => Some(self.ctx.start_offset(p, at_creation(e)).await?.max(start)),
            None => None,
        };
        let alert_hw = Context::output_partition(alerts, p.index).map_or(0, |a| a.high_watermark());
        Ok(Checkpoint::new(
            start,
            alert_hw,
            &d.spec.module,
            d.module.label(),
            end,
        ))
    }

    /// The stored checkpoints of `name` with their versions (a cluster).
    pub(crate) async fn stored_checkpoints(
        &self,
        name: &str,
    ) -> Result<HashMap<String, (Checkpoint, Version)>, DetectorError> {
        let mut out = HashMap::new();
        for r in self
            .ctx
            .records
            .list(&kvkeys::checkpoint_prefix(name))
            .await?
        {
            let cp = Checkpoint::decode(&r.key, &r.value)?;
            out.insert(r.key, (cp, r.version));
        }
        Ok(out)
    }

    /// How many records a lazily applied swap re-warms.
    fn swap_rebuild(&self, name: &str) -> i64 {
        self.entries
            .get(name)
            .and_then(|e| e.view.swap_rebuild)
            .unwrap_or(0)
    }
}
