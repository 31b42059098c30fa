//! A request whose caller stops waiting (its client hung up, so the
//! connection dropped the request's future) must not be cut in half: a
//! write the store already took lands anyway, and the coordinator's memory
//! has to follow it (docs/design/0021).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{DeleteGroupsRequest, OffsetDeleteRequest, TopicName};
use tokio::sync::Notify;

use super::test_support::*;
use super::tests_offsets::{commit_req, fetch_one};

/// Polls `request` until it waits (on the store) and drops it, as the
/// connection does with the answers of a client that hung up.
async fn abandon(request: impl Future) {
    let mut request = std::pin::pin!(request);
    assert!(
        futures::poll!(request.as_mut()).is_pending(),
        "the request finished before the store answered"
    );
}

/// Polls `cond` until it holds; fails after 5 s.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A store whose writes wait for the returned gate (each is recorded as
/// taken first, as the log's write-ahead log fixes a batch when it is sent).
fn gated(store: &MemStore) -> Arc<Notify> {
    let gate = Arc::new(Notify::new());
    *store.gate.lock() = Some(gate.clone());
    gate
}

#[tokio::test]
async fn a_commit_whose_client_hangs_up_while_it_is_stored_still_applies() {
    let store = MemStore::with_topics(&[("t", 1)]);
    let coord = coordinator(store.clone());
    let gate = gated(&store);
    abandon(coord.offset_commit(commit_req("g", "", -1, &[("t", 0, 77, None)]), 8)).await;
    assert_eq!(
        store.persisted.lock().len(),
        1,
        "the commit reached the store"
    );
    gate.notify_one();
    until("the abandoned commit to be visible", || {
        fetch_one(&coord, "g", "t", 0).0 == 77
    })
    .await;

    // Nothing is left in flight: the group can be deleted (a commit cut off
    // before kept it "in use" for good: NON_EMPTY_GROUP forever).
    *store.gate.lock() = None;
    let deleted = coord
        .delete_groups(DeleteGroupsRequest::default().with_groups_names(vec![gid("g")]))
        .await;
    assert_eq!(deleted.results[0].error_code, 0, "the group is deleted");
    assert_eq!(fetch_one(&coord, "g", "t", 0).0, -1);
}

#[tokio::test]
async fn a_group_deletion_whose_client_hangs_up_while_it_is_stored_still_applies() {
    let store = MemStore::with_topics(&[("t", 1)]);
    let coord = coordinator(store.clone());
    coord
        .offset_commit(commit_req("g", "", -1, &[("t", 0, 5, None)]), 8)
        .await;
    assert_eq!(fetch_one(&coord, "g", "t", 0).0, 5);

    let gate = gated(&store);
    abandon(coord.delete_groups(DeleteGroupsRequest::default().with_groups_names(vec![gid("g")])))
        .await;
    assert_eq!(
        store.persisted.lock().len(),
        2,
        "the tombstone reached the store"
    );
    gate.notify_one();
    until("the deleted offset to be gone", || {
        fetch_one(&coord, "g", "t", 0).0 == -1
    })
    .await;
}

#[tokio::test]
async fn an_offset_deletion_whose_client_hangs_up_while_it_is_stored_still_applies() {
    let store = MemStore::with_topics(&[("t", 2)]);
    let coord = coordinator(store.clone());
    coord
        .offset_commit(
            commit_req("g", "", -1, &[("t", 0, 5, None), ("t", 1, 6, None)]),
            8,
        )
        .await;

    let gate = gated(&store);
    let request = OffsetDeleteRequest::default()
        .with_group_id(gid("g"))
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![
                OffsetDeleteRequestPartition::default().with_partition_index(0)
            ])]);
    abandon(coord.offset_delete(request)).await;
    assert_eq!(
        store.persisted.lock().len(),
        2,
        "the tombstone reached the store"
    );
    gate.notify_one();
    until("the deleted offset to be gone", || {
        fetch_one(&coord, "g", "t", 0).0 == -1
    })
    .await;
    assert_eq!(
        fetch_one(&coord, "g", "t", 1).0,
        6,
        "the other offset stays"
    );
}
