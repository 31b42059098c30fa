//! Small numeric helpers: a bounded ring of `f64`, medians, and the Gaussian
//! tail function used by the anomaly likelihood.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// A bounded FIFO of `f64`: pushing into a full ring drops the oldest value,
/// so memory never grows past the capacity chosen at construction.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ring {
    cap: usize,
    buf: VecDeque<f64>,
}

impl Ring {
    /// An empty ring holding at most `cap` values (at least one).
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Ring {
            cap,
            buf: VecDeque::with_capacity(cap.min(4096)),
        }
    }

    /// Appends `v`, returning the value evicted to make room, if any.
    pub fn push(&mut self, v: f64) -> Option<f64> {
        let evicted = if self.buf.len() == self.cap {
            self.buf.pop_front()
        } else {
            None
        };
        self.buf.push_back(v);
        evicted
    }

    /// Number of values held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing has been pushed yet.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// True when the ring holds `cap` values.
    pub fn is_full(&self) -> bool {
        self.buf.len() == self.cap
    }

    /// The value `lag` steps back: `back(0)` is the newest.
    pub fn back(&self, lag: usize) -> Option<f64> {
        let n = self.buf.len();
        if lag < n {
            self.buf.get(n - 1 - lag).copied()
        } else {
            None
        }
    }

    /// Iterates oldest to newest.
    pub fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        self.buf.iter().copied()
    }

    /// Median of the newest `n` values (all if fewer), or `None` when empty.
    pub fn median_last(&self, n: usize, scratch: &mut Vec<f64>) -> Option<f64> {
        scratch.clear();
        let len = self.buf.len();
        scratch.extend(self.buf.iter().skip(len.saturating_sub(n)).copied());
        median_in_place(scratch)
    }
}

/// Median of `xs` (NaNs must already be filtered out); reorders `xs`.
pub fn median_in_place(xs: &mut [f64]) -> Option<f64> {
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

/// Upper-tail probability of the standard normal (the SDK's, shared with
/// the other detectors).
pub use vigil_sdk::blocks::normal_tail;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_evicts_oldest_and_indexes_from_newest() {
        let mut r = Ring::new(3);
        assert_eq!(r.push(1.0), None);
        r.push(2.0);
        r.push(3.0);
        assert_eq!(r.push(4.0), Some(1.0));
        assert_eq!(r.back(0), Some(4.0));
        assert_eq!(r.back(2), Some(2.0));
        assert_eq!(r.back(3), None);
        let mut s = Vec::new();
        assert_eq!(r.median_last(2, &mut s), Some(3.5));
        assert_eq!(r.median_last(10, &mut s), Some(3.0));
    }
}
