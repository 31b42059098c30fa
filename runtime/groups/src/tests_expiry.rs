//! Tests of committed-offset expiry (`offsets.retention.minutes`).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};

use super::test_support::*;
use super::{GroupConfig, GroupCoordinator};

const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
const RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

fn coordinator_with_retention(store: Arc<MemStore>) -> Arc<GroupCoordinator> {
    GroupCoordinator::new(
        GroupConfig {
            offsets_retention: RETENTION,
            ..config()
        },
        store,
    )
}

/// A commit of `offset` for `orders`-0 by a consumer outside any generation (manual assignment).
async fn commit(
    coord: &Arc<GroupCoordinator>,
    group: &str,
    member: &str,
    generation: i32,
    offset: i64,
) {
    let resp = coord
        .offset_commit(
            OffsetCommitRequest::default()
                .with_group_id(gid(group))
                .with_member_id(s(member))
                .with_generation_id_or_member_epoch(generation)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("orders")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)])]),
            7,
        )
        .await;
    assert_eq!(
        resp.topics[0].partitions[0].error_code, 0,
        "commit of {group}"
    );
}

fn fetch(coord: &GroupCoordinator, group: &str) -> i64 {
    coord
        .offset_fetch(
            OffsetFetchRequest::default()
                .with_group_id(gid(group))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("orders")))
                    .with_partition_indexes(vec![0])])),
            7,
        )
        .topics[0]
        .partitions[0]
        .committed_offset
}

fn listed(coord: &GroupCoordinator) -> Vec<String> {
    let mut ids: Vec<String> = coord
        .list_groups(ListGroupsRequest::default(), 4)
        .groups
        .iter()
        .map(|g| g.group_id.to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn offsets_of_an_empty_group_expire_after_the_retention_since_the_last_commit() {
    let store = MemStore::with_topics(&[("orders", 1)]);
    store.clock.set(1_000_000);
    let coord = coordinator_with_retention(store.clone());
    commit(&coord, "old", "", -1, 42).await;
    store.clock.advance(RETENTION_MS / 2);
    commit(&coord, "recent", "", -1, 7).await;
    // A later commit restarts the old group's retention.
    store.clock.advance(RETENTION_MS / 4);
    commit(&coord, "old", "", -1, 43).await;

    store.clock.advance(RETENTION_MS - RETENTION_MS / 4 - 1);
    assert_eq!(
        coord.expire_offsets().await,
        0,
        "nothing is a full retention old yet"
    );
    store.clock.advance(1);
    assert_eq!(coord.expire_offsets().await, 1);
    assert_eq!(fetch(&coord, "recent"), -1);
    assert_eq!(fetch(&coord, "old"), 43);
    assert_eq!(listed(&coord), vec!["old".to_string()]);
    // The deletion went through the store as a tombstone, so it survives a restart.
    let last = store
        .persisted
        .lock()
        .last()
        .cloned()
        .expect("a persisted batch");
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].0.group, "recent");
    assert_eq!(last[0].1, None);
}

#[tokio::test]
async fn a_group_with_members_keeps_its_offsets() {
    let store = MemStore::with_topics(&[("orders", 1)]);
    let coord = coordinator_with_retention(store.clone());
    let join = join_v9(&coord, "live").await;
    let member = join.member_id.to_string();
    let sync = coord
        .sync_group(
            sync_req("live", &member, join.generation_id, &[(&member, "a")]),
            3,
        )
        .await;
    assert_eq!(sync.error_code, 0);
    commit(&coord, "live", &member, join.generation_id, 5).await;
    store.clock.advance(2 * RETENTION_MS);
    assert_eq!(coord.expire_offsets().await, 0);
    assert_eq!(fetch(&coord, "live"), 5);
}

#[tokio::test]
async fn a_failed_deletion_keeps_the_offsets_and_is_retried() {
    let store = MemStore::with_topics(&[("orders", 1)]);
    let coord = coordinator_with_retention(store.clone());
    commit(&coord, "g", "", -1, 9).await;
    store.clock.advance(RETENTION_MS);
    *store.fail.lock() = Some(true);
    assert_eq!(coord.expire_offsets().await, 0);
    assert_eq!(fetch(&coord, "g"), 9);
    *store.fail.lock() = None;
    assert_eq!(coord.expire_offsets().await, 1);
    assert_eq!(fetch(&coord, "g"), -1);
    assert!(listed(&coord).is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_coordinator_expires_offsets_on_its_own() {
    let store = MemStore::with_topics(&[("orders", 1)]);
    let coord = GroupCoordinator::new(
        GroupConfig {
            offsets_retention: RETENTION,
            offsets_retention_check_interval: Duration::from_secs(600),
            ..config()
        },
        store.clone(),
    );
    commit(&coord, "g", "", -1, 9).await;
    store.clock.advance(RETENTION_MS);
    // Virtual time: the check runs once the interval has passed.
    tokio::time::sleep(Duration::from_secs(601)).await;
    settle().await;
    assert_eq!(fetch(&coord, "g"), -1);
}
