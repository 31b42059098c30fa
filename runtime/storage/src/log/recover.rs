//! Taking over a partition from a node that died: what it acknowledged but
//! did not upload is in its WAL objects (`nodes/<id>/wal/`), which a cluster
//! node never deletes before the batches in them are uploaded by whoever
//! leads their partitions. The new leader reads them from the object store
//! and appends, after the partition's uploaded end, the batches that
//! continue it. So a cluster runs the object WAL: with the local WAL, what a
//! dead node acknowledged and did not upload would be on its disk only.
//!
//! Several nodes may have written the same offsets: a leader that was cut
//! off wrote (never acknowledged) batches after its successor took over. For
//! each offset the batch of the highest leader epoch wins, as in Kafka's
//! log truncation by leader epoch.

use std::collections::BTreeMap;

use super::Log;
use crate::error::{Result, StorageError};
use crate::partition::Partition;
use crate::paths::{self, Layout};
use crate::wal::WalEntry;
use bytes::Bytes;

impl Log {
    /// Appends to `p` (just loaded from its partition manifest, not yet
    /// serving) the batches of every node's WAL objects that continue its
    /// uploaded log. Returns how many were recovered.
    pub(super) async fn recover_from_wal_objects(&self, p: &Partition) -> Result<usize> {
        let listing = self
            .store
            .list_with_delimiter(Some(&paths::nodes_prefix()))
            .await
            .map_err(|e| StorageError::store("list", &paths::nodes_prefix(), e))?;
        // base offset -> (leader epoch, last offset, bytes)
        let mut found: BTreeMap<i64, (i32, i64, Bytes)> = BTreeMap::new();
        for dir in listing.common_prefixes {
            let Some(layout) = Layout::parse_node_dir(&dir) else {
                continue;
            };
            let store = layout.private_store(self.store.clone());
            let (entries, _) = crate::wal::object::read_objects(store.as_ref(), None).await?;
            for entry in entries {
                let WalEntry::Batch {
                    topic_id,
                    partition,
                    batch,
                } = entry
                else {
                    continue;
                };
                if topic_id != p.topic_id || partition != p.index {
                    continue;
                }
                let Ok(h) = vigil_protocol::batch::validate(&batch) else {
                    tracing::warn!(topic = %p.topic, partition, node = ?layout.node_id(), "skipping a corrupt batch in a WAL object");
                    continue;
                };
                let newer = found
                    .get(&h.base_offset)
                    .is_none_or(|(epoch, _, _)| h.partition_leader_epoch > *epoch);
                if newer {
                    found.insert(
                        h.base_offset,
                        (h.partition_leader_epoch, h.last_offset(), batch),
                    );
                }
            }
        }
        let mut next = p.next_offset();
        let mut recovered = 0;
        for (base, (_, last, batch)) in found.range(next..) {
            if *base != next {
                break;
            }
            p.replay(batch.clone()).map_err(|e| {
                StorageError::Invalid(format!(
                    "{}-{}: recovered batch at offset {base}: {e}",
                    p.topic, p.index
                ))
            })?;
            next = last + 1;
            recovered += 1;
        }
        Ok(recovered)
    }
}
