//! The per-series model: a robust short-term predictor, contextual
//! novelty memories (movement patterns; level at the time of day), the
//! anomaly likelihood of each surprise, a range-breakout check and alert
//! cooldown. Pure Rust with no batch types,
//! so it can be unit tested and driven directly by the NAB benchmark example.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use vigil_sdk::blocks::AnomalyLikelihood;

use crate::breakout::{early_breakouts, range_breakout, rearm_gap, BeyondRun};
use crate::burst::BurstMemory;
use crate::config::Config;
use crate::context::{level, ContextMemory, TimeOfDayMemory};
use crate::dayshift::{DayShift, ShiftView};
use crate::median::SortedWindow;
use crate::openhour::{open_likelihood, OpenHour};
pub use crate::output::{Kind, Output};
use crate::scale::{ScaleChange, ScaleSettings};
use crate::seasonal::{SeasonalResidual, SeasonalSettings};
pub(crate) use crate::shift::shift_like_likelihood;
use crate::shift::{shift_short_records, FallLikelihood, ShiftWindow};
pub use crate::tuning::Tuning;

mod steps;

/// Records whose time span gives the record step (`shift_short_minutes`).
const STEP_PROBE: u64 = 20;
/// Weight of each new error in the running mean absolute error.
const MAE_ALPHA: f64 = 0.01;
/// Errors are clipped at this many MAEs so one outlier can't inflate the scale.
const MAE_CLIP: f64 = 4.0;
/// 1.2533 · MAE estimates σ for Gaussian errors.
const MAE_TO_SIGMA: f64 = 1.2533;

/// The σ a running mean absolute error `mae` stands for, kept above zero
/// relative to `value` (a perfectly predicted series divides by it).
pub(crate) fn sigma_of(mae: f64, value: f64) -> f64 {
    MAE_TO_SIGMA * mae + 1e-9 * (1.0 + value.abs())
}

/// The running mean absolute error after the `scored`-th error `err`: the
/// first is taken as it is, later ones are clipped at [`MAE_CLIP`] MAEs.
pub(crate) fn next_mae(mae: f64, err: f64, scored: u64) -> f64 {
    if scored == 0 {
        err
    } else {
        mae + MAE_ALPHA * (err.min(MAE_CLIP * mae.max(f64::MIN_POSITIVE)) - mae)
    }
}

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
    /// Levels seen at each time of day (created at the end of warm-up;
    /// never when `tod_buckets` is 0).
    time_of_day: Option<TimeOfDayMemory>,
    /// Likelihood of the time-of-day novelty (created with `time_of_day`).
    time_of_day_likelihood: Option<AnomalyLikelihood>,
    cooldown_left: usize,
    /// The running cooldown was started by a range breakout.
    cooling_after_breakout: bool,
    /// Likelihood of repeated values (`Tuning::flat_signal`).
    flat_likelihood: AnomalyLikelihood,
    /// Timestamp of the last alert (epoch ms), for `cooldown_minutes`.
    alert_ts: i64,
    /// Timestamp of the first record (epoch ms), for the record step.
    first_ts: i64,
    /// Records since the last alert (saturating), for `breakout_rearm`.
    since_alert: u64,
    /// The last `shift_ref + shift_recent` values (`Tuning::shift_cap`).
    shift_hist: ShiftWindow,
    /// Likelihood of the shift statistic.
    shift_likelihood: AnomalyLikelihood,
    /// Likelihood of the shift statistic's falls (`Tuning::shift_fall`).
    #[serde(default)]
    fall_likelihood: Option<FallLikelihood>,
    /// Residual against the daily profile (`Tuning::seasonal_cap`).
    seasonal: Option<SeasonalResidual>,
    /// Scale of recent errors against the week before
    /// (`Tuning::scale_cap`).
    scale: Option<ScaleChange>,
    /// Slot means of the last days for the day-aware shift
    /// (`Tuning::dayshift_days`).
    day_shift: Option<DayShift>,
    /// Slot means of the last week for the rhythm break
    /// (`Tuning::rhythm_days`).
    #[serde(default)]
    rhythm: Option<DayShift>,
    /// Slot means of the last week for the whole peak (`Tuning::peak_slots`).
    #[serde(default)]
    peak: Option<DayShift>,
    /// The daily swing (`Tuning::swing_cap`).
    #[serde(default)]
    swing: Option<crate::swing::Swing>,
    /// The open hour (`Tuning::open_minutes`).
    #[serde(default)]
    open_hour: Option<OpenHour>,
    /// The running cooldown was started by the repeated-values
    /// likelihood (`Tuning::flat_bypass`).
    #[serde(default)]
    cooling_after_flat: bool,
    /// Records the current value has repeated the one before it
    /// (`Tuning::flat_bypass`: a run already under way at an alert
    /// belongs to that alert's incident).
    #[serde(default)]
    same_run: u64,
    /// The run of values beyond the range seen before it
    /// (`Tuning::breakout_area`).
    #[serde(default)]
    beyond_run: Option<BeyondRun>,
    /// A score below the threshold came after `breakout_rearm` records
    /// since the last alert (`Tuning::deviation_rearm`).
    #[serde(default)]
    calm_since_alert: bool,
    /// `recent`, sorted (derived, not state: skipped by snapshots and
    /// rebuilt from `recent` when its length disagrees).
    #[serde(skip)]
    recent_sorted: SortedWindow,
    /// Excursions seen while the range is young (`Tuning::young_burst_minutes`).
    #[serde(default)]
    burst: BurstMemory,
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
            likelihood: new_likelihood(cfg, t),
            novelty_likelihood: new_likelihood(cfg, t),
            time_of_day: None,
            time_of_day_likelihood: None,
            cooldown_left: 0,
            cooling_after_breakout: false,
            beyond_run: None,
            calm_since_alert: false,
            flat_likelihood: new_likelihood(
                cfg,
                &Tuning {
                    std_floor: t.flat_std_floor,
                    ..*t
                },
            ),
            alert_ts: 0,
            first_ts: 0,
            since_alert: 0,
            shift_hist: ShiftWindow::default(),
            shift_likelihood: AnomalyLikelihood::new(
                if t.shift_short > 0 {
                    t.shift_short
                } else {
                    cfg.short_window
                },
                cfg.likelihood_window,
                cfg.likelihood_window.min(cfg.warmup.max(10)),
                t.shift_std_floor,
            ),
            fall_likelihood: t.shift_fall.then(|| {
                let short = if t.shift_short > 0 {
                    t.shift_short
                } else {
                    cfg.short_window
                };
                FallLikelihood::new(shift_like_likelihood(cfg, short, t.shift_std_floor))
            }),
            seasonal: (t.seasonal_cap > 0.0)
                .then(|| SeasonalResidual::new(&SeasonalSettings::from(t))),
            scale: (t.scale_cap > 1.0).then(|| {
                ScaleChange::new(shift_like_likelihood(
                    cfg,
                    if t.shift_short > 0 {
                        t.shift_short
                    } else {
                        cfg.short_window
                    },
                    t.scale_std_floor,
                ))
            }),
            day_shift: (t.dayshift_days > 0).then(|| {
                DayShift::new(t.dayshift_slots, t.dayshift_days.max(t.dayshift_kind_days))
            }),
            rhythm: (t.rhythm_days > 0).then(|| DayShift::new(t.dayshift_slots, t.rhythm_days)),
            swing: (t.swing_cap > 1.0).then(crate::swing::Swing::default),
            peak: (t.peak_slots > 0).then(|| DayShift::new(t.dayshift_slots, t.rhythm_days)),
            open_hour: (t.open_minutes > 0.0).then(|| OpenHour::new(t.rhythm_days)),
            cooling_after_flat: false,
            same_run: 0,
            recent_sorted: SortedWindow::default(),
            burst: BurstMemory::default(),
        }
    }

    /// Feeds one finite `value` with its record timestamp (epoch
    /// milliseconds) and scores it.
    pub fn update(&mut self, cfg: &Config, value: f64, ts_ms: i64) -> Output {
        self.update_tuned(cfg, &Tuning::default(), value, ts_ms)
    }

    /// [`SeriesModel::update`] with non-default internal constants.
    pub fn update_tuned(&mut self, cfg: &Config, t: &Tuning, value: f64, ts_ms: i64) -> Output {
        // Prediction: the median of the last few values (robust to single
        // outliers, follows level shifts within half a window).
        if self.recent_sorted.len() != self.recent.len() {
            // Restored from a snapshot: the sorted copy is not state.
            self.recent_sorted.clear();
            self.recent
                .iter()
                .for_each(|&x| self.recent_sorted.insert(x));
        }
        let expected = self.recent_sorted.median().unwrap_or(value);
        let residual = value - expected;
        let have_pred = !self.recent.is_empty();
        let z = if have_pred && self.scored > 0 {
            residual / sigma_of(self.mae, value)
        } else {
            0.0
        };
        if have_pred {
            self.mae = next_mae(self.mae, residual.abs(), self.scored);
            self.scored += 1;
        }
        let k = self.recent.len();
        let repeated = k >= 2 && self.recent.iter().skip(k - 2).all(|&x| x == value);
        self.same_run = match self.recent.back() {
            Some(&last) if last == value => self.same_run.saturating_add(1),
            _ => 0,
        };
        if self.recent.len() == self.level_window {
            if let Some(old) = self.recent.pop_front() {
                self.recent_sorted.remove(old);
            }
        }
        self.recent.push_back(value);
        self.recent_sorted.insert(value);

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
        let novel_grade = self.context.observe_graded(
            lvl,
            t.pattern_forget,
            t.pattern_generations,
            t.pattern_forgotten,
        );
        // `novel_pattern` in alerts keeps meaning "never seen".
        let novel = novel_grade >= 1.0;
        // Levels on the grid that still moves during warm-up would fill the
        // time-of-day memory with contexts that mean nothing afterwards.
        let (novel_time_of_day, time_lik) = if self.grid.is_some() {
            self.observe_time_of_day(cfg, t, ts_ms, lvl)
        } else {
            (false, 0.0)
        };

        let err_part = (z.abs() / t.error_cap).min(1.0);
        let novel_part = novel_grade;
        let flat_lik = if t.flat_signal {
            self.flat_likelihood
                .update(if repeated { 1.0 } else { 0.0 })
        } else {
            0.0
        };
        let step_minutes = if self.n > 0 {
            ts_ms.saturating_sub(self.first_ts) as f64 / 60_000.0 / self.n as f64
        } else {
            0.0
        };
        let (shift_lik, view) = if t.shift_cap > 0.0 {
            let (z, medians) = self.shift_statistic(t, value);
            let span_ms = (step_minutes * t.shift_recent as f64 * 60_000.0) as i64;
            let view = medians.map(|(recent, reference, scale)| ShiftView {
                recent,
                reference,
                scale,
                span_ms,
            });
            let raw = crate::shift::shift_raw(t, z, step_minutes);
            let lik = self.shift_likelihood.update(raw);
            let fall = match self.fall_likelihood.as_mut() {
                Some(fl) => fl.update(view.map(|v| (v.recent, v.reference, v.scale)), t.shift_cap),
                None => 0.0,
            };
            // Heard on every series (its history stays whole), used only on
            // fine ones.
            let fall = if t.shift_fall_max_step > 0.0 && step_minutes >= t.shift_fall_max_step {
                0.0
            } else {
                fall
            };
            (lik.max(fall), view)
        } else {
            (0.0, None)
        };
        // The day-aware likelihoods average over the shift likelihood's
        // short window.
        let short = shift_short_records(cfg, t, step_minutes);
        let day_shift_lik = self.day_shift.as_mut().map_or(0.0, |ds| {
            ds.likelihood(cfg, t, short, (ts_ms, value), view, self.open_hour.as_ref())
        });
        let at = ((cfg, t), (ts_ms, value), step_minutes, short);
        let rhythm_lik = crate::peak::rhythm_likelihood(
            self.rhythm.as_mut(),
            self.peak.as_mut(),
            (cfg, t),
            (ts_ms, value),
            view,
            short,
        )
        .max(open_likelihood(self.open_hour.as_mut(), at, view));
        let seasonal_lik = match self.seasonal.as_mut() {
            Some(sr) => sr.update(
                &SeasonalSettings::from(t),
                ts_ms,
                value,
                (cfg.short_window, cfg.likelihood_window),
                step_minutes,
            ),
            None => 0.0,
        };
        let scale_lik = match self.scale.as_mut() {
            Some(sc) => {
                let s = ScaleSettings::from(t);
                sc.observe_time(&s, ts_ms, STEP_PROBE as usize);
                if have_pred {
                    sc.update(&s, residual.abs())
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        let scale_lik = scale_lik.max(crate::swing::swing_likelihood(self.swing.as_mut(), at));
        let likelihoods = if t.separate {
            [
                self.likelihood.update(err_part),
                self.novelty_likelihood.update(novel_part),
                time_lik,
                flat_lik,
                shift_lik,
                seasonal_lik,
                scale_lik,
                day_shift_lik,
                rhythm_lik,
            ]
        } else {
            let raw = t.novelty_weight * novel_part + (1.0 - t.novelty_weight) * err_part;
            [
                self.likelihood.update(raw),
                0.0,
                time_lik,
                flat_lik,
                shift_lik,
                seasonal_lik,
                scale_lik,
                day_shift_lik,
                rhythm_lik,
            ]
        };
        let lik = likelihoods.iter().copied().fold(0.0, f64::max);

        let mut score = 0.0;
        let mut kind = Kind::Normal;
        // How far beyond the seen range, in units of that range.
        let mut excess = 0.0;
        let age_ms = ts_ms.saturating_sub(self.first_ts);
        // Only a young range consults (and so keeps filling) the burst memory.
        let young =
            t.young_burst_minutes > 0.0 && (age_ms as f64) < t.young_burst_minutes * 60_000.0;
        // Before warm-up ends, only far breakouts (design 0007, session 13).
        let early = !warm && early_breakouts(t, self.n, age_ms);
        if warm || early {
            score = if warm { lik } else { 0.0 };
            if score > 0.0 {
                kind = Kind::Deviation;
            }
            if cfg.range_tolerance > 0.0 && self.max > self.min {
                let range = (self.min, self.max);
                let ordinary = young && self.burst.ordinary(value, t.young_burst_ratio);
                let area = if warm && !ordinary {
                    t.breakout_area
                } else {
                    t.early_area
                };
                let tol = cfg.range_tolerance;
                if range_breakout(&mut self.beyond_run, value, range, tol, area, &mut excess) {
                    score = 1.0;
                    kind = Kind::RangeBreakout;
                }
            }
        }
        if young || self.n == 0 {
            self.burst.record(value);
        } else if !self.burst.is_empty() {
            // A grown-up range never consults it again: drop it from the state.
            self.burst = BurstMemory::default();
        }
        self.min = lo;
        self.max = hi;
        if self.n == 0 {
            self.first_ts = ts_ms;
        }
        if self.n == STEP_PROBE && t.shift_short_minutes > 0.0 && t.shift_short == 0 {
            self.cap_shift_window_in_time(cfg, t, ts_ms);
        }
        self.n += 1;

        // Lowering the score rather than raising the threshold keeps the
        // stream cut at the configured threshold equal to the alerts.
        if kind == Kind::Deviation {
            score = (score - t.length_shift(self.n)).max(0.0);
        }
        let mut alert = false;
        self.since_alert = self.since_alert.saturating_add(1);
        // A breakout re-arms after `breakout_rearm` records capped in time.
        let rearmed = !self.cooling_after_breakout
            || (t.breakout_rearm > 0
                && self.since_alert >= rearm_gap(t, step_minutes)
                && excess > cfg.range_tolerance * t.rearm_tolerance);
        if t.breakout_bypass && kind == Kind::RangeBreakout && rearmed && score >= cfg.threshold {
            self.cooldown_left = 0;
        }
        // A run of repeated values is its own failure (a stuck sensor, a
        // drop-out), unrelated to whatever started the cooldown, unless
        // the run was already under way at that alert (a jump to a
        // constant is one incident, not two).
        let flat_leads = kind == Kind::Deviation && likelihoods[3] > 0.0 && likelihoods[3] >= lik;
        if t.flat_bypass > 0
            && flat_leads
            && !self.cooling_after_flat
            && self.since_alert >= t.flat_bypass as u64
            && self.same_run < self.since_alert
            && score >= cfg.threshold
        {
            self.cooldown_left = 0;
        }
        // A deviation far stronger than chance once the score fell below the
        // threshold after the alert is a second incident (or the alert was
        // chance), which the cooldown would hide; one still high since that
        // alert is the same incident (design 0007, session 12).
        let rearm_after = self.since_alert >= t.breakout_rearm as u64;
        if t.deviation_rearm > 0.0
            && t.breakout_rearm > 0
            && kind == Kind::Deviation
            && rearm_after
            && self.calm_since_alert
            && score >= t.deviation_rearm.max(cfg.threshold)
        {
            self.cooldown_left = 0;
        }
        if rearm_after && score < cfg.threshold {
            self.calm_since_alert = true;
        }
        // A cooldown in records alone would span a day of 5-minute data
        // but twelve days of hourly data: it also ends after
        // `cooldown_minutes` of record time.
        if self.cooldown_left > 0
            && cfg.cooldown_minutes > 0
            && ts_ms.saturating_sub(self.alert_ts) >= cfg.cooldown_minutes as i64 * 60_000
        {
            self.cooldown_left = 0;
        }
        let cooling = self.cooldown_left > 0;
        if cooling {
            self.cooldown_left -= 1;
        } else if (warm || early) && score >= cfg.threshold {
            alert = true;
            self.cooldown_left = cfg.cooldown;
            self.alert_ts = ts_ms;
            self.since_alert = 0;
            self.cooling_after_breakout = kind == Kind::RangeBreakout;
            self.cooling_after_flat = flat_leads;
            self.calm_since_alert = false;
            if let Some(sw) = self.swing.as_mut() {
                sw.alert_raised();
            }
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
            novel_time_of_day,
            likelihoods,
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

/// The anomaly likelihood every surprise goes through: learning for the
/// warm-up (at most the whole window) before it scores.
fn new_likelihood(cfg: &Config, t: &Tuning) -> AnomalyLikelihood {
    AnomalyLikelihood::new(
        cfg.short_window,
        cfg.likelihood_window,
        cfg.likelihood_window.min(cfg.warmup.max(10)),
        t.std_floor,
    )
}
