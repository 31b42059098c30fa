//! Where deployment records and checkpoints are kept.
//!
//! A single broker keeps them in its log's durable key/value state
//! ([`LogStore`]). In a cluster every broker must see every deployment and
//! the progress of partitions other brokers ran, so the server plugs in a
//! store over the coordinator's metadata (shared). Checkpoint commits are
//! fenced there: each runner names the version of the checkpoint it started
//! from, so a runner on a broker that lost the partition (paused past its
//! session, then woken) cannot overwrite the new leader's progress.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use vigil_storage::Log;

use super::DetectorError;

/// The version a fenced write names: `None` means "the key must not exist".
pub type Version = Option<u64>;

/// One stored record with the version a fenced write would name.
#[derive(Debug, Clone)]
pub struct Record {
    /// Key (the log's key/value key, see `vigil_storage::kvkeys`).
    pub key: String,
    /// JSON value.
    pub value: String,
    /// Changes with every write; `None` from stores without versions.
    pub version: Version,
}

/// Why a fenced commit was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Someone else wrote the key since (another broker leads the partition
    /// now, or a command rewrote the checkpoint); not retriable as is: the
    /// runner stops and starts again from what is stored.
    #[error("checkpoint {key} was written elsewhere since this runner read it")]
    Fenced {
        /// The checkpoint key.
        key: String,
    },
    /// The write failed; retrying may help.
    #[error(transparent)]
    Failed(#[from] DetectorError),
}

/// Durable home of deployment records and checkpoints.
pub trait DeploymentStore: Send + Sync + 'static {
    /// Whether other brokers share this store (a cluster): the engine then
    /// follows records written elsewhere and runs only the partitions this
    /// broker leads.
    fn shared(&self) -> bool;

    /// Writes (`Some`) or deletes (`None`) records, unconditionally.
    fn put(
        &self,
        entries: Vec<(String, Option<String>)>,
    ) -> BoxFuture<'_, Result<(), DetectorError>>;

    /// Writes one checkpoint if the key is still at `expect`; returns the
    /// new version.
    fn commit<'a>(
        &'a self,
        key: &'a str,
        value: String,
        expect: Version,
    ) -> BoxFuture<'a, Result<Version, CommitError>>;

    /// Every record whose key starts with `prefix`, as stored now.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<Record>, DetectorError>>;
}

/// The log's own key/value state: one broker, no versions (the log's writer
/// fencing already keeps a second broker out).
pub struct LogStore {
    log: Arc<Log>,
}

impl LogStore {
    /// A store over `log`'s key/value state.
    pub fn new(log: Arc<Log>) -> Self {
        LogStore { log }
    }
}

impl DeploymentStore for LogStore {
    fn shared(&self) -> bool {
        false
    }

    fn put(
        &self,
        entries: Vec<(String, Option<String>)>,
    ) -> BoxFuture<'_, Result<(), DetectorError>> {
        async move { self.log.kv_put(entries).await.map_err(DetectorError::from) }.boxed()
    }

    fn commit<'a>(
        &'a self,
        key: &'a str,
        value: String,
        _expect: Version,
    ) -> BoxFuture<'a, Result<Version, CommitError>> {
        async move {
            match self.log.kv_put(vec![(key.to_string(), Some(value))]).await {
                Ok(()) => Ok(None),
                // A newer owner of the whole log: stop like a fenced commit.
                Err(_) if self.log.is_fenced() => Err(CommitError::Fenced {
                    key: key.to_string(),
                }),
                Err(e) => Err(CommitError::Failed(e.into())),
            }
        }
        .boxed()
    }

    /// The key/value state as of open: a single broker is the only writer,
    /// and the engine keeps its live view in memory from there.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<Record>, DetectorError>> {
        async move {
            Ok(self
                .log
                .kv_at_open()
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| Record {
                    key: k.clone(),
                    value: v.clone(),
                    version: None,
                })
                .collect())
        }
        .boxed()
    }
}
