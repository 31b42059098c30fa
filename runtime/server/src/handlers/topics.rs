//! CreateTopics, DeleteTopics, CreatePartitions.

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::ResponseError;
use vigil_storage::{StorageError, TopicConfig};

use super::msg;
use super::topic_configs;
use crate::broker::Broker;
use crate::completion::to_completion;
use crate::errors::storage_code;

fn topic_error(e: &StorageError) -> ResponseError {
    match e {
        StorageError::Invalid(_) => ResponseError::InvalidRequest,
        e => storage_code(e),
    }
}

pub(super) async fn create(
    b: &Arc<Broker>,
    r: CreateTopicsRequest,
    v: i16,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(r.topics.len());
    for t in r.topics {
        let name = t.name.0.to_string();
        // Manual replica assignments are accepted: the object store holds
        // every partition's data, so there are no replicas to place and
        // the broker decides where partitions are served. Their count
        // stands for the partition count, as in Kafka.
        let partitions = match (t.num_partitions, t.assignments.len()) {
            (-1, 0) => b.settings.server.default_partitions,
            (-1, n) => i32::try_from(n).unwrap_or(i32::MAX),
            (n, _) => n,
        };
        let checked = topic_configs::validate_all(
            t.configs
                .iter()
                .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
        );
        let base = CreatableTopicResult::default().with_name(t.name.clone());
        let outcome: Result<Option<uuid::Uuid>, (ResponseError, String)> =
            if let Err(why) = &checked {
                Err((ResponseError::InvalidConfig, why.clone()))
            } else if let Some(problem) = assignment_problem(&t.assignments, t.num_partitions) {
                Err(problem)
            } else if partitions < 1 {
                Err((
                    ResponseError::InvalidPartitions,
                    format!("partition count {partitions} must be at least 1"),
                ))
            } else if r.validate_only {
                if b.log.topic(&name).is_some() {
                    Err((
                        ResponseError::TopicAlreadyExists,
                        format!("topic {name:?} already exists"),
                    ))
                } else {
                    within_partition_limit(b, partitions).map(|()| None)
                }
            } else {
                match b
                    .log
                    .create_topic(
                        &name,
                        TopicConfig {
                            partitions,
                            configs: checked.unwrap_or_default(),
                        },
                    )
                    .await
                {
                    Ok(topic) => Ok(Some(topic.id)),
                    Err(StorageError::Invalid(m)) if m.contains("topic name") => {
                        Err((ResponseError::InvalidTopicException, m))
                    }
                    Err(StorageError::Invalid(m)) => Err((ResponseError::InvalidPartitions, m)),
                    Err(e) => Err((topic_error(&e), e.to_string())),
                }
            };
        let res = match outcome {
            Ok(id) => {
                let mut ok = base;
                if v >= 5 {
                    ok = ok
                        .with_num_partitions(partitions)
                        .with_replication_factor(1);
                }
                if v >= 7 {
                    if let Some(id) = id {
                        ok = ok.with_topic_id(id);
                    }
                }
                ok
            }
            Err((code, message)) => {
                let e = base.with_error_code(code.code());
                if v >= 1 {
                    e.with_error_message(msg(message))
                } else {
                    e
                }
            }
        };
        results.push(res);
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Why manual replica assignments cannot be taken, if they cannot: as in
/// Kafka, not together with a partition count (INVALID_REQUEST), and
/// partitions numbered 0..n, each with a broker (INVALID_REPLICA_ASSIGNMENT).
fn assignment_problem(
    assignments: &[CreatableReplicaAssignment],
    count: i32,
) -> Option<(ResponseError, String)> {
    if assignments.is_empty() {
        return None;
    }
    if count != -1 {
        return Some((
            ResponseError::InvalidRequest,
            "give either a partition count or manual replica assignments, not both".into(),
        ));
    }
    let mut seen: Vec<i32> = assignments.iter().map(|a| a.partition_index).collect();
    seen.sort_unstable();
    let bad = |why: String| Some((ResponseError::InvalidReplicaAssignment, why));
    if seen
        .iter()
        .enumerate()
        .any(|(i, p)| i64::from(*p) != i as i64)
    {
        return bad(format!(
            "replica assignments must number partitions 0..{} consecutively (got {seen:?})",
            assignments.len()
        ));
    }
    if assignments.iter().any(|a| a.broker_ids.is_empty()) {
        return bad("every assigned partition needs at least one broker id".into());
    }
    None
}

/// The partition limit as a validate-only CreateTopics sees it (the real
/// creation checks it again on the manifest it commits).
fn within_partition_limit(b: &Broker, adding: i32) -> Result<(), (ResponseError, String)> {
    let existing: usize = b.log.topics().iter().map(|t| t.partitions.len()).sum();
    let limit = b.settings.storage.max_partitions;
    let total = existing.saturating_add(usize::try_from(adding).unwrap_or(0));
    if total > limit {
        return Err((
            ResponseError::PolicyViolation,
            format!("{adding} more partitions would make {total}, over the broker's limit of {limit} (max-partitions)"),
        ));
    }
    Ok(())
}

pub(super) async fn delete(
    b: &Arc<Broker>,
    r: DeleteTopicsRequest,
    v: i16,
) -> DeleteTopicsResponse {
    let names: Vec<Option<TopicName>> = if v >= 6 {
        r.topics.into_iter().map(|t| t.name).collect()
    } else {
        r.topic_names.into_iter().map(Some).collect()
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let Some(name) = name else {
            out.push(
                DeletableTopicResult::default()
                    .with_error_code(ResponseError::UnsupportedVersion.code())
                    .with_error_message(msg(
                        "deleting topics by id is not supported; name the topic",
                    )),
            );
            continue;
        };
        let topic = name.0.to_string();
        let id = b.log.topic(&topic).map(|t| t.id);
        let res = match to_completion(delete_topic(b.clone(), topic)).await {
            Ok(()) => {
                let r = DeletableTopicResult::default().with_name(Some(name));
                match (v >= 6, id) {
                    (true, Some(id)) => r.with_topic_id(id),
                    _ => r,
                }
            }
            Err(e) => {
                let r = DeletableTopicResult::default()
                    .with_name(Some(name))
                    .with_error_code(topic_error(&e).code());
                if v >= 5 {
                    r.with_error_message(msg(e.to_string()))
                } else {
                    r
                }
            }
        };
        out.push(res);
    }
    DeleteTopicsResponse::default().with_responses(out)
}

/// Deletes `topic` and then its groups' committed offsets. The handler runs
/// it in a task of its own: cut off after the log deleted the topic (its
/// client hung up), the offsets would stay in memory and stored, and a
/// topic created again under the name would start its consumers from them.
async fn delete_topic(b: Arc<Broker>, topic: String) -> Result<(), StorageError> {
    b.log.delete_topic(&topic).await?;
    let keys = b.groups.forget_topic(&topic);
    if !keys.is_empty() {
        let deletions = keys.iter().map(|k| (k.clone(), None)).collect();
        if let Err(e) = b.group_store.persist(deletions).await {
            tracing::warn!(%topic, error = %e, "could not delete committed offsets of a deleted topic");
        }
    }
    Ok(())
}

pub(super) async fn create_partitions(
    b: &Arc<Broker>,
    r: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(r.topics.len());
    for t in r.topics {
        let name = t.name.0.to_string();
        let res = if r.validate_only {
            match b.log.topic(&name) {
                None => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("unknown topic {name:?}"),
                )),
                Some(topic) if t.count <= topic.partitions.len() as i32 => Err((
                    ResponseError::InvalidPartitions,
                    format!(
                        "topic {name:?} already has {} partitions",
                        topic.partitions.len()
                    ),
                )),
                Some(_) => Ok(()),
            }
        } else {
            b.log.create_partitions(&name, t.count).await.map_err(|e| {
                let code = match &e {
                    StorageError::Invalid(_) => ResponseError::InvalidPartitions,
                    e => storage_code(e),
                };
                (code, e.to_string())
            })
        };
        let base = CreatePartitionsTopicResult::default().with_name(t.name);
        results.push(match res {
            Ok(()) => base,
            Err((code, m)) => base.with_error_code(code.code()).with_error_message(msg(m)),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
