//! The broker over raw TCP with hand-built requests: what a client sees for
//! corrupt batches, unknown APIs and broken frames, and that the broker keeps
//! serving other connections afterwards.

use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vigil_protocol::BatchBuilder;
use vigil_server::server::{self, Running};
use vigil_server::{Components, Settings};
use vigil_storage::store::{FaultKind, FaultyStore};

use crate::common;

use common::Client;

async fn start(dir: &std::path::Path) -> Running {
    let settings = Settings::embedded(dir);
    let components = Components::from_settings(&settings).expect("components");
    server::start(settings, components).await.expect("start")
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect admin");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

fn batch(n: i64) -> Bytes {
    (0..n)
        .fold(BatchBuilder::new(Compression::Gzip), |b, i| {
            b.record(1_000 + i, None, Some(Bytes::from(format!("record-{i}"))))
        })
        .build()
        .expect("encode")
}

fn produce(topic: &str, records: Bytes) -> RequestKind {
    common::produce_request(topic, records)
}

fn produce_result(r: ResponseKind) -> (i16, i64) {
    match r {
        ResponseKind::Produce(p) => {
            let pr = &p.responses[0].partition_responses[0];
            (pr.error_code, pr.base_offset)
        }
        other => panic!("unexpected {other:?}"),
    }
}

async fn create_topic(c: &mut Client, name: &str) {
    assert_eq!(create_topic_code(c, name).await, 0, "create {name}");
}

async fn create_topic_code(c: &mut Client, name: &str) -> i16 {
    common::create_topic_code(c, name, &[]).await
}

#[tokio::test]
async fn corrupt_batches_get_corrupt_message_and_valid_ones_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut c = Client::connect(broker.kafka_addr).await;
    create_topic(&mut c, "wire").await;

    let good = batch(3);
    let mut bad = good.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    let (code, _) = produce_result(
        c.call(ApiKey::Produce, 9, produce("wire", Bytes::from(bad)))
            .await,
    );
    assert_eq!(code, ResponseError::CorruptMessage.code());
    let (code, base) = produce_result(
        c.call(ApiKey::Produce, 9, produce("wire", good.clone()))
            .await,
    );
    assert_eq!((code, base), (0, 0));
    let (code, _) = produce_result(
        c.call(ApiKey::Produce, 9, produce("nope", good.clone()))
            .await,
    );
    assert_eq!(code, ResponseError::UnknownTopicOrPartition.code());

    // Fetch at an offset inside the batch returns the whole batch, bytes intact.
    let fetch = RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("wire")))
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(1)
                    .with_partition_max_bytes(1 << 20)])]),
    );
    match c.call(ApiKey::Fetch, 12, fetch).await {
        ResponseKind::Fetch(f) => {
            let p = &f.responses[0].partitions[0];
            assert_eq!((p.error_code, p.high_watermark), (0, 3));
            let records = p.records.clone().expect("records");
            // The broker sets the base offset and stamps its leader epoch
            // (bytes 12..16, outside the CRC); the rest is the producer's.
            assert!(i32::from_be_bytes([records[12], records[13], records[14], records[15]]) > 0);
            assert_eq!(
                (&records[8..12], &records[16..]),
                (&good[8..12], &good[16..]),
                "stored bytes are the producer's, base offset and leader epoch aside"
            );
        }
        other => panic!("unexpected {other:?}"),
    }

    let metrics = http_get(broker.admin_addr, "/metrics").await;
    for line in [
        r#"vigil_requests_total{api="Produce"} 3"#,
        r#"vigil_request_errors_total{api="Produce",error="CorruptMessage"} 1"#,
        r#"vigil_request_duration_seconds_count{api="Fetch"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in:\n{metrics}");
    }
    assert!(http_get(broker.admin_addr, "/healthz")
        .await
        .ends_with("ok\n"));
    broker.shutdown().await;
}

#[tokio::test]
async fn unknown_apis_and_versions_get_error_codes_and_broken_frames_only_close_their_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;

    // Unknown API key: header + UNSUPPORTED_VERSION.
    let mut c = Client::connect(broker.kafka_addr).await;
    let mut f = BytesMut::new();
    f.put_i32(10);
    f.put_i16(9999);
    f.put_i16(0);
    f.put_i32(77);
    f.put_i16(-1);
    c.send_raw(&f).await;
    let mut r = c.recv_raw().await.expect("an answer");
    assert_eq!(r.get_i32(), 77);
    assert_eq!(r.get_i16(), ResponseError::UnsupportedVersion.code());

    // ApiVersions at a version from the future: v0 answer listing what we serve.
    let mut f = BytesMut::new();
    f.put_i32(10);
    f.put_i16(ApiKey::ApiVersions as i16);
    f.put_i16(99);
    f.put_i32(78);
    f.put_i16(-1);
    c.send_raw(&f).await;
    let mut r = c.recv_raw().await.expect("an answer");
    assert_eq!(r.get_i32(), 78);
    let body = kafka_protocol::messages::ApiVersionsResponse::decode(&mut r, 0).expect("v0 body");
    assert_eq!(body.error_code, ResponseError::UnsupportedVersion.code());
    assert!(body
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Produce as i16));

    // The same connection still works.
    match c
        .call(
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )
        .await
    {
        ResponseKind::ApiVersions(v) => assert_eq!(v.error_code, 0),
        other => panic!("unexpected {other:?}"),
    }

    // A huge frame length closes that connection only.
    let mut huge = Client::connect(broker.kafka_addr).await;
    huge.send_raw(&[0x7f, 0xff, 0xff, 0xff, 0, 1, 2, 3]).await;
    assert!(huge.recv_raw().await.is_none(), "connection closed");

    // Garbage bytes with a plausible length: closed, not crashed.
    let mut garbage = Client::connect(broker.kafka_addr).await;
    garbage
        .send_raw(&[0, 0, 0, 12, 0, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4])
        .await;
    assert!(garbage.recv_raw().await.is_none(), "connection closed");

    // A truncated frame followed by a hang-up.
    let mut trunc = Client::connect(broker.kafka_addr).await;
    trunc.send_raw(&[0, 0, 0, 100, 0, 18]).await;
    drop(trunc);

    let mut fresh = Client::connect(broker.kafka_addr).await;
    create_topic(&mut fresh, "still-serving").await;
    let (code, base) = produce_result(
        fresh
            .call(ApiKey::Produce, 7, produce("still-serving", batch(1)))
            .await,
    );
    assert_eq!((code, base), (0, 0));
    broker.shutdown().await;
}

/// The broker runs on the object store it is given. With every write to it
/// failing, CreateTopics answers KAFKA_STORAGE_ERROR and the topic does not
/// exist; once writes work again the broker carries on; a broker restarted
/// on the same store finds exactly what was acknowledged.
#[tokio::test]
async fn store_write_failures_reach_the_client_and_nothing_unpersisted_is_acked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let memory: std::sync::Arc<dyn object_store::ObjectStore> =
        std::sync::Arc::new(object_store::memory::InMemory::new());
    let faulty = FaultyStore::new(memory.clone());
    let faults = faulty.control();
    let mut settings = Settings::embedded(dir.path());
    // A restart finds the lease released by the clean shutdown; short
    // intervals keep the test quick if it does not.
    settings.storage.lease_interval_ms = 100;
    let components =
        Components::with_store(&settings.storage, std::sync::Arc::new(faulty)).expect("components");
    let broker = server::start(settings.clone(), components)
        .await
        .expect("start");
    let mut c = Client::connect(broker.kafka_addr).await;

    faults.fail_all(FaultKind::Write, true);
    assert_eq!(
        create_topic_code(&mut c, "lost").await,
        ResponseError::KafkaStorageError.code()
    );
    assert!(
        faults.counts(FaultKind::Write).failed > 0,
        "the write reached the faulty store"
    );
    assert!(
        broker.broker.log.topic("lost").is_none(),
        "a failed create leaves no topic"
    );

    faults.fail_all(FaultKind::Write, false);
    create_topic(&mut c, "kept").await;
    let (code, base) = produce_result(c.call(ApiKey::Produce, 9, produce("kept", batch(2))).await);
    assert_eq!((code, base), (0, 0));
    broker.shutdown().await;

    let components = Components::with_store(&settings.storage, memory).expect("components");
    let again = server::start(settings, components).await.expect("restart");
    assert!(
        again.broker.log.topic("kept").is_some(),
        "acknowledged: persisted"
    );
    assert!(
        again.broker.log.topic("lost").is_none(),
        "refused: not persisted"
    );
    let mut c = Client::connect(again.kafka_addr).await;
    let fetch = RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("kept")))
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]),
    );
    match c.call(ApiKey::Fetch, 12, fetch).await {
        ResponseKind::Fetch(f) => {
            let p = &f.responses[0].partitions[0];
            assert_eq!(
                (p.error_code, p.high_watermark),
                (0, 2),
                "acked records survive"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    again.shutdown().await;
}

/// A detector that misses its ack budget lets the acknowledgement go; how
/// often that happens is what tells an operator the budget is too small.
#[tokio::test]
async fn ack_gate_misses_are_exported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let log = broker.broker.log.clone();
    let topic = log
        .create_topic(
            "gated",
            vigil_storage::TopicConfig {
                partitions: 1,
                ..Default::default()
            },
        )
        .await
        .expect("create topic");
    let p = topic.partitions[0].clone();
    let metric = "vigil_storage_ack_gate_misses_total";
    let before = http_get(broker.admin_addr, "/metrics").await;
    assert!(before.contains(&format!("{metric} 0")), "{before}");
    // A gate nobody advances: the append's ack waits out the budget.
    let gate = log.ack_gate(&p, 0, std::time::Duration::from_millis(1), false);
    log.append(&p, batch(1)).await.expect("append");
    let after = http_get(broker.admin_addr, "/metrics").await;
    assert!(after.contains(&format!("{metric} 1")), "{after}");
    drop(gate);
    broker.shutdown().await;
}

/// A client that hangs up while its CreateTopics is being committed does
/// not cut the create in half: the topic is created and served, and the
/// broker keeps writing. (The connection's pending answers are dropped when
/// its client leaves; once the work ran inside them, and a manifest PUT that
/// landed after the drop made the broker fence itself on its next commit.)
#[tokio::test]
async fn a_create_whose_client_hangs_up_mid_commit_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let memory: std::sync::Arc<dyn object_store::ObjectStore> =
        std::sync::Arc::new(object_store::memory::InMemory::new());
    let faulty = FaultyStore::new(memory);
    let faults = faulty.control();
    let settings = Settings::embedded(dir.path());
    let components =
        Components::with_store(&settings.storage, std::sync::Arc::new(faulty)).expect("components");
    let broker = server::start(settings, components).await.expect("start");

    let request = common::create_topic_request("orphan", &[]);
    common::hang_up_mid_commit(&broker, &faults, ApiKey::CreateTopics, 5, &request).await;

    common::wait_until("the orphaned create to complete", || {
        broker.broker.log.topic("orphan").is_some()
    })
    .await;
    let mut c = Client::connect(broker.kafka_addr).await;
    create_topic(&mut c, "next").await;
    for topic in ["orphan", "next"] {
        let (code, base) =
            produce_result(c.call(ApiKey::Produce, 9, produce(topic, batch(1))).await);
        assert_eq!((code, base), (0, 0), "produce to {topic}");
    }
    broker.shutdown().await;
}
