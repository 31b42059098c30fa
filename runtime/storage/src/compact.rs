//! The compactor: merges a partition's small runs (slices of shared,
//! multi-partition data objects) into one per-partition segment object with
//! an offset/time index, so that the manifest stays short, reads touch one
//! object per stretch of log, and shared objects can be collected once no run
//! references them.
//!
//! Segment object layout:
//! ```text
//! [batches][index: n × (offset i64, position u64, max_timestamp i64)][n u32][crc32c u32]["VGS1"]
//! ```
//! One index entry per ~[`INDEX_INTERVAL`] bytes of batches: the first batch
//! at or after each step, with the largest timestamp seen up to it.

use std::sync::atomic::Ordering;

use bytes::{BufMut, Bytes, BytesMut};
use object_store::{ObjectStoreExt, PutPayload};
use vigil_protocol::batch::RecordBatches;

use crate::error::{Result, StorageError};
use crate::log::Log;
use crate::manifest::SegmentMeta;

/// Runs smaller than this are worth merging.
const SMALL_RUN: u64 = 8 << 20;
/// A partition is compacted once it has this many small runs in a row.
const MIN_RUNS: usize = 8;
/// Upper bound of one merged segment.
const SEGMENT_TARGET: u64 = 64 << 20;
/// Bytes of batches between index entries.
pub const INDEX_INTERVAL: u64 = 256 << 10;
const SEGMENT_MAGIC: &[u8; 4] = b"VGS1";

/// What one compaction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompactionStats {
    /// Segment objects written.
    pub segments: usize,
    /// Runs they replaced.
    pub runs_merged: usize,
}

fn is_shared(seg: &SegmentMeta) -> bool {
    seg.key.starts_with("objects/")
}

/// The first stretch of small shared runs worth merging: `(from, to)` indexes.
fn pick(segs: &[SegmentMeta]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < segs.len() {
        if !(is_shared(&segs[i]) && segs[i].size < SMALL_RUN) {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut bytes = 0;
        while j < segs.len()
            && is_shared(&segs[j])
            && segs[j].size < SMALL_RUN
            && bytes + segs[j].size <= SEGMENT_TARGET
        {
            bytes += segs[j].size;
            j += 1;
        }
        if j - i >= MIN_RUNS {
            return Some((i, j));
        }
        i = j.max(i + 1);
    }
    None
}

/// Builds a segment object from concatenated batches; returns it and the
/// byte length of the batches part.
pub fn build_segment(batches: &[u8]) -> Result<(Bytes, u64)> {
    let mut index = BytesMut::new();
    let mut next_mark = 0u64;
    let mut max_ts = i64::MIN;
    let mut n = 0u32;
    let mut pos = 0u64;
    for item in RecordBatches::new(Bytes::copy_from_slice(batches)) {
        let (h, b) = item.map_err(|e| StorageError::Corrupt {
            what: "run",
            key: "(compaction input)".into(),
            reason: e.to_string(),
        })?;
        max_ts = max_ts.max(h.max_timestamp);
        if pos >= next_mark {
            index.put_i64(h.base_offset);
            index.put_u64(pos);
            index.put_i64(max_ts);
            n += 1;
            next_mark = pos + INDEX_INTERVAL;
        }
        pos += b.len() as u64;
    }
    let mut out = BytesMut::with_capacity(batches.len() + index.len() + 12);
    out.extend_from_slice(batches);
    let crc = crc32c::crc32c(&index);
    out.extend_from_slice(&index);
    out.put_u32(n);
    out.put_u32(crc);
    out.put_slice(SEGMENT_MAGIC);
    Ok((out.freeze(), batches.len() as u64))
}

impl Log {
    /// The batches of `runs` (one partition's, in order), back to back.
    pub(crate) async fn read_runs(&self, runs: &[SegmentMeta]) -> Result<BytesMut> {
        let mut body = BytesMut::new();
        for s in runs {
            let object_size = if s.object_size == 0 {
                s.start + s.size
            } else {
                s.object_size
            };
            let bytes = self
                .runs
                .cache()
                .get_range(&s.key, object_size, s.start..s.start + s.size)
                .await?;
            body.extend_from_slice(&bytes);
        }
        Ok(body)
    }

    /// Writes `batches` as segment object `key` standing for `replaced`
    /// (consecutive runs: the segment covers their whole offset range) and
    /// returns its manifest entry. Nothing references it until committed.
    pub(crate) async fn put_segment(
        &self,
        key: object_store::path::Path,
        batches: &[u8],
        replaced: &[SegmentMeta],
    ) -> Result<SegmentMeta> {
        let (object, size) = build_segment(batches)?;
        self.store
            .put(&key, PutPayload::from(object.clone()))
            .await
            .map_err(|source| StorageError::ObjectStore {
                op: "put",
                key: key.to_string(),
                source,
            })?;
        Ok(SegmentMeta {
            key: key.to_string(),
            start: 0,
            object_size: object.len() as u64,
            base_offset: replaced.first().map_or(0, |s| s.base_offset),
            next_offset: replaced.last().map_or(0, |s| s.next_offset),
            size,
            max_timestamp: replaced.iter().map(|s| s.max_timestamp).max().unwrap_or(-1),
        })
    }

    /// Runs of shared data objects still waiting to be compacted.
    pub fn compaction_backlog(&self) -> usize {
        self.topics()
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.segments().iter().filter(|s| is_shared(s)).count())
            .sum()
    }

    /// Merges, for every partition that has enough small runs, one stretch of
    /// them into a segment object.
    pub async fn compact_once(&self) -> Result<CompactionStats> {
        let mut stats = CompactionStats::default();
        for topic in self.topics() {
            // Only the leader changes a partition (a cluster node leads some).
            for p in topic.partitions.iter().filter(|p| p.is_serving()) {
                let segs = p.segments();
                let Some((from, to)) = pick(&segs) else {
                    continue;
                };
                let chosen = &segs[from..to];
                let body = self.read_runs(chosen).await?;
                let key =
                    self.layout
                        .segment(p.topic_id, p.index, chosen[0].base_offset, self.epoch);
                let merged = self.put_segment(key, &body, chosen).await?;
                let replaced: Vec<String> = chosen
                    .iter()
                    .map(|s| format!("{}@{}", s.key, s.start))
                    .collect();
                let committed = self
                    .update_manifest(|m| {
                        let Some(pm) = m.partition_mut(p) else {
                            return Ok(false);
                        };
                        // Retention may have dropped some of them meanwhile.
                        let Some(at) = pm
                            .segments
                            .iter()
                            .position(|s| format!("{}@{}", s.key, s.start) == replaced[0])
                        else {
                            return Ok(false);
                        };
                        let same = pm.segments[at..]
                            .iter()
                            .take(replaced.len())
                            .map(|s| format!("{}@{}", s.key, s.start))
                            .eq(replaced.iter().cloned());
                        if !same {
                            return Ok(false);
                        }
                        pm.segments
                            .splice(at..at + replaced.len(), [merged.clone()]);
                        Ok(true)
                    })
                    .await?;
                if committed {
                    p.replace_segments(&replaced, merged);
                    stats.segments += 1;
                    stats.runs_merged += replaced.len();
                }
            }
        }
        if stats.segments > 0 {
            self.stats
                .compactions
                .fetch_add(stats.segments as u64, Ordering::Relaxed);
            tracing::debug!(?stats, "compaction committed");
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(key: &str, size: u64) -> SegmentMeta {
        SegmentMeta {
            key: key.into(),
            start: 0,
            object_size: size,
            base_offset: 0,
            next_offset: 1,
            size,
            max_timestamp: 0,
        }
    }

    #[test]
    fn picks_the_first_stretch_of_enough_small_shared_runs() {
        let mut segs: Vec<_> = (0..3).map(|i| run(&format!("objects/a{i}"), 10)).collect();
        segs.push(run("data/t/00000/x.seg", 10)); // already compacted: breaks the stretch
        segs.extend((0..MIN_RUNS).map(|i| run(&format!("objects/b{i}"), 10)));
        assert_eq!(pick(&segs), Some((4, 4 + MIN_RUNS)));
        assert_eq!(pick(&segs[..4 + MIN_RUNS - 1]), None);
        let big: Vec<_> = (0..MIN_RUNS)
            .map(|i| run(&format!("objects/c{i}"), SMALL_RUN))
            .collect();
        assert_eq!(pick(&big), None, "large runs are left alone");
    }
}
