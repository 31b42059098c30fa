//! The seam through which a cluster shares its topics: every node's log
//! holds every topic, under the same id, and a topic created or deleted on
//! one node is registered in the cluster's catalog (the coordinator's
//! metadata) before the node's own manifest changes. Other nodes apply the
//! catalog's changes with [`Log::create_topic_with_id`](crate::Log::create_topic_with_id)
//! and [`Log::delete_topic_locally`](crate::Log::delete_topic_locally).
//! A single broker has no catalog.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Result;

/// A topic as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogTopic {
    /// The topic's id (its partitions' manifests live under it).
    pub id: Uuid,
    /// Number of partitions.
    pub partitions: i32,
    /// Topic-level configs.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// The cluster's topic catalog.
pub trait Catalog: Send + Sync + 'static {
    /// Registers `topic` under `name` if the name is free; returns the
    /// topic already registered under it otherwise.
    fn register<'a>(
        &'a self,
        name: &'a str,
        topic: &'a CatalogTopic,
    ) -> BoxFuture<'a, Result<Option<CatalogTopic>>>;

    /// Records a new partition count or new configs of `name`.
    fn update<'a>(&'a self, name: &'a str, topic: &'a CatalogTopic) -> BoxFuture<'a, Result<()>>;

    /// Removes `name` (a no-op if it is not registered).
    fn unregister<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>>;
}
