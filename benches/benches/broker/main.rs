//! End-to-end broker benchmark: a real Kafka client (librdkafka, through the
//! `rdkafka` crate) against an in-process vigil broker whose object store is a
//! local `file://` directory. Run it with
//! `cargo bench -p vigil-benches --bench broker`.
//!
//! What it measures, in one run:
//!
//! 1. **Produce**: throughput and per-record ack latency (from handing the
//!    record to librdkafka to its delivery report) with `acks=all` and
//!    1 KiB records, at maximum throughput and at fixed rates (by default
//!    5 000 and 50 000 records/s), so latency can be compared at a given
//!    throughput. For each load point it also reads, from the broker, how many
//!    Produce requests it handled and its own Produce latency histogram, and,
//!    from the WAL writer thread's `/proc` I/O counters, how many WAL group
//!    commits (one `write` + one `fdatasync` each) it took and how big they
//!    were. Slow 100 ms windows are listed next to the times the broker
//!    committed an upload, which is where the tail latency comes from.
//! 2. **The physical floor**: a bare loop that appends a buffer to a file in
//!    the same directory tree (so on the same disk and filesystem) as the
//!    broker's data dir and calls `fdatasync` after each append: exactly the
//!    syscalls vigil's WAL makes per group commit, and nothing else. An
//!    `acks=all` ack cannot come before the fsync that makes the record
//!    durable, so this is the floor for ack latency. It runs once per load
//!    point with that point's observed average group size and group rate
//!    ("the same throughput"), and as a back-to-back sweep of fixed sizes.
//!    The ratio vigil p99 / floor p99 is printed (target ≤ 3×: a record may
//!    wait for the fsync in progress before its own, plus the network and the
//!    client). That floor counts a slow fsync once; a record's latency counts
//!    it for every record that waited behind it. So each paced point also
//!    gets a **group-commit floor** ("gc"): the same records at the same rate
//!    through a bare loop that writes and fdatasyncs whatever has arrived,
//!    latency per record from its arrival to its group's fdatasync: the best
//!    per-record p99 any durable log could give on this disk at that rate.
//! 3. **Consume**: a `BaseConsumer` with manual assignment from offset 0 (no
//!    group) reads the max-throughput topic up to its high watermark, right
//!    after producing (hot: the broker's in-memory log cache) and again from
//!    fresh brokers, each with a new, empty data dir on the same object store
//!    (cold: every read goes to segment objects). The first broker is shut
//!    down cleanly before that, which uploads everything. Each is done three
//!    times and the median printed. Target: cold/hot ≥ 0.5.
//!
//! Timings are printed, never asserted: the machine is shared and noisy.
//! Settings come from `VIGIL_BENCH_*` environment variables (see
//! `benches/README.md`); the header prints the exact command to reproduce.

use std::time::Duration;

mod broker;
#[path = "../common/mod.rs"]
mod common;
mod consume;
mod floor;
mod produce;
mod run;
mod settings;
mod tables;

use anyhow::{Context as _, Result};

use run::run;
use settings::Params;

// The same allocator as the `vigil` binary, so the broker behaves as it does
// in production.
#[global_allocator]
static ALLOC: vigil_protocol::alloc::LazyLargeAlloc = vigil_protocol::alloc::LazyLargeAlloc;

/// Records sent (unmeasured) through each new producer before measuring.
const WARMUP_RECORDS: u64 = 2_000;
/// Sizes of the back-to-back fsync sweep.
const SWEEP_SIZES: [usize; 4] = [1 << 10, 16 << 10, 64 << 10, 256 << 10];
/// Most bytes one floor run writes (the file is deleted afterwards).
const FLOOR_MAX_BYTES: u64 = 1 << 30;
/// A consumer that sees no new record for this long is reported as stuck.
const CONSUME_STALL: Duration = Duration::from_secs(30);

fn main() -> Result<()> {
    common::init_tracing();
    // `cargo bench` passes `--bench`; there are no other arguments.
    let params = Params::from_env()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    run(&rt, &params)
}
