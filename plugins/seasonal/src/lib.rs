//! vigil detector plugin **seasonal**: an anomaly detector for metric streams
//! (CPU, latency, request counts, temperatures, …), one series per partition
//! or per key. Each series is predicted by a robust baseline — the recent
//! median, or, when it predicts clearly better, the median of the same phase
//! of the last three days or weeks (seasonality is picked automatically from
//! the record timestamps) plus a level correction — and the residual, in units
//! of the baseline's typical error, is turned into an "anomaly likelihood"
//! (how unusual the recent average surprise is against its own distribution,
//! as Numenta's detectors do); a value far outside the range the series has
//! ever shown scores 1. The per-record score is in [0, 1]; an alert is raised
//! when it reaches `threshold`, then the series stays quiet for `cooldown`
//! records. Config fields (all optional): `field` ("value"), `key` ("none":
//! per partition; "record_key"; or a string column), `threshold` (0.65),
//! `seasonality` ("auto" | "none" | "daily" | "weekly"), `period_ms` (custom
//! season, none), `warmup` (300 records), `cooldown` (288 records),
//! `history` (4096 values kept for the seasonal baseline), `likelihood_window`
//! (2000), `short_window` (8), `range_tolerance` (0.05 of the seen range),
//! `max_keys` (100). Memory per series is about 8 bytes × (history +
//! likelihood_window). On the Numenta Anomaly Benchmark data shipped with the
//! project it scores about 60 on the standard profile (see
//! `examples/nab_score.rs`).
//!
//! ```json
//! {"field": "cpu", "key": "record_key", "threshold": 0.65, "seasonality": "auto"}
//! ```

pub mod config;
pub mod model;
pub mod stats;

use vigil_sdk::blocks::KeyedState;
use vigil_sdk::{bail, detector, state, Alert, Alerts, Batch, Detector, Result, Severity};

pub use config::{Config, KeySpec};
use model::{Kind, Output, SeriesModel};

/// The detector: one [`SeriesModel`] per series key.
#[derive(Debug)]
pub struct Seasonal {
    cfg: Config,
    key: KeySpec,
    series: KeyedState<SeriesModel>,
}

#[detector]
impl Detector for Seasonal {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        if let Err(e) = config.validate() {
            bail!("{e}");
        }
        Ok(Seasonal {
            key: config.key_spec(),
            series: KeyedState::new(config.max_keys),
            cfg: config,
        })
    }

    fn process(&mut self, batch: &Batch, alerts: &mut Alerts) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let values = batch.column_f64(&self.cfg.field)?;
        let keys = self.key.keys(batch)?;
        let timestamps = batch.timestamps();
        for (row, (&value, (&ts, &offset))) in values
            .iter()
            .zip(timestamps.iter().zip(batch.offsets()))
            .enumerate()
        {
            if !value.is_finite() {
                // Null or non-numeric: nothing to learn from, nothing to flag.
                continue;
            }
            let key = keys.get(row);
            let cfg = &self.cfg;
            let model = self
                .series
                .get_or_insert_with(key, || SeriesModel::new(cfg));
            let out = model.update(cfg, ts, value);
            if out.alert {
                let alert_key = match self.key {
                    KeySpec::None => batch.key(row),
                    _ => Some(key),
                };
                alerts.push(make_alert(offset, alert_key, value, &out, cfg.threshold));
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Option<Result<Vec<u8>>> {
        Some(state::to_bytes(&self.series))
    }

    fn restore(&mut self, bytes: &[u8]) -> Option<Result<()>> {
        Some(state::from_bytes(bytes).map(|s| self.series = s))
    }
}

/// Severity grows with how far the value is from the baseline; leaving the
/// seen range is at least `High`.
fn severity(out: &Output) -> Severity {
    let by_z = match out.z.abs() {
        z if z >= 10.0 => Severity::Critical,
        z if z >= 5.0 => Severity::High,
        _ => Severity::Medium,
    };
    if out.kind == Kind::RangeBreakout {
        by_z.max(Severity::High)
    } else {
        by_z
    }
}

fn make_alert(offset: i64, key: Option<&[u8]>, value: f64, out: &Output, threshold: f64) -> Alert {
    let season = match out.period {
        0 => "no season".to_string(),
        p => format!("season of {p} records"),
    };
    let what = match out.kind {
        Kind::RangeBreakout => "left the range seen so far",
        _ => "unusual deviation from the baseline",
    };
    let mut a = Alert::new(offset)
        .severity(severity(out))
        .score(out.score)
        .message(format!(
            "value {value} vs expected {:.4} (usual range {:.4}..{:.4}, z {:.2}, {season}): {what}",
            out.expected,
            out.expected - out.band,
            out.expected + out.band,
            out.z
        ))
        .field("value", value)
        .expected(
            out.expected,
            out.expected - out.band,
            out.expected + out.band,
        )
        .field("residual", out.residual)
        .field("z", out.z)
        .field("anomaly_score", out.score)
        .field("threshold", threshold)
        .field("period_records", out.period)
        .field("kind", out.kind.as_str());
    if let Some(k) = key {
        a = a.key(k);
    }
    a
}

#[cfg(test)]
mod tests;
