//! Producer ids: handed out in blocks recorded in the root manifest, from
//! a range of its own for each cluster node.

use std::sync::atomic::Ordering;

use super::{Log, PRODUCER_ID_BLOCK};
use crate::error::Result;

/// Bits of a cluster node's producer ids below its node number.
const PRODUCER_ID_NODE_SHIFT: u32 = 40;

/// First producer id of `layout`'s range: each cluster node hands out ids
/// from its own range (node id + 1 above bit 40), so ids are unique across
/// the cluster without asking the others; a single broker's start at 0.
pub(super) fn producer_id_base(layout: crate::paths::Layout) -> i64 {
    layout
        .node_id()
        .map_or(0, |n| (i64::from(n) + 1) << PRODUCER_ID_NODE_SHIFT)
}

impl Log {
    /// A producer id never handed out before, by any broker on this store.
    pub async fn allocate_producer_id(&self) -> Result<i64> {
        self.to_completion(|log| async move { log.allocate_producer_id_inner().await })
            .await
    }

    async fn allocate_producer_id_inner(&self) -> Result<i64> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let start = self
                .update_manifest(|m| {
                    let start = m.next_producer_id;
                    m.next_producer_id += PRODUCER_ID_BLOCK;
                    Ok(start)
                })
                .await?;
            let start = producer_id_base(self.layout) + start;
            *ids = (start, start + PRODUCER_ID_BLOCK);
            self.issued_producer_ids
                .fetch_max(start + PRODUCER_ID_BLOCK, Ordering::SeqCst);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Producer ids at or above this were never handed out, as far as this
    /// log can tell for `producer_id`: a cluster node knows only its own
    /// range, and takes ids of other nodes' ranges on trust (the number of
    /// producers a partition tracks stays bounded either way).
    pub(crate) fn issued_below(&self, producer_id: i64) -> i64 {
        let base = producer_id_base(self.layout);
        if base != 0 && producer_id >> PRODUCER_ID_NODE_SHIFT != base >> PRODUCER_ID_NODE_SHIFT {
            return i64::MAX;
        }
        self.issued_producer_ids.load(Ordering::SeqCst)
    }
}
