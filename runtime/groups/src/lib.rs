//! Kafka consumer-group coordinator (the classic JoinGroup/SyncGroup protocol) and the
//! committed-offset store behind OffsetCommit/OffsetFetch.
//!
//! This broker is the coordinator of every group. Group *membership* lives only in memory
//! (after a restart members simply rejoin, as they would after a coordinator failover);
//! committed offsets are made durable through [`GroupStore::persist`] and replayed at startup
//! with [`GroupCoordinator::restore`].
//!
//! Locking: one `parking_lot::Mutex` guards the group map and one guards each group. They are
//! synchronous mutexes rather than tokio's because no code ever awaits while holding one;
//! responses that must wait (JoinGroup until the rebalance completes, SyncGroup until the
//! leader's assignment arrives) park a `tokio::sync::oneshot` sender in the group and await
//! the receiver after the lock is released. The map lock is never taken while a group lock
//! is held, so the two cannot deadlock.

mod admin;
mod deletion;
mod expiry;
mod leave;
pub mod log_store;
mod membership;
mod offsets;
mod state;
mod timers;

pub use log_store::LogGroupStore;
pub use membership::ClientInfo;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests_cancel;
#[cfg(test)]
mod tests_expiry;
#[cfg(test)]
mod tests_membership;
#[cfg(test)]
mod tests_offsets;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;

use state::Group;

/// Tunables of the coordinator.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// Delay before completing the first rebalance of an empty group so several members can
    /// join together (Kafka's `group.initial.rebalance.delay.ms`). Default 300 ms.
    pub initial_rebalance_delay: Duration,
    /// Smallest session timeout a member may ask for; below it JoinGroup fails with
    /// `INVALID_SESSION_TIMEOUT` (Kafka's `group.min.session.timeout.ms`). Default 1 000.
    pub min_session_timeout_ms: i32,
    /// Largest session timeout a member may ask for (Kafka's `group.max.session.timeout.ms`).
    /// Default 300 000.
    pub max_session_timeout_ms: i32,
    /// How long the committed offsets of a group without members are kept after its newest
    /// commit (Kafka's `offsets.retention.minutes`). Default 7 days.
    pub offsets_retention: Duration,
    /// How often expired offsets are looked for (Kafka's
    /// `offsets.retention.check.interval.ms`). Default 10 minutes.
    pub offsets_retention_check_interval: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay: Duration::from_millis(300),
            min_session_timeout_ms: 1_000,
            max_session_timeout_ms: 300_000,
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            offsets_retention_check_interval: Duration::from_secs(600),
        }
    }
}

/// One committed offset as stored/persisted.
#[derive(Clone, Debug, PartialEq)]
pub struct CommittedOffset {
    /// The committed offset: the next record the group will consume.
    pub offset: i64,
    /// Leader epoch of the committed record, or -1 when the client did not send one.
    pub leader_epoch: i32,
    /// Free-form client metadata; `None` when the client sent a null string.
    pub metadata: Option<String>,
    /// Wall-clock time of the commit, in milliseconds since the Unix epoch.
    pub commit_timestamp_ms: i64,
}

/// Key of a committed offset.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffsetKey {
    /// Group id.
    pub group: String,
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

/// What the coordinator needs from the rest of the broker.
///
/// Ordering contract: the coordinator calls [`persist`](Self::persist) while holding the
/// group's lock, so calls for one group are made in commit order. An implementation should fix
/// the durable order of a batch when `persist` is *called* (e.g. by enqueueing it to a writer)
/// rather than when the returned future is first polled; the coordinator then keeps the
/// in-memory value of each key equal to the last one in the log even if the futures resolve
/// out of order. `persist` must not call back into the coordinator.
pub trait GroupStore: Send + Sync + 'static {
    /// Durably persist these commits (value None = delete). The coordinator only applies them
    /// to its in-memory map after this resolves Ok.
    fn persist(
        &self,
        entries: Vec<(OffsetKey, Option<CommittedOffset>)>,
    ) -> BoxFuture<'static, Result<(), GroupStoreError>>;

    /// Whether topic/partition exists (OffsetCommit for unknown partitions →
    /// UNKNOWN_TOPIC_OR_PARTITION).
    fn partition_exists(&self, topic: &str, partition: i32) -> bool;

    /// "Now" (ms since the Unix epoch) for commit timestamps and offset expiry; the system
    /// clock unless the store runs on an injected one.
    fn now_ms(&self) -> i64 {
        vigil_storage::Clock::now_ms(&vigil_storage::SystemClock)
    }
}

/// Failure of the [`GroupStore`].
#[derive(Debug, thiserror::Error)]
pub enum GroupStoreError {
    /// Persisting failed. `retriable` tells whether the client should simply retry (reported
    /// as `COORDINATOR_NOT_AVAILABLE`, which makes clients back off and retry) or not
    /// (reported as `UNKNOWN_SERVER_ERROR`).
    #[error("offset store failed ({}): {message}", if *.retriable { "retriable" } else { "fatal" })]
    Failed {
        /// Human-readable cause, for logs.
        message: String,
        /// Whether retrying the same request may succeed.
        retriable: bool,
    },
}

impl GroupStoreError {
    /// A transient failure (e.g. storage temporarily unavailable).
    pub fn retriable(message: impl Into<String>) -> Self {
        Self::Failed {
            message: message.into(),
            retriable: true,
        }
    }

    /// A permanent failure.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self::Failed {
            message: message.into(),
            retriable: false,
        }
    }

    /// The Kafka error this failure is reported to clients as.
    pub fn response_error(&self) -> ResponseError {
        match self {
            Self::Failed {
                retriable: true, ..
            } => ResponseError::CoordinatorNotAvailable,
            Self::Failed {
                retriable: false, ..
            } => ResponseError::UnknownServerError,
        }
    }
}

/// Shared handle to one group; the group itself holds a weak reference to this for its timers.
type GroupRef = Arc<Mutex<Group>>;

/// The consumer-group coordinator. Create with [`GroupCoordinator::new`] and share the `Arc`
/// between connection handlers.
pub struct GroupCoordinator {
    config: GroupConfig,
    store: Arc<dyn GroupStore>,
    /// Group id → group. A group without members whose offsets expired is removed (see
    /// [`expire_offsets`](Self::expire_offsets)) or deleted with DeleteGroups.
    groups: Mutex<HashMap<String, GroupRef>>,
}

impl GroupCoordinator {
    /// Creates a coordinator with no groups; call [`restore`](Self::restore) for each persisted
    /// commit before serving requests. Inside a tokio runtime this also starts the periodic
    /// expiry of committed offsets, which ends when the coordinator is dropped.
    pub fn new(config: GroupConfig, store: Arc<dyn GroupStore>) -> Arc<Self> {
        let every = config.offsets_retention_check_interval;
        let coordinator = Arc::new(Self {
            config,
            store,
            groups: Mutex::new(HashMap::new()),
        });
        Self::spawn_offset_expiry(Arc::downgrade(&coordinator), every);
        coordinator
    }

    /// Startup replay of persisted commits, in log order (None = tombstone). No persistence
    /// call.
    pub fn restore(&self, key: OffsetKey, value: Option<CommittedOffset>) {
        match value {
            Some(value) => {
                let group = self.get_or_create_group(&key.group);
                group.lock().restore_offset(key.topic, key.partition, value);
            }
            None => {
                if let Some(group) = self.get_group(&key.group) {
                    group.lock().remove_offset(&key.topic, key.partition);
                }
            }
        }
    }

    /// Drop all committed offsets of a deleted topic (in memory; the caller persists
    /// tombstones separately if needed) and return the keys removed, sorted.
    pub fn forget_topic(&self, topic: &str) -> Vec<OffsetKey> {
        let mut removed = Vec::new();
        for (group_id, group) in self.all_groups() {
            for partition in group.lock().remove_topic_offsets(topic) {
                removed.push(OffsetKey {
                    group: group_id.clone(),
                    topic: topic.to_string(),
                    partition,
                });
            }
        }
        removed.sort();
        removed
    }

    /// Snapshot of all committed offsets (for checkpointing), sorted by key.
    pub fn snapshot_offsets(&self) -> Vec<(OffsetKey, CommittedOffset)> {
        let mut out = Vec::new();
        for (group_id, group) in self.all_groups() {
            let group = group.lock();
            for ((topic, partition), value) in group.offsets() {
                out.push((
                    OffsetKey {
                        group: group_id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                    },
                    value.clone(),
                ));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn get_group(&self, group_id: &str) -> Option<GroupRef> {
        self.groups.lock().get(group_id).cloned()
    }

    fn get_or_create_group(&self, group_id: &str) -> GroupRef {
        let mut groups = self.groups.lock();
        if let Some(group) = groups.get(group_id) {
            return group.clone();
        }
        let group = Arc::new_cyclic(|weak| {
            Mutex::new(Group::new(
                group_id.to_string(),
                weak.clone(),
                self.config.initial_rebalance_delay,
            ))
        });
        groups.insert(group_id.to_string(), group.clone());
        group
    }

    /// All groups, cloned out so callers can lock them one at a time without the map lock.
    fn all_groups(&self) -> Vec<(String, GroupRef)> {
        let mut all: Vec<_> = self
            .groups
            .lock()
            .iter()
            .map(|(id, group)| (id.clone(), group.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}
