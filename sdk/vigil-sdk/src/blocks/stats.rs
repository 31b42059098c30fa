//! Running statistics: a fixed-count rolling window, an exponentially
//! weighted mean/variance, and z-scores.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// `v.max(floor)` for a finite `floor` (NaN `v` gives `floor` too), as a
/// comparison: `f64::max` is a call to `fmax` in wasm, once per record in
/// the detectors' hot loops.
#[inline]
pub(crate) fn at_least(v: f64, floor: f64) -> f64 {
    if v > floor {
        v
    } else {
        floor
    }
}

/// Mean, variance, min and max of the last `window` values.
///
/// Updates are O(1) (amortized): mean and variance use the sliding form of
/// Welford's update, and the exact values are recomputed from the window
/// every `window` pushes so floating-point drift cannot accumulate; min and
/// max use monotonic queues. Non-finite values (nulls arrive as NaN from
/// [`Batch::column_f64`](crate::Batch::column_f64)) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollingStats {
    window: usize,
    values: VecDeque<f64>,
    mean: f64,
    /// Sum of squared deviations from the mean.
    m2: f64,
    since_recompute: usize,
    /// Sequence number of the next value, for the min/max queues.
    seq: u64,
    /// (seq, value), values increasing: the front is the window's minimum.
    mins: VecDeque<(u64, f64)>,
    /// (seq, value), values decreasing: the front is the window's maximum.
    maxs: VecDeque<(u64, f64)>,
}

impl RollingStats {
    /// Statistics over the last `window` values (at least 1).
    pub fn new(window: usize) -> Self {
        let window = window.max(1);
        RollingStats {
            window,
            values: VecDeque::with_capacity(window),
            mean: 0.0,
            m2: 0.0,
            since_recompute: 0,
            seq: 0,
            mins: VecDeque::new(),
            maxs: VecDeque::new(),
        }
    }

    /// Adds `x`, evicting the oldest value if the window is full. Returns
    /// the evicted value. Non-finite `x` is ignored.
    pub fn push(&mut self, x: f64) -> Option<f64> {
        if !x.is_finite() {
            return None;
        }
        let evicted = if self.values.len() == self.window {
            let old = self.values.pop_front();
            if let Some(old) = old {
                // Sliding Welford: replace `old` by `x` at constant count.
                let n = self.window as f64;
                let mean_old = self.mean;
                self.mean += (x - old) / n;
                self.m2 += (x - old) * (x - self.mean + old - mean_old);
            }
            old
        } else {
            let n = (self.values.len() + 1) as f64;
            let delta = x - self.mean;
            self.mean += delta / n;
            self.m2 += delta * (x - self.mean);
            None
        };
        self.values.push_back(x);
        self.since_recompute += 1;
        if self.since_recompute >= self.window {
            self.recompute();
        }
        let seq = self.seq;
        self.seq += 1;
        let oldest = seq + 1 - self.values.len() as u64;
        while self.mins.back().is_some_and(|&(_, v)| v >= x) {
            self.mins.pop_back();
        }
        self.mins.push_back((seq, x));
        while self.maxs.back().is_some_and(|&(_, v)| v <= x) {
            self.maxs.pop_back();
        }
        self.maxs.push_back((seq, x));
        while self.mins.front().is_some_and(|&(s, _)| s < oldest) {
            self.mins.pop_front();
        }
        while self.maxs.front().is_some_and(|&(s, _)| s < oldest) {
            self.maxs.pop_front();
        }
        evicted
    }

    /// Exact mean and squared deviations from the window (two passes).
    fn recompute(&mut self) {
        self.since_recompute = 0;
        let n = self.values.len();
        if n == 0 {
            self.mean = 0.0;
            self.m2 = 0.0;
            return;
        }
        let mean = self.values.iter().sum::<f64>() / n as f64;
        self.mean = mean;
        self.m2 = self.values.iter().map(|v| (v - mean) * (v - mean)).sum();
    }

    /// The window size.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Number of values in the window.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no value was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether the window holds `window` values.
    pub fn is_full(&self) -> bool {
        self.values.len() == self.window
    }

    /// Mean of the window (NaN when empty).
    pub fn mean(&self) -> f64 {
        if self.values.is_empty() {
            f64::NAN
        } else {
            self.mean
        }
    }

    /// Sample variance (divides by n − 1, like pandas' `rolling().var()`);
    /// 0 with fewer than two values.
    pub fn variance(&self) -> f64 {
        let n = self.values.len();
        if n < 2 {
            0.0
        } else {
            at_least(self.m2 / (n - 1) as f64, 0.0)
        }
    }

    /// Population variance (divides by n); 0 when empty.
    pub fn population_variance(&self) -> f64 {
        let n = self.values.len();
        if n == 0 {
            0.0
        } else {
            at_least(self.m2 / n as f64, 0.0)
        }
    }

    /// Sample standard deviation, `variance().sqrt()`.
    pub fn std(&self) -> f64 {
        self.variance().sqrt()
    }

    /// Smallest value in the window.
    pub fn min(&self) -> Option<f64> {
        self.mins.front().map(|&(_, v)| v)
    }

    /// Largest value in the window.
    pub fn max(&self) -> Option<f64> {
        self.maxs.front().map(|&(_, v)| v)
    }

    /// The window's values, oldest first.
    pub fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.values.iter().copied()
    }

    /// Forgets all values.
    pub fn clear(&mut self) {
        *self = RollingStats::new(self.window);
    }
}

/// Exponentially weighted mean and variance.
///
/// With weight `alpha`, each update moves the mean `alpha` of the way to the
/// new value; the variance is the matching exponentially weighted variance
/// (Finch, "Incremental calculation of weighted mean and variance", 2009).
/// The first value initializes the mean (variance 0). Non-finite values are
/// ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ewma {
    alpha: f64,
    mean: f64,
    variance: f64,
    count: u64,
}

impl Ewma {
    /// An EWMA with weight `alpha`, clamped to (0, 1].
    pub fn new(alpha: f64) -> Self {
        let alpha = if alpha.is_finite() {
            alpha.clamp(f64::MIN_POSITIVE, 1.0)
        } else {
            1.0
        };
        Ewma {
            alpha,
            mean: 0.0,
            variance: 0.0,
            count: 0,
        }
    }

    /// An EWMA whose weights halve every `half_life` updates:
    /// `alpha = 1 - 0.5^(1/half_life)`.
    pub fn with_half_life(half_life: f64) -> Self {
        Ewma::new(1.0 - 0.5f64.powf(1.0 / half_life.max(f64::MIN_POSITIVE)))
    }

    /// Adds `x`.
    pub fn update(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        self.count += 1;
        if self.count == 1 {
            self.mean = x;
            self.variance = 0.0;
            return;
        }
        let diff = x - self.mean;
        let incr = self.alpha * diff;
        self.mean += incr;
        self.variance = (1.0 - self.alpha) * (self.variance + diff * incr);
    }

    /// The weight of each new value.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The weighted mean (NaN before the first value).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.mean
        }
    }

    /// The weighted variance.
    pub fn variance(&self) -> f64 {
        at_least(self.variance, 0.0)
    }

    /// The weighted standard deviation.
    pub fn std(&self) -> f64 {
        self.variance().sqrt()
    }

    /// Number of values seen.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// `(x - mean) / std`, or 0 when `std` is (numerically) zero or not finite
/// — a constant series has no outliers rather than infinite ones.
pub fn zscore(x: f64, mean: f64, std: f64) -> f64 {
    let scale = mean.abs().max(1.0);
    if std.is_finite() && std > 1e-12 * scale {
        (x - mean) / std
    } else {
        0.0
    }
}

/// Deviation reported for a value that differs from a constant history.
pub const CONSTANT_DEVIATION: f64 = 1e9;

/// `(x - mean) / std` for detectors that must flag *any* change of a
/// constant series: when `std` is (numerically) zero, a different value is
/// [`CONSTANT_DEVIATION`] away (signed) and an equal one 0. Contrast
/// [`zscore`], which treats a constant series as having no outliers.
pub fn deviation(x: f64, mean: f64, std: f64) -> f64 {
    let tiny = 1e-12 * at_least(mean.abs(), 1.0);
    if std > tiny {
        (x - mean) / std
    } else if (x - mean).abs() > tiny {
        CONSTANT_DEVIATION.copysign(x - mean)
    } else {
        0.0
    }
}

/// Z-scores of each value against the rolling window of the values before
/// it (so an outlier does not dampen its own score).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZScore {
    stats: RollingStats,
    min_samples: usize,
}

impl ZScore {
    /// Scores against the last `window` values, once at least `min_samples`
    /// (≥ 2) have been seen.
    pub fn new(window: usize, min_samples: usize) -> Self {
        ZScore {
            stats: RollingStats::new(window),
            min_samples: min_samples.max(2),
        }
    }

    /// The score of `x` against the current window, without adding it;
    /// `None` while warming up or for non-finite `x`.
    pub fn peek(&self, x: f64) -> Option<f64> {
        (x.is_finite() && self.stats.len() >= self.min_samples)
            .then(|| zscore(x, self.stats.mean(), self.stats.std()))
    }

    /// Scores `x` (see [`peek`](ZScore::peek)), then adds it to the window.
    pub fn score(&mut self, x: f64) -> Option<f64> {
        let z = self.peek(x);
        self.stats.push(x);
        z
    }

    /// The underlying window.
    pub fn stats(&self) -> &RollingStats {
        &self.stats
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #[test]
    fn deviation_flags_any_change_of_a_constant_series() {
        assert_eq!(deviation(12.0, 10.0, 1.0), 2.0);
        assert_eq!(deviation(10.5, 10.0, 0.0), CONSTANT_DEVIATION);
        assert_eq!(deviation(9.5, 10.0, 0.0), -CONSTANT_DEVIATION);
        assert_eq!(deviation(10.0, 10.0, 0.0), 0.0);
        assert_eq!(zscore(10.5, 10.0, 0.0), 0.0);
    }

    use super::*;

    #[test]
    fn at_least_is_max_for_finite_floors() {
        let vs = [
            f64::NAN,
            f64::NEG_INFINITY,
            -2.5,
            -1e-300,
            0.0,
            1e-300,
            0.5,
            1.0,
            3.0,
            f64::INFINITY,
        ];
        for v in vs {
            for floor in [0.0, 1.0, -4.0, 5.0] {
                assert_eq!(
                    at_least(v, floor).to_bits(),
                    v.max(floor).to_bits(),
                    "{v} {floor}"
                );
            }
        }
    }

    /// A deterministic pseudo-random sequence (splitmix64) in [0, 1).
    pub(crate) fn noise(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                (z ^ (z >> 31)) as f64 / u64::MAX as f64
            })
            .collect()
    }

    fn naive(w: &[f64]) -> (f64, f64, f64, f64) {
        let n = w.len() as f64;
        let mean = w.iter().sum::<f64>() / n;
        let var = w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let min = w.iter().copied().fold(f64::INFINITY, f64::min);
        let max = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (mean, var, min, max)
    }

    #[test]
    fn rolling_matches_naive_on_every_step() {
        // Large offset + small spread is where naive sum/sumsq fails.
        let xs: Vec<f64> = noise(5000, 1).iter().map(|v| 1e6 + v * 10.0).collect();
        let mut s = RollingStats::new(50);
        for (i, &x) in xs.iter().enumerate() {
            s.push(x);
            let w = &xs[i.saturating_sub(49)..=i];
            if w.len() < 2 {
                continue;
            }
            let (mean, var, min, max) = naive(w);
            assert!((s.mean() - mean).abs() < 1e-6, "mean at {i}");
            assert!(
                (s.variance() - var).abs() < 1e-6 * var.max(1.0),
                "var at {i}"
            );
            assert_eq!(s.min(), Some(min));
            assert_eq!(s.max(), Some(max));
        }
        assert!(s.is_full());
        assert_eq!(s.len(), 50);
    }

    #[test]
    fn rolling_hand_computed() {
        let mut s = RollingStats::new(3);
        assert!(s.mean().is_nan());
        assert_eq!(s.push(2.0), None);
        s.push(4.0);
        s.push(f64::NAN); // ignored
        s.push(9.0);
        // [2, 4, 9]: mean 5, deviations -3, -1, 4 → m2 26 → var 13.
        assert_eq!(s.mean(), 5.0);
        assert_eq!(s.variance(), 13.0);
        assert!((s.population_variance() - 26.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.push(1.0), Some(2.0));
        // [4, 9, 1]: mean 14/3.
        assert!((s.mean() - 14.0 / 3.0).abs() < 1e-12);
        assert_eq!((s.min(), s.max()), (Some(1.0), Some(9.0)));
        assert_eq!(s.values().collect::<Vec<_>>(), vec![4.0, 9.0, 1.0]);
        let back: RollingStats =
            crate::state::from_bytes(&crate::state::to_bytes(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        s.clear();
        assert!(s.is_empty());
    }

    #[test]
    fn ewma_hand_computed_and_half_life() {
        let mut e = Ewma::new(0.5);
        e.update(10.0);
        assert_eq!((e.mean(), e.variance()), (10.0, 0.0));
        e.update(20.0);
        // diff 10, incr 5 → mean 15; var = 0.5 * (0 + 10 * 5) = 25.
        assert_eq!((e.mean(), e.variance(), e.std()), (15.0, 25.0, 5.0));
        e.update(f64::INFINITY);
        assert_eq!(e.count(), 2);
        let h = Ewma::with_half_life(10.0);
        // Ten updates leave half the weight on the past.
        assert!(((1.0 - h.alpha()).powi(10) - 0.5).abs() < 1e-12);
        // Converges to a constant, with variance to 0.
        let mut c = Ewma::new(0.1);
        for _ in 0..1000 {
            c.update(3.0);
        }
        assert_eq!((c.mean(), c.variance()), (3.0, 0.0));
    }

    #[test]
    fn ewma_variance_matches_weighted_definition() {
        // EW variance equals Σ w_i (x_i - mean)^2 with the EW weights when
        // computed exactly; check on a short series against the recursion
        // unrolled by hand: x = [1, 3, 2], alpha = 0.25.
        let mut e = Ewma::new(0.25);
        for x in [1.0, 3.0, 2.0] {
            e.update(x);
        }
        // step 2: diff 2, incr .5, mean 1.5, var .75*(0+2*.5) = .75
        // step 3: diff .5, incr .125, mean 1.625, var .75*(.75+.5*.125) = .609375
        assert_eq!(e.mean(), 1.625);
        assert!((e.variance() - 0.609375).abs() < 1e-15);
    }

    #[test]
    fn zscore_edges_and_helper() {
        assert_eq!(zscore(5.0, 3.0, 2.0), 1.0);
        assert_eq!(zscore(5.0, 3.0, 0.0), 0.0);
        assert_eq!(zscore(5.0, 1e9, 1e-6), 0.0);
        assert_eq!(zscore(5.0, 3.0, f64::NAN), 0.0);
        let mut z = ZScore::new(4, 3);
        assert_eq!(z.score(1.0), None);
        assert_eq!(z.score(2.0), None);
        assert_eq!(z.score(3.0), None);
        // Window [1, 2, 3]: mean 2, sample std 1 → z(10) = 8.
        assert_eq!(z.peek(10.0), Some(8.0));
        assert_eq!(z.score(10.0), Some(8.0));
        assert_eq!(z.stats().len(), 4);
        assert_eq!(z.peek(f64::NAN), None);
    }
}
