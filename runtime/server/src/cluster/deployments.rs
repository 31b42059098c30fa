//! Detector deployments and checkpoints of a cluster, in the coordinator's
//! metadata under the same keys a single broker uses in its key/value
//! state (`vigil_storage::kvkeys`), so every broker sees every deployment
//! and the progress other brokers made on the partitions it takes over.
//! Checkpoint commits are compare-and-swap on the key's version: a runner
//! on a broker that lost its partition cannot overwrite the new leader's.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use vigil_coord::{CoordError, Coordinator, Expect};
use vigil_engine::store::{CommitError, DeploymentStore, Record, Version};
use vigil_engine::DetectorError;

/// [`DeploymentStore`] over the coordinator's metadata.
pub struct MetaDeploymentStore {
    coord: Arc<dyn Coordinator>,
}

impl MetaDeploymentStore {
    /// A store over `coord`.
    pub fn new(coord: Arc<dyn Coordinator>) -> Self {
        MetaDeploymentStore { coord }
    }
}

fn failed(what: &str, key: &str, e: CoordError) -> DetectorError {
    DetectorError::Store(format!("{what} {key} in the cluster's metadata: {e}"))
}

impl DeploymentStore for MetaDeploymentStore {
    fn shared(&self) -> bool {
        true
    }

    fn put(
        &self,
        entries: Vec<(String, Option<String>)>,
    ) -> BoxFuture<'_, Result<(), DetectorError>> {
        async move {
            // In order: a deployment's record comes last, after the
            // checkpoints it starts from (a follower that sees the record
            // finds them), and a half-done batch leaves only records that
            // the next command or the lazy start overwrite.
            for (key, value) in entries {
                let res = match value {
                    Some(v) => self
                        .coord
                        .meta_put(&key, Bytes::from(v), Expect::Any)
                        .await
                        .map(|_| ()),
                    None => self.coord.meta_delete(&key, Expect::Any).await,
                };
                res.map_err(|e| failed("writing", &key, e))?;
            }
            Ok(())
        }
        .boxed()
    }

    fn commit<'a>(
        &'a self,
        key: &'a str,
        value: String,
        expect: Version,
    ) -> BoxFuture<'a, Result<Version, CommitError>> {
        async move {
            let expect = expect.map_or(Expect::Absent, Expect::Version);
            match self.coord.meta_put(key, Bytes::from(value), expect).await {
                Ok(v) => Ok(Some(v)),
                Err(CoordError::Conflict { .. }) => Err(CommitError::Fenced {
                    key: key.to_string(),
                }),
                Err(e) => Err(CommitError::Failed(failed("committing", key, e))),
            }
        }
        .boxed()
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<Record>, DetectorError>> {
        async move {
            let found = self
                .coord
                .meta_list(prefix)
                .await
                .map_err(|e| failed("listing", prefix, e))?;
            Ok(found
                .into_iter()
                .filter_map(|v| {
                    let value = String::from_utf8(v.value.to_vec()).ok()?;
                    Some(Record {
                        key: v.key,
                        value,
                        version: Some(v.version),
                    })
                })
                .collect())
        }
        .boxed()
    }
}
