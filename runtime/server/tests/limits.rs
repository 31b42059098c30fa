//! What one client can hold of the broker, over raw TCP: pipelined requests,
//! long polls, fetch sizes, connections (total, per IP, idle, trickled
//! frames), frame sizes and produce batch sizes (issue 11, items 9 and 10).
//!
//! Where a test checks that something does *not* happen (more requests read
//! past the in-flight cap), it first waits, with a deadline, for the state
//! it checks to be reached, then gives the broker a short grace period to
//! break the bound: there is no event to wait on for "nothing more".

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use vigil_protocol::BatchBuilder;
use vigil_server::metrics::ApiLabel;
use vigil_server::server::{self, Running};
use vigil_server::{Components, Settings};

use crate::common;

use common::{decode_response, request_frame, Client};

/// Upper bound on every wait in this file.
const WAIT: Duration = Duration::from_secs(10);

async fn start_with(dir: &std::path::Path, tune: impl FnOnce(&mut Settings)) -> Running {
    let mut settings = Settings::embedded(dir);
    tune(&mut settings);
    let components = Components::from_settings(&settings).expect("components");
    server::start(settings, components).await.expect("start")
}

fn dispatched(b: &Running, api: &str) -> u64 {
    b.broker
        .metrics
        .requests
        .get_or_create(&ApiLabel {
            api: api.to_string(),
        })
        .get()
}

/// Whether the broker closes `s` within `within` (reading and discarding
/// anything it sends first).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

async fn api_versions_ok(c: &mut Client) -> bool {
    let body = RequestKind::ApiVersions(ApiVersionsRequest::default());
    let frame = request_frame(ApiKey::ApiVersions, 0, 4242, &body);
    if c.s.write_all(&frame).await.is_err() {
        return false;
    }
    matches!(timeout(WAIT, c.recv_raw()).await, Ok(Some(_)))
}

async fn create_topic(c: &mut Client, name: &str, configs: &[(&str, &str)]) {
    let code = common::create_topic_code(c, name, configs).await;
    assert_eq!(code, 0, "create {name}");
}

/// One uncompressed batch of `n` records of `size` bytes each (incompressible
/// enough that the batch is about n * size bytes).
fn batch(n: usize, size: usize) -> Bytes {
    (0..n)
        .fold(BatchBuilder::new(Compression::None), |b, i| {
            let value: Vec<u8> = (0..size).map(|j| (i * 31 + j * 7) as u8).collect();
            b.record(1_000 + i as i64, None, Some(Bytes::from(value)))
        })
        .build()
        .expect("encode")
}

async fn produce(c: &mut Client, topic: &str, records: Bytes) -> i16 {
    let r = c
        .call(ApiKey::Produce, 9, common::produce_request(topic, records))
        .await;
    match r {
        ResponseKind::Produce(p) => p.responses[0].partition_responses[0].error_code,
        other => panic!("unexpected {other:?}"),
    }
}

fn fetch(topic: &str, offset: i64, max_wait_ms: i32, max_bytes: i32) -> RequestKind {
    RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(max_bytes)])]),
    )
}

/// Writes `n` fetch requests in one go, correlation ids 1..=n.
async fn pipeline_fetches(addr: SocketAddr, topic: &str, n: i32, max_wait_ms: i32) -> Client {
    let mut c = Client::connect(addr).await;
    let mut all = Vec::new();
    for id in 1..=n {
        let f = request_frame(
            ApiKey::Fetch,
            12,
            id,
            &fetch(topic, 0, max_wait_ms, 1 << 20),
        );
        all.extend_from_slice(&f);
    }
    c.send_raw(&all).await;
    c
}

/// Reads the answers to fetches 1..=n, in order, each without error.
async fn expect_fetch_answers(c: &mut Client, n: i32) {
    for id in 1..=n {
        let resp = timeout(WAIT, c.recv_raw())
            .await
            .expect("answer in time")
            .expect("an answer");
        match decode_response(ApiKey::Fetch, 12, id, resp) {
            ResponseKind::Fetch(f) => assert_eq!(f.responses[0].partitions[0].error_code, 0),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_connection_is_not_read_past_its_in_flight_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_with(dir.path(), |s| {
        s.server.max_in_flight_requests_per_connection = 8;
    })
    .await;
    let mut admin = Client::connect(broker.kafka_addr).await;
    create_topic(&mut admin, "waiting", &[]).await;
    let mut c = pipeline_fetches(broker.kafka_addr, "waiting", 200, 60_000).await;
    common::wait_until("8 fetches dispatched", || dispatched(&broker, "Fetch") >= 8).await;
    // Grace period for the broker to (wrongly) read further; see the module doc.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        dispatched(&broker, "Fetch"),
        8,
        "requests past the in-flight cap must stay unread"
    );
    // Data arrives: every waiting fetch answers, the rest are read in turn,
    // and all 200 answers come back in order.
    assert_eq!(produce(&mut admin, "waiting", batch(1, 10)).await, 0);
    expect_fetch_answers(&mut c, 200).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_fetch_waits_no_longer_than_the_broker_allows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_with(dir.path(), |s| s.server.fetch_max_wait_ms = 200).await;
    let mut c = Client::connect(broker.kafka_addr).await;
    create_topic(&mut c, "empty", &[]).await;
    let started = Instant::now();
    let r = timeout(
        WAIT,
        c.call(ApiKey::Fetch, 12, fetch("empty", 0, i32::MAX, 1 << 20)),
    )
    .await
    .expect("a fetch asking to wait i32::MAX ms answers after the broker's cap");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "it did wait"
    );
    match r {
        ResponseKind::Fetch(f) => assert_eq!(f.responses[0].partitions[0].error_code, 0),
        other => panic!("unexpected {other:?}"),
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn a_disconnected_clients_long_polls_are_dropped_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_with(dir.path(), |_| {}).await;
    let mut admin = Client::connect(broker.kafka_addr).await;
    create_topic(&mut admin, "idle-topic", &[]).await;
    drop(admin);
    common::wait_until("the admin connection closed", || {
        broker.broker.metrics.connections.get() == 0
    })
    .await;
    let c = pipeline_fetches(broker.kafka_addr, "idle-topic", 8, 25_000).await;
    common::wait_until("8 fetches dispatched", || dispatched(&broker, "Fetch") >= 8).await;
    assert_eq!(broker.broker.metrics.connections.get(), 1);
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(3);
    while broker.broker.metrics.connections.get() != 0 {
        assert!(
            Instant::now() < deadline,
            "the connection (and its 25 s long polls) outlived its client"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn fetch_responses_are_capped_by_the_brokers_fetch_max_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_with(dir.path(), |s| s.server.fetch_max_bytes = 4_096).await;
    let mut c = Client::connect(broker.kafka_addr).await;
    create_topic(&mut c, "many", &[]).await;
    for _ in 0..10 {
        assert_eq!(produce(&mut c, "many", batch(1, 1_000)).await, 0);
    }
    let records = match c
        .call(ApiKey::Fetch, 12, fetch("many", 0, 0, i32::MAX))
        .await
    {
        ResponseKind::Fetch(f) => f.responses[0].partitions[0]
            .records
            .clone()
            .expect("records"),
        other => panic!("unexpected {other:?}"),
    };
    assert!(
        !records.is_empty() && records.len() <= 4_096,
        "{} bytes of records for a broker capped at 4096",
        records.len()
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_caps_are_closed_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_with(dir.path(), |s| s.server.max_connections_per_ip = 2).await;
    let mut a = Client::connect(broker.kafka_addr).await;
    let mut b = Client::connect(broker.kafka_addr).await;
    assert!(api_versions_ok(&mut a).await && api_versions_ok(&mut b).await);
    let mut over = Client::connect(broker.kafka_addr).await;
    assert!(
        closed_within(&mut over.s, Duration::from_secs(2)).await,
        "a third connection from one IP is closed"
    );
    assert!(api_versions_ok(&mut a).await, "the others keep working");
    drop(a);
    // The slot frees when the broker sees the close: retry until it does.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut again = Client::connect(broker.kafka_addr).await;
        if api_versions_ok(&mut again).await {
            break;
        }
        assert!(Instant::now() < deadline, "a freed slot is never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker.shutdown().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_with(dir.path(), |s| s.server.max_connections = 1).await;
    let mut a = Client::connect(broker.kafka_addr).await;
    assert!(api_versions_ok(&mut a).await);
    let mut over = Client::connect(broker.kafka_addr).await;
    assert!(
        closed_within(&mut over.s, Duration::from_secs(2)).await,
        "a connection over max-connections is closed"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_closed_but_not_while_a_request_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_with(dir.path(), |s| s.server.connections_max_idle_ms = 300).await;
    let mut c = Client::connect(broker.kafka_addr).await;
    create_topic(&mut c, "quiet", &[]).await;
    // A long poll longer than the idle timeout is answered, not cut off.
    match c
        .call(ApiKey::Fetch, 12, fetch("quiet", 0, 1_000, 1 << 20))
        .await
    {
        ResponseKind::Fetch(f) => assert_eq!(f.responses[0].partitions[0].error_code, 0),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        closed_within(&mut c.s, Duration::from_secs(5)).await,
        "an idle connection is closed"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_trickled_frame_is_closed_after_the_read_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_with(dir.path(), |s| s.server.request_read_timeout_ms = 500).await;
    let mut c = Client::connect(broker.kafka_addr).await;
    c.send_raw(&[0, 0, 0, 100, 0, 18]).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut closed = false;
    // One byte every 100 ms: always some progress, never a whole frame.
    while Instant::now() < deadline {
        if c.s.write_all(&[0]).await.is_err()
            || closed_within(&mut c.s, Duration::from_millis(100)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a frame trickled for 5 s kept its connection");
    let mut fresh = Client::connect(broker.kafka_addr).await;
    assert!(api_versions_ok(&mut fresh).await);
    broker.shutdown().await;
}

#[tokio::test]
async fn frames_far_below_kafkas_100_mib_are_refused_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_with(dir.path(), |_| {}).await;
    let mut c = Client::connect(broker.kafka_addr).await;
    let size: i32 = 20 * 1024 * 1024;
    c.send_raw(&size.to_be_bytes()).await;
    c.send_raw(&[0, 18, 0, 0]).await;
    assert!(
        closed_within(&mut c.s, Duration::from_secs(3)).await,
        "a 20 MiB frame is refused with the default limits"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn produce_batches_over_max_message_bytes_get_message_too_large() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_with(dir.path(), |s| s.server.message_max_bytes = 10_000).await;
    let mut c = Client::connect(broker.kafka_addr).await;
    create_topic(&mut c, "plain", &[]).await;
    create_topic(&mut c, "small", &[("max.message.bytes", "2000")]).await;
    create_topic(&mut c, "roomy", &[("max.message.bytes", "100000")]).await;
    let too_large = ResponseError::MessageTooLarge.code();
    assert_eq!(too_large, 10);
    assert_eq!(produce(&mut c, "plain", batch(20, 1_000)).await, too_large);
    assert_eq!(produce(&mut c, "plain", batch(5, 1_000)).await, 0);
    assert_eq!(produce(&mut c, "small", batch(3, 1_000)).await, too_large);
    assert_eq!(produce(&mut c, "small", batch(1, 1_000)).await, 0);
    assert_eq!(
        produce(&mut c, "roomy", batch(20, 1_000)).await,
        0,
        "the topic's config wins over the broker default"
    );
    broker.shutdown().await;
}

/// Issue 11 item 9: a client that pipelines a long poll and then fetches of
/// available data, and never reads its answers, used to make the broker hold
/// every answer queued behind the long poll (responses go out in order): up
/// to max-in-flight (64) encoded responses of fetch-max-bytes each. Now the
/// fetches of one connection hold at most fetch-max-bytes of responses
/// between them (the next one waits until earlier answers are written).
#[tokio::test]
async fn fetches_queued_behind_a_long_poll_hold_at_most_fetch_max_bytes() {
    const FETCH_MAX: usize = 1 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_with(dir.path(), |s| s.server.fetch_max_bytes = FETCH_MAX).await;
    let mut admin = Client::connect(broker.kafka_addr).await;
    create_topic(&mut admin, "quiet", &[]).await;
    create_topic(&mut admin, "plenty", &[]).await;
    for _ in 0..16 {
        assert_eq!(produce(&mut admin, "plenty", batch(128, 1_000)).await, 0);
    }
    // A 5 s long poll, then 63 fetches answered with FETCH_MAX bytes each:
    // 63 MiB queued behind the long poll if the broker computed them all.
    let mut frames =
        request_frame(ApiKey::Fetch, 12, 1, &fetch("quiet", 0, 5_000, 1 << 20)).to_vec();
    for id in 2..=64 {
        frames.extend_from_slice(&request_frame(
            ApiKey::Fetch,
            12,
            id,
            &fetch("plenty", 0, 0, 1 << 20),
        ));
    }
    let mut c = Client::connect(broker.kafka_addr).await;
    c.send_raw(&frames).await;
    common::wait_until("64 fetches dispatched", || {
        dispatched(&broker, "Fetch") >= 64
    })
    .await;
    let held = &broker.broker.metrics.conn.response_bytes;
    let mut peak = 0;
    let until = Instant::now() + Duration::from_millis(1_000);
    while Instant::now() < until {
        peak = peak.max(held.get());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // One answer may exceed its budget by the batch Kafka returns whole.
    let bound = (FETCH_MAX + 256 * 1024) as i64;
    println!("peak response bytes held: {peak} (bound {bound})");
    assert!(
        peak <= bound,
        "{peak} bytes of responses held behind a long poll (bound {bound})"
    );
    // Every answer still arrives, in order, once the long poll ends.
    expect_fetch_answers(&mut c, 64).await;
    broker.shutdown().await;
}
