//! A streaming quantile sketch with a relative-error guarantee.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Counts of logarithmically sized buckets, indexed from `offset`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct Store {
    offset: i32,
    counts: VecDeque<u64>,
    total: u64,
}

impl Store {
    fn add(&mut self, index: i32, n: u64, max_buckets: usize) {
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push_back(0);
        }
        if index < self.offset {
            // Grow downwards as far as the budget allows; anything lower is
            // counted in the lowest bucket (the same as folding, below).
            let room = max_buckets.saturating_sub(self.counts.len()) as i32;
            let new_offset = index.max(self.offset.saturating_sub(room));
            for _ in new_offset..self.offset {
                self.counts.push_front(0);
            }
            self.offset = new_offset;
        }
        let index = index.max(self.offset);
        // Over budget above the range: fold the lowest buckets (smallest
        // magnitudes) into one, which keeps the guarantee for all but the
        // lowest quantiles, before growing (never allocate past the budget).
        let lowest_kept = index.saturating_sub(max_buckets as i32 - 1);
        if lowest_kept > self.offset {
            let shift = ((lowest_kept - self.offset) as usize).min(self.counts.len());
            let folded: u64 = self.counts.drain(..shift).sum();
            self.offset = lowest_kept;
            if self.counts.is_empty() {
                self.counts.push_back(0);
            }
            self.counts[0] += folded;
        }
        let at = (index - self.offset) as usize;
        while at >= self.counts.len() {
            self.counts.push_back(0);
        }
        self.counts[at] += n;
        self.total += n;
    }

    /// (index, count) of non-empty buckets, ascending.
    fn buckets(&self) -> impl DoubleEndedIterator<Item = (i32, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (self.offset + i as i32, *c))
    }
}

/// Estimates quantiles of a stream in bounded memory, with relative error:
/// for `quantile(q)`, the estimate `e` of the true value `x` (the element of
/// rank ⌊q·(n−1)⌋ in sorted order) satisfies `|e − x| ≤ α·|x|`, where α is
/// the `relative_accuracy` given to [`new`](QuantileSketch::new).
///
/// This is DDSketch (Masson, Rim, Lee; VLDB 2019): values are counted in
/// buckets whose bounds grow geometrically by γ = (1+α)/(1−α); each bucket
/// answers with the value that is within α of everything it holds.
/// Deterministic, mergeable, O(1) per insert. Memory is at most
/// `max_buckets` counters per sign; [`new`](QuantileSketch::new) picks
/// enough for a dynamic range (max/min magnitude) of 10¹⁷ (2048 buckets at
/// α = 1%, capped at 65536 for α below 0.03%). Beyond the budget the
/// smallest magnitudes are merged, which only affects the lowest
/// quantiles. Non-finite values are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileSketch {
    alpha: f64,
    /// ln γ, for the bucket index.
    ln_gamma: f64,
    max_buckets: usize,
    positive: Store,
    /// Magnitudes of negative values.
    negative: Store,
    zeros: u64,
    min: f64,
    max: f64,
    sum: f64,
}

impl QuantileSketch {
    /// A sketch with relative error `relative_accuracy` (clamped to
    /// [1e-6, 0.5]; 0.01 = 1% is a good default).
    pub fn new(relative_accuracy: f64) -> Self {
        let probe = QuantileSketch::with_max_buckets(relative_accuracy, 16);
        // Enough buckets for a dynamic range of 1e17 (ln 1e17 ≈ 39.1),
        // within [2048, 65536].
        let buckets = (39.2 / probe.ln_gamma).ceil() as usize;
        QuantileSketch::with_max_buckets(relative_accuracy, buckets.clamp(2048, 1 << 16))
    }

    /// A sketch with at most `max_buckets` (≥ 16) buckets per sign.
    pub fn with_max_buckets(relative_accuracy: f64, max_buckets: usize) -> Self {
        let alpha = if relative_accuracy.is_finite() {
            relative_accuracy.clamp(1e-6, 0.5)
        } else {
            0.01
        };
        let gamma = (1.0 + alpha) / (1.0 - alpha);
        QuantileSketch {
            alpha,
            ln_gamma: gamma.ln(),
            max_buckets: max_buckets.max(16),
            positive: Store::default(),
            negative: Store::default(),
            zeros: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
        }
    }

    fn index(&self, magnitude: f64) -> i32 {
        // Magnitudes are ≥ f64::MIN_POSITIVE, so the index is within
        // ±(709 / ln γ) < 2^31 for any α ≥ 1e-6.
        (magnitude.ln() / self.ln_gamma).ceil() as i32
    }

    fn value(&self, index: i32) -> f64 {
        // The point within relative α of the whole bucket (γ^(i−1), γ^i].
        let gamma = self.ln_gamma.exp();
        2.0 * (self.ln_gamma * f64::from(index)).exp() / (gamma + 1.0)
    }

    /// Adds `x`.
    pub fn insert(&mut self, x: f64) {
        self.insert_n(x, 1);
    }

    /// Adds `n` copies of `x`.
    pub fn insert_n(&mut self, x: f64, n: u64) {
        if !x.is_finite() || n == 0 {
            return;
        }
        if x.abs() < f64::MIN_POSITIVE {
            self.zeros += n;
        } else if x > 0.0 {
            let i = self.index(x);
            self.positive.add(i, n, self.max_buckets);
        } else {
            let i = self.index(-x);
            self.negative.add(i, n, self.max_buckets);
        }
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self.sum += x * n as f64;
    }

    /// Number of values added.
    pub fn count(&self) -> u64 {
        self.positive.total + self.negative.total + self.zeros
    }

    /// Whether no value was added.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Exact minimum.
    pub fn min(&self) -> Option<f64> {
        (!self.is_empty()).then_some(self.min)
    }

    /// Exact maximum.
    pub fn max(&self) -> Option<f64> {
        (!self.is_empty()).then_some(self.max)
    }

    /// Mean (exact up to floating-point summation).
    pub fn mean(&self) -> Option<f64> {
        (!self.is_empty()).then(|| self.sum / self.count() as f64)
    }

    /// The relative accuracy α.
    pub fn relative_accuracy(&self) -> f64 {
        self.alpha
    }

    /// Estimate of the `q`-quantile (`q` clamped to [0, 1]); `None` when
    /// empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.is_empty() || q.is_nan() {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * (self.count() - 1) as f64;
        let mut seen = 0u64;
        // Most negative first: the negative store by descending magnitude.
        for (i, c) in self.negative.buckets().rev() {
            seen += c;
            if seen as f64 > rank {
                return Some((-self.value(i)).clamp(self.min, self.max));
            }
        }
        seen += self.zeros;
        if seen as f64 > rank {
            return Some(0.0f64.clamp(self.min, self.max));
        }
        for (i, c) in self.positive.buckets() {
            seen += c;
            if seen as f64 > rank {
                return Some(self.value(i).clamp(self.min, self.max));
            }
        }
        // Only reachable through float rounding at q = 1.
        Some(self.max)
    }

    /// Adds everything `other` counted. Both must have the same accuracy.
    pub fn merge(&mut self, other: &QuantileSketch) -> Result<()> {
        if (self.alpha - other.alpha).abs() > f64::EPSILON {
            return Err(Error::msg(format!(
                "cannot merge quantile sketches of accuracy {} and {}",
                self.alpha, other.alpha
            )));
        }
        for (i, c) in other.positive.buckets() {
            self.positive.add(i, c, self.max_buckets);
        }
        for (i, c) in other.negative.buckets() {
            self.negative.add(i, c, self.max_buckets);
        }
        self.zeros += other.zeros;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::stats::tests::noise;

    const QS: [f64; 9] = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0];

    fn check(values: &[f64], alpha: f64) -> QuantileSketch {
        let mut s = QuantileSketch::new(alpha);
        for &v in values {
            s.insert(v);
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        for q in QS {
            let exact = sorted[(q * (sorted.len() - 1) as f64).floor() as usize];
            let est = s.quantile(q).unwrap();
            assert!(
                (est - exact).abs() <= alpha * exact.abs() + 1e-12,
                "q={q}: estimate {est}, exact {exact}"
            );
        }
        s
    }

    #[test]
    fn within_one_percent_on_10k_values() {
        let u = noise(10_000, 3);
        // Uniform, heavy-tailed (Pareto-like) and mixed-sign data.
        check(&u.iter().map(|v| v * 1000.0).collect::<Vec<_>>(), 0.01);
        check(
            &u.iter()
                .map(|v| 1.0 / (1.0 - v).max(1e-9))
                .collect::<Vec<_>>(),
            0.01,
        );
        let mixed: Vec<f64> = u.iter().map(|v| (v - 0.5) * 200.0).collect();
        let s = check(&mixed, 0.01);
        assert_eq!(s.count(), 10_000);
        let mean = mixed.iter().sum::<f64>() / 1e4;
        assert!((s.mean().unwrap() - mean).abs() < 1e-9);
        check(&[0.0; 10], 0.01);
        check(
            &u.iter().map(|v| (v * 1e6).round()).collect::<Vec<_>>(),
            0.001,
        );
    }

    #[test]
    fn hand_computed_small_cases() {
        let mut s = QuantileSketch::new(0.01);
        assert_eq!(s.quantile(0.5), None);
        for v in [1.0, 2.0, 3.0, 4.0, 100.0] {
            s.insert(v);
        }
        s.insert(f64::NAN);
        assert_eq!(s.count(), 5);
        // Extremes are exact (clamped to the true min and max).
        assert_eq!(s.quantile(0.0), Some(1.0));
        assert_eq!(s.quantile(1.0), Some(100.0));
        let median = s.quantile(0.5).unwrap();
        assert!((median - 3.0).abs() <= 0.03, "{median}");
        assert_eq!((s.min(), s.max()), (Some(1.0), Some(100.0)));
    }

    #[test]
    fn merge_equals_single_sketch_and_bounded_memory() {
        let u = noise(4000, 9);
        let mut a = QuantileSketch::new(0.02);
        let mut b = QuantileSketch::new(0.02);
        let mut all = QuantileSketch::new(0.02);
        for (i, v) in u.iter().enumerate() {
            let x = (v - 0.3) * 50.0;
            if i % 2 == 0 {
                a.insert(x)
            } else {
                b.insert(x)
            }
            all.insert(x);
        }
        a.merge(&b).unwrap();
        for q in QS {
            assert_eq!(a.quantile(q), all.quantile(q));
        }
        assert!(a.merge(&QuantileSketch::new(0.05)).is_err());
        // A tiny bucket budget over a huge range keeps the top accurate.
        let mut t = QuantileSketch::with_max_buckets(0.01, 16);
        for i in 0..1000 {
            t.insert(1.5f64.powi(i % 200));
        }
        assert!(t.positive.counts.len() <= 16);
        let top = t.quantile(1.0).unwrap();
        assert_eq!(top, 1.5f64.powi(199));
        let bytes = crate::state::to_bytes(&t).unwrap();
        assert_eq!(
            crate::state::from_bytes::<QuantileSketch>(&bytes).unwrap(),
            t
        );
    }
}
