//! What a runner does with one module call's outcome, wherever the call ran
//! (its own task, the pool, or the appending task for a batch the loan
//! handed back): records that failed the value schema, the alerts, the
//! failure policy; and the progress shown in status.

use super::*;
use crate::rate::LivePartition;
use vigil_storage::log::gate::AckGate;

impl Runner {
    /// Applies the outcome of a call on the input from `from` whose last
    /// wire offset is `wire_end`; returns the next offset to read.
    pub(super) async fn settle(
        &self,
        instance: &mut Option<Instance>,
        built: Option<&BuiltBatch>,
        result: Result<Vec<vigil_abi::Alert>, BatchFailure>,
        from: i64,
        wire_end: i64,
        gate: Option<&AckGate>,
    ) -> Result<i64, Stop> {
        let batch_end = built.map_or(wire_end, |b| b.last_offset.max(wire_end));
        if let Some(b) = built {
            if !b.bad_records.is_empty() {
                self.bad_records(b).await?;
            }
        }
        match result {
            Ok(alerts) => {
                let alerts: Vec<_> = alerts
                    .into_iter()
                    .filter(|a| a.source_offset > self.suppress_through)
                    .collect();
                if let (false, Some(b)) = (alerts.is_empty(), built) {
                    self.append_alerts(alerts, b.batch.clone(), batch_end, gate)
                        .await?;
                }
            }
            Err(e) => {
                let poisoned = e.poisons_instance();
                self.batch_failed(e, built, from, batch_end).await?;
                if poisoned {
                    // The trapped instance's memory may be inconsistent:
                    // start over from the last committed state.
                    let state = self.checkpoint.state.clone();
                    let declinable = self.checkpoint.swap_rebuild.is_some();
                    *instance = Some(self.instantiate(state.as_deref(), declinable).await?.0);
                }
            }
        }
        Ok(batch_end + 1)
    }
}

/// Shows a processed batch (`built`, if it could be built) and the next
/// offset to read in the partition's status.
pub(super) fn note_progress(
    status: &parking_lot::Mutex<LivePartition>,
    next: i64,
    built: Option<&BuiltBatch>,
) {
    let now = Instant::now();
    let mut s = status.lock();
    s.offset = next;
    s.lag = (s.high_watermark - next).max(0);
    s.rate.tick(now);
    if let Some(b) = built {
        s.records += b.records as u64;
        if b.records > 0 {
            s.newest_timestamp = Some(
                s.newest_timestamp
                    .map_or(b.max_timestamp, |t| t.max(b.max_timestamp)),
            );
        }
    }
}
