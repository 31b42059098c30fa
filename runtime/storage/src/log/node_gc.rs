//! Collecting other cluster nodes' data objects and segments: those of a
//! node that died and never came back, whose prefix nobody else collects.
//!
//! A node's collector deletes what its own prefix holds that no partition
//! chain references. Partitions move, so the chains of a departed node's
//! partitions, now led by others, keep referencing its segments until
//! retention or compaction drops them; then nothing ever deleted them.
//! The same rule holds for any node's `objects/` and `data/`: an object no
//! partition chain references and older than the grace period (`gc_grace`)
//! goes, with two differences from the own-prefix collector:
//!
//! - the references come from every chain in the store (listed under
//!   `parts/`), not only from the topics this node's manifest lists, so a
//!   topic this node has not heard of yet still protects its objects;
//! - only `objects/` and `data/`: the node's manifests and the state
//!   objects they reference stay, for a node that comes back under its id.
//!
//! Why the grace period is enough: a writer puts an object, then commits
//! the chain that references it, seconds apart. One that stalls between the
//! two longer than the grace period has lost its session long before (its
//! TTL is seconds), so its partitions moved and its commit is refused at
//! its old epoch: the object can never become referenced.

use std::collections::HashSet;

use uuid::Uuid;

use super::Log;
use crate::error::{Result, StorageError};
use crate::paths::Layout;
use object_store::path::Path;
use object_store::ObjectStoreExt;

impl Log {
    /// Every partition chain in the store (from one listing of `parts/`).
    pub(crate) async fn chains_in_store(&self) -> Result<HashSet<(Uuid, i32)>> {
        let listed =
            crate::store::list_all(self.store.as_ref(), &crate::paths::parts_prefix()).await?;
        Ok(listed
            .iter()
            .filter_map(|m| crate::paths::parse_part_key(&m.location))
            .map(|(topic, partition, _)| (topic, partition))
            .collect())
    }

    /// Deletes the data objects and segments of the other nodes (`others`,
    /// [`other_node_dirs`](Log::other_node_dirs)) that no chain references
    /// (`referenced`: every chain's, module docs) and that are older than
    /// the grace period. Returns how many went.
    pub(crate) async fn collect_other_nodes_objects(
        &self,
        referenced: &HashSet<String>,
        others: &[(Path, Layout)],
    ) -> Result<usize> {
        let old_enough =
            crate::retention::collectable_before(self.clock.now_ms(), self.config.gc_grace);
        let mut deleted = 0;
        for (_, layout) in others {
            let mut listed = Vec::new();
            for prefix in [layout.data_objects_prefix(), layout.segments_prefix()] {
                listed.extend(crate::store::list_all(self.store.as_ref(), &prefix).await?);
            }
            deleted += self
                .delete_unreferenced(listed, referenced, old_enough)
                .await?;
        }
        if deleted > 0 {
            tracing::info!(
                deleted,
                "deleted other nodes' data objects and segments no partition references"
            );
        }
        Ok(deleted)
    }

    /// Deletes those of `listed` that are not `referenced` and were written
    /// no later than `old_enough`; returns how many went (gone already
    /// counts).
    pub(crate) async fn delete_unreferenced(
        &self,
        listed: Vec<object_store::ObjectMeta>,
        referenced: &HashSet<String>,
        old_enough: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize> {
        let mut deleted = 0;
        for meta in listed {
            let key = meta.location.to_string();
            if referenced.contains(&key) || meta.last_modified > old_enough {
                continue;
            }
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    self.runs.cache().evict_object(&key);
                    deleted += 1;
                }
                Err(e) => return Err(StorageError::store("delete", &meta.location, e)),
            }
        }
        Ok(deleted)
    }
}
