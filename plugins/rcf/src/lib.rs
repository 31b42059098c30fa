//! vigil detector plugin **rcf**: multivariate anomaly detection with a
//! robust random cut forest (Guha et al., ICML 2016), per series key.
//!
//! Each record contributes one row of several numeric columns (`fields`,
//! e.g. CPU, memory and latency of a host). The last `shingle` rows form
//! one point, so the forest sees both unusual values and unusual changes;
//! it keeps the last `sample_size` points in `trees` random cut trees and
//! scores each new point by its collusive displacement (how much the trees'
//! description of the window shrinks without it; the median over trees). The score is compared
//! with the series' own score history (`threshold` standard deviations
//! above its mean), so no absolute level has to be configured. Streaming
//! and causal: a record is scored from the window it joins, never from
//! later records.
//!
//! An anomalous stretch is one incident (`vigil_sdk::blocks::Incidents`):
//! an alert when it opens, carrying per-column attribution — which field,
//! in which direction, how far from expected (in standard deviations of
//! that column) and what share of the score the forest puts on it — and
//! each column's expected range; an `Info` notice with start, end, peak
//! and record count when `quiet` calm records close it; no new incident
//! within `cooldown` records. Config (only `fields` is required): `fields`,
//! `key` ("none" | "record_key" | a string column), `shingle` (1), `trees`
//! (40), `sample_size` (512), `threshold` (25.0), `band` (3.0), `warmup`
//! (600), `quiet` (10), `cooldown` (100), `level_half_life` (500),
//! `score_half_life` (2000), `max_keys` (16; alerts carry `keys_evicted`),
//! `seed`, `scores` (false). Memory per key is about `trees × sample_size ×
//! (24 × dims + 36)` bytes with dims = fields × shingle (40 × 512 × 108 ≈
//! 2.2 MB for 3 fields); configs over 1 GiB in total are refused.
//!
//! ```json
//! {"fields": ["cpu", "mem", "latency_ms"], "key": "host", "shingle": 4}
//! ```

pub mod config;
pub mod forest;
pub mod model;
mod rng;
pub mod tree;

use vigil_sdk::blocks::{score_record, IncidentEvent, KeySpec, KeyedModels};
use vigil_sdk::{bail, detector, state, Alert, Alerts, Batch, Detector, Result, Severity};

pub use config::Config;
use model::{ColumnReport, Output, SeriesModel};

/// The detector: one [`SeriesModel`] per series key.
#[derive(Debug)]
pub struct Rcf {
    cfg: Config,
    series: KeyedModels<SeriesModel>,
}

/// Seed of a key's forest: the configured seed mixed with the key (FNV-1a),
/// so series do not share cuts but every run draws the same ones.
fn key_seed(seed: u64, key: &[u8]) -> u64 {
    key.iter().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[detector]
impl Detector for Rcf {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        if let Err(e) = config.validate() {
            bail!("{e}");
        }
        Ok(Rcf {
            series: KeyedModels::new(KeySpec::parse(&config.key), config.max_keys),
            cfg: config,
        })
    }

    fn process(&mut self, batch: &Batch, alerts: &mut Alerts) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let columns = self
            .cfg
            .fields
            .iter()
            .map(|f| batch.column_f64(f))
            .collect::<Result<Vec<_>>>()?;
        let keys = self.series.keys(batch)?;
        let mut row_values = vec![0.0; columns.len()];
        for (row, &offset) in batch.offsets().iter().enumerate() {
            for (v, col) in row_values.iter_mut().zip(&columns) {
                *v = col[row];
            }
            if row_values.iter().any(|v| !v.is_finite()) {
                // A row with a null or non-numeric column is not a point.
                continue;
            }
            let key = keys.get(row);
            let cfg = &self.cfg;
            let model = self
                .series
                .model(key, || SeriesModel::new(cfg, key_seed(cfg.seed, key)));
            let open_before = model.incident_open();
            let out = model.update(cfg, offset, &row_values);
            let alert_key = match self.series.spec() {
                KeySpec::None => batch.key(row),
                _ => Some(key),
            };
            if cfg.scores {
                let opened = matches!(out.event, Some(IncidentEvent::Opened { .. }));
                // 0 while an incident is open: cut at 1 the stream is the
                // alerts, so a threshold sweep judges the deployed detector.
                let s = if open_before && !opened {
                    0.0
                } else {
                    out.ratio
                };
                if s > 0.0 || opened {
                    alerts.push(score_record(offset, s, opened));
                }
                continue;
            }
            match out.event {
                Some(ev @ IncidentEvent::Opened { .. }) => {
                    let a = ev.annotate(make_alert(cfg, offset, &out));
                    alerts.push(self.series.annotate(with_key(a, alert_key)));
                }
                Some(ev @ IncidentEvent::Closed { .. }) => {
                    if let Some(n) = ev.notice(offset) {
                        alerts.push(with_key(n, alert_key));
                    }
                }
                None => {}
            }
        }
        self.series.end_batch();
        Ok(())
    }

    fn snapshot(&self) -> Option<Result<Vec<u8>>> {
        Some(state::to_bytes(self.series.state()))
    }

    fn restore(&mut self, bytes: &[u8]) -> Option<Result<()>> {
        Some(state::from_bytes(bytes).map(|s| self.series.set_state(s)))
    }
}

fn with_key(a: Alert, key: Option<&[u8]>) -> Alert {
    match key {
        Some(k) => a.key(k),
        None => a,
    }
}

/// Severity by how far the score is past the series' alert level.
fn severity(ratio: f64) -> Severity {
    match ratio {
        r if r >= 3.0 => Severity::Critical,
        r if r >= 1.5 => Severity::High,
        _ => Severity::Medium,
    }
}

fn direction(c: &ColumnReport) -> &'static str {
    if c.value >= c.expected {
        "above"
    } else {
        "below"
    }
}

/// Columns with at least this share of the score are named in the message.
const NAMED_SHARE: f64 = 0.15;

/// The alert opening an incident: the message names the columns the forest
/// blames, most first; `attribution` has every column.
fn make_alert(cfg: &Config, offset: i64, out: &Output) -> Alert {
    let mut cols = out.columns.clone();
    cols.sort_by(|a, b| b.share.total_cmp(&a.share));
    let name = |c: &ColumnReport| cfg.fields[c.column].as_str();
    let named: Vec<String> = cols
        .iter()
        .enumerate()
        .filter(|(i, c)| *i == 0 || c.share >= NAMED_SHARE)
        .map(|(_, c)| {
            format!(
                "{} {} is {} expected {:.4} (range {:.4}..{:.4}, {:+.1} std, {:.0}% of the score)",
                name(c),
                c.value,
                direction(c),
                c.expected,
                c.low,
                c.high,
                c.deviation,
                100.0 * c.share
            )
        })
        .collect();
    let attribution: Vec<serde_json::Value> = cols
        .iter()
        .map(|c| {
            serde_json::json!({
                "field": name(c),
                "value": c.value,
                "expected": c.expected,
                "expected_low": c.low,
                "expected_high": c.high,
                "direction": direction(c),
                "deviation": c.deviation,
                "share": c.share,
            })
        })
        .collect();
    let top = &cols[0];
    Alert::new(offset)
        .severity(severity(out.ratio))
        .score(out.score)
        .message(format!(
            "anomaly score {:.3} over this series' level {:.3}: {}",
            out.score,
            out.alert_at,
            named.join("; ")
        ))
        .field("anomaly_score", out.score)
        .field("alert_level", out.alert_at)
        .field("field", name(top))
        .field("value", top.value)
        .field("direction", direction(top))
        .field("deviation", top.deviation)
        .expected(top.expected, top.low, top.high)
        .field("attribution", attribution)
}

#[cfg(test)]
mod tests;
