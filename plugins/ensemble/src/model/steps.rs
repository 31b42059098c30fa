//! Steps of [`SeriesModel::update_tuned`] that keep state of their own:
//! the time-of-day novelty and the shift statistic with its window.

use super::{new_likelihood, SeriesModel, MAE_TO_SIGMA, STEP_PROBE};
use crate::config::Config;
use crate::context::TimeOfDayMemory;
use crate::shift::{shift_like_likelihood, shift_short_records, FallLikelihood, ShiftMedians};
use crate::tuning::Tuning;

impl SeriesModel {
    /// Records the level at this time of day; returns whether that was new
    /// and the likelihood of such novelty (0 when `tod_buckets` is 0).
    pub(super) fn observe_time_of_day(
        &mut self,
        cfg: &Config,
        t: &Tuning,
        ts_ms: i64,
        lvl: u8,
    ) -> (bool, f64) {
        if t.tod_buckets == 0 {
            return (false, 0.0);
        }
        let memory = self
            .time_of_day
            .get_or_insert_with(|| TimeOfDayMemory::new(t.tod_buckets));
        let novel = memory.observe(ts_ms, lvl);
        let likelihood = self
            .time_of_day_likelihood
            .get_or_insert_with(|| new_likelihood(cfg, t));
        (novel, likelihood.update(if novel { 1.0 } else { 0.0 }))
    }

    /// The shift statistic of `Tuning::shift_cap` after adding `value`;
    /// 0 until the history is full, and 0 when the reference values are
    /// mostly one value (median absolute deviation 0: a sparse or
    /// quantised series, where medians jump between levels without any
    /// shift; there the z was a false positive on the local corpus).
    /// Also returns the recent median, the reference median and the scale
    /// when the statistic exists (for the day-aware shift).
    pub(super) fn shift_statistic(
        &mut self,
        t: &Tuning,
        value: f64,
    ) -> (f64, Option<(f64, f64, f64)>) {
        let (m, r) = (t.shift_recent.max(1), t.shift_ref.max(2));
        let Some(medians) = self.shift_hist.push(m, r, value) else {
            return (0.0, None);
        };
        let ShiftMedians {
            recent,
            reference,
            mad,
        } = medians;
        if mad <= 0.0 {
            return (0.0, None);
        }
        let scale = (1.4826 * mad).max(MAE_TO_SIGMA * self.mae);
        // Only ever positive so far: a fall counts in doublings.
        let positive = t.shift_log_fall && self.min.min(value) > 0.0;
        (
            medians.moved(positive) / scale,
            Some((recent, reference, scale)),
        )
    }

    /// Shortens the shift likelihood's window to `shift_short_minutes`
    /// of record time, from the step of the first `STEP_PROBE` records
    /// (its history so far is all zeros: the shift statistic needs
    /// `shift_ref + shift_recent` values, so nothing is lost).
    pub(super) fn cap_shift_window_in_time(&mut self, cfg: &Config, t: &Tuning, ts_ms: i64) {
        let step_minutes =
            ts_ms.saturating_sub(self.first_ts) as f64 / 60_000.0 / STEP_PROBE as f64;
        let short = shift_short_records(cfg, t, step_minutes);
        if short != cfg.short_window {
            self.shift_likelihood = shift_like_likelihood(cfg, short, t.shift_std_floor);
            if let Some(fl) = self.fall_likelihood.as_mut() {
                *fl = FallLikelihood::new(shift_like_likelihood(cfg, short, t.shift_std_floor));
            }
            // The scale likelihood averages over the same time; it has
            // heard nothing yet (its statistic needs a week of history).
            if let Some(sc) = self.scale.as_mut() {
                sc.set_likelihood(shift_like_likelihood(cfg, short, t.scale_std_floor));
            }
        }
    }
}
