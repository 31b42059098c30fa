//! Prometheus metrics of the broker, rendered as OpenMetrics text through one
//! prometheus-client [`Registry`].
//!
//! Two kinds of metric live in the registry:
//! - metrics the broker updates as it works (Kafka requests, latency, error
//!   codes, connections, admin HTTP requests): prometheus-client types
//!   registered at startup;
//! - values owned elsewhere and read at scrape time (log and block cache
//!   counters, object store requests, detector deployments): the
//!   [`collector`] registered alongside encodes a snapshot taken by
//!   [`Metrics::render`]. The storage and engine crates keep plain atomics
//!   and status structs (they have no Prometheus dependency), so this is
//!   where their names and types are decided.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use vigil_engine::status::DeploymentStatus;
use vigil_storage::store::ObjectStoreMetrics;
use vigil_storage::Log;

mod collector;

use collector::{ScrapeCollector, Snapshot};

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

/// Label set of one admin HTTP answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdminLabel {
    /// HTTP method.
    pub method: String,
    /// Route pattern (e.g. `/v1/deployments/{name}`), not the concrete path,
    /// so that names do not multiply series; `unmatched` for unknown paths.
    pub route: String,
    /// HTTP status code.
    pub status: u16,
}

/// Label set naming an admin route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdminRouteLabel {
    /// Route pattern, as in [`AdminLabel::route`].
    pub route: String,
}

/// Label set of an authorization denial.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabel {
    /// ACL operation, e.g. "READ".
    pub operation: String,
    /// Resource type, e.g. "TOPIC".
    pub resource_type: String,
}

/// All broker metrics.
pub struct Metrics {
    registry: Registry,
    /// Where [`Metrics::render`] puts what the collector encodes.
    scrape: Arc<Mutex<Option<Snapshot>>>,
    /// Held for the whole of a render, so that two concurrent scrapes do not
    /// mix snapshots.
    render: Mutex<()>,
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
    /// Admin HTTP answers, by method, route and status.
    pub admin_requests: Family<AdminLabel, Counter>,
    /// Time to answer an admin HTTP request, by route.
    pub admin_latency: Family<AdminRouteLabel, Histogram>,
    /// Open admin HTTP connections.
    pub admin_connections: Gauge,
    /// Admin connections closed at once because the limit was reached.
    pub admin_connections_refused: Counter,
    /// Detector modules compiled and kept in memory (set at each scrape).
    pub compiled_modules: Gauge,
    /// The Kafka listener's limits: refused and closed connections, accept
    /// errors, requests in flight.
    pub conn: crate::connection::ConnMetrics,
    /// Requests (or parts of them) refused by the authorizer, by operation
    /// and resource type.
    pub authz_denied: Family<DenialLabel, Counter>,
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
        let admin_requests = Family::<AdminLabel, Counter>::default();
        // 1 ms .. ~65 s: a status read at the bottom, a deploy that compiles
        // a module near the top.
        let admin_latency = Family::<AdminRouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 17))
        });
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
        registry.register(
            "admin_requests",
            "Admin HTTP requests answered, by method, route and status",
            admin_requests.clone(),
        );
        registry.register(
            "admin_request_duration_seconds",
            "Time to answer an admin HTTP request, by route",
            admin_latency.clone(),
        );
        let admin_connections = Gauge::default();
        let admin_connections_refused = Counter::default();
        let compiled_modules = Gauge::default();
        registry.register(
            "admin_connections",
            "Open admin HTTP connections",
            admin_connections.clone(),
        );
        registry.register(
            "admin_connections_refused",
            "Admin HTTP connections closed at once because the connection limit was reached",
            admin_connections_refused.clone(),
        );
        registry.register(
            "detector_compiled_modules",
            "Detector modules compiled and kept in memory",
            compiled_modules.clone(),
        );
        let conn = crate::connection::ConnMetrics::default();
        conn.register(&mut registry);
        let authz_denied = Family::<DenialLabel, Counter>::default();
        registry.register(
            "authorization_denied",
            "Kafka operations refused by the ACL authorizer, by operation and resource type",
            authz_denied.clone(),
        );
        let scrape = Arc::new(Mutex::new(None));
        registry.register_collector(Box::new(ScrapeCollector::new(scrape.clone())));
        Self {
            registry,
            scrape,
            render: Mutex::new(()),
            requests,
            latency,
            errors,
            connections,
            bad_frames,
            admin_requests,
            admin_latency,
            admin_connections,
            admin_connections_refused,
            compiled_modules,
            conn,
            authz_denied,
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

    /// Counts one admin HTTP answer and records how long it took.
    pub fn admin_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.admin_requests
            .get_or_create(&AdminLabel {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.admin_latency
            .get_or_create(&AdminRouteLabel {
                route: route.to_string(),
            })
            .observe(seconds);
    }

    /// The whole page in the OpenMetrics text format ([`CONTENT_TYPE`]),
    /// ending with `# EOF`: the broker's own metrics plus the log's, the
    /// object store's and the given deployments' values as of now.
    pub fn render(
        &self,
        log: &Log,
        store: &ObjectStoreMetrics,
        detectors: &[DeploymentStatus],
    ) -> String {
        let snapshot = Snapshot::take(log, store, detectors);
        // The collector reads the slot while `encode` runs; the render lock
        // keeps a concurrent scrape from swapping in its snapshot meanwhile.
        // A poisoned lock holds no invariant worth refusing a scrape for.
        let _render = self.render.lock().unwrap_or_else(PoisonError::into_inner);
        *self.scrape.lock().unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
        let mut out = String::new();
        let encoded = encode(&mut out, &self.registry);
        *self.scrape.lock().unwrap_or_else(PoisonError::into_inner) = None;
        if let Err(e) = encoded {
            // Writing into a String only fails if an encoder reports an
            // error; a truncated page would be worse than an empty one.
            tracing::error!(error = %e, "cannot encode /metrics");
            out.clear();
            out.push_str("# EOF\n");
        }
        out
    }
}
