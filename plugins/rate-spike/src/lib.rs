//! vigil detector plugin **rate-spike**: per-key event velocity (e.g. card
//! transactions per minute). For each key it counts the events in a sliding
//! *event-time* window (record timestamps, not arrival) and compares the count
//! with that key's own baseline: an exponentially decayed rate of its earlier
//! events (those already out of the window, so a burst never inflates its own
//! baseline). An alert fires when the count reaches both `min_events` (a
//! global floor) and `factor` × the baseline's expected count per window —
//! which also catches a key never seen before that bursts (`new_key: true`).
//! One alert per episode: the key re-arms once its count falls back below
//! the alert level. Config fields: `window_ms` (60000), `factor` (3.0),
//! `min_events` (5), `baseline_half_life_ms` (3600000), `key` (`"record_key"`,
//! the default, or a string column), `max_keys` (100000). Severity grows with
//! count / alert level (medium < 1.5×, high < 3×, else critical); alerts carry
//! `count`, `expected` (with `expected_low` 0 and `expected_high` the count
//! that alerts), `window_ms`, `rate_per_sec`, `factor` and `new_key`.
//!
//! ```json
//! {"window_ms": 60000, "factor": 3.0, "min_events": 5, "baseline_half_life_ms": 3600000}
//! ```

pub mod rate;

use serde::Deserialize;
use vigil_sdk::arrow_array::Array;
use vigil_sdk::blocks::KeyedState;
use vigil_sdk::{bail, detector, state, Alert, Alerts, Batch, Detector, Result, Severity};

use rate::KeyRate;

/// Config JSON of the detector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Length of the sliding event-time window.
    #[serde(default = "default_window_ms")]
    pub window_ms: i64,
    /// Alert when the window count is at least this many times the baseline.
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// ... and at least this many events.
    #[serde(default = "default_min_events")]
    pub min_events: usize,
    /// Half-life of the baseline's memory of past events.
    #[serde(default = "default_half_life")]
    pub baseline_half_life_ms: f64,
    /// `"record_key"` (default) or a string column that identifies the key.
    #[serde(default = "default_key")]
    pub key: String,
    /// Most keys tracked at once.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn default_window_ms() -> i64 {
    60_000
}
fn default_factor() -> f64 {
    3.0
}
fn default_min_events() -> usize {
    5
}
fn default_half_life() -> f64 {
    3_600_000.0
}
fn default_key() -> String {
    "record_key".into()
}
fn default_max_keys() -> usize {
    100_000
}

/// The detector: rate state per key.
#[derive(Debug)]
pub struct RateSpike {
    cfg: Config,
    keys: KeyedState<KeyRate>,
}

#[detector]
impl Detector for RateSpike {
    type Config = Config;

    fn new(cfg: Config) -> Result<Self> {
        if cfg.window_ms <= 0 {
            bail!("`window_ms` must be positive, got {}", cfg.window_ms);
        }
        if !(cfg.factor.is_finite() && cfg.factor >= 1.0) {
            bail!("`factor` must be a number ≥ 1, got {}", cfg.factor);
        }
        if cfg.min_events < 2 || cfg.min_events > rate::MAX_WINDOW_EVENTS {
            bail!(
                "`min_events` must be in 2..={}, got {}",
                rate::MAX_WINDOW_EVENTS,
                cfg.min_events
            );
        }
        if !(cfg.baseline_half_life_ms.is_finite()
            && cfg.baseline_half_life_ms >= cfg.window_ms as f64)
        {
            bail!(
                "`baseline_half_life_ms` must be at least `window_ms` ({}), got {}",
                cfg.window_ms,
                cfg.baseline_half_life_ms
            );
        }
        if cfg.key.is_empty() {
            bail!("`key` must be \"record_key\" or a string column name");
        }
        if cfg.max_keys == 0 {
            bail!("`max_keys` must be at least 1");
        }
        Ok(RateSpike {
            keys: KeyedState::new(cfg.max_keys),
            cfg,
        })
    }

    fn process(&mut self, batch: &Batch, alerts: &mut Alerts) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let key_col = match self.cfg.key.as_str() {
            "record_key" => None,
            col => Some(batch.str(col).map_err(|e| e.context("`key`"))?),
        };
        let cfg = &self.cfg;
        for (row, (&ts, &offset)) in batch.timestamps().iter().zip(batch.offsets()).enumerate() {
            let key: &[u8] = match key_col {
                Some(c) if c.is_valid(row) => c.value(row).as_bytes(),
                // Events without a key are not anyone's velocity.
                Some(_) => continue,
                None => match batch.key(row) {
                    Some(k) => k,
                    None => continue,
                },
            };
            let st = self.keys.get_or_insert_with(key, || KeyRate::new(ts));
            let o = st.observe(ts, cfg.window_ms, cfg.baseline_half_life_ms);
            // `max` as a comparison: `f64::max` is an `fmax` call in wasm.
            let floor = cfg.min_events as f64;
            let scaled = cfg.factor * o.expected;
            let level = if scaled > floor { scaled } else { floor };
            if !st.should_alert(o.count as f64 >= level) {
                continue;
            }
            let ratio = o.count as f64 / level;
            let severity = match ratio {
                r if r >= 3.0 => Severity::Critical,
                r if r >= 1.5 => Severity::High,
                _ => Severity::Medium,
            };
            let secs = cfg.window_ms as f64 / 1000.0;
            let why = if o.new_key {
                "a key with no earlier events".to_string()
            } else {
                format!(
                    "{:.1}× its baseline of {:.2}",
                    o.count as f64 / o.expected.max(1e-9),
                    o.expected
                )
            };
            alerts.push(
                Alert::new(offset)
                    .key(key)
                    .severity(severity)
                    .score(o.count as f64 / o.expected.max(1.0))
                    .message(format!("{} events in {secs} s: {why}", o.count))
                    .field("count", o.count)
                    // Counts below `level` would not have alerted.
                    .expected(o.expected, 0.0, level)
                    .field("window_ms", cfg.window_ms)
                    .field("rate_per_sec", o.count as f64 / secs)
                    .field("factor", cfg.factor)
                    .field("new_key", o.new_key),
            );
        }
        Ok(())
    }

    fn snapshot(&self) -> Option<Result<Vec<u8>>> {
        Some(state::to_bytes(&self.keys))
    }

    fn restore(&mut self, bytes: &[u8]) -> Option<Result<()>> {
        Some(state::from_bytes(bytes).map(|k| self.keys = k))
    }
}

#[cfg(test)]
mod tests;
