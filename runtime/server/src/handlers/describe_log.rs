//! DescribeLogDirs and DescribeProducers: read-only views of the log.
//!
//! vigil has one "log dir" per broker: its data directory (WAL) in front
//! of the object store. A partition's size is what it holds in the object
//! store plus what is still waiting in the WAL; there is no follower, so
//! the offset lag is always zero.

use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    DescribeLogDirsRequest, DescribeLogDirsResponse, DescribeProducersRequest,
    DescribeProducersResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use vigil_storage::Topic;

use super::msg;
use crate::broker::Broker;
use crate::errors::storage_code;

pub(super) fn log_dirs(b: &Arc<Broker>, r: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    // `None` asks for every topic; a named topic vigil does not have is
    // left out, as Kafka does.
    let chosen: Vec<(Arc<Topic>, Option<Vec<i32>>)> = match r.topics {
        None => b.log.topics().into_iter().map(|t| (t, None)).collect(),
        Some(wanted) => wanted
            .into_iter()
            .filter_map(|w| Some((b.log.topic(w.topic.0.as_str())?, Some(w.partitions))))
            .collect(),
    };
    let topics = chosen
        .into_iter()
        .map(|(t, only)| {
            let partitions = t
                .partitions
                .iter()
                .filter(|p| only.as_ref().is_none_or(|o| o.contains(&p.index)))
                .map(|p| {
                    DescribeLogDirsPartition::default()
                        .with_partition_index(p.index)
                        .with_partition_size(i64::try_from(p.size_bytes()).unwrap_or(i64::MAX))
                        .with_offset_lag(0)
                })
                .collect();
            DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(t.name.clone())))
                .with_partitions(partitions)
        })
        .collect();
    let dir = b.settings.storage.data_dir.display().to_string();
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir))
        .with_topics(topics)])
}

pub(super) fn producers(b: &Arc<Broker>, r: DescribeProducersRequest) -> DescribeProducersResponse {
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let base = PartitionResponse::default().with_partition_index(index);
                    match b.log.partition(t.name.0.as_str(), index) {
                        Err(e) => base
                            .with_error_code(storage_code(&e).code())
                            .with_error_message(msg(e.to_string())),
                        Ok(p) => base.with_active_producers(
                            p.producer_snapshot()
                                .into_iter()
                                .map(|s| {
                                    let last = s.batches.last();
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(s.producer_id))
                                        .with_producer_epoch(i32::from(s.epoch))
                                        .with_last_sequence(last.map_or(-1, |e| e.last_seq))
                                        // Unknown after a restart (not persisted).
                                        .with_last_timestamp(if s.last_write_ms > 0 {
                                            s.last_write_ms
                                        } else {
                                            -1
                                        })
                                        .with_coordinator_epoch(-1)
                                        .with_current_txn_start_offset(-1)
                                })
                                .collect(),
                        ),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
