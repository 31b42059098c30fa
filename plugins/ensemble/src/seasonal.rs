//! A daily profile: what a series usually does at this time of day, from
//! the same time on previous days of the same kind (weekday or weekend),
//! for the seasonal-residual likelihood (design 0007, session 9).
//!
//! The other signals compare a value with the last few hours (predictor,
//! shift) or ask whether its level was ever seen at this hour (time-of-day
//! novelty). Neither sees a day whose rhythm is missing or changed: a
//! weekday without its rush hour has only levels the series shows every
//! night, and it changes slowly enough for the predictor to follow. The
//! residual against the same hour of previous days does see it, and it is
//! large for as long as the rhythm is missing.

use serde::{Deserialize, Serialize};
use vigil_sdk::blocks::AnomalyLikelihood;

use crate::context::{day_kinds, SlotMean, DAY_MS};
use crate::model::{next_mae, sigma_of, Tuning};

/// Most days of history per slot (the median is taken on the stack).
const MAX_DAYS: usize = 16;

/// Settings of the seasonal-residual likelihood (from `model::Tuning`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeasonalSettings {
    /// Residual (in typical residuals) that counts as full surprise.
    pub cap: f64,
    /// Slots a day is cut into.
    pub slots: usize,
    /// Days of history per slot and kind of day.
    pub days: usize,
    /// Previous days of the same kind needed before a residual counts.
    pub min_days: usize,
    /// Weekends (UTC) have their own profile.
    pub weekend_split: bool,
    /// Short window of the likelihood in minutes of record time (0: the
    /// config's `short_window` records).
    pub short_minutes: f64,
    /// Floor of the likelihood's standard deviation.
    pub std_floor: f64,
    /// Residuals the likelihood learns from before it scores.
    pub learn: usize,
    /// Feed a zero surprise while there is no profile for the time.
    pub gap_zero: bool,
}

impl From<&Tuning> for SeasonalSettings {
    fn from(t: &Tuning) -> Self {
        SeasonalSettings {
            cap: t.seasonal_cap,
            slots: t.seasonal_slots,
            days: t.seasonal_days,
            min_days: t.seasonal_min_days,
            weekend_split: t.seasonal_weekend,
            short_minutes: t.seasonal_short_minutes,
            std_floor: t.seasonal_std_floor,
            learn: t.seasonal_learn,
            gap_zero: t.seasonal_gap_zero,
        }
    }
}

/// The residual against the daily profile, its scale and its likelihood.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeasonalResidual {
    profile: DailyProfile,
    mae: f64,
    scored: u64,
    /// Created with the first residual: until then there is nothing to
    /// learn from, and a history of zeros would make the first ordinary
    /// residuals look like news.
    likelihood: Option<AnomalyLikelihood>,
}

impl SeasonalResidual {
    /// An empty profile.
    pub fn new(s: &SeasonalSettings) -> Self {
        SeasonalResidual {
            profile: DailyProfile::new(s.slots, s.days, s.weekend_split),
            mae: 0.0,
            scored: 0,
            likelihood: None,
        }
    }

    /// Adds `value` at `ts_ms` and returns the likelihood of the recent
    /// residuals (0 while there is no profile or it is still learning).
    /// `short_window` / `long_window` are the config's; `step_minutes`
    /// the series' record step.
    pub fn update(
        &mut self,
        s: &SeasonalSettings,
        ts_ms: i64,
        value: f64,
        windows: (usize, usize),
        step_minutes: f64,
    ) -> f64 {
        let Some(residual) = self.profile.observe(ts_ms, value, s.min_days) else {
            // No profile for this time (a weekend not seen often enough):
            // no evidence. Leaving the likelihood alone would keep the last
            // residuals in its short window over the gap, and they would
            // count again when the profile resumes (a Friday anomaly
            // alerting on Sunday).
            if s.gap_zero {
                if let Some(l) = self.likelihood.as_mut() {
                    l.update(0.0);
                }
            }
            return 0.0;
        };
        // The residual's scale is kept as the predictor's error is.
        let err = residual.abs();
        let z = if self.scored > 0 {
            err / sigma_of(self.mae, value)
        } else {
            0.0
        };
        self.mae = next_mae(self.mae, err, self.scored);
        self.scored += 1;
        let likelihood = self.likelihood.get_or_insert_with(|| {
            let (short, long) = windows;
            let short = if s.short_minutes > 0.0 && step_minutes > 0.0 {
                ((s.short_minutes / step_minutes).ceil() as usize).clamp(5, long.max(5))
            } else {
                short
            };
            AnomalyLikelihood::new(short, long, long.min(s.learn.max(10)), s.std_floor)
        });
        likelihood.update((z / s.cap).min(1.0))
    }
}

/// Slot means of previous days and the running mean of the current slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DailyProfile {
    /// Slots a day is cut into.
    slots: usize,
    /// Days of history kept per slot and kind of day.
    days: usize,
    /// Tell weekends (UTC Saturday and Sunday) from weekdays.
    weekend_split: bool,
    /// For each (kind of day, slot): the means of that slot on the last
    /// `days` days of that kind, oldest first.
    history: Vec<Vec<f64>>,
    /// The slot being accumulated.
    current: SlotMean,
}

impl DailyProfile {
    /// A profile of `slots` parts of the day remembering `days` days.
    pub fn new(slots: usize, days: usize, weekend_split: bool) -> Self {
        let slots = slots.max(1);
        DailyProfile {
            slots,
            days: days.clamp(1, MAX_DAYS),
            weekend_split,
            history: vec![Vec::new(); 2 * slots],
            current: SlotMean::default(),
        }
    }

    /// The kinds of day a slot starting at `start_ms` may belong to. The
    /// series' time zone is unknown: a slot whose UTC time is a weekday
    /// 12 hours earlier and a weekend 12 hours later (or the reverse) may
    /// be either locally (Monday 00:00-07:00 UTC is Sunday evening in the
    /// Americas), so both kinds are asked and the closer one counts.
    /// Both `false` when weekends are not told apart.
    fn kinds(&self, start_ms: i64) -> (bool, bool) {
        if self.weekend_split {
            day_kinds(start_ms)
        } else {
            (false, false)
        }
    }

    /// The median of the slot's means on previous days of one kind, once
    /// there are at least `min_days`.
    fn usual(&self, weekend: bool, slot: usize, min_days: usize) -> Option<f64> {
        let h = self.history.get(usize::from(weekend) * self.slots + slot)?;
        if h.len() < min_days.max(1) {
            return None;
        }
        let k = h.len().min(MAX_DAYS);
        let mut buf = [0.0f64; MAX_DAYS];
        buf[..k].copy_from_slice(&h[h.len() - k..]);
        let sorted = &mut buf[..k];
        sorted.sort_by(f64::total_cmp);
        Some(if k % 2 == 1 {
            sorted[k / 2]
        } else {
            0.5 * (sorted[k / 2 - 1] + sorted[k / 2])
        })
    }

    /// Adds `value` at `ts_ms`; returns its residual against the usual
    /// value of this time of day (the median of the slot's means on
    /// previous days of the same kind) once at least `min_days` such days
    /// were seen.
    pub fn observe(&mut self, ts_ms: i64, value: f64, min_days: usize) -> Option<f64> {
        let slot_ms = (DAY_MS / self.slots as i64).max(1);
        let (day, slot) = SlotMean::cell(ts_ms, self.slots);
        if let Some(((d, s), mean)) = self.current.add((day, slot), value) {
            let (before, after) = self.kinds(d * DAY_MS + s as i64 * slot_ms);
            // A slot of uncertain kind would teach one profile the
            // other's rhythm (a Friday evening rush into the weekend's).
            let cell = usize::from(before) * self.slots + s;
            if let (true, Some(h)) = (before == after, self.history.get_mut(cell)) {
                if h.len() >= self.days {
                    h.remove(0);
                }
                h.push(mean);
            }
        }
        let (before, after) = self.kinds(day * DAY_MS + slot as i64 * slot_ms);
        let r1 = value - self.usual(before, slot, min_days)?;
        if before == after {
            return Some(r1);
        }
        let r2 = value - self.usual(after, slot, min_days)?;
        Some(if r1.abs() <= r2.abs() { r1 } else { r2 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::SeriesModel;
    use vigil_sdk::testing::noise;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn the_usual_value_is_the_median_of_the_same_slot_on_previous_days() {
        let mut p = DailyProfile::new(24, 5, false);
        // Three days: hour 8 is 10, 30, 20; every other hour 0.
        for (d, v8) in [10.0, 30.0, 20.0].into_iter().enumerate() {
            for h in 0..24 {
                let v = if h == 8 { v8 } else { 0.0 };
                p.observe(d as i64 * DAY_MS + h * HOUR, v, 1);
            }
        }
        assert_eq!(p.observe(3 * DAY_MS + 8 * HOUR, 0.0, 3), Some(-20.0));
        assert_eq!(p.observe(3 * DAY_MS + 9 * HOUR, 0.0, 4), None);
    }

    #[test]
    fn weekends_have_their_own_profile() {
        let mut p = DailyProfile::new(24, 5, true);
        // 1970-01-05 was a Monday (day 4); Saturday is day 9. Hour 20
        // is a weekday's rush hour: Monday to Thursday evening.
        for d in 4..8 {
            p.observe(d * DAY_MS + 20 * HOUR, 50.0, 1);
            p.observe(d * DAY_MS + 21 * HOUR, 0.0, 1);
        }
        // Saturday evening has no weekend profile yet.
        assert_eq!(p.observe(9 * DAY_MS + 20 * HOUR, 0.0, 1), None);
        p.observe(9 * DAY_MS + 21 * HOUR, 0.0, 1);
        // The next Tuesday evening is a weekday again.
        assert_eq!(p.observe(12 * DAY_MS + 20 * HOUR, 0.0, 1), Some(-50.0));
    }

    #[test]
    fn near_the_weekend_the_closer_kind_of_day_counts() {
        let mut p = DailyProfile::new(24, 5, true);
        // Hour 2 (UTC): 50 on weekdays Tue-Fri (days 5-8), 0 on Sunday (day 10).
        for d in 5..9 {
            p.observe(d * DAY_MS + 2 * HOUR, 50.0, 1);
            p.observe(d * DAY_MS + 3 * HOUR, 0.0, 1);
        }
        p.observe(10 * DAY_MS + 2 * HOUR, 0.0, 1);
        p.observe(10 * DAY_MS + 3 * HOUR, 0.0, 1);
        // Monday 02:00 UTC may still be Sunday locally: a quiet value is
        // usual for a Sunday, so it is no news.
        assert_eq!(p.observe(11 * DAY_MS + 2 * HOUR, 0.0, 1), Some(0.0));
        // Tuesday 02:00 UTC is a weekday wherever the series is.
        p.observe(11 * DAY_MS + 3 * HOUR, 0.0, 1);
        assert_eq!(p.observe(12 * DAY_MS + 2 * HOUR, 0.0, 1), Some(-50.0));
    }

    /// 5-minute records from Monday 1970-01-05 00:00 UTC for 12 days:
    /// level 10 with noise, a rush hour around 08:00 UTC on weekdays,
    /// none on weekends nor on `quiet_day` (days since that Monday).
    fn commute(quiet_day: usize) -> Vec<(i64, f64)> {
        let step = 300_000;
        let start = 4 * DAY_MS;
        (0..12 * 288)
            .map(|i| {
                let ts = start + i as i64 * step;
                let day = i / 288;
                let hour = (i % 288) as f64 / 12.0;
                let weekday = day % 7 < 5;
                let rush = if weekday && day != quiet_day {
                    20.0 * (-((hour - 8.0) / 1.0_f64).powi(2)).exp()
                } else {
                    0.0
                };
                (ts, 10.0 + rush + noise(i))
            })
            .collect()
    }

    /// Records of day 9 (the second Wednesday) between 05:00 and 12:00
    /// UTC: (max of the daily-rhythm likelihood, any alert).
    fn morning_of(t: &Tuning, quiet_day: usize) -> (f64, bool) {
        let cfg = Config::default();
        let mut m = SeriesModel::with_tuning(&cfg, t);
        let outs: Vec<_> = commute(quiet_day)
            .into_iter()
            .map(|(ts, v)| m.update_tuned(&cfg, t, v, ts))
            .collect();
        let morning = &outs[9 * 288 + 60..9 * 288 + 144];
        (
            morning.iter().map(|o| o.likelihoods[5]).fold(0.0, f64::max),
            morning.iter().any(|o| o.alert),
        )
    }

    #[test]
    fn a_weekday_without_its_rush_hour_is_flagged_by_the_daily_rhythm() {
        // Wednesday of the second week (day 9) has no rush hour. Its
        // levels are the weekend's, so nothing else sees it but the
        // rhythm break (session 10), off here.
        let on = Tuning {
            rhythm_days: 0,
            ..Tuning::default()
        };
        let (lik, alert) = morning_of(&on, 9);
        assert!(lik >= 0.5 && alert, "likelihood {lik}, alert {alert}");
        let off = Tuning {
            seasonal_cap: 0.0,
            ..on
        };
        assert_eq!(morning_of(&off, 9), (0.0, false));
        // An ordinary Wednesday is not news.
        let (lik, alert) = morning_of(&on, 99);
        assert!(lik < 0.5 && !alert, "likelihood {lik}, alert {alert}");
    }

    #[test]
    fn residuals_before_a_weekend_gap_do_not_alert_after_it() {
        // A daily sine from Monday 1970-01-05, the same every day; on
        // Friday (day 4) 09:00-12:00 UTC it runs 10 higher. From Friday
        // 12:00 to Monday 12:00 there is no profile (the weekend's is not
        // learnt yet, and those hours may be either kind of day).
        let start = 4 * DAY_MS;
        let values: Vec<(i64, f64)> = (0..14 * 288)
            .map(|i| {
                let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
                let jump = if i / 288 == 4 && (108..144).contains(&(i % 288)) {
                    10.0
                } else {
                    0.0
                };
                (
                    start + i as i64 * 300_000,
                    10.0 + 5.0 * phase.sin() + 0.3 * noise(i) + jump,
                )
            })
            .collect();
        // Alerts on the next Monday between 12:00 and 14:00 UTC.
        let monday_alerts = |t: &Tuning| {
            let cfg = Config::default();
            let mut m = SeriesModel::with_tuning(&cfg, t);
            let outs: Vec<_> = values
                .iter()
                .map(|&(ts, v)| m.update_tuned(&cfg, t, v, ts))
                .collect();
            outs[7 * 288 + 144..7 * 288 + 168]
                .iter()
                .filter(|o| o.alert)
                .count()
        };
        assert_eq!(monday_alerts(&Tuning::default()), 0);
        // Without the zero surprise over the gap, Friday's residuals are
        // still in the short window on Monday and count again.
        let stale = Tuning {
            seasonal_gap_zero: false,
            ..Tuning::default()
        };
        assert_eq!(monday_alerts(&stale), 1);
    }
}
