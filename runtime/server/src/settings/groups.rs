//! Consumer-group coordinator settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigil_groups::GroupConfig;

use super::SettingsError;

/// Consumer-group settings. Every field is also a `vigil serve` flag of the
/// same name (kebab-case), a `VIGIL_*` variable and a TOML key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct GroupSettings {
    /// Delay (ms) before the first rebalance of a new consumer group completes.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VIGIL_GROUP_INITIAL_REBALANCE_DELAY_MS")
    )]
    pub group_initial_rebalance_delay_ms: u64,
    /// Minutes the committed offsets of a group without members are kept
    /// after its last commit (Kafka's `offsets.retention.minutes`; default
    /// 10080 = 7 days). Expired offsets and the group are deleted durably.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_OFFSETS_RETENTION_MINUTES"))]
    pub offsets_retention_minutes: u64,
    /// How often (ms) expired offsets are looked for (Kafka's
    /// `offsets.retention.check.interval.ms`; default 600000).
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VIGIL_OFFSETS_RETENTION_CHECK_INTERVAL_MS")
    )]
    pub offsets_retention_check_interval_ms: u64,
}

impl Default for GroupSettings {
    /// 300 ms: long enough for members started together to join one
    /// rebalance, short enough not to be noticed (Kafka's default is 3 s).
    fn default() -> Self {
        GroupSettings {
            group_initial_rebalance_delay_ms: 300,
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_check_interval_ms: 600_000,
        }
    }
}

impl GroupSettings {
    /// Rejects values that cannot work, naming the setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.offsets_retention_minutes == 0 {
            return Err(SettingsError::new(
                "offsets-retention-minutes",
                "must be greater than zero",
            ));
        }
        // Above this the minutes overflow a Duration's milliseconds budget
        // for i64 arithmetic; a century is plenty.
        if self.offsets_retention_minutes > 100 * 365 * 24 * 60 {
            return Err(SettingsError::new(
                "offsets-retention-minutes",
                "must be at most 52560000 (100 years)",
            ));
        }
        if self.offsets_retention_check_interval_ms == 0 {
            return Err(SettingsError::new(
                "offsets-retention-check-interval-ms",
                "must be greater than zero",
            ));
        }
        Ok(())
    }

    /// The coordinator's configuration: the one place these settings become
    /// vigil_groups'.
    pub fn group_config(&self) -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(self.group_initial_rebalance_delay_ms),
            offsets_retention: Duration::from_secs(self.offsets_retention_minutes * 60),
            offsets_retention_check_interval: Duration::from_millis(
                self.offsets_retention_check_interval_ms,
            ),
            ..GroupConfig::default()
        }
    }
}
