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
    pub fn render(&self, log: &Log, store: &ObjectStoreMetrics) -> String {
        let storage = &log.stats;
        let upload_lag = log.upload_lag();
        let cache = log.block_cache_stats();
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        // `encode` ends with "# EOF"; storage counters go before it.
        if let Some(stripped) = out.strip_suffix("# EOF\n") {
            out = stripped.to_string();
        }
        let counters: [(&str, &str, u64); 6] = [
            (
                "vigil_storage_appended_bytes_total",
                "Record batch bytes appended",
                storage.appended_bytes.load(Ordering::Relaxed),
            ),
            (
                "vigil_storage_uploads_total",
                "Upload cycles that committed data",
                storage.uploads.load(Ordering::Relaxed),
            ),
            (
                "vigil_storage_upload_failures_total",
                "Upload cycles that failed",
                storage.upload_failures.load(Ordering::Relaxed),
            ),
            (
                "vigil_storage_uploaded_bytes_total",
                "Bytes written to segment objects",
                storage.uploaded_bytes.load(Ordering::Relaxed),
            ),
            (
                "vigil_storage_cache_reads_total",
                "Reads served by the in-memory log cache",
                storage.cache_reads.load(Ordering::Relaxed),
            ),
            (
                "vigil_storage_object_reads_total",
                "Reads served from segment objects",
                storage.object_reads.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let _ = write!(
                out,
                "# HELP {name} {help}.\n# TYPE {name} counter\n{name} {v}\n"
            );
        }
        let more: [(&str, &str, u64); 2] = [
            (
                "vigil_storage_compactions_total",
                "Segment objects written by the compactor",
                storage.compactions.load(Ordering::Relaxed),
            ),
            (
                "vigil_storage_gc_deleted_objects_total",
                "Unreferenced objects deleted by the collector",
                storage.gc_deleted.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in more {
            let _ = write!(
                out,
                "# HELP {name} {help}.\n# TYPE {name} counter\n{name} {v}\n"
            );
        }
        let _ = write!(
            out,
            "# HELP vigil_storage_compaction_backlog_runs Runs in shared data objects not yet compacted.\n# TYPE vigil_storage_compaction_backlog_runs gauge\nvigil_storage_compaction_backlog_runs {}\n",
            log.compaction_backlog()
        );
        let cache_counters: [(&str, &str, u64); 5] = [
            (
                "vigil_block_cache_hits_total",
                "Block cache hits (blocks)",
                cache.hits,
            ),
            (
                "vigil_block_cache_misses_total",
                "Block cache misses (blocks)",
                cache.misses,
            ),
            (
                "vigil_block_cache_readahead_blocks_total",
                "Blocks prefetched by readahead",
                cache.readahead_blocks,
            ),
            (
                "vigil_block_cache_fetched_bytes_total",
                "Bytes fetched from the object store by the block cache",
                cache.bytes_fetched,
            ),
            (
                "vigil_block_cache_evictions_total",
                "Blocks evicted",
                cache.evictions,
            ),
        ];
        for (name, help, v) in cache_counters {
            let _ = write!(
                out,
                "# HELP {name} {help}.\n# TYPE {name} counter\n{name} {v}\n"
            );
        }
        let _ = write!(
            out,
            "# HELP vigil_block_cache_hit_ratio Block cache hits / (hits + misses).\n# TYPE vigil_block_cache_hit_ratio gauge\nvigil_block_cache_hit_ratio {:.4}\n# HELP vigil_block_cache_bytes Bytes held by the block cache.\n# TYPE vigil_block_cache_bytes gauge\nvigil_block_cache_bytes {}\n",
            cache.hit_ratio(),
            cache.current_bytes
        );
        let _ = write!(
            out,
            "# HELP vigil_storage_upload_lag_seconds Age of the oldest acknowledged byte not yet in the object store.\n# TYPE vigil_storage_upload_lag_seconds gauge\nvigil_storage_upload_lag_seconds {:.3}\n",
            upload_lag.as_secs_f64()
        );
        store.render_prometheus(&mut out);
        out.push_str("# EOF\n");
        out
    }
}
