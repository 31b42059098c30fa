//! OffsetCommit / OffsetFetch and the per-group committed-offset map.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::{debug, warn};

use super::state::{Group, GroupState};
use futures::future::BoxFuture;

use super::{CommittedOffset, GroupCoordinator, GroupRef, GroupStoreError, OffsetKey};

/// Kafka's default `offset.metadata.max.bytes`.
const MAX_METADATA_BYTES: usize = 4096;

/// A committed offset plus the sequence number of the commit that wrote it, so a commit whose
/// persistence finishes late cannot overwrite a newer one.
#[derive(Clone, Debug)]
pub(crate) struct StoredOffset {
    value: CommittedOffset,
    seq: u64,
}

impl Group {
    pub(crate) fn restore_offset(&mut self, topic: String, partition: i32, value: CommittedOffset) {
        self.offsets
            .insert((topic, partition), StoredOffset { value, seq: 0 });
    }

    pub(crate) fn remove_offset(&mut self, topic: &str, partition: i32) {
        self.offsets.remove(&(topic.to_string(), partition));
    }

    /// Removes every offset of `topic`, returning the partitions that had one.
    pub(crate) fn remove_topic_offsets(&mut self, topic: &str) -> Vec<i32> {
        let partitions: Vec<i32> = self
            .offsets
            .keys()
            .filter(|(t, _)| t == topic)
            .map(|(_, p)| *p)
            .collect();
        for partition in &partitions {
            self.offsets.remove(&(topic.to_string(), *partition));
        }
        partitions
    }

    pub(crate) fn offsets(&self) -> impl Iterator<Item = (&(String, i32), &CommittedOffset)> {
        self.offsets.iter().map(|(k, v)| (k, &v.value))
    }

    fn offset(&self, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.offsets
            .get(&(topic.to_string(), partition))
            .map(|s| &s.value)
    }

    /// Group-level OffsetCommit validation, mirroring Kafka's classic coordinator: commits
    /// are allowed while preparing a rebalance (consumers commit before giving up partitions)
    /// but not between JoinGroup and SyncGroup.
    fn validate_commit(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == GroupState::Empty {
            // A consumer that only uses the group to store offsets (manual assignment).
            return Ok(());
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        if let Some(instance) = instance_id {
            if self
                .static_members
                .get(instance)
                .is_some_and(|current| current != member_id)
            {
                return Err(ResponseError::FencedInstanceId);
            }
        }
        let current_generation = self.generation;
        let Some(member) = self.members.get_mut(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if generation != current_generation {
            return Err(ResponseError::IllegalGeneration);
        }
        member.touch();
        Ok(())
    }

    /// Removes expired offsets whose deletion (commit sequence `seq`) was persisted, unless a
    /// later commit wrote them again meanwhile. Returns how many were removed.
    pub(crate) fn expire_offsets(&mut self, seq: u64, keys: &[(String, i32)]) -> usize {
        let mut removed = 0;
        for key in keys {
            if self.offsets.get(key).is_some_and(|s| s.seq < seq) {
                self.offsets.remove(key);
                removed += 1;
            }
        }
        removed
    }

    /// Applies persisted commits, skipping keys a later commit has already written.
    fn apply_commits(&mut self, seq: u64, entries: Vec<(String, i32, CommittedOffset)>) {
        for (topic, partition, value) in entries {
            let key = (topic, partition);
            if self.offsets.get(&key).is_some_and(|s| s.seq > seq) {
                continue;
            }
            self.offsets.insert(key, StoredOffset { value, seq });
        }
    }
}

/// Awaits a commit sent to the store and applies it, in a task of its own: the write
/// lands whether or not the OffsetCommit's caller still waits (a client that hangs up
/// drops it), so cut off there it would leave the offset stored but not visible until a
/// restart, and the group's in-flight count raised for good (never expired, and
/// DeleteGroups answering NON_EMPTY_GROUP forever). Answers the commit's store error.
fn finish_commit(
    group: GroupRef,
    group_id: String,
    seq: u64,
    pending: Vec<(String, i32, CommittedOffset)>,
    write: BoxFuture<'static, Result<(), GroupStoreError>>,
) -> tokio::task::JoinHandle<Option<ResponseError>> {
    tokio::spawn(async move {
        let result = write.await;
        let mut g = group.lock();
        g.inflight_commits = g.inflight_commits.saturating_sub(1);
        match result {
            Ok(()) => {
                debug!(group = %group_id, partitions = pending.len(), "offsets committed");
                g.apply_commits(seq, pending);
                None
            }
            Err(e) => {
                warn!(group = %group_id, error = %e, "persisting offsets failed");
                Some(e.response_error())
            }
        }
    })
}

/// Per partition of one topic: `Err` if decided without the store, `Ok` if sent to it.
type PartitionResults = Vec<(i32, Result<(), ResponseError>)>;

/// Per partition of one topic: the committed offset, if any.
type FetchedPartitions = Vec<(i32, Option<CommittedOffset>)>;

fn str_bytes(s: &Option<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.clone().unwrap_or_default()))
}

impl GroupCoordinator {
    /// OffsetCommit. Offsets are persisted through the [`super::GroupStore`] first and only
    /// then made visible to OffsetFetch.
    pub async fn offset_commit(
        self: &Arc<Self>,
        req: OffsetCommitRequest,
        version: i16,
    ) -> OffsetCommitResponse {
        let group_id = req.group_id.to_string();
        let member_id = req.member_id.to_string();
        let generation = req.generation_id_or_member_epoch;
        let instance_id = if version >= 7 {
            req.group_instance_id.as_ref().map(|s| s.to_string())
        } else {
            None
        };
        let mut results: Vec<(TopicName, PartitionResults)> = Vec::new();
        let mut pending: Vec<(String, i32, CommittedOffset)> = Vec::new();

        let group_error = if group_id.is_empty() {
            Some(ResponseError::InvalidGroupId)
        } else {
            None
        };
        let group = match group_error {
            Some(_) => None,
            None if generation < 0 => Some(self.get_or_create_group(&group_id)),
            None => self.get_group(&group_id),
        };
        let mut persist = None;
        {
            let mut guard = group.as_ref().map(|g| g.lock());
            let group_error = match (&mut guard, group_error) {
                (_, Some(error)) => Some(error),
                // Kafka: a generation-aware commit to a group it does not know comes from a
                // member of a generation that no longer exists.
                (None, None) => Some(ResponseError::IllegalGeneration),
                (Some(g), None) => g
                    .validate_commit(generation, &member_id, instance_id.as_deref())
                    .err(),
            };
            let timestamp = self.store.now_ms();
            for topic in &req.topics {
                let mut partitions = Vec::with_capacity(topic.partitions.len());
                for p in &topic.partitions {
                    let metadata = p.committed_metadata.as_ref().map(|m| m.to_string());
                    let result = if let Some(error) = group_error {
                        Err(error)
                    } else if !self.store.partition_exists(&topic.name, p.partition_index) {
                        Err(ResponseError::UnknownTopicOrPartition)
                    } else if metadata
                        .as_ref()
                        .is_some_and(|m| m.len() > MAX_METADATA_BYTES)
                    {
                        Err(ResponseError::OffsetMetadataTooLarge)
                    } else {
                        pending.push((
                            topic.name.to_string(),
                            p.partition_index,
                            CommittedOffset {
                                offset: p.committed_offset,
                                leader_epoch: if version >= 6 {
                                    p.committed_leader_epoch
                                } else {
                                    -1
                                },
                                metadata,
                                commit_timestamp_ms: timestamp,
                            },
                        ));
                        Ok(())
                    };
                    partitions.push((p.partition_index, result));
                }
                results.push((topic.name.clone(), partitions));
            }
            if let (Some(g), Some(group)) = (guard.as_mut(), &group) {
                if !pending.is_empty() {
                    let seq = g.next_commit_seq;
                    g.next_commit_seq += 1;
                    let entries = pending
                        .iter()
                        .map(|(topic, partition, value)| {
                            let key = OffsetKey {
                                group: group_id.clone(),
                                topic: topic.clone(),
                                partition: *partition,
                            };
                            (key, Some(value.clone()))
                        })
                        .collect();
                    // Called under the lock so the store sees commits in sequence order; the
                    // future is awaited after the lock is released.
                    let write = self.store.persist(entries);
                    g.inflight_commits += 1;
                    persist = Some(finish_commit(group.clone(), group_id, seq, pending, write));
                }
            }
        }

        let store_error = match persist {
            Some(task) => match task.await {
                Ok(error) => error,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // The runtime is shutting down.
                Err(_) => Some(ResponseError::CoordinatorNotAvailable),
            },
            None => None,
        };

        let topics = results
            .into_iter()
            .map(|(name, partitions)| {
                let partitions = partitions
                    .into_iter()
                    .map(|(index, result)| {
                        let error = match result {
                            Err(error) => Some(error),
                            Ok(()) => store_error,
                        };
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(index)
                            .with_error_code(error.map_or(0, |e| e.code()))
                    })
                    .collect();
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(partitions)
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }

    /// OffsetFetch (v1–7 single group, v8 batched groups). Missing offsets read as -1.
    pub fn offset_fetch(&self, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        if version >= 8 {
            let groups = req
                .groups
                .iter()
                .map(|g| {
                    let requested = g.topics.as_ref().map(|topics| {
                        topics
                            .iter()
                            .map(|t| (t.name.clone(), t.partition_indexes.clone()))
                            .collect::<Vec<_>>()
                    });
                    let topics = self
                        .fetch_offsets(g.group_id.as_str(), requested)
                        .into_iter()
                        .map(|(name, partitions)| {
                            let partitions = partitions
                                .into_iter()
                                .map(|(index, value)| {
                                    let mut p = OffsetFetchResponsePartitions::default()
                                        .with_partition_index(index)
                                        .with_committed_offset(-1);
                                    if let Some(v) = value {
                                        p = p
                                            .with_committed_offset(v.offset)
                                            .with_committed_leader_epoch(v.leader_epoch)
                                            .with_metadata(str_bytes(&v.metadata));
                                    }
                                    p
                                })
                                .collect();
                            OffsetFetchResponseTopics::default()
                                .with_name(name)
                                .with_partitions(partitions)
                        })
                        .collect();
                    OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_topics(topics)
                })
                .collect();
            return OffsetFetchResponse::default().with_groups(groups);
        }

        let requested = req.topics.as_ref().map(|topics| {
            topics
                .iter()
                .map(|t| (t.name.clone(), t.partition_indexes.clone()))
                .collect::<Vec<_>>()
        });
        let topics = self
            .fetch_offsets(req.group_id.as_str(), requested)
            .into_iter()
            .map(|(name, partitions)| {
                let partitions = partitions
                    .into_iter()
                    .map(|(index, value)| {
                        let mut p = OffsetFetchResponsePartition::default()
                            .with_partition_index(index)
                            .with_committed_offset(-1);
                        if let Some(v) = value {
                            p = p
                                .with_committed_offset(v.offset)
                                .with_committed_leader_epoch(v.leader_epoch)
                                .with_metadata(str_bytes(&v.metadata));
                        }
                        p
                    })
                    .collect();
                OffsetFetchResponseTopic::default()
                    .with_name(name)
                    .with_partitions(partitions)
            })
            .collect();
        OffsetFetchResponse::default().with_topics(topics)
    }

    /// The requested offsets of a group (`None` = all it has), in request order, or sorted by
    /// topic and partition when listing all.
    fn fetch_offsets(
        &self,
        group_id: &str,
        requested: Option<Vec<(TopicName, Vec<i32>)>>,
    ) -> Vec<(TopicName, FetchedPartitions)> {
        let group = self.get_group(group_id);
        let group = group.as_ref().map(|g| g.lock());
        match requested {
            Some(topics) => topics
                .into_iter()
                .map(|(name, partitions)| {
                    let values = partitions
                        .into_iter()
                        .map(|p| (p, group.as_ref().and_then(|g| g.offset(&name, p)).cloned()))
                        .collect();
                    (name, values)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, FetchedPartitions> = BTreeMap::new();
                if let Some(g) = &group {
                    for ((topic, partition), value) in g.offsets() {
                        by_topic
                            .entry(topic.clone())
                            .or_default()
                            .push((*partition, Some(value.clone())));
                    }
                }
                by_topic
                    .into_iter()
                    .map(|(topic, values)| (TopicName(StrBytes::from_string(topic)), values))
                    .collect()
            }
        }
    }
}
