//! `GET /v1/cluster` and `POST /v1/cluster/move`: the cluster as one node
//! sees it.

use serde::{Deserialize, Serialize};

/// One broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClusterNode {
    /// Node id.
    pub node_id: i32,
    /// `host:port` Kafka clients connect to.
    pub kafka_listener: String,
    /// Admin API address.
    pub admin_addr: String,
}

/// One partition's leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PartitionLeader {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Leader node; `None` while the partition has no live leader.
    pub leader: Option<i32>,
    /// Leader epoch; `None` without a leader.
    pub epoch: Option<i32>,
}

/// A partition handover in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Movement {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The node it leaves.
    pub from: i32,
    /// The node it goes to.
    pub to: i32,
    /// Why: `rebalance`, `drain` or `manual`.
    pub reason: String,
}

/// The cluster as the answering node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClusterStatus {
    /// `none` for a single broker, else the coordinator backend.
    pub coordinator: String,
    /// The answering node.
    pub node_id: i32,
    /// Live nodes (empty for a single broker).
    pub nodes: Vec<ClusterNode>,
    /// Every partition's leader.
    pub partitions: Vec<PartitionLeader>,
    /// Handovers the answering node is making.
    pub movements: Vec<Movement>,
}

/// Body of `POST /v1/cluster/move`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The node to move it to.
    pub to: i32,
}
