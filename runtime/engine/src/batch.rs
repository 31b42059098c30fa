//! One input batch through the module: Arrow building, the end bound of
//! bounded runs, and how a failure is classified.

use bytes::Bytes;
use vigil_host::{BuiltBatch, GuestError, Instance};

use super::Deployment;

/// A failed batch: the module's error or the host's refusal to build it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BatchFailure {
    #[error(transparent)]
    Guest(#[from] GuestError),
    #[error("input batch unreadable: {0}")]
    Records(String),
}

impl BatchFailure {
    pub(crate) fn cause(&self) -> &'static str {
        match self {
            BatchFailure::Guest(g) => g.cause(),
            BatchFailure::Records(_) => "records",
        }
    }

    pub(crate) fn poisons_instance(&self) -> bool {
        match self {
            BatchFailure::Guest(g) => g.poisons_instance(),
            BatchFailure::Records(_) => false,
        }
    }
}

pub(crate) type Processed = (
    Option<Instance>,
    Option<BuiltBatch>,
    Result<Vec<vigil_abi::Alert>, BatchFailure>,
);

/// Builds the Arrow batch and runs the module on it (blocking).
pub(crate) fn process(
    instance: Option<Instance>,
    d: &Deployment,
    partition: i32,
    wire: &Bytes,
    from: i64,
    end: i64,
) -> Processed {
    let built = match vigil_host::build_batch(partition, wire, from, d.schema.as_ref()) {
        Ok(b) => truncate(b, end),
        Err(e) => return (instance, None, Err(BatchFailure::Records(e.to_string()))),
    };
    let Some(mut inst) = instance else {
        return (
            None,
            Some(built),
            Err(BatchFailure::Records("no detector instance".into())),
        );
    };
    if built.records == 0 {
        return (Some(inst), Some(built), Ok(Vec::new()));
    }
    let r = inst.process(&built.batch).map_err(BatchFailure::from);
    (Some(inst), Some(built), r)
}

/// Drops the rows at or after `end` (a bounded run's end can fall inside a
/// Kafka batch).
fn truncate(mut b: BuiltBatch, end: i64) -> BuiltBatch {
    if b.last_offset < end {
        return b;
    }
    use arrow_array::cast::AsArray;
    b.bad_records.retain(|r| r.offset < end);
    let keep = b
        .batch
        .column_by_name(vigil_abi::columns::OFFSET)
        .and_then(|c| c.as_primitive_opt::<arrow_array::types::Int64Type>())
        .map_or(0, |o| o.values().partition_point(|&x| x < end));
    b.batch = b.batch.slice(0, keep);
    b.records = keep + b.bad_records.len();
    b.last_offset = end - 1;
    b
}

/// Last offset of the last whole batch in `wire`.
pub(crate) fn last_offset_in(wire: &Bytes) -> Option<i64> {
    vigil_protocol::batch::RecordBatches::new(wire.clone())
        .filter_map(|b| b.ok())
        .last()
        .map(|(h, _)| h.last_offset())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::Compression;
    use vigil_protocol::batch::BatchBuilder;

    fn built(values: &[&str]) -> BuiltBatch {
        let mut b = BatchBuilder::new(Compression::None);
        for (i, v) in values.iter().enumerate() {
            b = b.record(1_000 + i as i64, None, Some(Bytes::from(v.to_string())));
        }
        let wire = b.build().unwrap();
        let schema =
            vigil_host::ValueSchema::from_json(&serde_json::json!({"x": "float64"})).unwrap();
        vigil_host::build_batch(0, &wire, 0, Some(&schema)).unwrap()
    }

    #[test]
    fn truncate_cuts_rows_and_bad_records_at_the_end() {
        let values = [
            r#"{"x":0}"#,
            r#"{"x":1}"#,
            r#"{"x":2}"#,
            "not json",
            r#"{"x":4}"#,
            "bad",
            r#"{"x":6}"#,
        ];
        let whole = built(&values);
        assert_eq!(
            (whole.records, whole.last_offset, whole.bad_records.len()),
            (7, 6, 2)
        );
        let cut = truncate(built(&values), 5);
        assert_eq!(cut.batch.num_rows(), 4, "offsets 0, 1, 2, 4");
        assert_eq!(
            cut.bad_records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![3]
        );
        assert_eq!((cut.records, cut.last_offset), (5, 4));
        // An end past the batch leaves it alone.
        let same = truncate(built(&values), 7);
        assert_eq!(
            (same.batch.num_rows(), same.records, same.last_offset),
            (5, 7, 6)
        );
    }
}
