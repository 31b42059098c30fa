//! The broker's small key/value state (committed group offsets, and later
//! other coordinator state), kept durable by the WAL and snapshotted into
//! state objects the manifest references ([`crate::state`]) on every upload
//! that changed it.
//!
//! The map is owned by the WAL writer and changed at the point an entry is
//! written, so a snapshot taken when the writer rolls a segment reflects
//! exactly the entries in the sealed segments. Recovery replays the WAL's
//! entries over the uploaded snapshot in order, which yields the latest value
//! of every key even when some replayed entries are older than the snapshot.

use std::collections::BTreeMap;

/// Key → value. Values are opaque strings (JSON, by convention).
pub type KvMap = BTreeMap<String, String>;

/// Applies one change.
pub fn apply(map: &mut KvMap, key: &str, value: Option<&str>) {
    match value {
        Some(v) => {
            map.insert(key.to_string(), v.to_string());
        }
        None => {
            map.remove(key);
        }
    }
}
