//! A guest call's budget, counted in the calling thread's CPU time.
//!
//! The engine's epoch advances on wall time (a ticker thread), which is
//! cheap to check from compiled code but charges a guest for time it did
//! not run: on a busy two-core broker a detector thread (nice, or
//! `SCHED_IDLE` for replays) may get a quarter of a core, and a batch
//! well within its budget then failed with `CpuBudget`. So the epoch
//! deadline only says "check now": the callback reads the thread's CPU
//! clock and lets the guest go on for what is left of its budget, and
//! stops it once the budget is really spent. Where the thread's CPU
//! clock cannot be read, the first deadline stops it (wall time, as
//! before).

use std::time::Duration;

use wasmtime::{Store, UpdateDeadline};

use crate::hostfns::HostState;

/// The calling thread's CPU time, if the platform tells it.
pub fn thread_cpu() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the whole call.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        if rc != 0 {
            return None;
        }
        Some(Duration::new(
            u64::try_from(ts.tv_sec).ok()?,
            u32::try_from(ts.tv_nsec).ok()?,
        ))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Epoch ticks of `tick` for `budget`: rounded up, plus one because the
/// current tick is already partly over.
pub(crate) fn ticks_for(budget: Duration, tick: Duration) -> u64 {
    let tick = tick.max(Duration::from_micros(100)).as_nanos();
    let n = budget.as_nanos().div_ceil(tick);
    u64::try_from(n).unwrap_or(u64::MAX / 2).saturating_add(1)
}

/// Makes `store`'s epoch deadline a CPU-time check against `budget`: each
/// call's CPU clock starts in [`HostState::begin`].
pub(crate) fn enforce(store: &mut Store<HostState>, budget: Duration, tick: Duration) {
    store.epoch_deadline_callback(move |ctx| {
        let started = ctx.data().call.cpu_started;
        let used = match (started, thread_cpu()) {
            (Some(start), Some(now)) => now.saturating_sub(start),
            _ => return Ok(UpdateDeadline::Interrupt),
        };
        match budget.checked_sub(used) {
            Some(left) if !left.is_zero() => Ok(UpdateDeadline::Continue(ticks_for(left, tick))),
            _ => Ok(UpdateDeadline::Interrupt),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_rounds_up_to_whole_ticks_plus_the_current_one() {
        let tick = Duration::from_millis(2);
        assert_eq!(ticks_for(Duration::from_millis(100), tick), 51);
        assert_eq!(ticks_for(Duration::from_millis(101), tick), 52);
        assert_eq!(ticks_for(Duration::from_micros(1), tick), 2);
        assert_eq!(ticks_for(Duration::MAX, tick), u64::MAX / 2 + 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_thread_cpu_clock_advances_with_work_only() {
        let a = thread_cpu().expect("thread CPU clock");
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        let b = thread_cpu().expect("thread CPU clock");
        assert!(b > a, "work advanced the clock");
        std::thread::sleep(Duration::from_millis(50));
        let c = thread_cpu().expect("thread CPU clock");
        assert!(
            c - b < Duration::from_millis(25),
            "a sleep is not CPU time: {:?}",
            c - b
        );
    }
}
