//! The young range's burst rule (design 0007, session 20, round 25).

use super::*;
use crate::model::Kind;

/// A level of 100 with bell-shaped noise (a sum of three, so its range
/// since the start stands well beyond its 99th percentile); with `bursty`, three records at +200 every 40
/// records (news-like bursts the labels would not mark). Day 4 (past the
/// 3-day warm-up, a range seen for under 7 days): one value 20 % of the
/// seen span beyond the seen maximum, then back.
fn young_breakout(bursty: bool) -> (Vec<f64>, usize) {
    let mut values: Vec<f64> = (0..6 * DAY)
        .map(|i| {
            let burst = if bursty && i % 40 < 3 { 200.0 } else { 0.0 };
            100.0 + 2.0 * (noise(i) + noise(7 * i + 3) + noise(13 * i + 5)) + burst
        })
        .collect();
    let at = 4 * DAY + 17;
    let seen = &values[..at];
    let hi = seen.iter().copied().fold(f64::MIN, f64::max);
    let lo = seen.iter().copied().fold(f64::MAX, f64::min);
    values[at] = hi + 0.2 * (hi - lo);
    (values, at)
}

fn breakout_at(t: &Tuning, values: &[f64], at: usize) -> bool {
    alerts_of(t, values)
        .iter()
        .any(|(i, o)| *i == at && o.kind == Kind::RangeBreakout)
}

#[test]
fn a_young_range_of_a_bursty_series_needs_a_bigger_breakout_than_a_calm_one() {
    let (bursty, at) = young_breakout(true);
    assert!(
        !breakout_at(&Tuning::default(), &bursty, at),
        "an ordinary burst of a bursty series broke out of its young range"
    );
    // The rule is what holds it back: without it the same value alerts.
    let off = Tuning {
        young_burst_minutes: 0.0,
        ..Tuning::default()
    };
    assert!(breakout_at(&off, &bursty, at));

    // On a calm series the same relative step is beyond anything seen.
    let (calm, at) = young_breakout(false);
    assert!(breakout_at(&Tuning::default(), &calm, at));
}
