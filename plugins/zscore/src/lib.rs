//! vigil detector plugin **zscore**: flags values far from their key's recent
//! history. For each key it keeps the last `window` values of a numeric
//! column and scores every new value against them *before* adding it (so an
//! outlier cannot hide itself): `z = (value - mean) / std`; a record with
//! `|z| ≥ threshold` raises an alert once the key has `min_samples` values.
//! A key whose history is constant alerts on any different value (reported
//! with `z = ±1e9`). Config fields: `field` (required: the numeric value
//! column), `key` (`"record_key"`, the default, or a string column), `window`
//! (100), `threshold` (3.0), `min_samples` (20), `max_keys` (10000; least
//! recently seen keys are forgotten beyond it). Severity grows with |z| /
//! threshold: medium below 1.5×, high below 2.5×, critical above. Alerts carry
//! `value`, `mean`, `std`, `z`, `samples` and `threshold` fields.
//!
//! ```json
//! {"field": "amount", "key": "record_key", "window": 100, "threshold": 3.0, "min_samples": 20}
//! ```

use serde::Deserialize;
use vigil_sdk::arrow_array::Array;
use vigil_sdk::blocks::{KeyedState, RollingStats};
use vigil_sdk::{bail, detector, state, Alert, Alerts, Batch, Detector, Result, Severity};

/// Config JSON of the detector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Numeric value column (declared in the deployment's value schema).
    pub field: String,
    /// `"record_key"` (default) or a string column that identifies the key.
    #[serde(default = "default_key")]
    pub key: String,
    /// Values per key the mean and std are taken over.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Alert when |z| reaches this.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Values a key needs before it is scored.
    #[serde(default = "default_min_samples")]
    pub min_samples: usize,
    /// Most keys tracked at once.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn default_key() -> String {
    "record_key".into()
}
fn default_window() -> usize {
    100
}
fn default_threshold() -> f64 {
    3.0
}
fn default_min_samples() -> usize {
    20
}
fn default_max_keys() -> usize {
    10_000
}

pub use vigil_sdk::blocks::CONSTANT_DEVIATION as CONSTANT_Z;

/// The detector: a rolling window of values per key.
#[derive(Debug)]
pub struct ZScore {
    cfg: Config,
    keys: KeyedState<RollingStats>,
}

/// Severity from how far past the threshold |z| is.
fn severity(z: f64, threshold: f64) -> Severity {
    match z.abs() / threshold {
        r if r >= 2.5 => Severity::Critical,
        r if r >= 1.5 => Severity::High,
        _ => Severity::Medium,
    }
}

#[detector]
impl Detector for ZScore {
    type Config = Config;

    fn new(cfg: Config) -> Result<Self> {
        if cfg.field.is_empty() {
            bail!("`field` must name a numeric value column");
        }
        if cfg.key.is_empty() {
            bail!("`key` must be \"record_key\" or a string column name");
        }
        if !(2..=100_000).contains(&cfg.window) {
            bail!("`window` must be in 2..=100000, got {}", cfg.window);
        }
        if !(cfg.threshold.is_finite() && cfg.threshold > 0.0) {
            bail!(
                "`threshold` must be a positive number, got {}",
                cfg.threshold
            );
        }
        if cfg.min_samples < 2 || cfg.min_samples > cfg.window {
            bail!(
                "`min_samples` must be in 2..=window ({}), got {}",
                cfg.window,
                cfg.min_samples
            );
        }
        if cfg.max_keys == 0 {
            bail!("`max_keys` must be at least 1");
        }
        Ok(ZScore {
            keys: KeyedState::new(cfg.max_keys),
            cfg,
        })
    }

    fn process(&mut self, batch: &Batch, alerts: &mut Alerts) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let values = batch.column_f64(&self.cfg.field)?;
        let key_col = match self.cfg.key.as_str() {
            "record_key" => None,
            col => Some(batch.str(col).map_err(|e| e.context("`key`"))?),
        };
        for (row, (&x, &offset)) in values.iter().zip(batch.offsets()).enumerate() {
            if !x.is_finite() {
                continue; // null or non-numeric: not a sample
            }
            let key: &[u8] = match key_col {
                Some(c) if c.is_valid(row) => c.value(row).as_bytes(),
                Some(_) => b"",
                None => batch.key(row).unwrap_or_default(),
            };
            let window = self.cfg.window;
            let stats = self
                .keys
                .get_or_insert_with(key, || RollingStats::new(window));
            let samples = stats.len();
            let scored = (samples >= self.cfg.min_samples).then(|| {
                let (mean, std) = (stats.mean(), stats.std());
                (mean, std, vigil_sdk::blocks::deviation(x, mean, std))
            });
            stats.push(x);
            let Some((mean, std, z)) = scored else {
                continue;
            };
            if z.abs() < self.cfg.threshold {
                continue;
            }
            let dir = if z > 0.0 { "above" } else { "below" };
            let field = &self.cfg.field;
            let message = if z.abs() == CONSTANT_Z {
                format!("{field} {x} differs from a constant {mean} over the last {samples} values")
            } else {
                format!(
                    "{field} {x} is {:.2} std {dir} the mean {mean:.4} (std {std:.4}, {samples} values)",
                    z.abs()
                )
            };
            alerts.push(
                Alert::new(offset)
                    .key(key)
                    .severity(severity(z, self.cfg.threshold))
                    .score(z)
                    .message(message)
                    .field("value", x)
                    .field("mean", mean)
                    .field("std", std)
                    .field("z", z)
                    .field("samples", samples)
                    .field("threshold", self.cfg.threshold),
            );
        }
        Ok(())
    }

    fn snapshot(&self) -> Option<Result<Vec<u8>>> {
        Some(state::to_bytes(&self.keys))
    }

    fn restore(&mut self, bytes: &[u8]) -> Option<Result<()>> {
        Some(state::from_bytes(bytes).map(|k| self.keys = k))
    }
}

#[cfg(test)]
mod tests;
