//! When the broker last took a write from a client. Background work reads
//! it to step aside while producers are waiting for acknowledgements: a
//! replay runs flat out on an idle broker and yields CPU while live
//! traffic flows (docs/design/0020, "Replay yields to live writes").

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The time of the latest client write, readable without a lock.
#[derive(Debug)]
pub struct ClientWrites {
    base: Instant,
    /// Nanoseconds after `base` plus one; 0 means no write yet.
    last: AtomicU64,
}

impl Default for ClientWrites {
    fn default() -> Self {
        ClientWrites {
            base: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl ClientWrites {
    /// Records a client write now.
    pub fn note(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
    }

    /// Whether a client wrote within the last `window`.
    pub fn within(&self, window: Duration) -> bool {
        let last = self.last.load(Ordering::Relaxed);
        last != 0 && self.now().saturating_sub(last) <= nanos(window)
    }

    fn now(&self) -> u64 {
        nanos(self.base.elapsed()).saturating_add(1)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_counts_for_its_window_only() {
        let w = ClientWrites::default();
        assert!(!w.within(Duration::from_secs(3600)), "no write yet");
        w.note();
        assert!(w.within(Duration::from_secs(3600)));
        let noted = Instant::now();
        // Spin until the write is older than a 1 ms window (no sleep: the
        // check is against the clock, whatever the scheduler does).
        while noted.elapsed() <= Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        assert!(!w.within(Duration::from_millis(1)));
        assert!(w.within(Duration::from_secs(3600)));
    }
}
