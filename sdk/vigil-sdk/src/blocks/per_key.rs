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

use crate::blocks::{KeySpec, KeyedState, SeriesKeys};
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
}
