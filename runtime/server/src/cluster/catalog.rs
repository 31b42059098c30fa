//! The cluster's topic catalog in the coordinator's metadata: one key per
//! topic (`topics/<name>`, a JSON [`CatalogTopic`]). Nodes register topics
//! they create there before their own manifest changes, and apply what
//! others registered (`watch`).

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use vigil_coord::keys::meta;
use vigil_coord::{CoordError, Coordinator, Expect, MetaEvent, Watched};
use vigil_storage::catalog::{Catalog, CatalogTopic};
use vigil_storage::{Log, StorageError, TopicConfig};

/// [`Catalog`] over the coordinator's metadata.
pub(super) struct MetaCatalog {
    coord: Arc<dyn Coordinator>,
}

impl MetaCatalog {
    pub(super) fn new(coord: Arc<dyn Coordinator>) -> Self {
        MetaCatalog { coord }
    }
}

fn storage_error(name: &str, e: CoordError) -> StorageError {
    StorageError::Catalog {
        reason: format!("topic {name:?}: {e}"),
        retriable: e.is_retriable(),
    }
}

fn encode(name: &str, t: &CatalogTopic) -> Result<Bytes, StorageError> {
    serde_json::to_vec(t)
        .map(Bytes::from)
        .map_err(|e| StorageError::Catalog {
            reason: format!("topic {name:?}: cannot encode: {e}"),
            retriable: false,
        })
}

fn decode(key: &str, value: &[u8]) -> Option<CatalogTopic> {
    match serde_json::from_slice(value) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!(key, error = %e, "skipping an unreadable topic in the catalog");
            None
        }
    }
}

impl Catalog for MetaCatalog {
    fn register<'a>(
        &'a self,
        name: &'a str,
        topic: &'a CatalogTopic,
    ) -> BoxFuture<'a, Result<Option<CatalogTopic>, StorageError>> {
        async move {
            let key = meta::topic(name);
            match self
                .coord
                .meta_put(&key, encode(name, topic)?, Expect::Absent)
                .await
            {
                Ok(_) => Ok(None),
                Err(CoordError::Conflict { .. }) => {
                    let found = self
                        .coord
                        .meta_get(&key)
                        .await
                        .map_err(|e| storage_error(name, e))?;
                    Ok(found.and_then(|v| decode(&key, &v.value)))
                }
                Err(e) => Err(storage_error(name, e)),
            }
        }
        .boxed()
    }

    fn update<'a>(
        &'a self,
        name: &'a str,
        topic: &'a CatalogTopic,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        async move {
            self.coord
                .meta_put(&meta::topic(name), encode(name, topic)?, Expect::Any)
                .await
                .map(|_| ())
                .map_err(|e| storage_error(name, e))
        }
        .boxed()
    }

    fn unregister<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), StorageError>> {
        async move {
            self.coord
                .meta_delete(&meta::topic(name), Expect::Any)
                .await
                .map_err(|e| storage_error(name, e))
        }
        .boxed()
    }
}

/// Applies one catalog entry to the log: adds the topic, or grows it.
async fn apply(log: &Log, name: &str, t: CatalogTopic) {
    let res = match log.topic(name) {
        None => log
            .create_topic_with_id(
                name,
                TopicConfig {
                    partitions: t.partitions,
                    configs: t.configs,
                },
                t.id,
            )
            .await
            .map(|_| ()),
        Some(have) if have.id != t.id => {
            // Deleted and created again under the same name elsewhere.
            match log.delete_topic_locally(name).await {
                Ok(()) => {
                    return Box::pin(apply(log, name, t)).await;
                }
                Err(e) => Err(e),
            }
        }
        Some(have) if (have.partitions.len() as i32) < t.partitions => {
            log.create_partitions_locally(name, t.partitions).await
        }
        Some(_) => Ok(()),
    };
    match res {
        Ok(()) | Err(StorageError::TopicExists(_)) => {}
        Err(e) => tracing::error!(topic = name, error = %e, "could not apply the catalog's topic"),
    }
}

/// Applies one catalog key/value (`topics/<name>`) to the log.
async fn apply_entry(log: &Log, v: &vigil_coord::Versioned) {
    if let (Some(name), Some(t)) = (v.key.strip_prefix(meta::topics()), decode(&v.key, &v.value)) {
        apply(log, name, t).await;
    }
}

/// Brings the log in line with the catalog once (at join): adds what the
/// catalog has, and registers topics only this log has (a store that
/// served a single broker before).
pub(super) async fn sync(coord: &Arc<dyn Coordinator>, log: &Log) -> Result<(), CoordError> {
    let entries = coord.meta_list(meta::topics()).await?;
    let mut known = std::collections::BTreeSet::new();
    for v in entries {
        if let Some(name) = v.key.strip_prefix(meta::topics()) {
            known.insert(name.to_string());
        }
        apply_entry(log, &v).await;
    }
    for t in log.topics() {
        if known.contains(&t.name) {
            continue;
        }
        let entry = CatalogTopic {
            id: t.id,
            partitions: t.partitions.len() as i32,
            configs: t.configs.clone(),
        };
        let value = match encode(&t.name, &entry) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(topic = %t.name, error = %e, "cannot register a local topic in the catalog");
                continue;
            }
        };
        match coord
            .meta_put(&meta::topic(&t.name), value, Expect::Absent)
            .await
        {
            Ok(_) | Err(CoordError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Follows the catalog until `shutdown`: topics other nodes create, grow
/// or delete are applied to the log.
pub(super) async fn follow(
    coord: Arc<dyn Coordinator>,
    log: Arc<Log>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let mut rx = match coord.watch_meta(meta::topics()).await {
            Ok(rx) => rx,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the topic catalog; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        };
        loop {
            let item = tokio::select! {
                item = rx.recv() => item,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match item {
                None => break,
                Some(Watched::Resync(all)) => {
                    for v in all {
                        apply_entry(&log, &v).await;
                    }
                }
                Some(Watched::Change(MetaEvent::Put(v))) => apply_entry(&log, &v).await,
                Some(Watched::Change(MetaEvent::Deleted(key))) => {
                    let Some(name) = key.strip_prefix(meta::topics()) else {
                        continue;
                    };
                    match log.delete_topic_locally(name).await {
                        Ok(()) | Err(StorageError::UnknownTopic(_)) => {}
                        Err(e) => {
                            tracing::error!(topic = name, error = %e, "could not apply the catalog's deletion")
                        }
                    }
                }
            }
        }
    }
}
