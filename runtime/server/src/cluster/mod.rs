//! This broker as a node of a cluster: it joins the coordinator (etcd or
//! the object store), keeps a view of the live nodes and every partition's
//! leader, shares topics through the coordinator's metadata (the catalog),
//! asks the coordinator's session before acknowledging any write, and runs
//! the placement loop that acquires, hands over and takes over partitions
//! (`placement.rs`). Moving a partition copies no data: the next leader
//! reads the partition's manifest and, after a crash, the dead node's WAL
//! objects from the object store (vigil-storage `log/recover.rs`).
//! Design: docs/design/0018-cluster.md.

mod catalog;
pub mod deployments;
pub mod offsets;
mod placement;
pub mod security;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use parking_lot::RwLock;
use vigil_api::Movement;
use vigil_coord::{
    keys, CoordError, Coordinator, Expect, Leader, NodeId, NodeInfo, Session, SessionSettings,
    TopicPartition,
};
use vigil_storage::leadership::{LeaderCheckError, Leadership};
use vigil_storage::Log;

/// What this node knows of the cluster, refreshed by the placement loop.
#[derive(Debug, Default, Clone)]
struct View {
    members: BTreeMap<NodeId, NodeInfo>,
    leaders: BTreeMap<TopicPartition, Leader>,
}

/// This broker's membership in a cluster.
pub struct Cluster {
    coord: Arc<dyn Coordinator>,
    /// The current session; replaced when a lost one (a paused or cut-off
    /// node) rejoins.
    session: RwLock<Arc<Session>>,
    /// This node, as it joins.
    node: NodeInfo,
    ttl: Duration,
    log: Arc<Log>,
    view: RwLock<View>,
    moving: RwLock<BTreeMap<TopicPartition, Movement>>,
    /// The consumer groups, reloaded from the shared offsets whenever the
    /// nodes change (groups move with them).
    groups: RwLock<Option<Arc<vigil_groups::GroupCoordinator>>>,
    /// The detector engine, told to stop a partition's runners before the
    /// partition is handed over.
    detectors: RwLock<Option<Arc<vigil_engine::Detectors>>>,
}

impl Cluster {
    /// Connects to the coordinator named by `url` (`etcd://...` or
    /// `store`), joins as `node`, installs the session as the log's
    /// leadership check and the coordinator's metadata as its topic
    /// catalog.
    pub async fn join(
        url: &str,
        store: Arc<dyn ObjectStore>,
        node: NodeInfo,
        ttl: Duration,
        log: Arc<Log>,
    ) -> Result<Arc<Cluster>, CoordError> {
        let coord: Arc<dyn Coordinator> = if url == "store" {
            Arc::new(vigil_coord::store::StoreCoordinator::new(
                store,
                vigil_coord::store::StoreSettings::default(),
            ))
        } else {
            let settings = vigil_coord::etcd::EtcdSettings::from_url(url)?;
            Arc::new(vigil_coord::etcd::EtcdCoordinator::connect(&settings).await?)
        };
        let session = coord
            .join(node.clone(), SessionSettings::with_ttl(ttl))
            .await?;
        log.set_leadership(Arc::new(SessionLeadership(session.clone())));
        tracing::info!(
            node = node.node_id,
            backend = coord.backend(),
            listener = %node.kafka_listener,
            "joined the cluster"
        );
        let cluster = Arc::new(Cluster {
            coord: coord.clone(),
            session: RwLock::new(session),
            node,
            ttl,
            log: log.clone(),
            view: RwLock::new(View::default()),
            moving: RwLock::new(BTreeMap::new()),
            groups: RwLock::new(None),
            detectors: RwLock::new(None),
        });
        catalog::sync(&coord, &log).await?;
        log.set_catalog(Arc::new(catalog::MetaCatalog::new(coord)));
        cluster.refresh().await?;
        Ok(cluster)
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node.node_id
    }

    /// The current session.
    fn session(&self) -> Arc<Session> {
        self.session.read().clone()
    }

    /// Joins again after the session was lost (the node was paused or cut
    /// off past its TTL, and its partitions moved): a new session, which
    /// the log's checks ask from now on; it leads nothing until placement
    /// gives it partitions.
    async fn rejoin(&self) -> Result<(), CoordError> {
        let session = self
            .coord
            .join(self.node.clone(), SessionSettings::with_ttl(self.ttl))
            .await?;
        self.log
            .set_leadership(Arc::new(SessionLeadership(session.clone())));
        *self.session.write() = session;
        tracing::warn!(
            node = self.node.node_id,
            "the cluster session was lost; joined again with a new one"
        );
        Ok(())
    }

    /// The coordinator backend's name.
    pub fn backend(&self) -> &'static str {
        self.coord.backend()
    }

    /// Every live node, by id.
    pub fn members(&self) -> Vec<NodeInfo> {
        self.view.read().members.values().cloned().collect()
    }

    /// Every live node as Kafka clients address it: (node id, host, port).
    pub fn brokers(&self) -> Vec<(NodeId, String, i32)> {
        self.members().iter().filter_map(kafka_address).collect()
    }

    /// The live leader of a partition, as last seen.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<Leader> {
        self.view
            .read()
            .leaders
            .get(&TopicPartition::new(topic, partition))
            .cloned()
    }

    /// Every partition's live leader, as last seen.
    pub fn leaders(&self) -> Vec<Leader> {
        self.view.read().leaders.values().cloned().collect()
    }

    /// Handovers this node has started and not finished.
    pub fn movements(&self) -> Vec<Movement> {
        self.moving.read().values().cloned().collect()
    }

    /// The node that coordinates consumer group `group`: a stable hash of
    /// the group id over the live nodes (every node computes the same).
    pub fn group_coordinator(&self, group: &str) -> Option<NodeInfo> {
        let view = self.view.read();
        let n = view.members.len();
        if n == 0 {
            return None;
        }
        // FNV-1a: stable across processes and versions, unlike std's hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in group.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        view.members.values().nth((h % n as u64) as usize).cloned()
    }

    /// Asks for `topic`/`partition` to move to node `to` (it must be
    /// live): recorded in the coordinator's metadata, where the partition's
    /// leader finds it at its next placement round and hands it over.
    pub async fn request_move(
        &self,
        topic: &str,
        partition: i32,
        to: NodeId,
    ) -> Result<(), String> {
        if !self.view.read().members.contains_key(&to) {
            return Err(format!("node {to} is not a live member of the cluster"));
        }
        if self.log.partition(topic, partition).is_err() {
            return Err(format!("no partition {partition} of topic {topic:?}"));
        }
        let value = bytes::Bytes::from(to.to_string());
        self.coord
            .meta_put(&keys::meta::movement(topic, partition), value, Expect::Any)
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot record the move: {e}"))
    }

    /// Moves operators asked for that have not arrived yet; arrived or
    /// impossible ones (partition or node gone) are removed.
    async fn requested_moves(&self) -> BTreeMap<TopicPartition, NodeId> {
        let Ok(entries) = self.coord.meta_list(keys::meta::movements()).await else {
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for v in entries {
            let parsed = v
                .key
                .strip_prefix(keys::meta::movements())
                .and_then(|rest| rest.rsplit_once('/'))
                .and_then(|(t, p)| Some((t.to_string(), p.parse::<i32>().ok()?)))
                .zip(
                    std::str::from_utf8(&v.value)
                        .ok()
                        .and_then(|s| s.parse::<NodeId>().ok()),
                );
            let keep = {
                let view = self.view.read();
                parsed.filter(|((t, p), to)| {
                    let tp = TopicPartition::new(t.clone(), *p);
                    view.members.contains_key(to)
                        && self.log.partition(t, *p).is_ok()
                        && view.leaders.get(&tp).map(|l| l.node) != Some(*to)
                })
            };
            match keep {
                Some(((t, p), to)) => {
                    out.insert(TopicPartition::new(t, p), to);
                }
                None => {
                    let _ = self
                        .coord
                        .meta_delete(&v.key, Expect::Version(v.version))
                        .await;
                }
            }
        }
        out
    }

    /// The cluster's id: the first node's proposal, kept in the
    /// coordinator's metadata (clients refuse brokers that disagree).
    pub async fn cluster_id(&self, proposed: String) -> Result<String, CoordError> {
        let key = keys::meta::cluster_id();
        match self
            .coord
            .meta_put(key, bytes::Bytes::from(proposed.clone()), Expect::Absent)
            .await
        {
            Ok(_) => Ok(proposed),
            Err(CoordError::Conflict { .. }) => {
                let found = self.coord.meta_get(key).await?;
                Ok(found
                    .and_then(|v| String::from_utf8(v.value.to_vec()).ok())
                    .unwrap_or(proposed))
            }
            Err(e) => Err(e),
        }
    }

    /// A group store sharing committed offsets through the coordinator,
    /// with every offset loaded into `groups`, which this node then keeps
    /// up to date as groups move between nodes.
    pub async fn share_groups(
        &self,
        groups: Arc<vigil_groups::GroupCoordinator>,
    ) -> Result<usize, CoordError> {
        let n = offsets::restore_all(&self.coord, &groups).await?;
        *self.groups.write() = Some(groups);
        Ok(n)
    }

    /// The group store of this cluster.
    /// Where detector deployments and checkpoints live in this cluster.
    pub fn deployment_store(&self) -> Arc<deployments::MetaDeploymentStore> {
        Arc::new(deployments::MetaDeploymentStore::new(self.coord.clone()))
    }

    /// The engine whose runners follow this node's partitions.
    pub fn set_detectors(&self, detectors: Arc<vigil_engine::Detectors>) {
        *self.detectors.write() = Some(detectors);
    }

    /// Stops the runners of partitions this node no longer serves.
    async fn settle_detectors(&self) {
        let d = self.detectors.read().clone();
        if let Some(d) = d {
            d.settle().await;
        }
    }

    pub fn group_store(&self) -> Arc<offsets::MetaGroupStore> {
        Arc::new(offsets::MetaGroupStore::new(
            self.coord.clone(),
            self.log.clone(),
        ))
    }

    /// Re-reads members and leaders; reloads the groups' offsets when the
    /// nodes changed (a group this node coordinates now may have committed
    /// elsewhere since it last did).
    async fn refresh(&self) -> Result<(), CoordError> {
        let members = self.coord.members().await?;
        let leaders = self.coord.leaders().await?;
        let changed = {
            let mut view = self.view.write();
            let members: BTreeMap<NodeId, NodeInfo> = members
                .into_iter()
                .map(|m| (m.node.node_id, m.node))
                .collect();
            let changed = !members.keys().eq(view.members.keys());
            view.members = members;
            view.leaders = leaders.into_iter().map(|l| (l.tp.clone(), l)).collect();
            changed
        };
        let groups = self.groups.read().clone();
        if let (true, Some(groups)) = (changed, groups) {
            let n = offsets::restore_all(&self.coord, &groups).await?;
            tracing::info!(offsets = n, "nodes changed: committed offsets reloaded");
        }
        Ok(())
    }
}

/// A node's Kafka listener as (node id, host, port); `None` if it does not
/// parse (a node that registered a bad address is left out of metadata).
pub fn kafka_address(n: &NodeInfo) -> Option<(NodeId, String, i32)> {
    let (host, port) = n.kafka_listener.rsplit_once(':')?;
    Some((n.node_id, host.to_string(), port.parse().ok()?))
}

/// The log's leadership check: the coordinator session's view, which is
/// valid only while recently confirmed (vigil-coord `session.rs`).
struct SessionLeadership(Arc<Session>);

impl Leadership for SessionLeadership {
    fn check(&self, topic: &str, partition: i32, epoch: i32) -> Result<(), LeaderCheckError> {
        match self.0.check(&TopicPartition::new(topic, partition), epoch) {
            Ok(()) => Ok(()),
            Err(e @ CoordError::Unconfirmed { .. }) => {
                Err(LeaderCheckError::Unconfirmed(e.to_string()))
            }
            Err(e) => Err(LeaderCheckError::NotLeader(e.to_string())),
        }
    }
}
