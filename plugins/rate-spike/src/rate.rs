//! Per-key event-rate state: the events inside the sliding event-time window,
//! and an exponentially decayed count of the events that left it (the
//! baseline), so a burst is never compared against itself.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Most timestamps kept per key: beyond it the oldest move to the baseline
/// early. A key at this many events per window is spiking by any standard,
/// and the cap keeps one hot key from taking unbounded memory.
pub const MAX_WINDOW_EVENTS: usize = 4096;

/// Rate state of one key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyRate {
    /// Timestamps (ms) inside the window, ascending.
    window: VecDeque<i64>,
    /// Decayed count of events that left the window, as of `decay_ref`.
    decayed: f64,
    /// Time (ms) `decayed` refers to.
    decay_ref: i64,
    /// Earliest event time seen for the key (for the young-key correction).
    first_ts: i64,
    /// Newest event time seen for the key (the key's "now").
    now: i64,
    /// True while the key is above its alert level (one alert per episode).
    alerting: bool,
}

/// What the window looks like after an event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Events in the window ending at the key's newest event.
    pub count: usize,
    /// Events the baseline expects in one window.
    pub expected: f64,
    /// True when the key had no event before the current window.
    pub new_key: bool,
}

impl KeyRate {
    /// State for a key whose first event is at `ts`.
    pub fn new(ts: i64) -> Self {
        KeyRate {
            window: VecDeque::new(),
            decayed: 0.0,
            decay_ref: ts,
            first_ts: ts,
            now: ts,
            alerting: false,
        }
    }

    /// Folds an event at `ts` into the decayed baseline count.
    fn add_to_baseline(&mut self, ts: i64, half_life_ms: f64) {
        if ts >= self.decay_ref {
            self.decayed = self.decayed * decay(ts - self.decay_ref, half_life_ms) + 1.0;
            self.decay_ref = ts;
        } else {
            self.decayed += decay(self.decay_ref - ts, half_life_ms);
        }
    }

    /// Records an event at `ts` (event time; late events are placed in order)
    /// and returns the window count and the baseline's expectation.
    pub fn observe(&mut self, ts: i64, window_ms: i64, half_life_ms: f64) -> Observation {
        self.first_ts = self.first_ts.min(ts);
        self.now = self.now.max(ts);
        let start = self.now.saturating_sub(window_ms);
        if ts <= start {
            // Late past the window: it only informs the baseline.
            self.add_to_baseline(ts, half_life_ms);
        } else {
            let at = self.window.partition_point(|&t| t <= ts);
            self.window.insert(at, ts);
        }
        while let Some(&oldest) = self.window.front() {
            if oldest > start && self.window.len() <= MAX_WINDOW_EVENTS {
                break;
            }
            self.window.pop_front();
            self.add_to_baseline(oldest, half_life_ms);
        }
        let new_key = self.decayed == 0.0;
        Observation {
            count: self.window.len(),
            expected: self.expected_per_window(start, window_ms, half_life_ms),
            new_key,
        }
    }

    /// Baseline rate × window: the decayed count as of the window start,
    /// divided by the decay-weighted time the key has been observed (so a
    /// young key is not under-estimated, the way Adam corrects its moments).
    fn expected_per_window(&self, start: i64, window_ms: i64, half_life_ms: f64) -> f64 {
        let observed = start - self.first_ts;
        if observed <= 0 || self.decayed == 0.0 {
            return 0.0;
        }
        let at_start = self.decayed * decay((start - self.decay_ref).max(0), half_life_ms);
        let ln2 = std::f64::consts::LN_2;
        // ∫ 2^(-a/H) da over [0, observed] = H/ln2 · (1 - 2^(-observed/H)).
        let weight = half_life_ms / ln2 * (1.0 - decay(observed, half_life_ms));
        if weight <= 0.0 {
            return 0.0;
        }
        at_start / weight * window_ms as f64
    }

    /// Decides whether this observation starts an alert episode: fires once
    /// when `spiking` turns true, and re-arms when it turns false.
    pub fn should_alert(&mut self, spiking: bool) -> bool {
        let fire = spiking && !self.alerting;
        self.alerting = spiking;
        fire
    }

    /// The key's newest event time.
    pub fn now(&self) -> i64 {
        self.now
    }
}

/// `2^(-dt / half_life)`.
fn decay(dt_ms: i64, half_life_ms: f64) -> f64 {
    (-(dt_ms as f64) / half_life_ms * std::f64::consts::LN_2).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn steady_rate_is_learned() {
        // One event a minute for 3 hours, 60 s window, 1 h half-life.
        let mut k = KeyRate::new(0);
        let mut last = None;
        for i in 0..180 {
            last = Some(k.observe(i * MIN, MIN, 3_600_000.0));
        }
        let o = last.unwrap();
        assert_eq!(o.count, 1);
        assert!(!o.new_key);
        assert!((o.expected - 1.0).abs() < 0.05, "expected {}", o.expected);
    }

    #[test]
    fn burst_counts_only_window_and_baseline_excludes_it() {
        let mut k = KeyRate::new(0);
        for i in 0..120 {
            k.observe(i * MIN, MIN, 3_600_000.0);
        }
        let t0 = 120 * MIN;
        let mut o = k.observe(t0, MIN, 3_600_000.0);
        for i in 1..20 {
            o = k.observe(t0 + i * 500, MIN, 3_600_000.0);
        }
        assert_eq!(o.count, 20);
        assert!((o.expected - 1.0).abs() < 0.1, "expected {}", o.expected);
    }

    #[test]
    fn new_key_and_late_events() {
        let mut k = KeyRate::new(1_000);
        let o = k.observe(1_000, MIN, 3_600_000.0);
        assert!(o.new_key);
        assert_eq!(o.expected, 0.0);
        k.observe(100_000, MIN, 3_600_000.0);
        // A late event inside the window is counted, in order.
        let o = k.observe(90_000, MIN, 3_600_000.0);
        assert_eq!(o.count, 2);
        // One far behind goes to the baseline only.
        let o = k.observe(5_000, MIN, 3_600_000.0);
        assert_eq!(o.count, 2);
        assert!(!o.new_key);
        assert_eq!(k.now(), 100_000);
    }

    #[test]
    fn one_alert_per_episode() {
        let mut k = KeyRate::new(0);
        assert!(!k.should_alert(false));
        assert!(k.should_alert(true));
        assert!(!k.should_alert(true));
        assert!(!k.should_alert(false));
        assert!(k.should_alert(true));
    }

    #[test]
    fn window_is_capped() {
        let mut k = KeyRate::new(0);
        let mut o = k.observe(0, MIN, 3_600_000.0);
        for i in 0..(MAX_WINDOW_EVENTS as i64 + 100) {
            o = k.observe(i, MIN, 3_600_000.0);
        }
        assert_eq!(o.count, MAX_WINDOW_EVENTS);
    }
}
