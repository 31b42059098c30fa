//! TLS on a live broker: an SSL listener requiring client certificates
//! (mTLS) and the admin API over HTTPS, with certificates made by the
//! openssl CLI at run time (no key is committed).

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use vigil_server::server;
use vigil_server::{Components, Settings};

fn openssl(dir: &Path, args: &[&str]) {
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

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
    for (name, subject) in [
        ("server", "/CN=127.0.0.1"),
        ("client", "/O=test/CN=client-1"),
    ] {
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        openssl(
            dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key, "-out",
                &csr,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ],
        );
    }
}

fn client_config(dir: &Path, with_cert: bool) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).expect("ca") {
        roots.add(c.expect("pem")).expect("root");
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    if with_cert {
        let chain = CertificateDer::pem_file_iter(dir.join("client.pem"))
            .expect("cert")
            .collect::<Result<Vec<_>, _>>()
            .expect("pem");
        let key = PrivateKeyDer::from_pem_file(dir.join("client.key")).expect("key");
        b.with_client_auth_cert(chain, key).expect("client cert")
    } else {
        b.with_no_client_auth()
    }
}

async fn tls_connect(
    dir: &Path,
    addr: std::net::SocketAddr,
    with_cert: bool,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(client_config(dir, with_cert)))
        .connect(name, tcp)
        .await
}

/// ApiVersions v0 over `s`; the response's correlation id and error code.
async fn api_versions<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
) -> std::io::Result<(i32, i16)> {
    let mut f = BytesMut::new();
    f.put_i32(10);
    f.put_i16(18);
    f.put_i16(0);
    f.put_i32(7);
    f.put_i16(-1);
    s.write_all(&f).await?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await?;
    let mut b = &body[..];
    Ok((b.get_i32(), b.get_i16()))
}

/// An embedded broker in `d` with certificates made there and one SSL
/// listener on an ephemeral port.
fn ssl_settings(d: &Path) -> Settings {
    make_certs(d);
    let mut settings = Settings::embedded(d.join("data"));
    settings.security.listener = vec!["SSL://127.0.0.1:0".into()];
    settings.security.tls_cert = Some(d.join("server.pem"));
    settings.security.tls_key = Some(d.join("server.key"));
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_listener_and_admin_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut settings = ssl_settings(d);
    settings.security.tls_client_ca = Some(d.join("ca.pem"));
    settings.security.admin_tls = true;
    let components = Components::from_settings(&settings).expect("components");
    let broker = server::start(settings, components).await.expect("start");
    let ssl = broker.kafka_addrs[1];

    // With a client certificate: served.
    let mut s = tls_connect(d, ssl, true).await.expect("mTLS handshake");
    assert_eq!(api_versions(&mut s).await.expect("answer"), (7, 0));

    // Without one: the broker ends the handshake (TLS 1.3 may let the
    // client finish first; then the first read fails).
    let refused = async {
        let mut s = tls_connect(d, ssl, false).await?;
        api_versions(&mut s).await
    };
    let r = tokio::time::timeout(Duration::from_secs(10), refused)
        .await
        .expect("no hang");
    assert!(
        r.is_err(),
        "a client without a certificate was served: {r:?}"
    );

    // The plaintext listener still speaks plaintext.
    let mut plain = TcpStream::connect(broker.kafka_addr)
        .await
        .expect("connect");
    assert_eq!(api_versions(&mut plain).await.expect("answer"), (7, 0));

    // The admin API answers over HTTPS.
    let mut admin = tls_connect(d, broker.admin_addr, false)
        .await
        .expect("admin TLS");
    admin
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), admin.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("ok\n"),
        "{text}"
    );
    broker.shutdown().await;
}

/// One request and its response over `tls`.
async fn call(
    tls: &mut tokio_rustls::client::TlsStream<TcpStream>,
    id: i32,
    api: kafka_protocol::messages::ApiKey,
    v: i16,
    body: kafka_protocol::messages::RequestKind,
) -> std::io::Result<kafka_protocol::messages::ResponseKind> {
    tls.write_all(&common::request_frame(api, v, id, &body))
        .await?;
    let mut len = [0u8; 4];
    tls.read_exact(&mut len).await?;
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    tls.read_exact(&mut resp).await?;
    Ok(common::decode_response(api, v, id, resp.into()))
}

/// Frames of most of a megabyte both ways over TLS: produce requests (read
/// with the socket's low-water mark raised while their rest is coming) and
/// one fetch response of 6 MB to a client with a small receive buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_produce_and_fetch_over_tls() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{ApiKey, FetchRequest, RequestKind, ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::Compression;

    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let settings = ssl_settings(d);
    let components = Components::from_settings(&settings).expect("components");
    let broker = server::start(settings, components).await.expect("start");
    let mut plain = common::Client::connect(broker.kafka_addr).await;
    assert_eq!(common::create_topic_code(&mut plain, "big", &[]).await, 0);

    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = socket
        .connect(broker.kafka_addrs[1])
        .await
        .expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client_config(d, false)))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let value = bytes::Bytes::from(vec![b'v'; 1_000]);
    for b in 0..8 {
        let batch = (0..750)
            .fold(
                vigil_protocol::BatchBuilder::new(Compression::None),
                |builder, i| builder.record(b * 1_000 + i, None, Some(value.clone())),
            )
            .build()
            .expect("batch");
        let produce = call(
            &mut tls,
            b as i32,
            ApiKey::Produce,
            9,
            common::produce_request("big", batch),
        );
        match tokio::time::timeout(Duration::from_secs(30), produce)
            .await
            .expect("answered")
            .expect("produce over TLS")
        {
            ResponseKind::Produce(p) => {
                assert_eq!(p.responses[0].partition_responses[0].error_code, 0)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    let fetch = RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(16 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("big")))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_partition_max_bytes(16 << 20)])]),
    );
    let answer = tokio::time::timeout(
        Duration::from_secs(30),
        call(&mut tls, 100, ApiKey::Fetch, 11, fetch),
    )
    .await
    .expect("the whole fetch response arrives")
    .expect("fetch over TLS");
    match answer {
        ResponseKind::Fetch(f) => {
            let p = &f.responses[0].partitions[0];
            assert_eq!(p.error_code, 0);
            let records = p.records.as_ref().map_or(0, |r| r.len());
            assert!(records > 6_000_000, "only {records} bytes of records");
        }
        other => panic!("unexpected {other:?}"),
    }
    broker.shutdown().await;
}
