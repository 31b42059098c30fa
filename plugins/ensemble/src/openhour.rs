//! The open hour: the last 20 minutes (`Tuning::open_minutes`) against
//! the same minutes of previous days of the same kind, as soon as their
//! records arrive (design 0007, session 17 rounds 13 and 14).
//!
//! The whole peak (`peak.rs`) judges an hour only once it has closed, and
//! the rhythm break the median of the last 20 records: a weekday without
//! its rush hour was found one to three hours after the peak's time, at
//! or after the end of its labelled window. Here the mean of the last
//! `open_minutes` is compared, record by record, with the same minutes of
//! the clock on the previous days of the same kind, from their 5-minute
//! slot means. A fast view is a noisy one; this one is kept quiet by what
//! it asks of those days:
//!
//! * they must agree with each other: the distance to the nearest of them
//!   counts in the larger of the shift statistic's scale and their spread
//!   over these minutes, so where the days disagree (no rhythm, or one
//!   that wanders) nothing is news;
//! * only a *missing* excursion counts: each day's mean here must lie on
//!   the same side of that day's own level (the median of its slot means),
//!   and what counts is how much of the smallest such excursion today
//!   lacks, measured from today's ordinary level (the shift's reference
//!   median). A series whose level moved since those days (a CPU that
//!   doubled its load) has no excursion there to miss; a spike or a burst
//!   today adds to an excursion rather than removing one.

use serde::{Deserialize, Serialize};
use vigil_sdk::blocks::AnomalyLikelihood;

use crate::config::Config;
use crate::context::{day_kinds_within, SlotMean, DAY_MS};
use crate::dayshift::{DayShift, ShiftView};
use crate::profile::Residuals;
use crate::tuning::Tuning;

/// Slots of the previous days' profile: 5 minutes, the finest step most
/// metric series have.
const SLOTS: usize = 288;
/// Fewest records the likelihood averages.
const MIN_SHORT: usize = 3;

/// What the open-hour statistic is given besides the record.
#[derive(Debug, Clone, Copy)]
pub struct OpenSettings {
    /// Record time judged (the last; ms).
    pub span_ms: i64,
    /// Previous days of the same kind before it counts.
    pub min_days: usize,
    /// Distance (in the unit) of a full surprise, beyond `dead`.
    pub cap: f64,
    /// Distance (in the unit) that counts as nothing.
    pub dead: f64,
    /// Silent where the shift's recent part spans more (ms; 0: never).
    pub max_span_ms: i64,
    /// Leave out the day farthest from the others (at least 3 days).
    pub leave_out: bool,
    /// Easternmost time zone allowed for when a day's kind is decided
    /// (ms after UTC; the westernmost is UTC−12).
    pub east_ms: i64,
    /// Residuals against the previous days' profile kept (0: none).
    pub resid_keep: usize,
}

/// The previous days' 5-minute slot means, today's so far, and the
/// likelihood of the open-hour statistic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenHour {
    days: DayShift,
    /// The last raw surprise and the records it has been held for.
    held: Option<(f64, usize)>,
    /// Daily levels of previous days, computed once per day (kept in the
    /// state so a restored model scores exactly as one that ran on).
    #[serde(default)]
    levels: Vec<(i64, Option<f64>)>,
    /// Residuals against the previous days' slot means (the profile
    /// shift's, `profile.rs`).
    #[serde(default)]
    resid: Residuals,
}

impl OpenHour {
    /// Empty history of `days` days.
    pub fn new(days: usize) -> Self {
        OpenHour {
            days: DayShift::new(SLOTS, days),
            held: None,
            levels: Vec::new(),
            resid: Residuals::default(),
        }
    }

    /// The residuals against the previous days' profile so far.
    pub fn residuals(&self) -> &Residuals {
        &self.resid
    }

    /// The median of the slot means of a previous epoch `day`, cached.
    fn level(&mut self, day: i64) -> Option<f64> {
        if let Some(l) = self.levels.iter().find(|l| l.0 == day) {
            return l.1;
        }
        let l = self.days.day_level(day);
        if self.levels.len() > self.days.days() + 1 {
            self.levels.remove(0);
        }
        self.levels.push((day, l));
        l
    }

    /// Adds `value` at `ts_ms`; the raw surprise: how much of the
    /// previous days' excursion over the last `span_ms` today lacks (at
    /// most its distance to the nearest day), in the larger of the shift's
    /// scale and the days' spread, less `dead`, over `cap`. `None` before
    /// `min_days` such days have a slot mean there, where today has fewer
    /// than half its slots, where today may be either kind of day (UTC
    /// around midnight: the series' time zone is unknown; between UTC−12
    /// and UTC + `east_ms`), or where the
    /// shift's recent part spans more than `max_span_ms`.
    pub fn surprise(
        &mut self,
        ts_ms: i64,
        value: f64,
        view: Option<ShiftView>,
        p: &OpenSettings,
    ) -> Option<f64> {
        let (day, slot) = SlotMean::cell(ts_ms, SLOTS);
        let means = (1..=self.days.days() as i64).filter_map(|j| self.days.mean_at(day - j, slot));
        self.resid.push(value, means, p.min_days, p.resid_keep);
        self.days.observe(ts_ms, value);
        let v = view.filter(|v| p.max_span_ms <= 0 || v.span_ms <= p.max_span_ms)?;
        let now = day_kinds_within(ts_ms - p.span_ms / 2, p.east_ms);
        if now.0 != now.1 {
            return None;
        }
        let slot_ms = self.days.slot_ms();
        // The judged slots, ending with the open one.
        let cells: Vec<(i64, usize)> = (0..(p.span_ms / slot_ms).max(1))
            .rev()
            .map(|i| SlotMean::cell(ts_ms - i * slot_ms, SLOTS))
            .collect();
        let open = *cells.last()?;
        let mut xs: Vec<f64> = cells
            .iter()
            .filter_map(|&c| match c == open {
                true => self.days.open_mean(c),
                false => self.days.mean_at(c.0, c.1),
            })
            .collect();
        if xs.len() * 2 < cells.len() {
            return None;
        }
        let today = mean(&xs)?;
        // (mean, excursion from that day's level) of each previous day.
        let mut refs: Vec<(f64, f64)> = Vec::new();
        for j in 1..=self.days.days() as i64 {
            let kind = day_kinds_within(ts_ms - p.span_ms / 2 - j * DAY_MS, p.east_ms);
            if kind.0 != kind.1 || kind.0 != now.0 {
                continue;
            }
            xs.clear();
            xs.extend(
                cells
                    .iter()
                    .filter_map(|&(d, s)| self.days.mean_at(d - j, s)),
            );
            // A gap in that day's records leaves the slots it has.
            if let Some(m) = mean(&xs) {
                let level = self.level(open.0 - j);
                refs.push((m, level.map_or(0.0, |l| m - l)));
            }
        }
        if refs.len() < p.min_days.max(1) {
            return None;
        }
        if p.leave_out && refs.len() >= 3 {
            leave_out_farthest(&mut refs);
        }
        let lo = refs.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
        let hi = refs.iter().map(|r| r.0).fold(f64::NEG_INFINITY, f64::max);
        let near = refs
            .iter()
            .map(|r| (today - r.0).abs())
            .fold(f64::INFINITY, f64::min);
        let rise = refs.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
        let fall = refs.iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max);
        let here = today - v.reference;
        let missing = if rise > 0.0 {
            (rise - here).clamp(0.0, rise)
        } else if fall < 0.0 {
            (here - fall).clamp(0.0, -fall)
        } else {
            0.0
        };
        let unit = v.scale.max(hi - lo);
        (unit > 0.0).then(|| ((near.min(missing) / unit - p.dead).max(0.0) / p.cap).min(1.0))
    }

    /// The likelihood of the raw surprises. Where the statistic lapses
    /// (mostly a gap in the records: today has too few slots, or the
    /// previous days too few with records) the last raw surprise is heard
    /// again for up to `hold` records, so a gap does not dilute a missing
    /// peak with zeros; after that, zeros.
    pub fn score(
        &mut self,
        raw: Option<f64>,
        hold: usize,
        make: impl FnOnce() -> AnomalyLikelihood,
    ) -> f64 {
        let raw = match (raw, self.held) {
            (Some(r), _) => {
                self.held = Some((r, 0));
                Some(r)
            }
            (None, Some((r, k))) if k < hold => {
                self.held = Some((r, k + 1));
                Some(r)
            }
            _ => None,
        };
        self.days.score(raw, make)
    }
}

/// Removes the day whose mean lies farthest from the median of the days'
/// means (the upper median for an even count). One earlier anomalous day
/// should not stop the others, which agree, from judging today.
fn leave_out_farthest(refs: &mut Vec<(f64, f64)>) {
    let mut ms: Vec<f64> = refs.iter().map(|r| r.0).collect();
    ms.sort_by(f64::total_cmp);
    let Some(&med) = ms.get(ms.len() / 2) else {
        return;
    };
    let far = refs
        .iter()
        .enumerate()
        .max_by(|a, b| (a.1 .0 - med).abs().total_cmp(&(b.1 .0 - med).abs()))
        .map(|(i, _)| i);
    if let Some(i) = far {
        refs.remove(i);
    }
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// The open hour's likelihood of one record (0 where it is off). Its
/// short window averages the judged minutes (at least `MIN_SHORT`
/// records, at most the config's `short_window`); it has the whole
/// peak's dead zone, cap, learning and std floor.
pub(crate) fn open_likelihood(
    open: Option<&mut OpenHour>,
    ((cfg, t), (ts_ms, value), step_minutes, _): ((&Config, &Tuning), (i64, f64), f64, usize),
    view: Option<ShiftView>,
) -> f64 {
    let Some(oh) = open else {
        return 0.0;
    };
    let p = OpenSettings {
        span_ms: (t.open_minutes * 60_000.0) as i64,
        min_days: t.rhythm_min_days,
        cap: t.peak_cap,
        dead: t.peak_dead,
        max_span_ms: (t.rhythm_max_span_minutes * 60_000.0) as i64,
        leave_out: t.open_leave_out,
        east_ms: (t.open_east_hours * 3_600_000.0) as i64,
        resid_keep: t.profile_records,
    };
    let raw = oh.surprise(ts_ms, value, view, &p);
    let short = if step_minutes > 0.0 {
        ((t.open_minutes / step_minutes).ceil() as usize)
            .clamp(MIN_SHORT, cfg.short_window.max(MIN_SHORT))
    } else {
        MIN_SHORT
    };
    oh.score(raw, short, || {
        AnomalyLikelihood::new(short, cfg.likelihood_window, t.peak_learn, t.peak_std_floor)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SeriesModel;

    const HOUR: i64 = 3_600_000;
    const STEP: i64 = 300_000;

    /// 5-minute travel times (UTC) from Monday 1970-01-05 for 10 days:
    /// 120 with noise, rising to about 400 in a morning rush peaking at
    /// 07:30 and an evening one at 17:00 on weekdays, none on epoch day
    /// `quiet`.
    fn travel_times(quiet: i64) -> Vec<(i64, f64)> {
        (0..10 * 288)
            .map(|i| crate::tests::travel_time(i, quiet))
            .collect()
    }

    /// As `travel_times`, for a sensor at UTC−7 (its rush hours at
    /// 14:30 and 24:00 UTC, its days from 07:00 UTC), for 12 days from
    /// Monday 1970-01-05 07:00 UTC; none on its local day `quiet`.
    fn travel_times_utc_minus_7(quiet: i64) -> Vec<(i64, f64)> {
        (0..12 * 288)
            .map(|i| {
                let (local, v) = crate::tests::travel_time(i, quiet);
                (local + 7 * HOUR, v)
            })
            .collect()
    }

    /// The first alert on epoch day `day` between `from` and `to` hours.
    fn first_alert(t: &Tuning, series: &[(i64, f64)], day: i64, from: i64, to: i64) -> Option<i64> {
        let cfg = Config::default();
        let mut m = SeriesModel::with_tuning(&cfg, t);
        let (lo, hi) = (day * DAY_MS + from * HOUR, day * DAY_MS + to * HOUR);
        series
            .iter()
            .map(|&(ts, v)| (ts, m.update_tuned(&cfg, t, v, ts).alert))
            .find(|&(ts, alert)| alert && ts >= lo && ts < hi)
            .map(|(ts, _)| ts - day * DAY_MS)
    }

    #[test]
    fn a_weekday_without_its_rush_hour_is_flagged_before_the_peak_s_time() {
        // The second Wednesday (epoch day 13) has no rush hours. With the
        // open hour its morning is flagged before 07:30, the missing
        // peak's time; with only the whole peak and the rhythm break
        // (which judge closed hours and a 20-record median) not before
        // 08:00.
        let on = Tuning::default();
        let off = Tuning {
            open_minutes: 0.0,
            ..on
        };
        let quiet = travel_times(13);
        let first = first_alert(&on, &quiet, 13, 5, 12);
        assert!(
            first.is_some_and(|ms| ms < 7 * HOUR + 30 * 60_000),
            "first alert at {first:?} ms"
        );
        let late = first_alert(&off, &quiet, 13, 5, 12);
        assert!(late.is_none_or(|ms| ms >= 8 * HOUR), "{late:?}");
        // An ordinary Wednesday is not news.
        assert_eq!(first_alert(&on, &travel_times(-1), 13, 0, 24), None);
    }

    /// An open hour that has seen Tuesday and Wednesday (epoch days 5
    /// and 6) at `prev(day, hour)` every 5 minutes, and Thursday at
    /// `today` until 07:30; the raw surprise then, with the shift's
    /// reference `reference` and scale 2.
    fn raw_at_thursday_0730(
        prev: impl Fn(i64, i64) -> f64,
        today: f64,
        reference: f64,
    ) -> Option<f64> {
        raw_at_thursday_0730_after(5, false, prev, today, reference)
    }

    /// As `raw_at_thursday_0730`, with the previous days from epoch day
    /// `first` (1: the Friday before; Monday mornings are skipped, they
    /// may be Sunday in the series' time zone) and leaving the farthest
    /// day out or not.
    fn raw_at_thursday_0730_after(
        first: i64,
        leave_out: bool,
        prev: impl Fn(i64, i64) -> f64,
        today: f64,
        reference: f64,
    ) -> Option<f64> {
        let mut oh = OpenHour::new(7);
        let p = OpenSettings {
            span_ms: 30 * 60_000,
            min_days: 2,
            cap: 4.0,
            dead: 2.0,
            max_span_ms: 3 * HOUR,
            leave_out,
            east_ms: 12 * HOUR,
            resid_keep: 0,
        };
        for day in first..7 {
            for k in 0..288 {
                let ts = day * DAY_MS + k * STEP;
                oh.surprise(ts, prev(day, k / 12), None, &p);
            }
        }
        let view = ShiftView {
            recent: today,
            reference,
            scale: 2.0,
            span_ms: HOUR,
        };
        let mut raw = None;
        for k in 0..=90 {
            raw = oh.surprise(7 * DAY_MS + k * STEP, today, Some(view), &p);
        }
        raw
    }

    #[test]
    fn only_an_excursion_the_previous_days_agree_on_and_today_lacks_counts() {
        // Both days rose by 40 from their level of 10 at 07:00-08:00;
        // Thursday stays at 10: the whole excursion is missing, far past
        // the cap.
        let rush = |_: i64, h: i64| if h == 7 { 50.0 } else { 10.0 };
        assert_eq!(raw_at_thursday_0730(rush, 10.0, 10.0), Some(1.0));
        // Thursday's own rush is no news.
        assert_eq!(raw_at_thursday_0730(rush, 50.0, 10.0), Some(0.0));
        // Days that disagree (rises of 40 and 20): their spread of 20 is
        // the unit, and the missing 20 is within the dead zone.
        let unlike = |d: i64, h: i64| match (d, h) {
            (5, 7) => 50.0,
            (6, 7) => 30.0,
            _ => 10.0,
        };
        assert_eq!(raw_at_thursday_0730(unlike, 10.0, 10.0), Some(0.0));
        // A level that moved since (a CPU busier from Thursday on, 6 ->
        // 14) is no missing excursion: the days were at their own level.
        assert_eq!(raw_at_thursday_0730(|_, _| 6.0, 14.0, 14.0), Some(0.0));
    }

    #[test]
    fn twenty_minutes_flag_a_missing_morning_sooner_than_half_an_hour() {
        // The rush hour's ramp fills the last 20 minutes before it fills
        // the last 30: the default (20) flags the quiet Wednesday by
        // 06:50, half an hour at 07:05 (design 0007, session 17 round 14).
        let on = Tuning::default();
        let half = Tuning {
            open_minutes: 30.0,
            ..on
        };
        let quiet = travel_times(13);
        let first = first_alert(&on, &quiet, 13, 5, 12);
        assert!(
            first.is_some_and(|ms| ms <= 6 * HOUR + 50 * 60_000),
            "first alert at {first:?} ms"
        );
        let later = first_alert(&half, &quiet, 13, 5, 12);
        assert!(later.is_some_and(|ms| ms >= 7 * HOUR), "{later:?}");
    }

    #[test]
    fn a_day_after_an_anomalous_day_is_judged_by_the_days_that_agree() {
        // Friday, Tuesday and Wednesday are the previous weekdays judged
        // (Monday morning may be Sunday in another time zone). Friday and
        // Tuesday rose by 40 at 07:00-08:00; Wednesday (epoch day 6) had
        // no rush hour. Thursday has none either.
        let rush = |d: i64, h: i64| if h == 7 && d != 6 { 50.0 } else { 10.0 };
        // All three days disagree (their spread of 40 is the unit, the
        // days are not all above their level): nothing.
        assert_eq!(
            raw_at_thursday_0730_after(1, false, rush, 10.0, 10.0),
            Some(0.0)
        );
        // Without Wednesday, Friday and Tuesday agree: the whole
        // excursion is missing.
        assert_eq!(
            raw_at_thursday_0730_after(1, true, rush, 10.0, 10.0),
            Some(1.0)
        );
        // Thursday's own rush is still no news.
        assert_eq!(
            raw_at_thursday_0730_after(1, true, rush, 50.0, 10.0),
            Some(0.0)
        );
        // Two days only (Tuesday and Wednesday): none is left out, they
        // disagree.
        assert_eq!(
            raw_at_thursday_0730_after(5, true, rush, 10.0, 10.0),
            Some(0.0)
        );
    }

    #[test]
    fn a_friday_without_rush_hours_west_of_utc_is_judged() {
        // The second Friday (local epoch day 15) of a UTC−7 sensor has no
        // rush hours. Its morning (13:00-15:30 UTC) is Saturday from
        // UTC+10 on: allowing for zones up to UTC+12 kept the open hour
        // (and the whole peak) silent there, and nothing was raised
        // between 12:00 and 20:00 UTC; allowing up to UTC+9 (the
        // default) the missing morning is flagged at 13:45 UTC, 06:45
        // local, before the peak's time (design 0007, session 18 round
        // 16).
        let on = Tuning::default();
        let wide = Tuning {
            open_east_hours: 12.0,
            ..on
        };
        let quiet = travel_times_utc_minus_7(15);
        let first = first_alert(&on, &quiet, 15, 12, 20);
        assert!(
            first.is_some_and(|ms| ms < 14 * HOUR + 30 * 60_000),
            "first alert at {first:?} ms"
        );
        assert_eq!(first_alert(&wide, &quiet, 15, 12, 20), None);
        // An ordinary Friday is not news.
        let usual = travel_times_utc_minus_7(-1);
        assert_eq!(first_alert(&on, &usual, 15, 0, 24), None);
    }

    #[test]
    fn leaving_out_removes_the_day_farthest_from_the_median() {
        let mut refs = vec![(50.0, 40.0), (10.0, 0.0), (48.0, 38.0), (52.0, 42.0)];
        leave_out_farthest(&mut refs);
        assert_eq!(refs, vec![(50.0, 40.0), (48.0, 38.0), (52.0, 42.0)]);
        let mut none: Vec<(f64, f64)> = Vec::new();
        leave_out_farthest(&mut none);
        assert!(none.is_empty());
    }
}
