//! The scrape-time part of `/metrics`: values that other crates own (the
//! log's counters, the block cache's, the object store's request counters,
//! the detector deployments' status), snapshotted by [`Snapshot::take`] and
//! encoded by [`ScrapeCollector`] inside the broker's one registry.
//!
//! Series names are kept from the page's earlier hand-written form (clients,
//! tests and benches grep them); counters are declared without `_total` in
//! `# TYPE` lines, as OpenMetrics requires, and the encoder appends it to
//! their samples.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
    MetricEncoder,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use vigil_engine::status::{DeploymentState, DeploymentStatus, PartitionStatus};
use vigil_storage::cache::CacheStats;
use vigil_storage::store::{ObjectStoreMetrics, ObjectStoreStats, Outcome, StoreOp};
use vigil_storage::Log;

/// The log's values as of one scrape.
#[derive(Debug, Default)]
struct StorageValues {
    appended_bytes: u64,
    uploads: u64,
    upload_failures: u64,
    uploaded_bytes: u64,
    cache_reads: u64,
    object_reads: u64,
    compactions: u64,
    gc_deleted: u64,
    compaction_backlog: u64,
    upload_lag: Duration,
    ack_gate_misses: u64,
    wal_groups: u64,
    wal_held_groups: u64,
    wal_hold_timeouts: u64,
}

/// Everything the collector encodes, read once per scrape.
#[derive(Debug)]
pub(crate) struct Snapshot {
    storage: StorageValues,
    cache: CacheStats,
    store: ObjectStoreStats,
    detectors: Vec<DeploymentStatus>,
}

impl Snapshot {
    /// Reads the log's, the object store's and copies the deployments'
    /// values now.
    pub(crate) fn take(
        log: &Log,
        store: &ObjectStoreMetrics,
        detectors: &[DeploymentStatus],
    ) -> Self {
        let s = &log.stats;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            storage: StorageValues {
                appended_bytes: n(&s.appended_bytes),
                uploads: n(&s.uploads),
                upload_failures: n(&s.upload_failures),
                uploaded_bytes: n(&s.uploaded_bytes),
                cache_reads: n(&s.cache_reads),
                object_reads: n(&s.object_reads),
                compactions: n(&s.compactions),
                gc_deleted: n(&s.gc_deleted),
                compaction_backlog: u64::try_from(log.compaction_backlog()).unwrap_or(u64::MAX),
                upload_lag: log.upload_lag(),
                ack_gate_misses: log
                    .topics()
                    .iter()
                    .flat_map(|t| t.partitions.iter())
                    .map(|p| p.ack_gate_misses())
                    .sum(),
                wal_groups: n(&log.wal_stats().groups),
                wal_held_groups: n(&log.wal_stats().held),
                wal_hold_timeouts: n(&log.wal_stats().hold_timeouts),
            },
            cache: log.block_cache_stats(),
            store: store.stats(),
            detectors: detectors.to_vec(),
        }
    }
}

/// Encodes the [`Snapshot`] that [`Metrics::render`](super::Metrics::render)
/// left in the shared slot; nothing when there is none (a registry encoded
/// some other way).
#[derive(Debug)]
pub(crate) struct ScrapeCollector {
    slot: Arc<Mutex<Option<Snapshot>>>,
}

impl ScrapeCollector {
    pub(crate) fn new(slot: Arc<Mutex<Option<Snapshot>>>) -> Self {
        ScrapeCollector { slot }
    }
}

impl Collector for ScrapeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(snap) = slot.as_ref() else {
            return Ok(());
        };
        encode_storage(&mut encoder, &snap.storage, &snap.cache)?;
        encode_store(&mut encoder, &snap.store)?;
        encode_detectors(&mut encoder, &snap.detectors)
    }
}

/// One unlabelled counter.
fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeCounterValue,
) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(m)
}

/// One unlabelled gauge.
fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(m)
}

/// One sample of a labelled family.
fn labelled(
    m: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    metric: &impl EncodeMetric,
) -> fmt::Result {
    metric.encode(m.encode_family(labels)?)
}

fn encode_storage(e: &mut DescriptorEncoder, s: &StorageValues, c: &CacheStats) -> fmt::Result {
    let counters: [(&str, &str, u64); 17] = [
        (
            "storage_appended_bytes",
            "Record batch bytes appended",
            s.appended_bytes,
        ),
        (
            "storage_uploads",
            "Upload cycles that committed data",
            s.uploads,
        ),
        (
            "storage_upload_failures",
            "Upload cycles that failed",
            s.upload_failures,
        ),
        (
            "storage_uploaded_bytes",
            "Bytes written to data objects",
            s.uploaded_bytes,
        ),
        (
            "storage_cache_reads",
            "Reads served by the in-memory log cache",
            s.cache_reads,
        ),
        (
            "storage_object_reads",
            "Reads served from objects",
            s.object_reads,
        ),
        (
            "storage_compactions",
            "Segment objects written by the compactor",
            s.compactions,
        ),
        (
            "storage_gc_deleted_objects",
            "Unreferenced objects deleted by the collector",
            s.gc_deleted,
        ),
        ("block_cache_hits", "Block cache hits (blocks)", c.hits),
        (
            "block_cache_misses",
            "Block cache misses (blocks)",
            c.misses,
        ),
        (
            "block_cache_readahead_blocks",
            "Blocks prefetched by readahead",
            c.readahead_blocks,
        ),
        (
            "block_cache_fetched_bytes",
            "Bytes the block cache fetched from the object store",
            c.bytes_fetched,
        ),
        ("block_cache_evictions", "Blocks evicted", c.evictions),
        (
            "storage_ack_gate_misses",
            "Produce acknowledgements a detector's ack gate let go without its alerts, \
             because the detector missed its deployment's ack_budget_ms",
            s.ack_gate_misses,
        ),
        (
            "storage_wal_groups",
            "Local WAL group commits (one write and one fsync each)",
            s.wal_groups,
        ),
        (
            "storage_wal_held_groups",
            "WAL groups that waited for gated detectors to queue their alerts, \
             so batches and alerts share one fsync",
            s.wal_held_groups,
        ),
        (
            "storage_wal_hold_timeouts",
            "Held WAL groups written before every gated detector had queued its \
             alerts (the hold time ran out)",
            s.wal_hold_timeouts,
        ),
    ];
    for (name, help, value) in counters {
        counter(e, name, help, value)?;
    }
    gauge(
        e,
        "storage_compaction_backlog_runs",
        "Runs in shared data objects not yet compacted",
        s.compaction_backlog,
    )?;
    gauge(
        e,
        "storage_upload_lag_seconds",
        "Age of the oldest acknowledged byte not yet in the object store",
        s.upload_lag.as_secs_f64(),
    )?;
    gauge(
        e,
        "block_cache_hit_ratio",
        "Block cache hits / (hits + misses)",
        c.hit_ratio(),
    )?;
    gauge(
        e,
        "block_cache_bytes",
        "Bytes held by the block cache",
        c.current_bytes,
    )
}

/// Every op/outcome pair is written, zeros included, so series exist before
/// their first increment and `rate()` sees it.
fn encode_store(e: &mut DescriptorEncoder, s: &ObjectStoreStats) -> fmt::Result {
    let mut m = e.encode_descriptor(
        "object_store_requests",
        "Object store requests by operation and outcome",
        None,
        MetricType::Counter,
    )?;
    for op in StoreOp::ALL {
        for outcome in Outcome::ALL {
            labelled(
                &mut m,
                &[("op", op.as_str()), ("outcome", outcome.as_str())],
                &ConstCounter::new(s.requests(op, outcome)),
            )?;
        }
    }
    counter(
        e,
        "object_store_bytes_uploaded",
        "Bytes of successful object store uploads",
        s.bytes_uploaded,
    )?;
    counter(
        e,
        "object_store_bytes_downloaded",
        "Bytes of object store downloads read by the broker",
        s.bytes_downloaded,
    )?;
    let mut m = e.encode_descriptor(
        "object_store_request_seconds",
        "Summed object store request latency by operation",
        None,
        MetricType::Counter,
    )?;
    for op in StoreOp::ALL {
        labelled(
            &mut m,
            &[("op", op.as_str())],
            &ConstCounter::new(s.latency(op).as_secs_f64()),
        )?;
    }
    Ok(())
}

/// One family with a sample per deployment and input partition; `get`
/// returns `None` for a partition that has no value yet.
fn per_partition<M: EncodeMetric>(
    e: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    deployments: &[DeploymentStatus],
    get: impl Fn(&PartitionStatus) -> Option<M>,
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for d in deployments {
        for p in &d.partitions {
            let Some(value) = get(p) else { continue };
            let partition = p.partition.to_string();
            let labels = [
                ("deployment", d.name.as_str()),
                ("topic", p.topic.as_str()),
                ("partition", partition.as_str()),
            ];
            labelled(&mut m, &labels, &value)?;
        }
    }
    Ok(())
}

/// Per deployment and input partition, from the runners' status.
fn encode_detectors(e: &mut DescriptorEncoder, deployments: &[DeploymentStatus]) -> fmt::Result {
    type Count = fn(&PartitionStatus) -> u64;
    let counters: [(&str, &str, Count); 5] = [
        ("detector_records", "Input records processed", |p| p.records),
        ("detector_alerts", "Alerts written", |p| p.alerts),
        (
            "detector_failed_batches",
            "Batches skipped or dead-lettered",
            |p| p.failed_batches,
        ),
        (
            "detector_bad_records",
            "Records not matching the value schema",
            |p| p.bad_records,
        ),
        (
            "detector_on_append_batches",
            "Batches processed on the producers' tasks as they were appended",
            |p| p.on_append_batches,
        ),
    ];
    for (name, help, get) in counters {
        per_partition(e, (name, help, MetricType::Counter), deployments, |p| {
            Some(ConstCounter::new(get(p)))
        })?;
    }
    per_partition(
        e,
        (
            "detector_throttled_seconds",
            "Time a runner rested to stay within its budget, or a replay to leave the CPU to live writes",
            MetricType::Counter,
        ),
        deployments,
        |p| Some(ConstCounter::new(p.throttled_ms as f64 / 1000.0)),
    )?;
    per_partition(
        e,
        (
            "detector_lag_records",
            "Records between the input offset and the high watermark",
            MetricType::Gauge,
        ),
        deployments,
        |p| Some(ConstGauge::new(p.lag)),
    )?;
    per_partition(
        e,
        (
            "detector_event_age_seconds",
            "Age of the newest processed record's timestamp (absent before the first)",
            MetricType::Gauge,
        ),
        deployments,
        |p| p.event_age_ms.map(|ms| ConstGauge::new(ms as f64 / 1000.0)),
    )?;
    let mut m = e.encode_descriptor(
        "detector_failed",
        "Whether the deployment was stopped by its failure policy",
        None,
        MetricType::Gauge,
    )?;
    for d in deployments {
        let failed = matches!(d.state, DeploymentState::Failed(_));
        labelled(
            &mut m,
            &[("deployment", d.name.as_str())],
            &ConstGauge::new(i64::from(failed)),
        )?;
    }
    let mut m = e.encode_descriptor(
        "detector_deployments",
        "Deployments (replays and shadows included) by state",
        None,
        MetricType::Gauge,
    )?;
    for state in ["running", "paused", "failed", "completed"] {
        let count = deployments
            .iter()
            .filter(|d| state_name(&d.state) == state)
            .count();
        labelled(
            &mut m,
            &[("state", state)],
            &ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX)),
        )?;
    }
    Ok(())
}

/// The `state` label value, as the admin API spells the state.
fn state_name(state: &DeploymentState) -> &'static str {
    match state {
        DeploymentState::Running => "running",
        DeploymentState::Paused => "paused",
        DeploymentState::Failed(_) => "failed",
        DeploymentState::Completed => "completed",
    }
}
