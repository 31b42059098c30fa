//! Event-time windows: tumbling (fixed, non-overlapping buckets) and
//! sliding (the last W milliseconds).
//!
//! Time is the records' own timestamps (`Batch::timestamps`), never a
//! clock, so replays give identical results.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// A window [`TumblingWindow`] has closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedWindow<A> {
    /// Start of the window (inclusive), ms.
    pub start_ms: i64,
    /// End of the window (exclusive), ms.
    pub end_ms: i64,
    /// What was aggregated into it.
    pub value: A,
}

/// Fixed, non-overlapping event-time windows of `size_ms`, aligned to the
/// epoch, each aggregating its events into an `A`.
///
/// A window `[s, s + size)` closes once an event at or after
/// `s + size + allowed_lateness` has been seen; until then, out-of-order
/// events still land in it. Events for an already closed window are dropped
/// and counted ([`dropped_late`](TumblingWindow::dropped_late)). Windows
/// without events are never created, so gaps produce no closed windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TumblingWindow<A> {
    size_ms: i64,
    lateness_ms: i64,
    /// Open windows by start time.
    open: BTreeMap<i64, A>,
    /// Largest event time seen.
    watermark: Option<i64>,
    dropped_late: u64,
}

impl<A: Default> TumblingWindow<A> {
    /// Windows of `size_ms` (at least 1) that accept events up to
    /// `allowed_lateness_ms` (at least 0) behind the latest event time.
    pub fn new(size_ms: i64, allowed_lateness_ms: i64) -> Self {
        TumblingWindow {
            size_ms: size_ms.max(1),
            lateness_ms: allowed_lateness_ms.max(0),
            open: BTreeMap::new(),
            watermark: None,
            dropped_late: 0,
        }
    }

    /// Start of the window holding `ts_ms`.
    pub fn window_start(&self, ts_ms: i64) -> i64 {
        ts_ms - ts_ms.rem_euclid(self.size_ms)
    }

    /// Adds an event at `ts_ms`, applying `update` to its window's
    /// aggregate, and returns the windows this event's time closed, oldest
    /// first. A late event is dropped (`update` is not called).
    pub fn add(&mut self, ts_ms: i64, update: impl FnOnce(&mut A)) -> Vec<ClosedWindow<A>> {
        let start = self.window_start(ts_ms);
        let closes_at = start
            .saturating_add(self.size_ms)
            .saturating_add(self.lateness_ms);
        if self.watermark.is_some_and(|w| closes_at <= w) {
            self.dropped_late += 1;
            return Vec::new();
        }
        update(self.open.entry(start).or_default());
        if self.watermark.is_none_or(|w| ts_ms > w) {
            self.watermark = Some(ts_ms);
            return self.close_until(ts_ms);
        }
        Vec::new()
    }

    /// Closes every window that `now_ms` makes final.
    fn close_until(&mut self, now_ms: i64) -> Vec<ClosedWindow<A>> {
        let mut closed = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            let start = *entry.key();
            let end = start.saturating_add(self.size_ms);
            if end.saturating_add(self.lateness_ms) > now_ms {
                break;
            }
            closed.push(ClosedWindow {
                start_ms: start,
                end_ms: end,
                value: entry.remove(),
            });
        }
        closed
    }

    /// Closes and returns every open window (end of stream).
    pub fn flush(&mut self) -> Vec<ClosedWindow<A>> {
        let size = self.size_ms;
        std::mem::take(&mut self.open)
            .into_iter()
            .map(|(start, value)| ClosedWindow {
                start_ms: start,
                end_ms: start.saturating_add(size),
                value,
            })
            .collect()
    }

    /// The open windows' aggregates by start time.
    pub fn open_windows(&self) -> impl Iterator<Item = (i64, &A)> {
        self.open.iter().map(|(s, a)| (*s, a))
    }

    /// Latest event time seen.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// Events dropped because their window had closed.
    pub fn dropped_late(&self) -> u64 {
        self.dropped_late
    }
}

/// Count, sum and mean of the values of the last `width_ms` of event time:
/// the events with `t > latest - width_ms`.
///
/// Events may arrive out of order within the window; events older than the
/// window are dropped and counted. The running sum is recomputed exactly
/// after as many evictions as the window holds, so it cannot drift.
/// Non-finite values are dropped too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlidingWindow {
    width_ms: i64,
    /// (time, value), sorted by time.
    events: VecDeque<(i64, f64)>,
    sum: f64,
    latest: Option<i64>,
    evictions_since_recompute: usize,
    dropped: u64,
}

impl SlidingWindow {
    /// A window over the last `width_ms` (at least 1) milliseconds.
    pub fn new(width_ms: i64) -> Self {
        SlidingWindow {
            width_ms: width_ms.max(1),
            events: VecDeque::new(),
            sum: 0.0,
            latest: None,
            evictions_since_recompute: 0,
            dropped: 0,
        }
    }

    /// Adds `value` at `ts_ms` and slides the window to the latest time.
    pub fn push(&mut self, ts_ms: i64, value: f64) {
        if !value.is_finite() || self.latest.is_some_and(|l| ts_ms <= l - self.width_ms) {
            self.dropped += 1;
            return;
        }
        // Out-of-order events go to their sorted place (after equal times,
        // so ties keep arrival order).
        let at = self.events.partition_point(|&(t, _)| t <= ts_ms);
        self.events.insert(at, (ts_ms, value));
        self.sum += value;
        self.advance_to(ts_ms);
    }

    /// Adds an event of value 1 (for counting and rates).
    pub fn push_event(&mut self, ts_ms: i64) {
        self.push(ts_ms, 1.0);
    }

    /// Slides the window to `now_ms` (if later than the latest event),
    /// evicting what falls out.
    pub fn advance_to(&mut self, now_ms: i64) {
        if self.latest.is_some_and(|l| now_ms <= l) {
            return;
        }
        self.latest = Some(now_ms);
        let cutoff = now_ms - self.width_ms;
        while let Some(&(t, v)) = self.events.front() {
            if t > cutoff {
                break;
            }
            self.events.pop_front();
            self.sum -= v;
            self.evictions_since_recompute += 1;
        }
        if self.evictions_since_recompute > self.events.len().max(64) {
            self.sum = self.events.iter().map(|&(_, v)| v).sum();
            self.evictions_since_recompute = 0;
        }
    }

    /// Number of events in the window.
    pub fn count(&self) -> usize {
        self.events.len()
    }

    /// Sum of the window's values (0 when empty).
    pub fn sum(&self) -> f64 {
        if self.events.is_empty() {
            0.0
        } else {
            self.sum
        }
    }

    /// Mean of the window's values (NaN when empty).
    pub fn mean(&self) -> f64 {
        if self.events.is_empty() {
            f64::NAN
        } else {
            self.sum / self.events.len() as f64
        }
    }

    /// Events per second over the window width.
    pub fn rate_per_sec(&self) -> f64 {
        self.events.len() as f64 * 1000.0 / self.width_ms as f64
    }

    /// The window width.
    pub fn width_ms(&self) -> i64 {
        self.width_ms
    }

    /// Latest time the window slid to.
    pub fn latest(&self) -> Option<i64> {
        self.latest
    }

    /// Events dropped as too old (or non-finite).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_closes_in_order_with_lateness() {
        let mut w: TumblingWindow<Vec<i64>> = TumblingWindow::new(10, 5);
        assert!(w.add(1, |a| a.push(1)).is_empty());
        assert!(w.add(9, |a| a.push(9)).is_empty());
        assert!(w.add(12, |a| a.push(12)).is_empty());
        // [0,10) closes at 10 + 5 = 15; 14 is not enough.
        assert!(w.add(14, |a| a.push(14)).is_empty());
        // Late but within lateness: lands in [0,10).
        assert!(w.add(3, |a| a.push(3)).is_empty());
        let closed = w.add(15, |a| a.push(15));
        assert_eq!(
            closed,
            vec![ClosedWindow {
                start_ms: 0,
                end_ms: 10,
                value: vec![1, 9, 3]
            }]
        );
        // Too late now: [0,10) is closed.
        assert!(w
            .add(4, |_| panic!("late events are not aggregated"))
            .is_empty());
        assert_eq!(w.dropped_late(), 1);
        // A jump closes several windows at once; gaps make none.
        let closed = w.add(100, |a| a.push(100));
        let starts: Vec<i64> = closed.iter().map(|c| c.start_ms).collect();
        assert_eq!(starts, vec![10]);
        assert_eq!(closed[0].value, vec![12, 14, 15]);
        assert_eq!(w.watermark(), Some(100));
        let rest = w.flush();
        assert_eq!(rest.len(), 1);
        assert_eq!((rest[0].start_ms, rest[0].end_ms), (100, 110));
    }

    #[test]
    fn tumbling_negative_times_and_snapshot() {
        let mut w: TumblingWindow<u32> = TumblingWindow::new(1000, 0);
        assert_eq!(w.window_start(-1), -1000);
        assert_eq!(w.window_start(-1000), -1000);
        w.add(-5, |c| *c += 1);
        let closed = w.add(0, |c| *c += 1);
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].start_ms, closed[0].value), (-1000, 1));
        let bytes = crate::state::to_bytes(&w).unwrap();
        let back: TumblingWindow<u32> = crate::state::from_bytes(&bytes).unwrap();
        assert_eq!(back, w);
        assert_eq!(back.open_windows().collect::<Vec<_>>(), vec![(0, &1)]);
    }

    #[test]
    fn sliding_matches_naive() {
        let mut w = SlidingWindow::new(1000);
        let mut seen: Vec<(i64, f64)> = Vec::new();
        // Mostly increasing times with some disorder.
        let xs = crate::blocks::stats::tests::noise(3000, 7);
        let mut t = 0i64;
        for (i, x) in xs.iter().enumerate() {
            t += (x * 50.0) as i64;
            let ts = if i % 10 == 3 { t - 300 } else { t };
            w.push(ts, x * 100.0);
            if !seen.is_empty() && ts <= seen.iter().map(|e| e.0).max().unwrap() - 1000 {
                continue;
            }
            seen.push((ts, x * 100.0));
            let latest = seen.iter().map(|e| e.0).max().unwrap();
            let live: Vec<f64> = seen
                .iter()
                .filter(|e| e.0 > latest - 1000)
                .map(|e| e.1)
                .collect();
            assert_eq!(w.count(), live.len(), "at {i}");
            let sum: f64 = live.iter().sum();
            assert!((w.sum() - sum).abs() < 1e-6, "sum at {i}");
            assert!((w.mean() - sum / live.len() as f64).abs() < 1e-9);
        }
        assert_eq!(w.dropped(), 0);
    }

    #[test]
    fn sliding_hand_computed() {
        let mut w = SlidingWindow::new(1000);
        assert_eq!(w.sum(), 0.0);
        assert!(w.mean().is_nan());
        w.push_event(0);
        w.push_event(500);
        w.push(999, 4.0);
        assert_eq!((w.count(), w.sum(), w.mean()), (3, 6.0, 2.0));
        assert_eq!(w.rate_per_sec(), 3.0);
        w.advance_to(1000); // evicts t=0 (0 <= 1000 - 1000)
        assert_eq!((w.count(), w.sum()), (2, 5.0));
        w.push(-1, 1.0); // older than the window
        assert_eq!(w.dropped(), 1);
        w.advance_to(5000);
        assert_eq!((w.count(), w.sum(), w.rate_per_sec()), (0, 0.0, 0.0));
    }
}
