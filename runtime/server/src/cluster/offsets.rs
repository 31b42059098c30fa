//! Committed group offsets of a cluster, in the coordinator's metadata (one
//! key per group and partition), so that they outlive the node that
//! coordinated the group: groups hash over the live nodes
//! ([`Cluster::group_coordinator`](super::Cluster::group_coordinator)), and
//! when the nodes change, every node reloads the offsets (`restore_all`).

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use vigil_coord::keys::meta;
use vigil_coord::{Coordinator, Expect};
use vigil_groups::log_store::{decode_offset, encode_offset};
use vigil_groups::{CommittedOffset, GroupCoordinator, GroupStore, GroupStoreError, OffsetKey};
use vigil_storage::Log;

/// [`GroupStore`] over the coordinator's metadata.
pub struct MetaGroupStore {
    coord: Arc<dyn Coordinator>,
    log: Arc<Log>,
}

impl MetaGroupStore {
    /// A store over `coord`; `log` tells which partitions exist.
    pub fn new(coord: Arc<dyn Coordinator>, log: Arc<Log>) -> Self {
        MetaGroupStore { coord, log }
    }
}

impl GroupStore for MetaGroupStore {
    fn persist(
        &self,
        entries: Vec<(OffsetKey, Option<CommittedOffset>)>,
    ) -> BoxFuture<'static, Result<(), GroupStoreError>> {
        let coord = self.coord.clone();
        async move {
            let writes = entries.into_iter().map(|(k, v)| {
                let coord = coord.clone();
                async move {
                    let key = meta::group_offset(&k.group, &k.topic, k.partition);
                    let res = match v.as_ref().and_then(encode_offset) {
                        Some(json) => coord
                            .meta_put(&key, Bytes::from(json), Expect::Any)
                            .await
                            .map(|_| ()),
                        None => coord.meta_delete(&key, Expect::Any).await,
                    };
                    res.map_err(|e| {
                        let message = format!("group {:?}: {e}", k.group);
                        if e.is_retriable() {
                            GroupStoreError::retriable(message)
                        } else {
                            GroupStoreError::fatal(message)
                        }
                    })
                }
            });
            futures::future::try_join_all(writes).await.map(|_| ())
        }
        .boxed()
    }

    fn partition_exists(&self, topic: &str, partition: i32) -> bool {
        self.log.partition(topic, partition).is_ok()
    }

    fn now_ms(&self) -> i64 {
        self.log.clock().now_ms()
    }
}

/// Loads every committed offset into `groups` (what other coordinators
/// committed since this node last coordinated a group wins).
pub async fn restore_all(
    coord: &Arc<dyn Coordinator>,
    groups: &GroupCoordinator,
) -> Result<usize, vigil_coord::CoordError> {
    let entries = coord.meta_list(meta::group_offsets()).await?;
    let mut n = 0;
    for v in entries {
        let parsed = meta::parse_group_offset(&v.key)
            .zip(std::str::from_utf8(&v.value).ok().and_then(decode_offset));
        match parsed {
            Some(((group, topic, partition), offset)) => {
                groups.restore(
                    OffsetKey {
                        group,
                        topic,
                        partition,
                    },
                    Some(offset),
                );
                n += 1;
            }
            None => tracing::warn!(key = %v.key, "ignoring an unreadable committed offset"),
        }
    }
    Ok(n)
}
