//! Group holds: a group commit that waits, briefly, for the outputs of the
//! readers gated on its batches (design 0019, "Alerts in the input's group
//! commit").
//!
//! A batch of a partition with an ack gate comes with a [`Hold`]: "every
//! gated reader has queued its outputs about this batch". The local writer,
//! before it writes a group, waits until each hold of the group is met or
//! its hold time is up, taking whatever is queued meanwhile (the outputs)
//! into the group. A batch and the alerts about it then share one write and
//! one fsync, so the producer's acknowledgement (which waits for the alerts
//! to be durable) costs one group commit instead of two. Readers report
//! through [`GroupWake`]; a reader that is slow, stopped or behind holds
//! nothing (its gate releases its holds), and the hold time bounds the rest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::mpsc;

use super::{Command, Group};

/// Whether what an entry waits for is there (asked by the writer thread).
pub type Hold = Box<dyn Fn() -> bool + Send>;

/// How gated readers wake a writer waiting on its group's holds.
#[derive(Debug, Default)]
pub struct GroupWake {
    /// Whether the writer holds groups at all (a local WAL with a hold
    /// time): without, batches carry no holds and readers skip the wake.
    enabled: bool,
    generation: Mutex<u64>,
    changed: Condvar,
}

impl GroupWake {
    /// A wake for a writer that holds groups (`enabled`) or never does.
    pub(super) fn new(enabled: bool) -> Self {
        GroupWake {
            enabled,
            ..GroupWake::default()
        }
    }

    /// Whether batches should carry holds.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A reader queued outputs, moved on, or let its holds go.
    pub fn wake(&self) {
        if !self.enabled {
            return;
        }
        *self.generation.lock() += 1;
        self.changed.notify_all();
    }

    fn generation(&self) -> u64 {
        *self.generation.lock()
    }

    /// Waits until woken after `seen`, or until `deadline`.
    fn wait(&self, seen: u64, deadline: Instant) {
        let mut g = self.generation.lock();
        if *g == seen {
            self.changed.wait_until(&mut g, deadline);
        }
    }
}

/// The local writer's group counts (Prometheus: `vigil_storage_wal_*`).
#[derive(Debug, Default)]
pub struct WalStats {
    /// Groups written (one write and one fsync each).
    pub groups: AtomicU64,
    /// Groups that waited for holds.
    pub held: AtomicU64,
    /// Groups whose holds were not all met within the hold time (a gated
    /// detector too slow to share its input's fsync).
    pub hold_timeouts: AtomicU64,
}

/// Waits up to `max` for the holds of `group`, taking the commands queued
/// meanwhile into it (up to `limit` bytes, and never past a roll or close).
/// `next` is the writer's non-blocking source of commands.
pub(super) fn wait_for_holds(
    group: &mut Group,
    wake: &GroupWake,
    stats: &WalStats,
    max: Duration,
    limit: usize,
    rx: &mut mpsc::UnboundedReceiver<Command>,
    mut next: impl FnMut(&mut mpsc::UnboundedReceiver<Command>) -> Option<Command>,
) {
    if group.holds.is_empty() || max.is_zero() {
        return;
    }
    // Holds of entries taken from here on are not waited for: under a steady
    // stream that would chase the tail until the deadline.
    let waited = std::mem::take(&mut group.holds);
    stats.held.fetch_add(1, Ordering::Relaxed);
    let deadline = Instant::now() + max;
    let mut open = group.open(limit);
    let mut take = |group: &mut Group, open: &mut bool| {
        while *open {
            match next(rx) {
                Some(cmd) => *open = group.push(cmd, limit),
                None => break,
            }
        }
    };
    loop {
        let seen = wake.generation();
        // Readers queue their outputs before they report: once every hold
        // is met, what they queued is in the channel.
        let met = waited.iter().all(|h| h());
        take(group, &mut open);
        if met {
            break;
        }
        if Instant::now() >= deadline {
            stats.hold_timeouts.fetch_add(1, Ordering::Relaxed);
            break;
        }
        wake.wait(seen, deadline);
    }
    group.holds.clear();
}
