//! The log of a broker: topics, partitions, the WAL and the manifest, tied
//! together.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStore;
use parking_lot::RwLock;
use tokio::sync::{oneshot, Mutex as AsyncMutex};
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::fence::Fence;
use crate::kv::KvMap;
use crate::manifest::{Manifest, ManifestStore};
use crate::partition::{
    AppendError, AppendOutcome, Begun, Partition, PendingAppend, ProducerCheck,
};
use crate::read::{self, FetchedBatches, RunReader, TimestampLookup};
use crate::wal::{Wal, WalEntry};

mod append;
mod commit;
pub mod gate;
mod node_gc;
mod open;
mod ownership;
mod pressure;
mod producer_ids;
mod recover;
pub mod tap;
mod topics;
mod wal_gc;

/// Producer ids reserved per manifest write.
const PRODUCER_ID_BLOCK: i64 = 1000;
/// Longest topic name Kafka allows.
const MAX_TOPIC_NAME: usize = 249;
/// Upper bound on partitions per topic (a typo guard, not a design limit).
pub const MAX_PARTITIONS: i32 = 10_000;

/// What a new topic looks like.
#[derive(Debug, Clone, Default)]
pub struct TopicConfig {
    /// Number of partitions.
    pub partitions: i32,
    /// Topic-level configs.
    pub configs: BTreeMap<String, String>,
}

/// A topic and its partitions (replaced as a whole when partitions are added).
#[derive(Debug)]
pub struct Topic {
    /// Name.
    pub name: String,
    /// Stable id.
    pub id: Uuid,
    /// Partitions by index.
    pub partitions: Vec<Arc<Partition>>,
    /// Topic configs.
    pub configs: BTreeMap<String, String>,
}

impl Topic {
    /// The same topic with `partitions` instead of its own (grown, or one
    /// of them taken over).
    pub(crate) fn with_partitions(&self, partitions: Vec<Arc<Partition>>) -> Topic {
        Topic {
            name: self.name.clone(),
            id: self.id,
            partitions,
            configs: self.configs.clone(),
        }
    }
}

/// Run by a WAL completion once an append is durable and readable
/// ([`Log::start_append_then`]).
pub type OnDurable = Box<dyn FnOnce() + Send>;

/// Counters of storage activity, read by the broker's /metrics.
#[derive(Debug, Default)]
pub struct StorageStats {
    /// Bytes of record batches appended.
    pub appended_bytes: AtomicU64,
    /// Completed upload cycles that wrote something.
    pub uploads: AtomicU64,
    /// Failed upload cycles.
    pub upload_failures: AtomicU64,
    /// Bytes written to segment objects.
    pub uploaded_bytes: AtomicU64,
    /// Reads served from the in-memory log cache.
    pub cache_reads: AtomicU64,
    /// Reads that went to segment objects.
    pub object_reads: AtomicU64,
    /// Objects deleted by the garbage collector.
    pub gc_deleted: AtomicU64,
    /// Segment objects written by the compactor.
    pub compactions: AtomicU64,
    /// Bytes appended and not yet uploaded: counted up by appends, recounted
    /// exactly after every upload attempt (see `log/pressure.rs`).
    pub unuploaded_bytes: AtomicU64,
    /// When a client last produced (replays yield to it).
    pub client_writes: Arc<crate::activity::ClientWrites>,
}

/// The log.
pub struct Log {
    pub(crate) config: LogConfig,
    /// The shared store: data, segments and state objects (under this
    /// log's layout), partition manifests, modules.
    pub(crate) store: Arc<dyn ObjectStore>,
    /// This log's private store: epoch claims, lease, root manifests, WAL
    /// objects (the shared store itself for a single broker).
    pub(crate) private: Arc<dyn ObjectStore>,
    /// Where this log's own objects live.
    pub(crate) layout: crate::paths::Layout,
    pub(crate) manifests: ManifestStore,
    /// Latest committed manifest. An async mutex because it is held across
    /// the object store write that commits the next version: that is what
    /// serializes manifest updates within the broker. Shared so that a
    /// commit runs to its end in a task of its own (log/commit.rs).
    pub(crate) manifest: Arc<AsyncMutex<Manifest>>,
    /// This log, for operations that must outlive a caller who stops
    /// waiting ([`Log::to_completion`]).
    pub(crate) me: std::sync::Weak<Log>,
    pub(crate) topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    pub(crate) wal: Wal,
    /// Reads of uploaded runs, through the block cache.
    pub(crate) runs: RunReader,
    kv_at_open: KvMap,
    producer_ids: AsyncMutex<(i64, i64)>,
    /// Held by a topic change from its manifest commit until the topic
    /// map shows it, so a racing change that finds it committed finds it
    /// served too (log/topics.rs).
    topic_changes: AsyncMutex<()>,
    /// Producer ids below this were handed out (the manifest's
    /// `next_producer_id`); produce refuses ids at or above it.
    issued_producer_ids: AtomicI64,
    pub(crate) epoch: u64,
    /// The epoch claim: asked before anything is acknowledged, committed or
    /// collected.
    pub(crate) fence: Arc<Fence>,
    /// Sequence of the next data object this epoch writes.
    pub(crate) next_object_seq: Arc<AtomicU64>,
    /// Told when un-uploaded bytes reach `upload_bytes`: the uploader then
    /// runs before its interval is up.
    pub(crate) upload_due: tokio::sync::Notify,
    /// Set once this broker learns another epoch owns the log; shared with
    /// WAL completions, which can learn it first in object mode.
    fenced: Arc<AtomicBool>,
    /// The cluster's topic catalog (none for a single broker).
    catalog: RwLock<Option<Arc<dyn crate::catalog::Catalog>>>,
    /// Which partitions this broker may acknowledge writes to.
    leadership: RwLock<Arc<dyn crate::leadership::Leadership>>,
    /// Activity counters.
    pub stats: StorageStats,
    /// "Now" for retention and garbage collection.
    pub(crate) clock: Arc<dyn Clock>,
    /// Other nodes' WAL objects read by recent takeovers (log/recover.rs).
    wal_reads: recover::WalReads,
}

impl Log {
    /// The clock the log was opened with (components built on the log use
    /// it too, so one injected clock moves them all).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// This broker's writer epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether another broker has taken over the log (this one then refuses
    /// writes and stops uploading).
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    /// What was written while ownership could not be confirmed, per
    /// partition: take it *before* an ownership check and pass it to
    /// [`publish_written`](Log::publish_written) if the check passes, so
    /// that only writes older than the check are published.
    pub(crate) fn written_unconfirmed(&self) -> Vec<(Arc<Partition>, i64)> {
        self.topics()
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.clone(), p.written_unconfirmed()))
            .collect()
    }

    /// Makes visible what was written while ownership was unconfirmed (its
    /// producers were refused and retry; an idempotent retry is answered
    /// from the original append once it is visible). Only for partitions
    /// whose leadership check passes now: the log's own lease says nothing
    /// about who leads a partition in a cluster.
    pub(crate) fn publish_written(&self, marks: Vec<(Arc<Partition>, i64)>) {
        let leadership = self.leadership.read().clone();
        for (p, to) in marks {
            if p.is_serving() && ownership::confirm(&*leadership, &p).is_ok() {
                p.advance_high_watermark(to);
            }
        }
    }

    /// Whether ownership of the log was confirmed recently enough to
    /// acknowledge without checking again (see [`crate::fence`]).
    pub fn ownership_confirmed(&self) -> bool {
        self.fence.valid_now()
    }

    /// The key/value state found at open (manifest snapshot + WAL replay).
    pub fn kv_at_open(&self) -> &KvMap {
        &self.kv_at_open
    }

    /// All topics, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    /// One topic.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// The WAL writer's group counts.
    pub fn wal_stats(&self) -> &crate::wal::WalStats {
        self.wal.stats()
    }

    /// One partition.
    pub fn partition(&self, topic: &str, index: i32) -> Result<Arc<Partition>> {
        let t = self
            .topic(topic)
            .ok_or_else(|| StorageError::UnknownTopic(topic.to_string()))?;
        usize::try_from(index)
            .ok()
            .and_then(|i| t.partitions.get(i).cloned())
            .ok_or_else(|| StorageError::UnknownPartition {
                topic: topic.to_string(),
                partition: index,
            })
    }

    /// Reads whole batches from `offset`, at most about `max_bytes` (at least
    /// one batch).
    pub async fn read(
        &self,
        p: &Partition,
        offset: i64,
        max_bytes: usize,
    ) -> Result<FetchedBatches> {
        if !p.is_serving() {
            return Err(p.not_leader("it was handed over"));
        }
        let r = read::read(p, &self.runs, offset, max_bytes).await?;
        let counter = if r.from_object_store {
            &self.stats.object_reads
        } else {
            &self.stats.cache_reads
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(r)
    }

    /// First record with timestamp ≥ `ts`, if any.
    pub async fn offset_for_timestamp(
        &self,
        p: &Partition,
        ts: i64,
    ) -> Result<Option<TimestampLookup>> {
        read::offset_for_timestamp(p, &self.runs, ts).await
    }

    /// Durably sets (or, with `None`, deletes) keys of the key/value state.
    /// The entries are queued on the WAL before this returns, so their order
    /// relative to other calls is fixed at call time; the returned future
    /// resolves once they are fsync'd.
    pub fn kv_put(
        &self,
        entries: Vec<(String, Option<String>)>,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let fenced = self.fence.is_fenced().then(|| self.fence.fenced_error());
        // Disk full: refuse at once rather than wait behind the failing WAL.
        let fenced = fenced.or_else(|| self.wal.check_writable().err());
        let mut waits = Vec::with_capacity(entries.len());
        for (key, value) in entries.into_iter().filter(|_| fenced.is_none()) {
            let (tx, rx) = oneshot::channel();
            let flag = self.fenced.clone();
            self.wal.append(
                WalEntry::Kv { key, value },
                Box::new(move |res| {
                    if matches!(res, Err(StorageError::Fenced { .. })) {
                        flag.store(true, Ordering::SeqCst);
                    }
                    let _ = tx.send(res);
                }),
            );
            waits.push(rx);
        }
        async move {
            if let Some(e) = fenced {
                return Err(e);
            }
            for rx in waits {
                rx.await.map_err(|_| StorageError::WalClosed)??;
            }
            Ok(())
        }
    }

    /// The object store under the log, for components that keep their own
    /// objects beside it (detector modules and state). Their keys are built
    /// in [`crate::paths`] too.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// Age of the oldest appended byte not yet in the object store (zero
    /// when everything is uploaded).
    pub fn upload_lag(&self) -> std::time::Duration {
        self.topics()
            .iter()
            .flat_map(|t| t.partitions.iter().filter_map(|p| p.oldest_not_uploaded()))
            .min()
            .map_or(std::time::Duration::ZERO, |t| t.elapsed())
    }

    /// Block cache statistics (hits, misses, readahead).
    pub fn block_cache_stats(&self) -> crate::cache::CacheStats {
        self.runs.cache().stats()
    }

    /// Stops the WAL writer without uploading: the state a crash leaves
    /// behind, for recovery tests and drills.
    pub async fn abandon(&self) {
        self.wal.close().await;
    }

    /// Uploads what is pending and stops the WAL writer. Data the upload
    /// could not take stays in the WAL and is replayed at the next start.
    pub async fn close(&self) {
        if let Err(e) = self.upload_once().await {
            tracing::warn!(error = %e, "final upload failed; the data stays in the WAL");
        }
        self.wal.close().await;
        if !self.is_fenced() {
            let released = crate::lease::Lease {
                epoch: self.epoch,
                broker: self.config.broker_id.clone(),
                renewals: u64::MAX,
                released: true,
                validity_ms: Some(self.fence.validity().as_millis() as u64),
            };
            if let Err(e) = crate::lease::write(&self.private, &released).await {
                tracing::warn!(error = %e, "could not release the lease; the next broker waits a few seconds");
            }
        }
    }
}
