//! Compaction by key, for topics with `cleanup.policy` containing
//! `compact`: the uploaded part of such a partition is rewritten so that
//! only the latest record of each key remains, keeping every record's
//! offset (consumers see gaps, as in Kafka). The tail that is not uploaded
//! yet is left alone, like Kafka's active segment.
//!
//! A pass reads a partition's uploaded runs, keeps the record with the
//! highest offset per key (records without a key, written before the policy
//! changed, are kept: there is nothing to compact them by), writes one
//! segment object and replaces the runs it read with it in one manifest
//! commit, provided the partition still starts with exactly those runs. A
//! partition already reduced to one key-compacted segment with nothing
//! uploaded since is skipped. Tombstones (null values) are kept; Kafka's
//! `delete.retention.ms` is not applied (design note 0013).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use vigil_protocol::batch::{decode_records, RecordBatches, DEFAULT_DECOMPRESSED_LIMIT};
use vigil_protocol::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions,
};

use crate::error::{Result, StorageError};
use crate::log::Log;
use crate::manifest::SegmentMeta;
use crate::partition::Partition;
use crate::paths;

/// Most bytes of uploaded runs one pass reads for a partition. A larger
/// partition is skipped (and logged): compacting it would hold all of it in
/// memory at once.
pub const MAX_KEY_COMPACTION_BYTES: u64 = 256 << 20;

/// What one key-compaction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeyCompactionStats {
    /// Partitions rewritten.
    pub partitions: usize,
    /// Records dropped because a later record has the same key.
    pub records_dropped: usize,
}

/// Whether topic configs ask for compaction by key.
pub fn is_compacted(configs: &std::collections::BTreeMap<String, String>) -> bool {
    configs
        .get("cleanup.policy")
        .is_some_and(|p| p.split(',').any(|x| x.trim() == "compact"))
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt {
        what: "run",
        key: key.to_string(),
        reason: e.to_string(),
    }
}

/// The decoded batches of `body` (a partition's uploaded runs, back to
/// back), each as its records.
fn decode_all(body: Bytes, from: &str) -> Result<Vec<(Vec<Record>, Compression)>> {
    let mut out = Vec::new();
    for item in RecordBatches::new(body) {
        let (_, mut batch) = item.map_err(|e| corrupt(from, e))?;
        let set =
            decode_records(&mut batch, DEFAULT_DECOMPRESSED_LIMIT).map_err(|e| corrupt(from, e))?;
        out.push((set.records, set.compression));
    }
    Ok(out)
}

/// For batches of records in offset order: keeps the last record of each
/// key (and every keyless record), returning the kept batches (empty ones
/// left out) and how many records were dropped.
pub(crate) fn keep_latest<C: Copy>(
    batches: Vec<(Vec<Record>, C)>,
) -> (Vec<(Vec<Record>, C)>, usize) {
    let mut latest: HashMap<Bytes, i64> = HashMap::new();
    for (records, _) in &batches {
        for r in records {
            if let Some(k) = &r.key {
                let e = latest.entry(k.clone()).or_insert(r.offset);
                *e = (*e).max(r.offset);
            }
        }
    }
    let mut dropped = 0;
    let kept = batches
        .into_iter()
        .filter_map(|(records, c)| {
            let before = records.len();
            let records: Vec<Record> = records
                .into_iter()
                .filter(|r| {
                    r.key
                        .as_ref()
                        .is_none_or(|k| latest.get(k) == Some(&r.offset))
                })
                .collect();
            dropped += before - records.len();
            (!records.is_empty()).then_some((records, c))
        })
        .collect();
    (kept, dropped)
}

impl Log {
    /// Compacts by key every partition of every compacted topic that has
    /// something new to compact.
    pub async fn compact_keys_once(&self) -> Result<KeyCompactionStats> {
        let mut stats = KeyCompactionStats::default();
        for topic in self.topics() {
            if !is_compacted(&topic.configs) {
                continue;
            }
            // Only the leader changes a partition (a cluster node leads some).
            for p in topic.partitions.iter().filter(|p| p.is_serving()) {
                if let Some(dropped) = self.compact_partition_keys(p).await? {
                    stats.partitions += 1;
                    stats.records_dropped += dropped;
                }
            }
        }
        if stats.partitions > 0 {
            tracing::info!(?stats, "key compaction committed");
        }
        Ok(stats)
    }

    /// One partition's pass: `Some(records dropped)` if it committed.
    async fn compact_partition_keys(&self, p: &Arc<Partition>) -> Result<Option<usize>> {
        let segs = p.segments();
        let done = segs.len() == 1 && paths::is_keyed_segment(&segs[0].key);
        if segs.is_empty() || done {
            return Ok(None);
        }
        let total: u64 = segs.iter().map(|s| s.size).sum();
        if total > MAX_KEY_COMPACTION_BYTES {
            tracing::warn!(topic = %p.topic, partition = p.index, bytes = total, limit = MAX_KEY_COMPACTION_BYTES, "partition too large to compact by key in one pass; skipped");
            return Ok(None);
        }
        let body = self.read_runs(&segs).await?;
        let from = format!("{}-{} key compaction input", p.topic, p.index);
        let (kept, dropped) = keep_latest(decode_all(body.freeze(), &from)?);
        let mut out = BytesMut::new();
        for (records, compression) in &kept {
            RecordBatchEncoder::encode(
                &mut out,
                records.iter(),
                &RecordEncodeOptions {
                    version: 2,
                    compression: *compression,
                },
            )
            .map_err(|e| corrupt(&from, format!("cannot re-encode kept records: {e:#}")))?;
        }
        let seq = self
            .next_object_seq
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let key =
            self.layout
                .keyed_segment(p.topic_id, p.index, segs[0].base_offset, self.epoch, seq);
        // The offset range stays that of the runs replaced, so the next run
        // still follows on.
        let merged = self.put_segment(key, &out, &segs).await?;
        let name = |s: &SegmentMeta| format!("{}@{}", s.key, s.start);
        let replaced: Vec<String> = segs.iter().map(name).collect();
        let committed = self
            .update_manifest(|m| {
                let Some(pm) = m.partition_mut(p) else {
                    return Ok(false);
                };
                // Retention or the run compactor may have changed the front
                // meanwhile: then this pass is void (its object is garbage).
                let same = pm.segments.len() >= replaced.len()
                    && pm
                        .segments
                        .iter()
                        .take(replaced.len())
                        .map(name)
                        .eq(replaced.iter().cloned());
                if !same {
                    return Ok(false);
                }
                pm.segments.splice(..replaced.len(), [merged.clone()]);
                Ok(true)
            })
            .await?;
        if !committed {
            return Ok(None);
        }
        p.replace_segments(&replaced, merged);
        p.evict_uploaded();
        tracing::debug!(topic = %p.topic, partition = p.index, dropped, "partition compacted by key");
        Ok(Some(dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64, key: Option<&'static [u8]>) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: vigil_protocol::kafka_protocol::records::TimestampType::Creation,
            offset,
            sequence: -1,
            timestamp: 0,
            key: key.map(Bytes::from_static),
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
        }
    }

    #[test]
    fn keeps_the_last_record_of_each_key_and_keyless_ones() {
        let batches = vec![
            (
                vec![rec(0, Some(b"a")), rec(1, Some(b"b")), rec(2, None)],
                (),
            ),
            (vec![rec(3, Some(b"a"))], ()),
            (vec![rec(4, Some(b"b")), rec(5, Some(b"c"))], ()),
        ];
        let (kept, dropped) = keep_latest(batches);
        assert_eq!(dropped, 2);
        let offsets: Vec<Vec<i64>> = kept
            .iter()
            .map(|(rs, _)| rs.iter().map(|r| r.offset).collect())
            .collect();
        assert_eq!(offsets, vec![vec![2], vec![3], vec![4, 5]]);
    }

    #[test]
    fn policy_lists_are_read_item_by_item() {
        let mut c = std::collections::BTreeMap::new();
        assert!(!is_compacted(&c));
        c.insert("cleanup.policy".into(), "delete, compact".into());
        assert!(is_compacted(&c));
        c.insert("cleanup.policy".into(), "delete".into());
        assert!(!is_compacted(&c));
    }
}
