//! The same hour's residual of a coarse series, accumulated (design 0007,
//! session 21 round 28).
//!
//! A daily rhythm that swings harder than usual puts each hour's record
//! a little further from that hour's usual value, in the direction of the
//! usual shape: peaks higher, troughs lower. The daily swing (`swing.rs`)
//! sees this only once a day's harmonic has filled with the harder hours,
//! and the half-day gain is a fitted ratio as noisy as the swing it
//! measures. Here each record is judged as it comes: its logarithm minus
//! the median of the same hour on the previous days (the residual), less
//! the residual's mean over the last day (the level's drift), times the
//! usual shape at that hour over the shape's size. Noise that does not
//! follow the shape averages out; a harder swing adds up hour after hour.
//! That product is taken in its own deviations and summed in a one-sided
//! CUSUM with a slack, whose value (capped) is the raw surprise of a
//! likelihood of its own.
//!
//! The accumulator starts again after a raised alert (the incident is
//! told; what follows is judged afresh) and at a dropout (a record under
//! `Tuning::hour_cusum_drop`-th of its hour's usual: an outage, not a
//! swing), and a dropout's records are left out of every reference.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use vigil_sdk::blocks::AnomalyLikelihood;

use crate::context::DAY_MS;
use crate::median::median_of;

const HOUR_MS: i64 = 3_600_000;
/// Hour-of-day bins.
const HOURS: usize = 24;
/// Previous days the same hour's usual value is the median of.
const DAYS: i64 = 7;
/// Fewest previous days in a bin for its median.
const MIN_DAYS: usize = 5;
/// Fewest bins with a median for a usual shape (half a day).
const MIN_BINS: usize = 12;
/// Shaped residuals kept for their own mean and deviation (25 days of
/// an hourly series; 300 lost split B, a calm fortnight of a smooth
/// series made an ordinary warm day look new).
const HIST: usize = 600;
/// Records per block of the shaped residuals' long-run deviation (a
/// quarter of an hourly day).
const BLOCK: usize = 6;
/// Fewest shaped residuals before the accumulator runs.
const MIN_HIST: usize = 48;
/// Most residuals of the last day kept (a burst of dense records must
/// not grow the state without bound).
const MAX_RECENT: usize = 1440;
/// Floor of the shaped residuals' deviation.
const MIN_SD: f64 = 1e-3;

/// Per-series state of the same-hour accumulator.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HourCusum {
    /// Per hour of the day, the days' (day number, sum of logarithms,
    /// records), oldest first, the current day included.
    bins: Vec<VecDeque<(i64, f64, u32)>>,
    /// Residuals of the last day: (timestamp, residual).
    recent: VecDeque<(i64, f64)>,
    /// The last `HIST` shaped residuals.
    hist: VecDeque<f64>,
    /// The one-sided CUSUM.
    acc: f64,
    /// A value of 0 or below was heard: no logarithm, off for good.
    off: bool,
    /// Created with the first raw surprise.
    likelihood: Option<AnomalyLikelihood>,
}

impl HourCusum {
    /// An alert was raised: the accumulator starts again.
    pub(crate) fn alert_raised(&mut self) {
        self.acc = 0.0;
    }

    /// The likelihood, created on the first raw surprise by `make`.
    pub(crate) fn likelihood_mut(&mut self) -> &mut Option<AnomalyLikelihood> {
        &mut self.likelihood
    }

    /// The usual value of each hour: the median of its means on the
    /// previous `DAYS` days before `day` (`None` with fewer than
    /// `MIN_DAYS`).
    fn usual(&self, day: i64) -> Vec<Option<f64>> {
        self.bins
            .iter()
            .map(|b| {
                let mut v: Vec<f64> = b
                    .iter()
                    .filter(|e| e.0 < day && e.0 >= day - DAYS && e.2 > 0)
                    .map(|e| e.1 / e.2 as f64)
                    .collect();
                if v.len() < MIN_DAYS {
                    return None;
                }
                median_of(&mut v)
            })
            .collect()
    }

    /// Adds `x` to `hour`'s bin of `day` (`update` has sized the bins).
    fn add_to_bin(&mut self, hour: usize, day: i64, x: f64) {
        let b = &mut self.bins[hour];
        match b.back_mut() {
            Some(e) if e.0 == day => {
                e.1 += x;
                e.2 += 1;
            }
            _ => b.push_back((day, x, 1)),
        }
        while b.front().is_some_and(|e| e.0 < day - DAYS) {
            b.pop_front();
        }
    }

    /// Adds `value` at `ts_ms`; the accumulator after it (`None` before
    /// there is a usual shape and a history of shaped residuals, and on a
    /// series that was ever 0 or below).
    /// Where not `shaped` (no agreed daily shape) the references still
    /// learn but the accumulator stays at 0.
    pub(crate) fn update(
        &mut self,
        ts_ms: i64,
        value: f64,
        (slack, drop): (f64, f64),
        shaped: bool,
    ) -> Option<f64> {
        if self.off || value <= 0.0 || !value.is_finite() {
            if !self.off {
                *self = HourCusum {
                    off: true,
                    ..HourCusum::default()
                };
            }
            return None;
        }
        let x = value.ln();
        let day = ts_ms.div_euclid(DAY_MS);
        let hour = ((ts_ms.rem_euclid(DAY_MS) / HOUR_MS) as usize).min(HOURS - 1);
        if self.bins.len() != HOURS {
            self.bins = vec![VecDeque::new(); HOURS];
        }
        let usual = self.usual(day);
        let known: Vec<f64> = usual.iter().flatten().copied().collect();
        let Some(here) = usual[hour].filter(|_| known.len() >= MIN_BINS) else {
            self.add_to_bin(hour, day, x);
            return None;
        };
        let r = x - here;
        if drop > 1.0 && r < -drop.ln() {
            // A dropout: not a swing, and no reference for later records.
            self.acc = 0.0;
            return Some(0.0);
        }
        let mean_shape = known.iter().sum::<f64>() / known.len() as f64;
        let size = (known.iter().map(|m| (m - mean_shape).powi(2)).sum::<f64>()
            / known.len() as f64)
            .sqrt();
        while self
            .recent
            .front()
            .is_some_and(|e| e.0 <= ts_ms - DAY_MS || self.recent.len() >= MAX_RECENT)
        {
            self.recent.pop_front();
        }
        let drift = if self.recent.is_empty() {
            0.0
        } else {
            self.recent.iter().map(|e| e.1).sum::<f64>() / self.recent.len() as f64
        };
        self.recent.push_back((ts_ms, r));
        self.add_to_bin(hour, day, x);
        if size <= 0.0 {
            return None;
        }
        let u = (r - drift) * (here - mean_shape) / size;
        let out = if self.hist.len() >= MIN_HIST {
            let n = self.hist.len() as f64;
            let mu = self.hist.iter().sum::<f64>() / n;
            let sd = (self.hist.iter().map(|h| (h - mu).powi(2)).sum::<f64>() / n)
                .sqrt()
                .max(MIN_SD)
                .max(long_run_sd(&self.hist, mu, BLOCK));
            self.acc = if shaped {
                (self.acc + (u - mu) / sd - slack).max(0.0)
            } else {
                0.0
            };
            Some(self.acc)
        } else {
            None
        };
        self.hist.push_back(u);
        while self.hist.len() > HIST {
            self.hist.pop_front();
        }
        out
    }
}

/// The deviation of `hist` (of mean `mu`) over the long run: of the means
/// of consecutive blocks of `block` records, times √block (0 with
/// `block` under 2 or fewer than 8 blocks). Residuals that come in runs,
/// as a smooth series' do, add up in a CUSUM without news; in the long
/// run's deviation they count as the few independent values they are.
fn long_run_sd(hist: &VecDeque<f64>, mu: f64, block: usize) -> f64 {
    if block < 2 || hist.len() < 8 * block {
        return 0.0;
    }
    let blocks = hist.len() / block;
    let skip = hist.len() - blocks * block;
    let mut sq = 0.0;
    let mut sum = 0.0;
    let mut k = 0;
    let mut i = 0;
    for &h in hist.iter().skip(skip) {
        sum += h;
        i += 1;
        if i == block {
            let m = sum / block as f64 - mu;
            sq += m * m;
            sum = 0.0;
            i = 0;
            k += 1;
        }
    }
    (sq / k as f64 * block as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_sdk::testing::noise;

    /// An hourly rate with a daily swing of 20 % under log-normal noise,
    /// three times as hard from day 20 when `tripled`; a dropout to 5 %
    /// for six hours on day 15 when `dropout`.
    fn rate(i: usize, tripled: bool, dropout: bool) -> f64 {
        let amp = if tripled && i >= 20 * 24 { 0.6 } else { 0.2 };
        let theta = std::f64::consts::TAU * (i % 24) as f64 / 24.0;
        let out = if dropout && (15 * 24 + 3..15 * 24 + 9).contains(&i) {
            0.05
        } else {
            1.0
        };
        10.0 * (0.1 * noise(i)).exp() * (1.0 + amp * theta.cos()) * out
    }

    fn run(tripled: bool, dropout: bool, to: usize) -> Vec<Option<f64>> {
        let mut h = HourCusum::default();
        (0..to)
            .map(|i| {
                h.update(
                    i as i64 * HOUR_MS,
                    rate(i, tripled, dropout),
                    (1.5, 10.0),
                    true,
                )
            })
            .collect()
    }

    #[test]
    fn a_harder_swing_adds_up_within_hours_and_an_ordinary_one_does_not() {
        let ord = run(false, false, 22 * 24);
        assert!(ord[..7 * 24].iter().all(Option::is_none));
        let quiet = ord.iter().flatten().fold(0.0, |a: f64, &b| a.max(b));
        let hard = run(true, false, 22 * 24);
        let within = hard[20 * 24..20 * 24 + 12]
            .iter()
            .flatten()
            .fold(0.0, |a: f64, &b| a.max(b));
        assert!(quiet < 8.0, "ordinary days reach {quiet}");
        assert!(within > 2.0 * quiet, "tripled swing {within} vs {quiet}");
    }

    #[test]
    fn a_dropout_resets_the_accumulator_and_leaves_no_trace() {
        let with = run(false, true, 19 * 24);
        let without = run(false, false, 19 * 24);
        let during = &with[15 * 24 + 3..15 * 24 + 9];
        assert!(during.iter().all(|r| *r == Some(0.0)), "{during:?}");
        let after = |v: &[Option<f64>]| {
            v[15 * 24 + 9..]
                .iter()
                .flatten()
                .fold(0.0, |a: f64, &b| a.max(b))
        };
        assert!(
            after(&with) <= after(&without) + 3.0,
            "after the dropout {} vs {}",
            after(&with),
            after(&without)
        );
    }

    #[test]
    fn a_value_of_zero_ends_it_for_good() {
        let mut h = HourCusum::default();
        for i in 0..10 * 24 {
            h.update(
                i * HOUR_MS,
                rate(i as usize, false, false),
                (1.5, 10.0),
                true,
            );
        }
        assert_eq!(h.update(10 * 24 * HOUR_MS, 0.0, (1.5, 10.0), true), None);
        assert!(h.off && h.bins.is_empty() && h.hist.is_empty());
        assert_eq!(
            h.update(10 * 24 * HOUR_MS + HOUR_MS, 5.0, (1.5, 10.0), true),
            None
        );
    }
}

#[cfg(test)]
mod model_tests {
    use crate::tests::{hourly_swing, swing_likelihoods};
    use crate::tuning::Tuning;

    /// The harder swing's first hour (day 20, 00:00 UTC).
    const ONSET: usize = 20 * 24;

    /// A daily swing of 20 %, three times as hard from `ONSET` when
    /// `harder`.
    fn rate(harder: bool) -> Vec<f64> {
        let hard = if harder { 0.6 } else { 0.2 };
        hourly_swing(0.2, hard, ONSET..30 * 24)
    }

    #[test]
    fn a_harder_swing_is_seen_within_half_a_day_by_the_same_hour_accumulator() {
        // Without the accumulator the swing likelihood crosses 0.5 about
        // 16 hours in (the day's harmonic must fill); with it, a few
        // hours in, while an ordinary rate stays below the threshold.
        let with = Tuning::default();
        let without = Tuning {
            hour_cusum_cap: 0.0,
            ..Tuning::default()
        };
        let max = |v: &[f64]| v.iter().fold(0.0, |a: f64, &b| a.max(b));
        let day = ONSET..ONSET + 12;
        let on = swing_likelihoods(&with, &rate(true));
        let old = swing_likelihoods(&without, &rate(true));
        assert!(
            max(&on[day.clone()]) >= 0.5,
            "with the accumulator {}",
            max(&on[day.clone()])
        );
        assert!(max(&old[day.clone()]) < 0.5, "without {}", max(&old[day]));
        let quiet = max(&swing_likelihoods(&with, &rate(false))[300..]);
        assert!(quiet < 0.5, "ordinary rate: swing likelihood {quiet}");
    }
}
