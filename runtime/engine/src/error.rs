//! Why an engine operation failed, and which [`ErrorKind`] that is: the
//! admin routes map the kind to an HTTP status, clients decide from it
//! whether to retry. Every message says whether a retry can help, and says
//! it consistently with [`DetectorError::kind`].

use vigil_api::ErrorKind;
use vigil_storage::StorageError;

use crate::registry::RegistryError;
use crate::spec::SpecError;

/// Why a deployment operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    /// The spec is invalid (not retriable).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Module registry problem (see [`RegistryError::kind`]).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The module refused the config, or could not start (not retriable).
    #[error("module {module} refused to start: {message}")]
    Init {
        /// Module hash prefix.
        module: String,
        /// What the detector said.
        message: String,
    },
    /// The value schema is invalid (not retriable).
    #[error("invalid value_schema: {0}")]
    Schema(String),
    /// No deployment by that name.
    #[error("no deployment named {0:?}")]
    NotFound(String),
    /// No replay job by that id.
    #[error("no replay job with id {0:?}")]
    ReplayNotFound(String),
    /// A deployment by that name exists, or is being deployed right now.
    #[error("a deployment named {0:?} already exists (undeploy it first)")]
    Exists(String),
    /// The deployment's writes would reach its own inputs through other
    /// deployments (not retriable while those stay deployed).
    #[error(
        "deployment {name:?} would close an alert cycle: {path}; its alerts would feed back \
         into its own input (not retriable: write to another topic, or undeploy a deployment \
         on the cycle first)"
    )]
    Cycle {
        /// The deployment refused.
        name: String,
        /// The cycle, `topic -[deployment]-> topic ...`.
        path: String,
    },
    /// An input topic does not exist.
    #[error("input topic {0:?} does not exist; create it first")]
    UnknownTopic(String),
    /// The log refused (see [`storage_kind`] for which refusals pass).
    #[error("log error: {0}")]
    Storage(#[from] StorageError),
    /// The object store or the log's durable state could not be reached, or
    /// did not answer in time (retriable: the same request may succeed once
    /// the store recovers).
    #[error("{0} (the object store is unavailable; retry may help)")]
    Store(String),
    /// Stored data under `key` cannot be decoded (not retriable: someone
    /// must repair or undeploy it).
    #[error("corrupt record {key}: {message} (not retriable; undeploy and deploy again)")]
    Corrupt {
        /// The key/value key or object key holding the bad data.
        key: String,
        /// What was wrong with it.
        message: String,
    },
    /// A bug or a resource the process could not get (serialization of a
    /// value the engine built, a failed thread spawn, a panicked task). Not
    /// retriable.
    #[error("internal error: {0} (not retriable)")]
    Internal(String),
    /// An engine setting is invalid (not retriable).
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    /// The engine has shut down; this broker no longer runs detectors
    /// (retriable against a broker that does).
    #[error("the detector engine has shut down; retry against a running broker")]
    ShutDown,
}

impl DetectorError {
    /// The class of this failure (HTTP status, retriability).
    pub fn kind(&self) -> ErrorKind {
        match self {
            DetectorError::Spec(_)
            | DetectorError::Init { .. }
            | DetectorError::Schema(_)
            | DetectorError::Settings(_) => ErrorKind::Invalid,
            DetectorError::Registry(e) => e.kind(),
            DetectorError::NotFound(_)
            | DetectorError::ReplayNotFound(_)
            | DetectorError::UnknownTopic(_) => ErrorKind::NotFound,
            DetectorError::Exists(_) | DetectorError::Cycle { .. } => ErrorKind::Conflict,
            DetectorError::Storage(e) => storage_kind(e),
            DetectorError::Store(_) | DetectorError::ShutDown => ErrorKind::Unavailable,
            DetectorError::Corrupt { .. } | DetectorError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// A value the engine itself built could not be serialized: a bug.
    pub(crate) fn encode(what: &str, e: serde_json::Error) -> Self {
        DetectorError::Internal(format!("cannot encode {what}: {e}"))
    }
}

/// The class of a log error as the engine reports it. A broker that was
/// fenced or is shutting down answers `Unavailable`: the request can succeed
/// on the broker that now owns the log.
pub fn storage_kind(e: &StorageError) -> ErrorKind {
    match e {
        StorageError::WalIo { .. }
        | StorageError::WalClosed
        | StorageError::Backpressure { .. }
        | StorageError::ObjectStore { .. }
        | StorageError::Fenced { .. }
        | StorageError::NotLeader { .. }
        | StorageError::OwnershipUnconfirmed { .. }
        | StorageError::OwnedElsewhere { .. }
        | StorageError::Catalog {
            retriable: true, ..
        } => ErrorKind::Unavailable,
        StorageError::Corrupt { .. } | StorageError::Catalog { .. } => ErrorKind::Internal,
        StorageError::UnknownTopic(_) | StorageError::UnknownPartition { .. } => {
            ErrorKind::NotFound
        }
        StorageError::TopicExists(_) => ErrorKind::Conflict,
        StorageError::Invalid(_)
        | StorageError::OffsetOutOfRange { .. }
        | StorageError::TooManyPartitions { .. } => ErrorKind::Invalid,
    }
}

impl RegistryError {
    /// The class of this failure (HTTP status, retriability).
    pub fn kind(&self) -> ErrorKind {
        match self {
            RegistryError::Invalid(_) | RegistryError::Ambiguous(_) => ErrorKind::Invalid,
            RegistryError::NotFound(_) => ErrorKind::NotFound,
            RegistryError::Store { .. } => ErrorKind::Unavailable,
            RegistryError::Corrupt(_) | RegistryError::Meta(..) => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages promise a retry exactly when the kind is retriable.
    #[test]
    fn messages_agree_with_kinds() {
        let cases = [
            DetectorError::Store("writing x".into()),
            DetectorError::ShutDown,
            DetectorError::Corrupt {
                key: "detectors/checkpoint/d/t/0".into(),
                message: "expected value".into(),
            },
            DetectorError::Internal("cannot spawn".into()),
            DetectorError::Storage(StorageError::Corrupt {
                what: "manifest",
                key: "m".into(),
                reason: "bad".into(),
            }),
            DetectorError::Registry(RegistryError::Corrupt("abc".into())),
            DetectorError::Exists("d".into()),
            DetectorError::Cycle {
                name: "b".into(),
                path: "\"y\" -[b]-> \"x\" -[a]-> \"y\"".into(),
            },
        ];
        for e in cases {
            let text = e.to_string();
            let says_retry = text.contains("retry may help")
                || text.contains("retriable)")
                || text.contains("retry against");
            let says_no = text.contains("not retriable");
            assert_eq!(
                e.kind().retriable(),
                says_retry && !says_no,
                "{text:?} vs {:?}",
                e.kind()
            );
        }
        assert_eq!(DetectorError::Exists("d".into()).kind().http_status(), 409);
        assert_eq!(
            DetectorError::Corrupt {
                key: "k".into(),
                message: "m".into()
            }
            .kind(),
            ErrorKind::Internal
        );
    }
}
