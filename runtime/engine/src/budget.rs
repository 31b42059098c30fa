//! A deployment's share of the broker: how many of its partitions may run
//! at once and how fast it may read input. Replays use it so that a job over
//! weeks of history does not take the CPU and disk that live produce, fetch
//! and live deployments need.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use vigil_storage::activity::ClientWrites;

use super::spec::Budget;

/// The runtime side of a [`Budget`], shared by a deployment's runners.
#[derive(Debug)]
pub struct Throttle {
    slots: Option<Arc<Semaphore>>,
    bytes_per_sec: Option<u64>,
    cpu_share: Option<f64>,
    /// The share taken while clients write, when the budget sets none.
    live: Option<LiveYield>,
    /// When the module time so far is paid for at the share in force.
    cpu_paid_until: parking_lot::Mutex<Option<Instant>>,
    /// When the reads so far are paid for at `bytes_per_sec`.
    paid_until: parking_lot::Mutex<Instant>,
}

/// A CPU share a deployment keeps to while clients are writing to the
/// broker: a replay without a `cpu_share` of its own runs flat out on an
/// idle broker but must not take the cores producers wait on (design 0020).
#[derive(Debug, Clone)]
pub struct LiveYield {
    /// When a client last wrote.
    pub writes: Arc<ClientWrites>,
    /// Cores the deployment's module time may use meanwhile.
    pub share: f64,
}

/// How recent a client write must be for the deployment to yield: long
/// enough to span the gaps of a slow producer, short enough that a replay
/// gets its speed back soon after producers stop.
const LIVE_WINDOW: Duration = Duration::from_secs(1);

impl Throttle {
    /// `None` when neither the budget nor `live` limits anything.
    pub fn new(b: &Budget, live: Option<LiveYield>) -> Option<Arc<Self>> {
        let live = live.filter(|l| l.share > 0.0);
        if b.parallelism.is_none()
            && b.max_bytes_per_sec.is_none()
            && b.cpu_share.is_none()
            && live.is_none()
        {
            return None;
        }
        Some(Arc::new(Throttle {
            slots: b.parallelism.map(|n| Arc::new(Semaphore::new(n.max(1)))),
            bytes_per_sec: b.max_bytes_per_sec.filter(|r| *r > 0),
            cpu_share: b.cpu_share.filter(|s| *s > 0.0),
            live,
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
    /// uses at most `cpu_share` cores (or, without one, the live share while
    /// clients write): its module time is paid for back to back at that
    /// rate, across all its runners.
    pub fn rest(&self, busy: Duration) -> Duration {
        let mut paid = self.cpu_paid_until.lock();
        let share = match (self.cpu_share, &self.live) {
            (Some(share), _) => share,
            (None, Some(l)) if l.writes.within(LIVE_WINDOW) => l.share,
            _ => {
                // Flat out: nothing owed when producers come back.
                *paid = None;
                return Duration::ZERO;
            }
        };
        let now = Instant::now();
        let began = now.checked_sub(busy).unwrap_or(now);
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
        let t = Throttle::new(
            &Budget {
                max_bytes_per_sec: Some(1000),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        // The first read is free, each following one waits for the earlier
        // ones to be paid for at 1000 B/s.
        // Reads are cut to a tenth of a second of budget (4 KiB at least).
        assert_eq!(t.read_cap(1 << 20), 4096);
        assert_eq!(
            Throttle::new(
                &Budget {
                    max_bytes_per_sec: Some(10 << 20),
                    ..Default::default()
                },
                None
            )
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
        let t = Throttle::new(
            &Budget {
                parallelism: Some(2),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        let a = t.slot().await;
        let b = t.slot().await;
        assert!(a.is_some() && b.is_some());
        use futures::FutureExt;
        assert!(t.slot().now_or_never().is_none(), "a third slot must wait");
        drop(a);
        assert!(t.slot().await.is_some());
        assert!(Throttle::new(&Budget::default(), None).is_none());
    }

    #[test]
    fn cpu_share_is_paid_across_the_deployment() {
        let t = Throttle::new(
            &Budget {
                cpu_share: Some(0.5),
                ..Default::default()
            },
            None,
        )
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

    #[test]
    fn without_a_share_of_its_own_a_deployment_yields_only_while_clients_write() {
        let writes = Arc::new(ClientWrites::default());
        let live = LiveYield {
            writes: writes.clone(),
            share: 0.5,
        };
        let t = Throttle::new(&Budget::default(), Some(live.clone())).unwrap();
        assert_eq!(
            t.rest(Duration::from_millis(10)),
            Duration::ZERO,
            "idle broker"
        );
        writes.note();
        let first = t.rest(Duration::from_millis(10));
        assert!(
            first > Duration::from_millis(9) && first <= Duration::from_millis(10),
            "{first:?}"
        );
        // A budget's own share wins over the live one, writes or not.
        let own = Throttle::new(
            &Budget {
                cpu_share: Some(0.25),
                ..Default::default()
            },
            Some(live),
        )
        .unwrap();
        let rest = own.rest(Duration::from_millis(10));
        assert!(
            rest > Duration::from_millis(29) && rest <= Duration::from_millis(30),
            "{rest:?}"
        );
    }
}
