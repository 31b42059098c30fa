//! Test doubles and request builders shared by the coordinator's unit tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, SyncGroupRequest,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{
    CommittedOffset, GroupConfig, GroupCoordinator, GroupStore, GroupStoreError, OffsetKey,
};

type Batch = Vec<(OffsetKey, Option<CommittedOffset>)>;

/// In-memory stand-in for the broker's offset persistence.
#[derive(Default)]
pub(crate) struct MemStore {
    /// Every successfully persisted batch, in call order.
    pub persisted: Mutex<Vec<Batch>>,
    /// When set, `persist` fails with this (retriable?) error.
    pub fail: Mutex<Option<bool>>,
    /// When set, `persist` waits for a notification before succeeding.
    pub gate: Mutex<Option<Arc<Notify>>>,
    /// topic → partition count.
    pub topics: HashMap<String, i32>,
    /// "Now" for commit timestamps and offset expiry.
    pub clock: vigil_storage::ManualClock,
}

impl MemStore {
    pub(crate) fn with_topics(topics: &[(&str, i32)]) -> Arc<Self> {
        Arc::new(Self {
            topics: topics.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            ..Self::default()
        })
    }
}

impl GroupStore for MemStore {
    fn persist(&self, entries: Batch) -> BoxFuture<'static, Result<(), GroupStoreError>> {
        let fail = *self.fail.lock();
        let gate = self.gate.lock().clone();
        let result = match fail {
            Some(true) => Err(GroupStoreError::retriable("disk unavailable")),
            Some(false) => Err(GroupStoreError::fatal("corrupt log")),
            None => {
                self.persisted.lock().push(entries);
                Ok(())
            }
        };
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.notified().await;
            }
            result
        })
    }

    fn partition_exists(&self, topic: &str, partition: i32) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|n| partition >= 0 && partition < *n)
    }

    fn now_ms(&self) -> i64 {
        vigil_storage::Clock::now_ms(&self.clock)
    }
}

pub(crate) fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay: Duration::from_millis(300),
        ..GroupConfig::default()
    }
}

pub(crate) fn coordinator(store: Arc<MemStore>) -> Arc<GroupCoordinator> {
    GroupCoordinator::new(config(), store)
}

pub(crate) fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub(crate) fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

pub(crate) fn join_req(group: &str, member: &str, protocols: &[&str]) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(
            protocols
                .iter()
                .map(|p| {
                    JoinGroupRequestProtocol::default()
                        .with_name(s(p))
                        .with_metadata(Bytes::from(format!("meta-{p}")))
                })
                .collect(),
        )
}

pub(crate) fn sync_req(
    group: &str,
    member: &str,
    generation: i32,
    assignments: &[(&str, &str)],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member))
        .with_generation_id(generation)
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::from(a.to_string()))
                })
                .collect(),
        )
}

pub(crate) fn hb_req(group: &str, member: &str, generation: i32) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member))
        .with_generation_id(generation)
}

/// Full v9 join of a dynamic member: MEMBER_ID_REQUIRED round trip, then the real join.
pub(crate) async fn join_v9(coord: &Arc<GroupCoordinator>, group: &str) -> JoinGroupResponse {
    let first = coord.join_group(join_req(group, "", &["range"]), 9).await;
    assert_eq!(first.error_code, 79, "expected MEMBER_ID_REQUIRED");
    coord
        .join_group(join_req(group, first.member_id.as_str(), &["range"]), 9)
        .await
}

/// Asserts the message encodes at `version` (no field set that the version lacks).
pub(crate) fn assert_encodes<M: Encodable>(message: &M, version: i16) {
    let mut buf = BytesMut::new();
    if let Err(e) = message.encode(&mut buf, version) {
        panic!("encoding at v{version} failed: {e}");
    }
}

/// Lets spawned timer tasks run after the clock moved.
pub(crate) async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}
