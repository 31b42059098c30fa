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
use vigil_sdk::blocks::{Ewma, IncidentEvent, Incidents, KeySpec, KeyedModels};
use vigil_sdk::{bail, detector, state, Alert, Alerts, Batch, Detector, Result, Severity};

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
    /// With `quiet`: each key's incident state. Touched for the same keys
    /// in the same order as `keys`, so both evict the same key at the same
    /// time; a separate map keeps the snapshot of the default config as it
    /// was (no format change for existing deployments).
    incidents: Option<KeyedModels<Incidents>>,
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
        if cfg.quiet == Some(0) {
            bail!("`quiet` must be at least 1 value");
        }
        if cfg.cooldown > 0 && cfg.quiet.is_none() {
            bail!("`cooldown` needs `quiet` (it spaces incidents)");
        }
        Ok(EwmaBands {
            keys: KeyedModels::new(KeySpec::parse(&cfg.key), cfg.max_keys),
            incidents: cfg
                .quiet
                .map(|_| KeyedModels::new(KeySpec::parse(&cfg.key), cfg.max_keys)),
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
            let (quiet, cooldown) = (self.cfg.quiet.unwrap_or(1), self.cfg.cooldown);
            let incidents = self
                .incidents
                .as_mut()
                .map(|m| m.model(key, || Incidents::new(1.0, quiet, cooldown)));
            if seen < self.cfg.warmup {
                continue;
            }
            let d = vigil_sdk::blocks::deviation(x, mean, std);
            let event = incidents.and_then(|inc| inc.update(offset, d.abs() / k));
            if let Some(ev @ IncidentEvent::Closed { .. }) = event {
                if let Some(n) = ev.notice(offset) {
                    alerts.push(n.key(key));
                }
                continue;
            }
            if d.abs() <= k || (self.incidents.is_some() && event.is_none()) {
                continue;
            }
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
        Some(match &self.incidents {
            None => state::to_bytes(self.keys.state()),
            Some(inc) => state::to_bytes(&(self.keys.state(), inc.state())),
        })
    }

    fn restore(&mut self, bytes: &[u8]) -> Option<Result<()>> {
        Some(match &mut self.incidents {
            None => state::from_bytes(bytes).map(|k| self.keys.set_state(k)),
            Some(inc) => state::from_bytes(bytes).map(|(k, i)| {
                self.keys.set_state(k);
                inc.set_state(i);
            }),
        })
    }
}

#[cfg(test)]
mod tests;
