//! [`Batch`]: typed, zero-copy access to the records of one batch.

use std::borrow::Cow;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Int16Type, Int32Type, Int64Type, Int8Type, TimestampMillisecondType, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{
    Array, ArrowPrimitiveType, BinaryArray, BooleanArray, Float64Array, Int64Array, ListArray,
    PrimitiveArray, RecordBatch, StringArray,
};
use arrow_schema::{DataType, TimeUnit};
use vigil_abi::columns;

use crate::{Error, Result};

/// One batch of records from a partition, as the host delivers it: the six
/// record columns of [`vigil_abi::columns`] plus one typed column per field
/// of the deployment's value schema.
///
/// Accessors borrow from the underlying Arrow buffers; nothing is copied
/// unless a conversion is asked for ([`Batch::column_f64`] on a non-f64
/// column).
#[derive(Debug, Clone)]
pub struct Batch {
    rb: RecordBatch,
    partition: i32,
    offsets: Int64Array,
    timestamps: PrimitiveArray<TimestampMillisecondType>,
    keys: BinaryArray,
    values: BinaryArray,
    headers: ListArray,
    header_keys: StringArray,
    header_values: BinaryArray,
}

/// Finds a record column and checks its type, naming both in the error.
fn record_column<'a>(
    rb: &'a RecordBatch,
    name: &str,
    ok: impl Fn(&DataType) -> bool,
    want: &str,
) -> Result<&'a dyn Array> {
    let col = rb
        .column_by_name(name)
        .ok_or_else(|| Error::msg(format!("batch has no record column `{name}` ({want})")))?;
    if !ok(col.data_type()) {
        return Err(Error::msg(format!(
            "record column `{name}` has type {}, expected {want}",
            col.data_type()
        )));
    }
    Ok(col.as_ref())
}

impl Batch {
    /// Wraps `rb`, checking that the record columns exist with the ABI's
    /// types. The error names the offending column.
    pub fn new(rb: RecordBatch) -> Result<Batch> {
        let partition = record_column(&rb, columns::PARTITION, |t| *t == DataType::Int32, "Int32")?
            .as_primitive::<Int32Type>();
        let partition = if partition.is_empty() || partition.is_null(0) {
            -1
        } else {
            partition.value(0)
        };
        let offsets = record_column(&rb, columns::OFFSET, |t| *t == DataType::Int64, "Int64")?
            .as_primitive::<Int64Type>()
            .clone();
        let timestamps = record_column(
            &rb,
            columns::TIMESTAMP,
            |t| matches!(t, DataType::Timestamp(TimeUnit::Millisecond, None)),
            "Timestamp(ms)",
        )?
        .as_primitive::<TimestampMillisecondType>()
        .clone();
        let keys = record_column(&rb, columns::KEY, |t| *t == DataType::Binary, "Binary")?
            .as_binary::<i32>()
            .clone();
        let values = record_column(&rb, columns::VALUE, |t| *t == DataType::Binary, "Binary")?
            .as_binary::<i32>()
            .clone();
        let want = "List<Struct<key Utf8, value Binary>>";
        let headers = record_column(&rb, columns::HEADERS, is_headers_type, want)?
            .as_list::<i32>()
            .clone();
        // `is_headers_type` checked the struct layout, so these casts hold.
        let entries = headers.values().as_struct();
        let header_keys = entries.column(0).as_string::<i32>().clone();
        let header_values = entries.column(1).as_binary::<i32>().clone();
        Ok(Batch {
            rb,
            partition,
            offsets,
            timestamps,
            keys,
            values,
            headers,
            header_keys,
            header_values,
        })
    }

    /// The underlying Arrow record batch (record and typed columns).
    pub fn record_batch(&self) -> &RecordBatch {
        &self.rb
    }

    /// Number of records.
    pub fn num_rows(&self) -> usize {
        self.rb.num_rows()
    }

    /// The partition the records come from (-1 for an empty batch).
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Record offsets, one per row, ascending.
    pub fn offsets(&self) -> &[i64] {
        self.offsets.values()
    }

    /// Record timestamps in milliseconds since the Unix epoch.
    pub fn timestamps(&self) -> &[i64] {
        self.timestamps.values()
    }

    /// The key of `row`; `None` if the record has no key or `row` is out of
    /// range.
    pub fn key(&self, row: usize) -> Option<&[u8]> {
        (row < self.keys.len() && self.keys.is_valid(row)).then(|| self.keys.value(row))
    }

    /// The key of `row` as text; `None` if absent or not UTF-8.
    pub fn key_str(&self, row: usize) -> Option<&str> {
        self.key(row).and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The raw value of `row`; `None` for a null value (tombstone) or an out
    /// of range row.
    pub fn value(&self, row: usize) -> Option<&[u8]> {
        (row < self.values.len() && self.values.is_valid(row)).then(|| self.values.value(row))
    }

    /// The value of the first header of `row` named `name`; `None` if there
    /// is none or its value is null.
    pub fn header(&self, row: usize, name: &str) -> Option<&[u8]> {
        if row >= self.headers.len() || self.headers.is_null(row) {
            return None;
        }
        let offsets = self.headers.value_offsets();
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        (start..end)
            .find(|&i| self.header_keys.is_valid(i) && self.header_keys.value(i) == name)
            .filter(|&i| self.header_values.is_valid(i))
            .map(|i| self.header_values.value(i))
    }

    /// Looks up a typed column, explaining what is wrong if it is absent.
    fn typed(&self, column: &str, want: &str) -> Result<&dyn Array> {
        match self.rb.column_by_name(column) {
            Some(c) => Ok(c.as_ref()),
            None => {
                let have: Vec<&str> = self
                    .rb
                    .schema_ref()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .filter(|n| !n.starts_with('_'))
                    .collect();
                Err(Error::msg(format!(
                    "batch has no column `{column}` ({want}); value columns present: [{}]; \
                     declare it in the deployment's value_schema",
                    have.join(", ")
                )))
            }
        }
    }

    fn wrong_type(column: &str, have: &DataType, want: &str) -> Error {
        Error::msg(format!(
            "column `{column}` has type {have}, not {want}; \
             declare it as {want} in the deployment's value_schema"
        ))
    }

    /// The Float64 column `column`.
    pub fn f64(&self, column: &str) -> Result<&Float64Array> {
        let c = self.typed(column, "Float64")?;
        c.as_any()
            .downcast_ref()
            .ok_or_else(|| Self::wrong_type(column, c.data_type(), "Float64"))
    }

    /// The Int64 column `column`.
    pub fn i64(&self, column: &str) -> Result<&Int64Array> {
        let c = self.typed(column, "Int64")?;
        c.as_any()
            .downcast_ref()
            .ok_or_else(|| Self::wrong_type(column, c.data_type(), "Int64"))
    }

    /// The Utf8 column `column`.
    pub fn str(&self, column: &str) -> Result<&StringArray> {
        let c = self.typed(column, "Utf8")?;
        c.as_any()
            .downcast_ref()
            .ok_or_else(|| Self::wrong_type(column, c.data_type(), "Utf8"))
    }

    /// The Boolean column `column`.
    pub fn bool(&self, column: &str) -> Result<&BooleanArray> {
        let c = self.typed(column, "Boolean")?;
        c.as_any()
            .downcast_ref()
            .ok_or_else(|| Self::wrong_type(column, c.data_type(), "Boolean"))
    }

    /// The numeric column `column` as `f64`s, one per row, nulls as NaN.
    ///
    /// A Float64 column without nulls is borrowed; integer, Float32 and
    /// timestamp columns (and Float64 with nulls) are converted into a new
    /// vector.
    pub fn column_f64(&self, column: &str) -> Result<Cow<'_, [f64]>> {
        let c = self.typed(column, "a numeric type")?;
        let out = match c.data_type() {
            DataType::Float64 => {
                let a = c.as_primitive::<arrow_array::types::Float64Type>();
                if a.null_count() == 0 {
                    return Ok(Cow::Borrowed(a.values()));
                }
                convert(a, |v| v)
            }
            DataType::Float32 => convert(c.as_primitive::<Float32Type>(), f64::from),
            DataType::Int64 => convert(c.as_primitive::<Int64Type>(), |v| v as f64),
            DataType::Int32 => convert(c.as_primitive::<Int32Type>(), f64::from),
            DataType::Int16 => convert(c.as_primitive::<Int16Type>(), f64::from),
            DataType::Int8 => convert(c.as_primitive::<Int8Type>(), f64::from),
            DataType::UInt64 => convert(c.as_primitive::<UInt64Type>(), |v| v as f64),
            DataType::UInt32 => convert(c.as_primitive::<UInt32Type>(), f64::from),
            DataType::UInt16 => convert(c.as_primitive::<UInt16Type>(), f64::from),
            DataType::UInt8 => convert(c.as_primitive::<UInt8Type>(), f64::from),
            DataType::Timestamp(TimeUnit::Millisecond, None) => {
                convert(c.as_primitive::<TimestampMillisecondType>(), |v| v as f64)
            }
            other => return Err(Self::wrong_type(column, other, "a numeric type")),
        };
        Ok(Cow::Owned(out))
    }
}

fn convert<T: ArrowPrimitiveType>(a: &PrimitiveArray<T>, f: impl Fn(T::Native) -> f64) -> Vec<f64> {
    if a.null_count() == 0 {
        a.values().iter().map(|v| f(*v)).collect()
    } else {
        a.iter().map(|v| v.map_or(f64::NAN, &f)).collect()
    }
}

fn is_headers_type(t: &DataType) -> bool {
    let DataType::List(item) = t else {
        return false;
    };
    let DataType::Struct(fields) = item.data_type() else {
        return false;
    };
    fields.len() == 2
        && fields[0].data_type() == &DataType::Utf8
        && fields[1].data_type() == &DataType::Binary
}
