//! The uploader: moves durable WAL data into data objects (one object holds
//! runs of many partitions, so a cycle costs one PUT however many partitions
//! had data), commits them to the manifest, then reclaims the WAL.
//!
//! Order matters for crash safety: (1) roll the WAL, so the sealed segments
//! hold only data that is already durable and visible; (2) PUT data objects;
//! (3) commit the manifest; (4) delete sealed WAL segments. A crash before (3)
//! leaves the WAL intact and an object no manifest references (the restart
//! bumps the epoch, so the re-upload uses new keys; unreferenced objects are
//! garbage for the collector); a crash before (4) leaves WAL entries that
//! replay skips because their offsets are below the manifest's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::{stream, StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::dataobj::{DataObjectBuilder, Run};
use crate::error::{Result, StorageError};
use crate::log::Log;
use crate::manifest::SegmentMeta;
use crate::partition::{CachedBatch, Partition};
use crate::paths;
use crate::producer::ProducerStates;

/// Data objects are cut at about this size.
const OBJECT_TARGET_BYTES: usize = 64 << 20;
/// Concurrent PUTs per upload cycle.
const UPLOAD_CONCURRENCY: usize = 8;

/// What one upload cycle did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UploadStats {
    /// Data objects written.
    pub objects: usize,
    /// Partition runs written (across all objects).
    pub runs: usize,
    /// Bytes written.
    pub bytes: u64,
    /// WAL segment files deleted.
    pub wal_segments_deleted: usize,
}

/// One partition's run in a planned object.
struct Member {
    partition: Arc<Partition>,
    batches: Vec<CachedBatch>,
    meta: SegmentMeta,
}

/// A data object about to be written.
struct PlannedObject {
    key: object_store::path::Path,
    body: PutPayload,
}

/// Packs pending runs into data objects of about [`OBJECT_TARGET_BYTES`].
struct Packer {
    layout: paths::Layout,
    epoch: u64,
    seq: Arc<AtomicU64>,
    builder: DataObjectBuilder,
    pending: Vec<(Arc<Partition>, Vec<CachedBatch>, Run)>,
    objects: Vec<PlannedObject>,
    members: Vec<Member>,
}

impl Packer {
    fn add(&mut self, p: &Arc<Partition>, batches: Vec<CachedBatch>) {
        let size: usize = batches.iter().map(|b| b.bytes.len()).sum();
        if !self.builder.is_empty() && self.builder.len() + size > OBJECT_TARGET_BYTES {
            self.flush();
        }
        if let Some(run) = self.builder.add_run(p.topic_id, p.index, &batches) {
            self.pending.push((p.clone(), batches, run));
        }
    }

    fn flush(&mut self) {
        if self.builder.is_empty() {
            return;
        }
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let key = self.layout.data_object(self.epoch, seq);
        let (chunks, len, _) = std::mem::take(&mut self.builder).finish_chunks();
        let body: PutPayload = chunks.into_iter().collect();
        for (partition, batches, run) in self.pending.drain(..) {
            self.members.push(Member {
                partition,
                batches,
                meta: SegmentMeta {
                    key: key.to_string(),
                    start: run.start,
                    object_size: len as u64,
                    base_offset: run.base_offset,
                    next_offset: run.next_offset,
                    size: run.len,
                    max_timestamp: run.max_timestamp,
                },
            });
        }
        self.objects.push(PlannedObject { key, body });
    }
}

impl Log {
    /// Runs one upload cycle: everything durable goes into as few data
    /// objects as its size allows, one PUT each, then one manifest commit.
    pub async fn upload_once(&self) -> Result<UploadStats> {
        if self.is_fenced() {
            // Anything PUT now could never be committed: it would only
            // become garbage.
            return Err(StorageError::Fenced {
                ours: self.epoch,
                theirs: self.epoch + 1,
                by: "a newer broker".into(),
            });
        }
        let t0 = std::time::Instant::now();
        let sealed = self.wal.roll().await?;
        let rolled = t0.elapsed();
        let mut pending = Vec::new();
        for topic in self.topics() {
            for p in &topic.partitions {
                if let Some((batches, _cut)) = p.pending_upload() {
                    pending.push((p.clone(), batches));
                }
            }
        }
        // Copying up to an upload interval's worth of data into objects is
        // CPU work that must not stall the runtime's workers (and with them
        // produce acks): it runs on the blocking pool.
        let mut packer = Packer {
            layout: self.layout,
            epoch: self.epoch,
            seq: self.next_object_seq.clone(),
            builder: DataObjectBuilder::new(),
            pending: Vec::new(),
            objects: Vec::new(),
            members: Vec::new(),
        };
        let (objects, members) = tokio::task::spawn_blocking(move || {
            for (p, batches) in pending {
                for chunk in chunk_batches(batches) {
                    packer.add(&p, chunk);
                }
            }
            packer.flush();
            (packer.objects, packer.members)
        })
        .await
        .map_err(|e| StorageError::Invalid(format!("upload packing task failed: {e}")))?;
        let packed = t0.elapsed();
        let mut put = packed;
        let kv_changed = *self.manifest.lock().await.kv() != sealed.kv;
        let mut stats = UploadStats::default();
        if !members.is_empty() || kv_changed {
            // Futures collected in a loop rather than through `map(|o| ..)`:
            // a borrowing closure there trips rustc's higher-ranked Send check
            // when this future is spawned.
            let mut puts = Vec::with_capacity(objects.len());
            for o in &objects {
                puts.push(self.put_object(o));
            }
            stream::iter(puts)
                .buffer_unordered(UPLOAD_CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await?;
            put = t0.elapsed();
            let kv = sealed.kv;
            let wal_through = match (&self.config.wal_mode, sealed.sealed_through) {
                (crate::config::WalMode::Object { .. }, Some(t)) => Some((self.epoch, t)),
                _ => None,
            };
            self.update_manifest(|m| {
                for mem in &members {
                    let p = &mem.partition;
                    let Some(pm) = m.partition_mut(p) else {
                        continue; // deleted while uploading
                    };
                    let mut producers = ProducerStates::from_snapshot(pm.producers());
                    for b in &mem.batches {
                        producers.record(&b.header);
                    }
                    pm.set_producers(producers.snapshot());
                    pm.uploaded_next = mem.meta.next_offset;
                    pm.segments.push(mem.meta.clone());
                    pm.leader_epochs = p.epoch_history();
                }
                m.set_kv(kv);
                if wal_through.is_some() {
                    m.wal_objects_through = wal_through;
                }
                Ok(())
            })
            .await?;
            for mem in &members {
                mem.partition
                    .uploaded(mem.meta.clone(), self.config.cache_bytes_per_partition);
                stats.bytes += mem.meta.size;
            }
            stats.objects = objects.len();
            stats.runs = members.len();
            self.stats.uploads.fetch_add(1, Ordering::Relaxed);
            self.stats
                .uploaded_bytes
                .fetch_add(stats.bytes, Ordering::Relaxed);
        }
        let committed = t0.elapsed();
        stats.wal_segments_deleted = self.wal.delete_through(sealed.sealed_through).await?;
        if stats.runs > 0 {
            // Cumulative times: where an upload cycle spends its time is
            // what ties it to the produce tail (benches/README.md).
            tracing::debug!(
                ?stats,
                rolled_ms = rolled.as_secs_f64() * 1e3,
                packed_ms = packed.as_secs_f64() * 1e3,
                put_ms = put.as_secs_f64() * 1e3,
                committed_ms = committed.as_secs_f64() * 1e3,
                done_ms = t0.elapsed().as_secs_f64() * 1e3,
                "upload committed"
            );
        }
        self.recount_unuploaded();
        Ok(stats)
    }

    async fn put_object(&self, o: &PlannedObject) -> Result<()> {
        self.store
            .put(&o.key, o.body.clone())
            .await
            .map_err(|source| StorageError::ObjectStore {
                op: "put",
                key: o.key.to_string(),
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
            let mut retention = tokio::time::interval(log.config.retention_interval);
            retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Off after a failed upload until the next tick: a store that is
            // down must not be retried on every append.
            let mut by_size = true;
            loop {
                // Uploads and retention share this task so that they never
                // race each other's manifest edits for no gain.
                let upload = tokio::select! {
                    _ = tick.tick() => true,
                    _ = log.upload_due.notified(), if by_size => {
                        // Appends during the last cycle left a permit; the
                        // recount after it may have dropped below the mark.
                        let waiting = log.stats.unuploaded_bytes.load(Ordering::Relaxed);
                        if waiting < log.config.upload_bytes {
                            continue;
                        }
                        true
                    }
                    _ = retention.tick() => false,
                    _ = shutdown.wait_for(|s| *s) => return,
                };
                if log.is_fenced() {
                    tracing::error!("this broker was fenced by a newer one; uploads, retention and compaction stop");
                    return;
                }
                if upload {
                    by_size = true;
                    if let Err(e) = log.upload_once().await {
                        by_size = false;
                        log.stats.upload_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, retriable = e.is_retriable(), "upload failed; will retry");
                    }
                    log.recount_unuploaded();
                } else if let Err(e) = log.enforce_retention().await {
                    tracing::warn!(error = %e, retriable = e.is_retriable(), "retention pass failed; will retry");
                }
            }
        })
    }
}

fn chunk_batches(batches: Vec<CachedBatch>) -> Vec<Vec<CachedBatch>> {
    let mut out = vec![Vec::new()];
    let mut size = 0;
    for b in batches {
        if size >= OBJECT_TARGET_BYTES {
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

/// Deletes a deleted topic's objects in the background. Failures are logged;
/// the objects are unreachable from the manifest either way.
pub(crate) fn delete_topic_objects(store: Arc<dyn ObjectStore>, layout: paths::Layout, id: Uuid) {
    tokio::spawn(async move {
        // Other nodes' segments of the topic are no longer referenced by
        // any partition manifest: their own collectors delete them.
        for prefix in [layout.topic_data_prefix(id), paths::topic_parts_prefix(id)] {
            let keys = store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
            let mut deleted = store.delete_stream(keys);
            while let Some(r) = deleted.next().await {
                if let Err(e) = r {
                    tracing::warn!(topic_id = %id, error = %e, "could not delete an object of a deleted topic");
                }
            }
        }
    });
}
