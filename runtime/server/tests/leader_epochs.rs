//! Leader epochs on the wire (KIP-320): Metadata reports each partition's
//! epoch, a fetch or ListOffsets with a stale or future epoch is refused
//! with FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH, and OffsetsForLeaderEpoch
//! says where an epoch ended, also after a restart started a new one.

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, MetadataRequest, OffsetForLeaderEpochRequest, RequestKind, ResponseKind,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError;
use vigil_protocol::BatchBuilder;
use vigil_server::server::{self, Running};
use vigil_server::{Components, Settings};

use crate::common;

use common::Client;

const TOPIC: &str = "epochs";

fn name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

async fn start(dir: &std::path::Path) -> (Running, Client) {
    let settings = Settings::embedded(dir);
    let components = Components::from_settings(&settings).expect("components");
    let running = server::start(settings, components).await.expect("start");
    let client = Client::connect(running.kafka_addr).await;
    (running, client)
}

async fn produce(c: &mut Client, n: i64) {
    let records = (0..n)
        .fold(BatchBuilder::new(Compression::None), |b, i| {
            b.record(1_000 + i, None, Some(Bytes::from(format!("r{i}"))))
        })
        .build()
        .expect("encode");
    let r = c
        .call(ApiKey::Produce, 9, common::produce_request(TOPIC, records))
        .await;
    match r {
        ResponseKind::Produce(p) => assert_eq!(p.responses[0].partition_responses[0].error_code, 0),
        other => panic!("unexpected {other:?}"),
    }
}

async fn metadata_epoch(c: &mut Client) -> i32 {
    let r = c
        .call(
            ApiKey::Metadata,
            9,
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name())),
            ]))),
        )
        .await;
    match r {
        ResponseKind::Metadata(m) => m.topics[0].partitions[0].leader_epoch,
        other => panic!("unexpected {other:?}"),
    }
}

/// Error code of a fetch from offset 0 with `current_leader_epoch`.
async fn fetch_code(c: &mut Client, current_leader_epoch: i32) -> i16 {
    let r = c
        .call(
            ApiKey::Fetch,
            12,
            RequestKind::Fetch(
                FetchRequest::default()
                    .with_max_wait_ms(0)
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![FetchTopic::default()
                        .with_topic(name())
                        .with_partitions(vec![FetchPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(current_leader_epoch)
                            .with_partition_max_bytes(1 << 20)])]),
            ),
        )
        .await;
    match r {
        ResponseKind::Fetch(f) => f.responses[0].partitions[0].error_code,
        other => panic!("unexpected {other:?}"),
    }
}

/// OffsetsForLeaderEpoch for `epoch`: `(error, epoch, end offset)`.
async fn epoch_end(c: &mut Client, epoch: i32) -> (i16, i32, i64) {
    let r = c
        .call(
            ApiKey::OffsetForLeaderEpoch,
            4,
            RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default().with_topics(
                vec![OffsetForLeaderTopic::default().with_topic(name()).with_partitions(vec![
                    OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(-1)
                        .with_leader_epoch(epoch),
                ])],
            )),
        )
        .await;
    match r {
        ResponseKind::OffsetForLeaderEpoch(o) => {
            let p = &o.topics[0].partitions[0];
            (p.error_code, p.leader_epoch, p.end_offset)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn leader_epochs_are_reported_checked_and_answered_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (running, mut c) = start(dir.path()).await;
    assert_eq!(common::create_topic_code(&mut c, TOPIC, &[]).await, 0);
    produce(&mut c, 3).await;
    let first = metadata_epoch(&mut c).await;
    assert!(first > 0, "leader epoch {first}");
    assert_eq!(fetch_code(&mut c, first).await, 0);
    assert_eq!(fetch_code(&mut c, -1).await, 0, "no epoch: no check");
    assert_eq!(
        fetch_code(&mut c, first - 1).await,
        ResponseError::FencedLeaderEpoch.code()
    );
    assert_eq!(
        fetch_code(&mut c, first + 1).await,
        ResponseError::UnknownLeaderEpoch.code()
    );
    assert_eq!(epoch_end(&mut c, first).await, (0, first, 3));
    drop(c);
    running.shutdown().await;

    let (running, mut c) = start(dir.path()).await;
    let second = metadata_epoch(&mut c).await;
    assert!(second > first, "{second} after {first}");
    produce(&mut c, 2).await;
    assert_eq!(epoch_end(&mut c, first).await, (0, first, 3));
    assert_eq!(epoch_end(&mut c, second).await, (0, second, 5));
    assert_eq!(epoch_end(&mut c, second + 1).await, (0, -1, -1));
    assert_eq!(
        fetch_code(&mut c, first).await,
        ResponseError::FencedLeaderEpoch.code(),
        "a client that saw the old epoch must refresh"
    );
    drop(c);
    running.shutdown().await;
}
