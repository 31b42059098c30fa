//! A decaying rate for status.

use std::time::Instant;

use vigil_api::PartitionStatus;

/// Batches per second from an exponentially decaying count.
#[derive(Debug, Clone)]
pub(crate) struct RateMeter {
    rate: f64,
    last: Instant,
}

impl Default for RateMeter {
    fn default() -> Self {
        RateMeter {
            rate: 0.0,
            last: Instant::now(),
        }
    }
}

impl RateMeter {
    const TAU_SECS: f64 = 5.0;

    fn decay(&mut self, now: Instant) {
        let dt = now.duration_since(self.last).as_secs_f64();
        self.rate *= (-dt / Self::TAU_SECS).exp();
        self.last = now;
    }

    pub(crate) fn tick(&mut self, now: Instant) {
        self.decay(now);
        self.rate += 1.0 / Self::TAU_SECS;
    }

    pub(crate) fn per_sec(&self, now: Instant) -> f64 {
        let mut m = self.clone();
        m.decay(now);
        m.rate
    }
}

/// A partition's status as its runner keeps it: the API's
/// [`PartitionStatus`] plus what status derives its rates and ages from.
#[derive(Debug, Clone, Default)]
pub(crate) struct LivePartition {
    pub(crate) status: PartitionStatus,
    pub(crate) newest_timestamp: Option<i64>,
    pub(crate) rate: RateMeter,
    /// Rest under the budget so far (status derives `throttled_ms`).
    pub(crate) throttled_rest: std::time::Duration,
}

impl std::ops::Deref for LivePartition {
    type Target = PartitionStatus;
    fn deref(&self) -> &PartitionStatus {
        &self.status
    }
}

impl std::ops::DerefMut for LivePartition {
    fn deref_mut(&mut self) -> &mut PartitionStatus {
        &mut self.status
    }
}
