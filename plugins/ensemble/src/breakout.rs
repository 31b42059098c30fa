//! Range breakouts that must add up (design 0007, session 11).
//!
//! A value beyond the seen range by `range_tolerance` of its span is a
//! range breakout. In a heavy-tailed series (counts with over-dispersion,
//! log-normal rates) a single value a little beyond a young range is
//! chance: one over-dispersed count makes a new maximum by a few percent
//! of the span and falls back at once. An anomaly either goes far beyond
//! the range or stays beyond it. So a run of values beyond the range seen
//! before it becomes a breakout once the distances beyond that range, in
//! units of its span, add up to `Tuning::breakout_area`: one value that
//! far out at once, several smaller ones when they persist. After that,
//! the run's later values are breakouts as without the rule (when they
//! pass the running range), so a ramp still counts as one incident.

use serde::{Deserialize, Serialize};

use crate::tuning::Tuning;

/// A run of values beyond the range seen before it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BeyondRun {
    /// Low end of the seen range when the run started.
    lo: f64,
    /// High end of the seen range when the run started.
    hi: f64,
    /// Sum of the run's distances beyond `lo..hi`, in units of its span.
    area: f64,
    /// The run has been a breakout.
    confirmed: bool,
}

/// Whether `value` is a range breakout of the seen range `min..max`
/// (`max > min`) with `tolerance` (the config's `range_tolerance`), when
/// breakouts must add up to `area` (0: every value beyond is one). `run`
/// is the current run beyond the range (updated); `excess` is set to the
/// value's distance beyond `min..max` in units of its span, or, where the
/// value completes a run, beyond the range the run started from.
pub fn range_breakout(
    run: &mut Option<BeyondRun>,
    value: f64,
    (min, max): (f64, f64),
    tolerance: f64,
    area: f64,
    excess: &mut f64,
) -> bool {
    let span = max - min;
    let tol = span * tolerance;
    *excess = (value - max).max(min - value) / span;
    let beyond = value > max + tol || value < min - tol;
    if area <= 0.0 {
        return beyond;
    }
    let mut r = run.unwrap_or(BeyondRun {
        lo: min,
        hi: max,
        area: 0.0,
        confirmed: false,
    });
    let span = r.hi - r.lo;
    let tol = span * tolerance;
    if !(value > r.hi + tol || value < r.lo - tol) {
        *run = None;
        return false;
    }
    let far = (value - r.hi).max(r.lo - value) / span;
    r.area += far;
    let breakout = if r.confirmed {
        beyond
    } else if r.area >= area {
        r.confirmed = true;
        *excess = far;
        true
    } else {
        false
    };
    *run = Some(r);
    breakout
}

/// Whether range breakouts are checked before the warm-up's end for the
/// `n`-th record, `since_first_ms` after the first (`Tuning::early_minutes`):
/// the warm-up is counted in records, so on an hourly series it spans
/// twelve days, and an anomaly in them went unseen.
pub fn early_breakouts(t: &Tuning, n: u64, since_first_ms: i64) -> bool {
    t.early_minutes > 0.0
        && n >= (t.early_records as u64).max(1)
        && since_first_ms as f64 >= t.early_minutes * 60_000.0
}

/// Records after an alert before a range breakout may re-arm
/// (`Tuning::breakout_rearm`), for a record step of
/// `step_minutes`: at most `rearm_minutes` of record time
/// (`Tuning::rearm_minutes`), at least `rearm_min_records`. A gap counted
/// in records alone lasts twelve times longer on an hourly series than on
/// a 5-minute one, almost as long as its cooldown.
pub fn rearm_gap(t: &Tuning, step_minutes: f64) -> u64 {
    let records = t.breakout_rearm as u64;
    if t.rearm_minutes <= 0.0 || step_minutes <= 0.0 {
        return records;
    }
    let in_time = (t.rearm_minutes / step_minutes).ceil();
    if in_time >= records as f64 {
        records
    } else {
        (in_time as u64)
            .max(t.rearm_min_records as u64)
            .min(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(run: &mut Option<BeyondRun>, v: f64, range: (f64, f64)) -> bool {
        range_breakout(run, v, range, 0.05, 0.125, &mut 0.0)
    }

    #[test]
    fn small_excursions_must_persist_and_large_ones_count_at_once() {
        // Range 0..100: 106 is 0.06 beyond, 120 is 0.2 beyond.
        let mut run = None;
        assert!(!step(&mut run, 106.0, (0.0, 100.0)), "one small step out");
        assert!(!step(&mut run, 50.0, (0.0, 106.0)), "back inside");
        assert!(run.is_none(), "the run ends inside the old range");
        // Against 0..106: 113 is 0.066 beyond, 114 0.075 more.
        assert!(!step(&mut run, 113.0, (0.0, 106.0)));
        assert!(step(&mut run, 114.0, (0.0, 113.0)), "0.066 + 0.075 ≥ 0.125");
        assert!(!step(&mut run, 115.0, (0.0, 114.0)), "the run alerted once");
        assert!(
            step(&mut run, 125.0, (0.0, 115.0)),
            "a ramp past the running range"
        );
        let mut run = None;
        assert!(step(&mut run, 120.0, (0.0, 100.0)), "0.2 at once");
    }

    #[test]
    fn the_re_arm_gap_is_capped_in_record_time() {
        let t = Tuning::default();
        assert_eq!(rearm_gap(&t, 5.0), 60, "5-minute steps keep 60 records");
        assert_eq!(rearm_gap(&t, 10.0), 60, "so do 10-minute steps");
        assert_eq!(rearm_gap(&t, 60.0), 10, "hourly: ten hours");
        assert_eq!(rearm_gap(&t, 1440.0), 5, "daily: the floor");
        assert_eq!(rearm_gap(&t, 0.0), 60, "no step known yet");
        let off = Tuning {
            rearm_minutes: 0.0,
            ..t
        };
        assert_eq!(rearm_gap(&off, 60.0), 60, "off: records only");
    }
}
