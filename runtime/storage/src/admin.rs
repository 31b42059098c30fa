//! Administrative changes to topics and partitions that Kafka's admin APIs
//! ask for: replacing a topic's configs (AlterConfigs) and moving a
//! partition's log start offset forward (DeleteRecords). Each is one manifest
//! update followed by the in-memory view, like topic creation.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Result, StorageError};
use crate::log::{Log, Topic};
use crate::partition::Partition;
use crate::producer::ProducerSnapshot;

impl Log {
    /// Replaces the configs of topic `name` with `configs` (validated by
    /// the caller: the log stores strings). Persisted in the manifest, and
    /// in effect for every later lookup of the topic (produce limits,
    /// retention, compaction read the topic's configs each time).
    pub async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>> {
        let name = name.to_string();
        self.to_completion(
            move |log| async move { log.set_topic_configs_inner(&name, configs).await },
        )
        .await
    }

    async fn set_topic_configs_inner(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>> {
        let topic = self
            .topic(name)
            .ok_or_else(|| StorageError::UnknownTopic(name.to_string()))?;
        self.update_manifest(|m| {
            let t = m
                .topics
                .get_mut(name)
                .filter(|t| t.id == topic.id)
                .ok_or_else(|| StorageError::UnknownTopic(name.to_string()))?;
            t.configs = configs.clone();
            Ok(())
        })
        .await?;
        let updated = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partitions.clone(),
            configs,
        });
        {
            let mut topics = self.topics.write();
            // A concurrent delete (or delete and re-create) wins: only the
            // topic this change was made on is replaced.
            if topics.get(name).is_some_and(|t| t.id == topic.id) {
                topics.insert(name.to_string(), updated.clone());
            }
        }
        tracing::info!(topic = name, "topic configs changed");
        Ok(updated)
    }

    /// Moves the log start offset of `p` forward to `offset` (DeleteRecords):
    /// records below it are no longer readable, and retention drops the
    /// uploaded runs that lie wholly below it. `offset` must lie between the
    /// current log start and the high watermark; an offset at or below the
    /// current start changes nothing. Returns the new log start offset.
    pub async fn delete_records(&self, p: &Arc<Partition>, offset: i64) -> Result<i64> {
        let p = Arc::clone(p);
        self.to_completion(move |log| async move { log.delete_records_inner(&p, offset).await })
            .await
    }

    async fn delete_records_inner(&self, p: &Arc<Partition>, offset: i64) -> Result<i64> {
        let (start, hw) = (p.log_start_offset(), p.high_watermark());
        if offset > hw || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                topic: p.topic.clone(),
                partition: p.index,
                offset,
                start,
                end: hw,
            });
        }
        if offset <= start {
            return Ok(start);
        }
        self.update_manifest(|m| {
            let pm = m
                .partition_mut(p)
                .ok_or_else(|| StorageError::UnknownPartition {
                    topic: p.topic.clone(),
                    partition: p.index,
                })?;
            pm.log_start_offset = pm.log_start_offset.max(offset);
            Ok(())
        })
        .await?;
        let new_start = p.advance_log_start(offset);
        tracing::info!(topic = %p.topic, partition = p.index, log_start_offset = new_start, "records deleted");
        Ok(new_start)
    }
}

impl Partition {
    /// Raises the log start offset to `offset` (never lowers it) and drops
    /// cached batches wholly below it. Uploaded runs below it stay listed
    /// until retention drops them; reads below it are refused before they
    /// reach a run. Returns the log start offset now in effect.
    pub(crate) fn advance_log_start(&self, offset: i64) -> i64 {
        let mut st = self.state.lock();
        st.log_start_offset = st.log_start_offset.max(offset);
        // Only batches already uploaded may leave the cache: the cache must
        // keep everything at or above `uploaded_next` for the uploader.
        while let Some(b) = st.cache.front() {
            let last = b.header.last_offset();
            if last >= st.log_start_offset || last >= st.uploaded_next {
                break;
            }
            st.cache_bytes -= b.bytes.len();
            st.cache.pop_front();
        }
        st.log_start_offset
    }

    /// Drops every cached batch that is already uploaded, so that reads of
    /// that range go to the segments (after compaction by key rewrote
    /// them, the cache would still show the records it dropped).
    pub(crate) fn evict_uploaded(&self) {
        let mut st = self.state.lock();
        while let Some(b) = st.cache.front() {
            if b.header.last_offset() >= st.uploaded_next {
                break;
            }
            st.cache_bytes -= b.bytes.len();
            st.cache.pop_front();
        }
    }

    /// The idempotent producers this partition remembers (DescribeProducers).
    pub fn producer_snapshot(&self) -> Vec<ProducerSnapshot> {
        self.state.lock().producers.snapshot()
    }

    /// Bytes of the partition's log: uploaded runs plus batches only in the
    /// WAL and the log cache (DescribeLogDirs).
    pub fn size_bytes(&self) -> u64 {
        let st = self.state.lock();
        let uploaded: u64 = st.segments.iter().map(|s| s.size).sum();
        let pending: u64 = st
            .cache
            .iter()
            .filter(|b| b.header.base_offset >= st.uploaded_next)
            .map(|b| b.bytes.len() as u64)
            .sum();
        uploaded + pending
    }
}
