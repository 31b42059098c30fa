//! The runner's ack gate (design 0019): a live runner that has caught up
//! with its input holds the producers' acknowledgements, up to the
//! deployment's `ack_budget_ms`, until its alerts about their batches are
//! durable, and reads the input's tail before it is durable to get there
//! sooner. Behind, stopped or failed, it holds nothing.

use super::*;
use vigil_storage::log::gate::AckGate;
use vigil_storage::FetchedBatches;

/// A runner's gate and the wake-ups that come with it.
pub(super) struct Gated {
    /// Shared with the runner's loan while it lends its detector
    /// (`lend.rs`).
    pub(super) gate: Arc<AckGate>,
    appends: watch::Receiver<u64>,
}

impl Gated {
    /// Opens a gate at `next` on `input`; with `holds_groups` the WAL
    /// writer waits (briefly) for this runner's alerts about a batch before
    /// it writes the batch, so both share one group commit.
    pub(super) fn open(
        log: &Log,
        input: &Arc<Partition>,
        next: i64,
        budget: Duration,
        holds_groups: bool,
    ) -> Self {
        let gate = Arc::new(log.ack_gate(input, next, budget, holds_groups));
        // Subscribed after opening: every append from here on wakes us,
        // and the log end read after this covers those before.
        let appends = input.watch_appends();
        Gated { gate, appends }
    }

    /// Marks the appends seen so far as seen.
    pub(super) fn seen(&mut self) {
        self.appends.borrow_and_update();
    }
}

/// Resolves when a batch was queued on the gated partition; never without
/// a gate.
pub(super) async fn appended(gated: &mut Option<Gated>) {
    match gated {
        Some(g) => {
            if g.appends.changed().await.is_err() {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending::<()>().await,
    }
}

impl Runner {
    /// Reads the next input: from the tail (not yet durable) when gated.
    pub(super) async fn read_input(
        &self,
        gated: bool,
        next: i64,
        max_bytes: usize,
    ) -> Result<FetchedBatches, StorageError> {
        if gated {
            self.log.read_unacked(&self.input, next, max_bytes).await
        } else {
            self.log.read(&self.input, next, max_bytes).await
        }
    }

    /// Whether a checkpoint at `next` may be committed: never above what
    /// is durable, since records processed ahead of durability could still
    /// be lost with a crash and their offsets reused.
    pub(super) fn committable(&self, next: i64) -> bool {
        next > self.checkpoint.offset && next <= self.input.high_watermark()
    }
}
