//! Fetch with long-polling: answer as soon as `min_bytes` are available or
//! `max_wait_ms` has passed, whichever comes first.
//!
//! The broker bounds both what a client asks for: the wait is cut to
//! `fetch-max-wait-ms` and the response to `fetch-max-bytes` (Kafka's
//! `fetch.max.bytes`), so one request cannot hold memory for long or build
//! a huge response.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;
use vigil_storage::{Partition, StorageError};

use crate::broker::Broker;
use crate::errors::storage_code;

struct Wanted {
    topic: TopicName,
    index: i32,
    offset: i64,
    max_bytes: usize,
    partition: Result<Arc<Partition>, StorageError>,
    /// The request's `current_leader_epoch` does not match the partition's.
    epoch_error: Option<ResponseError>,
}

pub(super) async fn handle(b: &Arc<Broker>, r: FetchRequest, _v: i16) -> FetchResponse {
    let wanted: Vec<Wanted> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let partition = b.log.partition(&t.topic.0, p.partition);
                let epoch_error = partition.as_ref().ok().and_then(|part| {
                    super::leader_epoch::check(part, p.current_leader_epoch).err()
                });
                Wanted {
                    topic: t.topic.clone(),
                    index: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
                    partition,
                    epoch_error,
                }
            })
        })
        .collect();
    let limits = &b.settings.server;
    let max_bytes = usize::try_from(r.max_bytes)
        .unwrap_or(usize::MAX)
        .min(limits.fetch_max_bytes)
        .max(1);
    let min_bytes = usize::try_from(r.min_bytes).unwrap_or(0);
    let wait = Duration::from_millis(u64::try_from(r.max_wait_ms).unwrap_or(0));
    let deadline = tokio::time::Instant::now() + wait.min(limits.fetch_max_wait());
    // Subscribe before the first read so that no append between the read and
    // the wait can be missed.
    let mut watches: Vec<_> = wanted
        .iter()
        .filter_map(|w| w.partition.as_ref().ok().map(|p| p.watch_high_watermark()))
        .collect();
    loop {
        for w in &mut watches {
            w.borrow_and_update();
        }
        let (parts, bytes, any_error) = read_all(b, &wanted, max_bytes).await;
        if bytes >= min_bytes.max(1)
            || any_error
            || tokio::time::Instant::now() >= deadline
            || watches.is_empty()
        {
            return respond(parts);
        }
        let mut changed: FuturesUnordered<_> = watches.iter_mut().map(|w| w.changed()).collect();
        tokio::select! {
            _ = changed.next() => {}
            _ = tokio::time::sleep_until(deadline) => {
                drop(changed);
                let (parts, _, _) = read_all(b, &wanted, max_bytes).await;
                return respond(parts);
            }
        }
    }
}

async fn read_all(
    b: &Arc<Broker>,
    wanted: &[Wanted],
    max_bytes: usize,
) -> (Vec<(TopicName, PartitionData)>, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let base = PartitionData::default().with_partition_index(w.index);
        let data = match &w.partition {
            Err(e) => {
                any_error = true;
                base.with_error_code(storage_code(e).code())
            }
            Ok(_) if w.epoch_error.is_some() => {
                any_error = true;
                base.with_error_code(w.epoch_error.map_or(0, |e| e.code()))
            }
            Ok(p) => {
                // Once the response is full, the rest answer with no records.
                let budget = w.max_bytes.min(max_bytes.saturating_sub(total));
                if budget == 0 && total > 0 {
                    let hw = p.high_watermark();
                    base.with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_log_start_offset(p.log_start_offset())
                } else {
                    match b.log.read(p, w.offset, budget.max(1)).await {
                        Ok(f) => {
                            total += f.records.len();
                            base.with_high_watermark(f.high_watermark)
                                .with_last_stable_offset(f.high_watermark)
                                .with_log_start_offset(f.log_start_offset)
                                .with_records(Some(f.records))
                        }
                        Err(e) => {
                            any_error = true;
                            let hw = p.high_watermark();
                            if !matches!(e, StorageError::OffsetOutOfRange { .. }) {
                                tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "fetch failed");
                            }
                            base.with_error_code(storage_code(&e).code())
                                .with_high_watermark(hw)
                                .with_last_stable_offset(hw)
                                .with_log_start_offset(p.log_start_offset())
                        }
                    }
                }
            }
        };
        if data.error_code != 0 {
            if let Some(e) = ResponseError::try_from_code(data.error_code) {
                b.metrics.error("Fetch", &format!("{e:?}"));
            }
        }
        out.push((w.topic.clone(), data));
    }
    (out, total, any_error)
}

fn respond(parts: Vec<(TopicName, PartitionData)>) -> FetchResponse {
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for (name, data) in parts {
        match topics.last_mut() {
            Some(t) if t.topic == name => t.partitions.push(data),
            _ => topics.push(
                FetchableTopicResponse::default()
                    .with_topic(name)
                    .with_partitions(vec![data]),
            ),
        }
    }
    FetchResponse::default().with_responses(topics)
}
