//! One client connection.
//!
//! Requests are read and dispatched strictly in order — dispatch does the
//! order-sensitive work, such as assigning produce offsets — but what a
//! request then waits for (fsync, long-poll, a rebalance) runs concurrently
//! with later requests. Responses are written in request order, as the Kafka
//! protocol requires.
//!
//! What one client can hold is bounded (issue 11, items 9 and 10): at most
//! `max-in-flight-requests-per-connection` requests are dispatched and not
//! yet answered (past that the connection is not read, so TCP pushes back on
//! the client); a client that hangs up has its waiting requests dropped at
//! once; a frame must arrive whole within `request-read-timeout-ms` of its
//! first byte; a connection with nothing to do is closed after
//! `connections-max-idle-ms`; its fetch responses computed and not yet
//! written stay within `fetch-max-bytes` ([`FetchBudget`]).

mod limits;
#[cfg(test)]
mod tests;
mod transport;
mod write;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::RequestKind;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use vigil_protocol::{decode_request, encode_error_response, encode_response, FrameDecoder, Head};

pub use limits::{ConnLimits, ConnMetrics, ConnSlot, ReasonLabel, Rejected};
pub use transport::Endpoint;
use transport::{ReadEvent, Reader};
use write::write_loop;

use crate::broker::Broker;
use crate::handlers;
use crate::security::session::{After, Gate};
use crate::security::Session;

/// Bytes read ahead past a complete frame that waits for an in-flight slot:
/// enough to see a hang-up (and so drop the client's waiting requests) in
/// the common case, small enough not to matter per connection.
const READ_AHEAD: usize = 64 * 1024;

/// Largest single growth of the read buffer while a frame arrives: a frame
/// announcing megabytes gets memory as its bytes come, not at its prefix.
const MAX_RESERVE: usize = 1024 * 1024;

/// What a handler knows about the connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Remote address.
    pub peer: SocketAddr,
    /// Which Kafka listener it came in on (see [`Endpoint::index`]).
    pub listener: usize,
    /// Who the client is: `User:NAME` after SASL, `User:<subject>` with a
    /// TLS client certificate, else `User:ANONYMOUS`.
    pub principal: String,
}

type Outgoing = BoxFuture<'static, Option<Response>>;

/// An encoded response on its way to the client. What it holds of the
/// broker (its bytes in the held-bytes gauge, its share of the connection's
/// fetch budget) is given back when it is dropped: written, or abandoned
/// with the connection.
struct Response {
    bytes: Bytes,
    gauge: Gauge,
    _budget: Option<OwnedSemaphorePermit>,
}

impl Response {
    fn new(bytes: Bytes, gauge: &Gauge, budget: Option<OwnedSemaphorePermit>) -> Response {
        gauge.inc_by(bytes.len() as i64);
        Response {
            bytes,
            gauge: gauge.clone(),
            _budget: budget,
        }
    }
}

impl Drop for Response {
    fn drop(&mut self) {
        self.gauge.dec_by(self.bytes.len() as i64);
    }
}

/// A dispatched request's place among the connection's in-flight ones,
/// given back when its response has been written (or dropped).
struct Ticket {
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Ticket {
    fn new(permit: OwnedSemaphorePermit, gauge: &Gauge) -> Ticket {
        gauge.inc();
        Ticket {
            _permit: permit,
            gauge: gauge.clone(),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// The connection's limits, from the settings.
struct Bounds {
    max_in_flight: usize,
    idle: Duration,
    frame_timeout: Duration,
    max_frame: usize,
    fetch_max_bytes: usize,
}

/// Why reading stopped.
enum End {
    /// The broker is shutting down: answer what was dispatched, then close.
    Shutdown,
    /// A frame could not be decoded: answer what was dispatched, then close.
    Broken(String),
    /// The client hung up (or the socket failed) between frames.
    Gone,
    /// The client hung up in the middle of a frame.
    Truncated(usize),
    /// Nothing read and nothing in flight for `connections-max-idle-ms`.
    Idle,
    /// A frame did not arrive whole within `request-read-timeout-ms`.
    SlowFrame,
    /// Authentication refused the client (a request before SASL, an
    /// expired session, a failed login): answer what was dispatched (the
    /// SASL error among it), then close.
    Refused(String),
}

/// What a decoded frame leads to.
enum Handled {
    /// A response on its way, then the next request.
    Next(Outgoing),
    /// A last response (a failed login), then close.
    Last(Outgoing, String),
}

/// Serves one connection until the client closes it, a frame is broken, a
/// limit closes it, or the broker shuts down. `slot` is its place under the
/// connection caps, freed when this returns; `endpoint` the listener it
/// came in on (TLS, SASL).
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
    slot: ConnSlot,
    endpoint: Endpoint,
) {
    let _slot = slot;
    broker.metrics.connections.inc();
    let c = &broker.settings.server;
    let accepted = match transport::accept(stream, peer, &endpoint, c.request_read_timeout()).await
    {
        Ok(a) => a,
        Err(reason) => {
            // Counted (vigil_connections_closed_by_broker_total{reason="tls_handshake"})
            // and logged at debug: a scan or a misconfigured client retrying
            // in a loop would flood the log at info.
            broker.metrics.conn.close("tls_handshake");
            tracing::debug!(%peer, %reason, "closing connection");
            broker.metrics.connections.dec();
            return;
        }
    };
    let bounds = Bounds {
        max_in_flight: c.max_in_flight_requests_per_connection,
        idle: c.connections_max_idle(),
        frame_timeout: c.request_read_timeout(),
        max_frame: c.max_frame_bytes(),
        fetch_max_bytes: c.fetch_max_bytes,
    };
    // Unbounded only in type: the reader sends one entry per ticket.
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_loop(accepted.writer, rx, peer));
    let mut conn = ConnInfo {
        peer,
        listener: endpoint.index,
        principal: accepted
            .cert_principal
            .unwrap_or_else(|| crate::security::ANONYMOUS.to_string()),
    };
    let mut session = Session::new(endpoint.protocol.sasl());
    let end = read_loop(
        accepted.reader,
        tx,
        &broker,
        (&mut conn, &mut session),
        &bounds,
        shutdown,
    )
    .await;
    let drain = match end {
        End::Shutdown => true,
        End::Broken(reason) => {
            broker.metrics.bad_frames.inc();
            tracing::info!(%peer, %reason, "closing connection");
            true
        }
        End::Gone => false,
        End::Truncated(pending) => {
            broker.metrics.bad_frames.inc();
            tracing::info!(%peer, pending, "client closed the connection mid-frame");
            false
        }
        End::Idle => {
            broker.metrics.conn.close("idle");
            tracing::debug!(%peer, "closing an idle connection");
            false
        }
        End::SlowFrame => {
            broker.metrics.conn.close("request_read_timeout");
            tracing::info!(%peer, timeout = ?bounds.frame_timeout, "closing a connection whose request frame did not arrive in time");
            false
        }
        End::Refused(reason) => {
            broker.metrics.conn.close("authentication");
            tracing::info!(%peer, principal = %conn.principal, %reason, "closing connection");
            true
        }
    };
    if !drain {
        // Nobody will read the answers: drop the waiting requests (long
        // polls, produce waits) now rather than when they complete.
        writer.abort();
    }
    let _ = writer.await;
    broker.metrics.connections.dec();
}

/// What happened while the read loop waited.
enum Event {
    Permit(Option<OwnedSemaphorePermit>),
    Socket(std::io::Result<ReadEvent>),
    IdleTimer,
}

async fn read_loop(
    mut rd: Reader,
    tx: mpsc::UnboundedSender<(Outgoing, Ticket)>,
    broker: &Arc<Broker>,
    (conn, session): (&mut ConnInfo, &mut Session),
    bounds: &Bounds,
    mut shutdown: watch::Receiver<bool>,
) -> End {
    let frames = FrameDecoder::new(bounds.max_frame);
    let in_flight = Arc::new(Semaphore::new(bounds.max_in_flight));
    let fetch_budget = FetchBudget::new(bounds.fetch_max_bytes);
    let gauge = &broker.metrics.conn.in_flight;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut permit: Option<OwnedSemaphorePermit> = None;
    let mut last_active = Instant::now();
    // When the first byte of the (incomplete) frame at the front arrived.
    let mut partial_since: Option<Instant> = None;
    loop {
        let head = match frames.head(&buf) {
            Ok(h) => h,
            Err(e) => return End::Broken(e.to_string()),
        };
        let complete = head == Head::Complete;
        if complete {
            partial_since = None;
            if permit.is_none() {
                permit = in_flight.clone().try_acquire_owned().ok();
            }
            if let Some(p) = permit.take() {
                let frame = match frames.decode(&mut buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => continue,
                    Err(e) => return End::Broken(e.to_string()),
                };
                let (out, last) =
                    match handle_frame(frame, broker, conn, session, &fetch_budget).await {
                        Ok(Handled::Next(out)) => (out, None),
                        Ok(Handled::Last(out, reason)) => (out, Some(reason)),
                        Err(end) => return end,
                    };
                last_active = Instant::now();
                if tx.send((out, Ticket::new(p, gauge))).is_err() {
                    return End::Gone; // the writer saw the socket fail
                }
                if let Some(reason) = last {
                    return End::Refused(reason);
                }
                continue;
            }
        } else if !buf.is_empty() && partial_since.is_none() {
            partial_since = Some(Instant::now());
        }
        // With a whole frame waiting for a slot, read only a little ahead.
        let can_read = !complete || buf.len() < READ_AHEAD;
        let missing = match head {
            Head::Partial { total: Some(t) } => Some(t.saturating_sub(buf.len())),
            _ => None,
        };
        if can_read {
            buf.reserve(missing.unwrap_or(4096).clamp(4096, MAX_RESERVE));
        }
        let idle_at = last_active + bounds.idle;
        let slow_at = partial_since.map(|t| t + bounds.frame_timeout);
        let event = tokio::select! {
            p = in_flight.clone().acquire_owned(), if complete => Event::Permit(p.ok()),
            // Reading, or (in-flight cap reached, not reading) waiting for
            // a reset: a client that hangs up with requests unread is seen
            // without reading them (see `transport`).
            r = rd.next(&mut buf, can_read, missing) => Event::Socket(r),
            _ = tokio::time::sleep_until(slow_at.unwrap_or(idle_at)), if slow_at.is_some() => {
                return End::SlowFrame;
            }
            _ = tokio::time::sleep_until(idle_at) => Event::IdleTimer,
            _ = tx.closed() => return End::Gone,
            _ = crate::server::until_shutdown(&mut shutdown) => return End::Shutdown,
        };
        match event {
            Event::Permit(p) => permit = p,
            Event::Socket(Ok(ReadEvent::Read(0))) if buf.is_empty() || complete => {
                return End::Gone
            }
            Event::Socket(Ok(ReadEvent::Read(0))) => return End::Truncated(buf.len()),
            Event::Socket(Ok(ReadEvent::Read(_))) => last_active = Instant::now(),
            Event::Socket(Ok(ReadEvent::Nothing)) => {}
            Event::Socket(Ok(ReadEvent::HungUp)) => return End::Gone,
            Event::Socket(Err(e)) => {
                tracing::debug!(peer = %conn.peer, error = %e, "read failed; dropping the connection");
                return End::Gone;
            }
            Event::IdleTimer => {
                if in_flight.available_permits() == bounds.max_in_flight && buf.is_empty() {
                    return End::Idle;
                }
                // Busy (a long poll, a rebalance): not idle.
                last_active = Instant::now();
            }
        }
    }
}

/// Decodes and dispatches one frame. `Err` closes the connection.
async fn handle_frame(
    frame: Bytes,
    broker: &Arc<Broker>,
    conn: &mut ConnInfo,
    session: &mut Session,
    fetch_budget: &FetchBudget,
) -> Result<Handled, End> {
    let req = match decode_request(frame.clone()) {
        Ok(r) => r,
        Err(e) => {
            broker.metrics.bad_frames.inc();
            return match e.answerable() {
                Some(correlation_id) => {
                    tracing::debug!(peer = %conn.peer, error = %e, "answering an unsupported request with an error");
                    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
                    let bytes = encode_error_response(correlation_id, raw_key);
                    let resp = Response::new(bytes, &broker.metrics.conn.response_bytes, None);
                    Ok(Handled::Next(futures::future::ready(Some(resp)).boxed()))
                }
                None => Err(End::Broken(e.to_string())),
            };
        }
    };
    match session.gate(req.api_key, Instant::now().into_std()) {
        Gate::Pass => {}
        Gate::Refuse(reason) => return Err(End::Refused(reason.to_string())),
        Gate::Sasl => return Ok(sasl(req, broker, conn, session).await),
    }
    // What a fetch may add to the connection's held responses; taken before
    // it reads (its future is lazy) and given back once its answer is out.
    let fetch_cost = match &req.body {
        RequestKind::Fetch(r) => Some(fetch_budget.cost(r.max_bytes)),
        _ => None,
    };
    let budget = fetch_budget.permits.clone();
    let api_key = req.api_key;
    let version = req.version;
    let correlation_id = req.header.correlation_id;
    let name = api_name(api_key);
    broker.metrics.request(name);
    let started = std::time::Instant::now();
    let pending = handlers::dispatch(broker, req, conn).await;
    let b = broker.clone();
    Ok(Handled::Next(
        async move {
            let permit = match fetch_cost {
                Some(n) => budget.acquire_many_owned(n).await.ok(),
                None => None,
            };
            let body = pending.await;
            b.metrics.observe(name, started.elapsed().as_secs_f64());
            let body = body?;
            match encode_response(correlation_id, api_key, version, &body) {
                Ok(bytes) => Some(Response::new(bytes, &b.metrics.conn.response_bytes, permit)),
                Err(e) => {
                    // A broker bug; the client will time out and retry.
                    tracing::error!(error = %e, "dropping a response that cannot be encoded");
                    None
                }
            }
        }
        .boxed(),
    ))
}

/// Answers SaslHandshake or SaslAuthenticate from the connection's
/// session; a successful login makes its user the connection's principal.
async fn sasl(
    req: vigil_protocol::Request,
    broker: &Arc<Broker>,
    conn: &mut ConnInfo,
    session: &mut Session,
) -> Handled {
    use kafka_protocol::messages::ResponseKind;
    let security = &broker.security;
    let name = api_name(req.api_key);
    broker.metrics.request(name);
    let (body, after) = match req.body {
        RequestKind::SaslHandshake(r) => {
            let (resp, after) = session.handshake(r, security);
            (ResponseKind::SaslHandshake(resp), after)
        }
        RequestKind::SaslAuthenticate(r) => {
            let (resp, after, user) = session
                .authenticate(r, req.version, security, conn.peer)
                .await;
            if let Some(user) = user {
                conn.principal = format!("User:{user}");
            }
            (ResponseKind::SaslAuthenticate(resp), after)
        }
        // The gate sends only these two here.
        _ => {
            return Handled::Last(
                futures::future::ready(None).boxed(),
                "not a SASL request".into(),
            )
        }
    };
    let resp = match encode_response(req.header.correlation_id, req.api_key, req.version, &body) {
        Ok(bytes) => Some(Response::new(
            bytes,
            &broker.metrics.conn.response_bytes,
            None,
        )),
        Err(e) => {
            tracing::error!(error = %e, "dropping a SASL response that cannot be encoded");
            None
        }
    };
    let out = futures::future::ready(resp).boxed();
    match after {
        After::Continue => Handled::Next(out),
        After::Close => Handled::Last(out, format!("{name} refused the client")),
    }
}

/// The bytes of fetch responses one connection may hold between being
/// computed and being written: `fetch-max-bytes`, so a client that pipelines
/// fetches and does not read holds what one fetch may answer, as in Kafka
/// (which reads a connection's next request only after answering the last).
struct FetchBudget {
    permits: Arc<Semaphore>,
    total: u32,
}

impl FetchBudget {
    fn new(fetch_max_bytes: usize) -> FetchBudget {
        let total = u32::try_from(fetch_max_bytes).unwrap_or(u32::MAX).max(1);
        FetchBudget {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// A fetch's share: what it may answer with, at least 1 and at most
    /// the whole budget.
    fn cost(&self, max_bytes: i32) -> u32 {
        u32::try_from(max_bytes).unwrap_or(0).clamp(1, self.total)
    }
}

/// Kafka's name for an API, for logs and metrics.
pub fn api_name(k: kafka_protocol::messages::ApiKey) -> &'static str {
    use kafka_protocol::messages::ApiKey as K;
    match k {
        K::Produce => "Produce",
        K::Fetch => "Fetch",
        K::ListOffsets => "ListOffsets",
        K::Metadata => "Metadata",
        K::OffsetCommit => "OffsetCommit",
        K::OffsetFetch => "OffsetFetch",
        K::FindCoordinator => "FindCoordinator",
        K::JoinGroup => "JoinGroup",
        K::Heartbeat => "Heartbeat",
        K::LeaveGroup => "LeaveGroup",
        K::SyncGroup => "SyncGroup",
        K::DescribeGroups => "DescribeGroups",
        K::ListGroups => "ListGroups",
        K::ApiVersions => "ApiVersions",
        K::CreateTopics => "CreateTopics",
        K::DeleteTopics => "DeleteTopics",
        K::DescribeConfigs => "DescribeConfigs",
        K::InitProducerId => "InitProducerId",
        K::CreatePartitions => "CreatePartitions",
        K::DescribeCluster => "DescribeCluster",
        K::SaslHandshake => "SaslHandshake",
        K::SaslAuthenticate => "SaslAuthenticate",
        K::AlterUserScramCredentials => "AlterUserScramCredentials",
        K::DescribeUserScramCredentials => "DescribeUserScramCredentials",
        _ => "Other",
    }
}
