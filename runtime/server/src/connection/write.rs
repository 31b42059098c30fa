//! The connection's write side: answers go out in request order, and the
//! answers that are ready together go out together.
//!
//! Requests pipeline (librdkafka keeps up to five in flight per
//! connection), and one WAL group commit completes all the Produce
//! requests in it at once. Writing each answer with its own write costs a
//! syscall, a pass through the TCP stack and, on the client's side, a
//! wake-up each; small answers that are ready at the same moment are
//! written as one buffer instead (docs/design/0020, session 15).

use std::net::SocketAddr;

use bytes::BytesMut;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{Outgoing, Response, Ticket};

/// Ready answers are gathered into one write up to this many bytes; a
/// larger answer (a fetch) is written on its own, without a copy.
pub(super) const GATHER_BYTES: usize = 64 * 1024;

/// An answer with its place among the connection's in-flight requests.
type Answered = (Option<Response>, Ticket);

async fn answer(f: Outgoing, ticket: Ticket) -> Answered {
    (f.await, ticket)
}

/// Writes the answers of `rx`'s requests in order until the connection's
/// reader is done and every answer is out, or a write fails.
pub(super) async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<(Outgoing, Ticket)>,
    peer: SocketAddr,
) {
    let mut pending = FuturesOrdered::new();
    let mut open = true;
    let mut batch: Vec<Answered> = Vec::new();
    loop {
        tokio::select! {
            next = rx.recv(), if open => match next {
                Some((f, ticket)) => pending.push_back(answer(f, ticket)),
                None => open = false,
            },
            Some(first) = pending.next(), if !pending.is_empty() => {
                let mut bytes = size(&first);
                batch.push(first);
                // Requests that arrived meanwhile may be answered already
                // (a group commit completes several at once).
                while let Ok((f, ticket)) = rx.try_recv() {
                    pending.push_back(answer(f, ticket));
                }
                // A poll without our waker is fine here: the next poll in
                // `select!` registers it again, and children woken in
                // between are queued inside `FuturesOrdered` meanwhile.
                while bytes < GATHER_BYTES {
                    match pending.next().now_or_never() {
                        Some(Some(next)) => {
                            bytes += size(&next);
                            batch.push(next);
                        }
                        _ => break,
                    }
                }
                if let Err(e) = write_batch(&mut wr, &batch).await {
                    tracing::debug!(%peer, error = %e, "write failed; dropping the connection");
                    return;
                }
                // The slots free only once the answers are out of our hands.
                batch.clear();
            }
            else => break,
        }
    }
    let _ = wr.shutdown().await;
}

fn size(a: &Answered) -> usize {
    a.0.as_ref().map_or(0, |r| r.bytes.len())
}

/// Writes `batch`'s answers in order: runs of small ones gathered into one
/// buffer, a large one (or a lone one) as it is, without a copy; then
/// flushes. The buffer lives for this write only, so an idle connection
/// holds none.
async fn write_batch<W: AsyncWrite + Unpin>(wr: &mut W, batch: &[Answered]) -> std::io::Result<()> {
    let answers: Vec<&Response> = batch.iter().filter_map(|(r, _)| r.as_ref()).collect();
    let mut buf = BytesMut::new();
    for (i, resp) in answers.iter().enumerate() {
        let alone = buf.is_empty() && i + 1 == answers.len();
        if !alone && buf.len() + resp.bytes.len() <= GATHER_BYTES {
            buf.extend_from_slice(&resp.bytes);
            continue;
        }
        if !buf.is_empty() {
            wr.write_all(&buf).await?;
            buf.clear();
        }
        wr.write_all(&resp.bytes).await?;
    }
    if !buf.is_empty() {
        wr.write_all(&buf).await?;
    }
    // The flush matters under TLS: a write the socket takes only in part
    // leaves the rest encrypted in rustls, and nothing else would send it
    // before the next response (a consumer waiting for this one sends
    // none).
    wr.flush().await
}
