//! The read path: the log cache for the tail, segment objects below it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use object_store::{path::Path, ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;
use vigil_protocol::batch::RecordBatches;
use vigil_protocol::kafka_protocol::records::RecordBatchDecoder;

use crate::error::{Result, StorageError};
use crate::manifest::SegmentMeta;
use crate::partition::Partition;

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

/// A bounded in-memory cache of segment objects (least recently inserted
/// evicted first).
pub struct SegmentCache {
    store: Arc<dyn ObjectStore>,
    capacity: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<String, Bytes>,
    order: VecDeque<String>,
    bytes: usize,
}

impl SegmentCache {
    /// A cache over `store` holding at most `capacity` bytes.
    pub fn new(store: Arc<dyn ObjectStore>, capacity: usize) -> Self {
        Self {
            store,
            capacity,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    /// A segment's batches (a byte range of its object), from memory or
    /// the store.
    pub async fn get(&self, seg: &SegmentMeta) -> Result<Bytes> {
        let cache_key = format!("{}@{}", seg.key, seg.start);
        let key = cache_key.as_str();
        if let Some(b) = self.inner.lock().map.get(key) {
            return Ok(b.clone());
        }
        let path = Path::from(seg.key.as_str());
        let bytes = self
            .store
            .get_range(&path, seg.start..seg.start + seg.size)
            .await
            .map_err(|source| StorageError::ObjectStore {
                op: "get",
                key: seg.key.clone(),
                source,
            })?;
        let mut c = self.inner.lock();
        if !c.map.contains_key(key) && bytes.len() <= self.capacity {
            c.map.insert(key.to_string(), bytes.clone());
            c.order.push_back(key.to_string());
            c.bytes += bytes.len();
            while c.bytes > self.capacity {
                let Some(old) = c.order.pop_front() else {
                    break;
                };
                if let Some(b) = c.map.remove(&old) {
                    c.bytes -= b.len();
                }
            }
        }
        Ok(bytes)
    }

    /// Forgets a key (its object was deleted).
    pub fn evict(&self, key: &str) {
        let mut c = self.inner.lock();
        if let Some(b) = c.map.remove(key) {
            c.bytes -= b.len();
            c.order.retain(|k| k != key);
        }
    }
}

/// Appends whole batches from `batches` that end below `hw` and contain or
/// follow `offset`, up to `max_bytes` (always at least one batch, as Kafka
/// does so that a large batch can never stall a consumer).
fn take_batches<'a>(
    batches: impl Iterator<Item = (i64, i64, &'a Bytes)>,
    offset: i64,
    hw: i64,
    max_bytes: usize,
    out: &mut BytesMut,
) {
    for (base, last, bytes) in batches {
        if last < offset {
            continue;
        }
        if base >= hw || last >= hw {
            break;
        }
        if !out.is_empty() && out.len() + bytes.len() > max_bytes {
            break;
        }
        out.extend_from_slice(bytes);
    }
}

/// Reads from `offset` on.
pub(crate) async fn read(
    p: &Partition,
    cache: &SegmentCache,
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
            take_batches(
                st.cache
                    .iter()
                    .map(|b| (b.header.base_offset, b.header.last_offset(), &b.bytes)),
                offset,
                hw,
                max_bytes,
                &mut out,
            );
            (start, None)
        } else {
            (start, segment_for(&st.segments, offset).cloned())
        }
    };
    let from_object_store = segment.is_some();
    if let Some(seg) = segment {
        let data = cache.get(&seg).await?;
        let batches: Vec<_> = RecordBatches::new(data)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| StorageError::Corrupt {
                what: "segment",
                key: seg.key.clone(),
                reason: e.to_string(),
            })?;
        take_batches(
            batches
                .iter()
                .map(|(h, b)| (h.base_offset, h.last_offset(), b)),
            offset,
            hw,
            max_bytes,
            &mut out,
        );
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
    cache: &SegmentCache,
    ts: i64,
) -> Result<Option<TimestampLookup>> {
    let hw = p.high_watermark();
    let (segments, cached): (Vec<SegmentMeta>, Vec<Bytes>) = {
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
                .map(|b| b.bytes.clone())
                .collect(),
        )
    };
    for seg in &segments {
        let data = cache.get(seg).await?;
        for item in RecordBatches::new(data) {
            let (h, bytes) = item.map_err(|e| StorageError::Corrupt {
                what: "segment",
                key: seg.key.clone(),
                reason: e.to_string(),
            })?;
            if h.max_timestamp >= ts && h.last_offset() < hw {
                if let Some(hit) = first_at_or_after(bytes, ts) {
                    return Ok(Some(hit));
                }
            }
        }
    }
    for bytes in cached {
        if let Some(hit) = first_at_or_after(bytes, ts) {
            return Ok(Some(hit));
        }
    }
    Ok(None)
}

/// Decodes one batch (decompressing it) to find the exact record.
fn first_at_or_after(mut batch: Bytes, ts: i64) -> Option<TimestampLookup> {
    let set = RecordBatchDecoder::decode(&mut batch).ok()?;
    set.records
        .iter()
        .find(|r| r.timestamp >= ts)
        .map(|r| TimestampLookup {
            offset: r.offset,
            timestamp: r.timestamp,
        })
}
