//! Topic administration on the log: create, delete, grow. Each is one
//! manifest update (compare-and-swap) followed by the in-memory view.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use super::{Log, Topic, TopicConfig, MAX_PARTITIONS, MAX_TOPIC_NAME};
use crate::catalog::{Catalog, CatalogTopic};
use crate::error::{Result, StorageError};
use crate::manifest::{Manifest, PartitionManifest, TopicManifest};
use crate::partition::Partition;

impl Log {
    /// Creates a topic (in a cluster, registered in the catalog first:
    /// if another node registered the name meanwhile, its topic is added
    /// here and this fails with [`StorageError::TopicExists`]).
    pub async fn create_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        let name = name.to_string();
        self.to_completion(move |log| async move { log.create_topic_inner(&name, config).await })
            .await
    }

    async fn create_topic_inner(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        let catalog = self.catalog.read().clone();
        let Some(catalog) = catalog else {
            return self
                .create_topic_with_id_inner(name, config, Uuid::new_v4())
                .await;
        };
        validate_topic_name(name)?;
        if self.topic(name).is_some() {
            return Err(StorageError::TopicExists(name.to_string()));
        }
        let entry = CatalogTopic {
            id: Uuid::new_v4(),
            partitions: config.partitions,
            configs: config.configs.clone(),
        };
        match catalog.register(name, &entry).await? {
            None => match self
                .create_topic_with_id_inner(name, config, entry.id)
                .await
            {
                // The catalog follower applied our own registration first.
                Err(StorageError::TopicExists(_)) => self
                    .topic(name)
                    .filter(|t| t.id == entry.id)
                    .ok_or_else(|| StorageError::TopicExists(name.to_string())),
                other => other,
            },
            Some(theirs) => {
                let config = TopicConfig {
                    partitions: theirs.partitions,
                    configs: theirs.configs,
                };
                match self
                    .create_topic_with_id_inner(name, config, theirs.id)
                    .await
                {
                    Ok(_) | Err(StorageError::TopicExists(_)) => {}
                    Err(e) => return Err(e),
                }
                Err(StorageError::TopicExists(name.to_string()))
            }
        }
    }

    /// Installs the cluster's topic catalog.
    pub fn set_catalog(&self, catalog: Arc<dyn Catalog>) {
        *self.catalog.write() = Some(catalog);
    }

    /// Creates a topic under a given id: a cluster node adding a topic of
    /// the cluster's catalog, whose partitions' manifests (`parts/<id>/`)
    /// other nodes may already have written.
    pub async fn create_topic_with_id(
        &self,
        name: &str,
        config: TopicConfig,
        id: Uuid,
    ) -> Result<Arc<Topic>> {
        let name = name.to_string();
        self.to_completion(move |log| async move {
            log.create_topic_with_id_inner(&name, config, id).await
        })
        .await
    }

    async fn create_topic_with_id_inner(
        &self,
        name: &str,
        config: TopicConfig,
        id: Uuid,
    ) -> Result<Arc<Topic>> {
        let _changing = self.topic_changes.lock().await;
        validate_topic_name(name)?;
        if config.partitions < 1 || config.partitions > MAX_PARTITIONS {
            return Err(StorageError::Invalid(format!(
                "topic {name:?}: partition count {} must be between 1 and {MAX_PARTITIONS}",
                config.partitions
            )));
        }
        let limit = self.config.max_partitions;
        self.update_manifest(|m| {
            if m.topics.contains_key(name) {
                return Err(StorageError::TopicExists(name.to_string()));
            }
            check_partition_limit(m, config.partitions as usize, limit, || {
                format!("topic {name:?} with {} partitions", config.partitions)
            })?;
            m.topics.insert(
                name.to_string(),
                TopicManifest {
                    id,
                    configs: config.configs.clone(),
                    partitions: vec![PartitionManifest::default(); config.partitions as usize],
                    stored_count: None,
                },
            );
            Ok(())
        })
        .await?;
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id,
            partitions: (0..config.partitions)
                .map(|i| self.new_partition(name, id, i))
                .collect(),
            configs: config.configs,
        });
        self.topics.write().insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions = config.partitions, %id, "topic created");
        Ok(topic)
    }

    /// Deletes a topic and (in the background) its objects; in a cluster,
    /// from the catalog first.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.to_completion(move |log| async move { log.delete_topic_inner(&name).await })
            .await
    }

    async fn delete_topic_inner(&self, name: &str) -> Result<()> {
        let catalog = self.catalog.read().clone();
        if let Some(catalog) = catalog {
            if self.topic(name).is_none() {
                return Err(StorageError::UnknownTopic(name.to_string()));
            }
            catalog.unregister(name).await?;
        }
        self.delete_topic_locally_inner(name).await
    }

    /// Deletes a topic from this log only (a cluster node applying the
    /// catalog's deletion).
    pub async fn delete_topic_locally(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.to_completion(move |log| async move { log.delete_topic_locally_inner(&name).await })
            .await
    }

    async fn delete_topic_locally_inner(&self, name: &str) -> Result<()> {
        let _changing = self.topic_changes.lock().await;
        let id = self
            .update_manifest(|m| {
                m.topics
                    .remove(name)
                    .map(|t| t.id)
                    .ok_or_else(|| StorageError::UnknownTopic(name.to_string()))
            })
            .await?;
        self.topics.write().remove(name);
        tracing::info!(topic = name, %id, "topic deleted");
        crate::upload::delete_topic_objects(self.store.clone(), self.layout, id);
        Ok(())
    }

    /// Grows a topic to `total` partitions.
    pub async fn create_partitions(&self, name: &str, total: i32) -> Result<()> {
        let name = name.to_string();
        self.to_completion(
            move |log| async move { log.create_partitions_inner(&name, total).await },
        )
        .await
    }

    async fn create_partitions_inner(&self, name: &str, total: i32) -> Result<()> {
        let catalog = self.catalog.read().clone();
        if let (Some(catalog), Some(topic)) = (catalog, self.topic(name)) {
            let have = topic.partitions.len() as i32;
            if total > have && total <= MAX_PARTITIONS {
                let entry = CatalogTopic {
                    id: topic.id,
                    partitions: total,
                    configs: topic.configs.clone(),
                };
                catalog.update(name, &entry).await?;
            }
        }
        self.create_partitions_locally_inner(name, total).await
    }

    /// Grows a topic in this log only (a cluster node applying the
    /// catalog's change).
    pub async fn create_partitions_locally(&self, name: &str, total: i32) -> Result<()> {
        let name = name.to_string();
        self.to_completion(move |log| async move {
            log.create_partitions_locally_inner(&name, total).await
        })
        .await
    }

    async fn create_partitions_locally_inner(&self, name: &str, total: i32) -> Result<()> {
        let _changing = self.topic_changes.lock().await;
        let topic = self
            .topic(name)
            .ok_or_else(|| StorageError::UnknownTopic(name.to_string()))?;
        let have = topic.partitions.len() as i32;
        if total <= have || total > MAX_PARTITIONS {
            return Err(StorageError::Invalid(format!(
                "topic {name:?} has {have} partitions; the new count {total} must be larger and at most {MAX_PARTITIONS}"
            )));
        }
        let limit = self.config.max_partitions;
        self.update_manifest(|m| {
            let added = m
                .topics
                .get(name)
                .map_or(0, |t| (total as usize).saturating_sub(t.partitions.len()));
            check_partition_limit(m, added, limit, || {
                format!("growing topic {name:?} to {total} partitions")
            })?;
            let t = m
                .topics
                .get_mut(name)
                .ok_or_else(|| StorageError::UnknownTopic(name.to_string()))?;
            t.partitions
                .resize(total as usize, PartitionManifest::default());
            Ok(())
        })
        .await?;
        let mut partitions = topic.partitions.clone();
        partitions.extend((have..total).map(|i| self.new_partition(name, topic.id, i)));
        self.topics.write().insert(
            name.to_string(),
            Arc::new(topic.with_partitions(partitions)),
        );
        Ok(())
    }
}

impl Log {
    /// A partition created now: empty, in this writer's leader epoch.
    fn new_partition(&self, topic: &str, id: Uuid, index: i32) -> Arc<Partition> {
        let p = Partition::new(topic, id, index, &PartitionManifest::default());
        if self.layout.node_id().is_some() {
            // Served once acquired (log/ownership.rs).
            p.stop_serving();
        } else {
            p.start_epoch(crate::epochs::kafka_epoch(self.epoch));
        }
        Arc::new(p)
    }
}

/// Refuses adding `added` partitions when the log would then hold more than
/// `limit`. Counted on the manifest being committed, so concurrent creations
/// cannot both slip under the limit.
fn check_partition_limit(
    m: &Manifest,
    added: usize,
    limit: usize,
    what: impl FnOnce() -> String,
) -> Result<()> {
    let existing: usize = m.topics.values().map(|t| t.partitions.len()).sum();
    let total = existing.saturating_add(added);
    if added > 0 && total > limit {
        return Err(StorageError::TooManyPartitions {
            what: what(),
            total,
            limit,
        });
    }
    Ok(())
}

fn validate_topic_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TOPIC_NAME
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StorageError::Invalid(format!(
            "topic name {name:?} is not valid: use 1–{MAX_TOPIC_NAME} characters of [a-zA-Z0-9._-], not '.' or '..'"
        )))
    }
}

/// Partitions by (topic id, index).
pub(super) type PartitionsById = HashMap<(Uuid, i32), Arc<Partition>>;

/// The in-memory topics of `manifest`, and their partitions by id, as the
/// log opens.
pub(super) fn from_manifest(manifest: &Manifest) -> (BTreeMap<String, Arc<Topic>>, PartitionsById) {
    let mut topics = BTreeMap::new();
    let mut by_id = HashMap::new();
    for (name, t) in &manifest.topics {
        let partitions: Vec<_> = t
            .partitions
            .iter()
            .enumerate()
            .map(|(i, pm)| Arc::new(Partition::new(name, t.id, i as i32, pm)))
            .collect();
        for p in &partitions {
            by_id.insert((t.id, p.index), p.clone());
        }
        topics.insert(
            name.clone(),
            Arc::new(Topic {
                name: name.clone(),
                id: t.id,
                partitions,
                configs: t.configs.clone(),
            }),
        );
    }
    (topics, by_id)
}
