//! The write loop over TLS, on an in-memory pipe far smaller than a
//! response, so that rustls always holds part of the last write.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use prometheus_client::metrics::gauge::Gauge;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, Semaphore};

use super::{write_loop, Response, Ticket};

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI runs (scripts/install-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a certificate it signed for `localhost`: (server config,
/// client config).
fn configs(dir: &std::path::Path) -> (rustls::ServerConfig, rustls::ClientConfig) {
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ca",
            "-keyout", "ca.key", "-out", "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost\n").expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "cert.pem",
        ],
    );
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("cert.pem"))
        .expect("cert")
        .collect::<Result<_, _>>()
        .expect("pem");
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).expect("key");
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key)
        .expect("server config");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).expect("ca") {
        roots.add(c.expect("pem")).expect("root");
    }
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, client)
}

/// A response that rustls takes whole but the pipe only in part arrives
/// whole: the write loop flushes what rustls kept. Without the flush the
/// tail waited for a next response, which a client waiting for this one
/// never asks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_response_is_flushed_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = configs(dir.path());
    let (a, b) = tokio::io::duplex(4096);
    let accept = tokio_rustls::TlsAcceptor::from(Arc::new(server)).accept(a);
    let name = ServerName::try_from("localhost").expect("name");
    let connect = tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, b);
    let (server, client) = tokio::join!(accept, connect);
    let (server, mut client) = (server.expect("accept"), client.expect("connect"));
    let (_rd, wr) = tokio::io::split(server);

    let (tx, rx) = mpsc::unbounded_channel();
    let peer = "127.0.0.1:1".parse().expect("addr");
    let writer = tokio::spawn(write_loop(Box::new(wr), rx, peer));
    // Within rustls's 64 KiB send buffer, 8 times the pipe.
    let body = Bytes::from(vec![7u8; 32 * 1024]);
    let gauge = Gauge::default();
    let slots = Arc::new(Semaphore::new(1));
    let permit = slots.clone().try_acquire_owned().expect("permit");
    let resp = Response::new(body.clone(), &gauge, None);
    tx.send((
        futures::future::ready(Some(resp)).boxed(),
        Ticket::new(permit, &gauge),
    ))
    .expect("queued");
    // Read only once the write loop is done with the response (its slot
    // is back), or is blocked flushing it: then what it has not written
    // stays unwritten unless it flushes.
    let _ = tokio::time::timeout(Duration::from_secs(1), slots.acquire()).await;

    let mut got = vec![0u8; body.len()];
    tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut got))
        .await
        .expect("the whole response arrives while the connection stays open")
        .expect("read");
    assert!(got == body, "the response arrived altered");
    drop(tx);
    writer.await.expect("write loop");
}

/// Takes every write whole and counts them.
#[derive(Default, Clone)]
struct CountingWriter {
    writes: Arc<std::sync::atomic::AtomicUsize>,
    got: Arc<parking_lot::Mutex<Vec<u8>>>,
}

impl tokio::io::AsyncWrite for CountingWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.got.lock().extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Runs the write loop over `bodies`, all answered before it starts;
/// returns (writes, bytes written).
async fn write_answered(bodies: &[Vec<u8>]) -> (usize, Vec<u8>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let gauge = Gauge::default();
    let slots = Arc::new(Semaphore::new(bodies.len()));
    for body in bodies {
        let permit = slots.clone().try_acquire_owned().expect("permit");
        let resp = Response::new(Bytes::from(body.clone()), &gauge, None);
        tx.send((
            futures::future::ready(Some(resp)).boxed(),
            Ticket::new(permit, &gauge),
        ))
        .expect("queued");
    }
    drop(tx);
    let writer = CountingWriter::default();
    let peer = "127.0.0.1:1".parse().expect("addr");
    write_loop(writer.clone(), rx, peer).await;
    assert_eq!(gauge.get(), 0, "every answer and slot was given back");
    let got = writer.got.lock().clone();
    (writer.writes.load(std::sync::atomic::Ordering::SeqCst), got)
}

/// Pipelined requests that one group commit answers at once go out in one
/// write, in request order (one syscall and one client wake-up instead of
/// one each).
#[tokio::test]
async fn answers_ready_together_go_out_in_one_write_in_order() {
    let bodies: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100]).collect();
    let (writes, got) = write_answered(&bodies).await;
    assert_eq!(got, bodies.concat(), "all answers, in order");
    assert_eq!(writes, 1, "the ready answers were written together");
}

/// An answer larger than the gathering buffer is written on its own,
/// between the runs of small ones, still in order.
#[tokio::test]
async fn a_large_answer_is_written_on_its_own_in_order() {
    let bodies = vec![
        vec![1u8; 100],
        vec![2u8; 100],
        vec![3u8; super::write::GATHER_BYTES + 1],
        vec![4u8; 100],
    ];
    let (writes, got) = write_answered(&bodies).await;
    assert_eq!(got, bodies.concat(), "all answers, in order");
    assert_eq!(writes, 3, "small run, the large answer, small run");
}
