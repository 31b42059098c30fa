//! How long a runner without an ack gate lets records accumulate at its
//! partition's tail before the next module call (design 0019, "A busy
//! tail waits for company").
//!
//! Woken per group commit, such a runner did one read, one batch build and
//! one module call for every commit: at 5 000 one-record batches a second
//! over four partitions that is 5 000 cycles a second per deployment, each
//! about 20 µs of CPU taken from the cores the producers' requests need
//! (section 3 of the detectors bench). Nobody waits on its alerts at the
//! ack, so with `[detectors] tail-linger-ms` set, while its partition is
//! busy it takes what arrived within the linger: at most one cycle per
//! linger per partition. A quiet partition (the previous read longer ago
//! than the linger) is read at once, so sparse records see no delay. Gated
//! runners never linger: the producers' acknowledgements wait for them.
//! Off by default: it saves CPU, not tail latency (design 0019).

use std::time::{Duration, Instant};

/// One runner's linger bookkeeping.
#[derive(Debug)]
pub(super) struct TailLinger {
    wait: Duration,
    /// When the last read started.
    last_read: Option<Instant>,
    /// The runner waited at the tail and new records woke it.
    woke_at_tail: bool,
}

impl TailLinger {
    /// Lingers up to `wait` (zero: never).
    pub(super) fn new(wait: Duration) -> Self {
        TailLinger {
            wait,
            last_read: None,
            woke_at_tail: false,
        }
    }

    /// The runner, caught up, was woken by new records.
    pub(super) fn woke(&mut self) {
        self.woke_at_tail = true;
    }

    /// How long to wait before the read about to start at `now`: only
    /// right after a wake-up at the tail, and only until `wait` after the
    /// previous read. A runner catching up reads back to back.
    pub(super) fn before_read(&mut self, now: Instant) -> Duration {
        let d = match (std::mem::take(&mut self.woke_at_tail), self.last_read) {
            (true, Some(t)) => self.wait.saturating_sub(now.saturating_duration_since(t)),
            _ => Duration::ZERO,
        };
        self.last_read = Some(now + d);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_busy_tail_is_read_at_most_once_per_linger() {
        let t0 = Instant::now();
        let mut l = TailLinger::new(5 * MS);
        l.woke();
        assert_eq!(
            l.before_read(t0),
            Duration::ZERO,
            "the first read waits for nothing"
        );
        l.woke();
        assert_eq!(
            l.before_read(t0 + MS),
            4 * MS,
            "the next one waits for the rest of the linger"
        );
        // It read at t0 + 5 ms; the next wake-up, 1 ms later, waits 4 ms more.
        l.woke();
        assert_eq!(l.before_read(t0 + 6 * MS), 4 * MS);
    }

    #[test]
    fn a_read_that_found_records_without_waiting_counts_as_the_previous_read() {
        // The runner's first look found records already there (no wake-up
        // at the tail); the next wake-up soon after must still linger.
        let t0 = Instant::now();
        let mut l = TailLinger::new(5 * MS);
        assert_eq!(l.before_read(t0), Duration::ZERO);
        l.woke();
        assert_eq!(l.before_read(t0 + 2 * MS), 3 * MS);
    }

    #[test]
    fn a_quiet_tail_and_a_runner_catching_up_never_wait() {
        let t0 = Instant::now();
        let mut l = TailLinger::new(5 * MS);
        l.woke();
        assert_eq!(l.before_read(t0), Duration::ZERO);
        assert_eq!(
            l.before_read(t0 + MS),
            Duration::ZERO,
            "reads that follow reads (catching up) go back to back"
        );
        l.woke();
        assert_eq!(
            l.before_read(t0 + 100 * MS),
            Duration::ZERO,
            "the previous read was longer ago than the linger"
        );
        let mut off = TailLinger::new(Duration::ZERO);
        off.woke();
        off.before_read(t0);
        off.woke();
        assert_eq!(off.before_read(t0 + MS), Duration::ZERO, "switched off");
    }
}
