//! Exact running medians over sliding windows: the values are kept sorted
//! (binary-search insert and remove), so a median is two reads and a
//! median absolute deviation two binary searches, where sorting or
//! selecting a copy of the window every record made the level-shift
//! statistic five times slower than the rest of the model (design 0007,
//! session 8).
//!
//! Results are bit-for-bit those of selecting from a copy
//! ([`median_of`]): the same order (`f64::total_cmp`), the same elements,
//! the same arithmetic on them.

/// A multiset of finite values kept in ascending `total_cmp` order.
#[derive(Debug, Clone, Default)]
pub struct SortedWindow {
    sorted: Vec<f64>,
}

impl SortedWindow {
    /// Number of values held.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// True when no value is held.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Forgets every value.
    pub fn clear(&mut self) {
        self.sorted.clear();
    }

    /// Adds `x`.
    pub fn insert(&mut self, x: f64) {
        let at = self.sorted.partition_point(|v| v.total_cmp(&x).is_lt());
        self.sorted.insert(at, x);
    }

    /// Removes one copy of `x`; false when `x` is not held. Values equal
    /// under `total_cmp` are bit-identical, so which copy goes is moot.
    pub fn remove(&mut self, x: f64) -> bool {
        match self.sorted.binary_search_by(|v| v.total_cmp(&x)) {
            Ok(at) => {
                self.sorted.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// The median: the middle value, or the mean of the two middle values
    /// for an even count (`None` when empty).
    pub fn median(&self) -> Option<f64> {
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        let mid = n / 2;
        let upper = self.sorted[mid];
        if n % 2 == 1 {
            Some(upper)
        } else {
            Some(0.5 * (self.sorted[mid - 1] + upper))
        }
    }

    /// The median of `|x - center|` over the held values (`None` when
    /// empty). The distances below `center`, read downwards, and those
    /// above it, read upwards, are two ascending runs (float subtraction
    /// is monotone, and `c - x` is exactly `|x - c|` for `x < c`), so
    /// their k-th smallest is found by binary search without forming them.
    pub fn median_abs_deviation(&self, center: f64) -> Option<f64> {
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        let split = self.sorted.partition_point(|&v| v < center);
        let (below, above) = self.sorted.split_at(split);
        let left = |i: usize| center - below[below.len() - 1 - i];
        let right = |j: usize| above[j] - center;
        let kth = |k: usize| kth_of_two(below.len(), left, above.len(), right, k);
        let mid = n / 2;
        let upper = kth(mid);
        if n % 2 == 1 {
            Some(upper)
        } else {
            Some(0.5 * (kth(mid - 1) + upper))
        }
    }
}

/// The `k`-th smallest (from 0) of two ascending runs `a` (length `na`)
/// and `b` (length `nb`), given as index functions; `k < na + nb`.
fn kth_of_two(
    na: usize,
    a: impl Fn(usize) -> f64,
    nb: usize,
    b: impl Fn(usize) -> f64,
    k: usize,
) -> f64 {
    // Of the k + 1 smallest, i come from `a` and k + 1 - i from `b`; the
    // right i is the smallest with a(i) ≥ b(k - i) (a predicate that turns
    // true once and stays true as i grows).
    let take = k + 1;
    let (mut lo, mut hi) = (take.saturating_sub(nb), take.min(na));
    while lo < hi {
        let i = lo + (hi - lo) / 2;
        if a(i) < b(take - i - 1) {
            lo = i + 1;
        } else {
            hi = i;
        }
    }
    let (i, j) = (lo, take - lo);
    match (i > 0, j > 0) {
        (true, true) => a(i - 1).max(b(j - 1)),
        (true, false) => a(i - 1),
        _ => b(j - 1),
    }
}

/// Median of `xs` by selection; reorders `xs` (the reference the running
/// version must equal, and what short ad-hoc medians use).
pub fn median_of(xs: &mut [f64]) -> Option<f64> {
    let n = xs.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (lo, m, _) = xs.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *m;
    if n % 2 == 1 {
        Some(upper)
    } else {
        let lower = lo.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(0.5 * (lower + upper))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic xorshift values; `levels` > 0 quantises them so ties
    /// are frequent.
    struct Values(u64);
    impl Values {
        fn next(&mut self, levels: u64) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            if levels > 0 {
                (self.0 % levels) as f64 - (levels / 2) as f64
            } else {
                (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 200.0 - 100.0
            }
        }
    }

    fn naive_mad(window: &[f64]) -> Option<f64> {
        let mut xs = window.to_vec();
        let m = median_of(&mut xs)?;
        let mut d: Vec<f64> = window.iter().map(|x| (x - m).abs()).collect();
        median_of(&mut d)
    }

    #[test]
    fn sliding_median_and_mad_equal_selection_bit_for_bit() {
        // Window sizes odd and even, tiny and as used; continuous values,
        // heavy ties (3 levels, 2 levels, one level), signed zeros.
        for &(size, levels) in &[
            (1, 0),
            (2, 0),
            (3, 3),
            (20, 0),
            (20, 2),
            (21, 3),
            (200, 0),
            (200, 5),
            (201, 1),
        ] {
            let mut gen = Values(0x9e37_79b9_7f4a_7c15 ^ (size as u64 * 31 + levels));
            let mut window = std::collections::VecDeque::new();
            let mut sorted = SortedWindow::default();
            for step in 0..3000 {
                let mut x = gen.next(levels);
                if step % 97 == 0 {
                    x = if step % 2 == 0 { 0.0 } else { -0.0 };
                }
                if window.len() == size {
                    let old = window.pop_front().unwrap_or(0.0);
                    assert!(sorted.remove(old));
                }
                window.push_back(x);
                sorted.insert(x);
                let mut copy: Vec<f64> = window.iter().copied().collect();
                let naive = median_of(&mut copy);
                let got = sorted.median();
                assert_eq!(
                    got.map(f64::to_bits),
                    naive.map(f64::to_bits),
                    "size {size} step {step}"
                );
                let center = naive.unwrap_or(0.0);
                let flat: Vec<f64> = window.iter().copied().collect();
                assert_eq!(
                    sorted.median_abs_deviation(center).map(f64::to_bits),
                    naive_mad(&flat).map(f64::to_bits),
                    "mad, size {size} step {step}"
                );
                // Also about a centre that is not the median (the MAD must
                // hold for any centre, e.g. one outside the window).
                let off = center + 7.25;
                let mut d: Vec<f64> = flat.iter().map(|x| (x - off).abs()).collect();
                assert_eq!(
                    sorted.median_abs_deviation(off).map(f64::to_bits),
                    median_of(&mut d).map(f64::to_bits)
                );
            }
        }
    }

    #[test]
    fn empty_and_missing_values() {
        let mut w = SortedWindow::default();
        assert_eq!(w.median(), None);
        assert_eq!(w.median_abs_deviation(1.0), None);
        assert!(!w.remove(1.0));
        w.insert(2.0);
        assert!(!w.remove(3.0));
        assert_eq!(w.median(), Some(2.0));
        assert_eq!(w.median_abs_deviation(2.0), Some(0.0));
        w.clear();
        assert!(w.is_empty());
    }
}
