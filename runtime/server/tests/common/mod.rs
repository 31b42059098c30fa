//! What the integration tests share: a raw Kafka client over TCP.

#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One connection speaking the Kafka protocol with hand-built frames.
pub struct Client {
    /// The socket.
    pub s: TcpStream,
    /// Correlation id of the next request.
    pub next_id: i32,
}

impl Client {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            s: TcpStream::connect(addr).await.expect("connect"),
            next_id: 1,
        }
    }

    /// Writes raw bytes.
    pub async fn send_raw(&mut self, frame: &[u8]) {
        self.s.write_all(frame).await.expect("write");
    }

    /// Reads one response frame; `None` if the broker closed the connection.
    pub async fn recv_raw(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).await.ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut body).await.ok()?;
        Some(Bytes::from(body))
    }

    /// Sends one request and decodes its response.
    pub async fn call(&mut self, api: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        let id = self.next_id;
        self.next_id += 1;
        let frame = request_frame(api, version, id, &body);
        self.send_raw(&frame).await;
        let resp = self.recv_raw().await.expect("response");
        decode_response(api, version, id, resp)
    }
}

/// A request frame (size prefix included) for `body` with correlation id `id`.
pub fn request_frame(api: ApiKey, version: i16, id: i32, body: &RequestKind) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(id)
        .with_client_id(Some(StrBytes::from_static_str("wire-test")))
        .encode(&mut buf, api.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    let n = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&n.to_be_bytes());
    buf
}

/// Decodes a response frame, checking its correlation id.
pub fn decode_response(api: ApiKey, version: i16, id: i32, mut resp: Bytes) -> ResponseKind {
    let header = ResponseHeader::decode(&mut resp, api.response_header_version(version))
        .expect("response header");
    assert_eq!(header.correlation_id, id);
    ResponseKind::decode(api, &mut resp, version).expect("response body")
}

/// A Produce request (acks=all) of `records` to partition 0 of `topic`.
pub fn produce_request(topic: &str, records: Bytes) -> RequestKind {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])]),
    )
}

/// A CreateTopics request for one one-partition topic with topic `configs`.
pub fn create_topic_request(name: &str, configs: &[(&str, &str)]) -> RequestKind {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
    let configs = configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_value(Some(StrBytes::from_string(v.to_string())))
        })
        .collect();
    RequestKind::CreateTopics(
        CreateTopicsRequest::default()
            .with_timeout_ms(5_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.into())))
                .with_num_partitions(1)
                .with_replication_factor(1)
                .with_configs(configs)]),
    )
}

/// Creates a one-partition topic with topic `configs`; returns the error
/// code.
pub async fn create_topic_code(c: &mut Client, name: &str, configs: &[(&str, &str)]) -> i16 {
    let r = c
        .call(ApiKey::CreateTopics, 5, create_topic_request(name, configs))
        .await;
    match r {
        ResponseKind::CreateTopics(r) => r.topics[0].error_code,
        other => panic!("unexpected {other:?}"),
    }
}

/// Polls `cond` until it holds; fails after 10 s.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after 10 s waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Sends `request` on a new connection and hangs up while the broker's
/// root manifest PUT for it hangs; the PUT runs on without its caller, as
/// a request already sent to S3 does. Returns once the broker closed the
/// connection (its pending answers dropped) and the store is released.
pub async fn hang_up_mid_commit(
    broker: &vigil_server::server::Running,
    faults: &vigil_storage::store::FaultControl,
    api: ApiKey,
    version: i16,
    request: &RequestKind,
) {
    use vigil_storage::store::FaultKind;
    faults.scope(Some(vigil_storage::paths::manifest_prefix().as_ref()));
    faults.detach_puts(true);
    faults.hang(FaultKind::Write, true);
    let mut gone = Client::connect(broker.kafka_addr).await;
    gone.send_raw(&request_frame(api, version, 1, request))
        .await;
    wait_until("the request's manifest PUT to hang", || {
        faults.counts(FaultKind::Write).hung > 0
    })
    .await;
    drop(gone);
    let metrics = &broker.broker.metrics;
    wait_until("the broker to close the connection", || {
        metrics.connections.get() == 0
    })
    .await;
    faults.clear();
}
