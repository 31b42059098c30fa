//! The per-series anomaly model: a seasonal baseline, a residual surprise,
//! the "anomaly likelihood" of recent surprise, a range-breakout check and
//! alert cooldown. Pure Rust with no SDK types, so it can be unit tested and
//! driven directly by the NAB scorer example.

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::stats::{median_in_place, normal_tail, Ring};

/// Why a record scored high.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Nothing unusual (or still learning).
    Normal,
    /// Recent values are far from the baseline, relative to the series' usual surprise.
    Deviation,
    /// The value left the range the series has ever shown.
    RangeBreakout,
}

impl Kind {
    /// Short name used in alert fields.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Normal => "normal",
            Kind::Deviation => "deviation",
            Kind::RangeBreakout => "range_breakout",
        }
    }
}

/// What the model says about one record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Output {
    /// Anomaly score in [0, 1].
    pub score: f64,
    /// True when this record raises an alert (score ≥ threshold, not cooling down).
    pub alert: bool,
    /// The baseline's prediction for this record.
    pub expected: f64,
    /// `value - expected`.
    pub residual: f64,
    /// Residual in units of the baseline's typical error.
    pub z: f64,
    /// Half-width of the usual range around `expected`: 3 typical errors
    /// (infinite before the baseline can predict).
    pub band: f64,
    /// Season used for the baseline, in records (0: none).
    pub period: usize,
    /// Why the score is high.
    pub kind: Kind,
}

/// One baseline candidate: no season, or one season length.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Candidate {
    /// Season length in ms (0: no season).
    period_ms: u64,
    /// Exponentially weighted, clipped mean absolute prediction error.
    mae: f64,
    /// Predictions scored so far.
    scored: u64,
}

/// State of one series. Everything is bounded by the config's caps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesModel {
    n: u64,
    last_ts: Option<i64>,
    diffs: Ring,
    /// The last few raw values: their median is the current level.
    recent: Ring,
    /// Each value's offset from the level at its time (the seasonal shape).
    offsets: Ring,
    cands: Vec<Candidate>,
    chosen: usize,
    raw: Ring,
    raw_sum: f64,
    lik: Ring,
    lik_sum: f64,
    lik_sumsq: f64,
    min: f64,
    max: f64,
    cooldown_left: usize,
    /// Reused buffer for medians (not state: skipped by snapshots).
    #[serde(skip)]
    scratch: Vec<f64>,
}

/// Records whose median gives the recent level of an unseasonal series, and
/// over which a seasonal baseline's level correction is taken. Long enough
/// that a level shift stays visible for a while (tuned on NAB: 9 → 25 gained
/// ~4 points), short enough to follow drifts within about two hours of 5-minute data.
const LEVEL_WINDOW: usize = 25;
/// Cycles of history the seasonal baseline looks back over.
const CYCLES: usize = 3;
/// Weight of each new error in a candidate's running MAE.
const MAE_ALPHA: f64 = 0.01;
/// Errors are clipped at this many MAEs so one outlier can't inflate the scale.
const MAE_CLIP: f64 = 4.0;
/// A season must beat "no season" by this factor to be used.
const SEASON_MARGIN: f64 = 0.85;
/// Predictions a candidate needs scored before it can be chosen.
const MIN_SCORED: u64 = 50;
/// Raw surprise is capped so one wild point cannot dominate the averages.
const RAW_CAP: f64 = 10.0;
/// Lower bound on the std of the averaged surprise (avoids 0/0 on flat data).
const LIK_STD_FLOOR: f64 = 0.05;

impl SeriesModel {
    /// A fresh model for `cfg` (which must have passed `validate`).
    pub fn new(cfg: &Config) -> Self {
        let cands = std::iter::once(0)
            .chain(cfg.periods_ms())
            .map(|period_ms| Candidate {
                period_ms,
                mae: 0.0,
                scored: 0,
            })
            .collect();
        SeriesModel {
            n: 0,
            last_ts: None,
            diffs: Ring::new(15),
            recent: Ring::new(LEVEL_WINDOW),
            offsets: Ring::new(cfg.history),
            cands,
            chosen: 0,
            raw: Ring::new(cfg.short_window),
            raw_sum: 0.0,
            lik: Ring::new(cfg.likelihood_window),
            lik_sum: 0.0,
            lik_sumsq: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            cooldown_left: 0,
            scratch: Vec::new(),
        }
    }

    /// Typical sampling interval (ms): the median of recent positive gaps.
    fn interval_ms(&self, scratch: &mut Vec<f64>) -> Option<f64> {
        self.diffs.median_last(usize::MAX, scratch)
    }

    /// Feeds one record (event time `ts_ms`, finite `value`) and scores it.
    pub fn update(&mut self, cfg: &Config, ts_ms: i64, value: f64) -> Output {
        // Taken out of `self` so it can be lent while fields are borrowed.
        let mut scratch = std::mem::take(&mut self.scratch);
        if let Some(prev) = self.last_ts {
            if ts_ms > prev {
                self.diffs.push((ts_ms - prev) as f64);
            }
        }
        self.last_ts = Some(ts_ms);
        let interval = self.interval_ms(&mut scratch);

        // Predict with every candidate, score the one chosen so far. A
        // seasonal prediction is the current level plus the median offset
        // from the level at the same phase of past seasons: offsets are
        // level-free, so a level shift moves the prediction through the
        // level alone, and never twice.
        let level = self.recent.median_last(LEVEL_WINDOW, &mut scratch);
        let chosen = self.chosen;
        let mut out_expected = value;
        let mut out_resid = 0.0;
        let mut out_scale = 0.0;
        let mut out_period = 0;
        let mut usable = false;
        for (i, c) in self.cands.iter_mut().enumerate() {
            let Some(level) = level else {
                continue;
            };
            let period = match (c.period_ms, interval) {
                (0, _) => 0,
                (p, Some(iv)) if iv > 0.0 => (p as f64 / iv).round() as usize,
                _ => continue,
            };
            let Some(shape) = seasonal_offset(&self.offsets, period, &mut scratch) else {
                continue;
            };
            let pred = level + shape;
            let err = value - pred;
            if i == chosen && c.scored >= 1 {
                out_expected = pred;
                out_resid = err;
                out_scale = c.mae;
                out_period = period;
                usable = true;
            }
            let clipped = if c.scored == 0 {
                err.abs()
            } else {
                err.abs().min(MAE_CLIP * c.mae.max(f64::MIN_POSITIVE))
            };
            c.mae = if c.scored == 0 {
                clipped
            } else {
                c.mae + MAE_ALPHA * (clipped - c.mae)
            };
            c.scored += 1;
        }
        self.offsets.push(value - level.unwrap_or(value));
        self.recent.push(value);
        self.choose();

        // Surprise: residual in units of the typical error (1.2533 * MAE ≈ σ).
        let tiny = 1e-9 * (1.0 + value.abs());
        let z = if usable {
            out_resid / (1.2533 * out_scale + tiny)
        } else {
            0.0
        };
        let raw = z.abs().min(RAW_CAP);
        if let Some(old) = self.raw.push(raw) {
            self.raw_sum -= old;
        }
        self.raw_sum += raw;
        let avg = self.raw_sum / self.raw.len() as f64;

        // Anomaly likelihood: how unusual is the recent average surprise
        // compared with its own distribution over the likelihood window.
        let mut score = 0.0;
        let mut kind = Kind::Normal;
        let warm = self.n >= cfg.warmup as u64;
        if warm && self.lik.len() >= 10 {
            let k = self.lik.len() as f64;
            let mean = self.lik_sum / k;
            let var = (self.lik_sumsq / k - mean * mean).max(0.0);
            let std = var.sqrt().max(LIK_STD_FLOOR);
            let q = normal_tail((avg - mean) / std);
            score = ((q + 1e-10).ln() / 1e-10f64.ln()).clamp(0.0, 1.0);
            if score > 0.0 {
                kind = Kind::Deviation;
            }
        }
        if let Some(old) = self.lik.push(avg) {
            self.lik_sum -= old;
            self.lik_sumsq -= old * old;
        }
        self.lik_sum += avg;
        self.lik_sumsq += avg * avg;

        if warm && cfg.range_tolerance > 0.0 && self.max > self.min {
            let tol = (self.max - self.min) * cfg.range_tolerance;
            if value > self.max + tol || value < self.min - tol {
                score = 1.0;
                kind = Kind::RangeBreakout;
            }
        }
        self.min = self.min.min(value);
        self.max = self.max.max(value);

        self.n += 1;

        self.scratch = scratch;
        let mut alert = false;
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
        } else if warm && score >= cfg.threshold {
            alert = true;
            self.cooldown_left = cfg.cooldown;
        }
        Output {
            score,
            alert,
            expected: out_expected,
            residual: out_resid,
            z,
            band: if usable {
                3.0 * 1.2533 * out_scale
            } else {
                f64::INFINITY
            },
            period: out_period,
            kind,
        }
    }

    /// Picks the candidate with the smallest error; a season must clearly win.
    fn choose(&mut self) {
        let none_mae = self.cands.first().map(|c| c.mae).unwrap_or(0.0);
        let mut best = 0;
        let mut best_mae = none_mae;
        for (i, c) in self.cands.iter().enumerate().skip(1) {
            if c.scored >= MIN_SCORED && c.mae < SEASON_MARGIN * none_mae && c.mae < best_mae {
                best = i;
                best_mae = c.mae;
            }
        }
        self.chosen = best;
    }

    /// Records seen so far.
    pub fn records(&self) -> u64 {
        self.n
    }
}

/// The seasonal shape at this phase: the median offset from the level at
/// the same phase (±1 record) over the last cycles; 0 for no season.
fn seasonal_offset(offsets: &Ring, period: usize, scratch: &mut Vec<f64>) -> Option<f64> {
    if period == 0 {
        return Some(0.0);
    }
    if period < 4 || offsets.len() < period + 2 {
        return None;
    }
    scratch.clear();
    for k in 1..=CYCLES {
        let lag = k * period - 1;
        for d in [lag - 1, lag, lag + 1] {
            if let Some(v) = offsets.back(d) {
                scratch.push(v);
            }
        }
    }
    median_in_place(scratch)
}
