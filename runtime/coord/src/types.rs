//! Values the coordinator stores and hands out.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Kafka broker id of a node.
pub type NodeId = i32;

/// Kafka leader epoch: grows by one with every change of leader.
pub type LeaderEpoch = i32;

/// A (topic, partition) pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`/`partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// What a node tells the cluster about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Kafka broker id.
    pub node_id: NodeId,
    /// `host:port` Kafka clients connect to.
    pub kafka_listener: String,
    /// `host:port` of the admin HTTP API.
    pub admin_addr: String,
}

/// A member record: the node and the session that keeps it registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node.
    pub node: NodeInfo,
    /// Its session id.
    pub session: String,
}

/// The leader of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    /// The partition.
    pub tp: TopicPartition,
    /// Leading node.
    pub node: NodeId,
    /// Leader epoch.
    pub epoch: LeaderEpoch,
    /// The leading node's session: leadership lapses with it.
    pub session: String,
    /// How long the new leader waits after it learns of its leadership
    /// before it acknowledges: non-zero only when leadership was taken from
    /// a live leader without its cooperation, so that leader's last
    /// confirmation has expired first.
    #[serde(default)]
    pub fence_wait_ms: u64,
}

/// A metadata value with the version a compare-and-swap names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// User key (without the cluster root).
    pub key: String,
    /// The value.
    pub value: Bytes,
    /// Changes with every write of the key (etcd mod_revision, the object
    /// store's version number); never 0.
    pub version: u64,
}

/// The condition of a metadata write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Unconditional.
    Any,
    /// Only if the key does not exist.
    Absent,
    /// Only if the key is at this version.
    Version(u64),
}

impl Expect {
    /// Whether a key whose current value has version `present` (`None`: no
    /// value) satisfies the condition.
    pub fn admits(self, present: Option<u64>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => present.is_none(),
            Expect::Version(v) => present == Some(v),
        }
    }
}

/// A membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A node joined (or re-registered with another session).
    Joined(Member),
    /// A node left or its session expired.
    Left(NodeId),
}

/// A leadership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderEvent {
    /// A partition has a (new) leader or epoch.
    Elected(Leader),
    /// A partition lost its leader (released, or its session expired).
    Vacant(TopicPartition),
}

/// A metadata change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaEvent {
    /// A key was written.
    Put(Versioned),
    /// A key was deleted.
    Deleted(String),
}

/// What a watch delivers. After the backend connection broke and came back,
/// a watch sends `Resync` with the whole current state instead of the
/// changes it may have missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched<E, S> {
    /// One change.
    Change(E),
    /// The complete current state (after a reconnect).
    Resync(Vec<S>),
}

/// Membership watch item.
pub type NodeWatch = Watched<NodeEvent, Member>;
/// Leadership watch item.
pub type LeaderWatch = Watched<LeaderEvent, Leader>;
/// Metadata watch item.
pub type MetaWatch = Watched<MetaEvent, Versioned>;
