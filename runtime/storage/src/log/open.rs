//! Opening a log: the writer's claim, the WAL replay and the state the
//! log starts from.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;

use object_store::ObjectStore;
use parking_lot::RwLock;
use tokio::sync::Mutex as AsyncMutex;

use super::{producer_ids, topics, Log, StorageStats};
use crate::cache::{BlockCache, BlockCacheConfig};
use crate::clock::{Clock, SystemClock};
use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::fence::Fence;
use crate::kv;
use crate::manifest::ManifestStore;
use crate::read::RunReader;
use crate::wal::{Wal, WalEntry, WalOptions};

impl Log {
    /// Opens the log on the system clock: see [`open_with_clock`](Log::open_with_clock).
    pub async fn open(config: LogConfig, store: Arc<dyn ObjectStore>) -> Result<Arc<Log>> {
        Self::open_with_clock(config, store, Arc::new(SystemClock)).await
    }

    /// Opens the log: takes ownership of the manifest (bumping the writer
    /// epoch), replays the local WAL and starts the WAL writer. `clock` is
    /// "now" for retention and garbage collection.
    pub async fn open_with_clock(
        config: LogConfig,
        store: Arc<dyn ObjectStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Log>> {
        config.validate().map_err(StorageError::Invalid)?;
        let layout = config.layout();
        let private = layout.private_store(store.clone());
        let manifests = ManifestStore::with_layout(store.clone(), layout);
        let fence_wait =
            crate::lease::wait_until_free(&private, config.lease_interval, config.takeover).await?;
        let floor = manifests
            .load_latest_bare()
            .await?
            .map_or(0, |m| m.writer_epoch);
        let fence = Arc::new(
            Fence::claim(
                private.clone(),
                &config.broker_id,
                floor,
                config.ownership_validity(),
            )
            .await?,
        );
        if let Some(wait) = fence_wait {
            // The previous holder may still be acknowledging on an older
            // confirmation; after this wait its every check sees our claim.
            tracing::info!(
                epoch = fence.epoch(),
                wait_ms = wait.as_millis() as u64,
                "waiting out the previous owner's confirmation before reading the log"
            );
            tokio::time::sleep(wait).await;
        }
        let manifest = manifests.acquire(&config.broker_id, fence.epoch()).await?;
        let epoch = manifest.writer_epoch;
        // Claimed at once, so a newcomer can see the log is held before the
        // first renewal.
        crate::lease::write(
            &private,
            &crate::lease::Lease {
                epoch,
                broker: config.broker_id.clone(),
                renewals: 0,
                released: false,
                validity_ms: Some(config.ownership_validity().as_millis() as u64),
            },
        )
        .await?;
        let (replay, start_wal) = Wal::open(
            WalOptions {
                mode: config.wal_mode.clone(),
                dir: config.wal_dir(),
                segment_bytes: config.wal_segment_bytes,
                group_bytes: config.wal_group_bytes,
                keep_found_objects: config.node.is_some(),
                group_hold: config.wal_group_hold,
            },
            private.clone(),
            fence.clone(),
            manifest.wal_objects_through,
        )
        .await?;

        let (topics, by_id) = topics::from_manifest(&manifest);

        let mut kv = manifest.kv().clone();
        let (mut replayed, mut skipped) = (0usize, 0usize);
        for entry in replay.entries {
            match entry {
                // A node's partitions move while it is down: whoever
                // acquires one recovers its batches from these objects
                // (log/recover.rs).
                WalEntry::Batch { .. } if config.node.is_some() => skipped += 1,
                WalEntry::Batch {
                    topic_id,
                    partition,
                    batch,
                } => match by_id.get(&(topic_id, partition)) {
                    Some(p) => match p.replay(batch) {
                        Ok(()) => replayed += 1,
                        Err(e) => {
                            tracing::error!(topic = %p.topic, partition, error = %e, "skipping a corrupt batch in the WAL")
                        }
                    },
                    // The topic was deleted after the entry was written.
                    None => skipped += 1,
                },
                WalEntry::Kv { key, value } => kv::apply(&mut kv, &key, value.as_deref()),
            }
        }
        for p in by_id.values() {
            if config.node.is_some() {
                // A node serves a partition once placement gives it one.
                p.stop_serving();
            } else {
                // This writer's epoch starts where the replayed log ends.
                p.start_epoch(crate::epochs::kafka_epoch(epoch));
            }
        }
        tracing::info!(
            epoch,
            manifest_version = manifest.version,
            topics = topics.len(),
            replayed_batches = replayed,
            skipped_batches = skipped,
            "log opened"
        );
        let wal = start_wal(kv.clone())?;
        let runs = RunReader::new(BlockCache::new(
            store.clone(),
            BlockCacheConfig {
                capacity_bytes: config.segment_cache_bytes,
                ..BlockCacheConfig::default()
            },
        ));
        let issued_producer_ids =
            producer_ids::producer_id_base(layout) + manifest.next_producer_id;
        Ok(Arc::new_cyclic(|me| Log {
            me: me.clone(),
            config,
            store,
            private,
            layout,
            manifests,
            manifest: Arc::new(AsyncMutex::new(manifest)),
            topics: RwLock::new(topics),
            wal,
            runs,
            kv_at_open: kv,
            producer_ids: AsyncMutex::new((0, 0)),
            topic_changes: AsyncMutex::new(()),
            issued_producer_ids: AtomicI64::new(issued_producer_ids),
            epoch,
            fenced: fence.fenced_flag(),
            fence,
            next_object_seq: Arc::new(AtomicU64::new(0)),
            upload_due: tokio::sync::Notify::new(),
            wal_reads: Default::default(),
            catalog: RwLock::new(None),
            leadership: RwLock::new(Arc::new(crate::leadership::SoleLeader)),
            stats: StorageStats::default(),
            clock,
        }))
    }
}
