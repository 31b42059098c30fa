//! The per-series model: a robust short-term predictor, a contextual
//! novelty memory, the anomaly likelihood of each surprise, a
//! range-breakout check and alert cooldown. Pure Rust with no batch types,
//! so it can be unit tested and driven directly by the NAB benchmark example.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use vigil_sdk::blocks::AnomalyLikelihood;

use crate::config::Config;
use crate::context::{level, ContextMemory};

/// Why a record scored high.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Nothing unusual (or still learning).
    Normal,
    /// Recent behaviour is unusual for this series: new patterns and/or
    /// large prediction errors, more than the series usually shows.
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
    /// `score`, or 0 while the series cools down after an alert: the score
    /// stream as the deployment sees it. Cut at the configured threshold it
    /// gives exactly the alerts; a sweep shows what other cuts would give.
    /// (Threshold-free suppression, `PeakSuppressor`, lost 13 points on the
    /// local corpus: a rising anomaly passes each new maximum.)
    pub stream_score: f64,
    /// True when this record raises an alert (score ≥ threshold, not cooling down).
    pub alert: bool,
    /// The predictor's expectation for this record.
    pub expected: f64,
    /// Half-width of the usual range around `expected` (about 3 typical errors).
    pub band: f64,
    /// `value - expected`.
    pub residual: f64,
    /// Residual in units of the predictor's typical error.
    pub z: f64,
    /// The record completed a pattern of movement never seen before.
    pub novel: bool,
    /// Why the score is high.
    pub kind: Kind,
}

/// Internal constants of the model, gathered so the benchmark example can
/// ablate them; deployments always use [`Tuning::default`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// Values whose median predicts the next one.
    pub level_window: usize,
    /// Weight of contextual novelty in the raw surprise (the rest is the
    /// prediction error).
    pub novelty_weight: f64,
    /// Prediction error (in typical errors) that counts as full surprise.
    pub error_cap: f64,
    /// Floor of the standard deviation in the anomaly likelihood.
    pub std_floor: f64,
    /// Separate likelihoods for novelty and error, the larger one wins
    /// (otherwise one likelihood over their `novelty_weight` mix). Separate
    /// won on both category splits: a series that is noisy in value is not
    /// necessarily rich in new patterns, and vice versa.
    pub separate: bool,
    /// Experimental: a cooldown also ends once the score has stayed below
    /// this for `rearm_quiet` records (0: fixed cooldown only).
    pub rearm_level: f64,
    /// See `rearm_level`.
    pub rearm_quiet: usize,
    /// Experimental: time-of-day buckets of the (time, level) novelty (0: off).
    pub tod_buckets: usize,
    /// Experimental: the (time, level) context also holds the weekend flag.
    pub tod_weekend: bool,
    /// Experimental: novelty of a pattern seen `c` times before is
    /// `rarity^c` (0: only unseen patterns are novel).
    pub rarity: f64,
    /// Experimental: seasonal predictor (same time one day earlier, ±
    /// `season_half_width_min` minutes): 0 off, 1 its own error likelihood,
    /// 2 the error is the smaller of the two predictors'.
    pub season_mode: u8,
    /// See `season_mode`.
    pub season_half_width_min: i64,
    /// Experimental: a cooldown also ends this many minutes after the alert (0: off).
    pub cooldown_minutes: i64,
    /// Experimental: the (time, level) context pairs consecutive levels
    /// (`tod_pair`) instead of one.
    pub tod_pair: bool,
    /// Experimental: short window of a second error likelihood (0: off).
    pub spike_short: usize,
    /// Experimental: a range breakout may alert during a cooldown that a
    /// deviation alert started.
    pub breakout_bypass: bool,
    /// Experimental: second bucketing shifted by half a bucket; 1: new in
    /// both, 2: new in either.
    pub tod_overlap: u8,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            level_window: 10,
            novelty_weight: 0.5,
            error_cap: 6.0,
            std_floor: 0.03,
            separate: true,
            rearm_level: 0.0,
            rearm_quiet: 0,
            tod_buckets: 0,
            tod_weekend: false,
            rarity: 0.0,
            season_mode: 0,
            season_half_width_min: 15,
            cooldown_minutes: 0,
            tod_pair: false,
            spike_short: 0,
            breakout_bypass: false,
            tod_overlap: 0,
        }
    }
}

/// Weight of each new error in the running mean absolute error.
const MAE_ALPHA: f64 = 0.01;
/// Errors are clipped at this many MAEs so one outlier can't inflate the scale.
const MAE_CLIP: f64 = 4.0;
/// 1.2533 · MAE estimates σ for Gaussian errors.
const MAE_TO_SIGMA: f64 = 1.2533;

/// State of one series. Everything is bounded by the config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesModel {
    n: u64,
    recent: VecDeque<f64>,
    level_window: usize,
    mae: f64,
    scored: u64,
    min: f64,
    max: f64,
    context: ContextMemory,
    /// Range the context grid is laid over, fixed at the end of warm-up.
    grid: Option<(f64, f64)>,
    /// Likelihood of the prediction error (of the mix when not `separate`).
    likelihood: AnomalyLikelihood,
    /// Likelihood of the contextual novelty (when `separate`).
    novelty_likelihood: AnomalyLikelihood,
    cooldown_left: usize,
    #[serde(default)]
    tod_seen: Vec<u64>,
    #[serde(default)]
    tod_likelihood: Option<AnomalyLikelihood>,
    #[serde(default)]
    quiet_run: usize,
    #[serde(default)]
    last_alert_ts: i64,
    #[serde(default)]
    prev_level: u8,
    #[serde(default)]
    last_alert_breakout: bool,
    #[serde(default)]
    spike_likelihood: Option<AnomalyLikelihood>,
    #[serde(default)]
    day: VecDeque<(i64, f64)>,
    #[serde(default)]
    season_mae: f64,
    #[serde(default)]
    season_scored: u64,
    #[serde(default)]
    season_likelihood: Option<AnomalyLikelihood>,
    /// Reused buffer for medians (not state: skipped by snapshots).
    #[serde(skip)]
    scratch: Vec<f64>,
}

impl SeriesModel {
    /// A fresh model for `cfg` (which must have passed `validate`).
    pub fn new(cfg: &Config) -> Self {
        Self::with_tuning(cfg, &Tuning::default())
    }

    /// A fresh model with non-default internal constants (benchmarks only).
    pub fn with_tuning(cfg: &Config, t: &Tuning) -> Self {
        SeriesModel {
            n: 0,
            recent: VecDeque::with_capacity(t.level_window),
            level_window: t.level_window.max(1),
            mae: 0.0,
            scored: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            context: ContextMemory::default(),
            grid: None,
            likelihood: AnomalyLikelihood::new(
                cfg.short_window,
                cfg.likelihood_window,
                cfg.likelihood_window.min(cfg.warmup.max(10)),
                t.std_floor,
            ),
            novelty_likelihood: AnomalyLikelihood::new(
                cfg.short_window,
                cfg.likelihood_window,
                cfg.likelihood_window.min(cfg.warmup.max(10)),
                t.std_floor,
            ),
            cooldown_left: 0,
            tod_seen: Vec::new(),
            tod_likelihood: (t.tod_buckets > 0).then(|| {
                AnomalyLikelihood::new(
                    cfg.short_window,
                    cfg.likelihood_window,
                    cfg.likelihood_window.min(cfg.warmup.max(10)),
                    t.std_floor,
                )
            }),
            quiet_run: 0,
            last_alert_ts: 0,
            prev_level: 0,
            last_alert_breakout: false,
            spike_likelihood: (t.spike_short > 0).then(|| {
                AnomalyLikelihood::new(
                    t.spike_short,
                    cfg.likelihood_window,
                    cfg.likelihood_window.min(cfg.warmup.max(10)),
                    t.std_floor,
                )
            }),
            day: VecDeque::new(),
            season_mae: 0.0,
            season_scored: 0,
            season_likelihood: (t.season_mode == 1).then(|| {
                AnomalyLikelihood::new(
                    cfg.short_window,
                    cfg.likelihood_window,
                    cfg.likelihood_window.min(cfg.warmup.max(10)),
                    t.std_floor,
                )
            }),
            scratch: Vec::new(),
        }
    }

    /// Feeds one finite `value` and scores it.
    pub fn update(&mut self, cfg: &Config, value: f64, ts: i64) -> Output {
        self.update_tuned(cfg, &Tuning::default(), value, ts)
    }

    /// [`SeriesModel::update`] with non-default internal constants.
    pub fn update_tuned(&mut self, cfg: &Config, t: &Tuning, value: f64, ts: i64) -> Output {
        // Prediction: the median of the last few values (robust to single
        // outliers, follows level shifts within half a window).
        self.scratch.clear();
        self.scratch.extend(self.recent.iter().copied());
        let expected = median_in_place(&mut self.scratch).unwrap_or(value);
        let residual = value - expected;
        let have_pred = !self.recent.is_empty();
        let tiny = 1e-9 * (1.0 + value.abs());
        let z = if have_pred && self.scored > 0 {
            residual / (MAE_TO_SIGMA * self.mae + tiny)
        } else {
            0.0
        };
        if have_pred {
            let err = residual.abs();
            let clipped = if self.scored == 0 {
                err
            } else {
                err.min(MAE_CLIP * self.mae.max(f64::MIN_POSITIVE))
            };
            self.mae = if self.scored == 0 {
                clipped
            } else {
                self.mae + MAE_ALPHA * (clipped - self.mae)
            };
            self.scored += 1;
        }
        if self.recent.len() == self.level_window {
            self.recent.pop_front();
        }
        self.recent.push_back(value);

        // The quantisation grid follows the seen range while learning and
        // is frozen afterwards: re-gridding later would make every old
        // pattern look new after each range expansion.
        let lo = self.min.min(value);
        let hi = self.max.max(value);
        let warm = self.n >= cfg.warmup as u64;
        if warm && self.grid.is_none() {
            self.grid = Some((lo, hi));
        }
        let (glo, ghi) = self.grid.unwrap_or((lo, hi));
        let lvl = level(value, glo, ghi);
        let novel = self.context.observe(lvl);
        let mut tod_lik = 0.0;
        let mut tod_new = false;
        if let Some(tl) = self.tod_likelihood.as_mut() {
            const DAY: i64 = 86_400_000;
            let b = ((ts + t.cooldown_minutes * 60_000).rem_euclid(DAY) * t.tod_buckets as i64 / DAY) as usize;
            let weekend = t.tod_weekend && matches!((ts.div_euclid(DAY) + 4).rem_euclid(7), 0 | 6);
            let l = if false {
                self.prev_level as usize * crate::context::LEVELS + lvl as usize
            } else {
                lvl as usize
            };
            let nl = if false { crate::context::LEVELS } else { 1 } * crate::context::LEVELS;
            let idx = ((b * 2 + weekend as usize) * nl) + l;
            let words = (t.tod_buckets * 2 * nl).div_ceil(64);
            if self.tod_seen.len() < words {
                self.tod_seen.resize(words, 0);
            }
            let (w, bit) = (idx / 64, idx % 64);
            let mut new = self.tod_seen[w] & (1 << bit) == 0;
            self.tod_seen[w] |= 1 << bit;
            if t.tod_overlap > 0 {
                let half = DAY / t.tod_buckets as i64 / 2;
                let b2 = ((ts + half + t.cooldown_minutes * 60_000).rem_euclid(DAY) * t.tod_buckets as i64 / DAY) as usize;
                let idx2 = ((b2 * 2 + 1) * nl) + l;
                let (w2, bit2) = (idx2 / 64, idx2 % 64);
                let new2 = self.tod_seen[w2] & (1 << bit2) == 0;
                self.tod_seen[w2] |= 1 << bit2;
                new = if t.tod_overlap == 1 { new && new2 } else { new || new2 };
            }
            if t.tod_pair {
                tod_new = new;
            } else {
                tod_lik = tl.update(if new { 1.0 } else { 0.0 });
            }
        }
        self.prev_level = lvl;

        let mut zs = None;
        if t.season_mode > 0 {
            const DAY: i64 = 86_400_000;
            let w = t.season_half_width_min * 60_000;
            while self.day.front().is_some_and(|&(x, _)| x < ts - DAY - w) || self.day.len() > 4096 {
                self.day.pop_front();
            }
            let a = self.day.partition_point(|&(x, _)| x < ts - DAY - w);
            let b = self.day.partition_point(|&(x, _)| x <= ts - DAY + w);
            if b > a {
                self.scratch.clear();
                self.scratch.extend(self.day.range(a..b).map(|&(_, v)| v));
                if let Some(e) = median_in_place(&mut self.scratch) {
                    let r = value - e;
                    if self.season_scored > 0 {
                        zs = Some(r / (MAE_TO_SIGMA * self.season_mae + tiny));
                    }
                    let err = r.abs();
                    self.season_mae = if self.season_scored == 0 {
                        err
                    } else {
                        self.season_mae
                            + MAE_ALPHA
                                * (err.min(MAE_CLIP * self.season_mae.max(f64::MIN_POSITIVE))
                                    - self.season_mae)
                    };
                    self.season_scored += 1;
                }
            }
            self.day.push_back((ts, value));
        }
        let mut err_part = (z.abs() / t.error_cap).min(1.0);
        let mut season_lik = 0.0;
        if let Some(l) = self.spike_likelihood.as_mut() {
            season_lik = l.update(err_part);
        }
        if let Some(zs) = zs {
            let sp = (zs.abs() / t.error_cap).min(1.0);
            if t.season_mode == 2 {
                err_part = err_part.min(sp);
            } else if let Some(l) = self.season_likelihood.as_mut() {
                season_lik = l.update(sp);
            }
        }
        let novel_part = if novel || tod_new { 1.0 } else { 0.0 };
        let lik = if t.separate {
            let a = self.likelihood.update(err_part);
            let b = self.novelty_likelihood.update(novel_part);
            a.max(b).max(tod_lik).max(season_lik)
        } else {
            let raw = t.novelty_weight * novel_part + (1.0 - t.novelty_weight) * err_part;
            self.likelihood.update(raw)
        };

        let mut score = 0.0;
        let mut kind = Kind::Normal;
        if warm {
            score = lik;
            if score > 0.0 {
                kind = Kind::Deviation;
            }
            if cfg.range_tolerance > 0.0 && self.max > self.min {
                let tol = (self.max - self.min) * cfg.range_tolerance;
                if value > self.max + tol || value < self.min - tol {
                    score = 1.0;
                    kind = Kind::RangeBreakout;
                }
            }
        }
        self.min = lo;
        self.max = hi;
        self.n += 1;

        let mut alert = false;
        if score < t.rearm_level {
            self.quiet_run += 1;
        } else {
            self.quiet_run = 0;
        }
        if false && ts >= self.last_alert_ts + t.cooldown_minutes * 60_000 {
            self.cooldown_left = 0;
        }
        if t.rearm_level > 0.0 && self.quiet_run >= t.rearm_quiet {
            self.cooldown_left = 0;
        }
        if t.breakout_bypass
            && kind == Kind::RangeBreakout
            && !self.last_alert_breakout
            && score >= cfg.threshold
        {
            self.cooldown_left = 0;
        }
        let cooling = self.cooldown_left > 0;
        if cooling {
            self.cooldown_left -= 1;
        } else if warm && score >= cfg.threshold {
            alert = true;
            self.cooldown_left = cfg.cooldown;
            self.last_alert_ts = ts;
            self.last_alert_breakout = kind == Kind::RangeBreakout;
        }
        Output {
            score,
            stream_score: if cooling { 0.0 } else { score },
            alert,
            expected,
            band: 3.0 * MAE_TO_SIGMA * self.mae,
            residual,
            z,
            novel,
            kind,
        }
    }

    /// Records seen so far.
    pub fn records(&self) -> u64 {
        self.n
    }

    /// The range of values seen so far (`None` before the first).
    pub fn range(&self) -> Option<(f64, f64)> {
        (self.n > 0).then_some((self.min, self.max))
    }
}

/// Median of `xs` (finite values); reorders `xs`.
fn median_in_place(xs: &mut [f64]) -> Option<f64> {
    let n = xs.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (lo, m, _) = xs.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *m;
    if n % 2 == 1 {
        Some(upper)
    } else {
        let lower = lo.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(0.5 * (lower + upper))
    }
}
