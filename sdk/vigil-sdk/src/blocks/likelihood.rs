//! Anomaly likelihood: turns a stream of raw anomaly scores into "how
//! unusual is the recent surprise", after Numenta's post-processing of HTM
//! scores (Ahmad et al., "Unsupervised real-time anomaly detection for
//! streaming data", Neurocomputing 2017): the mean of the last few raw
//! scores is compared with the distribution (mean, variance) of such means
//! over a long window, and the Gaussian tail probability of that comparison
//! is reported on a log scale. A series whose raw scores are always high
//! (noisy) or always low (easy) is thereby scored on its own terms.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Tail probabilities below this are treated as this (the score is 1 there).
const MIN_TAIL: f64 = 1e-10;

/// Streaming anomaly likelihood over a raw score (any scale; typically [0, 1]).
///
/// Memory is `short + long` values. [`AnomalyLikelihood::update`] returns 0
/// until `min_history` short-window means have been seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyLikelihood {
    short_cap: usize,
    long_cap: usize,
    min_history: usize,
    std_floor: f64,
    short: VecDeque<f64>,
    short_sum: f64,
    long: VecDeque<f64>,
    long_sum: f64,
    long_sumsq: f64,
    /// Pushes since `long_sum`/`long_sumsq` were recomputed exactly (bounds
    /// floating-point drift of the running sums).
    since_recompute: usize,
}

impl AnomalyLikelihood {
    /// Averages the last `short` raw scores and compares the average with
    /// the distribution of the last `long` averages, once `min_history` of
    /// them exist. `std_floor` bounds that distribution's standard deviation
    /// from below, so a series that has been perfectly quiet does not turn
    /// the first tiny wobble into certainty.
    pub fn new(short: usize, long: usize, min_history: usize, std_floor: f64) -> Self {
        let short_cap = short.max(1);
        let long_cap = long.max(2);
        AnomalyLikelihood {
            short_cap,
            long_cap,
            min_history: min_history.clamp(2, long_cap),
            std_floor: std_floor.max(f64::MIN_POSITIVE),
            short: VecDeque::with_capacity(short_cap),
            short_sum: 0.0,
            long: VecDeque::new(),
            long_sum: 0.0,
            long_sumsq: 0.0,
            since_recompute: 0,
        }
    }

    /// Adds one raw score and returns the log-scaled likelihood in [0, 1]:
    /// `ln(Q) / ln(1e-10)` where `Q` is the upper Gaussian tail of the recent
    /// average against the long-window distribution (0: ordinary, 0.5: a
    /// one-in-100 000 average, 1: beyond one in 10^10). Non-finite input
    /// counts as 0.
    pub fn update(&mut self, raw: f64) -> f64 {
        let raw = if raw.is_finite() { raw } else { 0.0 };
        if self.short.len() == self.short_cap {
            if let Some(old) = self.short.pop_front() {
                self.short_sum -= old;
            }
        }
        self.short.push_back(raw);
        self.short_sum += raw;
        let avg = self.short_sum / self.short.len() as f64;

        let score = if self.long.len() >= self.min_history {
            let k = self.long.len() as f64;
            let mean = self.long_sum / k;
            let var = (self.long_sumsq / k - mean * mean).max(0.0);
            let std = var.sqrt().max(self.std_floor);
            log_tail_score(normal_tail((avg - mean) / std))
        } else {
            0.0
        };

        if self.long.len() == self.long_cap {
            if let Some(old) = self.long.pop_front() {
                self.long_sum -= old;
                self.long_sumsq -= old * old;
            }
        }
        self.long.push_back(avg);
        self.long_sum += avg;
        self.long_sumsq += avg * avg;
        self.since_recompute += 1;
        if self.since_recompute >= self.long_cap {
            self.long_sum = self.long.iter().sum();
            self.long_sumsq = self.long.iter().map(|x| x * x).sum();
            self.since_recompute = 0;
        }
        score
    }

    /// Mean of the last `short` raw scores (0 before any).
    pub fn recent_mean(&self) -> f64 {
        if self.short.is_empty() {
            0.0
        } else {
            self.short_sum / self.short.len() as f64
        }
    }

    /// Number of short-window means in the long window.
    pub fn history(&self) -> usize {
        self.long.len()
    }
}

/// `ln(q) / ln(1e-10)` clamped to [0, 1]: 0 for an ordinary tail
/// probability, 1 for one at or below 1e-10.
pub fn log_tail_score(q: f64) -> f64 {
    ((q + MIN_TAIL).ln() / MIN_TAIL.ln()).clamp(0.0, 1.0)
}

/// Upper-tail probability of the standard normal, `Q(z) = P(Z > z)`, with
/// small *relative* error far into the tail (scores are its logarithm, so
/// absolute accuracy near zero would not be enough): the Chebyshev fit of
/// `erfc` from Numerical Recipes (fractional error < 1.2e-7 everywhere).
pub fn normal_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_tail_matches_known_values() {
        assert!((normal_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_tail(1.959_964) - 0.025).abs() < 1e-6);
        assert!((normal_tail(-1.959_964) - 0.975).abs() < 1e-6);
        // Far tail: Q(6) = 9.8659e-10, relative error matters here.
        assert!((normal_tail(6.0) / 9.865_876e-10 - 1.0).abs() < 1e-4);
    }

    #[test]
    fn quiet_until_history_then_flags_a_burst() {
        let mut l = AnomalyLikelihood::new(5, 500, 100, 0.01);
        let mut max_quiet: f64 = 0.0;
        for i in 0..600 {
            // Low, slightly varying raw scores.
            let s = l.update(0.1 + 0.02 * ((i % 7) as f64 / 7.0));
            if i < 100 {
                assert_eq!(s, 0.0, "no score before min_history (record {i})");
            }
            max_quiet = max_quiet.max(s);
        }
        assert!(max_quiet < 0.5, "quiet stream scored {max_quiet}");
        let mut burst: f64 = 0.0;
        for _ in 0..5 {
            burst = burst.max(l.update(1.0));
        }
        assert!(burst > 0.9, "burst scored {burst}");
        assert_eq!(l.history(), 500);
    }

    #[test]
    fn noisy_stream_is_scored_on_its_own_terms() {
        // Raw scores that are often high are not anomalous by themselves.
        let mut l = AnomalyLikelihood::new(5, 1000, 100, 0.01);
        let mut worst: f64 = 0.0;
        for i in 0..3000u64 {
            let raw = if (i * 2_654_435_761) % 3 == 0 {
                0.9
            } else {
                0.2
            };
            worst = worst.max(l.update(raw));
        }
        assert!(worst < 0.6, "noisy stream scored {worst}");
        assert!(l.recent_mean() > 0.0);
    }
}
