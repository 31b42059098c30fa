//! `vigil serve` settings: command-line flags, `VIGIL_*` environment
//! variables and an optional TOML file, in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Settings after merging all sources, validated.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Kafka listener.
    pub listen: SocketAddr,
    /// Admin HTTP listener (/metrics, /healthz).
    pub admin_listen: SocketAddr,
    /// WAL and caches.
    pub data_dir: PathBuf,
    /// Object store URL.
    pub object_store: String,
    /// `host:port` clients are told to connect to.
    pub advertised_listener: (String, u16),
    /// Create topics on first use (Metadata/Produce for an unknown topic).
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics with -1.
    pub default_partitions: i32,
    /// Broker node id.
    pub node_id: i32,
    /// Longest time durable data waits in the WAL before upload.
    pub upload_interval: Duration,
    /// Delay before the first rebalance of a new group completes.
    pub group_initial_rebalance_delay: Duration,
    /// Where the write-ahead log lives.
    pub wal: vigil_storage::config::WalMode,
    /// How often the owner lease is renewed.
    pub lease_interval: Duration,
    /// Take the log over even from a live owner (which is then fenced).
    pub takeover: bool,
}

/// The TOML file's shape; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// See [`ServeConfig::listen`].
    pub listen: Option<String>,
    /// See [`ServeConfig::admin_listen`].
    pub admin_listen: Option<String>,
    /// See [`ServeConfig::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`ServeConfig::object_store`].
    pub object_store: Option<String>,
    /// See [`ServeConfig::advertised_listener`].
    pub advertised_listener: Option<String>,
    /// See [`ServeConfig::auto_create_topics`].
    pub auto_create_topics: Option<bool>,
    /// See [`ServeConfig::default_partitions`].
    pub default_partitions: Option<i32>,
    /// See [`ServeConfig::node_id`].
    pub node_id: Option<i32>,
    /// Milliseconds; see [`ServeConfig::upload_interval`].
    pub upload_interval_ms: Option<u64>,
    /// Milliseconds; see [`ServeConfig::group_initial_rebalance_delay`].
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// `local` or `object`; see [`ServeConfig::wal`].
    pub wal: Option<String>,
    /// Batching window of the object WAL, in milliseconds.
    pub wal_object_window_ms: Option<u64>,
    /// Milliseconds; see [`ServeConfig::lease_interval`].
    pub lease_interval_ms: Option<u64>,
    /// See [`ServeConfig::takeover`].
    pub takeover: Option<bool>,
}

/// A setting that cannot work, naming the setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct ConfigError {
    /// Which setting.
    pub setting: &'static str,
    /// Why.
    pub reason: String,
}

fn bad(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        reason: reason.into(),
    }
}

impl FileConfig {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad("--config", format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| bad("--config", format!("{}: {e}", path.display())))
    }

    /// Overlays `other`'s set fields onto `self`.
    pub fn overlay(self, other: FileConfig) -> FileConfig {
        FileConfig {
            listen: other.listen.or(self.listen),
            admin_listen: other.admin_listen.or(self.admin_listen),
            data_dir: other.data_dir.or(self.data_dir),
            object_store: other.object_store.or(self.object_store),
            advertised_listener: other.advertised_listener.or(self.advertised_listener),
            auto_create_topics: other.auto_create_topics.or(self.auto_create_topics),
            default_partitions: other.default_partitions.or(self.default_partitions),
            node_id: other.node_id.or(self.node_id),
            upload_interval_ms: other.upload_interval_ms.or(self.upload_interval_ms),
            group_initial_rebalance_delay_ms: other
                .group_initial_rebalance_delay_ms
                .or(self.group_initial_rebalance_delay_ms),
            wal: other.wal.or(self.wal),
            wal_object_window_ms: other.wal_object_window_ms.or(self.wal_object_window_ms),
            lease_interval_ms: other.lease_interval_ms.or(self.lease_interval_ms),
            takeover: other.takeover.or(self.takeover),
        }
    }

    /// Fills defaults and validates.
    pub fn resolve(self) -> Result<ServeConfig, ConfigError> {
        let listen: SocketAddr = self
            .listen
            .as_deref()
            .unwrap_or("127.0.0.1:9092")
            .parse()
            .map_err(|e| {
                bad(
                    "listen",
                    format!("{e} (expected host:port, e.g. 127.0.0.1:9092)"),
                )
            })?;
        let admin_listen: SocketAddr = self
            .admin_listen
            .as_deref()
            .unwrap_or("127.0.0.1:9644")
            .parse()
            .map_err(|e| bad("admin-listen", format!("{e} (expected host:port)")))?;
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from("./vigil-data"));
        std::fs::create_dir_all(&data_dir).map_err(|e| {
            bad(
                "data-dir",
                format!("cannot create {}: {e}", data_dir.display()),
            )
        })?;
        let abs = std::fs::canonicalize(&data_dir)
            .map_err(|e| bad("data-dir", format!("{}: {e}", data_dir.display())))?;
        let object_store = self
            .object_store
            .unwrap_or_else(|| format!("file://{}", abs.join("objects").display()));
        let advertised = match self.advertised_listener {
            Some(a) => parse_host_port(&a)
                .ok_or_else(|| bad("advertised-listener", format!("{a:?} is not host:port")))?,
            None if listen.ip().is_unspecified() => ("127.0.0.1".to_string(), listen.port()),
            None => (listen.ip().to_string(), listen.port()),
        };
        let default_partitions = self.default_partitions.unwrap_or(1);
        if !(1..=vigil_storage::log::MAX_PARTITIONS).contains(&default_partitions) {
            return Err(bad("default-partitions", "must be between 1 and 10000"));
        }
        // Short enough that each upload is a small burst (large ones steal CPU
        // from produce acks on small machines), long enough that objects are
        // not tiny.
        let upload_ms = self.upload_interval_ms.unwrap_or(1_000);
        if upload_ms == 0 {
            return Err(bad("upload-interval-ms", "must be greater than zero"));
        }
        let window = Duration::from_millis(self.wal_object_window_ms.unwrap_or(5));
        let wal = match self.wal.as_deref().unwrap_or("local") {
            "local" => vigil_storage::config::WalMode::Local,
            "object" => vigil_storage::config::WalMode::Object { window },
            other => {
                return Err(bad(
                    "wal",
                    format!("{other:?} is not a WAL mode (use local or object)"),
                ))
            }
        };
        let lease_ms = self.lease_interval_ms.unwrap_or(1_000);
        if lease_ms == 0 {
            return Err(bad("lease-interval-ms", "must be greater than zero"));
        }
        Ok(ServeConfig {
            wal,
            lease_interval: Duration::from_millis(lease_ms),
            takeover: self.takeover.unwrap_or(false),
            listen,
            admin_listen,
            data_dir: abs,
            object_store,
            advertised_listener: advertised,
            auto_create_topics: self.auto_create_topics.unwrap_or(true),
            default_partitions,
            node_id: self.node_id.unwrap_or(0),
            upload_interval: Duration::from_millis(upload_ms),
            group_initial_rebalance_delay: Duration::from_millis(
                self.group_initial_rebalance_delay_ms.unwrap_or(300),
            ),
        })
    }
}

fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| Some((host.to_string(), port.parse().ok()?)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_sources_win_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = FileConfig {
            listen: Some("127.0.0.1:1000".into()),
            data_dir: Some(dir.path().to_path_buf()),
            auto_create_topics: Some(false),
            ..Default::default()
        };
        let cli = FileConfig {
            listen: Some("127.0.0.1:2000".into()),
            ..Default::default()
        };
        let c = file.overlay(cli).resolve().expect("valid");
        assert_eq!(c.listen.port(), 2000);
        assert!(!c.auto_create_topics);
        assert_eq!(c.advertised_listener, ("127.0.0.1".to_string(), 2000));
        assert!(c.object_store.starts_with("file:///"));
        assert!(c.object_store.ends_with("/objects"));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = FileConfig {
            listen: Some("nonsense".into()),
            ..Default::default()
        }
        .resolve()
        .expect_err("must fail");
        assert_eq!(e.setting, "listen");
        assert_eq!(parse_host_port("[::1]:9092"), Some(("::1".into(), 9092)));
        assert_eq!(parse_host_port("host"), None);
    }
}
