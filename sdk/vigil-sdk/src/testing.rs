//! A native harness, so `cargo test` on a detector crate needs no wasm.
//!
//! ```
//! use vigil_sdk::prelude::*; // brings arrow's `Array` trait (is_null…)
//! use vigil_sdk::testing::{FieldType, Rows};
//! use serde_json::json;
//!
//! let batch = Rows::new(0, 100)
//!     .schema(&[("amount", FieldType::F64), ("card", FieldType::Str)])
//!     .row(1_000, Some(b"c1".as_slice()), json!({"amount": 12.5, "card": "c1"}))
//!     .keyed_row(2_000, "c2", json!({"amount": 99}))
//!     .build();
//! assert_eq!(batch.offsets(), &[100, 101]);
//! assert_eq!(batch.f64("amount").unwrap().value(1), 99.0);
//! assert!(batch.str("card").unwrap().is_null(1));
//! ```

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
    StructBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow_buffer::Buffer;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde_json::Value;
use vigil_abi::columns;

use crate::{Alert, Alerts, Batch, Detector, Error, Result};

/// Type of a value-schema column, as a deployment declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Float64, from a JSON number.
    F64,
    /// Int64, from a JSON integer.
    I64,
    /// Utf8, from a JSON string.
    Str,
    /// Boolean, from a JSON bool.
    Bool,
    /// Timestamp(ms), from a JSON integer of milliseconds.
    TimestampMs,
}

impl FieldType {
    fn data_type(self) -> DataType {
        match self {
            FieldType::F64 => DataType::Float64,
            FieldType::I64 => DataType::Int64,
            FieldType::Str => DataType::Utf8,
            FieldType::Bool => DataType::Boolean,
            FieldType::TimestampMs => DataType::Timestamp(TimeUnit::Millisecond, None),
        }
    }
}

struct Row {
    ts: i64,
    key: Option<Vec<u8>>,
    value: Option<Value>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Builds a [`Batch`] from rows, the way the host does: the value column
/// holds each row's JSON text, and each declared schema field becomes a
/// typed column decoded from that JSON (missing or mistyped → null).
pub struct Rows {
    partition: i32,
    first_offset: i64,
    schema: Vec<(String, FieldType)>,
    rows: Vec<Row>,
}

impl Rows {
    /// Rows of `partition`, numbered from `first_offset`.
    pub fn new(partition: i32, first_offset: i64) -> Self {
        Rows {
            partition,
            first_offset,
            schema: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// Declares the typed value columns (the deployment's value schema).
    pub fn schema(mut self, fields: &[(&str, FieldType)]) -> Self {
        self.schema = fields.iter().map(|(n, t)| (n.to_string(), *t)).collect();
        self
    }

    /// Adds a record at `ts_ms` with an optional key and a JSON value.
    pub fn row(mut self, ts_ms: i64, key: Option<&[u8]>, value: Value) -> Self {
        self.rows.push(Row {
            ts: ts_ms,
            key: key.map(<[u8]>::to_vec),
            value: Some(value),
            headers: Vec::new(),
        });
        self
    }

    /// Adds a record with key `key` (shorthand for [`row`](Rows::row)).
    pub fn keyed_row(self, ts_ms: i64, key: impl AsRef<[u8]>, value: Value) -> Self {
        self.row(ts_ms, Some(key.as_ref()), value)
    }

    /// Adds a record whose value is null (a tombstone).
    pub fn null_row(mut self, ts_ms: i64, key: Option<&[u8]>) -> Self {
        self.rows.push(Row {
            ts: ts_ms,
            key: key.map(<[u8]>::to_vec),
            value: None,
            headers: Vec::new(),
        });
        self
    }

    /// Adds a header to the last row added (no-op before the first row).
    pub fn header(mut self, name: &str, value: Option<&[u8]>) -> Self {
        if let Some(r) = self.rows.last_mut() {
            r.headers
                .push((name.to_string(), value.map(<[u8]>::to_vec)));
        }
        self
    }

    /// Builds the batch (unwrapping is fine: the columns are well-formed by
    /// construction; an invalid schema name panics, which in a test is the
    /// right outcome).
    pub fn build(self) -> Batch {
        match self.try_build() {
            Ok(b) => b,
            Err(e) => panic!("testing::Rows::build: {e}"),
        }
    }

    /// Builds the record batch, reporting instead of panicking.
    pub fn try_build(self) -> Result<Batch> {
        let n = self.rows.len();
        let mut fields = columns::record_fields();
        let mut keys = BinaryBuilder::new();
        let mut values = BinaryBuilder::new();
        let mut headers = ListBuilder::new(StructBuilder::new(
            columns::header_fields(),
            vec![
                Box::new(StringBuilder::new()) as Box<dyn arrow_array::builder::ArrayBuilder>,
                Box::new(BinaryBuilder::new()),
            ],
        ));
        for r in &self.rows {
            keys.append_option(r.key.as_deref());
            values.append_option(r.value.as_ref().map(|v| v.to_string()));
            let entries = headers.values();
            for (name, value) in &r.headers {
                // The builder was created with exactly these two children.
                if let Some(k) = entries.field_builder::<StringBuilder>(0) {
                    k.append_value(name);
                }
                if let Some(v) = entries.field_builder::<BinaryBuilder>(1) {
                    v.append_option(value.as_deref());
                }
                entries.append(true);
            }
            headers.append(true);
        }
        let headers = headers.finish();
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![self.partition; n])),
            Arc::new(Int64Array::from_iter_values(
                (0..n as i64).map(|i| self.first_offset + i),
            )),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                self.rows.iter().map(|r| r.ts),
            )),
            Arc::new(keys.finish()),
            Arc::new(values.finish()),
            Arc::new(headers),
        ];
        for (name, ty) in &self.schema {
            if name.starts_with('_') {
                return Err(Error::msg(format!(
                    "value column `{name}`: names starting with `_` are reserved"
                )));
            }
            let get = |r: &Row| r.value.as_ref().and_then(|v| v.get(name)).cloned();
            let col: ArrayRef = match ty {
                FieldType::F64 => {
                    let mut b = Float64Builder::with_capacity(n);
                    self.rows
                        .iter()
                        .for_each(|r| b.append_option(get(r).and_then(|v| v.as_f64())));
                    Arc::new(b.finish())
                }
                FieldType::I64 => {
                    let mut b = Int64Builder::with_capacity(n);
                    self.rows
                        .iter()
                        .for_each(|r| b.append_option(get(r).and_then(|v| v.as_i64())));
                    Arc::new(b.finish())
                }
                FieldType::TimestampMs => {
                    let mut b = TimestampMillisecondBuilder::with_capacity(n);
                    self.rows
                        .iter()
                        .for_each(|r| b.append_option(get(r).and_then(|v| v.as_i64())));
                    Arc::new(b.finish())
                }
                FieldType::Bool => {
                    let mut b = BooleanBuilder::with_capacity(n);
                    self.rows
                        .iter()
                        .for_each(|r| b.append_option(get(r).and_then(|v| v.as_bool())));
                    Arc::new(b.finish())
                }
                FieldType::Str => {
                    let mut b = StringBuilder::new();
                    for r in &self.rows {
                        b.append_option(get(r).as_ref().and_then(Value::as_str));
                    }
                    Arc::new(b.finish())
                }
            };
            fields.push(Field::new(name, ty.data_type(), true));
            cols.push(col);
        }
        let rb = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
        Batch::new(rb)
    }
}

/// Sends `batch` through the ABI's encoding and decoding, as a wasm module
/// receives it (this checks that every column is one ABI v1 can carry).
pub fn through_abi(batch: &Batch) -> Result<Batch> {
    let enc = vigil_abi::EncodedBatch::new(batch.record_batch())?;
    let region = Buffer::from_vec(enc.to_vec());
    Batch::new(vigil_abi::decode_batch(&region)?)
}

/// Builds `D` from `config` the way the module does (an error reads
/// "invalid config: ...").
pub fn new_detector<D: Detector>(config: Value) -> Result<D> {
    let cfg: D::Config =
        serde_json::from_value(config).map_err(|e| Error::msg(format!("invalid config: {e}")))?;
    D::new(cfg)
}

/// Builds `D` from `config` and processes `batches` in order (each sent
/// through the ABI encoding first, see [`through_abi`]); returns all alerts.
pub fn run<D: Detector>(config: Value, batches: &[Batch]) -> Result<Vec<Alert>> {
    let mut d = new_detector::<D>(config)?;
    process_all(&mut d, batches)
}

/// Processes `batches` with an existing detector; returns all alerts.
pub fn process_all<D: Detector>(d: &mut D, batches: &[Batch]) -> Result<Vec<Alert>> {
    let mut out = Vec::new();
    for b in batches {
        let b = through_abi(b)?;
        let mut alerts = Alerts::new();
        d.process(&b, &mut alerts)?;
        out.extend(alerts.into_vec());
    }
    Ok(out)
}

/// Snapshots `d` and restores the bytes into a fresh instance built from
/// `config`, as the host does when a partition moves. Errors if the
/// detector does not support snapshot or restore.
pub fn snapshot_round_trip<D: Detector>(config: Value, d: &D) -> Result<D> {
    let bytes = d
        .snapshot()
        .ok_or_else(|| Error::msg("detector does not support snapshot"))?
        .map_err(|e| e.context("snapshot"))?;
    // Through the same tag the guest glue adds, so a test sees what a
    // restarted or swapped module would.
    let tagged = crate::state::tag::<D>(&bytes);
    let payload = crate::state::untag::<D>(&tagged)
        .ok_or_else(|| Error::msg("snapshot tag does not match the detector"))?;
    let mut fresh = new_detector::<D>(config)?;
    fresh
        .restore(payload)
        .ok_or_else(|| Error::msg("detector does not support restore"))?
        .map_err(|e| e.context("restore"))?;
    Ok(fresh)
}

/// Deterministic noise in [-0.5, 0.5) for index `i` (splitmix64 of the
/// index), for synthetic series that are the same on every run and target.
pub fn noise(i: usize) -> f64 {
    let mut z = (i as u64)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 11) as f64 / (1u64 << 53) as f64) - 0.5
}

/// A metric series as batches of `per_batch` rows on partition 0: row `i`
/// has offset `i`, timestamp `start_ms + i * step_ms`, no key and the value
/// `{"value": values[i]}` with `value` declared as float64.
pub fn metric_batches(values: &[f64], per_batch: usize, start_ms: i64, step_ms: i64) -> Vec<Batch> {
    values
        .chunks(per_batch.max(1))
        .enumerate()
        .map(|(c, chunk)| {
            let first = c * per_batch.max(1);
            let mut rows = Rows::new(0, first as i64).schema(&[("value", FieldType::F64)]);
            for (j, v) in chunk.iter().enumerate() {
                let i = first + j;
                rows = rows.row(
                    start_ms + i as i64 * step_ms,
                    None,
                    serde_json::json!({ "value": v }),
                );
            }
            rows.build()
        })
        .collect()
}
