use super::*;
use crate::config::Config;
use crate::context::DAY_MS;
use crate::model::SeriesModel;

const HOUR: i64 = 3_600_000;

/// 5-minute travel times (UTC) from Monday 1970-01-05 for 8 days: 120
/// with noise, rising to about 400 in a morning rush peaking at 07:30 and
/// an evening one at 17:00 on weekdays; from `at` on the sensor reads
/// 1.35 times as much (a recalibration, inside the range the rush hours
/// span).
fn travel_times(at: i64) -> Vec<(i64, f64)> {
    (0..8 * 288)
        .map(|i| {
            let (ts, v) = crate::tests::travel_time(i, -1);
            (ts, if ts >= at { 1.35 * v } else { v })
        })
        .collect()
}

/// The alerts between `from` and `to` (ms).
fn alerts(t: &Tuning, series: &[(i64, f64)], from: i64, to: i64) -> usize {
    let cfg = Config::default();
    let mut m = SeriesModel::with_tuning(&cfg, t);
    series
        .iter()
        .map(|&(ts, v)| (ts, m.update_tuned(&cfg, t, v, ts).alert))
        .filter(|&(ts, alert)| alert && ts >= from && ts < to)
        .count()
}

#[test]
fn a_travel_time_rise_inside_the_rush_hours_range_is_flagged() {
    // Thursday (epoch day 7) 21:00: travel times rise to 1.35x for good.
    // The night after it is flagged within six hours with the profile
    // shift, and not without it: the shift's scale holds the rush hours.
    let at = 7 * DAY_MS + 21 * HOUR;
    let on = Tuning::default();
    let off = Tuning {
        profile_records: 0,
        ..on
    };
    let risen = travel_times(at);
    assert!(alerts(&on, &risen, at, at + 6 * HOUR) >= 1);
    assert_eq!(alerts(&off, &risen, at, at + 6 * HOUR), 0);
    // The same days without the rise raise nothing.
    assert_eq!(alerts(&on, &travel_times(i64::MAX), at, at + 6 * HOUR), 0);
}

#[test]
fn residuals_are_to_the_nearest_day_and_their_unit_needs_half_a_day() {
    let mut r = Residuals::default();
    // Too few days: nothing.
    r.push(10.0, [9.0].into_iter(), 2, 4);
    assert_eq!(r.recent(1), None);
    // The nearest of 12 and 7 is 12: residual -2.
    r.push(10.0, [12.0, 7.0, f64::NAN].into_iter(), 2, 4);
    assert_eq!(r.recent(1), Some(-2.0));
    // One residual is half of 2, not of 4.
    assert_eq!(r.unit(2), Some(1.4826 * 2.0));
    assert_eq!(r.unit(4), None);
    for _ in 0..5 {
        r.push(10.0, [9.0, 13.0].into_iter(), 2, 4);
    }
    // Only the last 4 are kept.
    assert_eq!(r.recent(4), Some(1.0));
    assert_eq!(r.recent(5), None);
    assert_eq!(r.unit(4), Some(1.4826));
}
