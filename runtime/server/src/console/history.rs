//! The console's time-series history: a ring of points per named series,
//! bounded in points per series and in series, so that plots can show the
//! last minutes of a value without the broker growing with its uptime or
//! with the number of deployments ever made.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use vigil_api::console::{History as HistoryView, Series};

/// Sampling period of a running broker.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// Points kept per series: 30 minutes at [`INTERVAL`].
pub const CAPACITY: usize = 900;
/// Series kept at most; room for about 120 deployments' four series plus the
/// broker's own.
pub const MAX_SERIES: usize = 512;

/// Bounded history of named series (see the module docs).
#[derive(Debug)]
pub struct History {
    interval: Duration,
    capacity: usize,
    max_series: usize,
    series: Mutex<BTreeMap<String, VecDeque<(i64, f64)>>>,
}

impl Default for History {
    fn default() -> Self {
        History::new(INTERVAL, CAPACITY, MAX_SERIES)
    }
}

impl History {
    /// An empty history keeping at most `capacity` points in each of at most
    /// `max_series` series (both at least 1), sampled every `interval`.
    pub fn new(interval: Duration, capacity: usize, max_series: usize) -> Self {
        History {
            interval,
            capacity: capacity.max(1),
            max_series: max_series.max(1),
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Sampling period.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Appends `(at_ms, value)` to series `name`, dropping its oldest point
    /// when full. A new series past the series cap replaces the series whose
    /// newest point is oldest (a deployment that is gone stops being
    /// sampled, so its series go first). Non-finite values are skipped:
    /// JSON cannot carry them and a plot has nothing to draw for them.
    pub fn record(&self, name: &str, at_ms: i64, value: f64) {
        if !value.is_finite() {
            return;
        }
        // A poisoned lock holds no invariant a history could break.
        let mut all = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        if !all.contains_key(name) && all.len() >= self.max_series {
            let stalest = all
                .iter()
                .min_by_key(|(_, points)| points.back().map_or(i64::MIN, |p| p.0))
                .map(|(n, _)| n.clone());
            if let Some(stalest) = stalest {
                all.remove(&stalest);
            }
        }
        let points = all.entry(name.to_string()).or_default();
        while points.len() >= self.capacity {
            points.pop_front();
        }
        points.push_back((at_ms, value));
    }

    /// Every series whose name starts with `prefix`, by name, oldest point
    /// first.
    pub fn view(&self, prefix: &str) -> HistoryView {
        let all = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let series = all
            .range(prefix.to_string()..)
            .take_while(|(n, _)| n.starts_with(prefix))
            .map(|(n, points)| Series {
                name: n.clone(),
                points: points.iter().copied().collect(),
            })
            .collect();
        HistoryView {
            interval_ms: u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX),
            capacity: self.capacity,
            series,
        }
    }
}

/// Per-second rates of cumulative counters between two samples.
#[derive(Debug, Default)]
pub struct Rates {
    last: HashMap<String, (i64, f64)>,
    seen: Vec<String>,
}

impl Rates {
    /// The rate of counter `name` since its previous total, `None` on its
    /// first sample, when no time passed, or when it went down (a counter
    /// that restarted, e.g. a deployment made again under the same name).
    pub fn rate(&mut self, name: &str, at_ms: i64, total: f64) -> Option<f64> {
        self.seen.push(name.to_string());
        let before = self.last.insert(name.to_string(), (at_ms, total))?;
        let (dt, dv) = (at_ms - before.0, total - before.1);
        (dt > 0 && dv >= 0.0).then(|| dv * 1000.0 / dt as f64)
    }

    /// Forgets counters not asked about since the last call, so that gone
    /// deployments do not stay here for good.
    pub fn sweep(&mut self) {
        let seen: std::collections::HashSet<String> = self.seen.drain(..).collect();
        self.last.retain(|k, _| seen.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_keeps_only_its_newest_points() {
        let h = History::new(INTERVAL, 3, 10);
        for i in 0..10 {
            h.record("a", i, i as f64);
        }
        let v = h.view("");
        assert_eq!(v.series.len(), 1);
        assert_eq!(v.series[0].points, vec![(7, 7.0), (8, 8.0), (9, 9.0)]);
        assert_eq!(v.capacity, 3);
    }

    #[test]
    fn past_the_series_cap_the_stalest_series_goes() {
        let h = History::new(INTERVAL, 5, 2);
        h.record("old", 1, 1.0);
        h.record("fresh", 5, 1.0);
        h.record("new", 6, 1.0);
        let names: Vec<String> = h.view("").series.into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["fresh".to_string(), "new".to_string()]);
        // Recording into a series that exists never evicts.
        h.record("fresh", 7, 2.0);
        assert_eq!(h.view("").series.len(), 2);
    }

    #[test]
    fn many_series_and_points_stay_within_both_bounds() {
        let h = History::new(INTERVAL, 4, 8);
        for t in 0..100 {
            for s in 0..50 {
                h.record(&format!("s{s}"), t, 1.0);
            }
        }
        let v = h.view("");
        assert!(v.series.len() <= 8, "{}", v.series.len());
        assert!(v.series.iter().all(|s| s.points.len() <= 4));
    }

    #[test]
    fn view_filters_by_prefix_and_non_finite_values_are_skipped() {
        let h = History::default();
        h.record("deployment.a.lag", 1, 1.0);
        h.record("deployment.b.lag", 1, 2.0);
        h.record("broker.produce_per_sec", 1, f64::NAN);
        h.record("deployment.a.lag", 2, f64::INFINITY);
        let v = h.view("deployment.a.");
        assert_eq!(v.series.len(), 1);
        assert_eq!(v.series[0].points, vec![(1, 1.0)]);
        assert!(h.view("broker.").series.is_empty());
    }

    #[test]
    fn rates_need_two_samples_and_a_counter_that_does_not_go_down() {
        let mut r = Rates::default();
        assert_eq!(r.rate("c", 1000, 10.0), None);
        assert_eq!(r.rate("c", 3000, 30.0), Some(10.0));
        assert_eq!(r.rate("c", 3000, 40.0), None, "no time passed");
        assert_eq!(r.rate("c", 4000, 5.0), None, "went down");
        r.sweep();
        r.sweep();
        assert_eq!(
            r.rate("c", 5000, 10.0),
            None,
            "forgotten after a sweep unasked"
        );
    }
}
