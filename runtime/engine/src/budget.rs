//! A deployment's share of the broker: how many of its partitions may run
//! at once and how fast it may read input. Replays use it so that a job over
//! weeks of history does not take the CPU and disk that live produce, fetch
//! and live deployments need.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::spec::Budget;

/// The runtime side of a [`Budget`], shared by a deployment's runners.
#[derive(Debug)]
pub struct Throttle {
    slots: Option<Arc<Semaphore>>,
    bytes_per_sec: Option<u64>,
    cpu_share: Option<f64>,
    /// When the module time so far is paid for at `cpu_share`.
    cpu_paid_until: parking_lot::Mutex<Option<Instant>>,
    /// When the reads so far are paid for at `bytes_per_sec`.
    paid_until: parking_lot::Mutex<Instant>,
}

impl Throttle {
    /// `None` when the budget limits nothing.
    pub fn new(b: &Budget) -> Option<Arc<Self>> {
        if b.parallelism.is_none() && b.max_bytes_per_sec.is_none() && b.cpu_share.is_none() {
            return None;
        }
        Some(Arc::new(Throttle {
            slots: b.parallelism.map(|n| Arc::new(Semaphore::new(n.max(1)))),
            bytes_per_sec: b.max_bytes_per_sec.filter(|r| *r > 0),
            cpu_share: b.cpu_share.filter(|s| *s > 0.0),
            cpu_paid_until: parking_lot::Mutex::new(None),
            paid_until: parking_lot::Mutex::new(Instant::now()),
        }))
    }

    /// Waits for one of the deployment's processing slots; holding the
    /// permit is what counts against `parallelism`.
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        match &self.slots {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    /// How long to wait after reading `bytes` to stay under the byte rate.
    /// Reads are paid for back to back, so bursts average out; idle time
    /// does not build up credit beyond the present.
    pub fn pay(&self, bytes: usize) -> Duration {
        let Some(rate) = self.bytes_per_sec else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let mut until = self.paid_until.lock();
        let start = (*until).max(now);
        *until = start + Duration::from_secs_f64(bytes as f64 / rate as f64);
        start.saturating_duration_since(now)
    }
}

impl Throttle {
    /// Largest read to ask for: at most a tenth of a second of the byte
    /// budget (and at least 4 KiB), so a small rate is not spent in one
    /// free burst up front.
    pub fn read_cap(&self, max_batch_bytes: usize) -> usize {
        match self.bytes_per_sec {
            Some(r) => max_batch_bytes.min(((r / 10) as usize).max(4096)),
            None => max_batch_bytes,
        }
    }

    /// How long to rest after the module work of one batch kept a detector
    /// thread busy for `busy` (just ended), so that the deployment as a whole
    /// uses at most `cpu_share` cores: its module time is paid for back to
    /// back at that rate, across all its runners.
    pub fn rest(&self, busy: Duration) -> Duration {
        let Some(share) = self.cpu_share else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let began = now.checked_sub(busy).unwrap_or(now);
        let mut paid = self.cpu_paid_until.lock();
        let until = paid.map_or(began, |u| u.max(began)) + busy.div_f64(share);
        *paid = Some(until);
        until.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pays_reads_back_to_back() {
        let t = Throttle::new(&Budget {
            max_bytes_per_sec: Some(1000),
            ..Default::default()
        })
        .unwrap();
        // The first read is free, each following one waits for the earlier
        // ones to be paid for at 1000 B/s.
        // Reads are cut to a tenth of a second of budget (4 KiB at least).
        assert_eq!(t.read_cap(1 << 20), 4096);
        assert_eq!(
            Throttle::new(&Budget {
                max_bytes_per_sec: Some(10 << 20),
                ..Default::default()
            })
            .unwrap()
            .read_cap(1 << 20),
            1 << 20
        );
        assert_eq!(t.pay(500), Duration::ZERO);
        let second = t.pay(500);
        assert!(
            second > Duration::from_millis(400) && second <= Duration::from_millis(500),
            "{second:?}"
        );
        let third = t.pay(10);
        assert!(
            third > Duration::from_millis(900) && third <= Duration::from_millis(1000),
            "{third:?}"
        );
    }

    #[tokio::test]
    async fn parallelism_caps_concurrent_slots() {
        let t = Throttle::new(&Budget {
            parallelism: Some(2),
            ..Default::default()
        })
        .unwrap();
        let a = t.slot().await;
        let b = t.slot().await;
        assert!(a.is_some() && b.is_some());
        use futures::FutureExt;
        assert!(t.slot().now_or_never().is_none(), "a third slot must wait");
        drop(a);
        assert!(t.slot().await.is_some());
        assert!(Throttle::new(&Budget::default()).is_none());
    }

    #[test]
    fn cpu_share_is_paid_across_the_deployment() {
        let t = Throttle::new(&Budget {
            cpu_share: Some(0.5),
            ..Default::default()
        })
        .unwrap();
        // One runner busy 10 ms at half a core rests about 10 ms ...
        let first = t.rest(Duration::from_millis(10));
        assert!(
            first > Duration::from_millis(9) && first <= Duration::from_millis(10),
            "{first:?}"
        );
        // ... and a second one that ran at the same time waits for both.
        let second = t.rest(Duration::from_millis(10));
        assert!(
            second > Duration::from_millis(29) && second <= Duration::from_millis(30),
            "{second:?}"
        );
        assert_eq!(t.pay(1 << 20), Duration::ZERO, "no byte cap set");
    }
}
