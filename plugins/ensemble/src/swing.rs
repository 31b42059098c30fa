//! The daily swing of a coarse series (design 0007, session 15 round 9).
//!
//! A daily rhythm that swings three times as hard as before (the
//! realAdExchange kind of "changed periodicity") moves neither the level
//! nor the range, and the scale statistic (`scale.rs`) sees it only
//! through the median predictor's errors, which on an hourly series with
//! log-normal noise grow little and late. The rhythm break and the whole
//! peak judge a 5-minute series hour by hour, but are silent on coarse
//! series, whose hours are single noisy records. Here the whole day is
//! judged at once: the amplitude of the daily harmonic (the first Fourier
//! coefficient at a period of one day) of the records of the last 24
//! hours, relative to their mean, against the median of the same
//! amplitude taken once a day on the previous days. A harmonic over a
//! day's records averages their noise, so a swing that grows from 0.2 to
//! 0.6 of the level stands out within a day while single records do not.
//!
//! On a series that has only ever been positive the harmonic is taken
//! of the values' logarithm (`Tuning::swing_log`, session 15 round 10):
//! a positive rate swings by a factor and its noise is multiplicative
//! (log-normal), so a single record several times the level (a spike
//! of news or a fat tail) weighs in the logarithm as a factor, not as
//! its size, and no longer drowns a day's swing.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use vigil_sdk::blocks::AnomalyLikelihood;

use crate::config::Config;
use crate::context::DAY_MS;
use crate::hourcusum::HourCusum;
use crate::median::median_of;
use crate::model::shift_like_likelihood;
use crate::shift::scored_lazily;
use crate::tuning::Tuning;

/// Most records of the last day kept (a series much denser than its mean
/// step in one stretch must not grow the state without bound).
const MAX_DAY_RECORDS: usize = 1440;
/// Fewest records in the last day for an amplitude (half a day of an
/// hourly series).
const MIN_DAY_RECORDS: usize = 12;
/// Fewest previous daily amplitudes for a reference.
const MIN_PAST_DAYS: usize = 3;
/// Fewest records in the span of the half-day gain (half of 12 hours of
/// an hourly series).
const MIN_GAIN_RECORDS: usize = 6;
/// How far the previous days must agree on their daily shape for the
/// half-day gain: the size of their mean harmonic over their mean size.
/// Days of noise around no rhythm have a mean of about 1/√7 of their size
/// (7 days), a steady rhythm about 1; at 0.5 and 0.7 split B lost (an
/// indoor temperature's weak, wandering daily cycle raised false
/// positives; design 0007, session 19 round 18).
const MIN_GAIN_AGREEMENT: f64 = 0.85;

/// Per-series state of the daily swing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Swing {
    /// The last day's records: (timestamp, value, cos, sin).
    day: VecDeque<(i64, f64, f64, f64)>,
    /// Sums of value, cos, sin, value·cos, value·sin over `day`.
    sums: [f64; 5],
    /// Daily amplitudes of the previous days, oldest first.
    past: VecDeque<f64>,
    /// When the last amplitude was kept.
    kept_ts: Option<i64>,
    /// Timestamp of the first record heard.
    first_ts: Option<i64>,
    /// Created with the first raw surprise (a learning period of zeros
    /// would make the first ordinary swings look new).
    likelihood: Option<AnomalyLikelihood>,
    /// A value of 0 or below was heard: the swing is taken of the values
    /// themselves from then on (`Tuning::swing_log`).
    #[serde(default)]
    linear: bool,
    /// Daily harmonics (cos and sin parts) of the previous days, kept
    /// with `past`, oldest first: their mean is the series' usual daily
    /// shape, in phase (`Swing::gain`).
    #[serde(default)]
    past_harmonics: VecDeque<(f64, f64)>,
    /// The half-day gain's own likelihood, created with its first raw
    /// surprise.
    #[serde(default)]
    gain_likelihood: Option<AnomalyLikelihood>,
    /// The half-day gain's raw surprise of the current record: set by
    /// `surprise`, read by `swing_likelihood` in the same call (not state;
    /// it keeps `surprise`'s answer the day's amplitude alone).
    #[serde(skip)]
    gain_raw: Option<f64>,
    /// The same hour's residual, accumulated (`Tuning::hour_cusum_cap`).
    #[serde(default)]
    hour: Option<HourCusum>,
}

impl Swing {
    /// An alert was raised: the same-hour accumulator starts again.
    pub(crate) fn alert_raised(&mut self) {
        if let Some(h) = self.hour.as_mut() {
            h.alert_raised();
        }
    }

    /// The amplitude of the daily harmonic of the last day's records over
    /// their mean (of their logarithms as it is, when `log`: already
    /// relative); `None` with fewer than `MIN_DAY_RECORDS` records or,
    /// without `log`, a mean not above 0 (the swing relative to the level
    /// needs a positive level).
    fn amplitude(&self, log: bool) -> Option<f64> {
        let n = self.day.len() as f64;
        let [sx, sc, ss, sxc, sxs] = self.sums;
        let m = sx / n;
        if self.day.len() < MIN_DAY_RECORDS || (!log && m <= 0.0) {
            return None;
        }
        // Σ (x − m)·e^{iθ} over the day, without a second pass.
        let a = (sxc - m * sc).hypot(sxs - m * ss) * 2.0 / n;
        Some(if log { a } else { a / m })
    }

    /// The last day's harmonic, (cos, sin) parts of the deviations from
    /// the day's mean (`None` as `amplitude`, or without records).
    fn harmonic(&self) -> Option<(f64, f64)> {
        let n = self.day.len() as f64;
        if self.day.is_empty() {
            return None;
        }
        let [sx, sc, ss, sxc, sxs] = self.sums;
        let m = sx / n;
        Some(((sxc - m * sc) * 2.0 / n, (sxs - m * ss) * 2.0 / n))
    }

    /// The previous days' mean harmonic, where there are at least
    /// `MIN_PAST_DAYS` of them and they agree on a shape: its size is at
    /// least `MIN_GAIN_AGREEMENT` of their mean size (days of noise around
    /// no rhythm do not agree, and have no usual shape to compare with).
    fn usual_shape(&self) -> Option<(f64, f64)> {
        let k = self.past_harmonics.len();
        if k < MIN_PAST_DAYS {
            return None;
        }
        let (hc, hs) = self.past_harmonics.iter().fold((0.0, 0.0), |a, h| {
            (a.0 + h.0 / k as f64, a.1 + h.1 / k as f64)
        });
        let size = self
            .past_harmonics
            .iter()
            .map(|h| h.0.hypot(h.1))
            .sum::<f64>()
            / k as f64;
        (size > 0.0 && hc.hypot(hs) >= MIN_GAIN_AGREEMENT * size).then_some((hc, hs))
    }

    /// How much harder than usual the last `hours` swing: the least-squares
    /// gain of the usual daily shape (the mean of the previous days'
    /// harmonics, in phase) fitted with a level to the records of the last
    /// `hours` (1: as usual, 3: three times as hard). A whole day's
    /// amplitude grows by a third of a tripling in the first eight hours;
    /// the gain over half a day has the whole tripling by then, and
    /// being in phase it ignores noise that does not follow the usual
    /// shape. `None` without at least `MIN_PAST_DAYS` previous harmonics,
    /// where their mean is under `MIN_GAIN_AGREEMENT` of their mean size
    /// (the days do not agree on a shape: no usual rhythm to compare
    /// with), or with fewer than `MIN_GAIN_RECORDS` records in the span.
    fn gain(&self, ts_ms: i64, hours: f64) -> Option<f64> {
        if hours <= 0.0 {
            return None;
        }
        let (hc, hs) = self.usual_shape()?;
        let from = ts_ms - (hours * 3_600_000.0) as i64;
        // The usual shape at each record: Re(H · e^{-iθ}).
        let pts: Vec<(f64, f64)> = self
            .day
            .iter()
            .filter(|r| r.0 > from)
            .map(|&(_, x, c, s)| (x, hc * c + hs * s))
            .collect();
        if pts.len() < MIN_GAIN_RECORDS {
            return None;
        }
        let n = pts.len() as f64;
        let (mx, mh) = pts
            .iter()
            .fold((0.0, 0.0), |a, p| (a.0 + p.0 / n, a.1 + p.1 / n));
        let (sxy, shh) = pts.iter().fold((0.0, 0.0), |a, p| {
            (a.0 + (p.0 - mx) * (p.1 - mh), a.1 + (p.1 - mh) * (p.1 - mh))
        });
        (shh > 0.0).then(|| sxy / shh)
    }

    /// Whether `value` enters as its logarithm (`log` asked and the series
    /// only ever positive). The first value of 0 or below ends that for
    /// good and restarts the swing: amplitudes of logarithms cannot be
    /// compared with those of values.
    fn in_log(&mut self, value: f64, log: bool) -> bool {
        if !log || self.linear {
            return false;
        }
        if value > 0.0 {
            return true;
        }
        *self = Swing {
            linear: true,
            likelihood: self.likelihood.take(),
            hour: self.hour.take(),
            ..Swing::default()
        };
        false
    }

    /// Adds `value` at `ts_ms`; the raw surprise: the growth of the last
    /// day's relative amplitude over the median of the last `days` daily
    /// ones, `ln(ratio) / ln(cap)` (growth only, at most 1). `None` in the
    /// first day and before `MIN_PAST_DAYS` daily amplitudes exist. With
    /// `log`, of the logarithms while the series has been positive.
    fn surprise(
        &mut self,
        ts_ms: i64,
        value: f64,
        days: usize,
        cap: f64,
        log: bool,
        gain_hours: f64,
    ) -> Option<f64> {
        let log = self.in_log(value, log);
        let value = if log { value.ln() } else { value };
        let theta = std::f64::consts::TAU * ts_ms.rem_euclid(DAY_MS) as f64 / DAY_MS as f64;
        let (c, s) = (theta.cos(), theta.sin());
        self.day.push_back((ts_ms, value, c, s));
        for (k, d) in [value, c, s, value * c, value * s].into_iter().enumerate() {
            self.sums[k] += d;
        }
        while self
            .day
            .front()
            .is_some_and(|r| r.0 <= ts_ms - DAY_MS || self.day.len() > MAX_DAY_RECORDS)
        {
            if let Some((_, x, c, s)) = self.day.pop_front() {
                for (k, d) in [x, c, s, x * c, x * s].into_iter().enumerate() {
                    self.sums[k] -= d;
                }
            }
        }
        let first = *self.first_ts.get_or_insert(ts_ms);
        if ts_ms - first < DAY_MS {
            return None;
        }
        let now = self.amplitude(log)?;
        let gain = self.gain(ts_ms, gain_hours);
        let mut past: Vec<f64> = self.past.iter().copied().collect();
        let reference = if past.len() >= MIN_PAST_DAYS {
            median_of(&mut past)
        } else {
            None
        };
        if self.kept_ts.is_none_or(|k| ts_ms - k >= DAY_MS) {
            self.kept_ts = Some(ts_ms);
            self.past.push_back(now);
            while self.past.len() > days.max(1) {
                self.past.pop_front();
            }
            if let Some(h) = self.harmonic() {
                self.past_harmonics.push_back(h);
                while self.past_harmonics.len() > days.max(1) {
                    self.past_harmonics.pop_front();
                }
            }
        }
        let r = reference?;
        let day = if r > 0.0 && now > r {
            ((now / r).ln() / cap.ln()).min(1.0)
        } else {
            0.0
        };
        // The gain counts only while the day's amplitude is above its
        // usual size as well (an in-phase swing that grows does both).
        self.gain_raw = gain.map(|g| {
            if g > 1.0 && day > 0.0 {
                (g.ln() / cap.ln()).min(1.0)
            } else {
                0.0
            }
        });
        Some(day)
    }
}

/// The daily swing's likelihood: 0 when it is off and on series whose
/// mean record step so far is below `Tuning::swing_min_step` minutes
/// (those have the rhythm break and the whole peak).
pub(crate) fn swing_likelihood(
    swing: Option<&mut Swing>,
    ((cfg, t), (ts_ms, value), step_minutes, short): ((&Config, &Tuning), (i64, f64), f64, usize),
) -> f64 {
    let Some(sw) = swing else {
        return 0.0;
    };
    if step_minutes < t.swing_min_step {
        return 0.0;
    }
    sw.gain_raw = None;
    let raw = sw.surprise(
        ts_ms,
        value,
        t.swing_days,
        t.swing_cap,
        t.swing_log,
        t.swing_gain_hours,
    );
    let hour = if t.hour_cusum_cap > 0.0 {
        // Only where the previous days agree on a daily shape, as the
        // half-day gain: without one, a wandering rhythm's changes are news.
        let shaped = sw.usual_shape().is_some();
        let h = sw.hour.get_or_insert_with(HourCusum::default);
        let hraw = h
            .update(
                ts_ms,
                value,
                (t.hour_cusum_slack, t.hour_cusum_drop),
                shaped,
            )
            .map(|a| (a / t.hour_cusum_cap).min(1.0));
        scored_lazily(h.likelihood_mut(), hraw, || {
            shift_like_likelihood(cfg, short, t.hour_cusum_floor)
        })
    } else {
        0.0
    };
    let gain = scored_lazily(&mut sw.gain_likelihood, sw.gain_raw, || {
        shift_like_likelihood(cfg, short, t.swing_gain_floor)
    });
    scored_lazily(&mut sw.likelihood, raw, || {
        shift_like_likelihood(cfg, short, t.swing_std_floor)
    })
    .max(gain)
    .max(hour)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SeriesModel;
    use crate::tests::swing_week;

    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn a_daily_swing_three_times_as_large_is_flagged_by_the_swing_alone() {
        // With the scale change off, records of the tripled week reach
        // the threshold on the daily swing alone; with it off too, none
        // do, and the ordinary days before are not news.
        let cfg = Config::default();
        let run = |t: &Tuning| {
            let mut m = SeriesModel::with_tuning(&cfg, t);
            swing_week()
                .iter()
                .enumerate()
                .map(|(i, &v)| m.update_tuned(&cfg, t, v, i as i64 * HOUR_MS))
                .collect::<Vec<_>>()
        };
        let alone = |outs: &[crate::model::Output], from: usize, to: usize| {
            outs[from..to]
                .iter()
                .filter(|o| o.score >= 0.5 && o.likelihoods[..6].iter().all(|&l| l < 0.5))
                .count()
        };
        let on = run(&Tuning {
            scale_cap: 0.0,
            ..Tuning::default()
        });
        assert!(alone(&on, 900, 1068) > 0, "the swing never scored alone");
        let before = on[600..900]
            .iter()
            .map(|o| o.likelihoods[6])
            .fold(0.0, f64::max);
        assert!(before < 0.5, "swing likelihood {before} before the week");
        let off = run(&Tuning {
            scale_cap: 0.0,
            swing_cap: 0.0,
            ..Tuning::default()
        });
        assert_eq!(alone(&off, 900, 1068), 0);
    }

    #[test]
    fn the_swing_is_the_last_day_against_the_previous_days() {
        let mut sw = Swing::default();
        let mut raw = Vec::new();
        // Ten days of a swing of 0.1 around 10, then a day of 0.3.
        for i in 0..11 * 24 {
            let theta = std::f64::consts::TAU * (i % 24) as f64 / 24.0;
            let amp = if i < 10 * 24 { 0.1 } else { 0.3 };
            raw.push(sw.surprise(
                i * HOUR_MS,
                10.0 * (1.0 + amp * theta.cos()),
                7,
                6.0,
                false,
                0.0,
            ));
        }
        // Nothing in the first day, nor before three daily amplitudes.
        assert!(raw[..3 * 24].iter().all(Option::is_none));
        // A steady swing is no surprise.
        assert!(raw[4 * 24..10 * 24]
            .iter()
            .all(|r| r.is_some_and(|x| x < 1e-9)));
        // A whole day of the tripled swing: ln(3) / ln(6).
        let last = raw[11 * 24 - 1].unwrap_or(0.0);
        assert!((last - 3f64.ln() / 6f64.ln()).abs() < 1e-6, "raw {last}");
        // A 5-minute series has the rhythm break and the whole peak instead.
        let cfg = Config::default();
        let t = Tuning::default();
        let mut sw = Swing::default();
        let five = (0..2000)
            .map(|i| swing_likelihood(Some(&mut sw), ((&cfg, &t), (i * 300_000, 1.0), 5.0, 20)))
            .fold(0.0, f64::max);
        assert_eq!(five, 0.0);
        assert!(sw.day.is_empty());
    }

    /// The raw surprise at the end of a day of a tripled swing (0.1 to
    /// 0.3 of 10, hourly, after ten ordinary days), with or without a
    /// record five times the level once a day at a wandering hour.
    fn tripled_day_surprise(spikes: bool, log: bool) -> f64 {
        let mut sw = Swing::default();
        let mut last = None;
        for i in 0..11 * 24 {
            let theta = std::f64::consts::TAU * (i % 24) as f64 / 24.0;
            let amp = if i < 10 * 24 { 0.1 } else { 0.3 };
            let spike = spikes && i % 24 == (7 * (i / 24) + 3) % 24;
            let v = 10.0 * (1.0 + amp * theta.cos()) * if spike { 5.0 } else { 1.0 };
            last = sw.surprise(i * HOUR_MS, v, 7, 6.0, log, 0.0);
        }
        last.unwrap_or(0.0)
    }

    #[test]
    fn a_spike_a_day_weighs_as_a_factor_in_the_logarithm() {
        // In the logarithm the spikes hardly move the tripled swing's
        // surprise; in the values they hide a third of it (each spike is
        // worth the whole swing of a day's harmonic).
        let clean = tripled_day_surprise(false, true);
        let spiky = tripled_day_surprise(true, true);
        assert!(clean > 0.55, "log surprise {clean}");
        assert!(
            (clean - spiky).abs() < 0.05,
            "log {clean} vs {spiky} with spikes"
        );
        let clean = tripled_day_surprise(false, false);
        let spiky = tripled_day_surprise(true, false);
        assert!(clean - spiky > 0.1, "values {clean} vs {spiky} with spikes");
    }

    #[test]
    fn a_value_of_zero_ends_the_logarithm_and_restarts_the_swing() {
        let mut sw = Swing::default();
        for i in 0..5 * 24 {
            sw.surprise(
                i * HOUR_MS,
                10.0 + (i % 24) as f64 / 10.0,
                7,
                6.0,
                true,
                0.0,
            );
        }
        assert!(!sw.past.is_empty() && !sw.linear);
        assert_eq!(sw.surprise(5 * 24 * HOUR_MS, 0.0, 7, 6.0, true, 0.0), None);
        assert!(sw.linear && sw.past.is_empty() && sw.day.len() == 1);
        // From then on the values themselves, as without `swing_log`.
        assert!(!sw.in_log(10.0, true));
    }
}

#[cfg(test)]
mod gain_tests {
    use crate::tests::{hourly_swing, swing_likelihoods};
    use crate::tuning::Tuning;

    /// The tripled swing's first hour (day 20, 00:00 UTC).
    const ONSET: usize = 20 * 24;

    /// A daily swing of 30 %, three times as hard for five days from
    /// `ONSET` when `tripled`.
    fn rate(tripled: bool) -> Vec<f64> {
        let hard = if tripled { 0.9 } else { 0.3 };
        hourly_swing(0.3, hard, ONSET..ONSET + 5 * 24)
    }

    #[test]
    fn a_tripled_swing_rises_sooner_with_the_half_day_gain() {
        // Half a day into the tripled swing the day's amplitude has a
        // fraction of it; the half-day gain has all of it, so the swing
        // likelihood is higher there with the gain than without, while an
        // ordinary rate stays quiet either way. The same-hour accumulator
        // (which sees this swing sooner still) is off in both: this is the
        // gain's test.
        let with = Tuning {
            hour_cusum_cap: 0.0,
            ..Tuning::default()
        };
        let without = Tuning {
            swing_gain_hours: 0.0,
            ..with
        };
        let on = swing_likelihoods(&with, &rate(true));
        let old = swing_likelihoods(&without, &rate(true));
        let at = ONSET + 12;
        assert!(
            on[at] > old[at] + 0.05,
            "{} vs {} at +12 h",
            on[at],
            old[at]
        );
        let quiet = swing_likelihoods(&with, &rate(false))[300..]
            .iter()
            .fold(0.0, |a: f64, &b| a.max(b));
        assert!(quiet < 0.2, "ordinary rate: swing likelihood {quiet}");
    }
}
