//! Records the broker writes for deployments: alerts (with provenance
//! headers) and dead letters (with headers saying why).

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use bytes::Bytes;
use kafka_protocol::records::{Compression, Record};
use vigil_abi::{columns, Alert};
use vigil_protocol::batch::{inflate, BatchBuilder, BatchError};
use vigil_storage::{Log, Partition};

use super::DetectorError;

/// Header names on alert and dead-letter records.
pub mod headers {
    /// Deployment that wrote the record.
    pub const DEPLOYMENT: &str = "vigil.deployment";
    /// sha256 of the module that produced the alert.
    pub const MODULE: &str = "vigil.module";
    /// Input topic.
    pub const SOURCE_TOPIC: &str = "vigil.source.topic";
    /// Input partition.
    pub const SOURCE_PARTITION: &str = "vigil.source.partition";
    /// Input offset the alert concerns.
    pub const SOURCE_OFFSET: &str = "vigil.source.offset";
    /// Timestamp (ms) of the input record an alert is about.
    pub const SOURCE_TIMESTAMP: &str = "vigil.source.timestamp";
    /// Last input offset of the batch that produced the alert; recovery uses
    /// it to know which input was already alerted on.
    pub const INPUT_END: &str = "vigil.input.end";
    /// Alert severity.
    pub const SEVERITY: &str = "vigil.severity";
    /// Dead letters: why the record was not processed.
    pub const ERROR: &str = "vigil.error";
    /// Dead letters: the error class (`trap`, `cpu`, `schema`, ...).
    pub const CAUSE: &str = "vigil.error.cause";
    /// The principal (`User:NAME`) the deployment runs as, when it has one.
    pub const PRINCIPAL: &str = "vigil.principal";
}

/// Who wrote a record and from which input.
#[derive(Debug, Clone, Copy)]
pub struct Provenance<'a> {
    /// Deployment name.
    pub deployment: &'a str,
    /// Module hash.
    pub module: &'a str,
    /// Input topic.
    pub topic: &'a str,
    /// Input partition.
    pub partition: i32,
    /// The principal the deployment runs as (deployments made before ACLs,
    /// and local test runs, have none).
    pub principal: Option<&'a str>,
}

impl Provenance<'_> {
    fn headers(&self, source_offset: i64) -> Vec<(String, Option<Bytes>)> {
        let h = |k: &str, v: String| (k.to_string(), Some(Bytes::from(v)));
        let mut out = vec![
            h(headers::DEPLOYMENT, self.deployment.to_string()),
            h(headers::MODULE, self.module.to_string()),
            h(headers::SOURCE_TOPIC, self.topic.to_string()),
            h(headers::SOURCE_PARTITION, self.partition.to_string()),
            h(headers::SOURCE_OFFSET, source_offset.to_string()),
        ];
        if let Some(p) = self.principal {
            out.push(h(headers::PRINCIPAL, p.to_string()));
        }
        out
    }
}

/// Timestamp of the record at `offset` in `batch` (offsets are ascending).
fn timestamp_of(batch: &RecordBatch, offset: i64) -> Option<i64> {
    let offsets = batch
        .column_by_name(columns::OFFSET)?
        .as_primitive_opt::<Int64Type>()?;
    let ts = batch
        .column_by_name(columns::TIMESTAMP)?
        .as_primitive_opt::<TimestampMillisecondType>()?;
    let i = offsets.values().binary_search(&offset).ok()?;
    Some(ts.value(i))
}

fn json_fields(fields: &[(String, String)]) -> serde_json::Map<String, serde_json::Value> {
    fields
        .iter()
        .map(|(k, v)| {
            // The guest promised JSON; if it lied, keep the text as a string
            // rather than dropping the field.
            let value =
                serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.clone()));
            (k.clone(), value)
        })
        .collect()
}

/// The value of an alert record: a JSON document any consumer can read.
pub fn alert_value(p: &Provenance<'_>, a: &Alert, timestamp: Option<i64>) -> serde_json::Value {
    let text = |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    serde_json::json!({
        "deployment": p.deployment,
        "module": p.module,
        "severity": a.severity.as_str(),
        "score": if a.score.is_finite() { serde_json::json!(a.score) } else { serde_json::Value::Null },
        "key": text(&a.key),
        "message": text(&a.value),
        "source": {
            "topic": p.topic,
            "partition": p.partition,
            "offset": a.source_offset,
            "timestamp": timestamp,
        },
        "fields": json_fields(&a.fields),
    })
}

/// One Kafka batch holding all `alerts` of one input batch, so they land
/// atomically. Each alert's timestamp is its source record's timestamp, which
/// makes a re-run produce identical records.
pub fn alert_batch(
    p: &Provenance<'_>,
    alerts: &[Alert],
    input: &RecordBatch,
    input_end: i64,
) -> Result<Bytes, BatchError> {
    // LZ4: alert JSON repeats its provenance in every record and compresses
    // several-fold, and every alert byte is fsync'd in the WAL beside live
    // produce (a replay writing ~10 k alerts/s uncompressed was the main
    // cause of produce tail latency in `cargo bench --bench replay`).
    let mut b = BatchBuilder::new(Compression::Lz4);
    for a in alerts {
        let ts = timestamp_of(input, a.source_offset);
        let value = serde_json::to_vec(&alert_value(p, a, ts)).unwrap_or_default();
        let mut hs = p.headers(a.source_offset);
        if let Some(ts) = ts {
            hs.push((
                headers::SOURCE_TIMESTAMP.into(),
                Some(Bytes::from(ts.to_string())),
            ));
        }
        hs.push((
            headers::INPUT_END.into(),
            Some(Bytes::from(input_end.to_string())),
        ));
        hs.push((
            headers::SEVERITY.into(),
            Some(Bytes::from_static(a.severity.as_str().as_bytes())),
        ));
        b = b.record_with_headers(
            ts.unwrap_or(-1),
            a.key.clone().map(Bytes::from),
            Some(Bytes::from(value)),
            hs,
        );
    }
    b.build()
}

/// An input record on its way to the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Input offset.
    pub offset: i64,
    /// Record timestamp.
    pub timestamp: i64,
    /// Record key.
    pub key: Option<Bytes>,
    /// Record value.
    pub value: Option<Bytes>,
    /// Record headers.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Why it was not processed.
    pub error: String,
}

/// The records of an Arrow input batch, for dead-lettering a whole batch.
pub fn records_of(batch: &RecordBatch, error: &str) -> Vec<DeadLetter> {
    let (Some(offsets), Some(ts), Some(keys), Some(values)) = (
        batch
            .column_by_name(columns::OFFSET)
            .and_then(|c| c.as_primitive_opt::<Int64Type>()),
        batch
            .column_by_name(columns::TIMESTAMP)
            .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>()),
        batch
            .column_by_name(columns::KEY)
            .and_then(|c| c.as_binary_opt::<i32>()),
        batch
            .column_by_name(columns::VALUE)
            .and_then(|c| c.as_binary_opt::<i32>()),
    ) else {
        return Vec::new();
    };
    let hdrs = batch
        .column_by_name(columns::HEADERS)
        .and_then(|c| c.as_list_opt::<i32>());
    (0..batch.num_rows())
        .map(|i| {
            let bytes = |a: &arrow_array::BinaryArray| {
                (!a.is_null(i)).then(|| Bytes::copy_from_slice(a.value(i)))
            };
            let headers = hdrs
                .and_then(|l| {
                    let s = l.value(i);
                    let s = s.as_struct_opt()?.clone();
                    let k = s.column(0).as_string_opt::<i32>()?.clone();
                    let v = s.column(1).as_binary_opt::<i32>()?.clone();
                    Some(
                        (0..s.len())
                            .map(|j| (k.value(j).to_string(), bytes_at(&v, j)))
                            .collect(),
                    )
                })
                .unwrap_or_default();
            DeadLetter {
                offset: offsets.value(i),
                timestamp: ts.value(i),
                key: bytes(keys),
                value: bytes(values),
                headers,
                error: error.to_string(),
            }
        })
        .collect()
}

fn bytes_at(a: &arrow_array::BinaryArray, i: usize) -> Option<Bytes> {
    (!a.is_null(i)).then(|| Bytes::copy_from_slice(a.value(i)))
}

/// One Kafka batch of dead letters with their original key, value and
/// headers, plus headers saying where they came from and why.
pub fn dead_letter_batch(
    p: &Provenance<'_>,
    records: &[DeadLetter],
    cause: &str,
) -> Result<Bytes, BatchError> {
    let mut b = BatchBuilder::new(Compression::None);
    for r in records {
        let mut hs = r.headers.clone();
        hs.extend(p.headers(r.offset));
        hs.push((headers::ERROR.into(), Some(Bytes::from(r.error.clone()))));
        hs.push((headers::CAUSE.into(), Some(Bytes::from(cause.to_string()))));
        b = b.record_with_headers(r.timestamp, r.key.clone(), r.value.clone(), hs);
    }
    b.build()
}

/// Value of header `name` of an alert record, as text.
pub fn header<'a>(r: &'a Record, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.as_str() == name)
        .and_then(|(_, v)| v.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Calls `f` with every record of `p` at offsets `[from, end)`, reading
/// `max_bytes` at a time (the crash-recovery scan and diffs read alert
/// topics this way). `what` names the partition in errors.
pub async fn scan_records(
    log: &Log,
    p: &Partition,
    from: i64,
    end: i64,
    max_bytes: usize,
    what: &str,
    mut f: impl FnMut(&Record),
) -> Result<(), DetectorError> {
    let mut offset = from;
    while offset < end {
        let fetched = log
            .read(p, offset, max_bytes)
            .await
            .map_err(|e| match e.is_retriable() {
                true => DetectorError::Store(format!("reading {what}: {e}")),
                false => DetectorError::Storage(e),
            })?;
        let mut buf = fetched.records.clone();
        let mut next = offset;
        while !buf.is_empty() {
            // Bounded: an alert topic is a topic like any other, and a
            // producer can write a compression bomb to it.
            let set = inflate::decode_records(&mut buf, inflate::DEFAULT_DECOMPRESSED_LIMIT)
                .map_err(|e| DetectorError::Corrupt {
                    key: format!("{what} at offset {offset}"),
                    message: format!("unreadable batch: {e}"),
                })?;
            for r in &set.records {
                next = next.max(r.offset + 1);
                // The first batch may start before `offset`: those records
                // were seen by the previous read (or are before `from`).
                if r.offset >= offset && r.offset < end {
                    f(r);
                }
            }
        }
        if next <= offset {
            // Nothing readable at `offset` (e.g. only a gap up to the
            // watermark): stop instead of asking again forever.
            break;
        }
        offset = next;
    }
    Ok(())
}
