//! How the broker meets Kafka clients: listeners, identity, topic defaults.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::SettingsError;

/// Kafka-facing settings. Every field is also a `vigil serve` flag of the
/// same name (kebab-case), a `VIGIL_*` variable and a TOML key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerSettings {
    /// Kafka listener address.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_LISTEN"))]
    pub listen: SocketAddr,
    /// Admin HTTP listener (/metrics, /healthz).
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_ADMIN_LISTEN"))]
    pub admin_listen: SocketAddr,
    /// host:port clients should connect to (default: the listen address).
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_ADVERTISED_LISTENER"))]
    pub advertised_listener: Option<String>,
    /// Create topics on first use (Metadata or Produce naming an unknown topic).
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VIGIL_AUTO_CREATE_TOPICS", action = clap::ArgAction::Set)
    )]
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics asking for -1.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_DEFAULT_PARTITIONS"))]
    pub default_partitions: i32,
    /// Broker node id.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_NODE_ID"))]
    pub node_id: i32,
}

impl Default for ServerSettings {
    /// Loopback listeners on Kafka's and Redpanda's usual ports, auto-create
    /// on with one partition, node 0.
    fn default() -> Self {
        ServerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9644)),
            advertised_listener: None,
            auto_create_topics: true,
            default_partitions: 1,
            node_id: 0,
        }
    }
}

impl ServerSettings {
    /// Rejects values that cannot work, naming the setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(1..=vigil_storage::log::MAX_PARTITIONS).contains(&self.default_partitions) {
            return Err(SettingsError::new(
                "default-partitions",
                format!(
                    "{} is not between 1 and {}",
                    self.default_partitions,
                    vigil_storage::log::MAX_PARTITIONS
                ),
            ));
        }
        if let Some(a) = &self.advertised_listener {
            parse_host_port(a).ok_or_else(|| {
                SettingsError::new("advertised-listener", format!("{a:?} is not host:port"))
            })?;
        }
        Ok(())
    }

    /// `host:port` clients are told to connect to: the advertised listener,
    /// or the listen address (loopback if it is unspecified). Port 0 (pick a
    /// free port) becomes `bound_port`, the port the listener actually got.
    pub fn advertised(&self, bound_port: u16) -> Result<(String, u16), SettingsError> {
        let (host, port) = match &self.advertised_listener {
            Some(a) => parse_host_port(a).ok_or_else(|| {
                SettingsError::new("advertised-listener", format!("{a:?} is not host:port"))
            })?,
            None if self.listen.ip().is_unspecified() => {
                ("127.0.0.1".to_string(), self.listen.port())
            }
            None => (self.listen.ip().to_string(), self.listen.port()),
        };
        Ok((host, if port == 0 { bound_port } else { port }))
    }
}

/// `host:port` or `[v6]:port`.
fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| Some((host.to_string(), port.parse().ok()?)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(parse_host_port("[::1]:9092"), Some(("::1".into(), 9092)));
        assert_eq!(
            parse_host_port("kafka.local:19092"),
            Some(("kafka.local".into(), 19092))
        );
        assert_eq!(parse_host_port("host"), None);
        assert_eq!(parse_host_port(":9092"), None);
        assert_eq!(parse_host_port("host:port"), None);
    }

    #[test]
    fn advertised_defaults_to_the_listener_and_fills_port_zero() {
        let mut s = ServerSettings {
            listen: "0.0.0.0:0".parse().expect("addr"),
            ..ServerSettings::default()
        };
        assert_eq!(s.advertised(4242).expect("ok"), ("127.0.0.1".into(), 4242));
        s.advertised_listener = Some("broker-1:9093".into());
        assert_eq!(s.advertised(4242).expect("ok"), ("broker-1".into(), 9093));
    }
}
