//! Where a deployment's progress is kept, and how a restarted runner finds
//! out what it already did.
//!
//! Exactly-once alerts without transactions: each input batch's alerts are
//! appended as one Kafka batch whose records carry `vigil.input.end` (the
//! last input offset of that batch). A checkpoint (input offset, detector
//! state, the alert partition's high watermark) is committed every second.
//! After a crash the runner restores the checkpoint, scans the alert
//! partition from the checkpointed high watermark for its own records, and
//! re-processes input from the checkpoint with alerts at or below the highest
//! `vigil.input.end` found suppressed: they are already in the topic.
//! Detectors are deterministic (no clock, no randomness in the sandbox), so
//! the re-run computes the same alerts.

use std::sync::Arc;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use vigil_storage::{paths, Log, Partition};

use super::output::{header, headers, scan_records, Provenance};
use super::DetectorError;

/// Committed progress of one input partition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    /// Next input offset to process.
    pub offset: i64,
    /// High watermark of the alert partition when this was committed; the
    /// recovery scan starts here.
    pub alert_hw: i64,
    /// Object key of the detector state at `offset`, if it can snapshot.
    pub state: Option<String>,
    /// Module that produced the state.
    pub module: String,
    /// Input offsets up to here already have their alerts in the topic: a
    /// recovery found them and the checkpoint has not moved past them yet
    /// (the scan from `alert_hw` alone would no longer see those alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerted_through: Option<i64>,
    /// First input offset this deployment covers here.
    #[serde(default)]
    pub start: i64,
    /// Exclusive end of a bounded run (replays); `None` follows the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
    /// Records processed up to `offset`, over the deployment's life.
    #[serde(default)]
    pub records: u64,
    /// Alerts written for input up to `offset`, over the deployment's life.
    #[serde(default)]
    pub alerts: u64,
    /// Which module scored which offsets: each entry from its `from` up to
    /// the next entry's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<VersionSpan>,
    /// Set by a hot swap until the new module's first commit: `state` may be
    /// the previous module's, and if the new one declines it, it is re-warmed
    /// on up to this many records before `offset` with their alerts
    /// suppressed (they were scored by the previous version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_rebuild: Option<i64>,
}

/// The start of the offsets one module version scored on a partition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VersionSpan {
    /// Module hash.
    pub module: String,
    /// `NAME@VERSION` from the module's metadata, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// First input offset it scored.
    pub from: i64,
    /// How its state began after a hot swap: carried over from the previous
    /// version, or rebuilt from recent input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

impl Checkpoint {
    /// A fresh checkpoint for a partition starting at `offset`.
    pub fn new(
        offset: i64,
        alert_hw: i64,
        module: &str,
        label: Option<String>,
        end: Option<i64>,
    ) -> Self {
        Checkpoint {
            offset,
            alert_hw,
            state: None,
            module: module.to_string(),
            alerted_through: None,
            start: offset,
            end,
            records: 0,
            alerts: 0,
            versions: vec![VersionSpan {
                module: module.to_string(),
                label,
                from: offset,
                state: None,
            }],
            swap_rebuild: None,
        }
    }

    /// Whether a bounded run has covered its range.
    pub fn done(&self) -> bool {
        self.end.is_some_and(|e| self.offset >= e)
    }

    /// Decodes the checkpoint stored under `key`; a failure names the key.
    pub fn decode(key: &str, json: &str) -> Result<Self, DetectorError> {
        serde_json::from_str(json).map_err(|e| DetectorError::Corrupt {
            key: key.to_string(),
            message: format!("unreadable checkpoint: {e}"),
        })
    }

    /// The JSON stored for this checkpoint.
    pub fn encode(&self) -> Result<String, DetectorError> {
        serde_json::to_string(self).map_err(|e| DetectorError::encode("a checkpoint", e))
    }
}

/// Stores a state snapshot and returns its key.
pub async fn put_state(
    store: &Arc<dyn ObjectStore>,
    name: &str,
    p: &Partition,
    offset: i64,
    state: Vec<u8>,
) -> Result<String, DetectorError> {
    let key = paths::deployment_state(name, p.topic_id, p.index, offset);
    store
        .put(&key, PutPayload::from(state))
        .await
        .map_err(|e| DetectorError::Store(format!("writing state {key}: {e}")))?;
    Ok(key.to_string())
}

/// Loads a state snapshot.
pub async fn get_state(store: &Arc<dyn ObjectStore>, key: &str) -> Result<Bytes, DetectorError> {
    let path = object_store::path::Path::from(key);
    let r = match store.get(&path).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    r.map_err(|e| DetectorError::Store(format!("reading state {key}: {e}")))
}

/// Deletes a superseded snapshot; failures only leave garbage behind.
pub async fn delete_state(store: &Arc<dyn ObjectStore>, key: &str) {
    if let Err(e) = store.delete(&object_store::path::Path::from(key)).await {
        tracing::debug!(%key, error = %e, "could not delete an old detector state");
    }
}

/// What a runner finds of its own alert records at or after `from` in
/// the alert topic: written after its last checkpoint, so neither their
/// inputs' progress nor their count is in it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Emitted {
    /// The highest `vigil.input.end` among them: input up to it has been
    /// alerted on already.
    pub through: Option<i64>,
    /// How many there are.
    pub count: u64,
}

/// This runner's alert records at or after `from` in `alerts` (see
/// [`Emitted`]).
pub async fn emitted_through(
    log: &Log,
    alerts: &Partition,
    from: i64,
    p: &Provenance<'_>,
) -> Result<Emitted, DetectorError> {
    let mut found = Emitted::default();
    let partition = p.partition.to_string();
    // Only this runner writes records with its provenance, and it has not
    // started yet: the watermark now bounds everything it wrote.
    let end = alerts.high_watermark();
    scan_records(log, alerts, from, end, 1 << 20, "the alert topic", |r| {
        let mine = header(r, headers::DEPLOYMENT) == Some(p.deployment)
            && header(r, headers::SOURCE_TOPIC) == Some(p.topic)
            && header(r, headers::SOURCE_PARTITION) == Some(partition.as_str());
        if !mine {
            return;
        }
        found.count += 1;
        if let Some(e) = header(r, headers::INPUT_END).and_then(|v| v.parse::<i64>().ok()) {
            found.through = Some(found.through.map_or(e, |t: i64| t.max(e)));
        }
    })
    .await?;
    Ok(found)
}
