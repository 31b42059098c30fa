//! Collecting cluster nodes' WAL objects that a node's own WAL no longer
//! deletes: its own from earlier runs, and those of nodes that died.
//!
//! A node deletes the WAL objects it writes once its own uploads cover them
//! (`Wal::delete_through`). The ones it finds at start are kept: their
//! partitions may have moved while it was down, and then they hold the only
//! copy of what it acknowledged until the new leader recovers and uploads
//! it (`recover.rs`). A node that died and never came back leaves its last
//! objects behind in the same way. Without a collector they piled up with
//! every restart and every departure, and every takeover read them all
//! again. An object goes once everything in it is safe elsewhere:
//!
//! - each of its batches lies below its partition chain's `uploaded_next`
//!   (read from the store: whoever leads the partition now uploaded it).
//!   A batch of a topic this node's manifest does not list is safe in the
//!   node's own objects (it had the topic when it wrote the batch, and its
//!   manifest outlives a restart, so the topic was deleted); in another
//!   node's objects it keeps the object, as this node cannot tell a
//!   deleted topic from one it has not heard of yet;
//! - its key/value entries are committed by its writer's root manifest: for
//!   this node, replayed at open and committed by this run's first upload
//!   (the manifest's WAL watermark then carries this run's epoch), or there
//!   already (the manifest's state equals the state at open); for another
//!   node, the object is at or below that node's stored WAL watermark (a
//!   node that comes back replays only what is above it).
//!
//! Another node's object is looked at only once it is older than the
//! collector's grace period (`gc_grace`): a running node deletes its own
//! well before, and reading them here would double the cluster's WAL reads.
//!
//! Both facts only ever become true, so a decision taken on a read of them
//! stays right. Deleting another node's object while that node still runs
//! is harmless too: its takeover reads and its own collector skip an object
//! that is gone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use uuid::Uuid;

use super::Log;
use crate::error::{Result, StorageError};
use crate::manifest::ManifestStore;
use crate::paths::Layout;
use crate::wal::object::Listed;

/// What a WAL object holds, for its collector.
pub(super) struct Contents {
    /// The partitions it holds batches of, each with its last offset there:
    /// (topic id, partition, last offset).
    batches: Vec<(Uuid, i32, i64)>,
    /// Whether it also holds key/value entries.
    holds_kv: bool,
}

/// Shared, as WAL objects never change: read once per run.
pub(super) type Coverage = Arc<Contents>;

/// What decides whether a WAL object may go (module docs).
struct Safe<'a> {
    /// Every chain's uploaded end, as just read from the store.
    uploaded: &'a HashMap<(Uuid, i32), i64>,
    /// The topics this node's manifest lists.
    topics: &'a HashSet<Uuid>,
}

impl Safe<'_> {
    /// Whether every batch in `c` is safe elsewhere; `own` says whether
    /// this node wrote the object (see the module docs on unknown topics).
    fn batches(&self, c: &Contents, own: bool) -> bool {
        c.batches.iter().all(|(topic, partition, last)| {
            if !self.topics.contains(topic) {
                return own;
            }
            self.uploaded
                .get(&(*topic, *partition))
                .is_some_and(|next| *next > *last)
        })
    }
}

impl Log {
    /// Deletes this node's WAL objects from earlier runs, and other nodes'
    /// WAL objects, whose contents are safe elsewhere (module docs).
    /// `uploaded` is every chain's uploaded end as just read from the
    /// store, `others` the other nodes' directories
    /// ([`other_node_dirs`](Log::other_node_dirs)). Returns how many went.
    pub(crate) async fn collect_found_wal_objects(
        &self,
        uploaded: &HashMap<(Uuid, i32), i64>,
        others: &[(Path, Layout)],
    ) -> Result<usize> {
        let (kv_committed, topics) = {
            let m = self.manifest.lock().await;
            let kv_committed = m.wal_objects_through.is_some_and(|(e, _)| e >= self.epoch)
                || *m.kv() == self.kv_at_open;
            let topics: HashSet<Uuid> = m.topics.values().map(|t| t.id).collect();
            (kv_committed, topics)
        };
        let safe = Safe {
            uploaded,
            topics: &topics,
        };
        let mut deleted = 0;
        if kv_committed {
            deleted += self.collect_own(&safe).await?;
        }
        deleted += self.collect_other_nodes(&safe, others).await?;
        if deleted > 0 {
            tracing::info!(
                deleted,
                "deleted WAL objects of earlier runs or departed nodes whose batches are uploaded"
            );
        }
        Ok(deleted)
    }

    /// This node's objects from earlier runs.
    async fn collect_own(&self, safe: &Safe<'_>) -> Result<usize> {
        let store = self.private.clone();
        let keys = crate::wal::object::list_objects(store.as_ref()).await?;
        let mut deleted = 0;
        for Listed {
            position: (epoch, _),
            key,
            ..
        } in keys
        {
            if epoch >= self.epoch {
                continue; // this run's: `delete_through` owns them
            }
            let cache_key = key.to_string();
            let Some(c) = self.coverage_of(store.as_ref(), &key, &cache_key).await? else {
                continue; // gone since listed
            };
            if safe.batches(&c, true) {
                deleted += self
                    .delete_wal_object(store.as_ref(), &key, &cache_key)
                    .await?;
            }
        }
        Ok(deleted)
    }

    /// Every other node's objects, whether it runs, restarts or is gone;
    /// only those older than the collector's grace period (`gc_grace`).
    /// A running node deletes its own within an upload interval or two,
    /// so reading them here would only double every node's reads of every
    /// other's WAL: what is left that long belongs to a departed node, or
    /// to one whose uploads are stuck (where reading it costs little).
    async fn collect_other_nodes(
        &self,
        safe: &Safe<'_>,
        others: &[(Path, Layout)],
    ) -> Result<usize> {
        let old_enough =
            crate::retention::collectable_before(self.clock.now_ms(), self.config.gc_grace);
        let mut deleted = 0;
        for (dir, layout) in others {
            let store = layout.private_store(self.store.clone());
            let keys = crate::wal::object::list_objects(store.as_ref()).await?;
            // That node's WAL watermark, read once and only if needed.
            let mut watermark: Option<Option<(u64, u64)>> = None;
            for Listed {
                position,
                key,
                written,
            } in keys
            {
                if written > old_enough {
                    continue;
                }
                // The same key as the takeover's reads use.
                let cache_key = format!("{dir}/{key}");
                let Some(c) = self.coverage_of(store.as_ref(), &key, &cache_key).await? else {
                    continue;
                };
                if !safe.batches(&c, false) {
                    continue;
                }
                if c.holds_kv {
                    let through = match watermark {
                        Some(w) => w,
                        None => {
                            let m = ManifestStore::with_layout(self.store.clone(), *layout)
                                .load_latest_bare()
                                .await?;
                            let w = m.and_then(|m| m.wal_objects_through);
                            watermark = Some(w);
                            w
                        }
                    };
                    if through.is_none_or(|t| position > t) {
                        continue; // replayed if that node comes back
                    }
                }
                deleted += self
                    .delete_wal_object(store.as_ref(), &key, &cache_key)
                    .await?;
            }
        }
        Ok(deleted)
    }

    /// Deletes one WAL object (gone already counts); returns 1.
    async fn delete_wal_object(
        &self,
        store: &dyn ObjectStore,
        key: &Path,
        cache_key: &str,
    ) -> Result<usize> {
        match store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                self.wal_reads.forget_coverage(cache_key);
                Ok(1)
            }
            Err(e) => Err(StorageError::store("delete", key, e)),
        }
    }

    /// What WAL object `key` in `store` holds, cached as `cache_key`; read
    /// once per run, as WAL objects never change. `None` if it is gone.
    async fn coverage_of(
        &self,
        store: &dyn ObjectStore,
        key: &Path,
        cache_key: &str,
    ) -> Result<Option<Coverage>> {
        if let Some(c) = self.wal_reads.coverage(cache_key) {
            return Ok(Some(c));
        }
        let Some((batches, holds_kv)) = super::recover::read_batches(store, key).await? else {
            return Ok(None);
        };
        let mut last: HashMap<(Uuid, i32), i64> = HashMap::new();
        for (topic, partition, batch) in batches.iter() {
            let end = match vigil_protocol::batch::validate(batch) {
                Ok(h) => h.last_offset(),
                Err(e) => {
                    // Never covered: an operator decides what to do with it.
                    tracing::warn!(%key, %topic, partition, error = %e, "a WAL object holds a corrupt batch; keeping it");
                    i64::MAX
                }
            };
            let at = last.entry((*topic, *partition)).or_insert(end);
            *at = (*at).max(end);
        }
        let coverage: Coverage = Arc::new(Contents {
            batches: last.into_iter().map(|((t, p), o)| (t, p, o)).collect(),
            holds_kv,
        });
        self.wal_reads
            .keep_coverage(cache_key.to_string(), coverage.clone());
        Ok(Some(coverage))
    }
}
