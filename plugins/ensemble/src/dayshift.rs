//! Level shift against the same hours of previous days (design 0007,
//! session 10).
//!
//! The shift statistic (`model::SeriesModel::shift_statistic`) compares
//! the median of the last records with the median of the ones before
//! them. On a series with a daily rhythm (rush hours) every rhythm's
//! rise is such a shift, so the shift likelihood learns daily excursions
//! as its usual noise and a real recalibration (a sensor reading 0.7×
//! from now on) scores no higher than a morning rush. Here the recent
//! median must differ from the reference *and* from what the series
//! showed at these hours on each of the previous days: the rush hour is
//! like yesterday's rush hour, a shift is unlike every day before it.
//! No profile by kind of day is needed (a Monday rush is like Friday's,
//! three days back), which matters for short series that never see two
//! weekends.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use vigil_sdk::blocks::AnomalyLikelihood;

use crate::context::DAY_MS;

/// Slot means of the last days and the likelihood of the day-aware shift.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DayShift {
    /// Slots a day is cut into.
    slots: usize,
    /// Days of history kept.
    days: usize,
    /// (epoch day, mean of each slot; NaN where the slot had no record),
    /// oldest first.
    rows: VecDeque<(i64, Vec<f64>)>,
    /// The (epoch day, slot) being accumulated.
    current: Option<(i64, usize)>,
    sum: f64,
    count: u32,
    /// Created with the first statistic: a history of zeros before it
    /// would make the first ordinary values look new.
    likelihood: Option<AnomalyLikelihood>,
}

impl DayShift {
    /// Empty history of `days` days cut into `slots` slots.
    pub fn new(slots: usize, days: usize) -> Self {
        DayShift {
            slots: slots.clamp(1, 288),
            days: days.clamp(1, 31),
            rows: VecDeque::new(),
            current: None,
            sum: 0.0,
            count: 0,
            likelihood: None,
        }
    }

    fn slot_ms(&self) -> i64 {
        (DAY_MS / self.slots as i64).max(1)
    }

    /// Adds `value` at `ts_ms` to the slot means.
    pub fn observe(&mut self, ts_ms: i64, value: f64) {
        let day = ts_ms.div_euclid(DAY_MS);
        let slot = ((ts_ms.rem_euclid(DAY_MS) / self.slot_ms()) as usize).min(self.slots - 1);
        match self.current {
            Some(c) if c == (day, slot) => {}
            Some((d, s)) => {
                if self.count > 0 {
                    let mean = self.sum / f64::from(self.count);
                    if self.rows.back().map(|r| r.0) != Some(d) {
                        self.rows.push_back((d, vec![f64::NAN; self.slots]));
                    }
                    if let Some(cell) = self.rows.back_mut().and_then(|r| r.1.get_mut(s)) {
                        *cell = mean;
                    }
                }
                while self
                    .rows
                    .front()
                    .is_some_and(|r| r.0 < day - self.days as i64)
                {
                    self.rows.pop_front();
                }
                self.current = Some((day, slot));
                self.sum = 0.0;
                self.count = 0;
            }
            None => self.current = Some((day, slot)),
        }
        self.sum += value;
        self.count = self.count.saturating_add(1);
    }

    /// The smallest distance of `recent` (the median of the records of
    /// the last `span_ms`) from the mean of any slot the recent part
    /// touches, on any day whose slot is at least half a day old; `None`
    /// before there is such a slot.
    pub fn nearest(&self, ts_ms: i64, span_ms: i64, recent: f64) -> Option<f64> {
        let slot_ms = self.slot_ms();
        let span = span_ms.clamp(0, DAY_MS - slot_ms);
        let mut best: Option<f64> = None;
        let mut t = ts_ms - span;
        loop {
            let slot = ((t.rem_euclid(DAY_MS) / slot_ms) as usize).min(self.slots - 1);
            for (d, means) in &self.rows {
                let start = d * DAY_MS + slot as i64 * slot_ms;
                let mean = means.get(slot).copied().unwrap_or(f64::NAN);
                if start <= ts_ms - DAY_MS / 2 && mean.is_finite() {
                    let dist = (recent - mean).abs();
                    best = Some(best.map_or(dist, |b: f64| b.min(dist)));
                }
            }
            if t >= ts_ms {
                break;
            }
            t = (t + slot_ms).min(ts_ms);
        }
        best
    }

    /// Whether the likelihood exists (the statistic existed once).
    pub fn has_likelihood(&self) -> bool {
        self.likelihood.is_some()
    }

    /// Feeds the raw surprise to the likelihood (created by `make` on the
    /// first call) and returns its score.
    pub fn score(&mut self, raw: f64, make: impl FnOnce() -> AnomalyLikelihood) -> f64 {
        self.likelihood.get_or_insert_with(make).update(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::{SeriesModel, Tuning};
    use vigil_sdk::testing::noise;

    const HOUR: i64 = 3_600_000;

    /// 5-minute speed readings from Monday 1970-01-05 for 9 days: 66 with
    /// noise, a morning and an evening rush down to about 36 on weekdays;
    /// from record `at` on the sensor reads 0.7 times the speed (a
    /// recalibration, inside the range the rush hours span).
    fn speeds(at: usize) -> Vec<(i64, f64)> {
        (0..9 * 288)
            .map(|i| {
                let hour = (i % 288) as f64 / 12.0;
                let weekday = (i / 288) % 7 < 5;
                let rush = if weekday {
                    (-((hour - 8.0) / 1.0_f64).powi(2)).exp()
                        + 0.8 * (-((hour - 17.0) / 1.3_f64).powi(2)).exp()
                } else {
                    0.0
                };
                let v = 66.0 - 30.0 * rush + 6.0 * noise(i);
                let v = if i >= at { 0.7 * v } else { v };
                (4 * DAY_MS + i as i64 * 300_000, v)
            })
            .collect()
    }

    /// (max of the day-aware shift likelihood, alerts) over records
    /// `from..to` of `speeds(at)`.
    fn run(t: &Tuning, at: usize, from: usize, to: usize) -> (f64, usize) {
        let cfg = Config::default();
        let mut m = SeriesModel::with_tuning(&cfg, t);
        let outs: Vec<_> = speeds(at)
            .into_iter()
            .map(|(ts, v)| m.update_tuned(&cfg, t, v, ts))
            .collect();
        let part = &outs[from..to];
        (
            part.iter().map(|o| o.likelihoods[7]).fold(0.0, f64::max),
            part.iter().filter(|o| o.alert).count(),
        )
    }

    #[test]
    fn a_recalibration_is_flagged_by_the_day_aware_shift() {
        // Thursday (day 3) 12:00: speeds drop to 0.7x for good. Within
        // the next 8 hours the day-aware shift flags it.
        let at = 3 * 288 + 144;
        let on = Tuning::default();
        let (lik, alerts) = run(&on, at, at, at + 96);
        assert!(
            lik >= 0.5 && alerts >= 1,
            "likelihood {lik}, alerts {alerts}"
        );
        // Without it nothing does: the shift likelihood has learnt the
        // rush hours' shifts as its usual noise.
        let off = Tuning {
            dayshift_days: 0,
            ..on
        };
        assert_eq!(run(&off, at, at, at + 96), (0.0, 0));
        // Without the recalibration, the same days raise nothing.
        let (lik, alerts) = run(&on, usize::MAX, at, at + 96);
        assert!(
            lik < 0.5 && alerts == 0,
            "likelihood {lik}, alerts {alerts}"
        );
    }

    #[test]
    fn the_nearest_slot_mean_of_previous_days_counts() {
        let mut d = DayShift::new(24, 7);
        // Day 0: hour 8 is 50, every other hour 10.
        for h in 0..24 {
            d.observe(h * HOUR, if h == 8 { 50.0 } else { 10.0 });
        }
        // Day 1, 08:30: a recent median of 48 is near yesterday's 08:00.
        d.observe(DAY_MS + 8 * HOUR, 48.0);
        assert_eq!(
            d.nearest(DAY_MS + 8 * HOUR + HOUR / 2, HOUR, 48.0),
            Some(2.0)
        );
        // At 03:00 the recent hour (02:00-03:00) was 10 yesterday.
        assert_eq!(d.nearest(DAY_MS + 3 * HOUR, HOUR, 30.0), Some(20.0));
    }

    #[test]
    fn nothing_before_a_slot_is_half_a_day_old() {
        let mut d = DayShift::new(24, 7);
        for h in 0..6 {
            d.observe(h * HOUR, 10.0);
        }
        assert_eq!(d.nearest(6 * HOUR, HOUR, 10.0), None);
        // Old days are forgotten.
        let mut d = DayShift::new(24, 2);
        for day in 0..5 {
            for h in 0..24 {
                d.observe(day * DAY_MS + h * HOUR, day as f64);
            }
        }
        assert!(d.rows.iter().all(|r| r.0 >= 2));
    }
}
