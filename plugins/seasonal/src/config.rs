//! Deployment configuration of the seasonal detector and its validation.

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
    /// `"auto"` (pick daily, weekly or none by which predicts best),
    /// `"none"`, `"daily"` or `"weekly"`. Ignored when `period_ms` is set.
    pub seasonality: String,
    /// A custom season length in milliseconds (overrides `seasonality`).
    pub period_ms: Option<u64>,
    /// Records per series before any score is produced (learning period).
    pub warmup: usize,
    /// Records after an alert during which that series raises no new alert.
    pub cooldown: usize,
    /// Values kept per series for the seasonal baseline (caps memory: 8 bytes each).
    pub history: usize,
    /// Records over which the distribution of recent surprise is estimated.
    pub likelihood_window: usize,
    /// Records averaged into the short-term surprise compared with that distribution.
    pub short_window: usize,
    /// A value beyond the series' seen range by this fraction of the range is
    /// an anomaly on its own (0 disables).
    pub range_tolerance: f64,
    /// Most series tracked at once (least recently seen evicted beyond it).
    pub max_keys: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            field: "value".to_string(),
            key: "none".to_string(),
            threshold: 0.65,
            seasonality: "auto".to_string(),
            period_ms: None,
            warmup: 300,
            cooldown: 288,
            history: 4096,
            likelihood_window: 2000,
            short_window: 8,
            range_tolerance: 0.05,
            max_keys: 1000,
        }
    }
}

/// Milliseconds in a day and a week: the seasons `"auto"` tries.
pub const DAY_MS: u64 = 86_400_000;
/// See [`DAY_MS`].
pub const WEEK_MS: u64 = 7 * DAY_MS;

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
        if !matches!(
            self.seasonality.as_str(),
            "auto" | "none" | "daily" | "weekly"
        ) {
            return Err(format!(
                "`seasonality` must be one of \"auto\", \"none\", \"daily\", \"weekly\", got {:?}",
                self.seasonality
            ));
        }
        if let Some(p) = self.period_ms {
            if p == 0 {
                return Err("`period_ms` must be > 0".into());
            }
        }
        if !(16..=1_000_000).contains(&self.history) {
            return Err(format!(
                "`history` must be in 16..=1000000 values, got {}",
                self.history
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

    /// The season lengths (ms) to try, besides "no season".
    pub fn periods_ms(&self) -> Vec<u64> {
        if let Some(p) = self.period_ms {
            return vec![p];
        }
        match self.seasonality.as_str() {
            "none" => vec![],
            "daily" => vec![DAY_MS],
            "weekly" => vec![WEEK_MS],
            _ => vec![DAY_MS, WEEK_MS],
        }
    }

    /// How the series key is derived.
    pub fn key_spec(&self) -> KeySpec {
        KeySpec::parse(&self.key)
    }
}
