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

use crate::context::{day_kinds, SlotMean, DAY_MS};

/// What the day-aware statistics take from the shift statistic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftView {
    /// Median of the recent part.
    pub recent: f64,
    /// Median of the reference part.
    pub reference: f64,
    /// The shift statistic's scale (1.4826 × the reference's median
    /// absolute deviation, at least the predictor's typical error).
    pub scale: f64,
    /// Time the recent part spans (milliseconds).
    pub span_ms: i64,
}

/// Slot means of the last days and the likelihood of a day-aware
/// statistic: the day-aware shift, or (with a week of days) the rhythm
/// break.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DayShift {
    /// Slots a day is cut into.
    slots: usize,
    /// Days of history kept.
    days: usize,
    /// (epoch day, mean of each slot; NaN where the slot had no record),
    /// oldest first.
    rows: VecDeque<(i64, Vec<f64>)>,
    /// The slot being accumulated.
    current: SlotMean,
    /// Created with the first statistic: a history of zeros before it
    /// would make the first ordinary values look new.
    likelihood: Option<AnomalyLikelihood>,
    /// The likelihood of `kind_surprise`, of its own: that surprise is
    /// never larger than the calendar days' one, and a history of smaller
    /// ones would make ordinary days' surprises look rarer.
    #[serde(default)]
    kind_likelihood: Option<AnomalyLikelihood>,
}

impl DayShift {
    /// Empty history of `days` days cut into `slots` slots.
    pub fn new(slots: usize, days: usize) -> Self {
        DayShift {
            slots: slots.clamp(1, 288),
            days: days.clamp(1, 31),
            rows: VecDeque::new(),
            current: SlotMean::default(),
            likelihood: None,
            kind_likelihood: None,
        }
    }

    pub(crate) fn slot_ms(&self) -> i64 {
        (DAY_MS / self.slots as i64).max(1)
    }

    /// Slots a day is cut into.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    /// Days of history kept.
    pub(crate) fn days(&self) -> usize {
        self.days
    }

    /// The mean of slot `slot` on epoch day `day`, if it had a record.
    pub(crate) fn mean_at(&self, day: i64, slot: usize) -> Option<f64> {
        let row = self.rows.iter().rev().find(|r| r.0 == day)?;
        row.1.get(slot).copied().filter(|m| m.is_finite())
    }

    /// The median of the slot means of epoch day `day`, if at least half
    /// its slots had a record.
    pub(crate) fn day_level(&self, day: i64) -> Option<f64> {
        let row = self.rows.iter().rev().find(|r| r.0 == day)?;
        let mut xs: Vec<f64> = row.1.iter().copied().filter(|m| m.is_finite()).collect();
        if xs.len() * 2 < self.slots {
            return None;
        }
        crate::median::median_of(&mut xs)
    }

    /// The mean so far of the slot being accumulated, if it is `cell`.
    pub(crate) fn open_mean(&self, cell: (i64, usize)) -> Option<f64> {
        self.current.open().filter(|o| o.0 == cell).map(|o| o.1)
    }

    /// Adds `value` at `ts_ms` to the slot means.
    pub fn observe(&mut self, ts_ms: i64, value: f64) {
        let (day, slot) = SlotMean::cell(ts_ms, self.slots);
        if let Some(((d, s), mean)) = self.current.add((day, slot), value) {
            if self.rows.back().map(|r| r.0) != Some(d) {
                self.rows.push_back((d, vec![f64::NAN; self.slots]));
            }
            if let Some(cell) = self.rows.back_mut().and_then(|r| r.1.get_mut(s)) {
                *cell = mean;
            }
            while self
                .rows
                .front()
                .is_some_and(|r| r.0 < day - self.days as i64)
            {
                self.rows.pop_front();
            }
        }
    }

    /// The smallest distance of `recent` (the median of the records of
    /// the last `span_ms`) from the mean of any slot the recent part
    /// touches, on any day whose slot is at least half a day old; `None`
    /// before there is such a slot.
    pub fn nearest(&self, ts_ms: i64, span_ms: i64, recent: f64) -> Option<f64> {
        self.nearest_where(ts_ms, span_ms, recent, |_| true).0
    }

    /// Like [`DayShift::nearest`], but only slots of previous days of the
    /// same kind (weekday or weekend, UTC; a slot whose time 12 hours
    /// earlier and later are of different kinds may be either locally:
    /// it is never a reference and, as the current time, may be compared
    /// with either kind), and only once `min_days` such days exist.
    pub fn nearest_same_kind(
        &self,
        ts_ms: i64,
        span_ms: i64,
        recent: f64,
        min_days: usize,
    ) -> Option<f64> {
        let now = day_kinds(ts_ms);
        let (best, seen) = self.nearest_where(ts_ms, span_ms, recent, |start| {
            let (k, k2) = day_kinds(start);
            k == k2 && (k == now.0 || k == now.1)
        });
        best.filter(|_| seen.count_ones() as usize >= min_days.max(1))
    }

    /// The smallest distance of `recent` from the mean of a slot the last
    /// `span_ms` touch, on a day whose slot is at least half a day old and
    /// whose start `accept`s; with the rows (at most `days` + 2 ≤ 33) that
    /// held a candidate, as bits.
    fn nearest_where(
        &self,
        ts_ms: i64,
        span_ms: i64,
        recent: f64,
        accept: impl Fn(i64) -> bool,
    ) -> (Option<f64>, u64) {
        let slot_ms = self.slot_ms();
        let span = span_ms.clamp(0, DAY_MS - slot_ms);
        let mut best: Option<f64> = None;
        let mut seen: u64 = 0;
        let mut t = ts_ms - span;
        loop {
            let slot = SlotMean::cell(t, self.slots).1;
            for (i, (d, means)) in self.rows.iter().enumerate() {
                let start = d * DAY_MS + slot as i64 * slot_ms;
                let mean = means.get(slot).copied().unwrap_or(f64::NAN);
                if start <= ts_ms - DAY_MS / 2 && mean.is_finite() && accept(start) {
                    let dist = (recent - mean).abs();
                    best = Some(best.map_or(dist, |b: f64| b.min(dist)));
                    seen |= 1 << i.min(63);
                }
            }
            if t >= ts_ms {
                break;
            }
            t = (t + slot_ms).min(ts_ms);
        }
        (best, seen)
    }

    /// Adds `value` at `ts_ms`; the day-aware shift's raw surprise: the
    /// shift statistic with the recent median's distance taken to the
    /// nearest of the reference median and the means of the hours the
    /// recent part spans on previous days, over `cap`. `None` while there
    /// are no such days (or no shift statistic).
    pub fn shift_surprise(
        &mut self,
        ts_ms: i64,
        value: f64,
        view: Option<ShiftView>,
        cap: f64,
        near_days: usize,
    ) -> Option<f64> {
        self.observe(ts_ms, value);
        let v = view?;
        let near = if near_days == 0 || near_days >= self.days {
            self.nearest(ts_ms, v.span_ms, v.recent)?
        } else {
            // The rows older than `near_days` are kept only for
            // `kind_surprise`; this one stays on the calendar days (the
            // eviction rule of `observe`).
            let recent = self.within(near_days);
            self.nearest_where(ts_ms, v.span_ms, v.recent, recent).0?
        };
        Some(capped(near, v, cap))
    }

    /// Whether a day starting at `start` is among the last `near_days`
    /// calendar days of the rows (the eviction rule of `observe`, counted
    /// from the newest row).
    fn within(&self, near_days: usize) -> impl Fn(i64) -> bool {
        let newest = self.rows.back().map_or(i64::MIN, |r| r.0);
        move |start| start.div_euclid(DAY_MS) >= newest - near_days as i64
    }

    /// The day-aware shift's raw surprise with also the kept days older
    /// than `near_days` of today's kind (weekday or weekend, as the rhythm
    /// break's) as references: after a weekday without its rhythm (a
    /// holiday), the weekdays before it. Call after `shift_surprise` (it
    /// adds no value). `None` as there.
    pub fn kind_surprise(
        &self,
        ts_ms: i64,
        view: Option<ShiftView>,
        cap: f64,
        near_days: usize,
    ) -> Option<f64> {
        let v = view?;
        let recent = self.within(near_days);
        let now = day_kinds(ts_ms);
        let near = self
            .nearest_where(ts_ms, v.span_ms, v.recent, |start| {
                if recent(start) {
                    return true;
                }
                let (k, k2) = day_kinds(start);
                k == k2 && (k == now.0 || k == now.1)
            })
            .0?;
        Some(capped(near, v, cap))
    }

    /// Adds `value` at `ts_ms`; the rhythm break's raw surprise: the
    /// recent median's distance to the nearest mean of the slot at the
    /// middle of the recent part on previous days of the same kind (at
    /// least `min_days` of them), in the shift statistic's scale, over
    /// `cap`. No reference term: a weekday without its rush hour is like
    /// the night before it. The middle slot, not every slot the recent
    /// part touches: those at its ends hold the levels just before and
    /// after a rush hour. `None` where the recent part spans more than
    /// `max_span_ms` (> 0): a median over many hours says nothing about
    /// one hour of the day, so hourly and half-hourly series have none.
    pub fn rhythm_surprise(
        &mut self,
        ts_ms: i64,
        value: f64,
        view: Option<ShiftView>,
        min_days: usize,
        cap: f64,
        max_span_ms: i64,
    ) -> Option<f64> {
        self.observe(ts_ms, value);
        let v = view.filter(|v| max_span_ms <= 0 || v.span_ms <= max_span_ms)?;
        let near = self.nearest_same_kind(ts_ms - v.span_ms / 2, 0, v.recent, min_days)?;
        Some((near / v.scale / cap).min(1.0))
    }

    /// The likelihood of the raw surprises (created by `make` when the
    /// first one exists: it hears nothing before, and zeros while the
    /// statistic lapses).
    pub fn score(&mut self, raw: Option<f64>, make: impl FnOnce() -> AnomalyLikelihood) -> f64 {
        crate::shift::scored_lazily(&mut self.likelihood, raw, make)
    }

    /// Like [`DayShift::score`], for `kind_surprise`.
    pub fn score_kind(
        &mut self,
        raw: Option<f64>,
        make: impl FnOnce() -> AnomalyLikelihood,
    ) -> f64 {
        crate::shift::scored_lazily(&mut self.kind_likelihood, raw, make)
    }

    /// The day shift's likelihood of one record (`SeriesModel::update_tuned`):
    /// the shift against the last `Tuning::dayshift_days` calendar days,
    /// joined with the profile shift; with `Tuning::dayshift_kind_days`
    /// beyond them, also against the older days of today's kind (scored on
    /// their own history), and the smaller of the two: older days can only
    /// lower a day shift (design 0007, session 19 round 21).
    pub(crate) fn likelihood(
        &mut self,
        cfg: &crate::config::Config,
        t: &crate::tuning::Tuning,
        short: usize,
        (ts_ms, value): (i64, f64),
        view: Option<ShiftView>,
        open: Option<&crate::openhour::OpenHour>,
    ) -> f64 {
        let raw = self.shift_surprise(ts_ms, value, view, t.shift_cap, t.dayshift_days);
        let raw = crate::profile::joined(raw, open, t, view);
        let make = || crate::shift::shift_like_likelihood(cfg, short, t.dayshift_std_floor);
        let lik = self.score(raw, make);
        if t.dayshift_kind_days <= t.dayshift_days {
            return lik;
        }
        let kind = self.kind_surprise(ts_ms, view, t.shift_cap, t.dayshift_days);
        let kind = crate::profile::joined(kind, open, t, view);
        lik.min(self.score_kind(kind, make))
    }
}

/// A surprise from the distance `near` to the nearest earlier day (at most
/// the recent level's distance from the reference), in the view's scale,
/// over `cap`, at most 1.
fn capped(near: f64, v: ShiftView, cap: f64) -> f64 {
    (near.min((v.recent - v.reference).abs()) / v.scale / cap).min(1.0)
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
        speeds_quiet(at, usize::MAX)
    }

    /// `speeds(at)`, with no rush hours on day `quiet` either.
    fn speeds_quiet(at: usize, quiet: usize) -> Vec<(i64, f64)> {
        (0..9 * 288)
            .map(|i| {
                let hour = (i % 288) as f64 / 12.0;
                let weekday = (i / 288) % 7 < 5 && i / 288 != quiet;
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

    /// (max of likelihood `which`, alerts) over records `from..to` of
    /// `series`.
    fn run_on(
        t: &Tuning,
        series: Vec<(i64, f64)>,
        which: usize,
        from: usize,
        to: usize,
    ) -> (f64, usize) {
        let cfg = Config::default();
        let mut m = SeriesModel::with_tuning(&cfg, t);
        let outs: Vec<_> = series
            .into_iter()
            .map(|(ts, v)| m.update_tuned(&cfg, t, v, ts))
            .collect();
        let part = &outs[from..to];
        (
            part.iter()
                .map(|o| o.likelihoods[which])
                .fold(0.0, f64::max),
            part.iter().filter(|o| o.alert).count(),
        )
    }

    /// (max of the day-aware shift likelihood, alerts) over records
    /// `from..to` of `speeds(at)`.
    fn run(t: &Tuning, at: usize, from: usize, to: usize) -> (f64, usize) {
        run_on(t, speeds(at), 7, from, to)
    }

    #[test]
    fn a_weekday_without_its_rush_hours_is_flagged_by_the_rhythm_break() {
        // The second Tuesday (day 8) has no rush hours; its levels are
        // the night's, so the recent median is like the reference (no
        // shift) and nothing else sees it in this noise. Its morning,
        // 05:00-12:00 UTC:
        let (from, to) = (8 * 288 + 60, 8 * 288 + 144);
        let on = Tuning::default();
        let (lik, alerts) = run_on(&on, speeds_quiet(usize::MAX, 8), 8, from, to);
        assert!(
            lik >= 0.5 && alerts >= 1,
            "likelihood {lik}, alerts {alerts}"
        );
        let off = Tuning {
            rhythm_days: 0,
            ..on
        };
        assert_eq!(
            run_on(&off, speeds_quiet(usize::MAX, 8), 8, from, to),
            (0.0, 0)
        );
        // An ordinary Tuesday is not news.
        let (lik, alerts) = run_on(&on, speeds(usize::MAX), 8, from, to);
        assert!(
            lik < 0.5 && alerts == 0,
            "likelihood {lik}, alerts {alerts}"
        );
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
        // Without it nothing else does (the rhythm break, which sees it
        // too, also off): the shift likelihood has learnt the rush hours'
        // shifts as its usual noise.
        let off = Tuning {
            dayshift_days: 0,
            rhythm_days: 0,
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
    fn the_weekday_after_a_holiday_is_no_day_shift() {
        // Monday (day 7) has no rush hours; on Tuesday (day 8) the last 3
        // calendar days (Monday, Sunday, Saturday) hold none, so its
        // ordinary rush hours are a shift against them alone. The older
        // weekdays kept (Friday, Thursday) show them as usual.
        let (from, to) = (8 * 288, 9 * 288);
        let on = Tuning::default();
        let (lik, _) = run_on(&on, speeds_quiet(usize::MAX, 7), 7, from, to);
        let off = Tuning {
            dayshift_kind_days: 0,
            ..on
        };
        let (lik_off, _) = run_on(&off, speeds_quiet(usize::MAX, 7), 7, from, to);
        assert!(
            lik < 0.5 && lik_off >= 0.5,
            "likelihood {lik}, without the kind days {lik_off}"
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
