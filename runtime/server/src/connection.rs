//! One client connection.
//!
//! Requests are read and dispatched strictly in order — dispatch does the
//! order-sensitive work, such as assigning produce offsets — but what a
//! request then waits for (fsync, long-poll, a rebalance) runs concurrently
//! with later requests. Responses are written in request order, as the Kafka
//! protocol requires.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use vigil_protocol::{decode_request, encode_error_response, encode_response, FrameDecoder};

use crate::broker::Broker;
use crate::handlers;

/// Requests of one connection that may be in flight at once.
const MAX_INFLIGHT: usize = 64;

/// What a handler knows about the connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Remote address.
    pub peer: SocketAddr,
}

type Outgoing = BoxFuture<'static, Option<Bytes>>;

/// Serves one connection until the client closes it, a frame is broken, or
/// the broker shuts down.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
) {
    broker.metrics.connections.inc();
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Outgoing>(MAX_INFLIGHT);
    let writer = tokio::spawn(write_loop(wr, rx, peer));
    let conn = ConnInfo { peer };
    if let Err(reason) = read_loop(rd, tx, &broker, &conn, shutdown).await {
        broker.metrics.bad_frames.inc();
        tracing::info!(%peer, %reason, "closing connection");
    }
    let _ = writer.await;
    broker.metrics.connections.dec();
}

async fn read_loop(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    tx: mpsc::Sender<Outgoing>,
    broker: &Arc<Broker>,
    conn: &ConnInfo,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let frames = FrameDecoder::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        match frames.decode(&mut buf) {
            Err(e) => return Err(e.to_string()),
            Ok(Some(frame)) => {
                let out = handle_frame(frame, broker, conn).await?;
                if tx.send(out).await.is_err() {
                    return Ok(()); // the writer saw the socket close
                }
                continue;
            }
            Ok(None) => {}
        }
        if let Some(total) = frames.pending_len(&buf) {
            buf.reserve(total.saturating_sub(buf.len()));
        } else {
            buf.reserve(4096);
        }
        let n = tokio::select! {
            r = rd.read_buf(&mut buf) => r.map_err(|e| format!("read error: {e}"))?,
            _ = crate::server::until_shutdown(&mut shutdown) => return Ok(()),
        };
        if n == 0 {
            if buf.is_empty() {
                return Ok(());
            }
            return Err(format!(
                "client closed the connection mid-frame ({} bytes pending)",
                buf.len()
            ));
        }
    }
}

/// Decodes and dispatches one frame. `Err` closes the connection.
async fn handle_frame(
    frame: Bytes,
    broker: &Arc<Broker>,
    conn: &ConnInfo,
) -> Result<Outgoing, String> {
    let req = match decode_request(frame.clone()) {
        Ok(r) => r,
        Err(e) => {
            broker.metrics.bad_frames.inc();
            return match e.answerable() {
                Some(correlation_id) => {
                    tracing::debug!(peer = %conn.peer, error = %e, "answering an unsupported request with an error");
                    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
                    let bytes = encode_error_response(correlation_id, raw_key);
                    Ok(futures::future::ready(Some(bytes)).boxed())
                }
                None => Err(e.to_string()),
            };
        }
    };
    let api_key = req.api_key;
    let version = req.version;
    let correlation_id = req.header.correlation_id;
    let name = api_name(api_key);
    broker.metrics.request(name);
    let started = std::time::Instant::now();
    let pending = handlers::dispatch(broker, req, conn).await;
    let b = broker.clone();
    Ok(async move {
        let body = pending.await;
        b.metrics.observe(name, started.elapsed().as_secs_f64());
        let body = body?;
        match encode_response(correlation_id, api_key, version, &body) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                // A broker bug; the client will time out and retry.
                tracing::error!(error = %e, "dropping a response that cannot be encoded");
                None
            }
        }
    }
    .boxed())
}

async fn write_loop(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    peer: SocketAddr,
) {
    let mut inflight = FuturesOrdered::new();
    let mut open = true;
    loop {
        tokio::select! {
            next = rx.recv(), if open => match next {
                Some(f) => inflight.push_back(f),
                None => open = false,
            },
            Some(resp) = inflight.next(), if !inflight.is_empty() => {
                if let Some(bytes) = resp {
                    if let Err(e) = wr.write_all(&bytes).await {
                        tracing::debug!(%peer, error = %e, "write failed; dropping the connection");
                        return;
                    }
                }
            }
            else => break,
        }
    }
    let _ = wr.shutdown().await;
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
        _ => "Other",
    }
}
