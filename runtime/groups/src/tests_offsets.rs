//! Tests of OffsetCommit/OffsetFetch, persistence and the startup/checkpoint helpers.

use std::sync::Arc;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ListGroupsRequest, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, TopicName,
};
use tokio::sync::Notify;

use super::test_support::*;
use super::{CommittedOffset, GroupCoordinator, OffsetKey};

const NONE: i16 = 0;
const UNKNOWN_SERVER_ERROR: i16 = -1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;

fn topic(name: &str) -> TopicName {
    TopicName(s(name))
}

pub(super) fn commit_req(
    group: &str,
    member: &str,
    generation: i32,
    offsets: &[(&str, i32, i64, Option<&str>)],
) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (t, p, offset, metadata) in offsets {
        let partition = OffsetCommitRequestPartition::default()
            .with_partition_index(*p)
            .with_committed_offset(*offset)
            .with_committed_leader_epoch(4)
            .with_committed_metadata(metadata.map(s));
        match topics.iter_mut().find(|x| x.name.as_str() == *t) {
            Some(existing) => existing.partitions.push(partition),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(topic(t))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member))
        .with_generation_id_or_member_epoch(generation)
        .with_topics(topics)
}

fn codes(resp: &OffsetCommitResponse) -> Vec<(String, i32, i16)> {
    resp.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index, p.error_code))
        })
        .collect()
}

/// (offset, metadata, error) of one partition via OffsetFetch v7.
pub(super) fn fetch_one(
    coord: &GroupCoordinator,
    group: &str,
    t: &str,
    p: i32,
) -> (i64, String, i16) {
    let resp = coord.offset_fetch(
        OffsetFetchRequest::default()
            .with_group_id(gid(group))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic(t))
                .with_partition_indexes(vec![p])])),
        7,
    );
    assert_eq!(resp.error_code, NONE);
    assert_encodes(&resp, 7);
    let part = &resp.topics[0].partitions[0];
    (
        part.committed_offset,
        part.metadata.as_deref().unwrap_or("<null>").to_string(),
        part.error_code,
    )
}

/// A single-member group in generation 1 (Stable); returns the member id.
async fn stable_member(coord: &Arc<GroupCoordinator>, group: &str) -> String {
    let join = coord.join_group(join_req(group, "", &["range"]), 3).await;
    let id = join.member_id.to_string();
    let sync = coord
        .sync_group(sync_req(group, &id, 1, &[(&id, "a")]), 3)
        .await;
    assert_eq!(sync.error_code, NONE);
    id
}

#[tokio::test(start_paused = true)]
async fn commit_fetch_roundtrip_with_metadata() {
    let store = MemStore::with_topics(&[("orders", 3), ("audit", 1)]);
    let coord = coordinator(store.clone());
    let member = stable_member(&coord, "app").await;
    let resp = coord
        .offset_commit(
            commit_req(
                "app",
                &member,
                1,
                &[
                    ("orders", 0, 42, Some("ckpt-7")),
                    ("orders", 2, 9, None),
                    ("audit", 0, 5, Some("")),
                ],
            ),
            8,
        )
        .await;
    assert_encodes(&resp, 8);
    assert!(
        codes(&resp).iter().all(|(_, _, c)| *c == NONE),
        "{:?}",
        codes(&resp)
    );
    assert_eq!(store.persisted.lock().len(), 1);
    assert_eq!(store.persisted.lock()[0].len(), 3);

    assert_eq!(
        fetch_one(&coord, "app", "orders", 0),
        (42, "ckpt-7".into(), NONE)
    );
    // A null metadata string reads back as empty, as Kafka returns it.
    assert_eq!(
        fetch_one(&coord, "app", "orders", 2),
        (9, String::new(), NONE)
    );
    assert_eq!(
        fetch_one(&coord, "app", "orders", 1),
        (-1, String::new(), NONE)
    );
    assert_eq!(
        fetch_one(&coord, "unknown-group", "orders", 0),
        (-1, String::new(), NONE)
    );

    // v8 batched form with topics = None lists everything the group has.
    let resp = coord.offset_fetch(
        OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(gid("app"))
                .with_topics(None),
            OffsetFetchRequestGroup::default()
                .with_group_id(gid("app"))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(topic("orders"))
                    .with_partition_indexes(vec![0])])),
        ]),
        8,
    );
    assert_encodes(&resp, 8);
    let all: Vec<(String, i32, i64, i32)> = resp.groups[0]
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                )
            })
        })
        .collect();
    assert_eq!(
        all,
        vec![
            ("audit".to_string(), 0, 5, 4),
            ("orders".to_string(), 0, 42, 4),
            ("orders".to_string(), 2, 9, 4),
        ]
    );
    let one = &resp.groups[1].topics[0].partitions[0];
    assert_eq!(
        (one.committed_offset, one.metadata.as_deref()),
        (42, Some("ckpt-7"))
    );

    // v1 has no top-level error code and still encodes.
    let v1 = coord.offset_fetch(
        OffsetFetchRequest::default()
            .with_group_id(gid("app"))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic("orders"))
                .with_partition_indexes(vec![0])])),
        1,
    );
    assert_encodes(&v1, 1);
    assert_eq!(v1.topics[0].partitions[0].committed_offset, 42);

    let snapshot = coord.snapshot_offsets();
    assert_eq!(snapshot.len(), 3);
    assert_eq!(snapshot[0].0.topic, "audit");
    assert_eq!(snapshot[1].1.metadata.as_deref(), Some("ckpt-7"));
}

#[tokio::test]
async fn simple_consumer_commit_creates_empty_group() {
    let store = MemStore::with_topics(&[("t", 2)]);
    let coord = coordinator(store.clone());
    let resp = coord
        .offset_commit(
            commit_req(
                "kcat",
                "",
                -1,
                &[
                    ("t", 0, 100, Some("m")),
                    ("t", 7, 1, None),
                    ("gone", 0, 1, None),
                ],
            ),
            2,
        )
        .await;
    assert_encodes(&resp, 2);
    assert_eq!(
        codes(&resp),
        vec![
            ("t".to_string(), 0, NONE),
            ("t".to_string(), 7, UNKNOWN_TOPIC_OR_PARTITION),
            ("gone".to_string(), 0, UNKNOWN_TOPIC_OR_PARTITION),
        ]
    );
    // Only the valid partition reached the store.
    assert_eq!(store.persisted.lock()[0].len(), 1);
    assert_eq!(fetch_one(&coord, "kcat", "t", 0), (100, "m".into(), NONE));

    let listed = coord.list_groups(ListGroupsRequest::default(), 4);
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].group_id.as_str(), "kcat");
    assert_eq!(listed.groups[0].group_state.as_str(), "Empty");
}

#[tokio::test(start_paused = true)]
async fn member_commit_validation() {
    let store = MemStore::with_topics(&[("t", 1)]);
    let coord = coordinator(store.clone());
    let member = stable_member(&coord, "g").await;
    let wrong_gen = coord
        .offset_commit(commit_req("g", &member, 3, &[("t", 0, 1, None)]), 8)
        .await;
    assert_eq!(codes(&wrong_gen)[0].2, ILLEGAL_GENERATION);
    let stranger = coord
        .offset_commit(commit_req("g", "who", 1, &[("t", 0, 1, None)]), 8)
        .await;
    assert_eq!(codes(&stranger)[0].2, UNKNOWN_MEMBER_ID);
    // Manual-assignment commits are only accepted while nobody uses the group.
    let simple = coord
        .offset_commit(commit_req("g", "", -1, &[("t", 0, 1, None)]), 8)
        .await;
    assert_eq!(codes(&simple)[0].2, UNKNOWN_MEMBER_ID);
    // A generation-aware commit to a group that does not exist is from a dead generation.
    let ghost = coord
        .offset_commit(commit_req("ghost", "m", 4, &[("t", 0, 1, None)]), 8)
        .await;
    assert_eq!(codes(&ghost)[0].2, ILLEGAL_GENERATION);
    assert!(store.persisted.lock().is_empty());
    assert_eq!(fetch_one(&coord, "g", "t", 0).0, -1);

    // A second member joining puts the group into PreparingRebalance: commits from the
    // current generation are still allowed (consumers commit before revoking partitions).
    let newcomer = {
        let coord = coord.clone();
        tokio::spawn(async move { coord.join_group(join_req("g", "", &["range"]), 3).await })
    };
    settle().await;
    let during = coord
        .offset_commit(commit_req("g", &member, 1, &[("t", 0, 11, None)]), 8)
        .await;
    assert_eq!(codes(&during)[0].2, NONE);
    // After the join completes (CompletingRebalance) commits wait for SyncGroup.
    let rejoin = coord
        .join_group(join_req("g", &member, &["range"]), 3)
        .await;
    assert_eq!(rejoin.generation_id, 2);
    newcomer.await.expect("newcomer");
    let between = coord
        .offset_commit(commit_req("g", &member, 2, &[("t", 0, 12, None)]), 8)
        .await;
    assert_eq!(codes(&between)[0].2, REBALANCE_IN_PROGRESS);
    assert_eq!(fetch_one(&coord, "g", "t", 0).0, 11);
}

#[tokio::test]
async fn persist_failure_returns_error_and_does_not_apply() {
    let store = MemStore::with_topics(&[("t", 1)]);
    let coord = coordinator(store.clone());
    let ok = coord
        .offset_commit(commit_req("g", "", -1, &[("t", 0, 5, None)]), 5)
        .await;
    assert_eq!(codes(&ok)[0].2, NONE);

    *store.fail.lock() = Some(true);
    let retriable = coord
        .offset_commit(commit_req("g", "", -1, &[("t", 0, 6, None)]), 5)
        .await;
    assert_eq!(codes(&retriable)[0].2, COORDINATOR_NOT_AVAILABLE);
    *store.fail.lock() = Some(false);
    let fatal = coord
        .offset_commit(commit_req("g", "", -1, &[("t", 0, 7, None)]), 5)
        .await;
    assert_eq!(codes(&fatal)[0].2, UNKNOWN_SERVER_ERROR);

    assert_eq!(fetch_one(&coord, "g", "t", 0).0, 5);
    assert_eq!(coord.snapshot_offsets()[0].1.offset, 5);
}

#[tokio::test]
async fn commit_is_invisible_until_persisted_and_lock_is_not_held() {
    let store = MemStore::with_topics(&[("t", 1)]);
    let gate = Arc::new(Notify::new());
    *store.gate.lock() = Some(gate.clone());
    let coord = coordinator(store.clone());
    let commit = {
        let coord = coord.clone();
        tokio::spawn(async move {
            coord
                .offset_commit(commit_req("g", "", -1, &[("t", 0, 77, Some("x"))]), 8)
                .await
        })
    };
    settle().await;
    // The commit is parked in the store; the group stays usable and the offset unseen.
    assert_eq!(fetch_one(&coord, "g", "t", 0).0, -1);
    let listed = coord.list_groups(ListGroupsRequest::default(), 3);
    assert_eq!(listed.groups.len(), 1);
    gate.notify_one();
    let resp = commit.await.expect("commit task");
    assert_eq!(codes(&resp)[0].2, NONE);
    assert_eq!(fetch_one(&coord, "g", "t", 0), (77, "x".into(), NONE));
}

#[test]
fn restore_forget_and_snapshot() {
    let coord = coordinator(MemStore::with_topics(&[]));
    let key = |g: &str, t: &str, p: i32| OffsetKey {
        group: g.into(),
        topic: t.into(),
        partition: p,
    };
    let value = |offset: i64| CommittedOffset {
        offset,
        leader_epoch: 1,
        metadata: Some("meta".into()),
        commit_timestamp_ms: 1_000,
    };
    coord.restore(key("b", "t1", 0), Some(value(1)));
    coord.restore(key("a", "t1", 1), Some(value(2)));
    coord.restore(key("a", "t2", 0), Some(value(3)));
    coord.restore(key("a", "t1", 1), Some(value(4)));
    coord.restore(key("b", "t1", 0), None);
    coord.restore(key("zzz", "t1", 0), None);

    let snapshot = coord.snapshot_offsets();
    assert_eq!(
        snapshot,
        vec![(key("a", "t1", 1), value(4)), (key("a", "t2", 0), value(3))]
    );
    let removed = coord.forget_topic("t1");
    assert_eq!(removed, vec![key("a", "t1", 1)]);
    assert_eq!(
        coord.snapshot_offsets(),
        vec![(key("a", "t2", 0), value(3))]
    );
    assert_eq!(fetch_one(&coord, "a", "t2", 0).0, 3);
    assert_eq!(fetch_one(&coord, "a", "t1", 1).0, -1);
}
