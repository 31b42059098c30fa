//! How far a series' values have strayed from their recent median so far
//! (design 0007, session 20, round 25).
//!
//! A range seen for only a few days is extended by every burst the series
//! produces: on bursty count data (news mentions) most young breakouts are
//! ordinary, unlabelled bursts, while on a calm server metric a small young
//! breakout is the anomaly. Neither the breakout's own area nor a count of
//! the series' bursts tells them apart (rounds 22-25); the breakout's
//! excursion against the series' own 99th-percentile excursion does. The
//! excursions are kept in a fixed log-spaced histogram so the state stays
//! bounded however long the series runs.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Records the median and spread of an excursion are taken over: two hours
/// of 5-minute records, shorter than a news burst's decay is long.
const WINDOW: usize = 24;
/// Histogram resolution: a quarter octave (factor 1.19) is finer than the
/// ratios the young-range rule compares (1.25 and up).
const BINS_PER_OCTAVE: f64 = 4.0;
/// Lowest bin edge, 2^-4 robust deviations; smaller excursions (and 0) land
/// in the first bin.
const LOW_OCTAVE: f64 = -4.0;
/// 2^-4 .. 2^20 robust deviations; larger ones land in the last bin.
const BINS: usize = 96;
/// The spread's floor as a share of the median: a flat stretch (idle CPU)
/// would otherwise make every wobble an infinite excursion.
const FLOOR_SHARE: f64 = 0.01;

/// The last values and the histogram of their excursions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BurstMemory {
    last: VecDeque<f64>,
    counts: Vec<u32>,
    total: u32,
}

impl BurstMemory {
    /// `|value - median|` of the last `WINDOW` values in robust deviations
    /// (1.4826 MAD, floored), or `None` before the window is full.
    pub fn excursion(&self, value: f64) -> Option<f64> {
        if self.last.len() < WINDOW || !value.is_finite() {
            return None;
        }
        // On the stack: this runs for every record of a young series.
        let mut w = [0.0; WINDOW];
        for (slot, x) in w.iter_mut().zip(&self.last) {
            *slot = *x;
        }
        w.sort_by(f64::total_cmp);
        let med = w[WINDOW / 2];
        let mut d = w.map(|x| (x - med).abs());
        d.sort_by(f64::total_cmp);
        let floor = (1.4826 * d[WINDOW / 2])
            .max(FLOOR_SHARE * med.abs())
            .max(1e-9);
        Some((value - med).abs() / floor)
    }

    /// True when nothing was recorded (or it was dropped).
    pub fn is_empty(&self) -> bool {
        self.last.is_empty() && self.total == 0
    }

    /// Adds `value`'s excursion (once the window is full) and the value.
    pub fn record(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        if let Some(e) = self.excursion(value) {
            if self.counts.len() != BINS {
                self.counts = vec![0; BINS];
            }
            let b = if e > 0.0 {
                ((e.log2() - LOW_OCTAVE) * BINS_PER_OCTAVE)
                    .floor()
                    .clamp(0.0, (BINS - 1) as f64) as usize
            } else {
                0
            };
            self.counts[b] = self.counts[b].saturating_add(1);
            self.total = self.total.saturating_add(1);
        }
        // `while`: a restored state may carry a longer window.
        while self.last.len() >= WINDOW {
            self.last.pop_front();
        }
        self.last.push_back(value);
    }

    /// The `q` quantile of the recorded excursions, interpolated
    /// geometrically inside its bin; `None` before any was recorded.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total == 0 || self.counts.len() != BINS {
            return None;
        }
        let rank = ((q * f64::from(self.total)).floor()).min(f64::from(self.total) - 1.0);
        let mut below = 0.0;
        for (b, &c) in self.counts.iter().enumerate() {
            let c = f64::from(c);
            if below + c > rank {
                let frac = (rank - below + 0.5) / c;
                return Some(2f64.powf(LOW_OCTAVE + (b as f64 + frac) / BINS_PER_OCTAVE));
            }
            below += c;
        }
        None
    }

    /// True when `value` strays from the recent median by less than
    /// `ratio` times the series' 99th-percentile excursion so far: a burst
    /// no larger than the ones the series keeps producing.
    pub fn ordinary(&self, value: f64, ratio: f64) -> bool {
        match (self.excursion(value), self.quantile(0.99)) {
            (Some(e), Some(q)) => q > 0.0 && e < ratio * q,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A series that bursts to 3x every few hours: a young breakout to 3.3x is
    /// ordinary for it, while the same rise on a calm series is not.
    #[test]
    fn a_bursty_series_needs_a_bigger_excursion_than_a_calm_one() {
        let mut bursty = BurstMemory::default();
        let mut calm = BurstMemory::default();
        for i in 0..2000 {
            let wobble = f64::from((i * 7919 % 13) as u32) - 6.0;
            let burst = if i % 40 < 3 { 200.0 } else { 0.0 };
            bursty.record(100.0 + wobble + burst);
            calm.record(100.0 + wobble);
        }
        let rise = 100.0 + 230.0;
        assert!(bursty.ordinary(rise, 1.25));
        assert!(!calm.ordinary(rise, 1.25));
        // A much larger rise is not ordinary even for the bursty series.
        assert!(!bursty.ordinary(100.0 + 2000.0, 1.25));
    }

    #[test]
    fn a_restored_window_longer_than_its_size_is_trimmed() {
        let mut m = BurstMemory {
            last: (0..100).map(f64::from).collect(),
            counts: vec![1; 3],
            total: 3,
        };
        m.record(5.0);
        assert_eq!(m.last.len(), WINDOW);
        assert_eq!(
            m.counts.len(),
            BINS,
            "a histogram of the wrong size restarts"
        );
    }

    #[test]
    fn the_histogram_quantile_is_close_to_the_exact_one() {
        let mut m = BurstMemory::default();
        let mut exact = Vec::new();
        for i in 0..3000u32 {
            let v = 50.0 + f64::from(i * 2654435761u32 % 97) / 9.0;
            if let Some(e) = m.excursion(v) {
                exact.push(e);
            }
            m.record(v);
        }
        exact.sort_by(f64::total_cmp);
        let want = exact[(0.99 * exact.len() as f64) as usize];
        let got = m.quantile(0.99).unwrap_or(0.0);
        assert!((got / want - 1.0).abs() < 0.2, "got {got}, want {want}");
    }
}
