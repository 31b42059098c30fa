//! DeleteGroups and OffsetDelete, and the tombstone write they share with
//! offset expiry.
//!
//! Both go through [`GroupStore::persist`](crate::GroupStore::persist) as
//! tombstones, decided and sent under the group's lock like a commit, so a
//! deleted offset stays deleted after a restart and a commit racing with the
//! deletion is not lost (it carries a later commit sequence).

use bytes::Buf;
use futures::future::BoxFuture;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, DeleteGroupsRequest, DeleteGroupsResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, TopicName,
};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::ResponseError;
use tracing::info;

use super::state::{Group, GroupState};
use super::{GroupCoordinator, GroupRef, GroupStoreError, OffsetKey};

/// Tombstones for `keys` of `group`, sent to the store: the commit sequence
/// they carry and the write to await. Call under the group's lock; after
/// the write succeeds, apply it with `Group::expire_offsets(seq, keys)`.
pub(crate) fn send_tombstones(
    coordinator: &GroupCoordinator,
    group: &mut Group,
    keys: &[(String, i32)],
) -> (u64, BoxFuture<'static, Result<(), GroupStoreError>>) {
    let seq = group.next_commit_seq;
    group.next_commit_seq += 1;
    let entries = keys
        .iter()
        .map(|(topic, partition)| {
            let key = OffsetKey {
                group: group.id.clone(),
                topic: topic.clone(),
                partition: *partition,
            };
            (key, None)
        })
        .collect();
    (seq, coordinator.store.persist(entries))
}

/// Awaits tombstones sent with [`send_tombstones`] and removes the offsets
/// they delete, in a task of its own: the write lands whether or not the
/// caller still waits (a client that hangs up drops its request), and cut
/// off there the deleted offsets would stay visible, and come back to the
/// group's consumers, until a restart. Answers how many were removed.
pub(crate) async fn apply_tombstones(
    group: GroupRef,
    seq: u64,
    keys: Vec<(String, i32)>,
    write: BoxFuture<'static, Result<(), GroupStoreError>>,
) -> Result<usize, GroupStoreError> {
    let task = tokio::spawn(async move {
        write.await?;
        Ok(group.lock().expire_offsets(seq, &keys))
    });
    match task.await {
        Ok(removed) => removed,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(GroupStoreError::retriable("the runtime is shutting down")),
    }
}

/// Whether a member of a consumer-protocol group subscribes to `topic`.
/// Metadata that does not parse counts as subscribed: refusing a deletion
/// is the safe side.
fn subscribed(group: &Group, topic: &str) -> bool {
    if group.protocol_type.as_deref() != Some("consumer") {
        return false;
    }
    group.members.values().any(|m| {
        let metadata = match &group.protocol {
            Some(p) => m.metadata_for(p),
            None => m
                .protocols
                .first()
                .map(|(_, b)| b.clone())
                .unwrap_or_default(),
        };
        let mut buf = metadata;
        if buf.remaining() < 2 {
            return true;
        }
        // Later versions only add fields: read them as the newest known.
        let version = buf.get_i16().clamp(0, 3);
        match ConsumerProtocolSubscription::decode(&mut buf, version) {
            Ok(s) => s.topics.iter().any(|t| t.as_str() == topic),
            Err(_) => true,
        }
    })
}

/// Per partition of one topic: the error OffsetDelete answers, if any.
type PartitionErrors = Vec<(i32, Option<ResponseError>)>;

impl GroupCoordinator {
    /// DeleteGroups: a group without members loses its committed offsets
    /// (persisted as tombstones) and is forgotten. A group with members is
    /// refused with NON_EMPTY_GROUP, an unknown one with GROUP_ID_NOT_FOUND.
    pub async fn delete_groups(&self, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
        let mut results = Vec::with_capacity(req.groups_names.len());
        for group_id in req.groups_names {
            let error = self.delete_group(group_id.as_str()).await.err();
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(group_id)
                    .with_error_code(error.map_or(0, |e| e.code())),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    }

    async fn delete_group(&self, group_id: &str) -> Result<(), ResponseError> {
        let group = self
            .get_group(group_id)
            .ok_or(ResponseError::GroupIdNotFound)?;
        let (seq, write, keys) = {
            let mut g = group.lock();
            match g.state {
                GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
                GroupState::Empty if g.members.is_empty() => {}
                _ => return Err(ResponseError::NonEmptyGroup),
            }
            let keys: Vec<(String, i32)> = g.offsets().map(|(k, _)| k.clone()).collect();
            let (seq, write) = send_tombstones(self, &mut g, &keys);
            (seq, write, keys)
        };
        let offsets = keys.len();
        apply_tombstones(group, seq, keys, write)
            .await
            .map_err(|e| e.response_error())?;
        info!(group = %group_id, offsets, "group deleted");
        self.forget_if_unused(group_id);
        // A commit that raced with the deletion keeps the group alive: it
        // was not deleted then, and saying so is the truth.
        match self.get_group(group_id) {
            Some(_) => Err(ResponseError::NonEmptyGroup),
            None => Ok(()),
        }
    }

    /// OffsetDelete: deletes the group's committed offsets of the named
    /// partitions, except for topics a member is subscribed to
    /// (GROUP_SUBSCRIBED_TO_TOPIC per partition).
    pub async fn offset_delete(&self, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
        let fail = |e: ResponseError| OffsetDeleteResponse::default().with_error_code(e.code());
        let Some(group) = self.get_group(req.group_id.as_str()) else {
            return fail(ResponseError::GroupIdNotFound);
        };
        // (topic name, [(partition, error)]) in request order.
        let mut answer: Vec<(TopicName, PartitionErrors)> = Vec::new();
        let (seq, write, keys) = {
            let mut g = group.lock();
            if g.state == GroupState::Dead {
                return fail(ResponseError::GroupIdNotFound);
            }
            let mut keys = Vec::new();
            for t in &req.topics {
                let blocked = subscribed(&g, t.name.as_str());
                let parts = t
                    .partitions
                    .iter()
                    .map(|p| {
                        if blocked {
                            (
                                p.partition_index,
                                Some(ResponseError::GroupSubscribedToTopic),
                            )
                        } else {
                            keys.push((t.name.to_string(), p.partition_index));
                            (p.partition_index, None)
                        }
                    })
                    .collect();
                answer.push((t.name.clone(), parts));
            }
            let (seq, write) = send_tombstones(self, &mut g, &keys);
            (seq, write, keys)
        };
        let offsets = keys.len();
        if let Err(e) = apply_tombstones(group, seq, keys, write).await {
            return fail(e.response_error());
        }
        info!(group = %req.group_id.as_str(), offsets, "committed offsets deleted");
        let topics = answer
            .into_iter()
            .map(|(name, parts)| {
                OffsetDeleteResponseTopic::default()
                    .with_name(name)
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(index, e)| {
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(index)
                                    .with_error_code(e.map_or(0, |e| e.code()))
                            })
                            .collect(),
                    )
            })
            .collect();
        OffsetDeleteResponse::default().with_topics(topics)
    }
}
