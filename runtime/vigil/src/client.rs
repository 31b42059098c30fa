//! A minimal Kafka wire client (produce, fetch, create topics) over the same
//! kafka-protocol codec the broker uses. It serves `vigil demo` and tests
//! that want a client without librdkafka; it is not a general client (no
//! metadata routing, no retries, one connection).

use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, FetchRequest, ProduceRequest, RequestHeader, RequestKind,
    ResponseHeader, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Record, RecordBatchDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A byte stream to a broker: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Client failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connection trouble (retriable after reconnecting).
    #[error("connection to {addr} failed: {source}")]
    Io {
        /// Broker address.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// The broker sent something the codec could not read.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker answered with a Kafka error code.
    #[error("{api} failed with Kafka error code {code}")]
    Kafka {
        /// API name.
        api: &'static str,
        /// Error code.
        code: i16,
    },
}

/// One connection to a broker.
pub struct KafkaClient {
    addr: SocketAddr,
    stream: Box<dyn Io>,
    next_id: i32,
}

impl KafkaClient {
    /// Connects.
    pub async fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Io { addr, source })?;
        let _ = stream.set_nodelay(true);
        Ok(KafkaClient::over(addr, Box::new(stream)))
    }

    /// A client on an established stream (TLS, say) to `addr`.
    pub fn over(addr: SocketAddr, stream: Box<dyn Io>) -> Self {
        KafkaClient {
            addr,
            stream,
            next_id: 1,
        }
    }

    /// Sends one request and reads its response.
    pub async fn call(
        &mut self,
        api: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Result<ResponseKind, ClientError> {
        let proto = |e: anyhow::Error| ClientError::Protocol(format!("{e:#}"));
        let io = |addr, source| ClientError::Io { addr, source };
        let id = self.next_id;
        self.next_id += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("vigil-client")))
            .encode(&mut buf, api.request_header_version(version))
            .map_err(proto)?;
        body.encode(&mut buf, version).map_err(proto)?;
        let n = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&n.to_be_bytes());
        self.stream
            .write_all(&buf)
            .await
            .map_err(|e| io(self.addr, e))?;
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .await
            .map_err(|e| io(self.addr, e))?;
        let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(|e| io(self.addr, e))?;
        let mut resp = Bytes::from(body);
        let header = ResponseHeader::decode(&mut resp, api.response_header_version(version))
            .map_err(proto)?;
        if header.correlation_id != id {
            return Err(ClientError::Protocol(format!(
                "correlation id {} answered request {id}",
                header.correlation_id
            )));
        }
        ResponseKind::decode(api, &mut resp, version).map_err(proto)
    }

    /// Creates a topic; an existing topic is fine.
    pub async fn create_topic(&mut self, name: &str, partitions: i32) -> Result<(), ClientError> {
        self.create_topic_with_configs(name, partitions, &[]).await
    }

    /// Creates a topic with topic configs (e.g. `("retention.ms", "-1")`);
    /// an existing topic is fine (its configs are left as they are).
    pub async fn create_topic_with_configs(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<(), ClientError> {
        let configs = configs
            .iter()
            .map(|(k, v)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string((*k).into()))
                    .with_value(Some(StrBytes::from_string((*v).into())))
            })
            .collect();
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(5_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.into())))
                .with_num_partitions(partitions)
                .with_replication_factor(1)
                .with_configs(configs)]);
        match self
            .call(ApiKey::CreateTopics, 5, RequestKind::CreateTopics(req))
            .await?
        {
            ResponseKind::CreateTopics(r) => match r.topics.first().map(|t| t.error_code) {
                Some(0) | Some(36) => Ok(()), // 36: TOPIC_ALREADY_EXISTS
                Some(code) => Err(ClientError::Kafka {
                    api: "CreateTopics",
                    code,
                }),
                None => Err(ClientError::Protocol("empty CreateTopics answer".into())),
            },
            _ => Err(ClientError::Protocol(
                "unexpected answer to CreateTopics".into(),
            )),
        }
    }

    /// Produces one record batch with acks=all; returns its base offset.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        batch: Bytes,
    ) -> Result<i64, ClientError> {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]);
        match self
            .call(ApiKey::Produce, 9, RequestKind::Produce(req))
            .await?
        {
            ResponseKind::Produce(r) => {
                let p = r
                    .responses
                    .first()
                    .and_then(|t| t.partition_responses.first())
                    .ok_or_else(|| ClientError::Protocol("empty Produce answer".into()))?;
                match p.error_code {
                    0 => Ok(p.base_offset),
                    code => Err(ClientError::Kafka {
                        api: "Produce",
                        code,
                    }),
                }
            }
            _ => Err(ClientError::Protocol("unexpected answer to Produce".into())),
        }
    }

    /// Fetches records from `offset`, waiting up to `max_wait_ms` for data.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> Result<Vec<Record>, ClientError> {
        let req = FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(8 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(4 << 20)])]);
        match self
            .call(ApiKey::Fetch, 11, RequestKind::Fetch(req))
            .await?
        {
            ResponseKind::Fetch(r) => {
                let p = r
                    .responses
                    .first()
                    .and_then(|t| t.partitions.first())
                    .ok_or_else(|| ClientError::Protocol("empty Fetch answer".into()))?;
                if p.error_code != 0 {
                    return Err(ClientError::Kafka {
                        api: "Fetch",
                        code: p.error_code,
                    });
                }
                let mut out = Vec::new();
                if let Some(mut bytes) = p.records.clone() {
                    while bytes.has_remaining() {
                        let set = RecordBatchDecoder::decode(&mut bytes)
                            .map_err(|e| ClientError::Protocol(format!("{e:#}")))?;
                        out.extend(set.records.into_iter().filter(|r| r.offset >= offset));
                    }
                }
                Ok(out)
            }
            _ => Err(ClientError::Protocol("unexpected answer to Fetch".into())),
        }
    }
}
