//! Deployment configuration of the ensemble detector and its validation.

use serde::{Deserialize, Serialize};

pub use vigil_sdk::blocks::KeySpec;

/// Config JSON of the detector. Every field has a default, so `{}` is valid.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Numeric value column (declared in the deployment's value schema).
    pub field: String,
    /// `"none"` (one series per partition), `"record_key"`, or a string column.
    pub key: String,
    /// Alert when the anomaly score (in [0, 1]) reaches this.
    pub threshold: f64,
    /// Records per series before any score is produced (learning period),
    /// except far range breakouts once 150 records and three days of
    /// record time have passed (a coarse-step series).
    pub warmup: usize,
    /// Records after an alert during which that series raises no new alert
    /// (one continuing anomaly gives one alert).
    pub cooldown: usize,
    /// The cooldown also ends once this many minutes of record time have
    /// passed since the alert (0: `cooldown` records only): 288 records
    /// are a day of 5-minute data but twelve days of hourly data.
    pub cooldown_minutes: u64,
    /// Records over which the distribution of recent surprise is estimated.
    pub likelihood_window: usize,
    /// Records averaged into the short-term surprise compared with that distribution.
    pub short_window: usize,
    /// A value beyond the series' seen range by this fraction of the range is
    /// an anomaly on its own (0 disables).
    pub range_tolerance: f64,
    /// Most series tracked at once (least recently seen evicted beyond it).
    pub max_keys: usize,
    /// Emit a score stream instead of alerts: one score record
    /// (`vigil_sdk::blocks::score_record`) per record whose suppressed score
    /// is above 0 or that alerts, for `vigil eval --sweep`.
    pub scores: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            field: "value".to_string(),
            key: "none".to_string(),
            threshold: 0.5,
            warmup: 300,
            cooldown: 288,
            cooldown_minutes: 4320,
            likelihood_window: 2000,
            short_window: 20,
            range_tolerance: 0.05,
            max_keys: 1000,
            scores: false,
        }
    }
}

impl Config {
    /// Checks every field, naming the offending one in the error.
    pub fn validate(&self) -> Result<(), String> {
        if self.field.is_empty() {
            return Err("`field` must name the numeric value column".into());
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(format!(
                "`threshold` must be in (0, 1] (scores are in [0, 1]), got {}",
                self.threshold
            ));
        }
        if self.warmup > 1_000_000 {
            return Err(format!(
                "`warmup` must be at most 1000000 records, got {}",
                self.warmup
            ));
        }
        if self.cooldown_minutes > 1_000_000_000 {
            return Err(format!(
                "`cooldown_minutes` must be at most 1000000000, got {}",
                self.cooldown_minutes
            ));
        }
        if !(10..=100_000).contains(&self.likelihood_window) {
            return Err(format!(
                "`likelihood_window` must be in 10..=100000, got {}",
                self.likelihood_window
            ));
        }
        if !(1..=1000).contains(&self.short_window) {
            return Err(format!(
                "`short_window` must be in 1..=1000, got {}",
                self.short_window
            ));
        }
        if !(self.range_tolerance >= 0.0 && self.range_tolerance.is_finite()) {
            return Err(format!(
                "`range_tolerance` must be >= 0, got {}",
                self.range_tolerance
            ));
        }
        if self.max_keys == 0 || self.max_keys > 1_000_000 {
            return Err(format!(
                "`max_keys` must be in 1..=1000000, got {}",
                self.max_keys
            ));
        }
        Ok(())
    }

    /// How the series key is derived.
    pub fn key_spec(&self) -> KeySpec {
        KeySpec::parse(&self.key)
    }
}
