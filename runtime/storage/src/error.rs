//! Storage errors. Each says what failed, for which topic/partition/key, and
//! whether the caller may retry.

use std::path::PathBuf;

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Local WAL I/O failed.
    #[error("WAL I/O error at {path}: {source} (retriable once the disk recovers)")]
    WalIo {
        /// File involved.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// More appended data is waiting for upload than the configured limit
    /// (the object store is slow or down): the append is refused until
    /// uploads catch up.
    #[error("{held} bytes are waiting for upload to the object store, at or over the limit of {limit} (max-unuploaded-bytes); retriable once uploads catch up")]
    Backpressure {
        /// Bytes appended and not yet uploaded.
        held: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The WAL writer is gone (shutdown or a fatal error).
    #[error(
        "the WAL writer has stopped; the broker is shutting down (not retriable on this broker)"
    )]
    WalClosed,
    /// An object store request failed.
    #[error("object store {op} of {key} failed: {source} (retriable)")]
    ObjectStore {
        /// What was attempted: get, put, list, delete.
        op: &'static str,
        /// Object key.
        key: String,
        /// Underlying error.
        source: object_store::Error,
    },
    /// This broker does not lead the partition (it was moved, or is being
    /// handed over); clients refresh metadata and go to the new leader.
    #[error("{topic}-{partition}: this broker is not its leader ({reason}); refresh metadata")]
    NotLeader {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Why.
        reason: String,
    },
    /// Another broker committed a newer manifest with a higher writer epoch.
    #[error("fenced: broker epoch {ours} was superseded by epoch {theirs} (written by {by}); this broker must stop writing")]
    Fenced {
        /// Our writer epoch.
        ours: u64,
        /// The epoch that replaced us.
        theirs: u64,
        /// The broker that holds it.
        by: String,
    },
    /// This broker could not confirm, recently enough, that no other broker
    /// claimed the log (the object store is unreachable or slow), so it does
    /// not acknowledge.
    #[error("cannot confirm that writer epoch {epoch} still owns the log: {reason} (retriable once the object store answers)")]
    OwnershipUnconfirmed {
        /// Our writer epoch.
        epoch: u64,
        /// Why the check did not answer.
        reason: String,
    },
    /// Another broker is serving this log and renewing its lease.
    #[error("the log is owned by {broker} (epoch {epoch}), which is alive and renewing its lease; stop it first, or start this broker with --takeover to fence it")]
    OwnedElsewhere {
        /// The live owner.
        broker: String,
        /// Its epoch.
        epoch: u64,
    },
    /// A stored object or manifest could not be parsed.
    #[error("corrupt {what} at {key}: {reason} (not retriable)")]
    Corrupt {
        /// Kind of object.
        what: &'static str,
        /// Key or path.
        key: String,
        /// Details.
        reason: String,
    },
    /// The topic does not exist.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// The partition does not exist.
    #[error("unknown partition {partition} of topic {topic:?}")]
    UnknownPartition {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// A topic with this name already exists.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// The cluster's topic catalog could not be read or written.
    #[error("topic catalog: {reason} (retriable: {retriable})")]
    Catalog {
        /// What failed, naming the topic.
        reason: String,
        /// Whether asking again can help.
        retriable: bool,
    },
    /// Bad topic name, partition count or config.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Creating these partitions would take the log past its configured
    /// partition limit. Not retriable unless topics are deleted first.
    #[error("{what} would take the log to {total} partitions, over the limit of {limit} (delete topics, or raise max-partitions)")]
    TooManyPartitions {
        /// What was asked, e.g. `topic "t" with 3 partitions`.
        what: String,
        /// Partitions there would be.
        total: usize,
        /// The limit.
        limit: usize,
    },
    /// The requested offset is outside the log.
    #[error("offset {offset} is out of range for {topic}-{partition} (log spans {start}..{end})")]
    OffsetOutOfRange {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// Requested offset.
        offset: i64,
        /// Log start offset.
        start: i64,
        /// High watermark.
        end: i64,
    },
}

impl StorageError {
    /// An object store request `op` on `key` failed.
    pub(crate) fn store(
        op: &'static str,
        key: &object_store::path::Path,
        source: object_store::Error,
    ) -> Self {
        StorageError::ObjectStore {
            op,
            key: key.to_string(),
            source,
        }
    }

    /// Whether retrying the same operation later can succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            StorageError::WalIo { .. }
                | StorageError::ObjectStore { .. }
                | StorageError::OwnershipUnconfirmed { .. }
                | StorageError::Backpressure { .. }
                | StorageError::Catalog {
                    retriable: true,
                    ..
                }
        )
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
