//! Produce rules of `cleanup.policy=compact` topics: every record needs a
//! key (compaction keeps the latest record per key, so a keyless record
//! could never be compacted). As in Kafka, a batch holding keyless records
//! is refused whole with INVALID_RECORD, and `record_errors` names each
//! keyless record by its index in the batch.

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse,
};
use kafka_protocol::ResponseError;
use vigil_protocol::batch::{decode_records, DEFAULT_DECOMPRESSED_LIMIT};

use super::msg;

/// Indexes of the keyless records in `records` (one batch). A batch that
/// does not decode is left to the append path, which refuses it with the
/// precise reason.
pub(super) fn keyless(records: &Bytes) -> Vec<i32> {
    let mut buf = records.clone();
    match decode_records(&mut buf, DEFAULT_DECOMPRESSED_LIMIT) {
        Ok(set) => set
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.key.is_none())
            .map(|(i, _)| i32::try_from(i).unwrap_or(i32::MAX))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The answer refusing a batch with keyless records on compacted `topic`.
pub(super) fn refuse(index: i32, topic: &str, keyless: &[i32]) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(ResponseError::InvalidRecord.code())
        .with_base_offset(-1)
        .with_error_message(msg(format!(
            "topic {topic:?} is compacted (cleanup.policy=compact): every record needs a key; {} record(s) of the batch have none",
            keyless.len()
        )))
        .with_record_errors(
            keyless
                .iter()
                .map(|&i| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(i)
                        .with_batch_index_error_message(msg(
                            "Compacted topic cannot accept message without key in topic partition",
                        ))
                })
                .collect(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::Compression as Codec;
    use vigil_protocol::BatchBuilder;

    #[test]
    fn finds_keyless_records_in_compressed_batches() {
        let batch = BatchBuilder::new(Codec::Gzip)
            .record(
                1,
                Some(Bytes::from_static(b"k")),
                Some(Bytes::from_static(b"v")),
            )
            .record(2, None, Some(Bytes::from_static(b"v")))
            .record(3, Some(Bytes::from_static(b"k2")), None)
            .record(4, None, None)
            .build()
            .expect("batch");
        assert_eq!(keyless(&batch), vec![1, 3]);
        let refused = refuse(0, "t", &keyless(&batch));
        assert_eq!(refused.error_code, ResponseError::InvalidRecord.code());
        assert_eq!(refused.record_errors.len(), 2);
    }
}
