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
}

impl Default for GroupSettings {
    /// 300 ms: long enough for members started together to join one
    /// rebalance, short enough not to be noticed (Kafka's default is 3 s).
    fn default() -> Self {
        GroupSettings {
            group_initial_rebalance_delay_ms: 300,
        }
    }
}

impl GroupSettings {
    /// Every value of these settings works; kept so each section validates
    /// the same way.
    pub fn validate(&self) -> Result<(), SettingsError> {
        Ok(())
    }

    /// The coordinator's configuration: the one place these settings become
    /// vigil_groups'.
    pub fn group_config(&self) -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(self.group_initial_rebalance_delay_ms),
            ..GroupConfig::default()
        }
    }
}
