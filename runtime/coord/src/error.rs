//! Coordinator errors. Each says what failed, for which node, partition or
//! key, and whether retrying can help ([`CoordError::is_retriable`]).

/// Errors of the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// The backend (etcd or the object store) did not answer or failed.
    #[error("{backend} {op} of {key} failed: {reason} (retriable)")]
    Backend {
        /// `etcd` or `object store`.
        backend: &'static str,
        /// What was attempted: get, put, txn, list, watch, lease grant...
        op: &'static str,
        /// Key or prefix involved.
        key: String,
        /// The backend's message.
        reason: String,
    },
    /// A compare-and-swap lost: someone else changed the key first.
    #[error("conditional update of {key} lost: expected {expected}, found {found} (retriable after re-reading)")]
    Conflict {
        /// Key involved.
        key: String,
        /// The condition we wrote under.
        expected: String,
        /// What is there now.
        found: String,
    },
    /// The partition has a live leader other than the caller.
    #[error("{topic}/{partition} is led by node {leader} at epoch {epoch}; transfer it instead of acquiring (not retriable while that leader lives)")]
    HeldElsewhere {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The live leader.
        leader: i32,
        /// Its epoch.
        epoch: i32,
    },
    /// This node no longer leads the partition at the epoch it asked about:
    /// another node took it (answer FENCED_LEADER_EPOCH or
    /// NOT_LEADER_OR_FOLLOWER; never acknowledge).
    #[error("node {node} is not the leader of {topic}/{partition} at epoch {ours}: {current} (not retriable on this node)")]
    NotLeader {
        /// This node.
        node: i32,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The epoch we asked about.
        ours: i32,
        /// Who leads now, as far as we know.
        current: String,
    },
    /// Leadership could not be confirmed recently enough (the backend is
    /// unreachable or slow, or a forced takeover is still waiting out the
    /// old leader's validity): do not acknowledge, retry later.
    #[error("node {node} cannot confirm leadership of {topic}/{partition} at epoch {epoch}: {reason} (retriable)")]
    Unconfirmed {
        /// This node.
        node: i32,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The epoch we asked about.
        epoch: i32,
        /// Why.
        reason: String,
    },
    /// This node's session ended (expired while the backend was unreachable
    /// or the process paused, or was closed): every leadership bound to it
    /// is gone. Join again with a new session.
    #[error("session {session} of node {node} is lost: {reason} (rejoin with a new session)")]
    SessionLost {
        /// This node.
        node: i32,
        /// The session id.
        session: String,
        /// Why.
        reason: String,
    },
    /// The target node of a transfer is not a live member.
    #[error("node {node} is not a live member of the cluster (retriable once it joins)")]
    UnknownNode {
        /// The node asked for.
        node: i32,
    },
    /// A node with this id already has a live session.
    #[error("node id {node} is already registered by a live session {session} (not retriable until it leaves or its session expires)")]
    DuplicateNode {
        /// The node id.
        node: i32,
        /// The live session holding it.
        session: String,
    },
    /// A stored record could not be parsed.
    #[error("corrupt {what} at {key}: {reason} (not retriable)")]
    Corrupt {
        /// Kind of record.
        what: &'static str,
        /// Key.
        key: String,
        /// Details.
        reason: String,
    },
    /// The caller passed something invalid (a bad endpoint, a key outside
    /// the metadata namespace, a TTL out of range).
    #[error("invalid {what}: {reason} (not retriable)")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

impl CoordError {
    /// Whether retrying the same call (possibly after re-reading) can help.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            CoordError::Backend { .. }
                | CoordError::Conflict { .. }
                | CoordError::Unconfirmed { .. }
                | CoordError::UnknownNode { .. }
        )
    }

    pub(crate) fn etcd(
        op: &'static str,
        key: impl Into<String>,
        e: impl std::fmt::Display,
    ) -> Self {
        CoordError::Backend {
            backend: "etcd",
            op,
            key: key.into(),
            reason: e.to_string(),
        }
    }

    pub(crate) fn store(
        op: &'static str,
        key: impl Into<String>,
        e: impl std::fmt::Display,
    ) -> Self {
        CoordError::Backend {
            backend: "object store",
            op,
            key: key.into(),
            reason: e.to_string(),
        }
    }

    pub(crate) fn corrupt(
        what: &'static str,
        key: impl Into<String>,
        e: impl std::fmt::Display,
    ) -> Self {
        CoordError::Corrupt {
            what,
            key: key.into(),
            reason: e.to_string(),
        }
    }
}

/// Result of coordinator calls.
pub type Result<T, E = CoordError> = std::result::Result<T, E>;
