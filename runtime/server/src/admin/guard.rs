//! What wraps the admin handlers: a concurrency limit and a deadline per
//! request, per-request metrics, and the JSON answers for unknown paths and
//! wrong methods.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use vigil_api::ErrorKind;

use super::error::ApiError;
use super::AdminState;

/// A shared limit on handlers in progress, with the deadline of one class of
/// route.
#[derive(Clone)]
pub struct Guard {
    permits: Arc<Semaphore>,
    timeout: Duration,
}

impl Guard {
    /// Requests guarded by `permits`, each answered within `timeout`.
    pub fn new(permits: Arc<Semaphore>, timeout: Duration) -> Self {
        Guard { permits, timeout }
    }
}

/// Runs the handler under a permit of the concurrency limit, and answers 503
/// when no permit frees up or the handler does not finish within the
/// deadline.
///
/// The handler runs in its own task that holds the permit, so that neither
/// the deadline nor a client hanging up cancels an engine operation halfway
/// (a deploy that persisted its spec but did not start its runners): it
/// finishes in the background and still counts against the limit.
pub async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let deadline = tokio::time::Instant::now() + g.timeout;
    let what = format!("{} {}", req.method(), req.uri().path());
    let permit = match tokio::time::timeout_at(deadline, g.permits.acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_closed)) => {
            return ApiError::new(
                ErrorKind::Unavailable,
                format!("{what}: the admin API is shutting down"),
            )
            .into_response();
        }
        Err(_elapsed) => {
            return ApiError::new(
                ErrorKind::Unavailable,
                format!(
                    "{what}: the admin API is busy with other requests and none finished within {:?}; retry later",
                    g.timeout
                ),
            )
            .into_response();
        }
    };
    let task = tokio::spawn(async move {
        let resp = next.run(req).await;
        drop(permit);
        resp
    });
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => ApiError::new(
            ErrorKind::Internal,
            format!("{what}: the handler failed: {e} (a bug; see the broker's log)"),
        )
        .into_response(),
        Err(_elapsed) => ApiError::new(
            ErrorKind::Unavailable,
            format!(
                "{what}: not finished within {:?}; the operation continues in the background, so check its status before retrying",
                g.timeout
            ),
        )
        .into_response(),
    }
}

/// Counts every answer by method, route pattern and status.
pub async fn record(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    s.metrics.metrics().admin_request(
        method.as_str(),
        &route,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// The answer for a path no route has.
pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        format!(
            "no such endpoint: {method} {} (try /healthz, /metrics or /v1/deployments)",
            uri.path()
        ),
    )
}

/// The answer for a known path with a method it does not take; the router
/// adds the `Allow` header.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Invalid,
        format!(
            "{} does not take {method} (the Allow header lists what it takes)",
            uri.path()
        ),
    )
}
