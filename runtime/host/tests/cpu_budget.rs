//! A guest's per-batch budget is CPU time, not wall time: on a busy
//! machine a detector thread gets a fraction of a core, and a batch that
//! stays within its CPU budget must not fail because the scheduler ran
//! other threads meanwhile (the host tests themselves failed this way
//! under load: `CpuBudget` on a module that needs a fraction of it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::records::Compression;
use serde_json::json;
use vigil_host::{build_batch, GuestError, Limits};
use vigil_protocol::batch::BatchBuilder;

use crate::common;

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Pins the calling thread to CPU 0.
fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it,
    // and sched_setaffinity reads `size_of` bytes of it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(rc, 0, "sched_setaffinity");
    }
}

#[test]
fn an_endless_guest_is_stopped_after_its_budget_of_cpu_time_even_on_a_shared_core() {
    let wasm =
        vigil_host::read_built_module("vigil_test_hostile").unwrap_or_else(|e| panic!("{e}"));
    let m = common::host().load(&wasm).expect("load");
    let records = BatchBuilder::new(Compression::None)
        .record(0, None, Some(Bytes::from_static(b"{}")))
        .build()
        .expect("encode");
    let built = build_batch(0, &records, 0, None).expect("batch");
    let budget = Duration::from_millis(100);
    let limits = Limits {
        cpu_per_batch: budget,
        ..Limits::default()
    };
    let mut inst = m
        .instantiate(&limits, &json!({"mode": "loop"}).to_string(), "cpu/loop")
        .expect("instantiate");

    // Three busy threads share CPU 0 with this one, which then runs about
    // a quarter of the time.
    pin_to_cpu0();
    let stop = Arc::new(AtomicBool::new(false));
    let burners: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                pin_to_cpu0();
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let before = thread_cpu();
    let outcome = inst.process(&built.batch);
    let used = thread_cpu() - before;
    stop.store(true, Ordering::Relaxed);
    for b in burners {
        b.join().expect("burner");
    }

    assert!(
        matches!(outcome, Err(GuestError::CpuBudget { .. })),
        "an endless loop is stopped: {outcome:?}"
    );
    assert!(
        used >= budget * 9 / 10,
        "the guest was stopped after {used:?} of CPU time, short of its {budget:?} budget"
    );
}
