//! Detector benchmark: what running anomaly detectors as wasm inside the
//! broker costs and buys. Run it with
//! `cargo bench -p vigil-benches --bench detectors`.
//!
//! What it measures, in one run:
//!
//! 1. **Throughput** (no broker): the zscore, rate-spike and rcf plugins compiled
//!    natively (their `Detector` impls through the rlib) vs the same plugins
//!    as wasm modules in `vigil-host`, on the same Kafka record batches (JSON
//!    values, built once with `BatchBuilder`). Both sides pay for the host's
//!    batch building (`vigil_host::build_batch` with a value schema, JSON →
//!    Arrow) on every iteration; then native wraps the batch in
//!    `vigil_sdk::Batch` and calls `Detector::process`, wasm calls
//!    `Instance::process`. Rows/s both ways, the time ratio (target ≤ 1.25×),
//!    and the split: batch building, detector call, and for wasm the guest
//!    call alone.
//! 2. **Alert latency**, produce ack → alert consumed: an rdkafka producer
//!    (`acks=all`) writes JSON records at a steady rate, a known fraction of
//!    them outliers. vigil path: a zscore deployment on the broker writes
//!    alerts to `alerts`. External path, on the same broker: an rdkafka
//!    consumer reads `in2`, runs the same zscore detector natively, and
//!    produces alerts to `alerts2` with an rdkafka producer. A consumer on
//!    each alert topic matches every alert to its source record (by the
//!    source partition/offset headers) and takes consume time − ack time.
//!    p50/p99 both ways and vigil p99 / external p99 (target ≤ 0.2×).
//! 3. **Produce latency with busy deployments**: the same fixed-rate
//!    `acks=all` load with no deployments, then rounds alternating 4 zscore
//!    deployments present but idle and the same 4 consuming the produced
//!    topic (each processes every batch), first with the default ack budget,
//!    then with `ack_budget_ms: 0`. busy / idle p99 per round, median and
//!    spread (target ≤ 1.2×).
//!
//! The broker runs in this process (like the other benches), with a
//! `file://` object store in a temp dir, and is driven through its Kafka
//! port and its admin HTTP API (`POST /v1/modules`, `POST /v1/deployments`).
//! Timings are printed, never asserted: the machine is shared and noisy.
//! Settings come from `VIGIL_BENCH_*` environment variables (see
//! `benches/README.md`); the header prints the exact command to reproduce.

mod broker;
#[path = "../common/mod.rs"]
mod common;
mod latency;
mod load;
mod pipeline;
mod settings;
mod throughput;

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use common::server::{admin_of, start_broker};
use latency::{print_latency, section_latency};
use load::{print_load, section_load};
use settings::{print_header, Params, Wasm};
use throughput::{print_throughput, section_throughput};

// The same allocator as the `vigil` binary, so the broker behaves as it does
// in production.
#[global_allocator]
static ALLOC: vigil_protocol::alloc::LazyLargeAlloc = vigil_protocol::alloc::LazyLargeAlloc;

/// Keys of the throughput data set.
const TP_KEYS: u64 = 1000;
/// Outliers in the throughput data set, parts per million.
const TP_OUTLIER_PPM: u64 = 10_000;
/// Records per Kafka batch in the throughput data (a producer's batch).
const TP_PRODUCER_BATCH: usize = 500;
/// Event time of the first throughput record (ms); records are 1 ms apart.
const TP_TS0: i64 = 1_700_000_000_000;
/// Records sent before measuring through each new load producer, seconds of
/// the load's rate.
const LOAD_WARMUP_SECS: f64 = 1.0;
/// How long to wait for the last alerts after the last ack.
const DRAIN: Duration = Duration::from_secs(10);
/// Most messages the external pipeline takes from one poll round.
const EXT_MAX_BATCH: usize = 1000;

fn main() -> Result<()> {
    common::init_tracing();
    // `cargo bench` passes `--bench`; there are no other arguments.
    let p = Params::from_env()?;
    let wasm = Wasm::locate(&p)?;
    std::fs::create_dir_all(&p.dir)
        .with_context(|| format!("cannot create VIGIL_BENCH_DIR {}", p.dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("vigil-detectors-bench-")
        .tempdir_in(&p.dir)
        .with_context(|| format!("cannot create a temp dir in {}", p.dir.display()))?;
    let root = tmp.path().to_path_buf();
    print_header(&p, &root, &wasm);
    let started = Instant::now();

    if p.throughput {
        let rows = section_throughput(&p, &wasm, &root).context("section 1 (throughput)")?;
        print_throughput(&p, &rows);
    }
    if p.latency || p.load {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the tokio runtime")?;
        let running = start_broker(&rt, &root.join("data"), &root.join("objects"))?;
        let admin = admin_of(&running)?;
        println!(
            "broker on {} (admin http://{}), data dir {}\n",
            running.kafka_addr,
            running.admin_addr,
            root.join("data").display()
        );
        let hash = admin
            .upload_module(&wasm.zscore)
            .context("uploading the zscore module through POST /v1/modules")?
            .hash;
        let result = (|| -> Result<()> {
            if p.latency {
                let r = section_latency(&rt, &running, &admin, &hash, &p)
                    .context("section 2 (alert latency)")?;
                print_latency(&p, &r);
            }
            if p.load {
                let r = section_load(&rt, &running, &admin, &hash, &p)
                    .context("section 3 (produce with busy deployments)")?;
                print_load(&p, &r);
            }
            Ok(())
        })();
        common::server::shutdown(&rt, running, Duration::from_secs(120))?;
        result?;
    }
    println!(
        "total time {:.0} s (after the build)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
