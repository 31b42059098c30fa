//! The admin HTTP endpoint: `/healthz`, `/metrics` and the JSON admin API
//! under `/v1` (modules and deployments: see `detectors`; alert diffs: see
//! `diff`).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;

mod detectors;
mod diff;

/// A response: status, content type, body.
pub(crate) type Reply = (StatusCode, &'static str, Bytes);

async fn route(
    broker: Arc<Broker>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path().trim_end_matches('/') == "/v1/diff" {
        let (status, ctype, body) = diff::route(&broker, req).await;
        return Ok(respond(status, ctype, body));
    }
    if req.uri().path().starts_with("/v1/") {
        let (status, ctype, body) = detectors::route(&broker, req).await;
        return Ok(respond(status, ctype, body));
    }
    let (status, ctype, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/healthz") => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        ("GET", "/metrics") => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            broker.metrics.render(
                &broker.log,
                &broker.store_metrics,
                &broker.detectors.list().await,
            ),
        ),
        (_, path) => (
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("no such endpoint: {path} (try /healthz, /metrics or /v1/deployments)\n"),
        ),
    };
    Ok(respond(status, ctype, Bytes::from(body)))
}

fn respond(status: StatusCode, ctype: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// Serves HTTP on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
            _ = crate::server::until_shutdown(&mut shutdown) => return,
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| route(broker.clone(), req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}
