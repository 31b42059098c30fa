//! Tuning of the detector engine, kept apart from the components it is
//! given (log, object store, wasm host): settings are plain data that can
//! come from flags, environment or a file; components are passed to
//! [`Detectors::open_with`](crate::Detectors::open_with).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use vigil_storage::pool::Priority;

/// Detector engine settings. Every field has a default; unknown fields are
/// refused so a misspelled setting does not go unnoticed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct EngineSettings {
    /// Threads running live and shadow deployments' modules. `0` (the
    /// default) means one per core.
    pub detector_threads: usize,
    /// Niceness of those threads (Linux), so the broker's request path wins
    /// a contended CPU. Default `10`; -20..=19.
    pub detector_nice: i32,
    /// Threads running replay jobs. `0` (the default) means one fewer than
    /// the cores, at least one, so a replay cannot take every core.
    pub replay_threads: usize,
    /// Niceness of the replay threads, below live deployments. Default `19`.
    pub replay_nice: i32,
    /// Run live detector threads in Linux's `SCHED_IDLE` class: they get a
    /// core only when no request thread wants it. Default `false` (live
    /// alerts would wait behind any sustained load).
    pub detector_idle: bool,
    /// Run replay threads in Linux's `SCHED_IDLE` class, so a replay never
    /// holds a core a request thread wakes up on. Default `true`.
    pub replay_idle: bool,
    /// Cores a replay without a `cpu_share` of its own may use while
    /// clients are producing to the broker (within the last second); it
    /// runs flat out otherwise. Unset (the default) means a quarter of the
    /// cores, at least half a core; `0` lets replays run flat out always.
    pub replay_live_share: Option<f64>,
    /// Run a gated live runner's small module calls on its own task instead
    /// of the detector threads, while each such call stays under a
    /// millisecond of CPU (the producers' acknowledgements wait for them;
    /// design 0019, "Gated calls run where the runner is"). Default `true`;
    /// `false` keeps every module call on the detector threads.
    pub gated_inline: bool,
    /// Let a gated runner whose calls run inline hand its detector to its
    /// input partition, which calls it with each batch on the producer's
    /// own task as the batch is queued: no wake-up, no tail read (design
    /// 0019, "Detectors on the appending task"). Default `true`; `false`
    /// keeps every call on the runner's task. Needs `gated_inline`.
    pub gated_on_append: bool,
    /// How long a live runner without an ack gate lets records accumulate
    /// at its partition's tail while the partition is busy (its previous
    /// read less than this ago), in milliseconds: at most one module call
    /// per this interval and partition instead of one per group commit
    /// (design 0019, "A busy tail waits for company"). Alerts of such a
    /// deployment come up to this much later. Default `0` (read at every
    /// commit); at most `1000`.
    pub tail_linger_ms: u64,
    /// Records re-fed to a swapped-in module version that cannot read its
    /// predecessor's state, when the swap request does not say. Default
    /// `10000`; must not be negative.
    pub rebuild_records: i64,
    /// How often a runner commits its checkpoint while making progress, in
    /// milliseconds. Default `1000`; at least 1.
    pub checkpoint_interval_ms: u64,
    /// How long a runner waits before retrying a failed read, append or
    /// state load, in milliseconds. Default `500`; at least 1.
    pub retry_backoff_ms: u64,
    /// How long an admin command (deploy, pause, swap, ...) waits for its
    /// answer before reporting the store as unavailable, in milliseconds.
    /// The command itself is not cancelled: it applies once the log's
    /// write-ahead log gets through. Default `30000`; at least 1.
    pub command_timeout_ms: u64,
    /// Detector modules kept compiled in memory; beyond this the least
    /// recently used is dropped (deployments running it keep it) and
    /// compiled again from the store or the disk cache when next needed.
    /// Default `64`; 1..=4096.
    pub max_compiled_modules: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            detector_threads: 0,
            detector_nice: 10,
            replay_threads: 0,
            replay_nice: 19,
            detector_idle: false,
            replay_idle: true,
            replay_live_share: None,
            gated_inline: true,
            gated_on_append: true,
            tail_linger_ms: 0,
            rebuild_records: 10_000,
            checkpoint_interval_ms: 1000,
            retry_backoff_ms: 500,
            command_timeout_ms: 30_000,
            max_compiled_modules: 64,
        }
    }
}

/// A setting has a value the engine cannot use (not retriable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("engine setting {setting}: {message}")]
pub struct SettingsError {
    /// The setting's field name.
    pub setting: &'static str,
    /// What is wrong with its value.
    pub message: String,
}

impl SettingsError {
    /// Always [`vigil_api::ErrorKind::Invalid`]: the value must change.
    pub fn kind(&self) -> vigil_api::ErrorKind {
        vigil_api::ErrorKind::Invalid
    }
}

impl EngineSettings {
    /// Checks every value; the error names the first bad setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |setting, message: &str| {
            Err(SettingsError {
                setting,
                message: message.to_string(),
            })
        };
        let nice = -20..=19;
        if !nice.contains(&self.detector_nice) {
            return bad("detector_nice", "must be within -20..=19");
        }
        if !nice.contains(&self.replay_nice) {
            return bad("replay_nice", "must be within -20..=19");
        }
        if self
            .replay_live_share
            .is_some_and(|s| !(0.0..=1024.0).contains(&s))
        {
            return bad("replay_live_share", "must be within 0..=1024 cores");
        }
        if self.rebuild_records < 0 {
            return bad("rebuild_records", "must not be negative");
        }
        if self.checkpoint_interval_ms == 0 {
            return bad("checkpoint_interval_ms", "must be at least 1");
        }
        if self.retry_backoff_ms == 0 {
            return bad("retry_backoff_ms", "must be at least 1");
        }
        if self.tail_linger_ms > 1000 {
            return bad("tail_linger_ms", "must be at most 1000");
        }
        if self.command_timeout_ms == 0 {
            return bad("command_timeout_ms", "must be at least 1");
        }
        if !(1..=4096).contains(&self.max_compiled_modules) {
            return bad("max_compiled_modules", "must be within 1..=4096");
        }
        Ok(())
    }

    /// How live detector threads are scheduled.
    pub(crate) fn detector_priority(&self) -> Priority {
        Priority {
            nice: self.detector_nice,
            idle: self.detector_idle,
        }
    }

    /// How replay threads are scheduled.
    pub(crate) fn replay_priority(&self) -> Priority {
        Priority {
            nice: self.replay_nice,
            idle: self.replay_idle,
        }
    }

    /// Cores a replay keeps to while clients write, after applying the
    /// "unset = a quarter of the cores, at least half" default.
    pub(crate) fn replay_share_while_live(&self) -> f64 {
        self.replay_live_share
            .unwrap_or_else(|| (cores() as f64 / 4.0).max(0.5))
    }

    /// Live detector threads after applying the "0 = per core" default.
    pub(crate) fn live_threads(&self) -> usize {
        match self.detector_threads {
            0 => cores(),
            n => n,
        }
    }

    /// Replay threads after applying the "0 = cores - 1" default.
    pub(crate) fn replay_pool_threads(&self) -> usize {
        match self.replay_threads {
            0 => cores().saturating_sub(1).max(1),
            n => n,
        }
    }

    pub(crate) fn checkpoint_every(&self) -> Duration {
        Duration::from_millis(self.checkpoint_interval_ms)
    }

    pub(crate) fn tail_linger(&self) -> Duration {
        Duration::from_millis(self.tail_linger_ms)
    }

    pub(crate) fn retry_backoff(&self) -> Duration {
        Duration::from_millis(self.retry_backoff_ms)
    }

    pub(crate) fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let d = EngineSettings::default();
        d.validate().unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<EngineSettings>(&json).unwrap(), d);
        let partial: EngineSettings = serde_json::from_str(r#"{"rebuild-records": 5}"#).unwrap();
        assert_eq!(partial.rebuild_records, 5);
        assert_eq!(partial.checkpoint_interval_ms, 1000);
        assert!(
            partial.gated_inline,
            "gated calls run inline unless switched off"
        );
        let off: EngineSettings = serde_json::from_str(r#"{"gated-inline": false}"#).unwrap();
        assert!(!off.gated_inline);
        assert!(
            partial.gated_on_append,
            "gated detectors run on the appending task unless switched off"
        );
        let off: EngineSettings = serde_json::from_str(r#"{"gated-on-append": false}"#).unwrap();
        assert!(!off.gated_on_append);
        assert_eq!(
            partial.tail_linger_ms, 0,
            "runners read every commit unless told"
        );
        let on: EngineSettings = serde_json::from_str(r#"{"tail-linger-ms": 5}"#).unwrap();
        assert_eq!(on.tail_linger(), std::time::Duration::from_millis(5));
    }

    #[test]
    fn unknown_and_bad_settings_are_refused_by_name() {
        let e = serde_json::from_str::<EngineSettings>(r#"{"rebuild_record": 5}"#).unwrap_err();
        assert!(e.to_string().contains("rebuild_record"), "{e}");
        let s = EngineSettings {
            replay_nice: 25,
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().setting, "replay_nice");
        let s = EngineSettings {
            checkpoint_interval_ms: 0,
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().setting, "checkpoint_interval_ms");
        let s = EngineSettings {
            replay_live_share: Some(f64::NAN),
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().setting, "replay_live_share");
        let s = EngineSettings {
            tail_linger_ms: 1001,
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().setting, "tail_linger_ms");
    }
}
