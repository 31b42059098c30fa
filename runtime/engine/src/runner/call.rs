//! Where a runner's module call runs (design 0019, "Gated calls run where
//! the runner is").
//!
//! A runner without an ack gate hands each call to the detector pool: its
//! threads run below the request path's priority, so detector CPU yields
//! to produce and fetch. A gated runner's call *is* on the request path,
//! since the producers' acknowledgements wait for it; there the pool's two
//! thread hops per call (wake a pool thread, wake the runner back) cost
//! more than the call itself with small batches: detectors bench section
//! 3 measured a quarter of a core for the hops and busy/idle produce p99
//! 2.5-2.9x through the pool against 1.4-2.1x inline. So a gated runner
//! runs small calls inline on its own task, as long as every call it ran
//! that way stayed under [`INLINE_CPU`]. The first one over (a module that
//! turned slow, a hostile one) sends the runner to the pool for the rest of
//! its life, so a slow module holds a runtime thread for one call at most
//! per runner start, and calls of unknown cost never run inline.

use super::*;
use crate::batch::Processed;

/// Largest input batch a gated call runs inline with: a call's cost grows
/// with its records, and the inline budget is judged per call.
pub(super) const INLINE_BYTES: usize = 64 * 1024;

/// Most CPU one inline call may have taken for the next to run inline too.
pub(super) const INLINE_CPU: Duration = Duration::from_millis(1);

/// Whether this runner's calls may run inline.
#[derive(Debug)]
pub(super) struct Placement {
    /// A call took longer than [`INLINE_CPU`] inline (or its CPU time could
    /// not be read), or inline calls are switched off: the pool from now on.
    demoted: bool,
}

impl Placement {
    /// A runner's placement; `allowed` false (`[detectors] gated-inline`)
    /// keeps every call on the pool.
    pub(super) fn new(allowed: bool) -> Self {
        Placement { demoted: !allowed }
    }

    /// Whether a call with `bytes` of input runs inline.
    pub(super) fn inline(&self, gated: bool, bytes: usize) -> bool {
        gated && !self.demoted && bytes <= INLINE_BYTES
    }

    /// Notes what an inline call cost (`None`: the thread's CPU clock could
    /// not be read, so the cost is unknown).
    pub(super) fn ran_inline(&mut self, cpu: Option<Duration>) {
        if cpu.is_none_or(|c| c > INLINE_CPU) {
            self.demoted = true;
        }
    }

    /// Sends the runner to the pool for good (a call on the appending
    /// task took long, `lend.rs`).
    pub(super) fn demote(&mut self) {
        self.demoted = true;
    }

    /// Whether the runner was sent to the pool for good.
    pub(super) fn demoted(&self) -> bool {
        self.demoted
    }
}

impl Runner {
    /// Runs the module on `wire` (records from offset `from`, bounded by
    /// `end`), inline or on the pool as `place` says; also returns the
    /// call's time for the deployment's CPU accounting.
    pub(super) async fn call(
        &self,
        place: &mut Placement,
        gated: bool,
        inst: Option<Instance>,
        wire: Bytes,
        from: i64,
        end: i64,
    ) -> Result<(Processed, Duration), Stop> {
        let wire_len = wire.len();
        let d = self.deployment.clone();
        let partition = self.input.index;
        // Timed where it runs: queueing for a pool thread is not the
        // deployment's CPU.
        let job = move || {
            let t0 = Instant::now();
            let processed = process(inst, &d, partition, &wire, from, end);
            (processed, t0.elapsed())
        };
        if place.inline(gated, wire_len) {
            let cpu0 = vigil_host::thread_cpu();
            // As on the pool: a panic in the host's batch code fails this
            // runner through its failure policy instead of ending its task
            // unseen.
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                .map_err(|_| Stop::Failed("detector call panicked".into()))?;
            let cpu = cpu0
                .zip(vigil_host::thread_cpu())
                .map(|(a, b)| b.saturating_sub(a));
            place.ran_inline(cpu);
            if place.demoted() {
                tracing::info!(deployment = %self.deployment.spec.name, topic = %self.topic, partition, cpu = ?cpu, "a gated call took long inline; this runner's calls run on the detector pool from now on");
            }
            return Ok(done);
        }
        self.pool
            .run(job)
            .await
            .map_err(|e| Stop::Failed(format!("detector task failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gated_small_calls_of_a_runner_that_stayed_fast_run_inline() {
        assert!(!Placement::new(false).inline(true, 1), "switched off");
        let mut p = Placement::new(true);
        assert!(
            !p.inline(false, 100),
            "ungated calls yield to the request path"
        );
        assert!(p.inline(true, 100));
        assert!(
            !p.inline(true, INLINE_BYTES + 1),
            "a large batch goes to the pool"
        );
        p.ran_inline(Some(INLINE_CPU));
        assert!(
            p.inline(true, 100),
            "a call within the limit keeps it inline"
        );
        p.ran_inline(Some(INLINE_CPU + Duration::from_micros(1)));
        assert!(
            !p.inline(true, 100),
            "one slow call sends the runner to the pool"
        );
        p.ran_inline(Some(Duration::ZERO));
        assert!(
            !p.inline(true, 100),
            "for good: fast calls later do not bring it back"
        );
    }

    #[test]
    fn a_call_of_unknown_cost_sends_the_runner_to_the_pool() {
        let mut p = Placement::new(true);
        p.ran_inline(None);
        assert!(!p.inline(true, 1));
    }
}
