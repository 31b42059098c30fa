//! How the broker meets Kafka clients: listeners, identity, topic defaults.

use std::net::SocketAddr;
use std::time::Duration;

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
    /// Broker node id (unique in a cluster).
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_NODE_ID"))]
    pub node_id: i32,
    /// Join a cluster through this coordinator: `etcd://host:port[,host:port...][/root]`,
    /// or `store` for the object store's own conditional writes. Unset: a
    /// single broker owning the whole store. Every node of a cluster shares
    /// one `--object-store` and runs `--wal object`.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_COORDINATOR"))]
    pub coordinator: Option<String>,
    /// Cluster session time-to-live (ms): a node that stops renewing for
    /// this long loses its partitions to the others.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_SESSION_TTL_MS"))]
    pub session_ttl_ms: u64,
    /// Largest record batch a produce may carry, in bytes, for topics without
    /// their own `max.message.bytes` (Kafka's broker `message.max.bytes`).
    /// Larger batches get MESSAGE_TOO_LARGE.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_MESSAGE_MAX_BYTES"))]
    pub message_max_bytes: usize,
    /// Largest request frame accepted, in bytes (Kafka's
    /// `socket.request.max.bytes`); a larger size prefix closes the
    /// connection before its body is read. Unset: derived from
    /// `message-max-bytes` (see [`ServerSettings::max_frame_bytes`]).
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_SOCKET_REQUEST_MAX_BYTES"))]
    pub socket_request_max_bytes: Option<usize>,
    /// Most bytes of records in one fetch response (Kafka's `fetch.max.bytes`);
    /// a client asking for more gets this many. As in Kafka, the first batch
    /// is returned whole even if it is larger, so a consumer can progress.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_FETCH_MAX_BYTES"))]
    pub fetch_max_bytes: usize,
    /// Longest a fetch may wait for data (ms): a client's larger `max_wait_ms`
    /// is cut to this, so a long poll cannot hold broker memory for longer.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_FETCH_MAX_WAIT_MS"))]
    pub fetch_max_wait_ms: u64,
    /// Requests of one connection dispatched but not yet answered; past this
    /// the broker stops reading from that connection until a response is
    /// written (TCP backpressure on the client).
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VIGIL_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION")
    )]
    pub max_in_flight_requests_per_connection: usize,
    /// Most client connections open at once (Kafka's `max.connections`); a
    /// connection over the cap is accepted and closed at once.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_MAX_CONNECTIONS"))]
    pub max_connections: usize,
    /// Most client connections open at once from one IP address (Kafka's
    /// `max.connections.per.ip`).
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_MAX_CONNECTIONS_PER_IP"))]
    pub max_connections_per_ip: usize,
    /// A connection with no request in flight and nothing read for this long
    /// (ms) is closed (Kafka's `connections.max.idle.ms`).
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_CONNECTIONS_MAX_IDLE_MS"))]
    pub connections_max_idle_ms: u64,
    /// Once the first byte of a request frame has arrived, the whole frame
    /// must arrive within this time (ms), or the connection is closed: a
    /// client trickling a frame (slowloris) cannot hold a connection and its
    /// buffer forever. Kafka has no such setting.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_REQUEST_READ_TIMEOUT_MS"))]
    pub request_read_timeout_ms: u64,
}

/// Kafka's default `message.max.bytes` (1 MiB plus a record batch's log overhead).
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_048_588;

/// How many largest batches one request frame may carry by default: a
/// produce request holds one batch per partition, and clients cap a whole
/// request at about one batch's worth by default (Java `max.request.size`,
/// librdkafka `message.max.bytes`: ~1 MB), so 8 leaves room for clients tuned
/// higher while keeping a hostile frame far below Kafka's 100 MiB.
const FRAME_BATCHES: usize = 8;

/// Request header, topic names and per-partition fields around the batches.
const FRAME_OVERHEAD: usize = 1024 * 1024;

/// Largest `socket-request-max-bytes` (the frame size prefix is an `i32`).
const MAX_FRAME_LIMIT: usize = i32::MAX as usize;

impl Default for ServerSettings {
    /// Loopback listeners on Kafka's and Redpanda's usual ports, auto-create
    /// on with one partition, node 0; Kafka's defaults for
    /// `message.max.bytes`, `fetch.max.bytes` and `connections.max.idle.ms`;
    /// the connection limits documented in docs/design/0009-hardening.md.
    fn default() -> Self {
        ServerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9644)),
            advertised_listener: None,
            auto_create_topics: true,
            default_partitions: 1,
            node_id: 0,
            coordinator: None,
            session_ttl_ms: 6_000,
            message_max_bytes: DEFAULT_MESSAGE_MAX_BYTES,
            socket_request_max_bytes: None,
            fetch_max_bytes: 52_428_800,
            fetch_max_wait_ms: 30_000,
            max_in_flight_requests_per_connection: 64,
            max_connections: 4_096,
            max_connections_per_ip: 1_024,
            connections_max_idle_ms: 600_000,
            request_read_timeout_ms: 30_000,
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
        for (name, value) in [
            ("fetch-max-bytes", self.fetch_max_bytes as u64),
            ("fetch-max-wait-ms", self.fetch_max_wait_ms),
            (
                "max-in-flight-requests-per-connection",
                self.max_in_flight_requests_per_connection as u64,
            ),
            ("max-connections", self.max_connections as u64),
            ("max-connections-per-ip", self.max_connections_per_ip as u64),
            ("connections-max-idle-ms", self.connections_max_idle_ms),
            ("request-read-timeout-ms", self.request_read_timeout_ms),
        ] {
            if value == 0 {
                return Err(SettingsError::new(name, "must be greater than zero"));
            }
        }
        // A batch must fit in a frame with its request around it.
        if !(1024..=MAX_FRAME_LIMIT / 2).contains(&self.message_max_bytes) {
            return Err(SettingsError::new(
                "message-max-bytes",
                format!(
                    "{} is not between 1024 and {}",
                    self.message_max_bytes,
                    MAX_FRAME_LIMIT / 2
                ),
            ));
        }
        if let Some(limit) = self.socket_request_max_bytes {
            let least = self.message_max_bytes + 64 * 1024;
            if !(least..=MAX_FRAME_LIMIT).contains(&limit) {
                return Err(SettingsError::new(
                    "socket-request-max-bytes",
                    format!(
                        "{limit} is not between {least} (message-max-bytes plus 64 KiB for the request around a batch) and {MAX_FRAME_LIMIT}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Largest request frame accepted: `socket-request-max-bytes` if set,
    /// else 8 largest batches (`message-max-bytes`) plus 1 MiB, about 9 MiB
    /// with the defaults.
    pub fn max_frame_bytes(&self) -> usize {
        self.socket_request_max_bytes.unwrap_or_else(|| {
            self.message_max_bytes
                .saturating_mul(FRAME_BATCHES)
                .saturating_add(FRAME_OVERHEAD)
                .min(MAX_FRAME_LIMIT)
        })
    }

    /// The longest a fetch may wait for data.
    pub fn fetch_max_wait(&self) -> Duration {
        Duration::from_millis(self.fetch_max_wait_ms)
    }

    /// How long a connection may sit idle.
    pub fn connections_max_idle(&self) -> Duration {
        Duration::from_millis(self.connections_max_idle_ms)
    }

    /// How long one request frame may take to arrive.
    pub fn request_read_timeout(&self) -> Duration {
        Duration::from_millis(self.request_read_timeout_ms)
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
pub(super) fn parse_host_port(s: &str) -> Option<(String, u16)> {
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
