//! ACLs on the topic data APIs: Produce, Fetch, ListOffsets,
//! OffsetForLeaderEpoch, DescribeProducers, DeleteRecords, Metadata.

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, TopicResponse};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, DescribeProducersRequest,
    DescribeProducersResponse, FetchRequest, FetchResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ProduceRequest, ProduceResponse, RequestKind, TopicName,
};
use vigil_auth::acl::{Operation, ResourceType};

use super::{entries, fixup, split, take_denied, Gated, Later, TOPIC_DENIED, TXN_DENIED};
use crate::broker::Broker;
use crate::connection::ConnInfo;
use crate::security::Check;

pub(super) fn produce(c: &Check<'_>, mut r: ProduceRequest) -> Gated {
    let txn_ok = r
        .transactional_id
        .as_ref()
        .is_none_or(|id| c.can(Operation::Write, ResourceType::TransactionalId, &id.0));
    let denied = take_denied(
        &mut r.topic_data,
        |t| txn_ok && c.topic(Operation::Write, &t.name.0),
        |t| (t.name, t.partition_data.iter().map(|p| p.index).collect()),
    );
    if denied.is_empty() {
        return Gated::Pass(RequestKind::Produce(r), None);
    }
    let code = if txn_ok { TOPIC_DENIED } else { TXN_DENIED };
    // acks=0 has no response, so the fixup never runs: the denied records
    // are dropped, as Kafka drops them.
    let f = fixup!(Produce, move |mut resp: ProduceResponse| {
        resp.responses.extend(entries(
            denied,
            |name, parts| {
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(parts)
            },
            |i| {
                PartitionProduceResponse::default()
                    .with_index(i)
                    .with_error_code(code)
                    .with_base_offset(-1)
            },
        ));
        resp
    });
    Gated::Pass(RequestKind::Produce(r), f)
}

pub(super) fn fetch(c: &Check<'_>, mut r: FetchRequest) -> Gated {
    let denied = take_denied(
        &mut r.topics,
        |t| c.topic(Operation::Read, &t.topic.0),
        |t| (t.topic, t.partitions.iter().map(|p| p.partition).collect()),
    );
    if denied.is_empty() {
        return Gated::Pass(RequestKind::Fetch(r), None);
    }
    // An error answers at once, as in Kafka: no long poll for the rest.
    r.max_wait_ms = 0;
    let f = fixup!(Fetch, move |mut resp: FetchResponse| {
        resp.responses.extend(entries(
            denied,
            |name, parts| {
                FetchableTopicResponse::default()
                    .with_topic(name)
                    .with_partitions(parts)
            },
            |i| {
                PartitionData::default()
                    .with_partition_index(i)
                    .with_error_code(TOPIC_DENIED)
                    .with_high_watermark(-1)
                    .with_last_stable_offset(-1)
                    .with_log_start_offset(-1)
            },
        ));
        resp
    });
    Gated::Pass(RequestKind::Fetch(r), f)
}

pub(super) fn list_offsets(c: &Check<'_>, mut r: ListOffsetsRequest) -> Gated {
    let denied = take_denied(
        &mut r.topics,
        |t| c.topic(Operation::Describe, &t.name.0),
        |t| {
            (
                t.name,
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        },
    );
    if denied.is_empty() {
        return Gated::Pass(RequestKind::ListOffsets(r), None);
    }
    let f = fixup!(ListOffsets, move |mut resp: ListOffsetsResponse| {
        resp.topics.extend(entries(
            denied,
            |name, parts| {
                ListOffsetsTopicResponse::default()
                    .with_name(name)
                    .with_partitions(parts)
            },
            |i| {
                ListOffsetsPartitionResponse::default()
                    .with_partition_index(i)
                    .with_error_code(TOPIC_DENIED)
                    .with_timestamp(-1)
                    .with_offset(-1)
            },
        ));
        resp
    });
    Gated::Pass(RequestKind::ListOffsets(r), f)
}

pub(super) fn leader_epoch(c: &Check<'_>, mut r: OffsetForLeaderEpochRequest) -> Gated {
    let denied = take_denied(
        &mut r.topics,
        |t| c.topic(Operation::Describe, &t.topic.0),
        |t| (t.topic, t.partitions.iter().map(|p| p.partition).collect()),
    );
    if denied.is_empty() {
        return Gated::Pass(RequestKind::OffsetForLeaderEpoch(r), None);
    }
    let f = fixup!(
        OffsetForLeaderEpoch,
        move |mut resp: OffsetForLeaderEpochResponse| {
            resp.topics.extend(entries(
                denied,
                |name, parts| {
                    OffsetForLeaderTopicResult::default()
                        .with_topic(name)
                        .with_partitions(parts)
                },
                |i| {
                    EpochEndOffset::default()
                        .with_partition(i)
                        .with_error_code(TOPIC_DENIED)
                },
            ));
            resp
        }
    );
    Gated::Pass(RequestKind::OffsetForLeaderEpoch(r), f)
}

pub(super) fn describe_producers(c: &Check<'_>, mut r: DescribeProducersRequest) -> Gated {
    let denied = take_denied(
        &mut r.topics,
        |t| c.topic(Operation::Read, &t.name.0),
        |t| (t.name, t.partition_indexes),
    );
    if denied.is_empty() {
        return Gated::Pass(RequestKind::DescribeProducers(r), None);
    }
    let f = fixup!(
        DescribeProducers,
        move |mut resp: DescribeProducersResponse| {
            resp.topics.extend(entries(
                denied,
                |name, parts| {
                    TopicResponse::default()
                        .with_name(name)
                        .with_partitions(parts)
                },
                |i| {
                    PartitionResponse::default()
                        .with_partition_index(i)
                        .with_error_code(TOPIC_DENIED)
                },
            ));
            resp
        }
    );
    Gated::Pass(RequestKind::DescribeProducers(r), f)
}

pub(super) fn delete_records(c: &Check<'_>, mut r: DeleteRecordsRequest) -> Gated {
    let denied = take_denied(
        &mut r.topics,
        |t| c.topic(Operation::Delete, &t.name.0),
        |t| {
            (
                t.name,
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        },
    );
    if denied.is_empty() {
        return Gated::Pass(RequestKind::DeleteRecords(r), None);
    }
    let f = fixup!(DeleteRecords, move |mut resp: DeleteRecordsResponse| {
        resp.topics.extend(entries(
            denied,
            |name, parts| {
                DeleteRecordsTopicResult::default()
                    .with_name(name)
                    .with_partitions(parts)
            },
            |i| {
                DeleteRecordsPartitionResult::default()
                    .with_partition_index(i)
                    .with_low_watermark(-1)
                    .with_error_code(TOPIC_DENIED)
            },
        ));
        resp
    });
    Gated::Pass(RequestKind::DeleteRecords(r), f)
}

/// Metadata: a named topic the principal may not DESCRIBE, or that does not
/// exist and may not be created while the request asks for auto-creation,
/// is taken out of the request and answered TOPIC_AUTHORIZATION_FAILED
/// (so it is neither created nor shown to exist). Every other topic in the
/// response (all topics, or topics asked by id) is shown only if the
/// principal may DESCRIBE it.
pub(super) fn metadata(
    b: &Arc<Broker>,
    c: &Check<'_>,
    mut r: MetadataRequest,
    v: i16,
    conn: &ConnInfo,
) -> Gated {
    let mut denied: Vec<TopicName> = Vec::new();
    // Which topics the client asked for by name; `None`: all (or some by id).
    let mut asked: Option<HashSet<String>> = None;
    if let Some(topics) = r.topics.take() {
        // Metadata v0 reads an empty list as "all topics".
        let all = v == 0 && topics.is_empty();
        let by_name = topics.iter().all(|t| t.name.is_some());
        let auto_create = r.allow_auto_topic_creation || v < 4;
        let (keep, out) = split(topics, |t| match &t.name {
            None => true,
            Some(name) => {
                c.topic(Operation::Describe, &name.0)
                    && (!auto_create || b.log.topic(&name.0).is_some() || c.create_topic(&name.0))
            }
        });
        if by_name && !all {
            asked = Some(
                keep.iter()
                    .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                    .collect(),
            );
        }
        denied = out.into_iter().filter_map(|t| t.name).collect();
        r.topics = Some(keep);
    }
    let later = Later::new(b, conn);
    let f = fixup!(Metadata, move |mut resp: MetadataResponse| {
        later.with(|c| {
            resp.topics.retain(|t| {
                let name = t.name.as_ref().map_or("", |n| &n.0);
                // v0 with every named topic denied asked for "all" by then:
                // keep to what was asked.
                asked.as_ref().is_none_or(|a| a.contains(name))
                    && c.can_quietly(Operation::Describe, ResourceType::Topic, name)
            });
        });
        for name in denied {
            resp.topics.push(
                MetadataResponseTopic::default()
                    .with_name(Some(name))
                    .with_error_code(TOPIC_DENIED),
            );
        }
        resp
    });
    Gated::Pass(RequestKind::Metadata(r), f)
}
