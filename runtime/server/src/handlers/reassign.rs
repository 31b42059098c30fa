//! ElectLeaders, AlterPartitionReassignments, ListPartitionReassignments:
//! what Kafka's tools call to move leadership. Storage is shared and each
//! partition has one replica (its leader), so "reassigning" a partition to
//! broker N is a move of its leadership (the same as `vigil cluster move`),
//! and a preferred-leader election is never needed.

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::msg;
use crate::broker::Broker;

/// The leader of a partition, if it exists and has one.
fn leader_of(b: &Broker, topic: &str, partition: i32) -> Result<Option<i32>, ResponseError> {
    if b.log.partition(topic, partition).is_err() {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    Ok(match &b.cluster {
        Some(c) => c.leader(topic, partition).map(|l| l.node),
        None => Some(b.settings.server.node_id),
    })
}

/// ElectLeaders: every partition already has its only replica as leader.
pub(super) fn elect_leaders(b: &Arc<Broker>, r: ElectLeadersRequest) -> ElectLeadersResponse {
    let asked: Vec<(TopicName, Vec<i32>)> = match r.topic_partitions {
        Some(tps) => tps.into_iter().map(|t| (t.topic, t.partitions)).collect(),
        None => b
            .log
            .topics()
            .iter()
            .map(|t| {
                (
                    TopicName(StrBytes::from_string(t.name.clone())),
                    (0..t.partitions.len() as i32).collect(),
                )
            })
            .collect(),
    };
    let results = asked
        .into_iter()
        .map(|(topic, partitions)| {
            let results = partitions
                .into_iter()
                .map(|p| {
                    let (code, text) = match leader_of(b, topic.as_str(), p) {
                        Err(e) => (e, "no such partition"),
                        Ok(None) => (
                            ResponseError::EligibleLeadersNotAvailable,
                            "the partition has no live leader yet; placement assigns one",
                        ),
                        Ok(Some(_)) => (
                            ResponseError::ElectionNotNeeded,
                            "the partition's only replica is its leader",
                        ),
                    };
                    PartitionResult::default()
                        .with_partition_id(p)
                        .with_error_code(code.code())
                        .with_error_message(msg(text))
                })
                .collect();
            ReplicaElectionResult::default()
                .with_topic(topic)
                .with_partition_result(results)
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}

/// AlterPartitionReassignments: the first replica named becomes the
/// partition's leader (a move); a cancellation finds nothing to cancel.
pub(super) async fn alter(
    b: &Arc<Broker>,
    r: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut responses = Vec::with_capacity(r.topics.len());
    for t in r.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let (code, text) = reassign(b, t.name.as_str(), p.partition_index, p.replicas).await;
            partitions.push(
                ReassignablePartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code.map_or(0, |c| c.code()))
                    .with_error_message(text.map(StrBytes::from_string)),
            );
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default().with_responses(responses)
}

async fn reassign(
    b: &Broker,
    topic: &str,
    partition: i32,
    replicas: Option<Vec<BrokerId>>,
) -> (Option<ResponseError>, Option<String>) {
    let current = match leader_of(b, topic, partition) {
        Ok(l) => l,
        Err(e) => return (Some(e), None),
    };
    let Some(replicas) = replicas else {
        return (
            Some(ResponseError::NoReassignmentInProgress),
            Some("moves finish on their own within seconds; there is nothing to cancel".into()),
        );
    };
    let Some(to) = replicas.first().map(|n| n.0) else {
        return (
            Some(ResponseError::InvalidReplicaAssignment),
            Some("name at least one broker".into()),
        );
    };
    if current == Some(to) {
        return (None, None);
    }
    match &b.cluster {
        None => (
            Some(ResponseError::InvalidReplicaAssignment),
            Some(format!(
                "this broker ({}) is the only one; start brokers with --coordinator to move partitions",
                b.settings.server.node_id
            )),
        ),
        Some(c) => match c.request_move(topic, partition, to).await {
            Ok(()) => (None, None),
            Err(e) => (Some(ResponseError::InvalidReplicaAssignment), Some(e)),
        },
    }
}

/// ListPartitionReassignments: the handovers this broker is making.
pub(super) fn list(
    b: &Arc<Broker>,
    r: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let moving = b
        .cluster
        .as_ref()
        .map(|c| c.movements())
        .unwrap_or_default();
    let wanted = |topic: &str, p: i32| match &r.topics {
        None => true,
        Some(ts) => ts
            .iter()
            .any(|t| t.name.as_str() == topic && t.partition_indexes.contains(&p)),
    };
    let mut by_topic: std::collections::BTreeMap<String, Vec<OngoingPartitionReassignment>> =
        Default::default();
    for m in moving.into_iter().filter(|m| wanted(&m.topic, m.partition)) {
        by_topic.entry(m.topic.clone()).or_default().push(
            OngoingPartitionReassignment::default()
                .with_partition_index(m.partition)
                .with_replicas(vec![BrokerId(m.to)])
                .with_adding_replicas(vec![BrokerId(m.to)])
                .with_removing_replicas(vec![BrokerId(m.from)]),
        );
    }
    ListPartitionReassignmentsResponse::default().with_topics(
        by_topic
            .into_iter()
            .map(|(name, partitions)| {
                OngoingTopicReassignment::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(partitions)
            })
            .collect(),
    )
}
