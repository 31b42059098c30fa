//! The admin HTTP endpoint: `/healthz`, `/metrics` and the JSON admin API
//! under `/v1`, on axum. Handlers are thin: decode the request, call the
//! detector engine, encode its answer.
//!
//! ```text
//! GET    /healthz                         → "ok"
//! GET    /metrics                         → OpenMetrics text
//! GET    /openapi.json                    → this API's OpenAPI 3.1 description
//! POST   /v1/modules                      body: .wasm bytes → module metadata
//! GET    /v1/modules[?name=NAME]          → [module metadata], oldest first
//! POST   /v1/deployments                  body: deployment spec → status
//! GET    /v1/deployments                  → [status]
//! GET    /v1/deployments/NAME             → status
//! POST   /v1/deployments/NAME/pause       → status
//! POST   /v1/deployments/NAME/resume      → status
//! GET    /v1/deployments/NAME/logs[?after=SEQ&limit=N] → the module's recent log lines
//! DELETE /v1/deployments/NAME             → {"undeployed": NAME}
//! POST   /v1/deployments/NAME/module      body: {"module", "config"?, "rebuild_records"?} → status (hot swap)
//! POST   /v1/deployments/NAME/shadow      body: {"module", "name"?, "output"?, "config"?} → status of the shadow
//! POST   /v1/replays                      body: replay spec → replay status
//! GET    /v1/replays                      → [replay status]
//! GET    /v1/replays/ID                   → replay status
//! DELETE /v1/replays/ID                   → {"cancelled": ID}
//! POST   /v1/diff                         body: diff request → diff report (see `diff`)
//! GET    /v1/overview, /v1/history, /v1/topics, /v1/topics/NAME/records,
//!        /v1/groups, /v1/deployments/NAME/alerts → the console's views
//!                                         (see `vigil_api::console`)
//! GET    /console[/app.js|/app.css]       → the web console (see `crate::console`)
//! ```
//!
//! Every error is a [`vigil_api::ErrorBody`] (`{"error", "kind",
//! "retriable"}`) with the status of its kind: 400 (bad input), 404
//! (unknown), 409 (conflicts with the current state), 503 (a dependency
//! failed, or the request did not finish in time: retry may help) or 500
//! (corrupt stored data or a bug). The HTTP layer adds 405 (wrong method, with
//! `Allow`) and 413 (body over the route's limit). Unknown query parameters
//! are refused (400).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower_http::normalize_path::NormalizePath;
use tower_http::trace::{DefaultMakeSpan, DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;
use vigil_engine::status::DeploymentStatus;
use vigil_engine::Detectors;
use vigil_storage::Log;

use crate::broker::Broker;
use crate::console::Console;
use crate::metrics::{Metrics, CONTENT_TYPE};

mod auth;
mod cluster;
mod deployments;
mod diff;
pub mod error;
pub(crate) mod extract;
mod guard;
mod listener;
mod modules;
mod openapi;
mod replays;
pub mod run_as;
#[cfg(test)]
mod tests;

pub use error::ApiError;

/// The admin API's limits. The defaults are what `vigil serve` uses; the
/// `[admin]` settings section sets them (see `settings::AdminSettings`).
#[derive(Debug, Clone)]
pub struct AdminLimits {
    /// Largest module upload (modules are a few MiB at most).
    pub module_body: usize,
    /// Largest JSON request body.
    pub json_body: usize,
    /// `/v1` requests handled at once; more wait for a slot (up to their
    /// deadline). Uploads and deploys compile modules, a core each.
    pub max_concurrent: usize,
    /// Deadline of requests that may compile a module (upload, deploy, swap,
    /// shadow, replay) or read whole topics (diff).
    pub compile_timeout: Duration,
    /// Deadline of every other `/v1` request and of `/metrics`.
    pub request_timeout: Duration,
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// How long a request head (request line and headers) may take to
    /// arrive, and an idle keep-alive connection may wait for its next one.
    pub header_read_timeout: Duration,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            module_body: 64 << 20,
            json_body: 1 << 20,
            max_concurrent: 16,
            compile_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// `/metrics` requests rendered at once: scrapes get their own slots, so
/// that admin requests filling theirs do not hold up monitoring.
const MAX_CONCURRENT_SCRAPES: usize = 4;

/// What `/metrics` renders and where admin request metrics are counted.
pub trait MetricsSource: Send + Sync + 'static {
    /// The broker's metrics.
    fn metrics(&self) -> &Metrics;
    /// The whole page, with `detectors` as the deployments' current status.
    fn render(&self, detectors: &[DeploymentStatus]) -> String;
}

impl MetricsSource for Broker {
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn render(&self, detectors: &[DeploymentStatus]) -> String {
        self.metrics
            .render(&self.log, &self.store_metrics, detectors)
    }
}

/// What the admin handlers reach: the engine, the log (for `/v1/diff`'s
/// topics) and the metrics.
#[derive(Clone)]
pub struct AdminState {
    pub(crate) detectors: Arc<Detectors>,
    pub(crate) log: Arc<Log>,
    pub(crate) metrics: Arc<dyn MetricsSource>,
    /// What the web console's views read (see `crate::console`).
    pub(crate) console: Arc<Console>,
    /// Whose credentials the API checks (`admin-auth`); `None`: open.
    pub(crate) auth: Option<Arc<crate::security::Security>>,
    /// The broker's cluster membership, if it is a node of one.
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
    /// This broker's node id.
    pub(crate) node_id: i32,
}

impl AdminState {
    /// State over explicit parts (tests build it over an injected store).
    pub fn new(detectors: Arc<Detectors>, log: Arc<Log>, metrics: Arc<dyn MetricsSource>) -> Self {
        AdminState {
            detectors,
            log,
            metrics,
            console: Arc::new(Console::default()),
            auth: None,
            cluster: None,
            node_id: 0,
        }
    }

    /// The same state with the console's parts.
    pub fn with_console(mut self, console: Arc<Console>) -> Self {
        self.console = console;
        self
    }

    /// State of a running broker.
    pub fn of(broker: Arc<Broker>) -> Self {
        let console = Arc::new(Console::of(&broker));
        let auth = broker
            .security
            .settings()
            .admin_auth
            .then(|| broker.security.clone());
        let (node_id, cluster) = (broker.settings.server.node_id, broker.cluster.clone());
        let mut state = AdminState::new(broker.detectors.clone(), broker.log.clone(), broker)
            .with_console(console);
        state.auth = auth;
        state.node_id = node_id;
        state.cluster = cluster;
        state
    }
}

/// The admin API's routes and middleware (see the module docs). Trailing
/// slashes are not trimmed here; [`serve`] does that before routing.
pub fn router(state: AdminState, limits: &AdminLimits) -> Router {
    let permits = Arc::new(Semaphore::new(limits.max_concurrent));
    let quick = from_fn_with_state(
        guard::Guard::new(permits.clone(), limits.request_timeout),
        guard::guard,
    );
    let slow = from_fn_with_state(
        guard::Guard::new(permits, limits.compile_timeout),
        guard::guard,
    );
    let scrape = from_fn_with_state(
        guard::Guard::new(
            Arc::new(Semaphore::new(MAX_CONCURRENT_SCRAPES)),
            limits.request_timeout,
        ),
        guard::guard,
    );
    // One guard per handler, so each route gets its class's deadline.
    let q = |m: MethodRouter<AdminState>| m.layer(quick.clone());
    let compiles = |m: MethodRouter<AdminState>| m.layer(slow.clone());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics).layer(scrape))
        .route("/openapi.json", q(get(openapi::get)))
        .route(
            "/v1/modules",
            compiles(post(modules::upload))
                .layer(DefaultBodyLimit::max(limits.module_body))
                .merge(q(get(modules::list))),
        )
        .route(
            "/v1/deployments",
            compiles(post(deployments::create)).merge(q(get(deployments::list))),
        )
        .route(
            "/v1/deployments/{name}",
            q(get(deployments::get)).merge(q(delete(deployments::delete))),
        )
        .route("/v1/deployments/{name}/pause", q(post(deployments::pause)))
        .route(
            "/v1/deployments/{name}/resume",
            q(post(deployments::resume)),
        )
        .route("/v1/deployments/{name}/logs", q(get(deployments::logs)))
        .route(
            "/v1/deployments/{name}/module",
            compiles(post(deployments::swap)),
        )
        .route(
            "/v1/deployments/{name}/shadow",
            compiles(post(deployments::shadow)),
        )
        .route(
            "/v1/replays",
            compiles(post(replays::create)).merge(q(get(replays::list))),
        )
        .route(
            "/v1/replays/{id}",
            q(get(replays::get)).merge(q(delete(replays::cancel))),
        )
        .route("/v1/cluster", q(get(cluster::status)))
        .route("/v1/cluster/move", q(post(cluster::move_partition)))
        // Reads alert topics whole: a long read, but no compile.
        .route("/v1/diff", compiles(post(diff::diff)))
        .merge(console_routes(q))
        .fallback(guard::not_found)
        .method_not_allowed_fallback(guard::method_not_allowed)
        .layer(from_fn_with_state(state.clone(), auth::require))
        .layer(from_fn_with_state(state.clone(), guard::record))
        .layer(DefaultBodyLimit::max(limits.json_body))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                .on_failure(DefaultOnFailure::new().level(Level::WARN)),
        )
        .with_state(state)
}

/// The same router with a trailing `/` ignored (`/v1/deployments/` is
/// `/v1/deployments`, as clients have been able to write it).
pub fn app(state: AdminState, limits: &AdminLimits) -> NormalizePath<Router> {
    NormalizePath::trim_trailing_slash(router(state, limits))
}

/// The web console's page and assets, and the read-only views it draws
/// (see `crate::console`).
fn console_routes(
    q: impl Fn(MethodRouter<AdminState>) -> MethodRouter<AdminState>,
) -> Router<AdminState> {
    use crate::console::{self, views};
    Router::new()
        .route("/console", get(console::index))
        .route("/console/app.js", get(console::script))
        .route("/console/app.css", get(console::style))
        .route("/v1/overview", q(get(views::overview)))
        .route("/v1/history", q(get(views::history)))
        .route("/v1/topics", q(get(views::topics)))
        .route("/v1/topics/{name}/records", q(get(views::records)))
        .route("/v1/groups", q(get(views::groups)))
        .route("/v1/deployments/{name}/alerts", q(get(views::alerts)))
}

async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
        "ok\n",
    )
        .into_response()
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let compiled = s.detectors.registry().compiled();
    s.metrics
        .metrics()
        .compiled_modules
        .set(i64::try_from(compiled).unwrap_or(i64::MAX));
    let page = s.metrics.render(&s.detectors.list().await);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        page,
    )
        .into_response()
}

/// Serves HTTP on `listener` with the limits of the broker's `[admin]`
/// settings until `shutdown` turns true, then lets requests in progress
/// finish for a few seconds.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: watch::Receiver<bool>) {
    let limits = broker.settings.admin.limits();
    let tls = admin_tls(&broker);
    let state = AdminState::of(broker.clone());
    let sampler =
        crate::console::sampler::spawn(broker, state.console.history.clone(), shutdown.clone());
    serve_tls(listener, state, &limits, tls, shutdown).await;
    let _ = sampler.await;
}

/// The admin TLS acceptor, when `admin-tls` is on.
fn admin_tls(broker: &Broker) -> Option<tokio_rustls::TlsAcceptor> {
    let sec = &broker.security;
    sec.settings()
        .admin_tls
        .then(|| sec.tls.as_ref().map(|t| t.for_admin()))
        .flatten()
}

/// Serves `/metrics` (and `/healthz`) alone on `listener`, without
/// credentials: what Prometheus scrapes, apart from the admin API
/// (`metrics-listen`).
pub async fn serve_metrics(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
) {
    let limits = broker.settings.admin.limits();
    let mut state = AdminState::of(broker);
    state.auth = None;
    let source = state.metrics.clone();
    let scrape = from_fn_with_state(
        guard::Guard::new(
            Arc::new(Semaphore::new(MAX_CONCURRENT_SCRAPES)),
            limits.request_timeout,
        ),
        guard::guard,
    );
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics).layer(scrape))
        .fallback(guard::not_found)
        .with_state(state);
    let app = NormalizePath::trim_trailing_slash(router);
    listener::serve(listener, app, &limits, None, source, shutdown).await
}

/// [`serve`] over explicit state and limits.
pub async fn serve_with(
    listener: TcpListener,
    state: AdminState,
    limits: &AdminLimits,
    shutdown: watch::Receiver<bool>,
) {
    serve_tls(listener, state, limits, None, shutdown).await
}

/// [`serve_with`], over TLS when `tls` is given.
pub async fn serve_tls(
    listener: TcpListener,
    state: AdminState,
    limits: &AdminLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) {
    let metrics = state.metrics.clone();
    listener::serve(listener, app(state, limits), limits, tls, metrics, shutdown).await
}
