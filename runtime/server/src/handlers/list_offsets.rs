//! ListOffsets: earliest (-2), latest (-1), or the first offset at or after a
//! timestamp.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::errors::storage_code;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub(super) async fn handle(b: &Arc<Broker>, r: ListOffsetsRequest, v: i16) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(r.topics.len());
    for t in r.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let part = b.log.partition(&t.name.0, p.partition_index);
            let epoch = part.as_ref().map_or(-1, |part| part.leader_epoch());
            let checked = part.map_err(|e| storage_code(&e)).and_then(|part| {
                super::leader_epoch::check(&part, p.current_leader_epoch)?;
                Ok(part)
            });
            let resp = match checked {
                Err(e) => base.with_error_code(e.code()),
                Ok(part) => match p.timestamp {
                    LATEST => base.with_offset(part.high_watermark()).with_timestamp(-1),
                    EARLIEST => base.with_offset(part.log_start_offset()).with_timestamp(-1),
                    ts if ts < 0 => base.with_error_code(ResponseError::InvalidRequest.code()),
                    ts => match b.log.offset_for_timestamp(&part, ts).await {
                        Ok(Some(hit)) => base.with_offset(hit.offset).with_timestamp(hit.timestamp),
                        // No record that late: Kafka answers -1/-1.
                        Ok(None) => base.with_offset(-1).with_timestamp(-1),
                        Err(e) => base.with_error_code(storage_code(&e).code()),
                    },
                },
            };
            let resp = if v >= 4 && resp.error_code == 0 {
                resp.with_leader_epoch(epoch)
            } else {
                resp
            };
            partitions.push(resp);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}
