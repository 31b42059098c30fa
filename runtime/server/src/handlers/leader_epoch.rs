//! Leader epochs on the wire (KIP-320): the check of a request's
//! `current_leader_epoch` and OffsetsForLeaderEpoch.

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;
use vigil_storage::Partition;

use crate::broker::Broker;
use crate::errors::storage_code;

/// Checks the leader epoch a client believes current (`-1`: no check):
/// older than ours means its metadata is stale (FENCED_LEADER_EPOCH), newer
/// means ours is (UNKNOWN_LEADER_EPOCH); both make the client refresh
/// metadata and retry.
pub(super) fn check(p: &Partition, current_leader_epoch: i32) -> Result<(), ResponseError> {
    if current_leader_epoch < 0 {
        return Ok(());
    }
    let ours = p.leader_epoch();
    match current_leader_epoch.cmp(&ours) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(ResponseError::FencedLeaderEpoch),
        std::cmp::Ordering::Greater => Err(ResponseError::UnknownLeaderEpoch),
    }
}

/// OffsetsForLeaderEpoch: where each requested leader epoch ends.
pub(super) fn handle(
    b: &Arc<Broker>,
    r: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let base = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let answer = b
                        .log
                        .partition(&t.topic.0, p.partition)
                        .map_err(|e| storage_code(&e))
                        .and_then(|part| {
                            check(&part, p.current_leader_epoch)?;
                            Ok(part.end_offset_for_epoch(p.leader_epoch))
                        });
                    match answer {
                        Ok((epoch, end)) => base.with_leader_epoch(epoch).with_end_offset(end),
                        Err(e) => {
                            b.metrics.error("OffsetForLeaderEpoch", &format!("{e:?}"));
                            base.with_error_code(e.code())
                        }
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
