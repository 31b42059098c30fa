//! The broker's shared state and its startup.

use std::sync::Arc;

use object_store::ObjectStore;
use vigil_storage::store::{InstrumentedStore, ObjectStoreMetrics};
use vigil_storage::{object_store_from_url_with, Log};

use crate::metrics::Metrics;
use crate::server::ServeError;
use crate::settings::{Settings, StorageSettings};
use vigil_engine::Detectors;
use vigil_groups::log_store::LogGroupStore;
use vigil_groups::{GroupCoordinator, GroupStore};

/// What the broker runs on, passed in rather than built from [`Settings`]
/// so that tests can put a fault-injecting or in-memory store (or a host
/// with its own cache) under the log, the group store and the detector
/// engine alike. [`Components::from_settings`] builds the real ones.
pub struct Components {
    /// Where the log keeps its data. The broker wraps it in an
    /// [`InstrumentedStore`] for `/metrics`.
    pub object_store: Arc<dyn ObjectStore>,
    /// The wasm host the detector engine runs modules on.
    pub host: vigil_host::Host,
    /// "Now" for retention, garbage collection and the engine's
    /// timestamps (the system clock outside tests).
    pub clock: Arc<dyn vigil_storage::Clock>,
}

impl Components {
    /// The object store named by the settings' URL and a wasm host caching
    /// compiled modules under the data dir.
    pub fn from_settings(settings: &Settings) -> Result<Components, ServeError> {
        let url = settings.storage.object_store_url()?;
        let options = settings.storage.store_options();
        let mut store = object_store_from_url_with(&url, &options)?;
        if let Some(path) = &settings.storage.fault_file {
            store = crate::drills::wrap(store, path.clone()).map_err(|source| {
                ServeError::FaultDrill {
                    path: path.clone(),
                    source,
                }
            })?;
        }
        Components::with_store(&settings.storage, store)
    }

    /// `object_store` with the same wasm host as
    /// [`from_settings`](Components::from_settings).
    pub fn with_store(
        storage: &StorageSettings,
        object_store: Arc<dyn ObjectStore>,
    ) -> Result<Components, ServeError> {
        let host = vigil_host::Host::new(vigil_host::HostConfig {
            cache_dir: storage.data_dir.join("module-cache"),
            ..Default::default()
        })?;
        Ok(Components {
            object_store,
            host,
            clock: Arc::new(vigil_storage::SystemClock),
        })
    }
}

/// Everything a request handler can reach.
pub struct Broker {
    /// Settings, as validated at open.
    pub settings: Settings,
    /// `host:port` clients are told to connect to.
    pub advertised_listener: (String, u16),
    /// The log.
    pub log: Arc<Log>,
    /// Consumer groups.
    pub groups: Arc<GroupCoordinator>,
    /// Where group offsets are persisted (the log's state, or a cluster's
    /// coordinator).
    pub group_store: Arc<dyn GroupStore>,
    /// Metrics.
    pub metrics: Metrics,
    /// Object store request counters.
    pub store_metrics: ObjectStoreMetrics,
    /// Cluster id, stable across restarts (kept in the log's state).
    pub cluster_id: String,
    /// Detector modules and deployments.
    pub detectors: Arc<Detectors>,
    /// Listeners per security protocol, TLS, SASL credentials.
    pub security: Arc<crate::security::Security>,
    /// This broker's cluster membership (`--coordinator`); `None` for a
    /// single broker owning the whole store.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Broker {
    /// Validates the settings, opens the log on the given store, restores
    /// group offsets and starts the detector engine. `settings.server.listen`
    /// should be the address actually bound (it names this broker in the
    /// log and is advertised unless an advertised listener is set).
    pub async fn open(
        settings: Settings,
        components: Components,
    ) -> Result<Arc<Broker>, ServeError> {
        settings.validate()?;
        let advertised_listener = settings.server.advertised(settings.server.listen.port())?;
        let data_dir = &settings.storage.data_dir;
        std::fs::create_dir_all(data_dir).map_err(|source| ServeError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        // Every request to the store is counted for /metrics.
        let instrumented = Arc::new(InstrumentedStore::new(components.object_store));
        let store_metrics = instrumented.metrics();
        let store: Arc<dyn ObjectStore> = instrumented;
        let broker_id = format!(
            "vigil-{}@{}",
            settings.server.node_id, settings.server.listen
        );
        let mut log_config = settings.storage.log_config(broker_id);
        if settings.server.coordinator.is_some() {
            // Validated: 0..=99999.
            log_config.node = u32::try_from(settings.server.node_id).ok();
        }
        let log = Log::open_with_clock(log_config, store.clone(), components.clock).await?;
        let cluster = match &settings.server.coordinator {
            Some(url) => {
                let node = vigil_coord::NodeInfo {
                    node_id: settings.server.node_id,
                    kafka_listener: format!("{}:{}", advertised_listener.0, advertised_listener.1),
                    admin_addr: settings.server.admin_listen.to_string(),
                };
                let ttl = std::time::Duration::from_millis(settings.server.session_ttl_ms);
                Some(crate::cluster::Cluster::join(url, store, node, ttl, log.clone()).await?)
            }
            None => None,
        };
        let security = Arc::new(
            crate::security::Security::open(&settings, log.clone(), cluster.as_deref()).await?,
        );
        let (group_store, groups, restored): (Arc<dyn GroupStore>, _, _) = match &cluster {
            None => {
                let store = Arc::new(LogGroupStore::new(log.clone()));
                let groups = GroupCoordinator::new(settings.groups.group_config(), store.clone());
                let restored = store.restore_into(&groups);
                (store, groups, restored)
            }
            Some(c) => {
                let store = c.group_store();
                let groups = GroupCoordinator::new(settings.groups.group_config(), store.clone());
                let restored = c.share_groups(groups.clone()).await?;
                (store, groups, restored)
            }
        };
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
        let cluster_id = match &cluster {
            Some(c) => c.cluster_id(cluster_id).await?,
            None => cluster_id,
        };
        let detectors = match &cluster {
            None => {
                Detectors::open_with(log.clone(), components.host, settings.detectors.clone()).await
            }
            Some(c) => {
                Detectors::open_on(
                    log.clone(),
                    components.host,
                    settings.detectors.clone(),
                    c.deployment_store(),
                )
                .await
            }
        }
        .map_err(ServeError::Detectors)?;
        if let Some(c) = &cluster {
            c.set_detectors(detectors.clone());
        }
        tracing::debug!(restored_offsets = restored, %cluster_id, "broker state restored");
        Ok(Arc::new(Broker {
            settings,
            advertised_listener,
            log,
            groups,
            group_store,
            metrics: Metrics::default(),
            store_metrics,
            cluster_id,
            detectors,
            security,
            cluster,
        }))
    }

    /// Host and port clients should connect to.
    pub fn advertised(&self) -> (&str, i32) {
        (
            &self.advertised_listener.0,
            i32::from(self.advertised_listener.1),
        )
    }

    /// Host and port of Kafka listener `listener` (an index into
    /// `security.listeners`; 0 is `listen`), for clients connected to it.
    pub fn advertised_on(&self, listener: usize) -> (&str, i32) {
        match self.security.listeners.get(listener) {
            Some(l) if listener > 0 => (&l.advertised.0, i32::from(l.advertised.1)),
            _ => self.advertised(),
        }
    }
}
