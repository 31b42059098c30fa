//! Unit tests of the ensemble detector, by topic: the detector through
//! the SDK (`detector`), the signals of the model (`signals`), cooldowns
//! and what may alert during them (`cooldown`). Shared series and runners
//! are here.

use crate::config::Config;
use crate::model::{Kind, SeriesModel, Tuning};
use crate::Ensemble;
use serde_json::{json, Value};
use vigil_sdk::testing::{
    metric_batches, new_detector, noise, process_all, run, snapshot_round_trip, FieldType, Rows,
};
use vigil_sdk::{Alert, Batch, Severity};

mod cooldown;
mod detector;
mod signals;
mod young;

const STEP_MS: i64 = 300_000; // 5-minute metric
const DAY: usize = 288; // records per day at that step

/// Daily sine between 5 and 15 with small noise.
fn sine(i: usize) -> f64 {
    let phase = (i % DAY) as f64 / DAY as f64 * std::f64::consts::TAU;
    10.0 + 5.0 * phase.sin() + 0.3 * noise(i)
}

/// The rush hours of a weekday (0 to 1): a morning peak at 07:30 and an
/// evening one of 0.8 at 17:00, at `hour` (local) of epoch day `day`;
/// nothing at weekends or on the day `quiet` (the anomaly of the rush-hour
/// tests).
pub(crate) fn rush(day: i64, hour: f64, quiet: i64) -> f64 {
    // 1970-01-01 was a Thursday: day + 3 is 0 on Mondays.
    if (day + 3).rem_euclid(7) < 5 && day != quiet {
        (-((hour - 7.5) / 1.0_f64).powi(2)).exp() + 0.8 * (-((hour - 17.0) / 1.3_f64).powi(2)).exp()
    } else {
        0.0
    }
}

/// Record `i` of a 5-minute travel-time series counted from Monday
/// 1970-01-05 00:00 local time: 120 with noise, rising to about 400 in the
/// weekday rush hours of [`rush`] (none on local epoch day `quiet`). Returns
/// the record's local timestamp and its value.
pub(crate) fn travel_time(i: usize, quiet: i64) -> (i64, f64) {
    const HOUR: i64 = 3_600_000;
    let ts = 4 * crate::context::DAY_MS + i as i64 * STEP_MS;
    let day = ts.div_euclid(crate::context::DAY_MS);
    let h = ts.rem_euclid(crate::context::DAY_MS) as f64 / HOUR as f64;
    let r = rush(day, h, quiet);
    (ts, 120.0 / (1.0 - 0.7 * r.min(1.0)) + 8.0 * noise(i))
}

/// Thirty days of an hourly rate of 10 with a daily swing of `amp` (a
/// fraction) under log-normal noise (σ about 0.09), `hard_amp` over the
/// records in `hard` (the swing tests' series).
pub(crate) fn hourly_swing(amp: f64, hard_amp: f64, hard: std::ops::Range<usize>) -> Vec<f64> {
    (0..30 * 24)
        .map(|i| {
            let a = if hard.contains(&i) { hard_amp } else { amp };
            let theta = std::f64::consts::TAU * (i % 24) as f64 / 24.0;
            10.0 * (0.3 * noise(i)).exp() * (1.0 + a * theta.cos())
        })
        .collect()
}

/// The swing likelihood (joined with the scale's) of each record of an
/// hourly series.
pub(crate) fn swing_likelihoods(t: &Tuning, values: &[f64]) -> Vec<f64> {
    const HOUR_MS: i64 = 3_600_000;
    let cfg = Config::default();
    let mut m = SeriesModel::with_tuning(&cfg, t);
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| m.update_tuned(&cfg, t, v, i as i64 * HOUR_MS).likelihoods[6])
        .collect()
}

/// Hourly values around 10 with a daily swing of ±0.5 (±1.5 for the
/// week from record 900) and noise of ±0.5; spikes to 6 and 14 early on,
/// so the seen range is wide and nothing breaks out of it (the scale
/// statistic's and the daily swing's test series).
pub(crate) fn swing_week() -> Vec<f64> {
    (0..1500)
        .map(|i| {
            if i < 600 && i % 97 == 50 {
                return if i % 2 == 0 { 14.0 } else { 6.0 };
            }
            let amp = if (900..1068).contains(&i) { 1.5 } else { 0.5 };
            let phase = (i % 24) as f64 / 24.0 * std::f64::consts::TAU;
            10.0 + amp * phase.sin() + noise(i)
        })
        .collect()
}

fn batches(values: &[f64], per_batch: usize) -> Vec<Batch> {
    metric_batches(values, per_batch, 1_400_000_000_000, STEP_MS)
}

fn offsets(alerts: &[Alert]) -> Vec<i64> {
    alerts.iter().map(Alert::source_offset).collect()
}

/// Office-hours load: 20 from 08:00 to 20:00 UTC, 5 otherwise, with noise.
fn office_hours(i: usize) -> f64 {
    let hour = (i % DAY) * 24 / DAY;
    let base = if (8..20).contains(&hour) { 20.0 } else { 5.0 };
    base + 0.5 * noise(i)
}

/// Runs the model over `values` (5-minute steps from midnight UTC) and
/// returns the records that alert, with their outputs.
fn alerts_of(t: &Tuning, values: &[f64]) -> Vec<(usize, crate::model::Output)> {
    alerts_every(t, values, STEP_MS)
}

/// [`alerts_of`] for values recorded every `step_ms` from midnight UTC.
fn alerts_every(t: &Tuning, values: &[f64], step_ms: i64) -> Vec<(usize, crate::model::Output)> {
    let cfg = Config::default();
    let mut m = SeriesModel::with_tuning(&cfg, t);
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| (i, m.update_tuned(&cfg, t, v, i as i64 * step_ms)))
        .filter(|(_, o)| o.alert)
        .collect()
}

/// Scores of every record of `values` (5-minute steps) with the default model.
fn outputs_of(values: &[f64]) -> Vec<crate::model::Output> {
    let cfg = Config::default();
    let mut m = SeriesModel::new(&cfg);
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| m.update(&cfg, v, i as i64 * STEP_MS))
        .collect()
}
