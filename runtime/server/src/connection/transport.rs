//! What a Kafka connection is carried over: plain TCP, or TLS on TCP.
//!
//! Plain TCP keeps the reader the connection had before TLS existed: it
//! waits for readiness and reads what is there, and while it does not read
//! (a request waits for an in-flight slot) it still sees a hang-up. A TLS
//! reader can only learn of a hang-up by reading, so while it does not read
//! it waits for the other events (a slot, a timer, shutdown).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWrite, Interest, ReadHalf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::settings::SecurityProtocol;

/// One Kafka listener, as its connections need it.
#[derive(Clone)]
pub struct Endpoint {
    /// Index in `Broker::security.listeners` (0 is `listen`): which
    /// advertised address the connection's clients are told.
    pub index: usize,
    /// What the listener speaks.
    pub protocol: SecurityProtocol,
    /// TLS acceptor, for SSL and SASL_SSL.
    pub tls: Option<TlsAcceptor>,
}

/// The reading half of a connection.
pub(super) enum Reader {
    Tcp(OwnedReadHalf),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

/// The writing half of a connection.
pub(super) type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// What one wait on the socket gave.
pub(super) enum ReadEvent {
    /// `n` bytes appended to the buffer (0: the peer closed its side).
    Read(usize),
    /// Woken without data (spurious readiness): wait again.
    Nothing,
    /// Not reading, and the socket reported a hang-up or an error.
    HungUp,
}

impl Reader {
    /// Waits for bytes (appending them to `buf`) when `read`, else only
    /// for the peer hanging up. Cancel-safe: if dropped before it
    /// resolves, no bytes were taken from the socket.
    pub(super) async fn next(&mut self, buf: &mut BytesMut, read: bool) -> io::Result<ReadEvent> {
        match self {
            Reader::Tcp(rd) => {
                let interest = if read {
                    Interest::READABLE
                } else {
                    Interest::ERROR
                };
                // Readiness is only cleared by a read that would block, so
                // no bytes are ever left unnoticed.
                rd.as_ref().ready(interest).await?;
                if !read {
                    return Ok(ReadEvent::HungUp);
                }
                match rd.as_ref().try_read_buf(buf) {
                    Ok(n) => Ok(ReadEvent::Read(n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadEvent::Nothing),
                    Err(e) => Err(e),
                }
            }
            Reader::Tls(rd) => {
                if !read {
                    std::future::pending::<()>().await;
                }
                // Decrypted bytes stay in the TLS session until a poll
                // copies them into `buf`, so dropping this loses nothing.
                rd.read_buf(buf).await.map(ReadEvent::Read)
            }
        }
    }
}

/// A connection ready for Kafka frames: the halves and, for a TLS client
/// with a certificate, its principal (`User:<subject>`).
pub(super) struct Accepted {
    pub reader: Reader,
    pub writer: Writer,
    pub cert_principal: Option<String>,
}

/// Runs the TLS handshake if the endpoint has TLS, within `timeout`.
pub(super) async fn accept(
    stream: TcpStream,
    peer: SocketAddr,
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<Accepted, String> {
    let Some(tls) = &endpoint.tls else {
        let (rd, wr) = stream.into_split();
        return Ok(Accepted {
            reader: Reader::Tcp(rd),
            writer: Box::new(wr),
            cert_principal: None,
        });
    };
    let stream = match tokio::time::timeout(timeout, tls.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("TLS handshake with {peer} failed: {e}")),
        Err(_) => {
            return Err(format!(
                "TLS handshake with {peer} timed out after {timeout:?}"
            ))
        }
    };
    let cert_principal = crate::security::tls::client_principal(stream.get_ref().1);
    let (rd, wr) = tokio::io::split(stream);
    Ok(Accepted {
        reader: Reader::Tls(rd),
        writer: Box::new(wr),
        cert_principal,
    })
}
