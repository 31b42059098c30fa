//! The broker's shared state and its startup.

use std::sync::Arc;

use vigil_storage::store::{InstrumentedStore, ObjectStoreMetrics};
use vigil_storage::{object_store_from_url, Log, LogConfig, StorageError};

use crate::config::ServeConfig;
use crate::metrics::Metrics;
use vigil_engine::Detectors;
use vigil_groups::log_store::LogGroupStore;
use vigil_groups::{GroupConfig, GroupCoordinator};

/// Everything a request handler can reach.
pub struct Broker {
    /// Settings.
    pub config: ServeConfig,
    /// The log.
    pub log: Arc<Log>,
    /// Consumer groups.
    pub groups: Arc<GroupCoordinator>,
    /// Where group offsets are persisted.
    pub group_store: Arc<LogGroupStore>,
    /// Metrics.
    pub metrics: Metrics,
    /// Object store request counters.
    pub store_metrics: ObjectStoreMetrics,
    /// Cluster id, stable across restarts (kept in the log's state).
    pub cluster_id: String,
    /// Detector modules and deployments.
    pub detectors: Arc<Detectors>,
}

impl Broker {
    /// Opens the log and restores group offsets.
    pub async fn open(config: ServeConfig) -> Result<Arc<Broker>, StorageError> {
        // Every request to the store is counted for /metrics.
        let instrumented = Arc::new(InstrumentedStore::new(object_store_from_url(
            &config.object_store,
        )?));
        let store_metrics = instrumented.metrics();
        let store: Arc<dyn object_store::ObjectStore> = instrumented;
        let mut log_config = LogConfig::new(&config.data_dir);
        log_config.upload_interval = config.upload_interval;
        log_config.wal_mode = config.wal.clone();
        log_config.lease_interval = config.lease_interval;
        log_config.takeover = config.takeover;
        log_config.broker_id = format!("vigil-{}@{}", config.node_id, config.listen);
        let log = Log::open(log_config, store).await?;
        let group_store = Arc::new(LogGroupStore::new(log.clone()));
        let groups = GroupCoordinator::new(
            GroupConfig {
                initial_rebalance_delay: config.group_initial_rebalance_delay,
                ..GroupConfig::default()
            },
            group_store.clone(),
        );
        let restored = group_store.restore_into(&groups);
        let cluster_id = match log.kv_at_open().get(vigil_storage::kvkeys::cluster_id()) {
            Some(id) => id.clone(),
            None => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                log.kv_put(vec![(
                    vigil_storage::kvkeys::cluster_id().to_string(),
                    Some(id.clone()),
                )])
                .await?;
                id
            }
        };
        let host = vigil_host::HostConfig {
            cache_dir: config.data_dir.join("module-cache"),
            ..Default::default()
        };
        let detectors = Detectors::open(log.clone(), host)
            .await
            .map_err(|e| StorageError::Invalid(format!("cannot start detectors: {e}")))?;
        tracing::debug!(restored_offsets = restored, %cluster_id, "broker state restored");
        Ok(Arc::new(Broker {
            config,
            log,
            groups,
            group_store,
            metrics: Metrics::default(),
            store_metrics,
            cluster_id,
            detectors,
        }))
    }

    /// Host and port clients should connect to.
    pub fn advertised(&self) -> (&str, i32) {
        (
            &self.config.advertised_listener.0,
            i32::from(self.config.advertised_listener.1),
        )
    }
}
