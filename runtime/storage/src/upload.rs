//! The uploader: moves durable WAL data into segment objects, commits them to
//! the manifest, then reclaims the WAL.
//!
//! Order matters for crash safety: (1) roll the WAL, so the sealed segments
//! hold only data that is already durable and visible; (2) PUT segment
//! objects; (3) commit the manifest; (4) delete sealed WAL segments. A crash
//! before (3) leaves the WAL intact, and the re-upload after restart writes
//! the same keys (epoch + base offset) again; a crash before (4) leaves WAL
//! entries that replay skips because their offsets are below the manifest's.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use futures::{stream, StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::error::{Result, StorageError};
use crate::log::Log;
use crate::manifest::SegmentMeta;
use crate::partition::{CachedBatch, Partition};
use crate::paths;
use crate::producer::ProducerStates;

/// Segment objects are cut at about this size.
const SEGMENT_TARGET_BYTES: usize = 16 << 20;
/// Concurrent PUTs per upload cycle.
const UPLOAD_CONCURRENCY: usize = 8;

/// What one upload cycle did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UploadStats {
    /// Segment objects written.
    pub segments: usize,
    /// Bytes written.
    pub bytes: u64,
    /// WAL segment files deleted.
    pub wal_segments_deleted: usize,
}

struct Planned {
    partition: Arc<Partition>,
    batches: Vec<CachedBatch>,
    meta: SegmentMeta,
}

impl Log {
    /// Runs one upload cycle.
    pub async fn upload_once(&self) -> Result<UploadStats> {
        let sealed = self.wal.roll().await?;
        let mut planned = Vec::new();
        for topic in self.topics() {
            for p in &topic.partitions {
                if let Some((batches, _cut)) = p.pending_upload() {
                    for chunk in chunk_batches(batches) {
                        planned.push(plan(p.clone(), chunk, self.epoch));
                    }
                }
            }
        }
        let kv_changed = self.manifest.lock().await.kv != sealed.kv;
        let mut stats = UploadStats::default();
        if !planned.is_empty() || kv_changed {
            // Futures collected in a loop rather than through `map(|pl| ..)`:
            // a borrowing closure there trips rustc's higher-ranked Send check
            // when this future is spawned.
            let mut puts = Vec::with_capacity(planned.len());
            for pl in &planned {
                puts.push(self.put_segment(pl));
            }
            stream::iter(puts)
                .buffer_unordered(UPLOAD_CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await?;
            let kv = sealed.kv;
            self.update_manifest(|m| {
                for pl in &planned {
                    let p = &pl.partition;
                    let Some(pm) = m
                        .topics
                        .get_mut(&p.topic)
                        .filter(|t| t.id == p.topic_id)
                        .and_then(|t| t.partitions.get_mut(p.index as usize))
                    else {
                        continue; // deleted while uploading
                    };
                    let mut producers = ProducerStates::from_snapshot(&pm.producers);
                    for b in &pl.batches {
                        producers.record(&b.header);
                    }
                    pm.producers = producers.snapshot();
                    pm.uploaded_next = pl.meta.next_offset;
                    pm.segments.push(pl.meta.clone());
                }
                m.kv = kv;
                Ok(())
            })
            .await?;
            for pl in &planned {
                pl.partition
                    .uploaded(pl.meta.clone(), self.config.cache_bytes_per_partition);
                stats.segments += 1;
                stats.bytes += pl.meta.size;
            }
            self.stats.uploads.fetch_add(1, Ordering::Relaxed);
            self.stats
                .uploaded_bytes
                .fetch_add(stats.bytes, Ordering::Relaxed);
        }
        stats.wal_segments_deleted = self.wal.delete_through(sealed.sealed_through)?;
        if stats.segments > 0 {
            tracing::debug!(?stats, "upload committed");
        }
        Ok(stats)
    }

    async fn put_segment(&self, pl: &Planned) -> Result<()> {
        let mut body = BytesMut::with_capacity(pl.meta.size as usize);
        for b in &pl.batches {
            body.extend_from_slice(&b.bytes);
        }
        let key = object_store::path::Path::from(pl.meta.key.as_str());
        self.store
            .put(&key, PutPayload::from(body.freeze()))
            .await
            .map_err(|source| StorageError::ObjectStore {
                op: "put",
                key: pl.meta.key.clone(),
                source,
            })?;
        Ok(())
    }

    /// Starts the periodic uploader; it stops when `shutdown` turns true.
    pub fn spawn_uploader(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(log.config.upload_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                if let Err(e) = log.upload_once().await {
                    log.stats.upload_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, retriable = e.is_retriable(), "upload failed; will retry");
                }
            }
        })
    }
}

fn chunk_batches(batches: Vec<CachedBatch>) -> Vec<Vec<CachedBatch>> {
    let mut out = vec![Vec::new()];
    let mut size = 0;
    for b in batches {
        if size >= SEGMENT_TARGET_BYTES {
            out.push(Vec::new());
            size = 0;
        }
        size += b.bytes.len();
        if let Some(last) = out.last_mut() {
            last.push(b);
        }
    }
    out.retain(|c| !c.is_empty());
    out
}

fn plan(partition: Arc<Partition>, batches: Vec<CachedBatch>, epoch: u64) -> Planned {
    let base = batches.first().map_or(0, |b| b.header.base_offset);
    let next = batches.last().map_or(base, |b| b.header.last_offset() + 1);
    let meta = SegmentMeta {
        key: paths::segment(partition.topic_id, partition.index, base, epoch).to_string(),
        base_offset: base,
        next_offset: next,
        size: batches.iter().map(|b| b.bytes.len() as u64).sum(),
        max_timestamp: batches
            .iter()
            .map(|b| b.header.max_timestamp)
            .max()
            .unwrap_or(-1),
    };
    Planned {
        partition,
        batches,
        meta,
    }
}

/// Deletes a deleted topic's objects in the background. Failures are logged;
/// the objects are unreachable from the manifest either way.
pub(crate) fn delete_topic_objects(store: Arc<dyn ObjectStore>, id: Uuid) {
    tokio::spawn(async move {
        let prefix = paths::topic_data_prefix(id);
        let keys = store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
        let mut deleted = store.delete_stream(keys);
        while let Some(r) = deleted.next().await {
            if let Err(e) = r {
                tracing::warn!(topic_id = %id, error = %e, "could not delete a segment of a deleted topic");
            }
        }
    });
}
