//! vigil detector plugin **ensemble**: an anomaly detector for metric
//! streams (CPU, latency, request counts, temperatures, …) built to hold up
//! on series it was not tuned on. Per series it combines self-scaling
//! signals:
//!
//! * **contextual novelty** — each value is placed on one of 10 levels of
//!   the range learned during warm-up (plus 3 outside on each side), and a
//!   pattern of 4 consecutive levels that has never occurred before is
//!   novel (the idea of CAD OSE and ARTime, on a fixed grid), and one not
//!   seen for 1000-2000 records partly novel;
//! * **time-of-day novelty** — a level never seen before at this hour of
//!   the day (UTC, from the record timestamp), as HTM's time-of-day
//!   encoding gives it;
//! * **repeated values** — a value equal to the previous two (a stuck
//!   sensor, a drop-out to a constant);
//! * **level shift** — the median of the last 20 values against the
//!   median of the 200 before them, in units of their spread (an in-range
//!   shift the median predictor follows within a few records); its
//!   likelihood averages over at most 300 minutes of record time;
//! * **daily rhythm** — the value against the same hour of previous
//!   weekdays (or weekend days, UTC), so a day whose rhythm is missing
//!   (a weekday without its rush hour) or changed stands out; its
//!   likelihood averages over 300 minutes of record time;
//! * **scale change** — the median absolute prediction error of the last
//!   day (record time) against that of the week before it, growth only
//!   (a daily swing that triples, noise that grows);
//! * **day-aware level shift** — the level shift's recent median against
//!   the nearest of its reference and the same hours on each of the last
//!   3 days, so a rush hour (like yesterday's) is no shift and a
//!   recalibration (unlike every day before) is;
//! * **rhythm break** — the recent median against the same hour on
//!   previous days of the same kind (a week of them), the nearest one, so
//!   a weekday without its rush hour stands out within an hour or two
//!   (series with a record step of more than 9 minutes have none);
//! * **whole peak** — the means of the last two closed hours against the
//!   same hours of the nearest previous day of the same kind, beyond two
//!   units of the level shift's spread, so a missing rush hour is judged
//!   as a whole once its peak has passed (joined with the rhythm break:
//!   the larger likelihood counts);
//! * **daily swing** — on series with a record step of 9 minutes or
//!   more, the amplitude of the daily harmonic over the last day,
//!   relative to its mean (of the logarithms, on a series that has only
//!   ever been positive), against the median of the previous week's
//!   daily amplitudes (a daily rhythm that swings harder; joined with the
//!   scale change: the larger likelihood counts);
//! * **prediction error** — distance from the median of the last 10 values,
//!   in units of the series' own typical error;
//! * **anomaly likelihood** of each (Numenta's HTM post-processing): the
//!   average surprise of the last `short_window` records against the
//!   distribution of that average over `likelihood_window` records, as a
//!   log-scaled Gaussian tail probability, so a noisy series is judged
//!   against its own noise; the largest of the nine counts, lowered by
//!   0.3 per tenfold records past 4000 (at most 0.2) so that a long series
//!   does not collect more chance alerts than a short one;
//! * **range breakout** — a value beyond the seen range by
//!   `range_tolerance` of that range scores 1, once the run of such
//!   values adds up to 0.125 of the range beyond it (one value that far
//!   at once; smaller ones must persist). Before the warm-up ends, once
//!   150 records and three days of record time have passed (an hourly
//!   series, whose 300-record warm-up spans 12.5 days), a breakout that
//!   adds up to half the range already alerts.
//!
//! The per-record score is in [0, 1]; an alert is raised when it reaches
//! `threshold`, then the series stays quiet for `cooldown` records or
//! `cooldown_minutes` of record time, whichever ends first (except for a
//! range breakout after a softer alert, or one well beyond the range 60
//! records after a breakout alert, for repeated values 12 records
//! after an alert on any other signal, and for a deviation scoring 0.925
//! 60 records after any alert once the score has been below the
//! threshold since). Alerts carry the expected
//! value and usual range, z, which contexts were new, the kind and the
//! `signal` that made the score. Config
//! fields (all optional): `field` ("value"), `key` ("none": per partition;
//! "record_key"; or a string column), `threshold` (0.5), `warmup` (300
//! records), `cooldown` (288 records), `cooldown_minutes` (4320, three
//! days), `likelihood_window` (2000),
//! `short_window` (20), `range_tolerance` (0.05), `max_keys` (1000), `scores`
//! (false; true: emit the score stream as score records instead of alerts,
//! for `vigil eval --sweep`). Memory per series is about 40 bytes ×
//! `likelihood_window` (ten likelihood windows) plus 8 KiB of pattern bits,
//! 220 values, 240 slot means of the daily profile, 8 days of absolute
//! errors (at most 2304 values for 5-minute data), 12 days of hourly
//! means and 8 days of 5-minute means (2304 values). The benchmark on the
//! Numenta Anomaly Benchmark is `examples/nab_bench.rs` (see
//! `docs/design/0007-detector-ensemble.md`).
//!
//! ```json
//! {"field": "cpu", "key": "record_key", "threshold": 0.5}
//! ```

pub mod breakout;
pub mod burst;
pub mod config;
pub mod context;
pub mod dayshift;
pub mod hourcusum;
pub mod median;
pub mod model;
pub mod openhour;
pub mod output;
pub mod peak;
pub mod profile;
pub mod scale;
pub mod seasonal;
pub mod shift;
pub mod swing;
pub mod tuning;

use vigil_sdk::blocks::{score_record, KeyedState};
use vigil_sdk::{bail, detector, state, Alert, Alerts, Batch, Detector, Result, Severity};

pub use config::{Config, KeySpec};
use model::{Kind, Output, SeriesModel};

/// The detector: one [`SeriesModel`] per series key.
#[derive(Debug)]
pub struct Ensemble {
    cfg: Config,
    key: KeySpec,
    series: KeyedState<SeriesModel>,
}

#[detector]
impl Detector for Ensemble {
    type Config = Config;

    /// "22": the same-hour accumulator of coarse series (its hour bins,
    /// last day's residuals, shaped residuals, CUSUM and likelihood;
    /// session 21 round 28);
    /// "21": the burst memory of young ranges (session 20 round 25);
    /// "20": the day-aware shift keeps 5 days and the likelihood of its
    /// older days of today's kind (session 19 round 21);
    /// "19": the daily swing's previous daily harmonics and the half-day
    /// gain's likelihood (session 19 round 18);
    /// "18": the residuals against the previous days' 5-minute profile
    /// (the profile shift; session 18 round 17);
    /// "17": the open hour's likelihood averages 20 minutes of records
    /// (its short window's length is part of its state; session 17
    /// round 14);
    /// "16": the open hour's 5-minute slot means, held surprise and
    /// likelihood (session 17 round 13);
    /// "15": the likelihood of the level shift's falls (session 16
    /// round 11);
    /// "14": the daily swing of a positive series is of the logarithms,
    /// and whether a value of 0 or below ended that (session 15 round
    /// 10);
    /// "13": the whole peak's slot means and likelihood, and the daily
    /// swing's last day, daily amplitudes and likelihood (session 15
    /// round 9);
    /// "12": whether the score fell below the threshold since the last
    /// alert (a much stronger deviation may alert in a cooldown; session
    /// 12);
    /// "11": the run of values beyond the range (breakouts must add up;
    /// session 11);
    /// "10": the movement-pattern memory forgets (an older generation of
    /// patterns and every pattern ever seen; session 10 round 3);
    /// "9": which signal started the cooldown (repeated values may
    /// alert in another signal's cooldown; session 10 round 2);
    /// "8": the day-aware level shift's slot means and likelihood
    /// (session 10);
    /// "7": the scale-change statistic (its first timestamps, window
    /// lengths, error history and likelihood; session 9 round 2);
    /// "6": the daily profile, its residual scale and likelihood
    /// (session 9); "5": the first record's timestamp, and the level-shift likelihood's
    /// short window capped in time (its length is part of its state);
    /// "4": records since the last alert (re-armed breakouts) and the
    /// level-shift history and likelihood joined the per-series state; "3": the repeated-values likelihood and the
    /// alert time ("2": the time-of-day context). An older state is not
    /// restored (the series re-warm instead).
    const STATE_FORMAT: &'static str = "22";

    fn new(config: Config) -> Result<Self> {
        if let Err(e) = config.validate() {
            bail!("{e}");
        }
        Ok(Ensemble {
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
        let stamps = batch.timestamps();
        for (row, (&value, &offset)) in values.iter().zip(batch.offsets()).enumerate() {
            if !value.is_finite() {
                // Null or non-numeric: nothing to learn from, nothing to flag.
                continue;
            }
            let key = keys.get(row);
            let cfg = &self.cfg;
            let model = self
                .series
                .get_or_insert_with(key, || SeriesModel::new(cfg));
            // Every row has a timestamp; 0 only guards a malformed batch.
            let ts = stamps.get(row).copied().unwrap_or(0);
            let out = model.update(cfg, value, ts);
            if cfg.scores {
                if out.stream_score > 0.0 || out.alert {
                    alerts.push(score_record(offset, out.stream_score, out.alert));
                }
            } else if out.alert {
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

/// Severity grows with how far the value is from the prediction; leaving
/// the seen range is at least `High`.
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
    let signal = out.signal();
    let what = match signal {
        "range_breakout" => "left the range seen so far",
        "movement_pattern" => "more new patterns of movement than this series shows",
        "time_of_day" => "levels not seen before at this time of day",
        "repeated_values" => "the value keeps repeating (stuck or constant)",
        "level_shift" => "the recent level moved away from the preceding one",
        "daily_rhythm" => "unlike the same time of day on previous days",
        "day_level_shift" => {
            "the recent level is unlike the preceding one and the same hours on previous days"
        }
        "rhythm_break" => "the recent level is unlike this hour on previous days of the same kind",
        _ => "unusual deviation from recent values",
    };
    let (lo, hi) = (out.expected - out.band, out.expected + out.band);
    let mut a = Alert::new(offset)
        .severity(severity(out))
        .score(out.score)
        .message(format!(
            "value {value} vs expected {:.4} (usual range {lo:.4}..{hi:.4}, z {:.2}, score {:.3}): {what}",
            out.expected, out.z, out.score
        ))
        .field("value", value)
        .field("expected", out.expected)
        .field("expected_low", lo)
        .field("expected_high", hi)
        .field("residual", out.residual)
        .field("z", out.z)
        .field("novel_pattern", out.novel)
        .field("novel_time_of_day", out.novel_time_of_day)
        .field("anomaly_score", out.score)
        .field("threshold", threshold)
        .field("kind", out.kind.as_str())
        .field("signal", signal);
    if let Some(k) = key {
        a = a.key(k);
    }
    a
}

#[cfg(test)]
mod tests;
