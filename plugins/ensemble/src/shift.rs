//! A sliding history split into a recent part and the reference before
//! it, each kept sorted, for level-shift statistics at any scale.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::median::SortedWindow;

/// The last `recent + reference` values; only the values are state, the
/// sorted halves are rebuilt after a restore.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShiftWindow {
    hist: VecDeque<f64>,
    #[serde(skip)]
    recent_sorted: SortedWindow,
    #[serde(skip)]
    ref_sorted: SortedWindow,
}

/// Medians of one full history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftMedians {
    /// Median of the recent part.
    pub recent: f64,
    /// Median of the reference part.
    pub reference: f64,
    /// Median absolute deviation of the reference about its median.
    pub mad: f64,
}

impl ShiftWindow {
    /// Adds `value` to a history of `m` recent and `r` reference values;
    /// the medians once the history is full.
    pub fn push(&mut self, m: usize, r: usize, value: f64) -> Option<ShiftMedians> {
        if self.recent_sorted.len() + self.ref_sorted.len() != self.hist.len() {
            self.rebuild(m);
        }
        if self.hist.len() >= m + r {
            if let Some(old) = self.hist.pop_front() {
                self.ref_sorted.remove(old);
            }
        }
        self.hist.push_back(value);
        self.recent_sorted.insert(value);
        if self.hist.len() > m {
            let moved = self.hist[self.hist.len() - 1 - m];
            self.recent_sorted.remove(moved);
            self.ref_sorted.insert(moved);
        }
        if self.hist.len() < m + r {
            return None;
        }
        let recent = self.recent_sorted.median()?;
        let reference = self.ref_sorted.median()?;
        let mad = self.ref_sorted.median_abs_deviation(reference)?;
        Some(ShiftMedians {
            recent,
            reference,
            mad,
        })
    }

    fn rebuild(&mut self, m: usize) {
        self.recent_sorted.clear();
        self.ref_sorted.clear();
        let split = self.hist.len().saturating_sub(m);
        for (i, &x) in self.hist.iter().enumerate() {
            if i < split {
                self.ref_sorted.insert(x);
            } else {
                self.recent_sorted.insert(x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::median::median_of;

    #[test]
    fn a_bare_history_restores_as_a_shift_window() {
        // State format "4" stored the history as a plain `VecDeque<f64>`;
        // the snapshot encoding of a one-field struct is the same bytes.
        let hist: VecDeque<f64> = (0..30).map(|i| (i % 7) as f64).collect();
        let bytes = vigil_sdk::state::to_bytes(&hist).unwrap();
        let mut w: ShiftWindow = vigil_sdk::state::from_bytes(&bytes).unwrap();
        let mut fresh = ShiftWindow::default();
        for &x in &hist {
            fresh.push(10, 20, x);
        }
        assert_eq!(w.push(10, 20, 3.0), fresh.push(10, 20, 3.0));
        assert_eq!(w.hist, fresh.hist);
    }

    #[test]
    fn medians_equal_selection_over_the_two_parts() {
        let (m, r) = (5, 12);
        let mut w = ShiftWindow::default();
        let mut all = Vec::new();
        let mut x: u64 = 12345;
        for step in 0..500 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = ((x >> 40) % 7) as f64; // frequent ties
            all.push(v);
            let got = w.push(m, r, v);
            if all.len() < m + r {
                assert_eq!(got, None, "step {step}");
                continue;
            }
            let hist = &all[all.len() - m - r..];
            let mut refs = hist[..r].to_vec();
            let mut recent = hist[r..].to_vec();
            let reference = median_of(&mut refs).unwrap_or(f64::NAN);
            let mut dev: Vec<f64> = hist[..r].iter().map(|y| (y - reference).abs()).collect();
            let want = ShiftMedians {
                recent: median_of(&mut recent).unwrap_or(f64::NAN),
                reference,
                mad: median_of(&mut dev).unwrap_or(f64::NAN),
            };
            assert_eq!(got, Some(want), "step {step}");
        }
    }
}
