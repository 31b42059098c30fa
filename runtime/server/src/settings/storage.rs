//! Where and how the log keeps its data.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigil_storage::config::WalMode;
use vigil_storage::{LogConfig, StoreOptions};

use super::SettingsError;

/// Smallest accepted `max-unuploaded-bytes`: below one batch or so every
/// produce would be refused.
const MIN_UNUPLOADED_BYTES: u64 = 1 << 20;
/// Highest `max-partitions` accepted: beyond it the manifest (which lists
/// every partition) becomes too large to rewrite on every upload.
const MAX_PARTITIONS_LIMIT: usize = 1_000_000;

/// Highest `wal-group-hold-us` accepted (50 ms).
const MAX_WAL_GROUP_HOLD_US: u64 = 50_000;

/// Storage settings. Every field is also a `vigil serve` flag of the same
/// name (kebab-case), a `VIGIL_*` variable and a TOML key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StorageSettings {
    /// Directory for the WAL and caches (not the source of truth).
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_DATA_DIR"))]
    pub data_dir: PathBuf,
    /// Object store URL: file:///path (default <data-dir>/objects), s3://bucket/prefix, memory://.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_OBJECT_STORE"))]
    pub object_store: Option<String>,
    /// Write-ahead log: `local` (fsync'd file, uploaded every interval) or
    /// `object` (acks=all only once the data is in the object store).
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_WAL"))]
    pub wal: WalKind,
    /// Batching window (ms) of the object WAL: one PUT per window.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_WAL_OBJECT_WINDOW_MS"))]
    pub wal_object_window_ms: u64,
    /// Longest time (µs) a local WAL group commit waits for the detectors
    /// gated on its batches to queue their alerts, so that batch and alerts
    /// share one fsync (0: write at once; alerts take the next group).
    /// At most 50 000.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_WAL_GROUP_HOLD_US"))]
    pub wal_group_hold_us: u64,
    /// Longest time (ms) durable data waits in the WAL before upload.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_UPLOAD_INTERVAL_MS"))]
    pub upload_interval_ms: u64,
    /// Un-uploaded bytes that start an upload before the interval is up
    /// (0: the interval alone). Smaller, more frequent uploads keep the
    /// produce tail flat under heavy load; larger ones cost fewer PUTs.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_UPLOAD_BYTES"))]
    pub upload_bytes: u64,
    /// How often (ms) this broker renews its lease on the log; a new broker
    /// waits three intervals to tell a live owner from a crashed one.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_LEASE_INTERVAL_MS"))]
    pub lease_interval_ms: u64,
    /// Take the log over even if another broker is alive and serving it; the
    /// other broker is fenced (its later writes fail).
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_TAKEOVER"))]
    pub takeover: bool,
    /// How often (ms) retention, compaction and garbage collection run
    /// (Kafka: log.retention.check.interval.ms).
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_RETENTION_CHECK_INTERVAL_MS"))]
    pub retention_check_interval_ms: u64,
    /// How old (ms) an object nobody references must be before the garbage
    /// collector deletes it; protects uploads whose manifest commit is still
    /// in flight, so keep it well above the longest commit.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_GC_GRACE_MS"))]
    pub gc_grace_ms: u64,
    /// Fault drills only: make the object store fail, stall or lie as this
    /// JSON file says (see vigil_server::drills). Never in production.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_FAULT_FILE"))]
    pub fault_file: Option<PathBuf>,
    /// Most bytes appended but not yet uploaded to the object store (which
    /// are held in memory) before produce is refused with the retriable
    /// KAFKA_STORAGE_ERROR; at least 1 MiB.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_MAX_UNUPLOADED_BYTES"))]
    pub max_unuploaded_bytes: u64,
    /// Object store (S3) request timeout in ms, connect to last byte.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_OBJECT_STORE_TIMEOUT_MS"))]
    pub object_store_timeout_ms: u64,
    /// Object store (S3) connect timeout in ms.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VIGIL_OBJECT_STORE_CONNECT_TIMEOUT_MS")
    )]
    pub object_store_connect_timeout_ms: u64,
    /// Retries of a failed object store (S3) request; 0 disables them.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_OBJECT_STORE_MAX_RETRIES"))]
    pub object_store_max_retries: usize,
    /// No object store retry starts later than this (ms) after the first
    /// attempt.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VIGIL_OBJECT_STORE_RETRY_TIMEOUT_MS")
    )]
    pub object_store_retry_timeout_ms: u64,
    /// First backoff (ms) between object store retries; doubles each time.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VIGIL_OBJECT_STORE_BACKOFF_INITIAL_MS")
    )]
    pub object_store_backoff_initial_ms: u64,
    /// Longest backoff (ms) between object store retries.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_OBJECT_STORE_BACKOFF_MAX_MS"))]
    pub object_store_backoff_max_ms: u64,
    /// Most partitions, over all topics, the broker holds (in the spirit of
    /// KIP-578's `max.broker.partitions`); CreateTopics, CreatePartitions and
    /// auto-creation beyond it fail with POLICY_VIOLATION. 1–1,000,000.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_MAX_PARTITIONS"))]
    pub max_partitions: usize,
}

/// Where the write-ahead log lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum WalKind {
    /// An fsync'd file in the data dir, uploaded every upload interval.
    #[default]
    Local,
    /// The object store itself: acks=all is answered once the data is there.
    Object,
}

impl Default for StorageSettings {
    /// `./vigil-data`, objects under it, local WAL. The upload interval is
    /// short enough that each upload is a small burst (large ones steal CPU
    /// from produce acks on small machines) and long enough that objects are
    /// not tiny.
    fn default() -> Self {
        StorageSettings {
            data_dir: PathBuf::from("./vigil-data"),
            object_store: None,
            wal: WalKind::Local,
            wal_object_window_ms: 5,
            wal_group_hold_us: vigil_storage::DEFAULT_WAL_GROUP_HOLD.as_micros() as u64,
            upload_interval_ms: 1_000,
            upload_bytes: vigil_storage::DEFAULT_UPLOAD_BYTES,
            lease_interval_ms: 1_000,
            takeover: false,
            retention_check_interval_ms: 30_000,
            gc_grace_ms: 600_000,
            fault_file: None,
            max_unuploaded_bytes: 1 << 30,
            object_store_timeout_ms: 30_000,
            object_store_connect_timeout_ms: 5_000,
            object_store_max_retries: 10,
            object_store_retry_timeout_ms: 180_000,
            object_store_backoff_initial_ms: 100,
            object_store_backoff_max_ms: 15_000,
            max_partitions: 10_000,
        }
    }
}

impl StorageSettings {
    /// Rejects values that cannot work, naming the setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(SettingsError::new("data-dir", "must not be empty"));
        }
        if self.upload_interval_ms == 0 {
            return Err(SettingsError::new(
                "upload-interval-ms",
                "must be greater than zero",
            ));
        }
        if self.wal_group_hold_us > MAX_WAL_GROUP_HOLD_US {
            return Err(SettingsError::new(
                "wal-group-hold-us",
                format!(
                    "{} is above {MAX_WAL_GROUP_HOLD_US}: every gated produce would wait that long for a slow detector",
                    self.wal_group_hold_us
                ),
            ));
        }
        if self.lease_interval_ms == 0 {
            return Err(SettingsError::new(
                "lease-interval-ms",
                "must be greater than zero",
            ));
        }
        if self.retention_check_interval_ms == 0 {
            return Err(SettingsError::new(
                "retention-check-interval-ms",
                "must be greater than zero",
            ));
        }
        if self.max_unuploaded_bytes < MIN_UNUPLOADED_BYTES {
            return Err(SettingsError::new(
                "max-unuploaded-bytes",
                format!("must be at least {MIN_UNUPLOADED_BYTES} (1 MiB)"),
            ));
        }
        for (name, ms) in [
            ("object-store-timeout-ms", self.object_store_timeout_ms),
            (
                "object-store-connect-timeout-ms",
                self.object_store_connect_timeout_ms,
            ),
            (
                "object-store-retry-timeout-ms",
                self.object_store_retry_timeout_ms,
            ),
            (
                "object-store-backoff-initial-ms",
                self.object_store_backoff_initial_ms,
            ),
        ] {
            if ms == 0 {
                return Err(SettingsError::new(name, "must be greater than zero"));
            }
        }
        if self.object_store_backoff_max_ms < self.object_store_backoff_initial_ms {
            return Err(SettingsError::new(
                "object-store-backoff-max-ms",
                "must be at least object-store-backoff-initial-ms",
            ));
        }
        if !(1..=MAX_PARTITIONS_LIMIT).contains(&self.max_partitions) {
            return Err(SettingsError::new(
                "max-partitions",
                format!(
                    "{} is not between 1 and {MAX_PARTITIONS_LIMIT}",
                    self.max_partitions
                ),
            ));
        }
        Ok(())
    }

    /// The object store URL: the configured one, or a `file://` URL for
    /// `<data-dir>/objects` (absolute, as file URLs must be).
    pub fn object_store_url(&self) -> Result<String, SettingsError> {
        match &self.object_store {
            Some(url) => Ok(url.clone()),
            None => {
                let abs = std::path::absolute(&self.data_dir).map_err(|e| {
                    SettingsError::new("data-dir", format!("{}: {e}", self.data_dir.display()))
                })?;
                Ok(format!("file://{}", abs.join("objects").display()))
            }
        }
    }

    /// The object store client's timeouts and retries.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            timeout: Duration::from_millis(self.object_store_timeout_ms),
            connect_timeout: Duration::from_millis(self.object_store_connect_timeout_ms),
            max_retries: self.object_store_max_retries,
            retry_timeout: Duration::from_millis(self.object_store_retry_timeout_ms),
            backoff_initial: Duration::from_millis(self.object_store_backoff_initial_ms),
            backoff_max: Duration::from_millis(self.object_store_backoff_max_ms),
        }
    }

    /// Longest time durable data waits in the WAL before upload.
    pub fn upload_interval(&self) -> Duration {
        Duration::from_millis(self.upload_interval_ms)
    }

    /// The log's configuration: the one place these settings become
    /// vigil_storage's. `broker_id` names this broker in manifests and leases.
    pub fn log_config(&self, broker_id: String) -> LogConfig {
        let mut c = LogConfig::new(&self.data_dir);
        c.broker_id = broker_id;
        c.upload_interval = self.upload_interval();
        c.upload_bytes = self.upload_bytes;
        c.wal_mode = match self.wal {
            WalKind::Local => WalMode::Local,
            WalKind::Object => WalMode::Object {
                window: Duration::from_millis(self.wal_object_window_ms),
            },
        };
        c.wal_group_hold = Duration::from_micros(self.wal_group_hold_us);
        c.lease_interval = Duration::from_millis(self.lease_interval_ms);
        c.takeover = self.takeover;
        c.retention_interval = Duration::from_millis(self.retention_check_interval_ms);
        c.gc_grace = Duration::from_millis(self.gc_grace_ms);
        c.max_unuploaded_bytes = self.max_unuploaded_bytes;
        c.max_partitions = self.max_partitions;
        c
    }
}
