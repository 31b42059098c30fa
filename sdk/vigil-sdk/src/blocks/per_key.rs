//! One model per series key (host, card, user…) with bounded memory: the
//! `key` / `max_keys` config of a detector in one block.
//!
//! [`KeyedModels`] joins [`KeySpec`] (which series a record belongs to) and
//! [`KeyedState`] (at most `max_keys` models, least recently used evicted)
//! and makes evictions visible: every alert can carry how many keys are
//! tracked and how many were evicted ([`KeyedModels::annotate`]), and the
//! broker log gets a warning when evictions start and each time their total
//! doubles ([`KeyedModels::end_batch`]), so a `max_keys` too small for the
//! key space shows up instead of silently resetting models.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::blocks::{IncidentEvent, Incidents, KeySpec, KeyedState, SeriesKeys};
use crate::{Alert, Batch, Result};

/// Alert field: keys tracked when the alert was raised.
pub const KEYS_TRACKED_FIELD: &str = "keys_tracked";
/// Alert field: keys evicted so far (models forgotten to stay within `max_keys`).
pub const KEYS_EVICTED_FIELD: &str = "keys_evicted";

/// A model of type `M` per series key, at most `max_keys` of them.
///
/// Snapshots hold only the [`KeyedState`] ([`state`](Self::state) /
/// [`set_state`](Self::set_state)): the key spec comes from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedModels<M> {
    spec: KeySpec,
    models: KeyedState<M>,
    /// Eviction total at the last log line (0: none logged yet).
    logged: u64,
}

impl<M> KeyedModels<M> {
    /// Models keyed as `spec` says, at most `max_keys` (at least 1).
    pub fn new(spec: KeySpec, max_keys: usize) -> Self {
        KeyedModels {
            spec,
            models: KeyedState::new(max_keys),
            logged: 0,
        }
    }

    /// How records are keyed.
    pub fn spec(&self) -> &KeySpec {
        &self.spec
    }

    /// The series key of each row of `batch` (an error naming `key` when
    /// the key column is missing or not a string column).
    pub fn keys<'a>(&self, batch: &'a Batch) -> Result<SeriesKeys<'a>> {
        self.spec.keys(batch)
    }

    /// The model of `key`, created with `f` if absent (evicting the least
    /// recently used key when full).
    pub fn model(&mut self, key: &[u8], f: impl FnOnce() -> M) -> &mut M {
        self.models.get_or_insert_with(key, f)
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Keys evicted so far (kept across snapshots).
    pub fn evictions(&self) -> u64 {
        self.models.evictions()
    }

    /// The per-key state, for snapshots.
    pub fn state(&self) -> &KeyedState<M> {
        &self.models
    }

    /// Replaces the per-key state (restore). Evictions already counted in
    /// `state` were logged by the instance that snapshotted it.
    pub fn set_state(&mut self, state: KeyedState<M>) {
        self.logged = state.evictions();
        self.models = state;
    }

    /// Adds [`KEYS_TRACKED_FIELD`] and [`KEYS_EVICTED_FIELD`] to `alert`.
    pub fn annotate(&self, alert: Alert) -> Alert {
        alert
            .field(KEYS_TRACKED_FIELD, self.len())
            .field(KEYS_EVICTED_FIELD, self.evictions())
    }

    /// Call once per batch: logs a warning when keys were evicted for the
    /// first time or their total has doubled since the last warning
    /// (a bounded number of lines however long the stream). Returns whether
    /// it logged.
    pub fn end_batch(&mut self) -> bool {
        let n = self.evictions();
        if n == 0 || n < self.logged.saturating_mul(2) {
            return false;
        }
        self.logged = n;
        crate::log::warn(&format!(
            "{n} keys evicted so far: more than max_keys = {} series are active, \
             and the least recently seen lose their model (raise max_keys if that is wrong)",
            self.models.max_keys()
        ));
        true
    }
}

/// What to do with one record of a detector with opt-in incidents
/// ([`KeyedIncidents::judge`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Nothing to report.
    Quiet,
    /// Raise the detector's alert; with incidents on, annotate it with the
    /// event ([`IncidentEvent::annotate`]).
    Alert(Option<IncidentEvent>),
    /// An incident closed: write this notice ([`IncidentEvent::notice`],
    /// keyed by the record's key).
    Notice(Alert),
}

/// Opt-in incident grouping per key for a detector built on
/// [`KeyedModels`] (configs `quiet` and `cooldown`): off, every hot record
/// alerts; on, a key's run of hot records is one [`Incidents`] incident.
///
/// The incident states are a second [`KeyedModels`] that must be touched
/// for the same keys in the same order as the detector's models (call
/// [`judge`](Self::judge) for every record, warm or not), so both evict
/// the same key at the same time. They are kept apart so that a detector's
/// snapshot with incidents off is exactly its models' state, as before the
/// option existed.
#[derive(Debug, Clone)]
pub struct KeyedIncidents {
    states: Option<KeyedModels<Incidents>>,
    quiet: usize,
    cooldown: usize,
}

impl KeyedIncidents {
    /// Incidents on when `quiet` is set (records below threshold that close
    /// one, at least 1); `cooldown` (records between openings) needs it.
    pub fn new(
        spec: KeySpec,
        max_keys: usize,
        quiet: Option<usize>,
        cooldown: usize,
    ) -> std::result::Result<Self, String> {
        match quiet {
            Some(0) => return Err("`quiet` must be at least 1 record".into()),
            None if cooldown > 0 => {
                return Err("`cooldown` needs `quiet` (it spaces incidents)".into())
            }
            _ => {}
        }
        Ok(KeyedIncidents {
            states: quiet.map(|_| KeyedModels::new(spec, max_keys)),
            quiet: quiet.unwrap_or(1),
            cooldown,
        })
    }

    /// Whether incidents are on.
    pub fn enabled(&self) -> bool {
        self.states.is_some()
    }

    /// The verdict on the record at `offset` of `key`: `ratio` is its
    /// score over the alert threshold (≥ 1: hot, for incidents), `hot`
    /// whether the detector alerts on it without incidents, `warm` whether
    /// it is scored at all.
    // Called for every record; wasm builds did not inline it on their own.
    #[inline]
    pub fn judge(&mut self, key: &[u8], offset: i64, ratio: f64, hot: bool, warm: bool) -> Verdict {
        let (quiet, cooldown) = (self.quiet, self.cooldown);
        let Some(states) = self.states.as_mut() else {
            return if warm && hot {
                Verdict::Alert(None)
            } else {
                Verdict::Quiet
            };
        };
        let inc = states.model(key, || Incidents::new(1.0, quiet, cooldown));
        if !warm {
            return Verdict::Quiet;
        }
        match inc.update(offset, ratio) {
            Some(ev @ IncidentEvent::Opened { .. }) => Verdict::Alert(Some(ev)),
            Some(ev @ IncidentEvent::Closed { .. }) => match ev.notice(offset) {
                Some(n) => Verdict::Notice(n.key(key)),
                None => Verdict::Quiet,
            },
            None => Verdict::Quiet,
        }
    }

    /// The snapshot of `models` and, when on, the incident states.
    pub fn snapshot<M: Serialize>(&self, models: &KeyedModels<M>) -> Result<Vec<u8>> {
        match &self.states {
            None => crate::state::to_bytes(models.state()),
            Some(inc) => crate::state::to_bytes(&(models.state(), inc.state())),
        }
    }

    /// Restores what [`snapshot`](Self::snapshot) wrote with the same
    /// `quiet` setting.
    pub fn restore<M: DeserializeOwned>(
        &mut self,
        models: &mut KeyedModels<M>,
        bytes: &[u8],
    ) -> Result<()> {
        match &mut self.states {
            None => models.set_state(crate::state::from_bytes(bytes)?),
            Some(inc) => {
                let (m, i) = crate::state::from_bytes(bytes)?;
                models.set_state(m);
                inc.set_state(i);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FieldType, Rows};
    use serde_json::json;

    #[test]
    fn models_per_column_value_with_bounded_keys_and_visible_evictions() {
        let mut b = Rows::new(0, 0).schema(&[("v", FieldType::F64), ("host", FieldType::Str)]);
        for i in 0..12 {
            b = b.row(i, None, json!({"v": i, "host": format!("h{}", i % 4)}));
        }
        let batch = b.build();
        let mut m: KeyedModels<u32> = KeyedModels::new(KeySpec::parse("host"), 3);
        let keys = m.keys(&batch).unwrap();
        for row in 0..12 {
            *m.model(keys.get(row), || 0) += 1;
        }
        // 4 hosts round-robin through 3 slots: every access after the
        // first three misses and evicts.
        assert_eq!((m.len(), m.evictions()), (3, 9));
        let a = m.annotate(Alert::new(0));
        assert_eq!(a.get_field(KEYS_TRACKED_FIELD), Some("3"));
        assert_eq!(a.get_field(KEYS_EVICTED_FIELD), Some("9"));
        // Logs at the first evictions, then only when the total doubles.
        assert!(m.end_batch());
        assert!(!m.end_batch());
        for row in 0..9 {
            *m.model(keys.get(row), || 0) += 1;
        }
        assert_eq!(m.evictions(), 18);
        assert!(m.end_batch());
        // A restored copy does not log again what was logged.
        let mut back: KeyedModels<u32> = KeyedModels::new(KeySpec::parse("host"), 3);
        let bytes = crate::state::to_bytes(m.state()).unwrap();
        back.set_state(crate::state::from_bytes(&bytes).unwrap());
        assert_eq!(back.evictions(), 18);
        assert!(!back.end_batch());
        assert_eq!(
            back.state().iter().collect::<Vec<_>>(),
            m.state().iter().collect::<Vec<_>>()
        );
    }

    #[test]
    fn missing_key_column_is_an_error_naming_key() {
        let batch = Rows::new(0, 0)
            .schema(&[("v", FieldType::F64)])
            .row(0, None, json!({"v": 1.0}))
            .build();
        let m: KeyedModels<u32> = KeyedModels::new(KeySpec::parse("host"), 3);
        let e = m.keys(&batch).err().unwrap().to_string();
        assert!(e.contains("`key`") && e.contains("host"), "{e}");
    }

    #[test]
    fn keyed_incidents_off_alerts_each_hot_record_on_groups_them() {
        let spec = KeySpec::parse("record_key");
        assert!(KeyedIncidents::new(spec.clone(), 4, Some(0), 0).is_err());
        let e = KeyedIncidents::new(spec.clone(), 4, None, 5).err().unwrap();
        assert!(e.contains("`cooldown` needs `quiet`"), "{e}");
        let mut off = KeyedIncidents::new(spec.clone(), 4, None, 0).unwrap();
        assert!(!off.enabled());
        assert_eq!(off.judge(b"k", 1, 2.0, true, true), Verdict::Alert(None));
        assert_eq!(off.judge(b"k", 2, 2.0, true, false), Verdict::Quiet);
        let mut on = KeyedIncidents::new(spec, 4, Some(2), 0).unwrap();
        let got: Vec<Verdict> = [2.0, 3.0, 0.1, 0.1, 0.1]
            .iter()
            .enumerate()
            .map(|(i, &r)| on.judge(b"k", i as i64, r, r >= 1.0, true))
            .collect();
        assert_eq!(
            got,
            vec![
                Verdict::Alert(Some(IncidentEvent::Opened { start: 0 })),
                Verdict::Quiet,
                Verdict::Quiet,
                Verdict::Notice(
                    IncidentEvent::Closed {
                        start: 0,
                        end: 1,
                        peak: 3.0,
                        records: 2
                    }
                    .notice(3)
                    .unwrap()
                    .key(b"k")
                ),
                Verdict::Quiet,
            ]
        );
        // The snapshot carries both states; restored, the next hot record
        // opens a new incident as in the original.
        let models: KeyedModels<u32> = KeyedModels::new(KeySpec::parse("record_key"), 4);
        let bytes = on.snapshot(&models).unwrap();
        let mut back = KeyedIncidents::new(KeySpec::parse("record_key"), 4, Some(2), 0).unwrap();
        let mut m2: KeyedModels<u32> = KeyedModels::new(KeySpec::parse("record_key"), 4);
        back.restore(&mut m2, &bytes).unwrap();
        assert_eq!(
            back.judge(b"k", 9, 5.0, true, true),
            on.judge(b"k", 9, 5.0, true, true)
        );
    }
}
