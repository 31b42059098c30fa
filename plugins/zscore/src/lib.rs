//! vigil detector plugin **zscore**: flags values far from their key's recent
//! history. For each key it keeps the last `window` values of a numeric
//! column and scores every new value against them *before* adding it (so an
//! outlier cannot hide itself): `z = (value - mean) / std`; a record with
//! `|z| ≥ threshold` raises an alert once the key has `min_samples` values.
//! A key whose history is constant alerts on any different value (reported
//! with `z = ±1e9`). Config fields: `field` (required: the numeric value
//! column), `key` (`"record_key"`, the default, `"none"` for one series per
//! partition, or a string column), `window` (100), `threshold` (3.0),
//! `min_samples` (20), `max_keys` (10000; least recently seen keys are
//! forgotten beyond it, counted in each alert's `keys_evicted`). Severity
//! grows with |z| / threshold: medium below 1.5×, high below 2.5×, critical
//! above. Alerts carry `value`, `mean`, `std`, `z`, `samples`, `threshold`,
//! the expected range (`expected` = mean, `expected_low`/`expected_high` =
//! mean ∓ threshold·std), `keys_tracked` and `keys_evicted`. With `quiet` set,
//! a key's run of outlying values is one incident (alert on opening with
//! `incident: "opened"`, `Info` notice with `incident_start`/`incident_end`
//! when `quiet` values in a row are back below the threshold, no new one
//! within `cooldown` values); see `vigil_sdk::blocks::KeyedIncidents`.
//!
//! ```json
//! {"field": "amount", "key": "record_key", "window": 100, "threshold": 3.0, "min_samples": 20}
//! ```

use serde::Deserialize;
use vigil_sdk::blocks::{KeySpec, KeyedIncidents, KeyedModels, RollingStats, Verdict};
use vigil_sdk::{bail, detector, Alert, Alerts, Batch, Detector, Result, Severity};

/// Config JSON of the detector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Numeric value column (declared in the deployment's value schema).
    pub field: String,
    /// `"record_key"` (default), `"none"` (one series per partition) or a
    /// string column that identifies the key.
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
    /// Set: a key's run of outlying values is one incident (one alert when
    /// it opens, an `Info` notice once this many values in a row are back
    /// below the threshold). Unset (default): one alert per outlying value.
    pub quiet: Option<usize>,
    /// With `quiet`: values after an incident opens during which that key
    /// opens no new one (default 0).
    #[serde(default)]
    pub cooldown: usize,
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
    keys: KeyedModels<RollingStats>,
    /// With `quiet`: each key's incident state.
    incidents: KeyedIncidents,
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
        let spec = KeySpec::parse(&cfg.key);
        let incidents = KeyedIncidents::new(spec.clone(), cfg.max_keys, cfg.quiet, cfg.cooldown)
            .map_err(vigil_sdk::Error::msg)?;
        Ok(ZScore {
            keys: KeyedModels::new(spec, cfg.max_keys),
            incidents,
            cfg,
        })
    }

    fn process(&mut self, batch: &Batch, alerts: &mut Alerts) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let values = batch.column_f64(&self.cfg.field)?;
        let keys = self.keys.keys(batch)?;
        for (row, (&x, &offset)) in values.iter().zip(batch.offsets()).enumerate() {
            if !x.is_finite() {
                continue; // null or non-numeric: not a sample
            }
            let key = keys.get(row);
            let window = self.cfg.window;
            let stats = self.keys.model(key, || RollingStats::new(window));
            let samples = stats.len();
            let scored = (samples >= self.cfg.min_samples).then(|| {
                let (mean, std) = (stats.mean(), stats.std());
                (mean, std, vigil_sdk::blocks::deviation(x, mean, std))
            });
            stats.push(x);
            let t = self.cfg.threshold;
            let z_now = scored.map_or(0.0, |(_, _, z)| z);
            let event = match self.incidents.judge(
                key,
                offset,
                z_now.abs() / t,
                z_now.abs() >= t,
                scored.is_some(),
            ) {
                Verdict::Quiet => continue,
                Verdict::Notice(n) => {
                    alerts.push(n);
                    continue;
                }
                Verdict::Alert(ev) => ev,
            };
            let Some((mean, std, z)) = scored else {
                continue;
            };
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
            let alert = self.keys.annotate(
                Alert::new(offset)
                    .key(key)
                    .severity(severity(z, t))
                    .score(z)
                    .message(message)
                    .field("value", x)
                    .field("mean", mean)
                    .field("std", std)
                    .field("z", z)
                    .field("samples", samples)
                    .field("threshold", t)
                    .expected(mean, mean - t * std, mean + t * std),
            );
            alerts.push(match event {
                Some(ev) => ev.annotate(alert),
                None => alert,
            });
        }
        self.keys.end_batch();
        Ok(())
    }

    fn snapshot(&self) -> Option<Result<Vec<u8>>> {
        Some(self.incidents.snapshot(&self.keys))
    }

    fn restore(&mut self, bytes: &[u8]) -> Option<Result<()>> {
        Some(self.incidents.restore(&mut self.keys, bytes))
    }
}

#[cfg(test)]
mod tests;
