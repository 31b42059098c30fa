//! The read path: the log cache for the tail, objects below it.
//!
//! Below the cache, a partition's batches live in runs (a byte range of a
//! data object). A read walks the run's batch headers in chunks through the
//! block cache, which turns sequential catch-up reads into readahead. A small
//! map of position hints remembers where the previous read of a run stopped,
//! so a consumer's next fetch resumes there instead of walking from the run's
//! start.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use vigil_protocol::batch::inflate::{decode_records, DEFAULT_DECOMPRESSED_LIMIT};
use vigil_protocol::batch::{BatchError, BatchHeader};

use crate::cache::BlockCache;
use crate::error::{Result, StorageError};
use crate::manifest::SegmentMeta;
use crate::partition::Partition;

/// Bytes fetched per step when walking a run.
const WALK_CHUNK: u64 = 1 << 20;
/// Position hints kept (cleared wholesale when full: they are only hints).
const MAX_HINTS: usize = 16_384;

/// Batches returned by a read.
#[derive(Debug, Clone)]
pub struct FetchedBatches {
    /// Concatenated whole batches; the first contains the requested offset.
    pub records: Bytes,
    /// High watermark at the time of the read.
    pub high_watermark: i64,
    /// Log start offset.
    pub log_start_offset: i64,
    /// Whether the data came from the object store (for metrics).
    pub from_object_store: bool,
}

/// Result of a lookup by timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampLookup {
    /// First offset whose record timestamp is ≥ the target.
    pub offset: i64,
    /// That record's timestamp.
    pub timestamp: i64,
}

/// Reads runs through the block cache.
pub struct RunReader {
    cache: Arc<BlockCache>,
    /// (object key, run start, next offset) → byte position of the batch
    /// holding that offset.
    hints: Mutex<HashMap<(String, u64, i64), u64>>,
}

impl RunReader {
    /// A reader over `cache`.
    pub fn new(cache: Arc<BlockCache>) -> Self {
        Self {
            cache,
            hints: Mutex::new(HashMap::new()),
        }
    }

    /// The block cache (for stats and eviction).
    pub fn cache(&self) -> &Arc<BlockCache> {
        &self.cache
    }

    /// Calls `f` with each whole batch of `seg` in order, starting at the
    /// batch holding `from` (or the nearest hint before it), until `f`
    /// breaks or the run ends.
    async fn walk(
        &self,
        seg: &SegmentMeta,
        from: i64,
        mut f: impl FnMut(&BatchHeader, &Bytes) -> ControlFlow<()>,
    ) -> Result<()> {
        let object_size = if seg.object_size == 0 {
            seg.start + seg.size
        } else {
            seg.object_size
        };
        let end = seg.start + seg.size;
        let mut pos = self
            .hints
            .lock()
            .get(&(seg.key.clone(), seg.start, from))
            .copied()
            .filter(|p| (seg.start..end).contains(p))
            .unwrap_or(seg.start);
        let mut chunk = WALK_CHUNK;
        // Where the next read is likely to start; remembered once, on exit.
        let mut resume = None;
        'chunks: while pos < end {
            let data = self
                .cache
                .get_range(&seg.key, object_size, pos..end.min(pos + chunk))
                .await?;
            let mut at = 0usize;
            while at < data.len() {
                let h = match BatchHeader::parse(&data[at..]) {
                    Ok(h) => h,
                    // A header cut by the chunk boundary: fetch from it.
                    Err(vigil_protocol::BatchError::Truncated { .. }) => break,
                    Err(e) => return Err(corrupt(seg, e.to_string())),
                };
                if at + h.total_len() > data.len() {
                    break;
                }
                let batch_pos = pos + at as u64;
                let bytes = data.slice(at..at + h.total_len());
                at += h.total_len();
                if h.last_offset() < from {
                    continue;
                }
                if f(&h, &bytes).is_break() {
                    resume = Some((h.base_offset, batch_pos));
                    break 'chunks;
                }
                resume = Some((h.last_offset() + 1, pos + at as u64));
            }
            if at == 0 {
                // A single batch larger than the chunk: widen the window.
                if chunk >= seg.size {
                    return Err(corrupt(seg, format!("truncated batch at byte {pos}")));
                }
                chunk = (chunk * 2).min(seg.size);
            }
            pos += at as u64;
        }
        if let Some((next_offset, at)) = resume {
            self.remember(seg, next_offset, at);
        }
        Ok(())
    }

    fn remember(&self, seg: &SegmentMeta, next_offset: i64, pos: u64) {
        let mut h = self.hints.lock();
        if h.len() >= MAX_HINTS {
            h.clear();
        }
        h.insert((seg.key.clone(), seg.start, next_offset), pos);
    }
}

fn corrupt(seg: &SegmentMeta, reason: String) -> StorageError {
    StorageError::Corrupt {
        what: "segment",
        key: format!("{}@{}", seg.key, seg.start),
        reason,
    }
}

/// Appends a batch unless it is past the high watermark or would overflow
/// `max_bytes` (the first batch always goes in, as Kafka does, so that a
/// large batch can never stall a consumer).
fn take(
    out: &mut BytesMut,
    h: &BatchHeader,
    bytes: &Bytes,
    hw: i64,
    max_bytes: usize,
) -> ControlFlow<()> {
    if h.last_offset() >= hw || (!out.is_empty() && out.len() + bytes.len() > max_bytes) {
        return ControlFlow::Break(());
    }
    out.extend_from_slice(bytes);
    ControlFlow::Continue(())
}

/// Reads from `offset` on.
pub(crate) async fn read(
    p: &Partition,
    runs: &RunReader,
    offset: i64,
    max_bytes: usize,
) -> Result<FetchedBatches> {
    let hw = p.high_watermark();
    let mut out = BytesMut::new();
    let (start, segment) = {
        let st = p.state.lock();
        let start = st.log_start_offset;
        if offset < start || offset > hw {
            return Err(StorageError::OffsetOutOfRange {
                topic: p.topic.clone(),
                partition: p.index,
                offset,
                start,
                end: hw,
            });
        }
        let cached_from = st
            .cache
            .front()
            .map_or(st.next_offset, |b| b.header.base_offset);
        if offset >= cached_from || offset == hw {
            for b in st.cached_from(offset) {
                if take(&mut out, &b.header, &b.bytes, hw, max_bytes).is_break() {
                    break;
                }
            }
            (start, None)
        } else {
            (start, segment_for(&st.segments, offset).cloned())
        }
    };
    let from_object_store = segment.is_some();
    if let Some(seg) = segment {
        runs.walk(&seg, offset, |h, b| take(&mut out, h, b, hw, max_bytes))
            .await?;
    }
    Ok(FetchedBatches {
        records: out.freeze(),
        high_watermark: hw,
        log_start_offset: start,
        from_object_store,
    })
}

/// The segment holding `offset`, or the first one after it (offsets may have
/// gaps).
fn segment_for(segments: &[SegmentMeta], offset: i64) -> Option<&SegmentMeta> {
    let i = segments.partition_point(|s| s.next_offset <= offset);
    segments.get(i)
}

/// Finds the first record with timestamp ≥ `ts`.
pub(crate) async fn offset_for_timestamp(
    p: &Partition,
    runs: &RunReader,
    ts: i64,
) -> Result<Option<TimestampLookup>> {
    let hw = p.high_watermark();
    let (segments, cached): (Vec<SegmentMeta>, Vec<(BatchHeader, Bytes)>) = {
        let st = p.state.lock();
        let cached_from = st
            .cache
            .front()
            .map_or(st.next_offset, |b| b.header.base_offset);
        (
            st.segments
                .iter()
                .filter(|s| s.base_offset < cached_from && s.max_timestamp >= ts)
                .cloned()
                .collect(),
            st.cache
                .iter()
                .filter(|b| b.header.max_timestamp >= ts && b.header.last_offset() < hw)
                .map(|b| (b.header, b.bytes.clone()))
                .collect(),
        )
    };
    for seg in &segments {
        let mut hit = Ok(None);
        runs.walk(seg, seg.base_offset, |h, bytes| {
            if h.max_timestamp >= ts && h.last_offset() < hw {
                hit = first_at_or_after(p, h, bytes.clone(), ts);
            }
            match hit {
                Ok(None) => ControlFlow::Continue(()),
                _ => ControlFlow::Break(()),
            }
        })
        .await?;
        if let Some(found) = hit? {
            return Ok(Some(found));
        }
    }
    for b in cached {
        if let Some(found) = first_at_or_after(p, &b.0, b.1, ts)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Decodes one batch (decompressing it, at most to the broker's cap) to find
/// the exact record. A batch that does not decode is an error rather than
/// "no match": skipping it would answer with a later offset than the truth.
fn first_at_or_after(
    p: &Partition,
    h: &BatchHeader,
    batch: Bytes,
    ts: i64,
) -> Result<Option<TimestampLookup>> {
    first_record_at_or_after(batch, ts).map_err(|e| {
        tracing::warn!(topic = %p.topic, partition = p.index, base_offset = h.base_offset, error = %e, "ListOffsets by timestamp: record batch refused");
        StorageError::Corrupt {
            what: "record batch",
            key: format!("{}-{}@{}", p.topic, p.index, h.base_offset),
            reason: e.to_string(),
        }
    })
}

/// The first record of `batch` with timestamp ≥ `ts`, decoded with the
/// shared bounded decompressor.
fn first_record_at_or_after(
    mut batch: Bytes,
    ts: i64,
) -> std::result::Result<Option<TimestampLookup>, BatchError> {
    let set = decode_records(&mut batch, DEFAULT_DECOMPRESSED_LIMIT)?;
    Ok(set
        .records
        .iter()
        .find(|r| r.timestamp >= ts)
        .map(|r| TimestampLookup {
            offset: r.offset,
            timestamp: r.timestamp,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::batch::BatchBuilder;
    use vigil_protocol::kafka_protocol::records::Compression as Codec;

    #[test]
    fn lookup_finds_the_record_in_a_compressed_batch() {
        let b = BatchBuilder::new(Codec::Zstd)
            .record(10, None, Some(Bytes::from("a")))
            .record(20, None, Some(Bytes::from("b")))
            .build()
            .unwrap();
        let hit = first_record_at_or_after(b, 15).unwrap().unwrap();
        assert_eq!((hit.offset, hit.timestamp), (1, 20));
    }

    #[test]
    fn a_compression_bomb_is_refused_at_the_cap() {
        // One record of 64 MiB of zeros, zstd-compressed: a few KiB.
        let bomb = BatchBuilder::new(Codec::Zstd)
            .record(10, None, Some(Bytes::from(vec![0u8; 64 << 20])))
            .build()
            .unwrap();
        assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
        match first_record_at_or_after(bomb, 0) {
            Err(BatchError::TooLarge { limit, .. }) => {
                assert_eq!(limit, DEFAULT_DECOMPRESSED_LIMIT)
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
}
