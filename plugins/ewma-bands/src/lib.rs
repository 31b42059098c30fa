//! vigil detector plugin **ewma-bands**: Bollinger-like bands per key. Each
//! key's numeric column is tracked with an exponentially weighted mean and
//! standard deviation; a value outside `mean ± k·std` (computed *before* the
//! value is added) raises an alert once the key has `warmup` values. Unlike a
//! fixed window, the EWMA follows drifting levels smoothly and forgets old
//! regimes at a rate set by `alpha` (weight of each new value) or
//! `half_life` (records after which a value's weight halves; give one, not
//! both; default half-life 20). Config fields: `field` (required), `key`
//! (`"record_key"`, the default, `"none"` for one series per partition, or a
//! string column), `alpha` / `half_life`, `k` (3.0), `warmup` (20 values),
//! `max_keys` (10000; least recently seen keys are forgotten beyond it,
//! counted in each alert's `keys_evicted`). Severity grows with the deviation
//! in std units over `k` (medium < 1.5×, high < 2.5×, else critical); alerts
//! carry `value`, `mean`, `std`, `upper`, `lower`, `deviation`, `band`, the
//! expected range (`expected` = mean, `expected_low`/`expected_high` = the
//! band), `keys_tracked` and `keys_evicted`. With `quiet` set, a key's run of
//! out-of-band values is one incident: one alert when it opens (fields
//! `incident: "opened"`, `incident_start`), an `Info` notice when `quiet`
//! values in a row are back inside the band (`incident: "closed"`,
//! `incident_start`, `incident_end`, `incident_peak` in units of `k`,
//! `incident_records`), and no new incident within `cooldown` values.
//!
//! ```json
//! {"field": "latency_ms", "key": "endpoint", "half_life": 50, "k": 3.0, "warmup": 30}
//! ```

use serde::Deserialize;
use vigil_sdk::blocks::{Ewma, KeySpec, KeyedIncidents, KeyedModels, Verdict};
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
    /// Weight of each new value, in (0, 1).
    pub alpha: Option<f64>,
    /// Records after which a value's weight has halved (default 20).
    pub half_life: Option<f64>,
    /// Band half-width in standard deviations.
    #[serde(default = "default_k")]
    pub k: f64,
    /// Values a key needs before it is checked.
    #[serde(default = "default_warmup")]
    pub warmup: u64,
    /// Most keys tracked at once.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Set: group a key's consecutive out-of-band values into one incident
    /// (`vigil_sdk::blocks::Incidents`): one alert when it opens, an `Info`
    /// notice with start and end once this many values in a row are back
    /// inside the band. Unset (default): one alert per out-of-band value.
    pub quiet: Option<usize>,
    /// With `quiet`: values after an incident opens during which that key
    /// opens no new one (default 0).
    #[serde(default)]
    pub cooldown: usize,
}

fn default_key() -> String {
    "record_key".into()
}
fn default_k() -> f64 {
    3.0
}
fn default_warmup() -> u64 {
    20
}
fn default_max_keys() -> usize {
    10_000
}

pub use vigil_sdk::blocks::CONSTANT_DEVIATION;

/// The detector: an EWMA mean/variance per key.
#[derive(Debug)]
pub struct EwmaBands {
    cfg: Config,
    alpha: f64,
    keys: KeyedModels<Ewma>,
    /// With `quiet`: each key's incident state (off: the snapshot is
    /// `keys` alone, as before the option existed).
    incidents: KeyedIncidents,
}

#[detector]
impl Detector for EwmaBands {
    type Config = Config;

    fn new(cfg: Config) -> Result<Self> {
        if cfg.field.is_empty() {
            bail!("`field` must name a numeric value column");
        }
        if cfg.key.is_empty() {
            bail!("`key` must be \"record_key\" or a string column name");
        }
        let alpha = match (cfg.alpha, cfg.half_life) {
            (Some(_), Some(_)) => bail!("give `alpha` or `half_life`, not both"),
            (Some(a), None) if a > 0.0 && a < 1.0 => a,
            (Some(a), None) => bail!("`alpha` must be in (0, 1), got {a}"),
            (None, Some(h)) if h.is_finite() && h > 0.0 => 1.0 - 0.5f64.powf(1.0 / h),
            (None, Some(h)) => bail!("`half_life` must be a positive number of records, got {h}"),
            (None, None) => 1.0 - 0.5f64.powf(1.0 / 20.0),
        };
        if !(cfg.k.is_finite() && cfg.k > 0.0) {
            bail!("`k` must be a positive number, got {}", cfg.k);
        }
        if cfg.warmup < 2 {
            bail!("`warmup` must be at least 2 values, got {}", cfg.warmup);
        }
        if cfg.max_keys == 0 {
            bail!("`max_keys` must be at least 1");
        }
        let spec = KeySpec::parse(&cfg.key);
        let incidents = KeyedIncidents::new(spec.clone(), cfg.max_keys, cfg.quiet, cfg.cooldown)
            .map_err(vigil_sdk::Error::msg)?;
        Ok(EwmaBands {
            keys: KeyedModels::new(spec, cfg.max_keys),
            incidents,
            alpha,
            cfg,
        })
    }

    fn process(&mut self, batch: &Batch, alerts: &mut Alerts) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let values = batch.column_f64(&self.cfg.field)?;
        let keys = self.keys.keys(batch)?;
        let k = self.cfg.k;
        for (row, (&x, &offset)) in values.iter().zip(batch.offsets()).enumerate() {
            if !x.is_finite() {
                continue;
            }
            let key = keys.get(row);
            let alpha = self.alpha;
            let ew = self.keys.model(key, || Ewma::new(alpha));
            let seen = ew.count();
            let (mean, std) = (ew.mean(), ew.std());
            ew.update(x);
            let warm = seen >= self.cfg.warmup;
            let d = vigil_sdk::blocks::deviation(x, mean, std);
            let event = match self
                .incidents
                .judge(key, offset, d.abs() / k, d.abs() > k, warm)
            {
                Verdict::Quiet => continue,
                Verdict::Notice(n) => {
                    alerts.push(n);
                    continue;
                }
                Verdict::Alert(ev) => ev,
            };
            let (upper, lower) = (mean + k * std, mean - k * std);
            let band = if d > 0.0 { "upper" } else { "lower" };
            let severity = match d.abs() / k {
                r if r >= 2.5 => Severity::Critical,
                r if r >= 1.5 => Severity::High,
                _ => Severity::Medium,
            };
            let field = &self.cfg.field;
            let alert = self.keys.annotate(
                Alert::new(offset)
                    .key(key)
                    .severity(severity)
                    .score(d)
                    .message(format!(
                        "{field} {x} broke the {band} band [{lower:.4}, {upper:.4}] \
                             (EWMA {mean:.4} ± {k}·{std:.4})"
                    ))
                    .field("value", x)
                    .field("mean", mean)
                    .field("std", std)
                    .field("upper", upper)
                    .field("lower", lower)
                    .field("deviation", d)
                    .field("band", band)
                    .expected(mean, lower, upper),
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
