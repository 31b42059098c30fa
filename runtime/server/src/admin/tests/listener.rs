//! The admin listener over real sockets: slowloris clients, connection
//! floods, and bodies over the limit sent by a real HTTP/1 client.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Harness;
use crate::admin::AdminLimits;

/// Reads until the peer closes or `within` passes; returns what was read
/// and whether the peer closed.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

async fn get_healthz(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "a closing request left the connection open");
    String::from_utf8_lossy(&got).into_owned()
}

/// A client that sends half its headers and then nothing is closed once
/// the header-read timeout passes, as is one that sends nothing at all;
/// complete requests on other connections are served meanwhile.
#[tokio::test]
async fn slowloris_connections_are_closed_after_the_header_timeout() {
    let h = Harness::with_limits(AdminLimits {
        header_read_timeout: Duration::from_millis(500),
        ..AdminLimits::default()
    })
    .await;
    let (addr, stop, task) = h.listen().await;
    let mut half = TcpStream::connect(addr).await.expect("connect");
    half.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .expect("write");
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    assert!(get_healthz(addr).await.contains("200 OK"));
    let (_, closed) = read_until_closed(&mut half, Duration::from_secs(10)).await;
    assert!(closed, "a half-sent request head kept its connection open");
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    assert!(closed, "a silent connection was kept open");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the listener stops")
        .expect("no panic");
    h.shutdown().await;
}

/// Past the connection cap a new connection gets a 503 and is closed at
/// once; when connections close, new ones are served again.
#[tokio::test]
async fn connections_past_the_cap_get_503_and_are_closed() {
    let h = Harness::with_limits(AdminLimits {
        max_connections: 4,
        ..AdminLimits::default()
    })
    .await;
    let (addr, stop, task) = h.listen().await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // The held connections are accepted in order; the fifth is over the cap.
    let mut extra = TcpStream::connect(addr).await.expect("connect");
    let (got, closed) = read_until_closed(&mut extra, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(closed, "the connection over the cap was kept open");
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("too many open connections"), "{text}");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get_healthz(addr).await;
        if answer.contains("200 OK") {
            break;
        }
        assert!(Instant::now() < deadline, "slots never freed: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let page = h.get("/metrics").await;
    let text = String::from_utf8_lossy(&page.body);
    assert!(
        text.lines()
            .any(|l| l.starts_with("vigil_admin_connections_refused_total ") && !l.ends_with(" 0")),
        "{text}"
    );
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the listener stops")
        .expect("no panic");
    h.shutdown().await;
}

/// A body over the JSON limit sent by a real client is refused with 413
/// before it is read whole.
#[tokio::test]
async fn an_oversize_body_over_a_real_socket_is_413() {
    let h = Harness::with_limits(AdminLimits {
        json_body: 4 << 10,
        ..AdminLimits::default()
    })
    .await;
    let (addr, stop, task) = h.listen().await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // Announces 1 GiB and sends 64 KiB: the answer must not wait for the rest.
    s.write_all(
        b"POST /v1/deployments HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n",
    )
    .await
    .expect("write head");
    let _ = s.write_all(&vec![b' '; 64 << 10]).await;
    let (got, _) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the listener stops")
        .expect("no panic");
    h.shutdown().await;
}
