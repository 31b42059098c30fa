//! Admin HTTP API limits (`[admin]`): request bodies, requests and
//! connections at once, deadlines and the header-read timeout.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SettingsError;
use crate::admin::AdminLimits;

/// Admin API settings. Every field is also a `vigil serve` flag of the same
/// name (kebab-case), a `VIGIL_*` variable and a TOML key; the `admin-`
/// prefix keeps the flat TOML keys apart from the Kafka listener's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdminSettings {
    /// Admin connections served at once; one more is answered 503 and
    /// closed. Default 256; 1..=65536.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_ADMIN_MAX_CONNECTIONS"))]
    pub admin_max_connections: usize,
    /// `/v1` requests handled at once (more wait up to their deadline, then
    /// get 503). Default 16; 1..=4096.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VIGIL_ADMIN_MAX_CONCURRENT_REQUESTS")
    )]
    pub admin_max_concurrent_requests: usize,
    /// How long (ms) a request line and headers may take to arrive, and an
    /// idle keep-alive connection may wait for its next request, before the
    /// connection is closed (a slowloris client). Default 10000; 100..=600000.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_ADMIN_HEADER_READ_TIMEOUT_MS"))]
    pub admin_header_read_timeout_ms: u64,
    /// Largest JSON request body in bytes (413 above). Default 1 MiB;
    /// 1 KiB..=64 MiB.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_ADMIN_JSON_BODY_BYTES"))]
    pub admin_json_body_bytes: usize,
    /// Largest module upload in bytes (413 above). Default 64 MiB;
    /// 1 KiB..=1 GiB.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_ADMIN_MODULE_BODY_BYTES"))]
    pub admin_module_body_bytes: usize,
}

impl Default for AdminSettings {
    /// [`AdminLimits::default`]'s values.
    fn default() -> Self {
        let l = AdminLimits::default();
        AdminSettings {
            admin_max_connections: l.max_connections,
            admin_max_concurrent_requests: l.max_concurrent,
            admin_header_read_timeout_ms: u64::try_from(l.header_read_timeout.as_millis())
                .unwrap_or(u64::MAX),
            admin_json_body_bytes: l.json_body,
            admin_module_body_bytes: l.module_body,
        }
    }
}

impl AdminSettings {
    /// Rejects values that cannot work, naming the setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let within = |name: &str, v: u64, min: u64, max: u64| {
            if (min..=max).contains(&v) {
                Ok(())
            } else {
                Err(SettingsError::new(
                    name,
                    format!("{v} is not between {min} and {max}"),
                ))
            }
        };
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        within(
            "admin-max-connections",
            n(self.admin_max_connections),
            1,
            65_536,
        )?;
        within(
            "admin-max-concurrent-requests",
            n(self.admin_max_concurrent_requests),
            1,
            4096,
        )?;
        within(
            "admin-header-read-timeout-ms",
            self.admin_header_read_timeout_ms,
            100,
            600_000,
        )?;
        within(
            "admin-json-body-bytes",
            n(self.admin_json_body_bytes),
            1 << 10,
            64 << 20,
        )?;
        within(
            "admin-module-body-bytes",
            n(self.admin_module_body_bytes),
            1 << 10,
            1 << 30,
        )
    }

    /// The admin API's limits: the one place these settings become
    /// [`AdminLimits`]; the deadlines stay at their defaults.
    pub fn limits(&self) -> AdminLimits {
        AdminLimits {
            module_body: self.admin_module_body_bytes,
            json_body: self.admin_json_body_bytes,
            max_concurrent: self.admin_max_concurrent_requests,
            max_connections: self.admin_max_connections,
            header_read_timeout: Duration::from_millis(self.admin_header_read_timeout_ms),
            ..AdminLimits::default()
        }
    }
}
