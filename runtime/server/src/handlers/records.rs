//! DeleteRecords: moves partitions' log start offsets forward (Kafka's
//! "delete records before offset"). The new start is persisted in the
//! manifest before the answer; fetch and ListOffsets(earliest) honour it at
//! once, and retention drops the uploaded runs that lie wholly below it.

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::broker::Broker;
use crate::errors::storage_code;

/// The offset DeleteRecords takes for "everything up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub(super) async fn delete_records(
    b: &Arc<Broker>,
    r: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(r.topics.len());
    for t in r.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base =
                DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            let result = match b.log.partition(&t.name.0, p.partition_index) {
                Err(e) => Err(e),
                Ok(part) => {
                    let offset = if p.offset == HIGH_WATERMARK {
                        part.high_watermark()
                    } else {
                        p.offset
                    };
                    b.log.delete_records(&part, offset).await
                }
            };
            partitions.push(match result {
                Ok(low) => base.with_low_watermark(low),
                Err(e) => {
                    tracing::debug!(topic = %t.name.0.as_str(), partition = p.partition_index, error = %e, "delete records refused");
                    base.with_low_watermark(-1)
                        .with_error_code(storage_code(&e).code())
                }
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
