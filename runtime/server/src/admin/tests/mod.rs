//! The admin router driven in process (`tower::ServiceExt::oneshot`) over a
//! real log and detector engine on an in-memory object store behind the
//! fault-injecting store, so store failures are real ones.

mod console;
mod errors;
mod http;
mod listener;
mod openapi;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use tower::ServiceExt as _;
use tower_http::normalize_path::NormalizePath;
use vigil_api::{ErrorBody, ErrorKind};
use vigil_engine::Detectors;
use vigil_storage::store::{FaultControl, FaultyStore, InstrumentedStore, ObjectStoreMetrics};
use vigil_storage::{Log, LogConfig, TopicConfig};

use super::{app, AdminLimits, AdminState, MetricsSource};
use crate::metrics::Metrics;

/// `/metrics` of the harness: the same render the broker does.
struct TestMetrics {
    metrics: Metrics,
    log: Arc<Log>,
    store: ObjectStoreMetrics,
}

impl MetricsSource for TestMetrics {
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn render(&self, detectors: &[vigil_engine::status::DeploymentStatus]) -> String {
        self.metrics.render(&self.log, &self.store, detectors)
    }
}

/// A log, an engine and the admin app over
/// `Instrumented(Faulty(InMemory))`.
pub(super) struct Harness {
    _dir: tempfile::TempDir,
    pub(super) faults: FaultControl,
    /// The store under the faults, for planting objects.
    pub(super) raw_store: Arc<dyn ObjectStore>,
    pub(super) log: Arc<Log>,
    pub(super) detectors: Arc<Detectors>,
    app: NormalizePath<Router>,
    state: AdminState,
    limits: AdminLimits,
}

/// An answer: status, headers, body.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

impl Answer {
    /// The body as an error body; panics (failing the test) if it is not one.
    pub(super) fn error(&self) -> ErrorBody {
        match serde_json::from_slice(&self.body) {
            Ok(e) => e,
            Err(e) => panic!(
                "HTTP {}: body is not an error body ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            ),
        }
    }

    /// The body as JSON.
    pub(super) fn json(&self) -> serde_json::Value {
        match serde_json::from_slice(&self.body) {
            Ok(v) => v,
            Err(e) => panic!(
                "HTTP {}: body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            ),
        }
    }

    /// Asserts an error answer of `status` and `kind`, whose message
    /// contains `needle`; returns the message.
    pub(super) fn expect_error(&self, status: StatusCode, kind: ErrorKind, needle: &str) -> String {
        let e = self.error();
        assert_eq!(self.status, status, "{e:?}");
        assert_eq!(e.kind, Some(kind), "{e:?}");
        assert_eq!(e.retriable, kind.retriable(), "{e:?}");
        assert!(e.error.contains(needle), "{needle:?} not in {:?}", e.error);
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        e.error
    }
}

impl Harness {
    pub(super) async fn new() -> Harness {
        Self::with_limits(AdminLimits::default()).await
    }

    pub(super) async fn with_limits(limits: AdminLimits) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let faulty = FaultyStore::new(raw_store.clone());
        let faults = faulty.control();
        let instrumented = InstrumentedStore::new(Arc::new(faulty));
        let store_metrics = instrumented.metrics();
        let mut config = LogConfig::new(dir.path().join("data"));
        config.lease_interval = std::time::Duration::from_millis(50);
        let log = Log::open(config, Arc::new(instrumented))
            .await
            .expect("open log");
        let host = vigil_host::HostConfig {
            cache_dir: dir.path().join("module-cache"),
            max_instances: 16,
            ..Default::default()
        };
        let detectors = Detectors::open(log.clone(), host)
            .await
            .expect("open detectors");
        let metrics = Arc::new(TestMetrics {
            metrics: Metrics::default(),
            log: log.clone(),
            store: store_metrics,
        });
        let state = AdminState::new(detectors.clone(), log.clone(), metrics);
        Harness {
            _dir: dir,
            faults,
            raw_store,
            log,
            detectors,
            app: app(state.clone(), &limits),
            state,
            limits,
        }
    }

    /// Sends one request through the app.
    pub(super) async fn call(&self, method: Method, uri: &str, body: impl Into<Body>) -> Answer {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(body.into())
            .expect("request");
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("read body");
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Serves the app on a real loopback listener, as `vigil serve` does,
    /// until the returned sender says stop.
    pub(super) async fn listen(
        &self,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, rx) = tokio::sync::watch::channel(false);
        let (state, limits) = (self.state.clone(), self.limits.clone());
        let task = tokio::spawn(async move {
            super::serve_with(listener, state, &limits, rx).await;
        });
        (addr, stop, task)
    }

    pub(super) async fn get(&self, uri: &str) -> Answer {
        self.call(Method::GET, uri, Body::empty()).await
    }

    pub(super) async fn post(&self, uri: &str, body: impl Into<Body>) -> Answer {
        self.call(Method::POST, uri, body).await
    }

    /// Uploads the zscore plugin through the API; returns its hash.
    pub(super) async fn upload_zscore(&self) -> String {
        let a = self.post("/v1/modules", wasm("vigil_plugin_zscore")).await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
        a.json()["hash"]
            .as_str()
            .expect("hash in the module metadata")
            .to_string()
    }

    pub(super) async fn create_topic(&self, name: &str) {
        self.log
            .create_topic(
                name,
                TopicConfig {
                    partitions: 1,
                    configs: Default::default(),
                },
            )
            .await
            .expect("create topic");
    }

    pub(super) async fn shutdown(self) {
        self.faults.clear();
        self.detectors.shutdown().await;
        self.log.close().await;
    }
}

/// A zscore deployment spec of `module` from `input` to `output`.
pub(super) fn zscore_spec(name: &str, module: &str, input: &str, output: &str) -> String {
    serde_json::json!({
        "name": name,
        "module": module,
        "inputs": [input],
        "output": output,
        "config": {"field": "amount"},
        "value_schema": {"amount": "float64"},
    })
    .to_string()
}

/// A built detector module (`$VIGIL_WASM_DIR` or the workspace's
/// `target/wasm/...`, built by `scripts/build-detectors.sh`). A missing module
/// fails the test: skipping would hide that the real path was never run.
pub(super) fn wasm(name: &str) -> Vec<u8> {
    vigil_host::read_built_module(name).unwrap_or_else(|e| panic!("{e}"))
}
