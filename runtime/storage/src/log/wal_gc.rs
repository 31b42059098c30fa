//! Collecting a cluster node's WAL objects from its earlier runs.
//!
//! A node deletes the WAL objects it writes once its own uploads cover them
//! (`Wal::delete_through`). The ones it finds at start are kept: their
//! partitions may have moved while it was down, and then they hold the only
//! copy of what it acknowledged until the new leader recovers and uploads
//! it (`recover.rs`). Without a collector they piled up with every restart,
//! and every takeover read them all again. An object found at start goes
//! once everything in it is safe elsewhere:
//!
//! - each of its batches lies below its partition chain's `uploaded_next`
//!   (read from the store: whoever leads the partition now uploaded it),
//!   or its topic is no longer in this node's manifest (deleted: the node
//!   had the topic when it wrote the batch, and its manifest outlives a
//!   restart);
//! - its key/value entries are in the root manifest: replayed at open,
//!   they are committed by this run's first upload (the manifest's WAL
//!   watermark then carries this run's epoch), or were there already
//!   (the manifest's state equals the state at open).

use std::collections::HashMap;
use std::sync::Arc;

use object_store::ObjectStoreExt;
use uuid::Uuid;

use super::Log;
use crate::error::{Result, StorageError};

/// The partitions a WAL object holds batches of, each with its last offset
/// there: (topic id, partition, last offset).
pub(super) type Coverage = Arc<Vec<(Uuid, i32, i64)>>;

impl Log {
    /// Deletes this node's WAL objects from earlier runs whose contents are
    /// safe elsewhere (module docs). `uploaded` is every chain's uploaded
    /// end as just read from the store. Returns how many went.
    pub(crate) async fn collect_found_wal_objects(
        &self,
        uploaded: &HashMap<(Uuid, i32), i64>,
    ) -> Result<usize> {
        let (kv_committed, topics) = {
            let m = self.manifest.lock().await;
            let kv_committed = m.wal_objects_through.is_some_and(|(e, _)| e >= self.epoch)
                || *m.kv() == self.kv_at_open;
            let topics: std::collections::HashSet<Uuid> = m.topics.values().map(|t| t.id).collect();
            (kv_committed, topics)
        };
        if !kv_committed {
            return Ok(0);
        }
        let keys = crate::wal::object::list_objects(self.private.as_ref()).await?;
        let mut deleted = 0;
        for ((epoch, _), key) in keys {
            if epoch >= self.epoch {
                continue; // this run's: `delete_through` owns them
            }
            let Some(coverage) = self.coverage_of(&key).await? else {
                continue; // gone since listed
            };
            let safe = coverage.iter().all(|(topic, partition, last)| {
                !topics.contains(topic)
                    || uploaded
                        .get(&(*topic, *partition))
                        .is_some_and(|next| *next > *last)
            });
            if !safe {
                continue;
            }
            match self.private.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    self.wal_reads.forget_coverage(key.as_ref());
                    deleted += 1;
                }
                Err(e) => return Err(StorageError::store("delete", &key, e)),
            }
        }
        if deleted > 0 {
            tracing::info!(
                deleted,
                "deleted WAL objects of earlier runs whose batches are uploaded"
            );
        }
        Ok(deleted)
    }

    /// What WAL object `key` (in this node's private store) holds; read
    /// once per run, as WAL objects never change. `None` if it is gone.
    async fn coverage_of(&self, key: &object_store::path::Path) -> Result<Option<Coverage>> {
        if let Some(c) = self.wal_reads.coverage(key.as_ref()) {
            return Ok(Some(c));
        }
        let Some(batches) = super::recover::read_batches(self.private.as_ref(), key).await? else {
            return Ok(None);
        };
        let mut last: HashMap<(Uuid, i32), i64> = HashMap::new();
        for (topic, partition, batch) in batches.iter() {
            let end = match vigil_protocol::batch::validate(batch) {
                Ok(h) => h.last_offset(),
                Err(e) => {
                    // Never covered: an operator decides what to do with it.
                    tracing::warn!(%key, %topic, partition, error = %e, "a WAL object of an earlier run holds a corrupt batch; keeping it");
                    i64::MAX
                }
            };
            let at = last.entry((*topic, *partition)).or_insert(end);
            *at = (*at).max(end);
        }
        let coverage: Coverage = Arc::new(last.into_iter().map(|((t, p), o)| (t, p, o)).collect());
        self.wal_reads
            .keep_coverage(key.to_string(), coverage.clone());
        Ok(Some(coverage))
    }
}
