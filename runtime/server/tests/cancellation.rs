//! A client that hangs up while the broker carries out its request must not
//! cut the request in half: the connection drops the pending answers (and
//! the futures that compute them) when its client leaves, but what the
//! store already took stays taken, so the rest must follow
//! (docs/design/0021).

use std::sync::Arc;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, DeleteTopicsRequest, GroupId, OffsetCommitRequest, RequestKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use vigil_server::server::{self, Running};
use vigil_server::{Components, Settings};
use vigil_storage::store::FaultyStore;

use crate::common;

use common::Client;

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Offsets of `topic` the group coordinator holds.
fn offsets_of(broker: &Running, topic: &str) -> usize {
    broker
        .broker
        .groups
        .snapshot_offsets()
        .iter()
        .filter(|(k, _)| k.topic == topic)
        .count()
}

/// A group's consumer commits offset 5 on partition 0 of `topic` (no
/// membership: a simple consumer).
async fn commit(broker: &Running, topic: &str) {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(name("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(name(topic)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(5)])]);
    let r = broker.broker.groups.offset_commit(request, 8).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0, "commit");
}

async fn start(dir: &std::path::Path, store: Arc<dyn ObjectStore>) -> Running {
    let settings = Settings::embedded(dir);
    let components = Components::with_store(&settings.storage, store).expect("components");
    server::start(settings, components).await.expect("start")
}

/// DeleteTopics deletes the topic, then its groups' committed offsets. Cut
/// off between the two (the client hung up while the topic's manifest
/// commit was in flight, which completes regardless), the offsets stayed,
/// in memory and stored, and a topic created again under the name would
/// hand them to its consumers.
#[tokio::test]
async fn a_topic_deletion_whose_client_hangs_up_mid_commit_forgets_its_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let faulty = FaultyStore::new(memory.clone());
    let faults = faulty.control();
    let broker = start(dir.path(), Arc::new(faulty)).await;
    let mut c = Client::connect(broker.kafka_addr).await;
    assert_eq!(common::create_topic_code(&mut c, "doomed", &[]).await, 0);
    drop(c);
    commit(&broker, "doomed").await;
    assert_eq!(offsets_of(&broker, "doomed"), 1);

    let request = RequestKind::DeleteTopics(
        DeleteTopicsRequest::default()
            .with_timeout_ms(5_000)
            .with_topic_names(vec![TopicName(name("doomed"))]),
    );
    common::hang_up_mid_commit(&broker, &faults, ApiKey::DeleteTopics, 4, &request).await;

    common::wait_until("the abandoned deletion to delete the topic", || {
        broker.broker.log.topic("doomed").is_none()
    })
    .await;
    common::wait_until("the deleted topic's offsets to be forgotten", || {
        offsets_of(&broker, "doomed") == 0
    })
    .await;
    broker.shutdown().await;

    // They were deleted where they are stored too.
    let again = start(dir.path(), memory).await;
    assert_eq!(offsets_of(&again, "doomed"), 0, "offsets after a restart");
    again.shutdown().await;
}
