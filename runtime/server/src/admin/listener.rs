//! The admin listener's accept loop and HTTP/1 connections, written out
//! rather than `axum::serve` because that one has no bound on connections
//! and no header-read timeout (a client sending half its headers holds its
//! connection, and a task, for ever).
//!
//! - At most [`AdminLimits::max_connections`] connections are served at once;
//!   one past that is answered `503` and closed at once, so a flood costs a
//!   file descriptor for a moment, not a task and buffers for good.
//! - A connection whose request head does not arrive complete within
//!   [`AdminLimits::header_read_timeout`] is closed; that includes an idle
//!   keep-alive connection waiting for its next request.
//! - An accept error other than a dropped peer (`EMFILE`, `ENFILE`, `ENOBUFS`)
//!   backs off, doubling from 10 ms to 1 s, logging once per episode, while
//!   the connections already open keep being served; the first accept that
//!   works ends the episode.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower_http::normalize_path::NormalizePath;

use super::{AdminLimits, MetricsSource};

/// How long shutdown lets admin requests in progress finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest wait after an accept error that is not about one peer.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// What a connection over the limit gets before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
connection: close\r\n\
content-length: 107\r\n\
\r\n\
{\"error\":\"the admin API has too many open connections; retry later\",\"kind\":\"unavailable\",\"retriable\":true}\n";

/// Serves `app` on `listener` within `limits` until `shutdown` turns true,
/// then lets the requests in progress finish for a few seconds.
pub(super) async fn serve(
    listener: TcpListener,
    app: NormalizePath<Router>,
    limits: &AdminLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics: Arc<dyn MetricsSource>,
    shutdown: watch::Receiver<bool>,
) {
    let handshake_timeout = limits.header_read_timeout;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut conns = JoinSet::new();
    let mut stop = shutdown.clone();
    let mut backoff: Option<Duration> = None;
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    backoff = None;
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        refuse(&stream);
                        metrics.metrics().admin_connections_refused.inc();
                        continue;
                    };
                    let (http, app, metrics) = (http.clone(), app.clone(), metrics.clone());
                    let stop = shutdown.clone();
                    let tls = tls.clone();
                    conns.spawn(async move {
                        let _slot = slot;
                        let open = metrics.metrics().admin_connections.clone();
                        open.inc();
                        match tls {
                            None => serve_conn(&http, stream, peer, app, stop).await,
                            // The handshake counts against the header-read
                            // timeout: a client stalling it is a slowloris too.
                            Some(tls) => match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                                Ok(Ok(stream)) => serve_conn(&http, stream, peer, app, stop).await,
                                Ok(Err(e)) => tracing::debug!(error = %e, "admin TLS handshake failed"),
                                Err(_) => tracing::debug!("admin TLS handshake timed out"),
                            },
                        }
                        open.dec();
                    });
                }
                Err(e) if is_peer_error(&e) => {}
                Err(e) => {
                    let wait = match backoff {
                        None => {
                            tracing::warn!(error = %e, "the admin listener cannot accept connections (out of file descriptors?); backing off while open connections are served");
                            ACCEPT_BACKOFF.0
                        }
                        Some(w) => (w * 2).min(ACCEPT_BACKOFF.1),
                    };
                    backoff = Some(wait);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = crate::server::until_shutdown(&mut stop) => break,
                    }
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = crate::server::until_shutdown(&mut stop) => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "admin requests did not finish within {DRAIN_TIMEOUT:?} of shutdown; closing them"
        );
        conns.abort_all();
    }
}

/// Serves HTTP/1 on one accepted connection (plain or TLS) until it ends
/// or the broker shuts down. Requests carry the peer's address
/// (`ConnectInfo`) for the failed-login budget.
async fn serve_conn<I>(
    http: &hyper::server::conn::http1::Builder,
    io: I,
    peer: std::net::SocketAddr,
    app: NormalizePath<Router>,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let inner = TowerToHyperService::new(app);
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            hyper::service::Service::call(&inner, req)
        });
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => finished(r),
        () = crate::server::until_shutdown(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            finished(conn.await);
        }
    }
}

/// Answers a connection over the limit without waiting on it: the answer
/// fits in any socket buffer, and a peer that cannot take it loses nothing
/// it would have got anyway.
fn refuse(stream: &TcpStream) {
    let _ = stream.try_write(BUSY);
}

fn finished(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        // Header timeouts, resets and malformed requests: the client's doing.
        tracing::debug!(error = %e, "admin connection ended");
    }
}

/// Errors about one connection that died before it was accepted; the
/// listener itself is fine.
fn is_peer_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_busy_answer_has_the_length_it_says() {
        let text = std::str::from_utf8(super::BUSY).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{}",
            body.len()
        );
        let e: vigil_api::ErrorBody = serde_json::from_str(body).expect("an error body");
        assert_eq!(e.kind, Some(vigil_api::ErrorKind::Unavailable));
    }
}
