//! How storage failures become Kafka error codes.

use kafka_protocol::ResponseError;
use vigil_protocol::BatchError;
use vigil_storage::{AppendError, StorageError};

/// The error code a client should see for a storage error.
pub fn storage_code(e: &StorageError) -> ResponseError {
    match e {
        StorageError::UnknownTopic(_) | StorageError::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition
        }
        StorageError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        StorageError::TooManyPartitions { .. } => ResponseError::PolicyViolation,
        StorageError::Invalid(_) => ResponseError::InvalidRequest,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        // Another broker owns the log now: clients refresh metadata and retry.
        StorageError::Fenced { .. } | StorageError::NotLeader { .. } => {
            ResponseError::NotLeaderOrFollower
        }
        // Written, but this broker cannot tell whether it still owns the log,
        // so it does not acknowledge. Kafka's "written but not acknowledged"
        // code: clients treat it as possibly persisted and retry with the
        // same sequence (an idempotent retry is answered from the original
        // append), where NOT_LEADER_OR_FOLLOWER would claim it was not
        // written and let a client re-send it as new.
        StorageError::OwnershipUnconfirmed { .. } => ResponseError::NotEnoughReplicasAfterAppend,
        StorageError::WalIo { .. } | StorageError::WalClosed => ResponseError::KafkaStorageError,
        // Retriable in every client; see docs/design/0009-hardening.md, item 6.
        StorageError::Backpressure { .. } => ResponseError::KafkaStorageError,
        // Retriable: a later fetch may find the object store back.
        StorageError::ObjectStore { .. } => ResponseError::KafkaStorageError,
        StorageError::Corrupt { .. } => ResponseError::CorruptMessage,
        StorageError::OwnedElsewhere { .. } => ResponseError::NotLeaderOrFollower,
        // The coordinator could not be reached: retriable in every client.
        StorageError::Catalog {
            retriable: true, ..
        } => ResponseError::RequestTimedOut,
        StorageError::Catalog { .. } => ResponseError::UnknownServerError,
    }
}

/// The error code for a refused append.
pub fn append_code(e: &AppendError) -> ResponseError {
    match e {
        // Decompresses past the cap: Java producers split such a batch and
        // retry, which is what a legitimate oversized batch needs.
        AppendError::Corrupt {
            source: BatchError::TooLarge { .. },
            ..
        } => ResponseError::MessageTooLarge,
        AppendError::Corrupt { .. } => ResponseError::CorruptMessage,
        AppendError::InvalidRecord { .. } => ResponseError::InvalidRecord,
        AppendError::StaleEpoch { .. } => ResponseError::InvalidProducerEpoch,
        AppendError::OutOfOrder { .. } => ResponseError::OutOfOrderSequenceNumber,
        AppendError::UnknownProducerId { .. } => ResponseError::UnknownProducerId,
        // Retriable, so clients back off and retry while producers go idle.
        AppendError::TooManyProducers { .. } => ResponseError::KafkaStorageError,
        AppendError::Storage(s) => storage_code(s),
    }
}
