//! What a Kafka connection is carried over: plain TCP, or TLS on TCP.
//!
//! Plain TCP keeps the reader the connection had before TLS existed: it
//! waits for readiness and reads what is there, and while it does not read
//! (a request waits for an in-flight slot) it still sees a hang-up. A TLS
//! reader can only learn of a hang-up by reading, so while it does not read
//! it waits for the other events (a slot, a timer, shutdown).
//!
//! A TLS client sends a large request as many TLS records, each written on
//! its own (librdkafka calls `SSL_write` per buffer slice), so the broker
//! would wake, read and decrypt once per 16 KiB record, racing the client
//! record by record: on a busy machine every wake-up waits for a CPU, and
//! produce over TLS ran at a quarter of plaintext throughput (issue 13,
//! "Benchmark"). While the rest of a large frame is known to be coming,
//! the socket's `SO_RCVLOWAT` asks the kernel to report it readable only
//! once most of that rest has arrived ([`RcvLowat`]), and rustls reads
//! through a buffer, so one wake-up takes in many records with few system
//! calls (rustls itself asks for 4 KiB at a time).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWrite, BufReader, Interest, ReadHalf};
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

/// Bytes the socket is read in at a time under TLS (rustls asks for
/// 4 KiB per read; this buffer makes that one system call per 64 KiB).
const TLS_READ_BUFFER: usize = 64 * 1024;

/// What may already have left the socket without being handed to the
/// connection when it waits for more: a partly received TLS record in
/// rustls (at most 16 KiB and its header) and the read buffer. The low-water
/// mark stays this far below the bytes still missing, so it never asks for
/// more than will come.
const LOWAT_MARGIN: usize = TLS_READ_BUFFER + 32 * 1024;

/// Largest low-water mark: bounds how much the kernel holds before a
/// wake-up (and so the receive buffer it grows to hold it).
const MAX_LOWAT: usize = 256 * 1024;

/// A TLS connection: TCP, read through a buffer, under rustls.
type TlsConn = TlsStream<BufReader<TcpStream>>;

/// The reading half of a connection.
pub(super) enum Reader {
    Tcp(OwnedReadHalf),
    Tls(ReadHalf<TlsConn>, RcvLowat),
}

/// The `SO_RCVLOWAT` of a TLS connection's socket: how many bytes must be
/// waiting before the kernel reports it readable (1 by default). A hang-up
/// is reported whatever the mark, and a read returns what is there, so the
/// mark only spares wake-ups that would find too little to finish a frame.
pub(super) struct RcvLowat {
    /// The socket inside the TLS stream; open as long as the stream, which
    /// the read half beside this value holds.
    fd: RawFd,
    current: usize,
    /// A `setsockopt` failed: marks are no longer set (reads still work,
    /// with a wake-up per arrival).
    off: bool,
}

impl RcvLowat {
    /// Sets the mark for a frame with `missing` bytes still to come (`None`:
    /// between frames, any byte is news).
    fn expect(&mut self, missing: Option<usize>) {
        let want = missing.map_or(1, |m| m.saturating_sub(LOWAT_MARGIN).clamp(1, MAX_LOWAT));
        if want == self.current || self.off {
            return;
        }
        match set_rcvlowat(self.fd, want) {
            Ok(()) => self.current = want,
            Err(e) => {
                tracing::debug!(error = %e, "cannot set SO_RCVLOWAT; reading without it");
                self.off = true;
                // Never leave a high mark behind: it could hold back the
                // last bytes of a frame.
                let _ = set_rcvlowat(self.fd, 1);
            }
        }
    }
}

fn set_rcvlowat(fd: RawFd, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fd` is an open socket (see `RcvLowat::fd`), and setsockopt
    // only reads `size_of::<c_int>()` bytes from `v`, a live local.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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
    /// for the peer hanging up; `missing` is how many bytes the frame being
    /// read still lacks, when known. Cancel-safe: if dropped before it
    /// resolves, no bytes were taken from the socket.
    pub(super) async fn next(
        &mut self,
        buf: &mut BytesMut,
        read: bool,
        missing: Option<usize>,
    ) -> io::Result<ReadEvent> {
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
            Reader::Tls(rd, lowat) => {
                if !read {
                    std::future::pending::<()>().await;
                }
                lowat.expect(missing);
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
    let fd = stream.as_raw_fd();
    let stream = BufReader::with_capacity(TLS_READ_BUFFER, stream);
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
    let lowat = RcvLowat {
        fd,
        current: 1,
        off: false,
    };
    Ok(Accepted {
        reader: Reader::Tls(rd, lowat),
        writer: Box::new(wr),
        cert_principal,
    })
}
