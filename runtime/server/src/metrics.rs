//! Prometheus metrics of the broker.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use vigil_storage::store::ObjectStoreMetrics;
use vigil_storage::Log;

/// Label set naming a Kafka API.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    /// API name, e.g. "Produce".
    pub api: String,
}

/// Label set naming a Kafka API and the error code returned.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiErrorLabel {
    /// API name.
    pub api: String,
    /// Error name, e.g. "UnknownTopicOrPartition".
    pub error: String,
}

/// All broker metrics.
pub struct Metrics {
    registry: Registry,
    /// Requests handled, by API.
    pub requests: Family<ApiLabel, Counter>,
    /// Time from a request's arrival to its response being ready, by API.
    pub latency: Family<ApiLabel, Histogram>,
    /// Error codes returned, by API and error.
    pub errors: Family<ApiErrorLabel, Counter>,
    /// Open client connections.
    pub connections: Gauge,
    /// Frames that could not be decoded (connection closed or error answered).
    pub bad_frames: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("vigil");
        let requests = Family::<ApiLabel, Counter>::default();
        let errors = Family::<ApiErrorLabel, Counter>::default();
        // 50 µs .. ~26 s: an fsync'd produce sits near the bottom, a long
        // poll or a rebalance near the top.
        let latency = Family::<ApiLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
        });
        let connections = Gauge::default();
        let bad_frames = Counter::default();
        registry.register("requests", "Kafka requests handled", requests.clone());
        registry.register(
            "request_duration_seconds",
            "Time from request arrival to response ready",
            latency.clone(),
        );
        registry.register(
            "request_errors",
            "Error codes returned to clients",
            errors.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "bad_frames",
            "Request frames that could not be decoded",
            bad_frames.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            errors,
            connections,
            bad_frames,
        }
    }
}

impl Metrics {
    /// Counts one request.
    pub fn request(&self, api: &str) {
        self.requests
            .get_or_create(&ApiLabel {
                api: api.to_string(),
            })
            .inc();
    }

    /// Records how long a request took.
    pub fn observe(&self, api: &str, seconds: f64) {
        self.latency
            .get_or_create(&ApiLabel {
                api: api.to_string(),
            })
            .observe(seconds);
    }

    /// Counts one error code sent.
    pub fn error(&self, api: &str, error: &str) {
        self.errors
            .get_or_create(&ApiErrorLabel {
                api: api.to_string(),
                error: error.to_string(),
            })
            .inc();
    }

    /// The text exposition, storage counters included.
    pub fn render(
        &self,
        log: &Log,
        store: &ObjectStoreMetrics,
        detectors: &[vigil_engine::status::DeploymentStatus],
    ) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        // `encode` ends with "# EOF"; storage metrics go before it.
        if let Some(stripped) = out.strip_suffix("# EOF\n") {
            out = stripped.to_string();
        }
        for (name, kind, help, value) in storage_metrics(log) {
            let _ = write!(
                out,
                "# HELP {name} {help}.\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        }
        store.render_prometheus(&mut out);
        render_detectors(&mut out, detectors);
        out.push_str("# EOF\n");
        out
    }
}

/// Per deployment and input partition, read from the runners' status at
/// scrape time.
fn render_detectors(out: &mut String, deployments: &[vigil_engine::status::DeploymentStatus]) {
    type Get = fn(&vigil_engine::status::PartitionStatus) -> f64;
    let series: [(&str, &str, &str, Get); 6] = [
        (
            "vigil_detector_records_total",
            "counter",
            "Input records processed",
            |p| p.records as f64,
        ),
        (
            "vigil_detector_alerts_total",
            "counter",
            "Alerts written",
            |p| p.alerts as f64,
        ),
        (
            "vigil_detector_failed_batches_total",
            "counter",
            "Batches skipped or dead-lettered",
            |p| p.failed_batches as f64,
        ),
        (
            "vigil_detector_bad_records_total",
            "counter",
            "Records not matching the value schema",
            |p| p.bad_records as f64,
        ),
        (
            "vigil_detector_lag_records",
            "gauge",
            "Records between the input offset and the high watermark",
            |p| p.lag as f64,
        ),
        (
            "vigil_detector_event_age_seconds",
            "gauge",
            "Age of the newest processed record's timestamp",
            |p| p.event_age_ms.map_or(f64::NAN, |a| a as f64 / 1000.0),
        ),
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} {kind}");
        for d in deployments {
            for p in &d.partitions {
                let _ = writeln!(
                    out,
                    "{name}{{deployment=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
                    d.name,
                    p.topic,
                    p.partition,
                    get(p)
                );
            }
        }
    }
    let _ = writeln!(out, "# HELP vigil_detector_failed Whether the deployment was stopped by its failure policy.\n# TYPE vigil_detector_failed gauge");
    for d in deployments {
        let failed = matches!(d.state, vigil_engine::status::DeploymentState::Failed(_));
        let _ = writeln!(
            out,
            "vigil_detector_failed{{deployment=\"{}\"}} {}",
            d.name,
            u8::from(failed)
        );
    }
}

/// Storage metrics read at scrape time: `(name, type, help, value)`. The
/// storage crate keeps plain atomics (it has no Prometheus dependency), so
/// they are rendered here.
fn storage_metrics(log: &Log) -> Vec<(&'static str, &'static str, &'static str, String)> {
    let s = &log.stats;
    let c = log.block_cache_stats();
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
    vec![
        (
            "vigil_storage_appended_bytes_total",
            "counter",
            "Record batch bytes appended",
            n(&s.appended_bytes),
        ),
        (
            "vigil_storage_uploads_total",
            "counter",
            "Upload cycles that committed data",
            n(&s.uploads),
        ),
        (
            "vigil_storage_upload_failures_total",
            "counter",
            "Upload cycles that failed",
            n(&s.upload_failures),
        ),
        (
            "vigil_storage_uploaded_bytes_total",
            "counter",
            "Bytes written to data objects",
            n(&s.uploaded_bytes),
        ),
        (
            "vigil_storage_cache_reads_total",
            "counter",
            "Reads served by the in-memory log cache",
            n(&s.cache_reads),
        ),
        (
            "vigil_storage_object_reads_total",
            "counter",
            "Reads served from objects",
            n(&s.object_reads),
        ),
        (
            "vigil_storage_compactions_total",
            "counter",
            "Segment objects written by the compactor",
            n(&s.compactions),
        ),
        (
            "vigil_storage_gc_deleted_objects_total",
            "counter",
            "Unreferenced objects deleted by the collector",
            n(&s.gc_deleted),
        ),
        (
            "vigil_storage_compaction_backlog_runs",
            "gauge",
            "Runs in shared data objects not yet compacted",
            log.compaction_backlog().to_string(),
        ),
        (
            "vigil_storage_upload_lag_seconds",
            "gauge",
            "Age of the oldest acknowledged byte not yet in the object store",
            format!("{:.3}", log.upload_lag().as_secs_f64()),
        ),
        (
            "vigil_block_cache_hits_total",
            "counter",
            "Block cache hits (blocks)",
            c.hits.to_string(),
        ),
        (
            "vigil_block_cache_misses_total",
            "counter",
            "Block cache misses (blocks)",
            c.misses.to_string(),
        ),
        (
            "vigil_block_cache_readahead_blocks_total",
            "counter",
            "Blocks prefetched by readahead",
            c.readahead_blocks.to_string(),
        ),
        (
            "vigil_block_cache_fetched_bytes_total",
            "counter",
            "Bytes the block cache fetched from the object store",
            c.bytes_fetched.to_string(),
        ),
        (
            "vigil_block_cache_evictions_total",
            "counter",
            "Blocks evicted",
            c.evictions.to_string(),
        ),
        (
            "vigil_block_cache_hit_ratio",
            "gauge",
            "Block cache hits / (hits + misses)",
            format!("{:.4}", c.hit_ratio()),
        ),
        (
            "vigil_block_cache_bytes",
            "gauge",
            "Bytes held by the block cache",
            c.current_bytes.to_string(),
        ),
    ]
}
