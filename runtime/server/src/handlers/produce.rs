//! Produce: offsets are assigned while the request is dispatched (in request
//! order), durability is awaited afterwards.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::ResponseError;
use vigil_storage::{AppendError, AppendOutcome, PendingAppend};

use super::{compacted, Pending};
use crate::broker::Broker;
use crate::errors::{append_code, storage_code};

enum Slot {
    Done(PartitionProduceResponse),
    Waiting(i32, PendingAppend, i64),
}

pub(super) async fn handle(b: &Arc<Broker>, r: ProduceRequest, v: i16) -> Pending {
    let acks = r.acks;
    if r.transactional_id.is_some() {
        return finish_all_with(r, ResponseError::TransactionalIdAuthorizationFailed, acks);
    }
    // Before any append, so a replay steps aside from this request's work.
    b.log.stats.client_writes.note();
    let mut topics = Vec::with_capacity(r.topic_data.len());
    for t in r.topic_data {
        let name = t.name.0.to_string();
        let max_batch = max_message_bytes(b, &name);
        let compacted = b
            .log
            .topic(&name)
            .is_some_and(|t| vigil_storage::keycompact::is_compacted(&t.configs));
        let mut slots = Vec::with_capacity(t.partition_data.len());
        for pd in t.partition_data {
            let slot = match (b.log.partition(&name, pd.index), pd.records) {
                (Err(e), _) => Slot::Done(error(pd.index, storage_code(&e), &e.to_string())),
                (Ok(_), None) => Slot::Done(error(
                    pd.index,
                    ResponseError::InvalidRecord,
                    "records are null",
                )),
                (Ok(_), Some(records)) if records.len() > max_batch => Slot::Done(error(
                    pd.index,
                    ResponseError::MessageTooLarge,
                    &format!(
                        "a record batch of {} bytes exceeds max.message.bytes ({max_batch}) of topic {name:?}; not retriable: send smaller batches or raise the limit",
                        records.len()
                    ),
                )),
                (Ok(p), Some(records)) => {
                    let keyless = if compacted {
                        compacted::keyless(&records)
                    } else {
                        Vec::new()
                    };
                    if !keyless.is_empty() {
                        Slot::Done(compacted::refuse(pd.index, &name, &keyless))
                    } else {
                        match b.log.start_append(&p, records).await {
                            Ok(pending) => Slot::Waiting(pd.index, pending, p.log_start_offset()),
                            Err(e) => {
                                tracing::debug!(topic = %name, partition = pd.index, error = %e, "produce refused");
                                Slot::Done(append_error(pd.index, &e))
                            }
                        }
                    }
                }
            };
            slots.push(slot);
        }
        topics.push((t.name, slots));
    }
    let timeout = Duration::from_millis(u64::try_from(r.timeout_ms).unwrap_or(0).max(1));
    let b = b.clone();
    async move {
        let mut responses = Vec::with_capacity(topics.len());
        for (name, slots) in topics {
            let mut partitions = Vec::with_capacity(slots.len());
            for slot in slots {
                partitions.push(match slot {
                    Slot::Done(p) => p,
                    Slot::Waiting(index, pending, log_start) => {
                        match tokio::time::timeout(timeout, pending.wait()).await {
                            Ok(Ok(AppendOutcome::Appended { base_offset }))
                            | Ok(Ok(AppendOutcome::Duplicate { base_offset })) => {
                                PartitionProduceResponse::default()
                                    .with_index(index)
                                    .with_base_offset(base_offset)
                                    .with_log_start_offset(log_start)
                            }
                            Ok(Err(e)) => append_error(index, &e),
                            // The batch stays queued and lands when the WAL
                            // recovers; an idempotent retry is then answered
                            // as a duplicate.
                            Err(_) => error(
                                index,
                                ResponseError::RequestTimedOut,
                                "the write-ahead log did not confirm durability in time",
                            ),
                        }
                    }
                });
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(partitions),
            );
        }
        for t in &mut responses {
            for p in &mut t.partition_responses {
                if p.error_code != 0 {
                    if let Some(e) = ResponseError::try_from_code(p.error_code) {
                        b.metrics.error("Produce", &format!("{e:?}"));
                    }
                }
                if v < 8 {
                    // error_message and record_errors exist from v8 on.
                    p.error_message = None;
                    p.record_errors.clear();
                }
            }
        }
        (acks != 0)
            .then(|| ResponseKind::Produce(ProduceResponse::default().with_responses(responses)))
    }
    .boxed()
}

/// The largest batch `topic` takes: its `max.message.bytes` config, else
/// the broker's `message-max-bytes` (Kafka compares the batch, log overhead
/// included, with the limit, as here).
fn max_message_bytes(b: &Broker, topic: &str) -> usize {
    b.log
        .topic(topic)
        .and_then(|t| t.configs.get("max.message.bytes")?.parse::<usize>().ok())
        .unwrap_or(b.settings.server.message_max_bytes)
}

fn finish_all_with(r: ProduceRequest, e: ResponseError, acks: i16) -> Pending {
    let responses = r
        .topic_data
        .into_iter()
        .map(|t| {
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| error(p.index, e, "transactions are not supported"))
                        .collect(),
                )
        })
        .collect();
    futures::future::ready(
        (acks != 0)
            .then(|| ResponseKind::Produce(ProduceResponse::default().with_responses(responses))),
    )
    .boxed()
}

fn append_error(index: i32, e: &AppendError) -> PartitionProduceResponse {
    error(index, append_code(e), &e.to_string())
}

fn error(index: i32, code: ResponseError, message: &str) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code.code())
        .with_base_offset(-1)
        .with_error_message(super::msg(message))
}
