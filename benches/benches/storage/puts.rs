//! Section 2: PUTs per MiB.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::runtime::Runtime;

use crate::broker::{file_url, shutdown, start_broker, BrokerOpts};
use crate::common::create_topic;
use crate::modes::put_requests;
use crate::produce::{Produced, Producing};
use crate::settings::Params;
use crate::PUT_PARTITIONS;

// ------------------------------------------------ 2: PUTs per MiB

pub(crate) struct PutRow {
    pub(crate) partitions: i32,
    pub(crate) produced: Produced,
    pub(crate) puts: u64,
    pub(crate) bytes_uploaded: u64,
    pub(crate) uploads: u64,
}

pub(crate) fn section_puts(rt: &Runtime, p: &Params, root: &Path) -> Result<Vec<PutRow>> {
    let mut rows = Vec::new();
    let n = p.records_for_mb(p.put_mb);
    for parts in PUT_PARTITIONS {
        let objects = file_url(&root.join(format!("objects-puts-{parts}")))?;
        let data_dir = root.join(format!("data-puts-{parts}"));
        let running = start_broker(
            rt,
            &BrokerOpts {
                data_dir: &data_dir,
                objects: &objects,
                wal_object: false,
                wal_window_ms: p.wal_window_ms,
                upload_interval_ms: Some(p.put_upload_interval_ms),
            },
        )?;
        let metrics = running.broker.store_metrics.clone();
        let log = running.broker.log.clone();
        let addr = running.kafka_addr.to_string();
        let topic = format!("bench-puts-{parts}");
        create_topic(rt, &addr, &topic, parts)?;
        let mut prod = Producing::new(&addr, &topic, parts, p.record_bytes)
            .with_context(|| format!("{parts} partitions: producer"))?;
        // Let the warm-up and topic creation be uploaded before counting.
        std::thread::sleep(Duration::from_millis(p.put_upload_interval_ms * 2 + 200));
        let before = metrics.stats();
        let uploads_before = log.stats.uploads.load(Ordering::SeqCst);
        let produced = prod
            .run(n, Some(p.put_rate), &format!("{parts} partitions"))
            .with_context(|| format!("{parts} partitions: produce"))?;
        drop(prod);
        // Clean shutdown uploads what is left.
        shutdown(rt, running)?;
        let after = metrics.stats();
        rows.push(PutRow {
            partitions: parts,
            produced,
            puts: put_requests(&after) - put_requests(&before),
            bytes_uploaded: after.bytes_uploaded - before.bytes_uploaded,
            uploads: log.stats.uploads.load(Ordering::SeqCst) - uploads_before,
        });
    }
    Ok(rows)
}

pub(crate) fn print_puts(p: &Params, rows: &[PutRow]) {
    println!(
        "== 2. object PUTs per MiB: {} MB at {}/s spread round-robin over N partitions, local \
         WAL, upload interval {} ms ==",
        p.put_mb, p.put_rate, p.put_upload_interval_ms
    );
    println!(
        "{:>10} {:>9} {:>7} {:>8} {:>12} {:>8} {:>9} {:>12}",
        "partitions",
        "records",
        "secs",
        "uploads",
        "MiB uploaded",
        "PUTs",
        "PUTs/MiB",
        "PUTs/upload"
    );
    for r in rows {
        let mib = r.bytes_uploaded as f64 / (1 << 20) as f64;
        println!(
            "{:>10} {:>9} {:>7.2} {:>8} {:>12.1} {:>8} {:>9.2} {:>12.2}",
            r.partitions,
            r.produced.records,
            r.produced.elapsed.as_secs_f64(),
            r.uploads,
            mib,
            r.puts,
            r.puts as f64 / mib.max(f64::MIN_POSITIVE),
            r.puts as f64 / r.uploads.max(1) as f64
        );
    }
    println!(
        "(counted from the broker's object store counters from the start of the timed produce \
         through its clean shutdown; PUTs = single PUTs + multipart steps; uploads = committed \
         upload cycles; target: PUTs/MiB flat across partition counts)\n"
    );
}
