//! Committed group offsets kept in the log's durable key/value state.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use vigil_storage::Log;

use crate::{CommittedOffset, GroupCoordinator, GroupStore, GroupStoreError, OffsetKey};

/// A committed offset as stored (JSON), by this store and by a cluster's
/// store in the coordinator's metadata.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    offset: i64,
    leader_epoch: i32,
    metadata: Option<String>,
    commit_timestamp_ms: i64,
}

/// Encodes a committed offset as stored.
pub fn encode_offset(c: &CommittedOffset) -> Option<String> {
    serde_json::to_string(&Stored {
        offset: c.offset,
        leader_epoch: c.leader_epoch,
        metadata: c.metadata.clone(),
        commit_timestamp_ms: c.commit_timestamp_ms,
    })
    .ok()
}

/// Decodes a stored committed offset.
pub fn decode_offset(s: &str) -> Option<CommittedOffset> {
    let s: Stored = serde_json::from_str(s).ok()?;
    Some(CommittedOffset {
        offset: s.offset,
        leader_epoch: s.leader_epoch,
        metadata: s.metadata,
        commit_timestamp_ms: s.commit_timestamp_ms,
    })
}

/// Key of an offset in the key/value state (built by `vigil_storage::kvkeys`).
fn kv_key(k: &OffsetKey) -> String {
    vigil_storage::kvkeys::group_offset(&k.group, &k.topic, k.partition)
}

fn parse_key(key: &str) -> Option<OffsetKey> {
    let (group, topic, partition) = vigil_storage::kvkeys::parse_group_offset(key)?;
    Some(OffsetKey {
        group,
        topic,
        partition,
    })
}

/// [`GroupStore`] backed by the log.
pub struct LogGroupStore {
    log: Arc<Log>,
}

impl LogGroupStore {
    /// A store over `log`.
    pub fn new(log: Arc<Log>) -> Self {
        Self { log }
    }

    /// Loads every committed offset found at open into the coordinator.
    pub fn restore_into(&self, coordinator: &GroupCoordinator) -> usize {
        let mut n = 0;
        for (k, v) in self
            .log
            .kv_at_open()
            .range(vigil_storage::kvkeys::group_offset_prefix().to_string()..)
        {
            if !k.starts_with(vigil_storage::kvkeys::group_offset_prefix()) {
                break;
            }
            match (parse_key(k), decode_offset(v)) {
                (Some(key), Some(offset)) => {
                    coordinator.restore(key, Some(offset));
                    n += 1;
                }
                _ => tracing::warn!(key = %k, "ignoring an unreadable committed offset"),
            }
        }
        n
    }

    /// Durably removes offsets (e.g. of a deleted topic).
    pub fn delete(&self, keys: &[OffsetKey]) -> BoxFuture<'static, Result<(), GroupStoreError>> {
        self.persist(keys.iter().map(|k| (k.clone(), None)).collect())
    }
}

impl GroupStore for LogGroupStore {
    fn persist(
        &self,
        entries: Vec<(OffsetKey, Option<CommittedOffset>)>,
    ) -> BoxFuture<'static, Result<(), GroupStoreError>> {
        let kv: Vec<(String, Option<String>)> = entries
            .iter()
            .map(|(k, v)| {
                let value = v.as_ref().and_then(encode_offset);
                (kv_key(k), value)
            })
            .collect();
        self.log
            .kv_put(kv)
            .map(|r| {
                r.map_err(|e| {
                    // A fenced broker is no longer the coordinator: clients
                    // should look for the new one, as after a retriable error.
                    if e.is_retriable() || matches!(e, vigil_storage::StorageError::Fenced { .. }) {
                        GroupStoreError::retriable(e.to_string())
                    } else {
                        GroupStoreError::fatal(e.to_string())
                    }
                })
            })
            .boxed()
    }

    fn partition_exists(&self, topic: &str, partition: i32) -> bool {
        self.log.partition(topic, partition).is_ok()
    }

    /// The log's clock, so one injected clock drives retention and offset expiry alike.
    fn now_ms(&self) -> i64 {
        self.log.clock().now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_with_any_group_name() {
        let k = OffsetKey {
            group: "we/ird \"group\"".into(),
            topic: "t.1".into(),
            partition: 7,
        };
        assert_eq!(parse_key(&kv_key(&k)), Some(k));
        assert_eq!(parse_key("offsets/[1]"), None);
    }
}
