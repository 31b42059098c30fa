//! Section 1: produce by WAL mode.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::runtime::Runtime;
use vigil_storage::store::{ObjectStoreStats, StoreOp};

use crate::broker::{file_url, shutdown, start_broker, BrokerOpts};
use crate::common::create_topic;
use crate::produce::{Produced, Producing};
use crate::seaweed::Seaweed;
use crate::settings::Params;
use crate::PARTITIONS;

// ------------------------------------------------ 1: produce by WAL mode

pub(crate) struct ModeRow {
    pub(crate) store: &'static str,
    pub(crate) wal: &'static str,
    pub(crate) fixed: Produced,
    pub(crate) burst: Produced,
    pub(crate) puts: u64,
    pub(crate) shutdown: Duration,
}

pub(crate) fn section_produce(
    rt: &Runtime,
    p: &Params,
    root: &Path,
    seaweed: Option<&Seaweed>,
) -> Result<Vec<ModeRow>> {
    let mut stores: Vec<(&'static str, String)> =
        vec![("file", file_url(&root.join("objects-modes"))?)];
    if let Some(s) = seaweed {
        stores.push(("seaweedfs", s.url("modes")));
    }
    let mut rows = Vec::new();
    for (store, base) in &stores {
        for wal_object in [false, true] {
            let wal = if wal_object { "object" } else { "local" };
            let data_dir = root.join(format!("data-modes-{store}-{wal}"));
            let objects = format!("{base}/{wal}");
            let running = start_broker(
                rt,
                &BrokerOpts {
                    data_dir: &data_dir,
                    objects: &objects,
                    wal_object,
                    wal_window_ms: p.wal_window_ms,
                    upload_interval_ms: p.upload_interval_ms,
                },
            )?;
            let metrics = running.broker.store_metrics.clone();
            let addr = running.kafka_addr.to_string();
            let topic = "bench-modes";
            create_topic(rt, &addr, topic, PARTITIONS)?;
            let what = format!("{store}/{wal}");
            let mut prod = Producing::new(&addr, topic, PARTITIONS, p.record_bytes)
                .with_context(|| format!("{what}: producer"))?;
            let before = metrics.stats();
            let n = ((p.rate * p.rate_secs).ceil() as u64).max(1);
            let fixed = prod
                .run(n, Some(p.rate), &what)
                .with_context(|| format!("{what}: fixed rate"))?;
            let burst = prod
                .run(p.burst_records, None, &what)
                .with_context(|| format!("{what}: burst"))?;
            let puts = put_requests(&metrics.stats()) - put_requests(&before);
            drop(prod);
            let shutdown = shutdown(rt, running)?;
            rows.push(ModeRow {
                store,
                wal,
                fixed,
                burst,
                puts,
                shutdown,
            });
        }
    }
    Ok(rows)
}

/// Every request that writes an object: single PUTs and multipart steps.
pub(crate) fn put_requests(s: &ObjectStoreStats) -> u64 {
    [
        StoreOp::Put,
        StoreOp::PutMultipart,
        StoreOp::PutPart,
        StoreOp::CompleteMultipart,
    ]
    .into_iter()
    .map(|op| s.total_requests(op))
    .sum()
}

pub(crate) fn print_modes(p: &Params, rows: &[ModeRow], s3: bool) {
    println!(
        "== 1. produce by WAL mode: acks=all, {} B records, {} partitions; ack latency = send → \
         delivery report ==",
        p.record_bytes, PARTITIONS
    );
    println!(
        "{:<10} {:<7} {:>10} {:>8} {:>8} {:>8} | {:>10} {:>8} {:>8} {:>8} | {:>6} {:>9}",
        "store",
        "wal",
        "fixed r/s",
        "p50",
        "p99",
        "max",
        "burst r/s",
        "MB/s",
        "p50",
        "p99",
        "PUTs",
        "shutdown"
    );
    for r in rows {
        println!(
            "{:<10} {:<7} {:>10.0} {:>8.2} {:>8.2} {:>8.2} | {:>10.0} {:>8.1} {:>8.2} {:>8.2} | \
             {:>6} {:>8.2}s",
            r.store,
            r.wal,
            r.fixed.rate(),
            r.fixed.p(0.5),
            r.fixed.p(0.99),
            r.fixed.p(1.0),
            r.burst.rate(),
            r.burst.mb_per_sec(),
            r.burst.p(0.5),
            r.burst.p(0.99),
            r.puts,
            r.shutdown.as_secs_f64()
        );
    }
    if !s3 {
        println!(
            "seaweedfs rows skipped: VIGIL_BENCH_S3=0, no weed binary at {} (install the test \
             venv, or set VIGIL_WEED_BIN), no tests/clients/s3.py, or weed did not start",
            p.weed.display()
        );
    }
    println!(
        "(fixed = {} records/s for {} s; burst = {} records as fast as the client queue allows, \
         so its latency is mostly client-side queueing; PUTs = object-writing requests during \
         both; shutdown = clean shutdown incl. the final upload)\n",
        p.rate, p.rate_secs, p.burst_records
    );
}
