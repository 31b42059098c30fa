//! Stored Kafka record batches → the Arrow [`RecordBatch`] a detector sees.
//!
//! The record section of each magic-v2 batch is parsed here rather than with
//! `kafka_protocol::records::RecordBatchDecoder`: the decoder keeps headers in
//! a map, so duplicate header keys — legal in Kafka — would be lost; it ignores LogAppendTime batches'
//! timestamp; and it re-checks the CRC the log already checked on produce.
//! Parsing is defensive: every length is bounds-checked, so a corrupt batch
//! is a [`RecordsError`], never a panic. Decompression goes through
//! `vigil_protocol::batch::inflate` with a cap per batch and per read, so a
//! compression bomb is a [`RecordsError::TooLarge`], never an OOM.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, Int32Array, Int64Array, ListArray, RecordBatch, StructArray,
    TimestampMillisecondArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use vigil_abi::columns;
use vigil_protocol::batch::inflate::{self, DEFAULT_DECOMPRESSED_LIMIT};
use vigil_protocol::batch::{BatchError, BatchHeader, RecordBatches, HEADER_LEN};

use crate::json;
use crate::schema::ValueSchema;

/// The Arrow batch built from a stretch of the log, and what was left out.
#[derive(Debug, Clone)]
pub struct BuiltBatch {
    /// Record columns plus the typed value columns, one row per good record.
    pub batch: RecordBatch,
    /// Records whose value does not match the value schema (not in `batch`),
    /// in offset order. The broker applies the deployment's failure policy.
    pub bad_records: Vec<BadRecord>,
    /// Offset of the first record at or after `from_offset` (`from_offset`
    /// if there is none).
    pub first_offset: i64,
    /// Last offset the input covered, including control batches and
    /// compacted gaps: the next read starts at `last_offset + 1`
    /// (`from_offset - 1` if the input had nothing at or after `from_offset`).
    pub last_offset: i64,
    /// Largest timestamp of the records consumed, or -1.
    pub max_timestamp: i64,
    /// Data records consumed: rows of `batch` plus `bad_records`.
    pub records: usize,
}

/// A record left out of the batch, with everything needed to dead-letter it.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRecord {
    /// Its offset.
    pub offset: i64,
    /// Its timestamp (ms).
    pub timestamp: i64,
    /// Its key.
    pub key: Option<Bytes>,
    /// Its value.
    pub value: Option<Bytes>,
    /// Its headers, in order (keys decoded lossily as UTF-8).
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Why it was left out.
    pub error: String,
}

/// Why the input could not be turned into a batch at all. These mean
/// corrupt or unsupported stored data: retrying the same bytes fails again.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The bytes do not split into magic-v2 batches.
    #[error("cannot read record batches: {0}")]
    Framing(#[from] vigil_protocol::batch::BatchError),
    /// A compressed batch did not decompress.
    #[error("record batch at offset {base_offset}: cannot decompress {codec}: {message}")]
    Decompress {
        /// The batch's base offset.
        base_offset: i64,
        /// The codec.
        codec: String,
        /// What the decompressor said.
        message: String,
    },
    /// A batch decompresses to more than the cap (8 × Kafka's default
    /// `max.message.bytes` per batch, less if the read already decompressed
    /// much): a compression bomb. The decompressor stopped at the cap.
    #[error("record batch at offset {base_offset} decompresses ({codec}) to more than {limit} bytes: refused as a compression bomb")]
    TooLarge {
        /// The batch's base offset.
        base_offset: i64,
        /// The codec.
        codec: &'static str,
        /// The cap it hit.
        limit: usize,
    },
    /// The records inside a batch are malformed.
    #[error("record batch at offset {base_offset} is corrupt: {message}")]
    Corrupt {
        /// The batch's base offset.
        base_offset: i64,
        /// What is wrong.
        message: String,
    },
    /// Building the Arrow arrays failed (a bug: please report).
    #[error("cannot build the Arrow batch: {0}")]
    Arrow(String),
}

/// The schema of the batches [`build_batch`] returns for `schema`: the six
/// record columns of ABI v1, then one nullable column per declared field.
pub fn record_schema(schema: Option<&ValueSchema>) -> SchemaRef {
    let mut fields = columns::record_fields();
    if let Some(s) = schema {
        fields.extend(s.arrow_schema().fields().iter().map(|f| f.as_ref().clone()));
    }
    Arc::new(Schema::new(fields))
}

/// One parsed record; headers index into [`Parsed::headers`].
pub(crate) struct Raw {
    pub(crate) offset: i64,
    pub(crate) timestamp: i64,
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    headers: Range<usize>,
}

#[derive(Default)]
struct Parsed {
    records: Vec<Raw>,
    headers: Vec<(Bytes, Option<Bytes>)>,
    last_offset: Option<i64>,
}

/// Builds the detector input from `wire` (concatenated magic-v2 batches as
/// the log returns them): records below `from_offset` and control batches
/// are skipped; with a `schema`, each value is decoded as JSON into typed
/// columns, and values that do not decode go to `bad_records`.
pub fn build_batch(
    partition: i32,
    wire: &Bytes,
    from_offset: i64,
    schema: Option<&ValueSchema>,
) -> Result<BuiltBatch, RecordsError> {
    let parsed = parse(wire, from_offset)?;
    let consumed = parsed.records.len();
    let first_offset = parsed.records.first().map_or(from_offset, |r| r.offset);
    let last_offset = parsed.last_offset.unwrap_or(from_offset - 1);
    let max_timestamp = parsed
        .records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(-1);

    let (typed, good, bad) = match schema {
        Some(s) if !s.is_empty() => json::decode_values(s, &parsed.records),
        _ => (Vec::new(), (0..consumed).collect(), Vec::new()),
    };
    let bad_records = bad
        .into_iter()
        .map(|(i, error)| {
            let r = &parsed.records[i];
            BadRecord {
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: parsed.headers[r.headers.clone()]
                    .iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
                    .collect(),
                error,
            }
        })
        .collect();

    let mut cols = record_columns(partition, &parsed, &good);
    cols.extend(typed);
    let batch = RecordBatch::try_new(record_schema(schema), cols)
        .map_err(|e| RecordsError::Arrow(e.to_string()))?;
    Ok(BuiltBatch {
        batch,
        bad_records,
        first_offset,
        last_offset,
        max_timestamp,
        records: consumed,
    })
}

/// The six record columns for the records at indexes `rows`.
fn record_columns(partition: i32, p: &Parsed, rows: &[usize]) -> Vec<ArrayRef> {
    let recs = || rows.iter().map(|&i| &p.records[i]);
    let bytes_len =
        |f: fn(&Raw) -> Option<&Bytes>| recs().filter_map(f).map(Bytes::len).sum::<usize>();
    let mut keys = BinaryBuilder::with_capacity(rows.len(), bytes_len(|r| r.key.as_ref()));
    let mut values = BinaryBuilder::with_capacity(rows.len(), bytes_len(|r| r.value.as_ref()));
    let nheaders: usize = recs().map(|r| r.headers.len()).sum();
    let mut hkeys = StringBuilder::with_capacity(nheaders, nheaders * 8);
    let mut hvalues = BinaryBuilder::with_capacity(nheaders, nheaders * 8);
    let mut hoffsets = Vec::with_capacity(rows.len() + 1);
    hoffsets.push(0i32);
    let mut n = 0i32;
    for r in recs() {
        keys.append_option(r.key.as_deref());
        values.append_option(r.value.as_deref());
        for (k, v) in &p.headers[r.headers.clone()] {
            hkeys.append_value(String::from_utf8_lossy(k));
            hvalues.append_option(v.as_deref());
        }
        n = n.saturating_add(i32::try_from(r.headers.len()).unwrap_or(i32::MAX));
        hoffsets.push(n);
    }
    let entries = StructArray::new(
        columns::header_fields(),
        vec![Arc::new(hkeys.finish()), Arc::new(hvalues.finish())],
        None,
    );
    let headers = ListArray::new(
        Arc::new(Field::new_list_field(
            DataType::Struct(columns::header_fields()),
            true,
        )),
        OffsetBuffer::new(hoffsets.into()),
        Arc::new(entries),
        None,
    );
    vec![
        Arc::new(Int32Array::from(vec![partition; rows.len()])),
        Arc::new(Int64Array::from_iter_values(recs().map(|r| r.offset))),
        Arc::new(TimestampMillisecondArray::from_iter_values(
            recs().map(|r| r.timestamp),
        )),
        Arc::new(keys.finish()),
        Arc::new(values.finish()),
        Arc::new(headers),
    ]
}

fn parse(wire: &Bytes, from_offset: i64) -> Result<Parsed, RecordsError> {
    let mut out = Parsed::default();
    let (budget, mut used) = (read_budget(wire), 0usize);
    for item in RecordBatches::new(wire.clone()) {
        let (h, bytes) = item?;
        if h.last_offset() < from_offset {
            continue; // wholly before the start: not even decompressed
        }
        out.last_offset = Some(
            out.last_offset
                .map_or(h.last_offset(), |l| l.max(h.last_offset())),
        );
        if h.is_control() {
            continue; // transaction markers are not data
        }
        let corrupt = |message: String| RecordsError::Corrupt {
            base_offset: h.base_offset,
            message,
        };
        let body = bytes.slice(HEADER_LEN.min(bytes.len())..);
        let limit = DEFAULT_DECOMPRESSED_LIMIT.min(budget.saturating_sub(used));
        let body = decompress(&h, body, limit)?;
        used += body.len();
        let count = usize::try_from(h.records_count)
            .map_err(|_| corrupt(format!("negative record count {}", h.records_count)))?;
        let mut cur = Cursor { buf: &body, pos: 0 };
        for i in 0..count {
            let raw = parse_record(&mut cur, &body, &h, &mut out.headers)
                .map_err(|m| corrupt(format!("record {i} of {count}: {m}")))?;
            if raw.offset >= from_offset {
                out.records.push(raw);
            } else {
                // The record's headers were appended; drop them again.
                out.headers.truncate(raw.headers.start);
            }
        }
    }
    Ok(out)
}

/// How many times its own (compressed) size one detector read may expand to
/// in total, when that is more than one batch's cap: many small bombs in one
/// read must not add up to more memory than one large batch may take.
const READ_EXPANSION: usize = 32;

/// The decompressed bytes one [`build_batch`] call may hold for `wire`.
fn read_budget(wire: &Bytes) -> usize {
    DEFAULT_DECOMPRESSED_LIMIT.max(wire.len().saturating_mul(READ_EXPANSION))
}

/// Decompresses one batch through the shared bounded decompressor, with at
/// most `limit` bytes out.
fn decompress(h: &BatchHeader, body: Bytes, limit: usize) -> Result<Bytes, RecordsError> {
    inflate::decompress(h.compression(), body, limit).map_err(|e| match e {
        BatchError::TooLarge { codec, limit } => RecordsError::TooLarge {
            base_offset: h.base_offset,
            codec,
            limit,
        },
        e => RecordsError::Decompress {
            base_offset: h.base_offset,
            codec: inflate::codec_name(h.compression()).into(),
            message: e.to_string(),
        },
    })
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn u8(&mut self) -> Result<u8, String> {
        let b = *self.buf.get(self.pos).ok_or("truncated")?;
        self.pos += 1;
        Ok(b)
    }

    /// A zigzag varint of up to 64 bits.
    fn varlong(&mut self) -> Result<i64, String> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn varint(&mut self) -> Result<i32, String> {
        let v = self.varlong()?;
        i32::try_from(v).map_err(|_| format!("varint {v} out of i32 range"))
    }

    /// A length-prefixed byte string; length -1 is null.
    fn bytes(&mut self, whole: &Bytes, what: &str) -> Result<Option<Bytes>, String> {
        let n = self.varint()?;
        if n < 0 {
            return Ok(None);
        }
        let end = self
            .pos
            .checked_add(n as usize)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| format!("{what} of {n} bytes runs past the batch"))?;
        let b = whole.slice(self.pos..end);
        self.pos = end;
        Ok(Some(b))
    }
}

fn parse_record(
    cur: &mut Cursor<'_>,
    whole: &Bytes,
    h: &BatchHeader,
    headers: &mut Vec<(Bytes, Option<Bytes>)>,
) -> Result<Raw, String> {
    let len = cur.varint()?;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| cur.pos.checked_add(l))
        .filter(|e| *e <= cur.buf.len())
        .ok_or_else(|| format!("record length {len} runs past the batch"))?;
    // Parse within the record's own bytes so a bad field cannot read into
    // the next record.
    let mut rec = Cursor {
        buf: &cur.buf[..end],
        pos: cur.pos,
    };
    let _attributes = rec.u8()?;
    let ts_delta = rec.varlong()?;
    let offset_delta = rec.varint()?;
    let key = rec.bytes(whole, "key")?;
    let value = rec.bytes(whole, "value")?;
    let nheaders = rec.varint()?;
    let start = headers.len();
    for _ in 0..nheaders.max(0) {
        let k = rec.bytes(whole, "header key")?.ok_or("null header key")?;
        let v = rec.bytes(whole, "header value")?;
        headers.push((k, v));
    }
    cur.pos = end;
    // LogAppendTime batches carry the broker's time in the header only.
    let timestamp = if h.attributes & 0x08 != 0 {
        h.max_timestamp
    } else {
        h.base_timestamp.wrapping_add(ts_delta)
    };
    Ok(Raw {
        offset: h.base_offset.wrapping_add(i64::from(offset_delta)),
        timestamp,
        key,
        value,
        headers: start..headers.len(),
    })
}
