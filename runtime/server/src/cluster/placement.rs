//! The placement loop: every node computes the same balanced assignment of
//! partitions to live nodes (vigil-coord `placement::assign`, which keeps
//! current leaders where balance allows) and acts for itself only:
//!
//! - a vacant partition assigned to it: acquire it from the coordinator
//!   (the dead leader's session has expired), then in the log, which
//!   recovers what the dead leader acknowledged from its WAL objects;
//! - a partition it leads that is assigned elsewhere (a node joined, or an
//!   operator moved it): hand it over cleanly: stop serving, drain and
//!   upload (`Log::release_partition`), then transfer the leadership;
//! - a partition the coordinator says it leads (transferred to it) that
//!   its log does not serve yet: wait until the session confirms the
//!   leadership, then acquire it in the log at that epoch;
//! - a partition its log serves but another node leads: stop serving.
//!
//! A draining node (SIGTERM) hands every partition to the others first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use vigil_coord::{placement, CoordError, Leader, NodeId, TopicPartition};
use vigil_storage::StorageError;

use vigil_api::Movement;

use super::Cluster;

/// How often the loop runs without a membership or leadership change.
const TICK: Duration = Duration::from_millis(500);

impl Cluster {
    /// Runs the placement loop and the catalog follower until `shutdown`.
    pub fn spawn(
        self: &Arc<Self>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let catalog = tokio::spawn(super::catalog::follow(
            self.coord.clone(),
            self.log.clone(),
            shutdown.clone(),
        ));
        let me = self.clone();
        let mut stop = shutdown;
        let placement = tokio::spawn(async move {
            loop {
                if let Err(e) = me.reconcile().await {
                    tracing::warn!(error = %e, "placement round failed; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(TICK) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
        vec![catalog, placement]
    }

    /// The partitions of every topic in the log.
    fn partitions(&self) -> Vec<TopicPartition> {
        self.log
            .topics()
            .iter()
            .flat_map(|t| {
                (0..t.partitions.len() as i32).map(|p| TopicPartition::new(t.name.clone(), p))
            })
            .collect()
    }

    /// Partitions that must share a node: each detector deployment's
    /// input partition `i` and the output partition `i % n` its runner
    /// appends to, so alerts are written under the leadership that reads
    /// the input (and fenced with it).
    fn links(&self) -> Vec<(TopicPartition, TopicPartition)> {
        let pairs = match self.detectors.read().as_ref() {
            Some(d) => d.colocated(),
            None => return Vec::new(),
        };
        let mut out = Vec::new();
        for (input, output) in pairs {
            let (Some(i), Some(o)) = (self.log.topic(&input), self.log.topic(&output)) else {
                continue;
            };
            let n = o.partitions.len() as i32;
            if n == 0 {
                continue;
            }
            for p in 0..i.partitions.len() as i32 {
                out.push((
                    TopicPartition::new(input.clone(), p),
                    TopicPartition::new(output.clone(), p % n),
                ));
            }
        }
        out
    }

    /// One round: refresh the view, then act on this node's differences
    /// from the assignment.
    pub(super) async fn reconcile(&self) -> Result<(), CoordError> {
        if self.session().is_lost() {
            self.rejoin().await?;
        }
        self.refresh().await?;
        let (nodes, leaders) = {
            let v = self.view.read();
            let nodes: Vec<NodeId> = v.members.keys().copied().collect();
            (nodes, v.leaders.clone())
        };
        let current: BTreeMap<TopicPartition, NodeId> =
            leaders.iter().map(|(tp, l)| (tp.clone(), l.node)).collect();
        let partitions = self.partitions();
        let links = self.links();
        let mut target = placement::assign_linked(&nodes, &partitions, &links, &current);
        let requested = self.requested_moves().await;
        // A requested move takes the partitions linked to it along.
        let groups = placement::groups(&partitions, &links);
        for (tp, to) in &requested {
            let Some(rep) = groups.get(tp) else {
                continue;
            };
            for (member, r) in &groups {
                if r == rep {
                    target.insert(member.clone(), *to);
                }
            }
        }
        let me = self.node_id();
        for (tp, to) in target {
            let res = match leaders.get(&tp) {
                None if to == me => self.take(&tp).await,
                None => Ok(()),
                Some(l) if l.node == me && to != me => {
                    let reason = if requested.contains_key(&tp) {
                        "manual"
                    } else {
                        "rebalance"
                    };
                    self.hand_over(l, to, reason).await
                }
                Some(l) if l.node == me => self.serve(l).await,
                Some(_) => {
                    self.stop_serving(&tp).await;
                    Ok(())
                }
            };
            if let Err(e) = res {
                tracing::warn!(partition = %tp, error = %e, "placement could not act on a partition");
            }
        }
        Ok(())
    }

    /// Acquires a vacant partition.
    async fn take(&self, tp: &TopicPartition) -> Result<(), CoordError> {
        let leader = match self.coord.acquire(&self.session(), tp).await {
            Ok(l) => l,
            // Someone else was quicker: the next round sees it.
            Err(CoordError::HeldElsewhere { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.view.write().leaders.insert(tp.clone(), leader.clone());
        self.serve(&leader).await
    }

    /// Serves a partition this node leads at `l.epoch`, once the session
    /// confirms it (a forced takeover first waits out the old leader).
    async fn serve(&self, l: &Leader) -> Result<(), CoordError> {
        let Ok(p) = self.log.partition(&l.tp.topic, l.tp.partition) else {
            return Ok(());
        };
        if p.is_serving() && p.leader_epoch() == l.epoch {
            return Ok(());
        }
        let session = self.session();
        let wait = session.settings().validity + session.settings().renew_interval() * 2;
        if let Err(e) = session.refresh().await {
            tracing::debug!(error = %e, "session refresh before serving failed");
        }
        session.wait_usable(&l.tp, l.epoch, wait).await?;
        match self
            .log
            .acquire_partition(&l.tp.topic, l.tp.partition, l.epoch)
            .await
        {
            Ok(_) => {
                tracing::info!(partition = %l.tp, epoch = l.epoch, "now leading");
                self.moving.write().remove(&l.tp);
                Ok(())
            }
            // This node already served the partition at this epoch and let
            // it go (a handover whose transfer failed): the log needs a new
            // epoch, so take one from the coordinator; the next round
            // serves it.
            Err(StorageError::Invalid(reason)) if p.leader_epoch() >= l.epoch => {
                tracing::info!(partition = %l.tp, epoch = l.epoch, %reason, "taking a new leader epoch to serve the partition again");
                let me = self.node_id();
                let new = self
                    .coord
                    .transfer(&self.session(), &l.tp, Some(l.epoch), me)
                    .await?;
                self.view.write().leaders.insert(l.tp.clone(), new);
                Ok(())
            }
            Err(e) => {
                tracing::error!(partition = %l.tp, epoch = l.epoch, error = %e, "cannot take the partition in the log");
                Ok(())
            }
        }
    }

    /// Hands a partition this node leads to node `to`.
    async fn hand_over(
        &self,
        l: &Leader,
        to: NodeId,
        reason: &'static str,
    ) -> Result<(), CoordError> {
        self.moving.write().insert(
            l.tp.clone(),
            Movement {
                topic: l.tp.topic.clone(),
                partition: l.tp.partition,
                from: self.node_id(),
                to,
                reason: reason.to_string(),
            },
        );
        if let Err(e) = self
            .log
            .release_partition(&l.tp.topic, l.tp.partition)
            .await
        {
            // Not uploaded: keep it here (serving again) and retry later.
            tracing::warn!(partition = %l.tp, error = %e, "handover aborted: the upload failed");
            self.moving.write().remove(&l.tp);
            let _ = self
                .log
                .acquire_partition(&l.tp.topic, l.tp.partition, l.epoch)
                .await;
            return Ok(());
        }
        // Detector runners on this partition commit and stop before the
        // new leader can start them from their checkpoints.
        self.settle_detectors().await;
        let moved = self
            .coord
            .transfer(&self.session(), &l.tp, Some(l.epoch), to)
            .await;
        self.moving.write().remove(&l.tp);
        // If the transfer failed (the target left meanwhile), this node
        // still leads the partition at `l.epoch` with its log no longer
        // serving it: the next round's `serve` takes a new epoch for it.
        let new = moved?;
        tracing::info!(partition = %l.tp, to, epoch = new.epoch, reason, "partition handed over");
        self.view.write().leaders.insert(l.tp.clone(), new);
        Ok(())
    }

    /// Stops serving a partition another node leads now.
    async fn stop_serving(&self, tp: &TopicPartition) {
        let Ok(p) = self.log.partition(&tp.topic, tp.partition) else {
            return;
        };
        if p.is_serving() {
            tracing::warn!(partition = %tp, "another node leads this partition; stopping");
            if let Err(e) = self.log.release_partition(&tp.topic, tp.partition).await {
                tracing::debug!(partition = %tp, error = %e, "release after losing leadership");
            }
        }
    }

    /// Hands every partition this node leads to the other live nodes and
    /// leaves the cluster: a clean shutdown moves partitions without
    /// waiting for the session to expire.
    pub async fn drain(&self) {
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "cannot read the cluster before draining");
        }
        let me = self.node_id();
        let (others, leaders) = {
            let v = self.view.read();
            let others: Vec<NodeId> = v.members.keys().copied().filter(|n| *n != me).collect();
            (others, v.leaders.clone())
        };
        let mine: Vec<Leader> = leaders.into_values().filter(|l| l.node == me).collect();
        if !others.is_empty() {
            let tps: Vec<TopicPartition> = mine.iter().map(|l| l.tp.clone()).collect();
            let target = placement::assign_linked(&others, &tps, &self.links(), &BTreeMap::new());
            for l in &mine {
                if let Some(to) = target.get(&l.tp) {
                    if let Err(e) = self.hand_over(l, *to, "drain").await {
                        tracing::warn!(partition = %l.tp, error = %e, "could not hand over while draining");
                    }
                }
            }
        }
        if let Err(e) = self.session().close().await {
            tracing::warn!(error = %e, "could not end the cluster session; it expires on its own");
        }
    }
}
