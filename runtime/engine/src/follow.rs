//! A cluster's deployments: every broker follows the shared records (any
//! broker's admin API may have changed them) and runs the partitions it
//! leads. The follower task lists the records and loads the modules they
//! name (slow, so not in the supervisor); the supervisor applies what
//! changed (`sync`) and restarts runners whose partitions moved (`settle`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use vigil_storage::kvkeys;

use super::checkpoint::Checkpoint;
use super::deployment::{version_statuses, Deployment, Stored, View};
use super::registry::Registry;
use super::spec::FailurePolicy;
use super::start::runnable;
use super::status::{DeploymentState, PartitionStatus};
use super::store::DeploymentStore;
use super::supervisor::{Command, Entry, Msg, Snapshot, Supervisor};
use super::DetectorError;

/// How often a broker of a cluster reads the shared records.
const TICK: Duration = Duration::from_millis(1000);

/// The shared records as listed at one moment.
pub(crate) struct Listing {
    /// Taken before the list request: a local command applied after this
    /// is newer than anything in the listing.
    listed_at: Instant,
    /// Deployment records by name.
    records: HashMap<String, Stored>,
    /// Deployments whose spec names a module the follower loaded.
    loaded: HashMap<String, Arc<Deployment>>,
    /// Every checkpoint, by key.
    checkpoints: HashMap<String, Checkpoint>,
}

/// Lists the shared records every [`TICK`] and hands them to the
/// supervisor, until the engine closes.
pub(crate) async fn follow(
    records: Arc<dyn DeploymentStore>,
    registry: Arc<Registry>,
    snapshot: watch::Receiver<Snapshot>,
    tx: mpsc::UnboundedSender<Msg>,
) {
    loop {
        match list(&*records, &registry, &snapshot).await {
            Ok(listing) => {
                let (reply, done) = oneshot::channel();
                if tx
                    .send(Msg::Command(Command::Sync { listing, reply }))
                    .is_err()
                {
                    return;
                }
                if done.await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the cluster's deployments; retrying"),
        }
        tokio::time::sleep(TICK).await;
        if tx.is_closed() {
            return;
        }
    }
}

async fn list(
    records: &dyn DeploymentStore,
    registry: &Registry,
    snapshot: &watch::Receiver<Snapshot>,
) -> Result<Listing, DetectorError> {
    let listed_at = Instant::now();
    let mut out = Listing {
        listed_at,
        records: HashMap::new(),
        loaded: HashMap::new(),
        checkpoints: HashMap::new(),
    };
    for r in records.list(kvkeys::deployments_prefix()).await? {
        let Some(name) = kvkeys::parse_deployment(&r.key) else {
            continue;
        };
        match Stored::decode(&r.key, &r.value) {
            Ok(s) => {
                out.records.insert(name.to_string(), s);
            }
            Err(e) => {
                tracing::warn!(deployment = %name, error = %e, "unreadable shared deployment record; skipped")
            }
        }
    }
    for r in records.list(kvkeys::checkpoints_prefix()).await? {
        match Checkpoint::decode(&r.key, &r.value) {
            Ok(cp) => {
                out.checkpoints.insert(r.key, cp);
            }
            Err(e) => tracing::warn!(error = %e, "unreadable shared checkpoint; skipped"),
        }
    }
    let known = snapshot.borrow().clone();
    for (name, s) in &out.records {
        let current = known.get(name).and_then(|v| v.deployment.clone());
        // Specs compare by their JSON: the module is the expensive part, and
        // an unchanged spec keeps the compiled deployment.
        let same = |d: &Arc<Deployment>| {
            serde_json::to_string(&d.spec).ok() == serde_json::to_string(&s.spec).ok()
        };
        if let Some(d) = current.filter(same) {
            out.loaded.insert(name.clone(), d);
            continue;
        }
        match super::load_one(registry, s).await {
            Ok(d) => {
                out.loaded.insert(name.clone(), d);
            }
            Err(e) => {
                tracing::warn!(deployment = %name, error = %e, "cannot load a shared deployment's module")
            }
        }
    }
    Ok(out)
}

impl Supervisor {
    /// Applies what other brokers changed in the shared records.
    pub(crate) async fn sync(&mut self, listing: Listing) {
        let Listing {
            listed_at,
            records,
            loaded,
            checkpoints,
        } = listing;
        self.removed.retain(|_, at| *at > listed_at);
        for (name, stored) in &records {
            if self.removed.contains_key(name) {
                continue;
            }
            let current = self.entries.get(name).map(|e| {
                (
                    e.changed > listed_at,
                    e.view
                        .stored(e.view.state.clone())
                        .and_then(|s| s.encode().ok()),
                )
            });
            match current {
                // Changed here since the listing: the listing is stale.
                Some((true, _)) => continue,
                Some((false, mine)) if mine == stored.encode().ok() => continue,
                _ => {}
            }
            let Some(d) = loaded.get(name) else {
                continue;
            };
            self.stop_runners(name).await;
            let partitions = self
                .entries
                .remove(name)
                .map(|e| e.view.partitions)
                .unwrap_or_default();
            let mut entry = Entry::new(View {
                partitions,
                ..View::from_stored(d.clone(), stored)
            });
            entry.changed = listed_at;
            self.entries.insert(name.clone(), entry);
            tracing::info!(deployment = %name, state = ?stored.state, "following a deployment changed on another broker");
        }
        let gone: Vec<String> = self
            .entries
            .iter()
            .filter(|(n, e)| !records.contains_key(*n) && e.changed < listed_at)
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            self.stop_runners(&name).await;
            self.entries.remove(&name);
            let prefix = kvkeys::checkpoint_prefix(&name);
            self.checkpoints.retain(|k, _| !k.starts_with(&prefix));
            tracing::info!(deployment = %name, "deployment removed on another broker; stopped here");
        }
        self.completed_elsewhere(&checkpoints).await;
        self.show_remote(&checkpoints);
    }

    /// Bounded runs whose every input partition committed its end, on
    /// whichever brokers ran them, are completed.
    async fn completed_elsewhere(&mut self, checkpoints: &HashMap<String, Checkpoint>) {
        let candidates: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.view.state == DeploymentState::Running)
            .filter_map(|(n, e)| Some((n, e.view.deployment.as_ref()?)))
            .filter(|(_, d)| d.spec.end.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        for name in candidates {
            let Some(spec) = self.entries[&name].view.spec().cloned() else {
                continue;
            };
            let Ok(inputs) = self.ctx.input_partitions(&spec) else {
                continue;
            };
            let done = inputs.iter().all(|(t, p)| {
                checkpoints
                    .get(&kvkeys::checkpoint(&name, &t.name, p.index))
                    .is_some_and(Checkpoint::done)
            });
            if done {
                self.complete(&name).await;
            }
        }
    }

    /// Shows every partition as last committed in the cluster; status
    /// lists a partition this broker also shows live once
    /// (`View::status`).
    fn show_remote(&mut self, checkpoints: &HashMap<String, Checkpoint>) {
        for (name, e) in self.entries.iter_mut() {
            let mut remote: Vec<PartitionStatus> = checkpoints
                .iter()
                .filter_map(|(k, cp)| {
                    let (topic, p) = kvkeys::checkpoint_input(name, k)?.rsplit_once('/')?;
                    let partition: i32 = p.parse().ok()?;
                    Some(PartitionStatus {
                        topic: topic.to_string(),
                        partition,
                        offset: cp.offset,
                        committed_offset: cp.offset,
                        high_watermark: cp.offset,
                        records: cp.records,
                        alerts: cp.alerts,
                        start: cp.start,
                        end: cp.end,
                        versions: version_statuses(cp),
                        ..Default::default()
                    })
                })
                .collect();
            remote.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            e.view.remote = Arc::new(remote);
        }
    }

    /// Restarts the runners of running deployments whose runnable
    /// partitions differ from what their runners cover.
    pub(crate) async fn settle(&mut self) {
        let names: Vec<String> = self.entries.keys().cloned().collect();
        for name in names {
            let Some(e) = self.entries.get(&name) else {
                continue;
            };
            let Some(d) = e.view.deployment.clone() else {
                continue;
            };
            if e.view.state != DeploymentState::Running || !e.corrupt.is_empty() {
                continue;
            }
            let now: Option<BTreeSet<_>> = match self.ctx.log.topic(&d.spec.output) {
                Some(alerts) => {
                    let dlq = (d.spec.on_failure == FailurePolicy::DeadLetter)
                        .then(|| self.ctx.log.topic(&d.spec.dead_letter_topic()))
                        .flatten();
                    runnable(&self.ctx, &d.spec, &alerts, dlq.as_deref())
                        .ok()
                        .map(|r| r.into_iter().map(|(_, _, k)| k).collect())
                }
                None => None,
            };
            let stale = e.stop.is_none() || e.restart || now.as_ref() != Some(&e.running);
            if !stale {
                continue;
            }
            self.stop_runners(&name).await;
            if let Err(err) = self.start(&name).await {
                tracing::warn!(deployment = %name, error = %err, "cannot start the partitions this broker leads; retrying");
            }
        }
    }
}
